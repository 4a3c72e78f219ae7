#!/usr/bin/env node
/**
 * The last step of `npm run build`: gives every relative import of the emitted declarations
 * (dist/types) its `.js` extension (`./gpu/context` -> `./gpu/context.js`, `./ops` ->
 * `./ops/index.js`, `./errors.ts` -> `./errors.js`). The sources import without extensions (Vite
 * resolves them), and so does tsc's output; a consumer whose tsconfig says `"moduleResolution":
 * "node16"` or `"nodenext"` needs the extensions in an ES module package (TS2834), while
 * `"bundler"` accepts both. Usage: node scripts/finish-types.mjs [types-folder]
 */
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? join(import.meta.dirname, '../dist/types'));

/** Every `.d.ts` file under `dir`. */
function declarationFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return declarationFiles(path);
    return name.endsWith('.d.ts') ? [path] : [];
  });
}

/** `spec` (relative to the file `from`) with the extension Node's ES module resolution wants. */
function withExtension(spec, from) {
  if (spec.endsWith('.js')) return spec;
  const bare = spec.replace(/\.ts$/, '');
  const base = resolve(dirname(from), bare);
  if (existsSync(`${base}.d.ts`)) return `${bare}.js`;
  if (existsSync(join(base, 'index.d.ts'))) return `${bare}/index.js`;
  throw new Error(`finish-types: ${from}: no declarations for '${spec}'`);
}

// `from './x'`, `import './x'` and `import('./x')`, with either quote.
const RELATIVE = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]*)\2/g;

let changed = 0;
for (const file of declarationFiles(root)) {
  const text = readFileSync(file, 'utf8');
  const out = text.replace(RELATIVE, (_all, lead, quote, spec) => `${lead}${quote}${withExtension(spec, file)}${quote}`);
  if (out !== text) {
    writeFileSync(file, out);
    changed++;
  }
}
process.stdout.write(`finish-types: relative imports of ${changed} declaration files now end in .js (${root})\n`);
