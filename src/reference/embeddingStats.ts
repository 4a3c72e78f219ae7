/** float64 CPU twin of the embedding statistics (`src/models/embeddingStats.ts`). No WebGPU here. */
import { nearestRowsReference } from './catalyst';
import { medianReference, rowNormsReference } from './medianNorm';

/** Population standard deviation (divide by `V`) of each column of a row-major `[V, d]` table. */
export function columnStdReference(table: ArrayLike<number>, d: number): Float64Array {
  const V = d === 0 ? 0 : table.length / d;
  const out = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let mean = 0;
    for (let v = 0; v < V; v++) mean += table[v * d + j];
    mean /= V;
    let m2 = 0;
    for (let v = 0; v < V; v++) m2 += (table[v * d + j] - mean) ** 2;
    out[j] = Math.sqrt(m2 / V);
  }
  return out;
}

/** `r_v = min_{u != v} ||E_v - E_u||_2` for every row (`Infinity` for a one-row table). */
export function voronoiDistancesReference(table: ArrayLike<number>, d: number): Float64Array {
  return nearestRowsReference(table, table, d, true).distance;
}

/**
 * The `q`-quantile (`q` in [0, 1]) with linear interpolation at position `q * (n - 1)` of the
 * sorted values (NumPy's and PyTorch's default).
 */
export function percentileReference(values: ArrayLike<number>, q: number): number {
  const n = values.length;
  if (n === 0) throw new Error('percentileReference: no values');
  if (!(q >= 0 && q <= 1)) throw new Error(`percentileReference: q must be in [0, 1], got ${q}`);
  const sorted = Float64Array.from(values).sort();
  const position = q * (n - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, n - 1);
  return sorted[below] + (position - below) * (sorted[above] - sorted[below]);
}

/** All statistics of a `[V, d]` embedding table, as LOSSES.md section 1 defines them. */
export function embeddingStatsReference(
  table: ArrayLike<number>,
  d: number,
): { columnStd: Float64Array; medianNorm: number; voronoiDistances: Float64Array } {
  return {
    columnStd: columnStdReference(table, d),
    medianNorm: medianReference(rowNormsReference(table, d)),
    voronoiDistances: voronoiDistancesReference(table, d),
  };
}
