/**
 * Benchmark of the LM head + distillation cross-entropy, forward + backward with respect to the
 * student's hidden states: the fused kernels of `shaders/lmHeadCrossEntropy.wgsl` (vocabulary
 * chunks, no `[N, V]` tensor) vs the unfused path (matmul to `[N, V]` logits, then
 * `distillationCrossEntropy`) vs the float64 twin, with the peak bytes the buffer pool handed out
 * during one step (`pool.resetPeak()` before, `pool.peakLiveBytes` after, minus what was live
 * before: inputs and the head are not counted). Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { matmul, reshape } from '../src/ops/index';
import { distillationCrossEntropy } from '../src/losses/crossEntropy';
import { lmHeadDistillationCrossEntropy, type LmHeadCrossEntropyOptions } from '../src/losses/lmHeadCrossEntropy';
import { lmHeadDistillationCrossEntropyReference, lmHeadDistillationCrossEntropyReferenceBackward } from '../src/reference/index';
import { timeGpu, timeJs, type TimingOptions } from './timing';

/** One row: median ms of one forward + backward, and the peak bytes of one step. */
export interface LmHeadBenchRow {
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
  /** Most bytes the pool had handed out during one step, above what was live before it. */
  peakBytes: { fused: number; composed: number };
}

/** Uniform values in [-spread, spread) from a 32-bit LCG. */
function values(n: number, seed: number, spread: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = ((state + 0.5) / 4294967296 - 0.5) * 2 * spread;
  }
  return out;
}

function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / (scale || 1);
}

/** Rows of the twin timed (it is linear in the rows; its time is scaled to all of them). */
const TWIN_ROWS = 4;

async function benchOne(
  B: number,
  T: number,
  d: number,
  blockRows: number[],
  options: LmHeadCrossEntropyOptions = {},
): Promise<LmHeadBenchRow> {
  await init();
  const ctx = getContext();
  const rows = B * T;
  const V = blockRows.reduce((a, b) => a + b, 0);
  const teacherData = values(rows * d, 1, 1.7);
  const studentData = values(rows * d, 2, 1.7);
  const headData = values(V * d, 3, 5 / Math.sqrt(d));
  // About 80% of the positions selected, as with padding and prompt tokens.
  const maskData = Array.from({ length: rows }, (_, i) => (((i * 2654435761) >>> 0) % 10 < 8 ? 1 : 0));
  const h = tensor(teacherData, [B, T, d]);
  const hs = tensor(studentData, [B, T, d], { requiresGrad: true });
  const mask = tensor(Float32Array.from(maskData), [B, T]);
  const W = tensor(headData, [V, d]);
  let start = 0;
  const blocks = blockRows.map((n) => {
    const block = tensor(headData.subarray(start * d, (start + n) * d), [n, d]);
    start += n;
    return block;
  });
  const fused = (): Tensor => lmHeadDistillationCrossEntropy(h, hs, blocks, mask, options);
  const unfused = (): Tensor => {
    const z = noGrad(() => reshape(matmul(h, W, { transposeB: true }), [B, T, V]));
    return distillationCrossEntropy(z, reshape(matmul(hs, W, { transposeB: true }), [B, T, V]), mask);
  };
  const step = (loss: () => Tensor) => () =>
    scope(() => {
      loss().backward();
      hs.grad?.dispose();
      hs.grad = null;
    });

  // The same loss and gradient, or the comparison means nothing.
  const result = async (loss: () => Tensor) =>
    scope(async () => {
      const l = loss();
      l.backward();
      const out = { value: await l.item(), grad: (await hs.grad!.toArray()) as Float32Array };
      hs.grad!.dispose();
      hs.grad = null;
      return out;
    });
  const a = await result(fused);
  const b = await result(unfused);
  const gradErr = maxRelErr(a.grad, b.grad);
  if (!(Math.abs(a.value - b.value) <= 1e-4 * Math.abs(b.value)) || !(gradErr <= 1e-3)) {
    throw new Error(`loss-lmHeadCrossEntropy bench: fused (${a.value}) and unfused (${b.value}) disagree (grad rel. err ${gradErr})`);
  }

  const peak = async (record: () => void) => {
    await ctx.sync();
    const live = ctx.pool.liveBytes;
    ctx.pool.resetPeak();
    record();
    await ctx.sync();
    return ctx.pool.peakLiveBytes - live;
  };
  const peakBytes = { fused: await peak(step(fused)), composed: await peak(step(unfused)) };
  // One step per timed batch: a step is long on a software adapter.
  const timing: TimingOptions = { runs: 3, batchMs: 0, maxRepeat: 1 };
  const fusedMs = (await timeGpu(ctx, step(fused), timing)).ms;
  const composedMs = (await timeGpu(ctx, step(unfused), timing)).ms;
  const twin = {
    teacherHidden: teacherData.subarray(0, TWIN_ROWS * d),
    studentHidden: studentData.subarray(0, TWIN_ROWS * d),
    headBlocks: [headData],
    mask: maskData.slice(0, TWIN_ROWS),
    rows: TWIN_ROWS,
    hidden: d,
  };
  const twinMs = timeJs(
    () => {
      lmHeadDistillationCrossEntropyReference(twin);
      lmHeadDistillationCrossEntropyReferenceBackward(twin);
    },
    { runs: 1, batchMs: 0, maxRepeat: 1 },
  ).ms;
  for (const t of [h, hs, mask, W, ...blocks]) t.dispose();
  return {
    name:
      `lmHeadDistillationCrossEntropy fwd+bwd B=${B} T=${T} d=${d} V=${V} (${blockRows.length} head blocks` +
      `${options.maxScratchBytes ? `, scratch cap ${options.maxScratchBytes / 2 ** 20} MiB` : ''}; float64 timed on ${TWIN_ROWS} rows, scaled)`,
    fusedMs,
    composedMs,
    float64Ms: (twinMs * rows) / TWIN_ROWS,
    peakBytes,
  };
}

/**
 * Times the fused LM head + cross-entropy against the unfused path and the float64 twin, at sizes
 * a software adapter runs in seconds but where the logits already dwarf the fused path's scratch:
 * a 32K vocabulary with the default scratch cap (16 MiB: here the window is a whole head block),
 * and a Qwen2.5-size vocabulary (151,936 in three blocks) with a 1 MiB cap.
 */
export async function benchmarks(): Promise<LmHeadBenchRow[]> {
  return [await benchOne(1, 64, 32, [20_000, 12_768]), await benchOne(1, 16, 32, [65_536, 65_536, 20_864], { maxScratchBytes: 2 ** 20 })];
}
