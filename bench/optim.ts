/**
 * Optimizer benchmarks: the fused AdamW step and global-norm clipping over ~4M parameters, each
 * against its float64 twin on the CPU. Both kernels are memory-bound, so the GPU rows also report
 * the bandwidth they reach (bytes the kernel must move at least / time).
 */
import { init, scope, tensor, type Tensor } from '../src/index';
import { AdamW, clipGradNorm } from '../src/optim/index';
import { adamwStepReference, clipGradNormReference } from '../src/reference/adamw';
import { timeGpu, timeJs, type TimingOptions } from './timing';

/** One benchmark row. */
export interface OptimBenchmark {
  /** What was timed, with its size. */
  name: string;
  /** Median GPU time per operation (ms). */
  gpuMs: number;
  /** Median time of the float64 twin (ms). */
  float64Ms: number;
  /** Minimum bytes moved per operation / GPU time (GB/s). */
  gbPerS: number;
}

// 4 x [1024, 1024] = 4,194,304 parameters: a few transformer-sized matrices.
const SHAPE = [1024, 1024];
const TENSORS = 4;
const TIMING: TimingOptions = { runs: 5, batchMs: 250, maxRepeat: 50 };

/** Deterministic values in [-1, 1) without Math.random, so runs are comparable. */
function noise(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * Times `AdamW.step()` (one fused dispatch per parameter) and `clipGradNorm` on the GPU, and the
 * float64 twins on the same data. Frees everything it allocates.
 */
export async function benchmarks(): Promise<OptimBenchmark[]> {
  const ctx = await init();
  const perTensor = SHAPE[0] * SHAPE[1];
  const total = perTensor * TENSORS;
  const label = `${(total / 1e6).toFixed(2)}M params (${TENSORS} x [${SHAPE.join(',')}])`;
  const hostParams = Array.from({ length: TENSORS }, (_, i) => noise(perTensor, 2 * i + 1));
  const hostGrads = Array.from({ length: TENSORS }, (_, i) => noise(perTensor, 2 * i + 2));

  return scope(async () => {
    const params: Tensor[] = hostParams.map((p) => tensor(p, SHAPE, { requiresGrad: true }));
    params.forEach((p, i) => {
      p.grad = tensor(hostGrads[i], SHAPE);
    });
    const opt = new AdamW(params, { lr: 1e-4 });
    try {
      const gpuStep = await timeGpu(ctx, () => opt.step(), TIMING);

      const ref = hostParams.map((p) => ({ p: Float64Array.from(p), m: new Float64Array(perTensor), v: new Float64Array(perTensor) }));
      let t = 0;
      const hyper = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
      const cpuStep = timeJs(() => {
        t++;
        ref.forEach((r, i) => {
          adamwStepReference(r.p, hostGrads[i], r.m, r.v, t, hyper);
        });
      }, TIMING);

      // A max norm far above the real norm: the factor is 1, so repeated runs keep the same data
      // while doing all the work (partials, final pass, in-place scale).
      const gpuClip = await timeGpu(ctx, () => clipGradNorm(params, 1e30).dispose(), TIMING);
      const cpuClip = timeJs(() => void clipGradNormReference(hostGrads, 1e30), TIMING);

      return [
        {
          name: `AdamW step (fused), ${label}`,
          gpuMs: gpuStep.ms,
          float64Ms: cpuStep.ms,
          // Reads p, g, m, v and writes p, m, v: 7 f32 per parameter.
          gbPerS: (total * 7 * 4) / (gpuStep.ms * 1e6),
        },
        {
          name: `clipGradNorm, ${label}`,
          gpuMs: gpuClip.ms,
          float64Ms: cpuClip.ms,
          // Reads every gradient twice (norm, scale) and writes it once.
          gbPerS: (total * 3 * 4) / (gpuClip.ms * 1e6),
        },
      ];
    } finally {
      opt.dispose();
      params.forEach((p) => {
        p.dispose();
      });
      await ctx.sync();
    }
  });
}
