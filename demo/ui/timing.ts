/**
 * How long a run takes, from measured times only: the ETA of a run in progress (from its step and
 * evaluation times) and the estimate beside the steps field (from the step time remembered for
 * this model and these settings in this browser). The first step and the first evaluation of a
 * run also compile the GPU kernels they use, so they say little about the next ones: they are
 * used only while nothing else is measured, and the result is then an upper bound ("at most").
 * No DOM here (the page's `status.ts` shows it; test/node/demo-timing.test.ts checks it).
 */

/** The median of `values` (NaN when empty). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** "under 1 s", "0.4 s", "12 s", "4 min 12 s", "14 min", "1 h 5 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return 'unknown';
  if (seconds < 0.1) return 'under 0.1 s';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (s < 600) return s % 60 ? `${min} min ${s % 60} s` : `${min} min`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/**
 * Evaluations a run still makes once `step` steps are done, as the worker's run loop makes them:
 * after every `evaluateEvery`-th step, and once more after the last step when `maxSteps` is not
 * a multiple. `evaluatedAt`: the step of the last evaluation made (default `step`); one due after
 * step `step` that is not made yet still counts.
 */
export function evaluationsLeft(step: number, maxSteps: number, evaluateEvery: number, evaluatedAt = step): number {
  if (evaluateEvery <= 0) return 0;
  // The evaluations left are those after a step m > after (m = maxSteps included; the baseline at 0 is not one).
  const after = Math.max(0, step - 1, evaluatedAt);
  if (after >= maxSteps) return 0;
  const periodic = Math.floor(maxSteps / evaluateEvery) - Math.floor(after / evaluateEvery);
  return periodic + (maxSteps % evaluateEvery === 0 ? 0 : 1);
}

/** What a run has measured so far: the seconds of each step and each evaluation, in order. */
export interface RunTimes {
  steps: number[];
  evaluations: number[];
}

/** A time per step (or evaluation) and whether it came from a first one only (which also compiled kernels). */
interface Rate {
  seconds: number;
  upperBound: boolean;
}

/** The typical time of the later measurements (the last 20), or the first one as an upper bound. */
function rate(times: readonly number[]): Rate | null {
  if (times.length === 0) return null;
  if (times.length === 1) return { seconds: times[0], upperBound: true };
  return { seconds: median(times.slice(1).slice(-20)), upperBound: false };
}

/** The time left of a run in progress. */
export interface Eta {
  /** Seconds left (steps and the evaluations still to make). */
  seconds: number;
  /** True while it rests on a first step or evaluation only: then the run should take less. */
  upperBound: boolean;
  /** The time per step used. */
  perStep: number;
  /** The time per evaluation used (null: none is left, or none was measured yet). */
  perEvaluation: number | null;
  /** Evaluations left whose time is not in `seconds` (none was measured yet). */
  unmeasuredEvaluations: number;
}

/**
 * The ETA once a step is measured (null before: nothing to go on). `evaluatedAt`: the step of the
 * run's last evaluation (-1: none yet).
 */
export function estimateRemaining(
  times: RunTimes,
  run: { step: number; evaluatedAt: number; maxSteps: number; evaluateEvery: number },
): Eta | null {
  const perStep = rate(times.steps);
  if (!perStep) return null;
  const { step, maxSteps } = run;
  const stepsLeft = Math.max(0, maxSteps - step);
  const evals = evaluationsLeft(step, maxSteps, run.evaluateEvery, run.evaluatedAt);
  const perEval = evals > 0 ? rate(times.evaluations) : null;
  return {
    seconds: stepsLeft * perStep.seconds + (perEval ? evals * perEval.seconds : 0),
    upperBound: (stepsLeft > 0 && perStep.upperBound) || (perEval?.upperBound ?? false),
    perStep: perStep.seconds,
    perEvaluation: perEval?.seconds ?? null,
    unmeasuredEvaluations: perEval ? 0 : evals,
  };
}

/** A run's settings as the timing depends on them. */
export interface RunShape {
  /** The model and the adapter (see {@link timingModelKey}). */
  model: string;
  factory: string;
  batchSize: number;
  seqLen: number;
}

/** What is remembered of runs with one shape. */
export interface RememberedTiming {
  batchSize: number;
  seqLen: number;
  /** Seconds per step (the median of the steps after a run's first). */
  stepSeconds: number;
  /** Seconds per evaluation (null: none measured). */
  evaluationSeconds: number | null;
  /** Only a first step was measured: `stepSeconds` includes compiling the kernels. */
  upperBound: boolean;
}

/** The key of a model on an adapter: the timing of one says nothing about another. */
export function timingModelKey(model: { type: string; layers: number; hiddenSize: number; vocabSize: number }, adapter: string): string {
  return `${model.type}/${model.layers}x${model.hiddenSize}/v${model.vocabSize}@${adapter}`;
}

const STORAGE_KEY = 'sgt-demo-step-times';

/** The step times of this browser's earlier runs, kept in `localStorage` (in memory where it is unavailable). */
export class TimingMemory {
  private readonly entries: Record<string, RememberedTiming>;

  constructor(private readonly storage: Pick<Storage, 'getItem' | 'setItem'> | null) {
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(storage?.getItem(STORAGE_KEY) ?? 'null');
    } catch {
      parsed = null;
    }
    this.entries = parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, RememberedTiming>) : {};
  }

  /** Records a finished or stopped run's times; a run with no step teaches nothing. */
  remember(shape: RunShape, times: RunTimes): void {
    const step = rate(times.steps);
    if (!step) return;
    const key = this.key(shape);
    const old = this.entries[key];
    // A first-step-only measurement does not replace a real one.
    if (step.upperBound && old && !old.upperBound) return;
    const evaluation = rate(times.evaluations);
    this.entries[key] = {
      batchSize: shape.batchSize,
      seqLen: shape.seqLen,
      stepSeconds: step.seconds,
      evaluationSeconds:
        evaluation && !evaluation.upperBound ? evaluation.seconds : (old?.evaluationSeconds ?? evaluation?.seconds ?? null),
      upperBound: step.upperBound,
    };
    try {
      this.storage?.setItem(STORAGE_KEY, JSON.stringify(this.entries));
    } catch {
      // A full or blocked storage only loses the memory for the next visit.
    }
  }

  /**
   * The remembered timing for `shape`: measured with these very settings, or scaled by tokens per
   * step from a run of the same model and factory with other sizes (rough: small batches do not
   * use a GPU fully), or null.
   */
  lookup(shape: RunShape): (RememberedTiming & { scaledFrom: { batchSize: number; seqLen: number } | null }) | null {
    const exact = this.entries[this.key(shape)];
    if (exact) return { ...exact, scaledFrom: null };
    const prefix = `${shape.model}|${shape.factory}|`;
    const tokens = shape.batchSize * shape.seqLen;
    let best: RememberedTiming | null = null;
    for (const [k, e] of Object.entries(this.entries)) {
      if (!k.startsWith(prefix) || !(e.stepSeconds > 0)) continue;
      const distance = Math.abs(Math.log((e.batchSize * e.seqLen) / tokens));
      if (!best || distance < Math.abs(Math.log((best.batchSize * best.seqLen) / tokens))) best = e;
    }
    if (!best) return null;
    const scale = tokens / (best.batchSize * best.seqLen);
    return {
      ...best,
      stepSeconds: best.stepSeconds * scale,
      evaluationSeconds: best.evaluationSeconds === null ? null : best.evaluationSeconds * scale,
      scaledFrom: { batchSize: best.batchSize, seqLen: best.seqLen },
    };
  }

  private key(shape: RunShape): string {
    return `${shape.model}|${shape.factory}|${shape.batchSize}x${shape.seqLen}`;
  }
}

/**
 * The sentence beside the steps field: how long `maxSteps` steps (and their evaluations) take,
 * from a remembered timing, or that it is unknown. `compileFirst`: no run has compiled the
 * kernels on this page yet, which the first step will do on top.
 */
export function describeEstimate(
  timing: ReturnType<TimingMemory['lookup']>,
  run: { maxSteps: number; evaluateEvery: number },
  compileFirst = false,
): string {
  if (!timing) return 'Time: unknown until a first step runs with these settings (then remembered in this browser).';
  const evals = run.evaluateEvery > 0 ? 1 + evaluationsLeft(0, run.maxSteps, run.evaluateEvery) : 0;
  const evalPart = evals > 0 && timing.evaluationSeconds !== null ? evals * timing.evaluationSeconds : 0;
  const total = run.maxSteps * timing.stepSeconds + evalPart;
  const perStep = `${formatDuration(timing.stepSeconds)} a step`;
  const how = timing.scaledFrom
    ? `rough: scaled from ${perStep} at batch ${timing.scaledFrom.batchSize} × ${timing.scaledFrom.seqLen}`
    : timing.upperBound
      ? `${perStep} from a first step only, which also compiled the kernels`
      : `${perStep}, measured in this browser`;
  const unmeasured = evals > 0 && timing.evaluationSeconds === null ? '; evaluations not counted' : '';
  const compile = compileFirst ? ', plus compiling the kernels at the first step' : '';
  return `Time: ${timing.upperBound ? 'at most' : 'about'} ${formatDuration(total)} (${how}${unmeasured})${compile}.`;
}
