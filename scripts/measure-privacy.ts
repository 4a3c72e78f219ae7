/**
 * `npm run measure-privacy`: for each of the four loss factories, trains a cloak for a model
 * (default `models/default`, any causal LM folder with its tokenizer) with the factory's
 * recommended run (`RECOMMENDED_RUNS`: learning rate and privacy-weight schedule), then measures
 * on held-out text (Jude and Revelation, never seen by the base model or the cloak), before and
 * after training: NN-FR by cosine and by L2, next-token accuracy of teacher and student against the
 * true next token and its drop in points, the perplexity ratio, top-1 agreement and mean KL; and
 * on the trained transform the learned inversion attacks (linear probe and window MLP, through the
 * transform and on clean embeddings). Writes `docs/measurements/privacy-utility-<tag>.{json,md}`;
 * `node scripts/privacy-table.mjs` turns every measurement there into the README's table.
 *
 * Options: --steps N (default 150), --model DIR (default models/default), --only NAME,
 * --set key=value,... (override factory options), --cloak key=value,... (cloak options), --lr X,
 * --attack-steps N (default 60; 0 skips the attacks), --seq-len T (default 64), --held-out N
 * sequences (default 32), --tag T (write docs/measurements/privacy-utility-T.*).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { init, Trainer, type CausalLM, type FactoryName, type PackedSequence, type TrainerOptions } from '../src/index';
import { DEFAULT_FACTORY_OPTIONS, FACTORY_NAMES, RECOMMENDED_RUNS } from '../src/factories/options';
import { scheduleForRun } from '../src/factories/schedule';
import { loadModelDir, packKjv } from './privacy-data';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const STEPS = Number(args.get('steps') ?? 150);
const MODEL_DIR = resolve(args.get('model') ?? 'models/default');
const ONLY = args.get('only');
const LR = args.has('lr') ? Number(args.get('lr')) : undefined;
const ATTACK_STEPS = Number(args.get('attack-steps') ?? 60);
const SEQ_LEN = Number(args.get('seq-len') ?? 64);
const HELD_OUT = Number(args.get('held-out') ?? 32);
const BATCH = 4;
/** --set key=value[,key=value]: override factory options (for tuning runs). */
const OVERRIDES = setting('set');
/** --cloak key=value[,key=value]: cloak options (e.g. sMax=0.05). */
const CLOAK = setting('cloak');

function setting(name: string): Record<string, number | null> {
  return Object.fromEntries(
    (args.get(name) ?? '')
      .split(',')
      .filter(Boolean)
      .map((kv) => {
        const [k, v] = kv.split('=');
        return [k, v === 'null' ? null : Number(v)];
      }),
  );
}

type Evaluation = Awaited<ReturnType<Trainer['evaluate']>>;
type Attack = Awaited<ReturnType<Trainer['attack']>>;

/** One factory: train with its recommended run (or the overrides), evaluate before and after, attack the result. */
async function measure(model: CausalLM, data: { train: PackedSequence[]; heldOut: PackedSequence[] }, factory: FactoryName) {
  const recommended = RECOMMENDED_RUNS[factory];
  const options: TrainerOptions = {
    factory,
    factoryOptions: { ...DEFAULT_FACTORY_OPTIONS[factory], ...OVERRIDES },
    batchSize: BATCH,
    learningRate: LR ?? recommended.learningRate,
    warmupSteps: Math.round(STEPS / 10),
    totalSteps: STEPS,
    privacySchedule: scheduleForRun(recommended.privacySchedule, recommended.privacyRamp, STEPS) ?? undefined,
    seed: 7,
    cloak: { seed: 7, ...CLOAK },
  };
  const trainer = new Trainer(model, data, options);
  try {
    const before = await trainer.evaluate();
    const started = Date.now();
    let last = 0;
    for (let s = 0; s < STEPS; s++) {
      last = (await trainer.step()).loss;
      if ((s + 1) % 25 === 0) console.log(`${factory}: step ${s + 1}/${STEPS} loss ${last.toFixed(4)}`);
    }
    const minutes = (Date.now() - started) / 60000;
    const after = await trainer.evaluate();
    const attack = ATTACK_STEPS > 0 ? await trainer.attack({ steps: ATTACK_STEPS }) : null;
    const { factoryOptions, learningRate, privacySchedule } = options;
    return {
      factory,
      steps: STEPS,
      minutes,
      factoryOptions,
      learningRate,
      privacySchedule,
      cloak: CLOAK,
      before,
      after,
      attack,
      finalLoss: last,
    };
  } finally {
    trainer.dispose();
  }
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
const arrow = (b: number, a: number, f: (v: number) => string) => `${f(b)} → **${f(a)}**`;

/** The markdown table of the measured rows (before → after training, and the attacks on the result). */
function table(rows: { factory: string; steps: number; before: Evaluation; after: Evaluation; attack: Attack | null }[]): string {
  const attackCell = (a: Attack | null) =>
    a
      ? `${pct(a.linear.recoveryRate)} / ${pct(a.mlp.recoveryRate)} (clean ${pct(a.linearClean.recoveryRate)} / ${pct(a.mlpClean.recoveryRate)})`
      : 'not run';
  return [
    '| factory | steps | NN-FR cosine | NN-FR L2 | next-token accuracy, student (teacher) | drop (points) | perplexity ratio | top-1 agreement | mean KL | learned attack: linear / MLP recovery (clean) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows
      .map(({ factory, steps, before: b, after: a, attack }) =>
        [
          `\`${factory}\``,
          steps,
          arrow(b.nearestNeighbourFailureRate, a.nearestNeighbourFailureRate, pct),
          arrow(b.nearestNeighbourFailureRateL2, a.nearestNeighbourFailureRateL2, pct),
          `${arrow(b.studentAccuracy, a.studentAccuracy, pct)} (${pct(a.teacherAccuracy)})`,
          arrow(b.accuracyDropPoints, a.accuracyDropPoints, (v) => v.toFixed(2)),
          arrow(b.perplexityRatio, a.perplexityRatio, (v) => v.toFixed(3)),
          arrow(b.top1Agreement, a.top1Agreement, pct),
          arrow(b.meanKL, a.meanKL, (v) => v.toFixed(4)),
          attackCell(attack),
        ].join(' | '),
      )
      .map((line) => `| ${line} |`),
  ].join('\n');
}

async function main(): Promise<void> {
  const ctx = await init();
  const { model, tokenizer } = await loadModelDir(MODEL_DIR);
  const data = packKjv(tokenizer, SEQ_LEN, HELD_OUT, model.config.vocabSize);
  const rows = [];
  for (const factory of FACTORY_NAMES) {
    if (ONLY && ONLY !== factory) continue;
    const row = await measure(model, data, factory);
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  mkdirSync('docs/measurements', { recursive: true });
  const info = `${ctx.adapter.info.vendor} ${ctx.adapter.info.architecture}`;
  const date = new Date().toISOString().slice(0, 10);
  const suffix = `-${args.get('tag') ?? 'recommended'}`;
  const record = { adapter: info, date, model: MODEL_DIR, seqLen: SEQ_LEN, heldOutSequences: data.heldOut.length, rows };
  writeFileSync(`docs/measurements/privacy-utility${suffix}.json`, `${JSON.stringify(record, null, 2)}\n`);
  const text = table(rows);
  writeFileSync(
    `docs/measurements/privacy-utility${suffix}.md`,
    `Measured by \`npm run measure-privacy\` on ${info}, ${date}; held-out text: Jude and Revelation. ` +
      `Each cell: before training → after. The attack trains ${ATTACK_STEPS} steps on transformed training text (fresh noise each batch) ` +
      `and on clean embeddings, and is scored on the held-out text.\n\n${text}\n`,
  );
  console.log(text);
  model.dispose();
}

await main();
