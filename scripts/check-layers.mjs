#!/usr/bin/env node
/**
 * The import-direction check of `npm run lint`: every module under src/ imports only from its own
 * layer or from the layers before it (docs/ARCHITECTURE.md has the table). `src/reference/` (the
 * float64 twins) imports only other twins, plus `import type` from anywhere; `src/index.ts` (the
 * public entry point) may import any layer.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The layers of src/, in order: each imports only from itself and those before it. */
export const LAYERS = [
  'gpu',
  'tensor',
  'autograd',
  'ops',
  'losses',
  'optim',
  'text',
  'models',
  'factories',
  'eval',
  'train',
  'worker',
  'cli',
];

const IMPORT =
  /^\s*(import|export)\s+(type\s+)?[^'";]*?\sfrom\s+['"](\.[^'"]+)['"]|^\s*import\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/gm;

/** The layer of a path relative to src/ ('index' and 'reference' are special; null: not under src). */
function layerOf(relPath) {
  const parts = relPath.split(sep);
  if (parts[0] === '..') return null;
  if (parts.length === 1) return parts[0].replace(/\.ts$/, '');
  return parts[0];
}

/**
 * The violations in one module's source: `[{ from, to, spec }]` where `file` (relative to src/)
 * imports `spec` across the layer order.
 */
export function violationsIn(file, source) {
  const out = [];
  const fromLayer = layerOf(file);
  for (const m of source.matchAll(IMPORT)) {
    const typeOnly = Boolean(m[2]);
    const spec = m[3] ?? m[4] ?? m[5];
    const target = relative('.', join(dirname(file), spec.split('?')[0]));
    if (target.startsWith(`..${sep}shaders`)) continue; // WGSL sources: below every layer
    const toLayer = layerOf(target);
    if (toLayer === null) {
      out.push({ from: file, to: target, spec, why: 'imports from outside src/' });
      continue;
    }
    if (fromLayer === 'index' || fromLayer === toLayer) continue;
    if (fromLayer === 'reference') {
      if (!typeOnly) out.push({ from: file, to: target, spec, why: 'a float64 twin may only import types from outside src/reference' });
      continue;
    }
    const a = LAYERS.indexOf(fromLayer);
    const b = LAYERS.indexOf(toLayer);
    if (a < 0) out.push({ from: file, to: target, spec, why: `folder src/${fromLayer} is not in the layer table` });
    else if (b < 0 || b > a) out.push({ from: file, to: target, spec, why: `layer '${fromLayer}' may not import from '${toLayer}'` });
  }
  return out;
}

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every violation under `srcDir`. */
export function checkLayers(srcDir) {
  return walk(srcDir).flatMap((p) => violationsIn(relative(srcDir, p), readFileSync(p, 'utf8')));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = resolve(dirname(fileURLToPath(import.meta.url)), '../src');
  const bad = checkLayers(src);
  for (const v of bad) console.error(`src/${v.from}: imports '${v.spec}': ${v.why}`);
  if (bad.length > 0) process.exit(1);
  console.log(`layers: every import under src/ follows ${LAYERS.join(' -> ')}`);
}
