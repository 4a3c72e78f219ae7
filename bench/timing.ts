/** Timing helpers: medians of batched runs, for the GPU (one sync per batch) and for plain JS. */
import type { GpuContext } from '../src/index';

/** How many runs, and how long one timed batch should last. */
export interface TimingOptions {
  /** Timed runs per case (the median is reported). */
  runs: number;
  /** Target duration of one batch in ms: the repeat count R is chosen from a calibration run. */
  batchMs: number;
  /** Upper bound on R. */
  maxRepeat: number;
}

/** A median time per operation, and how it was measured. */
export interface Timing {
  /** Median over runs of (batch time / repeat), in ms. */
  ms: number;
  /** Operations per batch. */
  repeat: number;
  /** Timed batches. */
  runs: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function repeatFor(calibrationMs: number, o: TimingOptions): number {
  return Math.max(1, Math.min(o.maxRepeat, Math.round(o.batchMs / Math.max(calibrationMs, 1e-3))));
}

/**
 * Times `record` (which records GPU work and frees what it makes) as: warm-up (pipelines compile),
 * one calibration batch, then `runs` batches of R recordings each closed by `await ctx.sync()`,
 * so that the submit / readiness round trip is amortised over R dispatches.
 */
export async function timeGpu(ctx: GpuContext, record: () => void, o: TimingOptions): Promise<Timing> {
  record();
  await ctx.sync();
  let t0 = performance.now();
  record();
  await ctx.sync();
  const repeat = repeatFor(performance.now() - t0, o);
  const per: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    t0 = performance.now();
    for (let i = 0; i < repeat; i++) record();
    await ctx.sync();
    per.push((performance.now() - t0) / repeat);
  }
  return { ms: median(per), repeat, runs: o.runs };
}

/**
 * Times a synchronous JS function the same way (warm-up, calibration, median of batches).
 * To compare with a GPU peer on a shared machine, prefer {@link timePair}.
 */
export function timeJs(fn: () => void, o: TimingOptions): Timing {
  fn();
  let t0 = performance.now();
  fn();
  const repeat = repeatFor(performance.now() - t0, o);
  const per: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    t0 = performance.now();
    for (let i = 0; i < repeat; i++) fn();
    per.push((performance.now() - t0) / repeat);
  }
  return { ms: median(per), repeat, runs: o.runs };
}

/**
 * Times a GPU recording and its JS baseline with their batches interleaved (GPU, JS, GPU, JS...),
 * so that a change in machine load during the case (other processes on a shared machine) hits
 * both sides alike and their ratio stays meaningful. `jsRuns` may be lower for slow baselines.
 */
export async function timePair(
  ctx: GpuContext,
  record: () => void,
  js: () => void,
  o: TimingOptions,
  jsRuns = o.runs,
): Promise<{ gpu: Timing; js: Timing }> {
  record();
  await ctx.sync();
  let t0 = performance.now();
  record();
  await ctx.sync();
  const gpuRepeat = repeatFor(performance.now() - t0, o);
  js();
  t0 = performance.now();
  js();
  const jsRepeat = repeatFor(performance.now() - t0, o);
  const gpuPer: number[] = [];
  const jsPer: number[] = [];
  for (let r = 0; r < o.runs; r++) {
    t0 = performance.now();
    for (let i = 0; i < gpuRepeat; i++) record();
    await ctx.sync();
    gpuPer.push((performance.now() - t0) / gpuRepeat);
    if (r < jsRuns) {
      t0 = performance.now();
      for (let i = 0; i < jsRepeat; i++) js();
      jsPer.push((performance.now() - t0) / jsRepeat);
    }
  }
  return {
    gpu: { ms: median(gpuPer), repeat: gpuRepeat, runs: gpuPer.length },
    js: { ms: median(jsPer), repeat: jsRepeat, runs: jsPer.length },
  };
}
