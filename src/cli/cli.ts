/**
 * `npm run train`: trains a Stained Glass Transform for a Hugging Face causal LM folder in Node
 * (Dawn), with the same {@link TrainerService} a page drives in its Web Worker, and writes
 * `cloak.safetensors`, `checkpoint.safetensors` and `report.json`. Run `npm run train -- --help`.
 *
 * Arguments are parsed with Node's own `util.parseArgs` and the progress bar is a line redrawn
 * on stderr, so the CLI adds no dependency to a package whose main users are browsers.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  FACTORY_NAMES,
  RECOMMENDED_RUNS,
  factoryOptionsHelp,
  isFactoryName,
  type FactoryName,
  type RecommendedRun,
} from '../factories/options';
import { PRIVACY_SCHEDULE_SHAPES, scheduleForRun, type PrivacyScheduleShape, type PrivacyWeightSchedule } from '../factories/schedule';
import { SAFETENSORS_INDEX_NAME, parseSafetensorsIndex } from '../models/shards';
import { parseSafetensors } from '../models/safetensors';
import { parseModelConfig } from '../models/config';
import type { InversionAttackReport } from '../eval/privacyUtility';
import { checkMemory, formatBytes, weightDtypes, type MemoryEstimate } from '../train/memory';
import {
  TrainerService,
  type AdapterSummary,
  type ConfigureSummary,
  type EvaluationResult,
  type LoadModelArgs,
  type MetricsEvent,
  type ModelSummary,
  type ProgressEvent,
  type StepEvent,
  type TrainingConfig,
} from '../worker/workerApi';
import { planOutput, writeRun, type OutputFile, type OutputPlan } from './outputs';
import { RunError, UsageError } from './usage';
import { SgtError, isSgtError } from '../gpu/errors';
import { getContext } from '../gpu/context';

export { RunError, UsageError } from './usage';

/** Where {@link main} writes: the progress bar and notes go to `stderr`, results to `stdout`. */
export interface CliIO {
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  /** Redraw the progress bar in place (a terminal) rather than print a line every tenth of the run. Default: whether stderr is a TTY. */
  interactive?: boolean;
}

/** What `report.json` holds. */
export interface TrainingReport {
  createdAt: string;
  adapter: AdapterSummary;
  model: ModelSummary & { dir: string };
  data: Omit<
    ConfigureSummary,
    'factoryOptions' | 'cloak' | 'cloakParameterCount' | 'maxSteps' | 'memory' | 'learningRate' | 'privacySchedule'
  > & { source: string };
  hyperparameters: {
    factory: FactoryName;
    factoryOptions: Record<string, unknown>;
    cloak: Record<string, unknown>;
    cloakParameterCount: number;
    steps: number;
    batchSize: number;
    seqLen: number;
    learningRate: number;
    warmupSteps: number;
    schedule: string;
    /** The privacy-weight schedule (`--privacy-schedule`, `--privacy-ramp`, `--privacy-start`), or null (constant). */
    privacySchedule: ConfigureSummary['privacySchedule'];
    maxGradNorm: number;
    seed: number;
    heldOutFraction: number;
    evaluateEvery: number;
  };
  /** The last step's loss and the final evaluation (`metrics` is null when the run failed before it). */
  final: {
    step: number;
    loss: number | null;
    components: Record<string, number>;
    metrics: EvaluationResult | null;
    /** The learned inversion attacks on the final transform (`--attack-steps`; null when skipped or failed). */
    attack: InversionAttackReport | null;
  };
  /** Every evaluation made during the run (`--eval-every`), then the final one. */
  metricsHistory: Omit<MetricsEvent, 'type'>[];
  /** Null when no step finished. */
  lossCurve: {
    first: number;
    last: number;
    min: number;
    max: number;
    /** Means over the first and the last tenth of the steps (at least one step each). */
    meanFirstTenth: number;
    meanLastTenth: number;
    /** At most 200 `[step, loss]` points, evenly spaced over the run. */
    points: [number, number][];
  } | null;
  seconds: number;
  meanTokensPerSecond: number;
  /**
   * GPU memory in bytes: the model's weights on the GPU (its file's tensor bytes), the buffer
   * pool's peak from the model's load to the end of the run (steps and evaluations included: the
   * bytes handed out at once, and with the freed buffers it keeps for reuse), the estimate checked
   * before the run (`estimateMemory`, of the bytes handed out), and the budget (`--memory-budget`, or null).
   */
  memory: {
    weightBytes: number;
    peakBytes: number;
    heldPeakBytes: number;
    estimatedPeakBytes: number | null;
    estimate: MemoryEstimate | null;
    budget: number | null;
  };
  /** What the run warned about (e.g. a held-out set too small to measure anything). */
  warnings: string[];
  /** Present when the run failed after training started: what failed. The files it could write are in `files`. */
  error?: string;
  /** The files written in the run's folder (this report among them). */
  files: OutputFile[];
}

/**
 * What {@link main} returns: `help: true` when it only printed (the help text, or `version` for
 * `--version`), else where it wrote and the report.
 */
export type CliResult = { help: true; version?: string } | { help: false; outDir: string; files: string[]; report: CompletedReport };

/** The report of a run that completed: its final metrics and loss curve are there. */
export type CompletedReport = TrainingReport & {
  final: TrainingReport['final'] & { metrics: EvaluationResult };
  lossCurve: NonNullable<TrainingReport['lossCurve']>;
};

const DEFAULTS = {
  factory: 'crossEntropyDistillation' as FactoryName,
  batchSize: 4,
  seqLen: 64,
  warmupSteps: 0,
  seed: 0,
  evalEvery: 0,
  attackSteps: 60,
  heldOutFraction: 0.1,
  maxGradNorm: 1,
};

/** The `--help` text. */
export function helpText(): string {
  return `Train a Stained Glass Transform for a causal LM on WebGPU (Node, Dawn).

Usage: npm run train -- [--model DIR] [--steps N] [--out DIR] [options]
       sgt-train [--model DIR] [--steps N] [--out DIR] [options]

Main:
  --model DIR              Hugging Face model folder: config.json, model.safetensors (or the
                           shards model.safetensors.index.json names), and
                           tokenizer.json (+ tokenizer_config.json) if the model has one.
                           Without tokenizer.json the byte-level tokenizer is used, which needs a
                           vocabulary of at least 259 ids; otherwise pass --tokens-file.
                           Default: the embedded default model (models/default).
  --steps N                optimizer steps to train (>= 1; default ${DEFAULT_STEPS})
  --out DIR                output folder (created; checked before training): cloak.safetensors,
                           checkpoint.safetensors, report.json. Default: a new folder per run,
                           runs/<start time>/ (e.g. runs/2026-12-03T10-15-00/), with runs/latest
                           a link to the newest

Data (at most one; default: a small built-in English corpus):
  --text FILE              UTF-8 text; paragraphs (separated by blank lines) are documents
  --tokens-file FILE       token ids (packed as given): a JSON array of documents, each an array
                           of ids, or one JSON array of ids; or plain text, whitespace-separated
                           ids, one document per line. For a model without a tokenizer

Training:
  --factory NAME           loss factory (default ${DEFAULTS.factory}): ${FACTORY_NAMES.join(', ')}
  --set key=value          a factory option (repeatable); the value is read as JSON when it parses
                           (numbers, true, false, null), else as a string
  --cloak key=value        a cloak option (repeatable): numLayers, encoderWidth, numHeads, mlpRatio,
                           sMin, sMax, shallow, meanBound, rhoInit, seed, initStd
  --batch-size B           sequences per step (default ${DEFAULTS.batchSize}; some factories need it even: see below)
  --seq-len T              tokens per sequence (default ${DEFAULTS.seqLen}, at most the model's positions)
  --lr X                   peak learning rate (default: the factory's recommended one, see below);
                           cosine decay to 0 over --steps
  --privacy-schedule S     how the privacy terms' weights reach theirs: ${PRIVACY_SCHEDULE_SHAPES.join(', ')}
                           (default: the factory's recommended one); they start at --privacy-start
                           times their weight and ramp over the first --privacy-ramp share of --steps
  --privacy-ramp F         the ramp's share of --steps, in [0, 1] (default: the factory's recommended one)
  --privacy-start S        the privacy weights' scale at step 0, in [0, 1] (default 0)
  --warmup-steps N         linear warm-up steps (default ${DEFAULTS.warmupSteps})
  --max-grad-norm X        gradient clipping norm (default ${DEFAULTS.maxGradNorm})
  --seed S                 seed of the data order and the noise (default ${DEFAULTS.seed})
  --held-out-fraction F    share of the sequences held out for the metrics (default ${DEFAULTS.heldOutFraction})
  --eval-every K           evaluate every K steps (default ${DEFAULTS.evalEvery}: only at the end)
  --eval-batches N         held-out batches per evaluation (default: all)
  --attack-steps N         training steps of each learned inversion attack run at the end (a
                           linear probe and a window MLP, through the transform and on clean
                           embeddings; report.json final.attack); 0 skips them (default ${DEFAULTS.attackSteps})
  --memory-budget SIZE     the most GPU memory the run may hold at once, e.g. 1.5GiB, 800MiB,
                           2GB or bytes. The run is estimated before any GPU work (weights,
                           activations, optimizer state) and refused (exit 2), saying what to
                           lower, when it exceeds the budget, or when one tensor would exceed the
                           device's storage binding or buffer size (always checked)
  --quiet                  no progress output (warnings and errors are still printed)
  -h, --help               this text
  --version                the version of sgt-webgpu

Exit status: 0 when trained and written; 2 for a mistake in the command line or in the files it
names (nothing is trained); 1 when the run fails after training started (report.json then holds
the error, beside whatever else could be written).

Factory options (--set key=value), each with the value used when it is not set: the reference's
default, or for a required option (*) the recommended value for the default model:
${factoryOptionsHelp()}

Recommended run settings per factory (the defaults of --lr, --privacy-schedule, --privacy-ramp):
${FACTORY_NAMES.map((f) => `    ${f}: lr ${RECOMMENDED_RUNS[f].learningRate}, ${RECOMMENDED_RUNS[f].privacySchedule} ramp over ${RECOMMENDED_RUNS[f].privacyRamp} of the steps`).join('\n')}
`;
}

/** A small English corpus (written for this package) for smoke runs; a later default corpus will replace it. */
export const DEFAULT_CORPUS: readonly string[] = [
  'The river runs slowly past the old mill, where the water wheel has not turned for many years. In spring the banks fill with yellow flowers, and children come down from the village to throw sticks into the current and race them to the bridge.',
  'A good recipe for bread needs only flour, water, salt and yeast, but it also needs patience. The dough should rest until it has doubled in size, and the oven should be hot before the loaf goes in. The smell of baking bread fills the whole house.',
  'The library opens at nine in the morning and closes at six in the evening. Students work at the long wooden tables near the windows, while older readers prefer the quiet armchairs by the fireplace. Books may be borrowed for three weeks at a time.',
  'Weather in the mountains changes quickly. A clear blue sky at breakfast can turn into rain and wind by noon, so experienced walkers always carry a warm jacket, a map and enough water. They also tell someone where they are going and when they expect to return.',
  'The train left the station exactly on time. Through the windows the passengers watched the city give way to fields, then to forests, and finally to the grey sea. Some read newspapers, some slept, and a small boy counted every cow he could see.',
  'Learning a new language takes practice every day. It helps to listen to the radio, to read simple stories, and to speak with people who are patient with mistakes. After a few months the strange sounds begin to turn into words, and the words into meaning.',
  "The market on the square sells fruit, vegetables, cheese and fresh fish. Traders arrive before dawn to set up their stalls, and by eight o'clock the square is full of voices. The best tomatoes are usually gone before ten.",
  'Computers follow instructions exactly as they are written. A program that works for one input may fail for another, which is why careful programmers test their code with many different examples before they trust it with anything important.',
  'In the evening the lighthouse keeper climbs the narrow stairs to light the lamp. Its beam sweeps across the dark water every few seconds, warning ships away from the rocks. On stormy nights he stays awake until morning, listening to the waves.',
  'The garden behind the house is small but full of life. Bees visit the lavender, birds nest in the old apple tree, and a family of hedgehogs lives under the shed. Every year the owner plants beans, peas and potatoes in neat rows.',
  'The museum keeps a collection of old maps drawn by sailors and explorers. Some show coasts that do not exist, and others leave large empty spaces marked only with the words unknown lands. Visitors spend hours comparing them with modern maps.',
  'When the snow finally melted, the road to the farm was open again. The farmer drove to town for the first time in weeks, bought seeds and tools, and stopped at the cafe for a cup of coffee and a long conversation with his neighbours.',
];

function parsePair(flag: string, text: string): [string, unknown] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`${flag} expects key=value, got '${text}'`);
  const key = text.slice(0, eq).trim();
  const raw = text.slice(eq + 1).trim();
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // Not JSON: an unquoted string, which the options checks will judge.
  }
  return [key, value];
}

function intArg(flag: string, raw: string | undefined, fallback: number | undefined, min: number): number {
  if (raw === undefined) {
    if (fallback === undefined) throw new UsageError(`${flag} is required (see --help)`);
    return fallback;
  }
  const v = Number(raw);
  if (!/^[+-]?\d+$/.test(raw.trim()) || !Number.isSafeInteger(v) || v < min)
    throw new UsageError(`${flag} must be an integer >= ${min}, got '${raw}'`);
  return v;
}

function numArg(flag: string, raw: string | undefined, fallback: number, check: (v: number) => boolean, what: string): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || !check(v)) throw new UsageError(`${flag} must be ${what}, got '${raw}'`);
  return v;
}

function readJsonFile(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`${what} ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The embedded default model, used without --model. This file is `src/cli/cli.ts` in a checkout
 * and `dist/cli/cli.js` in the package: both two folders below the package root.
 */
export const DEFAULT_MODEL_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../models/default');
/** Steps without --steps. */
const DEFAULT_STEPS = 50;
/** Fewer held-out sequences than this measure too little: the run warns. */
const MIN_HELD_OUT_SEQUENCES = 4;

/** The version in the package's package.json (two folders up, like the default model). */
export function packageVersion(): string {
  const path = resolve(dirname(fileURLToPath(import.meta.url)), '../../package.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}

/** A file's bytes in a buffer of their own (a Buffer may be a view into a shared pool). */
function readBytes(path: string): Uint8Array {
  const buf = readFileSync(path);
  const bytes = new Uint8Array(buf.byteLength);
  bytes.set(buf);
  return bytes;
}

/**
 * The folder's weights: `model.safetensors`, or the shards `model.safetensors.index.json` names
 * (every one checked to exist before any is read).
 */
function readModelWeights(dir: string): LoadModelArgs['weights'] {
  const weightsPath = join(dir, 'model.safetensors');
  if (existsSync(weightsPath)) return readBytes(weightsPath);
  const indexPath = join(dir, SAFETENSORS_INDEX_NAME);
  if (!existsSync(indexPath)) throw new UsageError(`--model ${dir}: no model.safetensors (nor ${SAFETENSORS_INDEX_NAME}) in that folder`);
  let index: ReturnType<typeof parseSafetensorsIndex>;
  try {
    index = parseSafetensorsIndex(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new UsageError(`--model ${dir}: ${(e as Error).message}`);
  }
  const missing = index.shards.filter((shard) => !existsSync(join(dir, shard)));
  if (missing.length) {
    throw new UsageError(
      `--model ${dir}: missing shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')} named by ${SAFETENSORS_INDEX_NAME}`,
    );
  }
  const shards: Record<string, Uint8Array> = {};
  for (const shard of index.shards) shards[shard] = readBytes(join(dir, shard));
  return { index: readFileSync(indexPath, 'utf8'), shards };
}

/** The model folder's files, checked before any GPU work. */
function readModelDir(dir: string): LoadModelArgs {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--model ${dir}: no such folder`);
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath))
    throw new UsageError(
      `--model ${dir}: no config.json in that folder (expected a Hugging Face model folder with config.json and model.safetensors or its shards)`,
    );
  const config = readJsonFile(configPath, 'config.json');
  const weights = readModelWeights(dir);
  const tokenizerPath = join(dir, 'tokenizer.json');
  const tokenizerConfigPath = join(dir, 'tokenizer_config.json');
  return {
    config,
    weights,
    tokenizerJson: existsSync(tokenizerPath) ? readFileSync(tokenizerPath, 'utf8') : undefined,
    tokenizerConfig: existsSync(tokenizerConfigPath) ? readFileSync(tokenizerConfigPath, 'utf8') : undefined,
  };
}

/**
 * A --tokens-file: a JSON array of documents (arrays of ids) or one JSON array of ids, else plain
 * text with whitespace-separated ids, one document per non-empty line.
 */
function readTokensFile(path: string): number[][] {
  if (!existsSync(path)) throw new UsageError(`--tokens-file ${path}: no such file`);
  const text = readFileSync(path, 'utf8');
  const expected =
    `--tokens-file ${path} must hold token ids: a non-empty JSON array of documents (each an array of integer ids), ` +
    'one JSON array of integer ids, or whitespace-separated integer ids with one document per line';
  const isIds = (d: unknown): d is number[] => Array.isArray(d) && d.length > 0 && d.every((id) => Number.isInteger(id));
  if (/^\s*\[/.test(text)) {
    let docs: unknown;
    try {
      docs = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`--tokens-file ${path} is not valid JSON: ${(e as Error).message}`);
    }
    if (isIds(docs)) return [docs];
    if (!Array.isArray(docs) || docs.length === 0 || !docs.every(isIds)) throw new UsageError(expected);
    return docs;
  }
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const docs = lines.map((line) =>
    line
      .trim()
      .split(/\s+/)
      .map((w) => (/^[+-]?\d+$/.test(w) ? Number(w) : Number.NaN)),
  );
  if (docs.length === 0 || !docs.every(isIds)) throw new UsageError(expected);
  return docs;
}

function readTextFile(path: string): string[] {
  if (!existsSync(path)) throw new UsageError(`--text ${path}: no such file`);
  const docs = readFileSync(path, 'utf8')
    .split(/\r?\n\s*\r?\n/)
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (docs.length === 0) throw new UsageError(`--text ${path} holds no text`);
  return docs;
}

/** A one-line progress bar: redrawn in place on a terminal, else printed every tenth of the run. */
class ProgressBar {
  private lastLine = 0;
  /** A redrawn line is on screen without its newline. */
  private lineOpen = false;
  private readonly started = performance.now();
  constructor(
    private readonly total: number,
    private readonly write: (s: string) => void,
    private readonly interactive: boolean,
  ) {}

  update(e: StepEvent): void {
    const width = 24;
    const filled = Math.round((width * e.step) / this.total);
    const elapsed = (performance.now() - this.started) / 1000;
    const eta = e.step > 0 ? (elapsed / e.step) * (this.total - e.step) : 0;
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${e.step}/${this.total} loss ${e.loss.toFixed(4)} lr ${e.learningRate.toExponential(2)} ${Math.round(e.tokensPerSecond)} tok/s eta ${formatSeconds(eta)}`;
    if (this.interactive) {
      this.write(`\r${line}\x1b[K`);
      this.lineOpen = e.step !== this.total;
      if (!this.lineOpen) this.write('\n');
    } else if (e.step === this.total || e.step - this.lastLine >= Math.max(1, Math.ceil(this.total / 10))) {
      this.lastLine = e.step;
      this.write(`${line}\n`);
    }
  }

  note(text: string): void {
    this.write(this.interactive ? `\r${text}\x1b[K\n` : `${text}\n`);
  }

  /** Ends a redrawn line left open, so that what is printed next (an error) starts on a line of its own. */
  close(): void {
    if (this.lineOpen) this.write('\n');
    this.lineOpen = false;
  }
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
}

function lossCurve(steps: StepEvent[]): TrainingReport['lossCurve'] {
  const losses = steps.map((s) => s.loss);
  const tenth = Math.max(1, Math.floor(losses.length / 10));
  const stride = Math.max(1, Math.ceil(steps.length / 200));
  const points: [number, number][] = steps.filter((_, i) => i % stride === 0 || i === steps.length - 1).map((s) => [s.step, s.loss]);
  return {
    first: losses[0],
    last: losses[losses.length - 1],
    min: Math.min(...losses),
    max: Math.max(...losses),
    meanFirstTenth: mean(losses.slice(0, tenth)),
    meanLastTenth: mean(losses.slice(-tenth)),
    points,
  };
}

/** The command line's values, as `parseArgs` returns them. */
type CliValues = ReturnType<typeof parseCli>['values'];

/**
 * The privacy-weight schedule of `--privacy-schedule`, `--privacy-ramp` (a share of `steps`) and
 * `--privacy-start`, each defaulting to the factory's recommended setting; null for `constant`.
 */
function privacyScheduleArgs(values: CliValues, steps: number, recommended: RecommendedRun): Required<PrivacyWeightSchedule> | null {
  const shape = (values['privacy-schedule'] ?? recommended.privacySchedule) as PrivacyScheduleShape;
  if (!PRIVACY_SCHEDULE_SHAPES.includes(shape))
    throw new UsageError(`--privacy-schedule must be one of ${PRIVACY_SCHEDULE_SHAPES.join(', ')}, got '${shape}'`);
  const inUnit = (v: number) => v >= 0 && v <= 1;
  const ramp = numArg('--privacy-ramp', values['privacy-ramp'], recommended.privacyRamp, inUnit, 'a number in [0, 1]');
  const start = numArg('--privacy-start', values['privacy-start'], 0, inUnit, 'a number in [0, 1]');
  return shape === 'constant' ? null : scheduleForRun(shape, ramp, steps, start);
}

/** The run's options from the command line, checked, with their defaults (no file is read yet). */
function runOptions(values: CliValues) {
  const steps = intArg('--steps', values.steps, DEFAULT_STEPS, 1);
  const factory = (values.factory ?? DEFAULTS.factory) as FactoryName;
  if (!isFactoryName(factory)) throw new UsageError(`--factory must be one of ${FACTORY_NAMES.join(', ')}, got '${factory}'`);
  if (values.text !== undefined && values['tokens-file'] !== undefined)
    throw new UsageError('give at most one of --text and --tokens-file');
  const batchSize = intArg('--batch-size', values['batch-size'], DEFAULTS.batchSize, 1);
  const seqLenArg = values['seq-len'] === undefined ? undefined : intArg('--seq-len', values['seq-len'], undefined, 2);
  const recommended = RECOMMENDED_RUNS[factory];
  const learningRate = numArg('--lr', values.lr, recommended.learningRate, (v) => v > 0, 'a positive number');
  const privacySchedule = privacyScheduleArgs(values, steps, recommended);
  const warmupSteps = intArg('--warmup-steps', values['warmup-steps'], DEFAULTS.warmupSteps, 0);
  const maxGradNorm = numArg('--max-grad-norm', values['max-grad-norm'], DEFAULTS.maxGradNorm, (v) => v > 0, 'a positive number');
  const seed = intArg('--seed', values.seed, DEFAULTS.seed, 0);
  const evaluateEvery = intArg('--eval-every', values['eval-every'], DEFAULTS.evalEvery, 0);
  const evaluateBatches = values['eval-batches'] === undefined ? undefined : intArg('--eval-batches', values['eval-batches'], undefined, 1);
  const attackSteps = intArg('--attack-steps', values['attack-steps'], DEFAULTS.attackSteps, 0);
  const heldOutFraction = numArg(
    '--held-out-fraction',
    values['held-out-fraction'],
    DEFAULTS.heldOutFraction,
    (v) => v >= 0 && v < 1,
    'a number in [0, 1)',
  );
  const factoryOverrides = Object.fromEntries((values.set ?? []).map((p) => parsePair('--set', p)));
  const cloak = Object.fromEntries((values.cloak ?? []).map((p) => parsePair('--cloak', p)));
  return {
    steps,
    factory,
    batchSize,
    seqLenArg,
    learningRate,
    privacySchedule,
    warmupSteps,
    maxGradNorm,
    seed,
    evaluateEvery,
    evaluateBatches,
    attackSteps,
    heldOutFraction,
    factoryOverrides,
    cloak,
    modelDir: resolve(values.model ?? DEFAULT_MODEL_DIR),
    quiet: values.quiet ?? false,
    memoryBudget: values['memory-budget'] === undefined ? undefined : byteSize('--memory-budget', values['memory-budget']),
  };
}

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** A size: bytes, or a number with a unit (`1.5GiB`, `800MB`, `512 MiB`; k/M/G/T alone are binary). */
function byteSize(flag: string, raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$/i.exec(raw);
  const unit = m?.[2].toLowerCase() ?? '';
  const factor = unit === '' ? 1 : (BYTE_UNITS[unit] ?? BYTE_UNITS[unit.endsWith('b') ? unit : `${unit}ib`]);
  const bytes = m && factor ? Math.floor(Number(m[1]) * factor) : Number.NaN;
  if (!(bytes >= 1)) throw new UsageError(`${flag} must be a size such as 1.5GiB, 800MB or a number of bytes, got '${raw}'`);
  return bytes;
}

/** The checked options of a run. */
type RunOptions = ReturnType<typeof runOptions>;

/** The model folder and the training data (a tokens file, a text file or the built-in corpus), read from disk. */
function readInputs(values: CliValues, modelDir: string) {
  const files = readArg(`--model ${modelDir}`, () => readModelDir(modelDir));
  const tokensPath = values['tokens-file'];
  const tokens = tokensPath !== undefined ? readArg(`--tokens-file ${tokensPath}`, () => readTokensFile(resolve(tokensPath))) : undefined;
  const textPath = values.text;
  const text = tokens
    ? undefined
    : textPath !== undefined
      ? readArg(`--text ${textPath}`, () => readTextFile(resolve(textPath)))
      : [...DEFAULT_CORPUS];
  const source = tokens
    ? `tokens-file ${resolve(values['tokens-file']!)}`
    : values.text !== undefined
      ? `text ${resolve(values.text)}`
      : 'built-in corpus';
  return { files, tokens, text, source };
}

/** What the run reads from disk. */
type RunInputs = ReturnType<typeof readInputs>;

/** Runs `read`; a file it cannot read (no permission, a folder where a file belongs) is a usage error naming `what`. */
function readArg<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${what}: ${(e as Error).message}`);
  }
}

/** Errors of the device rather than of the command line's values (codes of the library's typed errors). */
const DEVICE_ERROR_CODES = new Set(['DEVICE_LOST', 'OUT_OF_MEMORY']);

/**
 * Runs a service call that judges the command line's values (the model's files, the factory and
 * cloak options, the lengths): its errors are usage errors, prefixed with `what` when given,
 * except those of the device.
 */
async function judged<T>(what: string | null, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    const code = (e as { code?: unknown } | null)?.code;
    if (e instanceof UsageError || (typeof code === 'string' && DEVICE_ERROR_CODES.has(code))) throw e;
    const message = e instanceof Error ? e.message : String(e);
    throw new UsageError(what ? `${what}: ${message}` : message);
  }
}

/** How the memory check's advice names the settings: the command line's flags. */
const MEMORY_FLAGS = { batchSize: '--batch-size', seqLen: '--seq-len', budget: '--memory-budget' };

/**
 * The run's GPU memory estimate from the folder's config and weight headers, checked against the
 * device's buffer and binding limits and --memory-budget before the model is loaded: a run that
 * cannot fit is a usage error that says what to lower. Null when the files or options cannot be
 * read here (loading and configuring then name what is wrong).
 */
function checkRunMemory(o: RunOptions, inputs: RunInputs): MemoryEstimate | null {
  let options: Parameters<typeof checkMemory>[1];
  try {
    const config = parseModelConfig(inputs.files.config);
    const w = inputs.files.weights;
    const files =
      w instanceof Uint8Array
        ? [parseSafetensors(w)]
        : Object.values((w as { shards: Record<string, Uint8Array> }).shards).map(parseSafetensors);
    options = {
      batchSize: o.batchSize,
      seqLen: o.seqLenArg ?? Math.min(DEFAULTS.seqLen, config.maxPositions),
      factory: o.factory,
      factoryOptions: o.factoryOverrides,
      cloak: o.cloak,
      dtype: weightDtypes(files),
    };
  } catch {
    return null;
  }
  const ctx = getContext();
  try {
    return checkMemory(
      inputs.files.config,
      { ...options, bindingLimit: ctx.bindingLimit },
      { maxBufferSize: ctx.limits.maxBufferSize, bindingLimit: ctx.bindingLimit, budget: o.memoryBudget },
      MEMORY_FLAGS,
    );
  } catch (e) {
    if (isSgtError(e, 'LIMIT_EXCEEDED')) throw new UsageError(e.message);
    return null;
  }
}

/** Creates the device, checks the run's memory, loads the model and configures the trainer; notes the setup on the progress bar. */
async function setUp(service: TrainerService, o: RunOptions, inputs: RunInputs, bar: ProgressBar) {
  const adapter = await service.init();
  const estimate = checkRunMemory(o, inputs);
  const model = await judged(`--model ${o.modelDir}`, () => service.loadModel(inputs.files));
  if (!inputs.tokens && model.tokenizer === 'none') {
    throw new UsageError(
      `--model ${o.modelDir} has no tokenizer.json and its vocabulary (${model.vocabSize} ids) is too small for the byte-level ` +
        'tokenizer (it needs 259): a tokenizer is needed (put tokenizer.json in the folder), or pass pre-tokenized data with --tokens-file',
    );
  }
  const seqLen = o.seqLenArg ?? Math.min(DEFAULTS.seqLen, model.maxPositions);
  const config: TrainingConfig = {
    factory: o.factory,
    factoryOptions: o.factoryOverrides,
    cloak: o.cloak,
    batchSize: o.batchSize,
    seqLen,
    learningRate: o.learningRate,
    privacySchedule: o.privacySchedule,
    warmupSteps: o.warmupSteps,
    totalSteps: o.steps,
    maxSteps: o.steps,
    maxGradNorm: o.maxGradNorm,
    seed: o.seed,
    heldOutFraction: o.heldOutFraction,
    evaluateEvery: o.evaluateEvery,
    evaluateBatches: o.evaluateBatches,
    memoryBudget: o.memoryBudget,
    ...(inputs.tokens ? { tokens: inputs.tokens } : { text: inputs.text }),
  };
  const data = await judged(null, () => service.configure(config));
  if (!o.quiet) {
    bar.note(
      `${model.type}: ${model.layers} layers, d=${model.hiddenSize}, vocab ${model.vocabSize}, ${model.parameterCount} parameters; ` +
        `${data.trainSequences} training / ${data.heldOutSequences} held-out sequences of ${seqLen} (${data.tokenizer}); ` +
        `${o.factory}, cloak of ${data.cloakParameterCount} parameters; ${adapter.vendor || adapter.description || 'WebGPU'}` +
        (estimate
          ? `; GPU memory: about ${formatBytes(estimate.totalBytes)} at the peak (weights ${formatBytes(estimate.weightBytes)})`
          : ''),
    );
  }
  return { adapter, model, data, seqLen, estimate: data.memory ?? estimate };
}

/** A share as the demo shows it: `12.5%`. */
function percent(share: number): string {
  return `${(100 * share).toFixed(1)}%`;
}

/** NN-FR, agreement and KL on one line, as the progress notes and the summary print them. */
function metricsLine(m: Omit<MetricsEvent, 'type'>): string {
  return (
    `NN-FR ${percent(m.nearestNeighbourFailureRate)} (L2 ${percent(m.nearestNeighbourFailureRateL2)}), ` +
    `accuracy ${percent(m.studentAccuracy)} vs ${percent(m.teacherAccuracy)} (drop ${m.accuracyDropPoints.toFixed(2)} points), ` +
    `perplexity x${m.perplexityRatio.toFixed(3)}, top-1 agreement ${percent(m.top1Agreement)}, mean KL ${m.meanKL.toFixed(4)}`
  );
}

/** The learned attacks' token recovery on one line: through the transform vs on clean embeddings. */
function attackLine(a: InversionAttackReport): string {
  return (
    `learned inversion attack, tokens recovered on held-out text: linear ${percent(a.linear.recoveryRate)} ` +
    `(clean ${percent(a.linearClean.recoveryRate)}), window MLP ${percent(a.mlp.recoveryRate)} (clean ${percent(a.mlpClean.recoveryRate)})`
  );
}

/** What the data split warns about: a held-out set too small to measure NN-FR, agreement and KL. */
function dataWarnings(o: RunOptions, data: ConfigureSummary): string[] {
  const held = data.heldOutSequences;
  const more = `give more data (--text or --tokens-file), or a larger --held-out-fraction (now ${o.heldOutFraction})`;
  if (held === 0) {
    return [`no sequence is held out, so NN-FR, agreement and KL are measured on the training sequences: ${more}`];
  }
  if (held >= MIN_HELD_OUT_SEQUENCES) return [];
  return [
    `only ${held} held-out sequence${held === 1 ? '' : 's'} of ${data.seqLen} tokens: too few to measure NN-FR, agreement and KL ` +
      `(fewer than ${MIN_HELD_OUT_SEQUENCES}); ${more}`,
  ];
}

/** What the steps of a run left: every step and evaluation until the end, or until `error`. */
interface TrainingLog {
  stepEvents: StepEvent[];
  metricsHistory: Omit<MetricsEvent, 'type'>[];
  seconds: number;
  /** Why training stopped early. */
  error?: string;
}

/** Runs the configured steps (progress on the bar). A failure ends the log with its error rather than throwing. */
async function train(service: TrainerService, o: RunOptions, bar: ProgressBar): Promise<TrainingLog> {
  const log: TrainingLog = { stepEvents: [], metricsHistory: [], seconds: 0 };
  const started = performance.now();
  try {
    await service.start((e: ProgressEvent) => {
      if (e.type === 'step') {
        if (!Number.isFinite(e.loss))
          throw new SgtError('INVALID_OPTION', `the loss is ${e.loss} at step ${e.step}: lower --lr or check the factory options`);
        log.stepEvents.push(e);
        bar.update(e);
      } else if (e.type === 'metrics') {
        const { type: _type, ...m } = e;
        log.metricsHistory.push(m);
        if (!o.quiet) bar.note(`step ${e.step}: ${metricsLine(m)}`);
      }
    });
  } catch (e) {
    bar.close();
    log.error = `training stopped after ${log.stepEvents.length} of ${o.steps} steps: ${(e as Error).message}`;
  }
  log.seconds = (performance.now() - started) / 1000;
  return log;
}

/** What a run produced after its steps; a part that could not be made is missing, with its error in `errors`. */
interface RunProducts {
  metrics: EvaluationResult | null;
  attack?: InversionAttackReport;
  /** The service's GPU memory record at the end (weight bytes, the pool's peak since the model's load). */
  memory?: { weightBytes: number; peakBytes: number; heldPeakBytes: number };
  cloakBytes?: Uint8Array;
  checkpointBytes?: Uint8Array;
  errors: string[];
}

/**
 * Evaluates, and fetches the cloak and the checkpoint, each on its own so that one failing keeps
 * the others. After a failed training there is nothing to take: the weights may be what broke it.
 */
async function collect(service: TrainerService, o: RunOptions, log: TrainingLog): Promise<RunProducts> {
  const products: RunProducts = { metrics: null, errors: log.error ? [log.error] : [] };
  const recordMemory = async () => {
    products.memory = (await service.getState()).memory;
  };
  if (log.error) {
    await recordMemory().catch(() => {});
    return products;
  }
  const attempt = async <T>(what: string, make: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await make();
    } catch (e) {
      products.errors.push(`${what} failed: ${(e as Error).message}`);
      return undefined;
    }
  };
  products.metrics = (await attempt('the final evaluation', () => service.evaluate(o.evaluateBatches))) ?? null;
  const m = products.metrics;
  if (m && log.metricsHistory.at(-1)?.step !== m.step) log.metricsHistory.push(m);
  if (o.attackSteps > 0) {
    const attack = await attempt('the learned inversion attack', () => service.attack({ steps: o.attackSteps, seed: o.seed }));
    if (attack) {
      const { step: _step, ...rest } = attack;
      products.attack = rest;
    }
  }
  products.cloakBytes = await attempt('making cloak.safetensors', () => service.cloakSafetensors());
  products.checkpointBytes = await attempt('making checkpoint.safetensors', () => service.checkpoint());
  await recordMemory().catch(() => {});
  return products;
}

/** What the end of a run knows when it writes the report: the setup, the steps, their products, and the files written so far. */
interface RunRecord {
  source: string;
  setup: Awaited<ReturnType<typeof setUp>>;
  log: TrainingLog;
  products: RunProducts;
  warnings: string[];
  files: { written: OutputFile[]; errors: string[] };
}

/** The `report.json` of a run (with `error` when a part of it failed). */
function buildReport(o: RunOptions, record: RunRecord): TrainingReport {
  const { source, setup, log, products, warnings, files } = record;
  const { adapter, model, data, seqLen } = setup;
  const { stepEvents, metricsHistory, seconds } = log;
  const { metrics } = products;
  const last = stepEvents.at(-1);
  const errors = [...products.errors, ...files.errors];
  return {
    createdAt: new Date().toISOString(),
    adapter,
    model: { ...model, dir: o.modelDir },
    data: {
      tokenizer: data.tokenizer,
      trainSequences: data.trainSequences,
      heldOutSequences: data.heldOutSequences,
      seqLen: data.seqLen,
      trainTokens: data.trainTokens,
      source,
    },
    hyperparameters: {
      factory: o.factory,
      factoryOptions: data.factoryOptions,
      cloak: data.cloak,
      cloakParameterCount: data.cloakParameterCount,
      steps: o.steps,
      batchSize: o.batchSize,
      seqLen,
      learningRate: o.learningRate,
      warmupSteps: o.warmupSteps,
      schedule: `linear warm-up for ${o.warmupSteps} steps, then cosine decay to 0 at step ${o.steps}`,
      privacySchedule: o.privacySchedule,
      maxGradNorm: o.maxGradNorm,
      seed: o.seed,
      heldOutFraction: o.heldOutFraction,
      evaluateEvery: o.evaluateEvery,
    },
    final: {
      step: metrics?.step ?? last?.step ?? 0,
      loss: last?.loss ?? null,
      components: last?.components ?? {},
      metrics,
      attack: products.attack ?? null,
    },
    metricsHistory,
    lossCurve: stepEvents.length > 0 ? lossCurve(stepEvents) : null,
    seconds,
    meanTokensPerSecond: stepEvents.reduce((a, s) => a + s.tokens, 0) / Math.max(seconds, 1e-9),
    memory: {
      weightBytes: products.memory?.weightBytes ?? setup.estimate?.weightBytes ?? 0,
      peakBytes: products.memory?.peakBytes ?? 0,
      heldPeakBytes: products.memory?.heldPeakBytes ?? 0,
      estimatedPeakBytes: setup.estimate?.totalBytes ?? null,
      estimate: setup.estimate ?? null,
      budget: o.memoryBudget ?? null,
    },
    warnings,
    ...(errors.length > 0 ? { error: errors.join('; ') } : {}),
    files: files.written,
  };
}

/**
 * Writes what the run produced (see {@link writeRun}), prints the notes and the summary, and
 * returns the result. When any part failed it throws a {@link RunError} after writing what it could.
 */
function finish(
  o: RunOptions,
  plan: OutputPlan,
  record: Omit<RunRecord, 'files'>,
  print: { out: (s: string) => void; err: (s: string) => void },
): CliResult {
  const { products, log } = record;
  let report: CompletedReport | undefined;
  const outcome = writeRun(plan, { cloak: products.cloakBytes, checkpoint: products.checkpointBytes }, (files) => {
    report = buildReport(o, { ...record, files }) as CompletedReport;
    return `${JSON.stringify(report, null, 2)}\n`;
  });
  for (const note of outcome.notes) print.err(`sgt-train: note: ${note}\n`);
  const written = outcome.written.map((f) => join(outcome.dir, f));
  const errors = [...products.errors, ...outcome.errors];
  if (errors.length > 0 || !report || !products.metrics) {
    const where =
      written.length > 0
        ? `partial results in ${outcome.dir}: ${outcome.written.join(', ')}`
        : `nothing could be written to ${outcome.dir}`;
    throw new RunError(`${errors.join('; ')} (${where})`, outcome.dir, written);
  }
  const steps = products.metrics.step;
  const curve = report.lossCurve;
  const loss = curve ? `loss ${curve.first.toFixed(4)} -> ${curve.last.toFixed(4)}` : 'no step';
  print.out(
    `trained ${steps} step${steps === 1 ? '' : 's'} in ${formatSeconds(log.seconds)}: ${loss}; ${metricsLine(products.metrics)}\n` +
      (products.attack ? `${attackLine(products.attack)}\n` : '') +
      written.map((f) => `  ${f}\n`).join(''),
  );
  return { help: false, outDir: outcome.dir, files: written, report };
}

/**
 * Runs the CLI on `argv` (the arguments after the script name) in this process: parses them,
 * checks the output folder and reads the inputs, trains, writes the three files and returns the
 * report. Throws {@link UsageError} on a bad command line, output folder, model folder or option
 * (before any training), and {@link RunError} when the run fails after training started (having
 * written what it could, report.json with the error among it); the device is destroyed either way.
 */
export async function main(argv: readonly string[], io: CliIO = {}): Promise<CliResult> {
  const out = io.stdout ?? ((s: string) => process.stdout.write(s));
  const err = io.stderr ?? ((s: string) => process.stderr.write(s));
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(argv);
  } catch (e) {
    // parseArgs' own errors (unknown flag, missing value) are usage errors too.
    throw e instanceof UsageError ? e : new UsageError(`${(e as Error).message} (see --help)`);
  }
  const { values } = parsed;
  if (values.help) {
    out(helpText());
    return { help: true };
  }
  if (values.version) {
    const version = packageVersion();
    out(`sgt-train ${version}\n`);
    return { help: true, version };
  }
  const started = new Date();
  const o = runOptions(values);
  const plan = planOutput(values.out, started);
  const inputs = readInputs(values, o.modelDir);
  const bar = new ProgressBar(o.steps, o.quiet ? () => {} : err, io.interactive ?? (!io.stderr && process.stderr.isTTY === true));

  const service = new TrainerService();
  try {
    const setup = await setUp(service, o, inputs, bar);
    const warnings = dataWarnings(o, setup.data);
    for (const warning of warnings) err(`sgt-train: warning: ${warning}\n`);
    const log = await train(service, o, bar);
    const products = await collect(service, o, log);
    return finish(o, plan, { source: inputs.source, setup, log, products, warnings }, { out, err });
  } catch (e) {
    bar.close();
    throw e;
  } finally {
    await service.dispose();
  }
}

function parseCli(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: 'string' },
      steps: { type: 'string' },
      out: { type: 'string' },
      factory: { type: 'string' },
      text: { type: 'string' },
      'tokens-file': { type: 'string' },
      'batch-size': { type: 'string' },
      'seq-len': { type: 'string' },
      lr: { type: 'string' },
      'warmup-steps': { type: 'string' },
      'privacy-schedule': { type: 'string' },
      'privacy-ramp': { type: 'string' },
      'privacy-start': { type: 'string' },
      'max-grad-norm': { type: 'string' },
      seed: { type: 'string' },
      'held-out-fraction': { type: 'string' },
      'eval-every': { type: 'string' },
      'eval-batches': { type: 'string' },
      'attack-steps': { type: 'string' },
      'memory-budget': { type: 'string' },
      set: { type: 'string', multiple: true },
      cloak: { type: 'string', multiple: true },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
}

// Run when this file is the entry point (`node scripts/run.mjs src/cli/cli.ts`, or the bin),
// not when a test imports `main`.
const entry = process.argv[1];
if (entry && resolve(entry) === fileURLToPath(import.meta.url)) {
  try {
    await main(process.argv.slice(2));
    // Dawn keeps native handles open: leave explicitly once the work is done.
    process.exit(0);
  } catch (e) {
    const usage = e instanceof UsageError;
    process.stderr.write(`sgt-train: ${(e as Error).message}\n`);
    if (!usage && process.env.SGT_DEBUG) process.stderr.write(`${(e as Error).stack ?? ''}\n`);
    // Exit here rather than rethrow: the runner would print a stack for a plain usage mistake.
    process.exit(usage ? 2 : 1);
  }
}
