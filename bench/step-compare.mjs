#!/usr/bin/env node
// The training step before and after, from bench/step-main.ts's JSON records (sgt-step-bench/1):
//   node bench/step-compare.mjs --base B1.json [B2.json ...] --after A1.json [A2.json ...]
// Per model and factory: tokens/s of each side (the median over its records' medians) and after/before.
// Records of one side taken alternately with the other's (bench/before-after.sh) share the load.
import { readFileSync } from 'node:fs';

const sides = { base: [], after: [] };
let side = null;
for (const a of process.argv.slice(2)) {
  if (a === '--base' || a === '--after') side = a.slice(2);
  else if (side) sides[side].push(JSON.parse(readFileSync(a, 'utf8')));
  else throw new Error('usage: node bench/step-compare.mjs --base FILE... --after FILE...');
}
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** tokens/s per `model|factory|BxT` over the side's records. */
const collect = (records) => {
  const by = new Map();
  for (const r of records) {
    for (const row of r.rows) {
      const model = row.model.startsWith('models/default') ? 'models/default' : row.model;
      const key = `${model} | ${row.factory} | ${row.B} x ${row.T}`;
      by.set(key, [...(by.get(key) ?? []), row.tokensPerSecond]);
    }
  }
  return by;
};
const base = collect(sides.base);
const after = collect(sides.after);
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
console.log('| model | factory | B x T | before tokens/s | after tokens/s | after / before |');
console.log('| --- | --- | --- | ---: | ---: | ---: |');
for (const key of new Set([...base.keys(), ...after.keys()])) {
  const b = base.has(key) ? median(base.get(key)) : null;
  const a = after.has(key) ? median(after.get(key)) : null;
  const runs = (xs) => (xs ? ` (${xs.map(fmt).join(', ')})` : '');
  console.log(
    `| ${key} | ${b == null ? '' : fmt(b)}${runs(base.get(key))} | ${a == null ? '' : fmt(a)}${runs(after.get(key))} | ${a && b ? `${(a / b).toFixed(2)}x` : ''} |`,
  );
}
console.log(
  "\nmodels/default is each side's own default model (it may differ between the commits); the synthetic config is the same model on both sides.",
);
