/**
 * Benchmark of `mutualInformationLoss`, forward + backward: the fused kernels of
 * `shaders/mutualInformation.wgsl` vs the same loss composed from the generic ops of `src/ops`
 * (with autograd) vs the float64 CPU twin. Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { add, div, exp, gather, log, max, mul, permute, reshape, scale, sub, sum, where } from '../src/ops/index';
import { mutualInformation } from '../src/losses/mutualInformation';
import { mutualInformationReference, mutualInformationReferenceBackward } from '../src/reference/mutualInformation';
import { timeGpu, timeJs, type TimingOptions } from './timing';

const LOG_2PI = Math.log(2 * Math.PI);
const HALF_LOG_2PI_E = 0.5 * Math.log(2 * Math.PI * Math.E);

/** One benchmark row: median milliseconds of one forward + backward. */
export interface BenchRow {
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
}

interface Inputs {
  B: number;
  T: number;
  d: number;
  x: Float32Array;
  xt: Float32Array;
  mu: Float32Array;
  sigma: Float32Array;
  noise: number[];
}

function makeInputs(B: number, T: number, d: number): Inputs {
  let state = 12345;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const n = B * T * d;
  const x = Float32Array.from({ length: n }, normal);
  const mu = Float32Array.from({ length: n }, () => 0.1 * normal());
  const sigma = Float32Array.from({ length: n }, () => 0.2 + uniform());
  // About 80% of the positions transformed, as with padding and untransformed prompt tokens.
  const noise = Array.from({ length: B * T }, () => (uniform() < 0.8 ? 1 : 0));
  const xt = Float32Array.from({ length: n }, (_, e) => x[e] + noise[Math.floor(e / d)] * (mu[e] + sigma[e] * normal()));
  return { B, T, d, x, xt, mu, sigma, noise };
}

/**
 * The loss from generic ops, combined masks: per direction, the [H,H,T,d] pairwise standardised
 * differences are materialised, reduced to log densities, masked with `where` and passed through
 * a max-shifted log-sum-exp (the shift taken without gradient, which is exact for a log-sum-exp).
 */
function composedMutualInformation(
  x: Tensor,
  xt: Tensor,
  mu: Tensor,
  sigma: Tensor,
  noise: number[],
  B: number,
  T: number,
  d: number,
): Tensor {
  const H = B / 2;
  const centres = add(x, mu);
  const rows = (t: Tensor, ids: Tensor, shape: number[]) => reshape(gather(reshape(t, [B, T * d]), ids), shape);
  const idsP = tensor(
    Uint32Array.from({ length: H }, (_, i) => i),
    [H],
  );
  const idsQ = tensor(
    Uint32Array.from({ length: H }, (_, i) => H + i),
    [H],
  );
  const veryNegative = tensor([-1e30], [1]);
  const zero = tensor([0], [1]);
  let total: Tensor | null = null;
  let count = 0;
  for (const [queries, components, qStart, kStart] of [
    [idsP, idsQ, 0, H],
    [idsQ, idsP, H, 0],
  ] as const) {
    const pair = new Float32Array(H * T * H);
    const logK = new Float32Array(H * T);
    const included = new Float32Array(H * T);
    for (let i = 0; i < H; i++) {
      for (let t = 0; t < T; t++) {
        let K = 0;
        for (let k = 0; k < H; k++) {
          const on = noise[(qStart + i) * T + t] === 1 && noise[(kStart + k) * T + t] === 1;
          pair[(i * T + t) * H + k] = on ? 1 : 0;
          if (on) K++;
        }
        logK[i * T + t] = K > 0 ? Math.log(K) / d : 0;
        included[i * T + t] = K > 0 ? 1 : 0;
        if (K > 0) count++;
      }
    }
    const y = rows(xt, queries, [H, 1, T, d]);
    const c = rows(centres, components, [1, H, T, d]);
    const s = rows(sigma, components, [1, H, T, d]);
    const z = div(sub(y, c), s);
    const quad = sum(mul(z, z), -1); // [H,H,T]
    const logDet = sum(log(s), -1); // [1,H,T]
    const logN = permute(scale(add(quad, scale(logDet, 2)), -0.5, -0.5 * d * LOG_2PI), [0, 2, 1]); // [H,T,H]
    const masked = where(tensor(pair, [H, T, H]), logN, veryNegative);
    const shift = noGrad(() => max(masked, -1, { keepDim: true }));
    const lse = add(log(sum(exp(sub(masked, shift)), -1)), reshape(shift, [H, T]));
    const hcond = sum(log(rows(sigma, queries, [H, T, d])), -1);
    const term = add(scale(add(lse, hcond), -1 / d, -HALF_LOG_2PI_E), tensor(logK, [H, T]));
    const direction = sum(where(tensor(included, [H, T]), term, zero));
    total = total ? add(total, direction) : direction;
  }
  return scale(total!, count > 0 ? 1 / count : 0);
}

async function benchOne(B: number, T: number, d: number): Promise<BenchRow> {
  await init();
  const inp = makeInputs(B, T, d);
  const shape = [B, T, d];
  const leaves = [
    tensor(inp.x, shape, { requiresGrad: true }),
    tensor(inp.xt, shape, { requiresGrad: true }),
    tensor(inp.mu, shape, { requiresGrad: true }),
    tensor(inp.sigma, shape, { requiresGrad: true }),
  ];
  const [x, xt, mu, sigma] = leaves;
  const noiseMask = tensor(Float32Array.from(inp.noise), [B, T]);
  const clearGrads = () => {
    for (const t of leaves) {
      t.grad?.dispose();
      t.grad = null;
    }
  };
  const step = (composed: boolean) => () =>
    scope(() => {
      const loss = composed
        ? composedMutualInformation(x, xt, mu, sigma, inp.noise, B, T, d)
        : mutualInformation(x, xt, mu, sigma, noiseMask);
      loss.backward();
      clearGrads();
    });

  // The composition is only a fair baseline if it computes the same loss.
  const [fusedValue, composedValue] = await scope(async () => [
    await noGrad(() => mutualInformation(x, xt, mu, sigma, noiseMask)).item(),
    await noGrad(() => composedMutualInformation(x, xt, mu, sigma, inp.noise, B, T, d)).item(),
  ]);
  if (!(Math.abs(fusedValue - composedValue) <= 1e-3 * Math.abs(fusedValue))) {
    throw new Error(`loss-mutualInformation bench: fused ${fusedValue} and composed ${composedValue} disagree`);
  }

  const ctx = getContext();
  const timing: TimingOptions = { runs: 5, batchMs: 200, maxRepeat: 50 };
  const fusedMs = (await timeGpu(ctx, step(false), timing)).ms;
  const composedMs = (await timeGpu(ctx, step(true), timing)).ms;
  const twinInputs = { B, T, d, x: inp.x, xt: inp.xt, mu: inp.mu, sigma: inp.sigma, noiseMask: inp.noise };
  const float64Ms = timeJs(() => {
    mutualInformationReference(twinInputs);
    mutualInformationReferenceBackward(twinInputs);
  }, timing).ms;
  for (const t of [...leaves, noiseMask]) t.dispose();
  return { name: `mutualInformation fwd+bwd B=${B} T=${T} d=${d}`, fusedMs, composedMs, float64Ms };
}

/** Times the fused kernels against the composed ops and the float64 twin on two sizes. */
export async function benchmarks(): Promise<BenchRow[]> {
  return [await benchOne(4, 64, 64), await benchOne(8, 128, 256)];
}
