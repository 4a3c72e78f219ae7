/**
 * Runs one kernel case: on the GPU (the library's op with autograd, with its WGSL file replaced by
 * the edited text when asked), against the float64 twin (forward and backward), the twin's backward against
 * central finite differences, and a timing of the GPU forward. No DOM here.
 */
import { getContext, liveBufferCount, mul, noGrad, readAll, scope, sum, tensor, type Tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import { FD_TOL, centralDifference } from '../../test/cases/ops';
import { Rng } from '../../test/helpers/random';
import { forwardTol, gradientTol, isGrad, type KernelCase } from './cases';
import { SHADERS } from './shaders';
import { compare, type Comparison, type FdPoint } from './compare';
import type { HostInput } from './inputs';
import { checkWgsl, type CompileMessage } from './wgsl';

/** How to run a case. */
export interface RunOptions {
  /** The seed of the output-gradient weights and of the finite-difference elements. */
  seed: string;
  /** Timed forward runs (after one untimed warm-up). */
  timingRuns: number;
  /** Run the library op with the case's WGSL file replaced by this text. */
  editedSource?: string;
  /** Elements per differentiated input checked by finite differences (default 3). */
  fdElements?: number;
}

/** Everything a run found. */
export interface RunReport {
  /** Whether the edited WGSL ran (rather than the library op). */
  edited: boolean;
  /** The GPU output's shape and its first values, with the twin's. */
  outShape: number[];
  preview: { gpu: number[]; twin: number[] };
  /** Forward, then one comparison per differentiated input. */
  comparisons: Comparison[];
  /** The twin's backward against central differences, a few elements per differentiated input. */
  fd: FdPoint[];
  /** Milliseconds of each timed forward run (record, submit, wait for the GPU). */
  timesMs: number[];
  /** Compiler warnings and notes about the edited source. */
  compileMessages: CompileMessage[];
  /** GPU buffers the run left allocated (0 unless something leaked). */
  leakedBuffers: number;
  /** Whether everything passed. */
  pass: boolean;
}

const PREVIEW = 6;

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function upload(inputs: HostInput[], withGrad: (k: number) => boolean): Tensor[] {
  return inputs.map((i, k) => tensor(i.values, i.shape, { dtype: i.dtype, requiresGrad: withGrad(k) }));
}

interface GpuResult {
  outShape: number[];
  out: ArrayLike<number>;
  /** Per input: its gradient, or null when it is not differentiated. */
  grads: (ArrayLike<number> | null)[];
  w: Float32Array;
}

/**
 * Forward and backward on the GPU. The backward is that of `sum(out * w)` with random weights w:
 * its gradient with respect to `out` is exactly w, so the twin's backward given w is the answer.
 */
async function runGpu(c: KernelCase, inputs: HostInput[], rng: Rng, source: string | undefined): Promise<GpuResult> {
  const run = () =>
    scope(async () => {
      const differentiated = (k: number) => isGrad(c.inputs[k]);
      const ts = upload(inputs, differentiated);
      const out = c.gpu(ts);
      const w = Float32Array.from(rng.uniforms(out.size, -1, 1));
      sum(mul(out, tensor(w, out.shape))).backward();
      const grads = ts.map((t, k) => {
        if (!differentiated(k)) return null;
        if (!t.grad) throw new Error(`${c.label}: the library gave input '${c.inputs[k].name}' no gradient`);
        return t.grad;
      });
      return finish(out, grads, w);
    });
  // Edited WGSL runs through the library itself: every dispatch of the case's file uses the edit.
  return source === undefined ? run() : getContext().withShaderSource(SHADERS[c.wgsl], source, run);
}

async function finish(out: Tensor, grads: (Tensor | null)[], w: Float32Array): Promise<GpuResult> {
  const present = grads.filter((g): g is Tensor => g !== null);
  const [outValues, ...gradValues] = await readAll([out, ...present]);
  let j = 0;
  return { outShape: [...out.shape], out: outValues, grads: grads.map((g) => (g ? gradValues[j++] : null)), w };
}

/** Times `forward` (record, submit and `await getContext().sync()`): one warm-up, then `runs` timed runs. */
async function timeForward(forward: () => void, runs: number): Promise<number[]> {
  const ctx = getContext();
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const t0 = performance.now();
    // Intermediates are freed when recorded work ends; the pool reuses buffers only in submit order.
    noGrad(() =>
      scope(() => {
        forward();
      }),
    );
    await ctx.sync();
    // The first run compiles the pipelines: not timed.
    if (i > 0) times.push(performance.now() - t0);
  }
  return times;
}

/**
 * Runs `c` on `inputs`: GPU forward and backward, twin forward and backward, finite differences
 * on the twin, and timing. Throws (with the library's message) on bad inputs or a GPU error, and
 * a `WgslCompileError` when the edited source does not compile.
 */
export async function runCase(c: KernelCase, inputs: HostInput[], options: RunOptions): Promise<RunReport> {
  const ctx = getContext();
  if (ctx.deadReason) throw new Error(`the GPU is unusable (${ctx.deadReason}); reload the page`);
  const source = options.editedSource;
  const compileMessages = source === undefined ? [] : await checkWgsl(ctx.device, source);
  const buffersBefore = liveBufferCount();

  // The GPU first: the library checks its arguments (shapes, dtypes, masks) before any GPU work
  // and says what is wrong, naming the argument; the twins assume valid input.
  const gpu = await runGpu(c, inputs, new Rng(`${options.seed}/w`), source);

  const xs = inputs.map((i) => R.ndarray(i.values, i.shape));
  const want = c.ref(xs);
  const comparisons: Comparison[] = [compare('forward', gpu.out, gpu.outShape, want, forwardTol(c, xs))];
  const fd: FdPoint[] = [];
  if (gpu.w.length === want.data.length) {
    const w = R.ndarray(gpu.w, want.shape);
    const twinGrads = c.refBackward(w, xs);
    const rng = new Rng(`${options.seed}/fd`);
    c.inputs.forEach((spec, k) => {
      if (!isGrad(spec)) return;
      const twinGrad = twinGrads[k];
      if (!twinGrad) throw new Error(`${c.label}: the twin gave input '${spec.name}' no gradient`);
      const got = gpu.grads[k] ?? [];
      comparisons.push(compare(`d/d ${spec.name}`, got, inputs[k].shape, twinGrad, gradientTol(c, xs, k)));
      for (const index of rng.sample(options.fdElements ?? 3, xs[k].data.length)) {
        const numeric = centralDifference(c.ref, xs, w, k, index);
        const analytic = twinGrad.data[index];
        const ratio = Math.abs(analytic - numeric) / (FD_TOL.atol + FD_TOL.rtol * Math.abs(numeric));
        fd.push({
          input: k,
          index,
          numeric,
          analytic,
          gpu: got.length > index ? got[index] : null,
          ratio: Number.isNaN(ratio) ? Infinity : ratio,
        });
      }
    });
  }

  const time = () =>
    scope(async () => {
      const ts = upload(inputs, () => false);
      return timeForward(() => c.gpu(ts), Math.max(1, options.timingRuns));
    });
  const timesMs = await (source === undefined ? time() : getContext().withShaderSource(SHADERS[c.wgsl], source, time));

  const leakedBuffers = liveBufferCount() - buffersBefore;
  const pass = comparisons.every((r) => r.pass) && fd.every((p) => p.ratio <= 1);
  return {
    edited: source !== undefined,
    outShape: gpu.outShape,
    preview: { gpu: Array.from(gpu.out).slice(0, PREVIEW), twin: Array.from(want.data).slice(0, PREVIEW) },
    comparisons,
    fd,
    timesMs,
    compileMessages,
    leakedBuffers,
    pass,
  };
}
