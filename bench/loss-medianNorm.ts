/**
 * Benchmark of the two per-position penalties on the cloak's outputs, forward + backward: the
 * median-norm penalty (`shaders/medianNorm.wgsl`) and the std-log-ratio loss
 * (`shaders/stdLogRatio.wgsl`), each fused vs composed from the generic ops of `src/ops` (with
 * autograd) vs its float64 CPU twin. Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { abs, add, div, log, mul, reshape, scale, sqrt, sum } from '../src/ops/index';
import { medianNormPenalty } from '../src/losses/medianNorm';
import { stdLogRatio } from '../src/losses/stdLogRatio';
import { medianNormPenaltyReference } from '../src/reference/medianNorm';
import { stdLogRatioReference } from '../src/reference/stdLogRatio';
import { timeGpu, timeJs, type TimingOptions } from './timing';

/** One benchmark row: median milliseconds of one forward + backward. */
export interface BenchRow {
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
}

function makeData(n: number, seed: number, lo = -0.5, hi = 0.5): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((hi - lo) * (state + 0.5)) / 4294967296;
  }
  return out;
}

/** `mean |(||x + mu|| - m)|` from generic ops; multiplies by the mask instead of selecting. */
function composedMedianNorm(x: Tensor, mu: Tensor, m: number, mask: Tensor, count: number): Tensor {
  const v = add(x, mu);
  const norm = sqrt(sum(mul(v, v), -1));
  return scale(sum(mul(abs(scale(norm, 1, -m)), mask)), count > 0 ? 1 / count : 0);
}

/** `-mean log(sigma / s)` from generic ops; multiplies by the mask instead of selecting. */
function composedStdLogRatio(sigma: Tensor, s: Tensor, mask: Tensor, count: number): Tensor {
  const [B, T, d] = sigma.shape;
  return scale(sum(mul(log(div(sigma, s)), reshape(mask, [B, T, 1]))), count > 0 ? -1 / (count * d) : 0);
}

async function benchOne(which: 'medianNormPenalty' | 'stdLogRatio', B: number, T: number, d: number) {
  await init();
  const xData = makeData(B * T * d, 7);
  const muData = makeData(B * T * d, 8);
  const sigmaData = makeData(B * T * d, 9, 1e-4, 2);
  const sData = makeData(d, 10, 0.01, 0.1);
  const maskData: number[] = Array.from({ length: B * T }, (_, i) => (((i * 2654435761) >>> 0) % 10 < 8 ? 1 : 0));
  const count = maskData.reduce((a, b) => a + b, 0);
  const m = 0.6 * Math.sqrt(d / 12);
  const x = tensor(xData, [B, T, d]);
  const mu = tensor(muData, [B, T, d], { requiresGrad: true });
  const sigma = tensor(sigmaData, [B, T, d], { requiresGrad: true });
  const s = tensor(sData, [d]);
  const mask = tensor(Float32Array.from(maskData), [B, T]);
  const leaf = which === 'medianNormPenalty' ? mu : sigma;
  const loss = (useComposed: boolean) =>
    which === 'medianNormPenalty'
      ? useComposed
        ? composedMedianNorm(x, mu, m, mask, count)
        : medianNormPenalty(x, mu, m, mask)
      : useComposed
        ? composedStdLogRatio(sigma, s, mask, count)
        : stdLogRatio(sigma, s, mask);
  const step = (useComposed: boolean) => () =>
    scope(() => {
      loss(useComposed).backward();
      leaf.grad?.dispose();
      leaf.grad = null;
    });

  const [fusedValue, composedValue] = await scope(async () => [
    await noGrad(() => loss(false)).item(),
    await noGrad(() => loss(true)).item(),
  ]);
  if (!(Math.abs(fusedValue - composedValue) <= 1e-3 * Math.abs(fusedValue))) {
    throw new Error(`loss-medianNorm bench (${which}): fused ${fusedValue} and composed ${composedValue} disagree`);
  }

  const ctx = getContext();
  const timing: TimingOptions = { runs: 5, batchMs: 200, maxRepeat: 50 };
  const fusedMs = (await timeGpu(ctx, step(false), timing)).ms;
  const composedMs = (await timeGpu(ctx, step(true), timing)).ms;
  const twin =
    which === 'medianNormPenalty'
      ? () => medianNormPenaltyReference(xData, muData, m, maskData, d)
      : () => stdLogRatioReference(sigmaData, sData, maskData);
  const float64Ms = timeJs(twin, timing).ms;
  for (const t of [x, mu, sigma, s, mask]) t.dispose();
  return { name: `${which} fwd+bwd B=${B} T=${T} d=${d}`, fusedMs, composedMs, float64Ms };
}

/** Times the fused median-norm penalty and std-log-ratio loss against the composed ops and their twins. */
export async function benchmarks(): Promise<BenchRow[]> {
  return [await benchOne('medianNormPenalty', 4, 64, 1024), await benchOne('stdLogRatio', 4, 64, 1024)];
}
