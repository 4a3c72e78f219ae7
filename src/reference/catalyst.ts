/**
 * float64 CPU twin of the inverse-L2 power-law catalyst (`src/losses/catalyst.ts`) and of its
 * nearest-vocabulary search (brute force, exact differences). No WebGPU here.
 */
import { isSelected, selectedCount } from './mask';

/** The floor on the nearest distance, as in the GPU kernel and LOSSES.md. */
export const CATALYST_DISTANCE_FLOOR = 1e-8;

/** The nearest row of a table for each query row. */
export interface NearestReference {
  /** Index of the nearest row (smallest index among ties; -1 when there is none). */
  index: Int32Array;
  /** Its Euclidean distance (`Infinity` when there is none). */
  distance: Float64Array;
}

/**
 * For each row `q` of `queries` (`[P, d]`), the row of `table` (`[V, d]`) nearest in Euclidean
 * distance; with `excludeSelf`, row `q` of the table itself is skipped (queries = table).
 */
export function nearestRowsReference(
  queries: ArrayLike<number>,
  table: ArrayLike<number>,
  d: number,
  excludeSelf = false,
): NearestReference {
  const P = d === 0 ? 0 : queries.length / d;
  const V = d === 0 ? 0 : table.length / d;
  const index = new Int32Array(P).fill(-1);
  const distance = new Float64Array(P).fill(Infinity);
  for (let p = 0; p < P; p++) {
    let best = Infinity;
    for (let v = 0; v < V; v++) {
      if (excludeSelf && v === p) continue;
      let sq = 0;
      for (let j = 0; j < d; j++) sq += (queries[p * d + j] - table[v * d + j]) ** 2;
      if (sq < best) {
        best = sq;
        index[p] = v;
      }
    }
    distance[p] = Math.sqrt(best);
  }
  return { index, distance };
}

/** Value and gradient of {@link inverseL2PowerLawCatalystReference}. */
export interface CatalystReference {
  /** `mean over N=1 of (l / max(dmin, 1e-8))^p` (0 when no position is selected). */
  value: number;
  /** d(value)/d(xt), `[positions * d]`. */
  gradXt: Float64Array;
  /** The nearest-vocabulary search behind it (every position, selected or not). */
  nearest: NearestReference;
}

/**
 * `mean over positions with noiseMask = 1 of (l / max(dmin, 1e-8))^p`, `dmin = min_v ||xt_p - E_v||`,
 * and its gradient with respect to `xt` (through the nearest row; 0 where `dmin` is at the floor).
 * `xt` is row-major `[positions, d]`, `table` `[V, d]`.
 */
export function inverseL2PowerLawCatalystReference(
  xt: ArrayLike<number>,
  table: ArrayLike<number>,
  noiseMask: ArrayLike<number>,
  d: number,
  characteristicLength: number,
  exponentOfDecay: number,
): CatalystReference {
  const positions = noiseMask.length;
  if (xt.length !== positions * d)
    throw new Error(`inverseL2PowerLawCatalystReference: xt needs ${positions * d} values, got ${xt.length}`);
  const nearest = nearestRowsReference(xt, table, d);
  const count = selectedCount(noiseMask);
  const gradXt = new Float64Array(positions * d);
  let total = 0;
  for (let p = 0; p < positions; p++) {
    if (!isSelected(noiseMask[p])) continue;
    const dist = nearest.distance[p];
    const clamped = Math.max(dist, CATALYST_DISTANCE_FLOOR);
    const term = (characteristicLength / clamped) ** exponentOfDecay;
    total += term;
    if (!(dist > CATALYST_DISTANCE_FLOOR)) continue;
    // d (l/d)^p = -p (l/d)^p / d * dd,  dd = (xt - E_v) / d * dxt
    const factor = (-exponentOfDecay * term) / (dist * dist * count);
    const v = nearest.index[p];
    for (let j = 0; j < d; j++) gradXt[p * d + j] = factor * (xt[p * d + j] - table[v * d + j]);
  }
  return { value: count > 0 ? total / count : 0, gradXt, nearest };
}
