#!/usr/bin/env node
// Prints the README's privacy/utility table from every docs/measurements/privacy-utility-*.json
// written by `npm run measure-privacy` (one row per run, with the settings it used).
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const dir = resolve(import.meta.dirname, '../docs/measurements');
const pct = (v) => `${(100 * v).toFixed(1)}%`;
const ABBREVIATIONS = {
  distillationCrossEntropyLossWeight: 'wCE',
  absoluteCosineSimilarityPenaltyWeight: 'wACS',
  medianNormPenaltyWeight: 'wMNP',
  mutualInformationLossWeight: 'wMI',
  distillationLayerIndex: 'layer',
  alpha: 'alpha',
  stdLogRatioLossWeight: 'wStd',
  inputEmbeddingSimilarityLossWeight: 'wSim',
  distillationLayerCosineDistanceLossWeight: 'wCos',
  distillationLayerL2DistanceLossWeight: 'wL2',
};
const rows = [];
for (const file of readdirSync(dir)
  .filter((f) => /^privacy-utility-.*\.json$/.test(f))
  .sort()) {
  const data = JSON.parse(readFileSync(resolve(dir, file), 'utf8'));
  for (const r of data.rows) rows.push({ file, ...r });
}
rows.sort((a, b) => a.factory.localeCompare(b.factory) || b.after.nearestNeighbourFailureRate - a.after.nearestNeighbourFailureRate);
console.log('| factory | settings | lr | steps | NN-FR | top-1 agreement | mean KL |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const settings = Object.entries(r.factoryOptions)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => `${ABBREVIATIONS[k] ?? k}=${v}`)
    .join(', ');
  const cloak = Object.entries(r.cloak ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  const a = r.after;
  console.log(
    `| \`${r.factory}\` | ${settings}${cloak ? `; cloak ${cloak}` : ''} | ${r.learningRate} | ${r.steps} | ${pct(a.nearestNeighbourFailureRate)} | ${pct(a.top1Agreement)} | ${a.meanKL.toFixed(3)} |`,
  );
}
