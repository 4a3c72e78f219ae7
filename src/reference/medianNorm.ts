/**
 * float64 CPU twin of the median-norm penalty (`src/losses/medianNorm.ts`) and of the row norms and
 * median it relies on: the oracle of the GPU tests. No WebGPU here.
 */
import { isSelected, selectedCount } from './mask';

/** Value and gradients of {@link medianNormPenaltyReference}. */
export interface MedianNormPenaltyReference {
  /** `mean over N=1 of | ||x + mu||_2 - m |` (0 when no position is selected). */
  value: number;
  /** d(value)/d(mu), `[positions * d]`; equal to d(value)/d(x) since the loss reads only `x + mu`. */
  gradMu: Float64Array;
  /** d(value)/d(x) (the same numbers as `gradMu`, in its own array). */
  gradX: Float64Array;
}

/**
 * `mean over positions with noiseMask = 1 of | ||x_p + mu_p||_2 - medianNorm |` and its gradient.
 * `x` and `mu` are row-major `[positions, d]` (positions = `noiseMask.length`). The gradient of
 * `|.|` at 0 and of `||v||` at `v = 0` are taken as 0, as in PyTorch.
 */
export function medianNormPenaltyReference(
  x: ArrayLike<number>,
  mu: ArrayLike<number>,
  medianNorm: number,
  noiseMask: ArrayLike<number>,
  d: number,
): MedianNormPenaltyReference {
  const positions = noiseMask.length;
  if (x.length !== positions * d || mu.length !== positions * d) {
    throw new Error(`medianNormPenaltyReference: x and mu need ${positions * d} values, got ${x.length} and ${mu.length}`);
  }
  const gradMu = new Float64Array(positions * d);
  const count = selectedCount(noiseMask);
  let total = 0;
  for (let p = 0; p < positions; p++) {
    if (!isSelected(noiseMask[p])) continue;
    let sq = 0;
    for (let j = 0; j < d; j++) {
      const v = x[p * d + j] + mu[p * d + j];
      sq += v * v;
    }
    const norm = Math.sqrt(sq);
    total += Math.abs(norm - medianNorm);
    // d|n - m| = sign(n - m) dn, dn = v / n dv (0 at v = 0)
    const factor = norm > 0 ? Math.sign(norm - medianNorm) / (norm * count) : 0;
    for (let j = 0; j < d; j++) gradMu[p * d + j] = factor * (x[p * d + j] + mu[p * d + j]);
  }
  return { value: count > 0 ? total / count : 0, gradMu, gradX: Float64Array.from(gradMu) };
}

/** `||E_v||_2` for every row of a row-major `[V, d]` table. */
export function rowNormsReference(table: ArrayLike<number>, d: number): Float64Array {
  const rows = d === 0 ? 0 : table.length / d;
  const out = new Float64Array(rows);
  for (let v = 0; v < rows; v++) {
    let sq = 0;
    for (let j = 0; j < d; j++) sq += table[v * d + j] ** 2;
    out[v] = Math.sqrt(sq);
  }
  return out;
}

/** The median (the mean of the two middle values for an even count); throws on an empty input. */
export function medianReference(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) throw new Error('medianReference: no values');
  const sorted = Float64Array.from(values).sort();
  return n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}
