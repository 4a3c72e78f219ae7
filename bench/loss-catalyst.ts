/**
 * Benchmark of the inverse-L2 power-law catalyst, forward + backward: the fused tiled nearest
 * search of `shaders/catalyst.wgsl` vs the same loss composed from the generic ops of `src/ops`
 * (a `matmul` for the dot products, a materialised positions x V distance matrix, `max` for the
 * minimum, with autograd) vs the float64 CPU twin. Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { add, matmul, max, mul, neg, pow, relu, reshape, scale, sqrt, sum } from '../src/ops/index';
import { inverseL2PowerLawCatalyst } from '../src/losses/catalyst';
import { inverseL2PowerLawCatalystReference } from '../src/reference/catalyst';
import { timeGpu, timeJs, type TimingOptions } from './timing';

/** One benchmark row: median milliseconds of one forward + backward. */
export interface BenchRow {
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
}

function makeData(n: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state + 0.5) / 4294967296 - 0.5;
  }
  return out;
}

/**
 * The catalyst from generic ops: `|a|^2 + |b|^2 - 2 a.b` as a materialised [P, V] matrix (clamped
 * at 0 by relu), its row minimum as `-max(-x)`, then `l^p * dmin^-p` and the masked mean. It
 * multiplies by the mask instead of selecting, and has no 1e-8 floor (no distance is near 0 here).
 */
function composed(xt: Tensor, E: Tensor, mask: Tensor, count: number, l: number, p: number): Tensor {
  const [B, T, d] = xt.shape;
  const a = reshape(xt, [B * T, d]);
  const aa = sum(mul(a, a), -1, { keepDim: true });
  const bb = sum(mul(E, E), -1);
  const ab = matmul(a, E, { transposeB: true });
  const squared = relu(add(add(aa, bb), scale(ab, -2)));
  const dmin = sqrt(neg(max(neg(squared), -1)));
  const term = scale(pow(dmin, -p), l ** p);
  return scale(sum(mul(term, reshape(mask, [B * T]))), count > 0 ? 1 / count : 0);
}

async function benchOne(B: number, T: number, d: number, V: number): Promise<BenchRow> {
  await init();
  const [l, p] = [0.5, 1.5];
  const xtData = makeData(B * T * d, 5);
  const EData = makeData(V * d, 6);
  const maskData: number[] = Array.from({ length: B * T }, (_, i) => (((i * 2654435761) >>> 0) % 10 < 8 ? 1 : 0));
  const count = maskData.reduce((s, v) => s + v, 0);
  const xt = tensor(xtData, [B, T, d], { requiresGrad: true });
  const E = tensor(EData, [V, d]);
  const mask = tensor(Float32Array.from(maskData), [B, T]);
  const options = { characteristicLength: l, exponentOfDecay: p };
  const fused = () => inverseL2PowerLawCatalyst(xt, E, mask, options);
  const step = (useComposed: boolean) => () =>
    scope(() => {
      const loss = useComposed ? composed(xt, E, mask, count, l, p) : fused();
      loss.backward();
      xt.grad?.dispose();
      xt.grad = null;
    });

  // The composition is only a fair baseline if it computes the same loss.
  const [fusedValue, composedValue] = await scope(async () => [
    await noGrad(fused).item(),
    await noGrad(() => composed(xt, E, mask, count, l, p)).item(),
  ]);
  if (!(Math.abs(fusedValue - composedValue) <= 1e-3 * Math.abs(fusedValue))) {
    throw new Error(`loss-catalyst bench: fused ${fusedValue} and composed ${composedValue} disagree`);
  }

  const ctx = getContext();
  const timing: TimingOptions = { runs: 5, batchMs: 200, maxRepeat: 50 };
  const fusedMs = (await timeGpu(ctx, step(false), timing)).ms;
  const composedMs = (await timeGpu(ctx, step(true), timing)).ms;
  const float64Ms = timeJs(() => inverseL2PowerLawCatalystReference(xtData, EData, maskData, d, l, p), {
    runs: 3,
    batchMs: 200,
    maxRepeat: 20,
  }).ms;
  for (const t of [xt, E, mask]) t.dispose();
  return { name: `inverseL2PowerLawCatalyst fwd+bwd B=${B} T=${T} d=${d} V=${V}`, fusedMs, composedMs, float64Ms };
}

/** Times the fused catalyst against the composed ops and the float64 twin. */
export async function benchmarks(): Promise<BenchRow[]> {
  return [await benchOne(4, 64, 64, 8192)];
}
