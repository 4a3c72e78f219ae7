/**
 * Benchmark of the row-pair losses (layer cosine distance, layer L2 distance, input-embedding
 * similarity, absolute cosine similarity), forward + backward: the fused kernels of
 * `shaders/cosine.wgsl` vs the same loss composed from the generic ops of `src/ops` (with
 * autograd) vs the float64 CPU twin. Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { abs, div, mul, scale, sqrt, sub, sum } from '../src/ops/index';
import {
  absoluteCosineSimilarity,
  distillationLayerCosineDistance,
  distillationLayerL2Distance,
  inputEmbeddingSimilarity,
} from '../src/losses/cosine';
import { rowPairLossReference, type RowPairLossName } from '../src/reference/cosine';
import type { MaskInput } from '../src/tensor/validate';
import { timeGpu, timeJs, type TimingOptions } from './timing';

/** One benchmark row: median milliseconds of one forward + backward. */
export interface BenchRow {
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
}

const FUSED: Record<RowPairLossName, (u: Tensor, v: Tensor, mask: MaskInput) => Tensor> = {
  distillationLayerCosineDistance,
  distillationLayerL2Distance,
  inputEmbeddingSimilarity,
  absoluteCosineSimilarity,
};

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
 * The loss from generic ops: row sums of products, norms, a division, then the masked mean. It
 * multiplies by the mask instead of selecting, and has no 1e-8 floor (no row is near zero here).
 */
function composed(name: RowPairLossName, u: Tensor, v: Tensor, mask: Tensor, count: number): Tensor {
  let perRow: Tensor;
  if (name === 'distillationLayerL2Distance') {
    const diff = sub(u, v);
    perRow = sqrt(sum(mul(diff, diff), -1));
  } else {
    const cos = div(sum(mul(u, v), -1), mul(sqrt(sum(mul(u, u), -1)), sqrt(sum(mul(v, v), -1))));
    perRow = name === 'distillationLayerCosineDistance' ? scale(cos, -1, 1) : name === 'absoluteCosineSimilarity' ? abs(cos) : cos;
  }
  return scale(sum(mul(perRow, mask)), count > 0 ? 1 / count : 0);
}

async function benchOne(name: RowPairLossName, B: number, T: number, d: number): Promise<BenchRow> {
  await init();
  const shape = [B, T, d];
  const uData = makeData(B * T * d, 3);
  const vData = makeData(B * T * d, 4);
  for (let i = 0; i < vData.length; i++) vData[i] += 0.5 * uData[i]; // correlated, as h and ht are
  const maskData: number[] = Array.from({ length: B * T }, (_, i) => (((i * 2654435761) >>> 0) % 10 < 8 ? 1 : 0));
  const count = maskData.reduce((a, b) => a + b, 0);
  const u = tensor(uData, shape);
  const v = tensor(vData, shape, { requiresGrad: true });
  const mask = tensor(Float32Array.from(maskData), [B, T]);
  const step = (useComposed: boolean) => () =>
    scope(() => {
      const loss = useComposed ? composed(name, u, v, mask, count) : FUSED[name](u, v, mask);
      loss.backward();
      v.grad?.dispose();
      v.grad = null;
    });

  // The composition is only a fair baseline if it computes the same loss.
  const [fusedValue, composedValue] = await scope(async () => [
    await noGrad(() => FUSED[name](u, v, mask)).item(),
    await noGrad(() => composed(name, u, v, mask, count)).item(),
  ]);
  if (!(Math.abs(fusedValue - composedValue) <= 1e-3 * Math.abs(fusedValue))) {
    throw new Error(`loss-cosine bench (${name}): fused ${fusedValue} and composed ${composedValue} disagree`);
  }

  const ctx = getContext();
  const timing: TimingOptions = { runs: 5, batchMs: 200, maxRepeat: 50 };
  const fusedMs = (await timeGpu(ctx, step(false), timing)).ms;
  const composedMs = (await timeGpu(ctx, step(true), timing)).ms;
  const twin = { u: uData, v: vData, mask: maskData, shape: [B, T, d] as const };
  const float64Ms = timeJs(() => rowPairLossReference(name, twin), timing).ms;
  for (const t of [u, v, mask]) t.dispose();
  return { name: `${name} fwd+bwd B=${B} T=${T} d=${d}`, fusedMs, composedMs, float64Ms };
}

/** Times each fused row-pair loss against the composed ops and the float64 twin. */
export async function benchmarks(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const name of Object.keys(FUSED) as RowPairLossName[]) rows.push(await benchOne(name, 4, 64, 1024));
  return rows;
}
