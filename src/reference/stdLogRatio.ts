/** float64 CPU twin of the std-log-ratio loss (`src/losses/stdLogRatio.ts`). No WebGPU here. */
import { isSelected, selectedCount } from './mask';

/** Value and gradient of {@link stdLogRatioReference}. */
export interface StdLogRatioReference {
  /** `-mean over (N=1 positions, all j) of log(sigma_j / s_j)` (0 when no position is selected). */
  value: number;
  /** d(value)/d(sigma), `[positions * d]`. */
  gradSigma: Float64Array;
}

/**
 * `-mean over (positions with noiseMask = 1, all j) of log(sigma[p, j] / columnStd[j])` and its
 * gradient; `sigma` is row-major `[positions, d]` with `d = columnStd.length`.
 */
export function stdLogRatioReference(
  sigma: ArrayLike<number>,
  columnStd: ArrayLike<number>,
  noiseMask: ArrayLike<number>,
): StdLogRatioReference {
  const d = columnStd.length;
  const positions = noiseMask.length;
  if (sigma.length !== positions * d) throw new Error(`stdLogRatioReference: sigma needs ${positions * d} values, got ${sigma.length}`);
  const count = selectedCount(noiseMask);
  const gradSigma = new Float64Array(positions * d);
  if (count === 0 || d === 0) return { value: 0, gradSigma };
  const denominator = count * d;
  let total = 0;
  for (let p = 0; p < positions; p++) {
    if (!isSelected(noiseMask[p])) continue;
    for (let j = 0; j < d; j++) {
      const s = sigma[p * d + j];
      total += Math.log(s / columnStd[j]);
      // d(-log(s / c)) / ds = -1 / s
      gradSigma[p * d + j] = -1 / (s * denominator);
    }
  }
  return { value: -total / denominator, gradSigma };
}
