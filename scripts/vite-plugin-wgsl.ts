/**
 * The shader plugin of every Vite build and server of this repository (the library, the CLI
 * bundle, the demo, Vitest and scripts/run.mjs): a `shaders/*.wgsl?raw` import of a kernel file
 * becomes
 *
 *   import { shippedWgsl } from '../src/gpu/shaderLayouts.ts';
 *   export default /* @__PURE__ *\/ shippedWgsl("<the WGSL>", { entryPoint: [binding slots], ... });
 *
 * with the bind-group layout of each compute entry point reflected here, in Node, from the composed
 * module (its `#include` lines resolved). The pipeline cache finds a shipped kernel's layout there,
 * so an app that runs only the shipped kernels never loads the WGSL parser (wgsl_reflect): the
 * library imports it dynamically, for WGSL supplied at run time. The value is still the source
 * text, so the playground shows and edits the same string the ops dispatch. `stripComments`
 * (the library build) drops the WGSL comments of the shipped text, keeping every line, so that
 * compiler messages keep their line numbers.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import type { Plugin } from 'vite';
import type { EntryPointLayouts } from '../src/gpu/shaderLayouts.ts';
import { composeWgslFrom } from '../src/gpu/wgslComposeCore.ts';
import { reflectEntryPoints } from '../src/gpu/wgslReflect.ts';

/** The folder of the shipped WGSL files. */
export const SHADERS_DIR = resolve(import.meta.dirname, '../shaders');
const REGISTRY = resolve(import.meta.dirname, '../src/gpu/shaderLayouts.ts');

/** Options of {@link wgslShaders}. */
export interface WgslShadersOptions {
  /** Drop `//` comments and trailing blanks from the shipped WGSL (lines are kept). Default false. */
  stripComments?: boolean;
}

/** `code` without its `//` comments and trailing blanks, every line kept (WGSL has no string literals). */
export function stripWgslComments(code: string): string {
  return code.replace(/\/\/[^\n]*/g, '').replace(/[ \t]+$/gm, '');
}

/** Every `.wgsl` file of the shaders folder, by file name: what a kernel's `#include` names. */
function wgslLibrary(options: WgslShadersOptions): Record<string, string> {
  const library: Record<string, string> = {};
  for (const name of readdirSync(SHADERS_DIR)) {
    if (!name.endsWith('.wgsl')) continue;
    const text = readFileSync(join(SHADERS_DIR, name), 'utf8');
    library[name] = options.stripComments ? stripWgslComments(text) : text;
  }
  return library;
}

/**
 * The shipped text of the kernel file `name` of the shaders folder and the layouts of its compute
 * entry points (null for a file with none, such as the prelude).
 */
export function shipWgsl(name: string, options: WgslShadersOptions = {}): { code: string; layouts: EntryPointLayouts | null } {
  const library = wgslLibrary(options);
  const code = library[name];
  if (code === undefined) throw new Error(`vite-plugin-wgsl: no ${name} in ${SHADERS_DIR}`);
  if (!/@compute\b/.test(code)) return { code, layouts: null };
  try {
    return { code, layouts: reflectEntryPoints(composeWgslFrom(code, library).code) };
  } catch (e) {
    throw new Error(`vite-plugin-wgsl: ${name}: ${(e as Error).message}`);
  }
}

/** The Vite plugin (see the file comment). */
export function wgslShaders(options: WgslShadersOptions = {}): Plugin {
  return {
    name: 'sgt-wgsl-shaders',
    enforce: 'pre',
    load(id) {
      const [file, query] = id.split('?');
      if (query !== 'raw' || !file.endsWith('.wgsl') || resolve(dirname(file)) !== SHADERS_DIR) return null;
      // The layouts depend on the included files too: an edit of any of them reloads this module.
      for (const name of readdirSync(SHADERS_DIR)) if (name.endsWith('.wgsl')) this.addWatchFile(join(SHADERS_DIR, name));
      const { code, layouts } = shipWgsl(basename(file), options);
      if (!layouts) return `export default ${JSON.stringify(code)};\n`;
      const registry = relative(dirname(file), REGISTRY).split(sep).join('/');
      return (
        `import { shippedWgsl } from ${JSON.stringify(registry)};\n` +
        `export default /* @__PURE__ */ shippedWgsl(${JSON.stringify(code)}, ${JSON.stringify(layouts)});\n`
      );
    },
  };
}
