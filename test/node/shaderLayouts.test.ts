/**
 * The bind-group layouts of the shipped kernels are reflected at build time (the shader plugin,
 * scripts/vite-plugin-wgsl.ts) so that an app never loads the WGSL parser for them. They must be
 * exactly what run-time reflection (wgsl_reflect on the composed module) reads, for every compute
 * entry point of every file, and so must those of the comment-free text the library build ships.
 */
import { describe, expect, it } from 'vitest';
import { shipWgsl, stripWgslComments } from '../../scripts/vite-plugin-wgsl';
import { shippedLayouts } from '../../src/gpu/shaderLayouts';
import { composeWgsl } from '../../src/gpu/wgslCompose';
import { reflectEntryPoint, reflectEntryPoints } from '../../src/gpu/wgslReflect';

const KERNELS = import.meta.glob('../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

/** The compute entry points a file declares, by a plain reading of its text. */
function declaredEntryPoints(text: string): string[] {
  return [...text.matchAll(/@compute[^\n]*\n\s*fn (\w+)/g)].map((m) => m[1]).sort();
}

const files = Object.entries(KERNELS).map(([path, text]) => ({ name: path.split('/').pop()!, text }));

describe('build-time shader layouts', () => {
  it('cover every shipped kernel file (and only those with entry points)', () => {
    expect(files.length).toBeGreaterThan(15);
    for (const { name, text } of files) {
      const layouts = shippedLayouts(text);
      if (declaredEntryPoints(text).length === 0) {
        expect(layouts, name).toBeUndefined();
        continue;
      }
      expect(layouts, `${name}: no build-time layouts (is the shader plugin in this Vite config?)`).toBeDefined();
      expect(Object.keys(layouts!).sort(), name).toEqual(declaredEntryPoints(text));
    }
  });

  it('equal the run-time reflection of every entry point', () => {
    let checked = 0;
    for (const { name, text } of files) {
      const layouts = shippedLayouts(text);
      if (!layouts) continue;
      const composed = composeWgsl(text).code;
      for (const entryPoint of declaredEntryPoints(text)) {
        expect(layouts[entryPoint], `${name} ${entryPoint}`).toEqual(reflectEntryPoint(composed, entryPoint));
        expect(layouts[entryPoint].length, `${name} ${entryPoint}`).toBeGreaterThan(0);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('of the comment-free text the library ships equal them too, and every line is kept', () => {
    for (const { name, text } of files) {
      const shipped = shipWgsl(name, { stripComments: true });
      expect(shipped.code, name).toBe(stripWgslComments(text));
      expect(shipped.code.split('\n').length, name).toBe(text.split('\n').length);
      expect(shipped.code, name).not.toMatch(/\/\//);
      if (!shippedLayouts(text)) {
        expect(shipped.layouts, name).toBeNull();
        continue;
      }
      // Composed with the comment-free prelude, as the library build composes it.
      const library = { 'common.wgsl': stripWgslComments(KERNELS['../../shaders/common.wgsl']) };
      expect(shipped.layouts, name).toEqual(reflectEntryPoints(composeWgsl(shipped.code, library).code));
      expect(shipped.layouts, name).toEqual(shippedLayouts(text));
    }
  });
});
