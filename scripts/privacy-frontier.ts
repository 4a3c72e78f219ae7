/**
 * `npm run privacy-frontier`: sweeps the privacy weight of each loss factory on the default model
 * and measures every point on held-out text (Jude and Revelation; training on Psalms, Proverbs,
 * John and Romans): utility against the true next token (the teacher's and the student's
 * accuracy, the drop in points, the perplexity ratio, top-1 agreement, KL) and privacy (NN-FR by
 * cosine and by L2, and a learned linear inversion attack's token recovery through the transform,
 * beside the same attack on clean embeddings). Each point trains with the factory's recommended
 * run settings (`RECOMMENDED_RUNS`: learning rate and privacy-weight schedule) and its options'
 * recommended values, with the swept knob changed. Writes `docs/measurements/privacy-frontier
 * {-TAG}.{json,md,svg}` (the chart: `./frontier-chart.ts`).
 *
 *   npm run privacy-frontier -- [--model DIR] [--steps N] [--only f1,f2] [--values "f=v1,v2;g=v3"]
 *     [--attack-steps N] [--held-out N] [--seq-len T] [--tag TAG] [--out DIR]
 *   npm run privacy-frontier -- --merge a.json,b.json [--tag TAG] [--out DIR]   (one table from sweeps run apart)
 *
 * The defaults are sized for a loaded 2-core machine with a software adapter (about 25 minutes on
 * the default model); a GPU affords more steps and points.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { FACTORY_NAMES, RECOMMENDED_RUNS, DEFAULT_FACTORY_OPTIONS, type FactoryName } from '../src/factories/options';
import { scheduleForRun } from '../src/factories/schedule';
import { cleanEmbeddings, inversionAttack, transformedEmbeddings, type InversionAttackResult } from '../src/eval/inversionAttack';
import { init, Trainer, type EvaluationReport, type PackedSequence } from '../src/index';
import { frontierSvg, type FrontierPoint } from './frontier-chart';
import { loadModelDir, packKjv } from './privacy-data';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const STEPS = Number(args.get('steps') ?? 40);
const ATTACK_STEPS = Number(args.get('attack-steps') ?? 150);
const HELD_OUT = Number(args.get('held-out') ?? 16);
const SEQ_LEN = Number(args.get('seq-len') ?? 64);
const BATCH = 4;
const ONLY = args.get('only')?.split(',');
const TAG = args.get('tag');
const OUT_DIR = args.get('out') ?? 'docs/measurements';

/** Per factory, the swept privacy knob: its name, its values, and the options it sets (over the recommended ones). */
const KNOBS: Record<FactoryName, { name: string; values: number[]; options: (v: number) => Record<string, unknown> }> = {
  crossEntropyDistillation: {
    name: 'wACS (wMNP = wACS / 10)',
    values: [0.3, 0.6, 1, 2],
    options: (v) => ({ absoluteCosineSimilarityPenaltyWeight: v, medianNormPenaltyWeight: v / 10 }),
  },
  mutualInformationCrossEntropyDistillation: {
    name: 'wACS (wMNP = wACS / 10)',
    values: [0.6, 2],
    options: (v) => ({ absoluteCosineSimilarityPenaltyWeight: v, medianNormPenaltyWeight: v / 10 }),
  },
  distillation: { name: 'alpha', values: [0.001, 0.01, 0.1], options: (v) => ({ alpha: v }) },
  mutualInformationDistillation: { name: 'alpha', values: [0.01, 0.4], options: (v) => ({ alpha: v }) },
};

/** `--values "f=v1,v2;g=v3"` replaces those factories' knob values. */
for (const part of (args.get('values') ?? '').split(';').filter(Boolean)) {
  const [f, list] = part.split('=');
  if (!(f in KNOBS)) throw new Error(`--values: unknown factory '${f}' (known: ${FACTORY_NAMES.join(', ')})`);
  KNOBS[f as FactoryName].values = list.split(',').map(Number);
}

interface PointRow {
  factory: FactoryName;
  knob: number;
  factoryOptions: Record<string, unknown>;
  learningRate: number;
  privacySchedule: unknown;
  steps: number;
  finalLoss: number;
  evaluation: EvaluationReport;
  attack: InversionAttackResult;
  minutes: number;
  /** Wall seconds of the training steps, the evaluation and the attack. */
  seconds: { train: number; evaluate: number; attack: number };
}

const attackOptions = { kind: 'linear' as const, steps: ATTACK_STEPS, batchSize: 8, seed: 3 };

async function trainPoint(
  model: Awaited<ReturnType<typeof loadModelDir>>['model'],
  data: { train: PackedSequence[]; heldOut: PackedSequence[]; attackTrain: PackedSequence[] },
  factory: FactoryName,
  knob: number,
): Promise<PointRow> {
  const started = Date.now();
  const recommended = RECOMMENDED_RUNS[factory];
  const factoryOptions = { ...DEFAULT_FACTORY_OPTIONS[factory], ...KNOBS[factory].options(knob) };
  const privacySchedule = scheduleForRun(recommended.privacySchedule, recommended.privacyRamp, STEPS);
  const trainer = new Trainer(
    model,
    { train: data.train, heldOut: data.heldOut },
    {
      factory,
      factoryOptions,
      batchSize: BATCH,
      learningRate: recommended.learningRate,
      warmupSteps: Math.round(STEPS / 10),
      totalSteps: STEPS,
      privacySchedule,
      seed: 7,
      cloak: { seed: 7 },
    },
  );
  try {
    let finalLoss = Number.NaN;
    for (let s = 0; s < STEPS; s++) finalLoss = (await trainer.step()).loss;
    const trained = Date.now();
    const evaluation = await trainer.evaluate();
    const evaluated = Date.now();
    const attack = await inversionAttack(
      transformedEmbeddings(model, trainer.transform, 11),
      { train: data.attackTrain, heldOut: data.heldOut },
      model.config.vocabSize,
      attackOptions,
    );
    return {
      factory,
      knob,
      factoryOptions,
      learningRate: recommended.learningRate,
      privacySchedule,
      steps: STEPS,
      finalLoss,
      evaluation,
      attack,
      minutes: (Date.now() - started) / 60000,
      seconds: { train: (trained - started) / 1000, evaluate: (evaluated - trained) / 1000, attack: (Date.now() - evaluated) / 1000 },
    };
  } finally {
    trainer.dispose();
  }
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

function markdown(rows: PointRow[], meta: Meta): string {
  const { baseline, cleanAttack: clean, settings } = meta;
  const header = `Measured by \`npm run privacy-frontier\` on ${meta.adapter}, ${meta.date} (${meta.minutes.toFixed(0)} min): model \`${meta.model.dir}\` (vocab ${meta.model.config.vocabSize}, d ${meta.model.config.hiddenSize}); each point ${settings.steps} steps of ${settings.batchSize} x ${settings.seqLen} tokens with the factory's recommended learning rate and privacy-weight schedule; held out: ${settings.heldOutSequences} sequences of Jude and Revelation; linear attack trained ${settings.attack.steps} steps of ${settings.attack.batchSize} sequences on transformed training text (fresh noise).`;
  const lines = [
    header,
    '',
    `Before training (the cloak near the identity): teacher next-token accuracy ${pct(baseline.teacherAccuracy)}, NN-FR ${pct(baseline.nearestNeighbourFailureRate)}; the linear attack recovers ${pct(clean.recoveryRate)} of held-out tokens from clean embeddings (always guessing the most frequent token: ${pct(clean.majorityRate)}).`,
    '',
    '| factory | knob | NN-FR (cos) | NN-FR (L2) | attack recovery | student acc. | acc. drop (pt) | ppl ratio | top-1 agreement | mean KL | min |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => {
      const e = r.evaluation;
      return `| \`${r.factory}\` | ${KNOBS[r.factory].name.split(' ')[0]}=${r.knob} | ${pct(e.nearestNeighbourFailureRate)} | ${pct(e.nearestNeighbourFailureRateL2)} | ${pct(r.attack.recoveryRate)} | ${pct(e.studentAccuracy)} | ${e.accuracyDropPoints.toFixed(2)} | ${e.perplexityRatio.toFixed(3)} | ${pct(e.top1Agreement)} | ${e.meanKL.toFixed(3)} | ${r.minutes.toFixed(1)} |`;
    }),
  ];
  const hits = rows.filter((r) => r.evaluation.nearestNeighbourFailureRate >= 0.93 && r.evaluation.accuracyDropPoints < 1);
  lines.push(
    '',
    hits.length
      ? `Points reaching the NN-FR target (>= 93% with < 1 point of accuracy drop): ${hits.map((r) => `${r.factory} ${r.knob} (NN-FR ${pct(r.evaluation.nearestNeighbourFailureRate)}, drop ${r.evaluation.accuracyDropPoints.toFixed(2)} pt, attack ${pct(r.attack.recoveryRate)})`).join('; ')}.`
      : 'No point reaches the NN-FR target (>= 93% with < 1 point of accuracy drop).',
  );
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const ctx = await init();
  const { model, tokenizer, dir } = await loadModelDir(args.get('model') ?? 'models/default');
  const packed = packKjv(tokenizer, SEQ_LEN, HELD_OUT, model.config.vocabSize);
  const data = { ...packed, attackTrain: packed.train.slice(0, 512) };
  const factories = FACTORY_NAMES.filter((f) => !ONLY || ONLY.includes(f));
  const started = Date.now();
  console.log(
    `model ${dir}: vocab ${model.config.vocabSize}, d ${model.config.hiddenSize}, ${model.config.numLayers} blocks; ${packed.train.length} training / ${packed.heldOut.length} held-out sequences of ${SEQ_LEN}`,
  );
  // The baseline: an untrained cloak (near the identity), and the attack on clean embeddings.
  const probe = new Trainer(model, packed, {
    factory: 'crossEntropyDistillation',
    factoryOptions: DEFAULT_FACTORY_OPTIONS.crossEntropyDistillation,
    batchSize: BATCH,
    cloak: { seed: 7 },
  });
  const baseline = await probe.evaluate();
  probe.dispose();
  const clean = await inversionAttack(
    cleanEmbeddings(model),
    { train: data.attackTrain, heldOut: data.heldOut },
    model.config.vocabSize,
    attackOptions,
  );
  console.log(
    `baseline: teacher accuracy ${pct(baseline.teacherAccuracy)}; attack on clean embeddings ${pct(clean.recoveryRate)} (${clean.seconds.toFixed(0)} s)`,
  );
  const info = `${ctx.adapter.info.vendor} ${ctx.adapter.info.architecture}`.trim();
  const meta: Meta = {
    adapter: info,
    date: new Date().toISOString().slice(0, 10),
    minutes: 0,
    model: { dir: dir.replace(`${process.cwd()}/`, ''), config: model.config },
    settings: { steps: STEPS, batchSize: BATCH, seqLen: SEQ_LEN, heldOutSequences: packed.heldOut.length, attack: attackOptions },
    knobs: Object.fromEntries(factories.map((f) => [f, KNOBS[f].name])),
    baseline,
    cleanAttack: clean,
  };
  const rows: PointRow[] = [];
  for (const factory of factories) {
    for (const knob of KNOBS[factory].values) {
      const row = await trainPoint(model, data, factory, knob);
      const e = row.evaluation;
      console.log(
        `${factory} ${KNOBS[factory].name.split(' ')[0]}=${knob}: NN-FR ${pct(e.nearestNeighbourFailureRate)} (L2 ${pct(e.nearestNeighbourFailureRateL2)}), attack ${pct(row.attack.recoveryRate)}, accuracy ${pct(e.studentAccuracy)} (drop ${e.accuracyDropPoints.toFixed(2)} pt), ppl x${e.perplexityRatio.toFixed(3)}, agreement ${pct(e.top1Agreement)} [${row.minutes.toFixed(1)} min: train ${row.seconds.train.toFixed(0)} s, evaluate ${row.seconds.evaluate.toFixed(0)} s, attack ${row.seconds.attack.toFixed(0)} s]`,
      );
      rows.push(row);
      // Written after every point: a sweep cut short keeps what it measured.
      meta.minutes = (Date.now() - started) / 60000;
      writeOutputs(meta, rows);
    }
  }
  console.log(markdown(rows, meta));
  model.dispose();
}

/** What the outputs say besides the rows. */
interface Meta {
  adapter: string;
  date: string;
  minutes: number;
  model: { dir: string; config: { vocabSize: number; hiddenSize: number } };
  settings: { steps: number; batchSize: number; seqLen: number; heldOutSequences: number; attack: { steps: number; batchSize: number } };
  knobs: Record<string, string>;
  baseline: EvaluationReport;
  cleanAttack: InversionAttackResult;
}

/** Writes `<out>/privacy-frontier{-TAG}.{json,md,svg}`. */
function writeOutputs(meta: Meta, rows: PointRow[]): void {
  const base = `${OUT_DIR}/privacy-frontier${TAG ? `-${TAG}` : ''}`;
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(`${base}.json`, `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown(rows, meta));
  const points: FrontierPoint[] = rows.map((r) => ({
    factory: r.factory,
    knob: r.knob,
    accuracyDropPoints: r.evaluation.accuracyDropPoints,
    nnfr: r.evaluation.nearestNeighbourFailureRate,
    attackRecovery: r.attack.recoveryRate,
  }));
  const title = `Privacy vs utility on ${meta.model.dir} (${meta.settings.steps} steps per point)`;
  writeFileSync(`${base}.svg`, frontierSvg(points, meta.cleanAttack.recoveryRate, title));
}

/** `--merge a.json,b.json`: one table and chart from sweeps run apart (e.g. in parallel, each with --only). */
function merge(files: string[]): void {
  const parts = files.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Meta & { rows: PointRow[] });
  const meta: Meta = {
    ...parts[0],
    minutes: Math.max(...parts.map((p) => p.minutes)),
    knobs: Object.assign({}, ...parts.map((p) => p.knobs)),
  };
  const order = (r: PointRow) => FACTORY_NAMES.indexOf(r.factory);
  const rows = parts.flatMap((p) => p.rows).sort((a, b) => order(a) - order(b) || a.knob - b.knob);
  for (const k of Object.keys(KNOBS) as FactoryName[]) if (meta.knobs[k]) KNOBS[k].name = meta.knobs[k];
  writeOutputs(meta, rows);
  console.log(markdown(rows, meta));
}

if (args.has('merge')) merge(args.get('merge')!.split(','));
else await main();
