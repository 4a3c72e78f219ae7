/**
 * Benchmark of `distillationCrossEntropyLoss`, forward + backward: the fused kernels of
 * `shaders/crossEntropy.wgsl` vs the same loss composed from the generic ops of `src/ops` (with
 * autograd: softmax, logSoftmax, mul, sum) vs the float64 CPU twin. Rows are returned, not printed.
 * The cosine family has its own module, `bench/loss-cosine.ts`.
 */
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { logSoftmax, mul, reshape, scale, softmax, sum } from '../src/ops/index';
import { distillationCrossEntropy } from '../src/losses/crossEntropy';
import { distillationCrossEntropyReference, distillationCrossEntropyReferenceBackward } from '../src/reference/crossEntropy';
import { timeGpu, timeJs, type TimingOptions } from './timing';

/** One benchmark row: median milliseconds of one forward + backward. */
export interface BenchRow {
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
}

function makeLogits(n: number, seed: number, spread: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = ((state + 0.5) / 4294967296 - 0.5) * 2 * spread;
  }
  return out;
}

/**
 * The loss from generic ops: `-sum(softmax(z) * logSoftmax(zt) * L) / |L|`. It multiplies by the
 * mask instead of selecting rows out, which is fine for finite logits (the case here).
 */
function composedCrossEntropy(z: Tensor, zt: Tensor, mask: Tensor, count: number): Tensor {
  const [B, T] = z.shape;
  const p = noGrad(() => softmax(z));
  const perElement = mul(mul(p, logSoftmax(zt)), reshape(mask, [B, T, 1]));
  return scale(sum(perElement), count > 0 ? -1 / count : 0);
}

async function benchOne(B: number, T: number, V: number): Promise<BenchRow> {
  await init();
  const shape = [B, T, V];
  const zData = makeLogits(B * T * V, 1, 6);
  const ztData = makeLogits(B * T * V, 2, 6);
  // About 80% of the positions selected, as with padding and prompt tokens.
  const maskData: number[] = Array.from({ length: B * T }, (_, i) => (((i * 2654435761) >>> 0) % 10 < 8 ? 1 : 0));
  const count = maskData.reduce((a, b) => a + b, 0);
  const z = tensor(zData, shape);
  const zt = tensor(ztData, shape, { requiresGrad: true });
  const mask = tensor(Float32Array.from(maskData), [B, T]);
  const step = (composed: boolean) => () =>
    scope(() => {
      const loss = composed ? composedCrossEntropy(z, zt, mask, count) : distillationCrossEntropy(z, zt, mask);
      loss.backward();
      zt.grad?.dispose();
      zt.grad = null;
    });

  // The composition is only a fair baseline if it computes the same loss.
  const [fusedValue, composedValue] = await scope(async () => [
    await noGrad(() => distillationCrossEntropy(z, zt, mask)).item(),
    await noGrad(() => composedCrossEntropy(z, zt, mask, count)).item(),
  ]);
  if (!(Math.abs(fusedValue - composedValue) <= 1e-3 * Math.abs(fusedValue))) {
    throw new Error(`loss-crossEntropy bench: fused ${fusedValue} and composed ${composedValue} disagree`);
  }

  const ctx = getContext();
  const timing: TimingOptions = { runs: 5, batchMs: 200, maxRepeat: 50 };
  const fusedMs = (await timeGpu(ctx, step(false), timing)).ms;
  const composedMs = (await timeGpu(ctx, step(true), timing)).ms;
  const twin = { teacher: zData, student: ztData, mask: maskData, shape: [B, T, V] as const };
  const float64Ms = timeJs(
    () => {
      distillationCrossEntropyReference(twin);
      distillationCrossEntropyReferenceBackward(twin);
    },
    { ...timing, runs: 3 },
  ).ms;
  for (const t of [z, zt, mask]) t.dispose();
  return { name: `distillationCrossEntropy fwd+bwd B=${B} T=${T} V=${V}`, fusedMs, composedMs, float64Ms };
}

/** Times the fused cross-entropy against the composed ops and the float64 twin. */
export async function benchmarks(): Promise<BenchRow[]> {
  return [await benchOne(4, 64, 8192), await benchOne(1, 8, 151_936)];
}
