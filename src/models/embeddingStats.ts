/**
 * Statistics of the frozen input-embedding table that the loss terms are measured against
 * (LOSSES.md section 1), computed on the GPU: column standard deviations (`shaders/embeddingStats.wgsl`),
 * the median row norm (`shaders/medianNorm.wgsl`) and the Voronoi distances (the catalyst's nearest
 * search in `shaders/catalyst.wgsl`, excluding each row itself); and percentiles.
 */
import source from '../../shaders/embeddingStats.wgsl?raw';
import { getContext } from '../gpu/context';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkFloatTensor } from '../tensor/validate';
import { embeddingRowNorms, medianOfNonNegative } from '../losses/medianNorm';
import { nearestRows } from '../losses/catalyst';
import { SgtError } from '../gpu/errors';

const WG = 256;
const MAX_CHUNKS = 64;

/** What {@link embeddingStats} returns. */
export interface EmbeddingStats {
  /** `[d]`: population standard deviation (divide by `V`) of each column: `stdLogRatio`'s `columnStd`. */
  columnStd: Tensor;
  /** Median over `v` of `||E_v||_2` (mean of the two middle values for even `V`): `medianNormPenalty`'s `m`. */
  medianNorm: number;
  /** `[V]`: `r_v = min_{u != v} ||E_v - E_u||_2` (`+Infinity` for a one-row table). */
  voronoiDistances: Tensor;
}

/**
 * Population standard deviation of each column of a `[V, d]` table, as a `[d]` tensor (GPU; not
 * differentiable).
 */
export function embeddingColumnStd(table: Tensor): Tensor {
  checkFloatTensor('embeddingColumnStd', 'table', table, 2);
  const [V, d] = table.shape;
  if (V === 0)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `embeddingColumnStd: 'table' has shape ${fmtShape(table.shape)}; a standard deviation needs at least one row`,
    );
  const out = Tensor.empty([d]);
  if (d === 0) return out;
  const ctx = getContext();
  const columnGroups = ctx.gridSize(d, WG);
  let chunks = Math.max(1, Math.min(MAX_CHUNKS, V, Math.floor(ctx.maxGridWorkgroups / columnGroups)));
  const chunkRows = Math.ceil(V / chunks);
  chunks = Math.ceil(V / chunkRows);
  const partialMean = Tensor.empty([chunks, d]);
  const partialM2 = Tensor.empty([chunks, d]);
  const params = new Uint32Array([V, d, chunkRows, chunks]);
  ctx.dispatch({
    shader: source,
    entryPoint: 'columnMoments',
    label: 'embeddingColumnStd',
    resources: { table: table.buffer, partialMean: partialMean.buffer, partialM2: partialM2.buffer },
    params,
    workgroups: [columnGroups, chunks],
  });
  ctx.dispatch({
    shader: source,
    entryPoint: 'columnStdFinalize',
    label: 'embeddingColumnStd',
    resources: { partialMean: partialMean.buffer, partialM2: partialM2.buffer, out: out.buffer },
    params,
    workgroups: [columnGroups],
  });
  partialMean.dispose();
  partialM2.dispose();
  return out;
}

/**
 * The statistics of a `[V, d]` embedding table that the losses use: column standard deviations,
 * the median row norm and the Voronoi distances, all computed on the GPU (one readback, for the
 * median). The caller owns the returned tensors. The Voronoi search costs `V^2 d` multiply-adds:
 * compute it once per model and keep it. Arguments are checked (and thrown) before any GPU work.
 */
export function embeddingStats(E: Tensor): Promise<EmbeddingStats> {
  checkFloatTensor('embeddingStats', 'E', E, 2);
  const [V] = E.shape;
  if (V === 0)
    throw new SgtError('SHAPE_MISMATCH', `embeddingStats: 'E' has shape ${fmtShape(E.shape)}; the statistics need at least one row`);
  const std = embeddingColumnStd(E);
  const norms = embeddingRowNorms(E);
  const median = medianOfNonNegative(norms);
  const squaredNorms = embeddingRowNorms(E, true);
  const nearest = nearestRows(E, E, { excludeSelf: true, tableSquaredNorms: squaredNorms });
  norms.dispose();
  squaredNorms.dispose();
  nearest.index.dispose();
  return median.item().then(
    (medianNorm) => {
      median.dispose();
      return { columnStd: std, medianNorm, voronoiDistances: nearest.distance };
    },
    (e: unknown) => {
      median.dispose();
      std.dispose();
      nearest.distance.dispose();
      throw e;
    },
  );
}

/**
 * The `q`-quantile of `values` (`q` in [0, 1]; 0.05 is the 5th percentile), interpolating linearly
 * at position `q * (n - 1)` of the sorted values (NumPy's and PyTorch's default). A tensor is read
 * back and sorted on the host. Arguments are checked before anything is read.
 */
export function percentile(values: Tensor | ArrayLike<number>, q: number): Promise<number> {
  if (typeof q !== 'number' || !(q >= 0 && q <= 1)) throw new SgtError('INVALID_ARGUMENT', `percentile: 'q' must be in [0, 1], got ${q}`);
  if (values instanceof Tensor) {
    checkFloatTensor('percentile', 'values', values);
    if (values.size === 0)
      throw new SgtError('INVALID_ARGUMENT', `percentile: 'values' has shape ${fmtShape(values.shape)}; it needs at least one value`);
    return values.toArray().then((data) => interpolate(Float64Array.from(data), q));
  }
  if (values == null || typeof values.length !== 'number')
    throw new SgtError('INVALID_ARGUMENT', "percentile: 'values' must be a Tensor or an array of numbers");
  if (values.length === 0) throw new SgtError('INVALID_ARGUMENT', "percentile: 'values' is empty; it needs at least one value");
  return Promise.resolve(interpolate(Float64Array.from(values), q));
}

function interpolate(data: Float64Array, q: number): number {
  const sorted = data.sort();
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  const fraction = position - below;
  // Written so that equal neighbours (or a fraction of 0) return the value itself, Infinity included.
  return fraction === 0 || sorted[above] === sorted[below] ? sorted[below] : sorted[below] + fraction * (sorted[above] - sorted[below]);
}

/**
 * The catalyst's recommended characteristic length: the 5th percentile of the Voronoi distances
 * (`embeddingStats(E).voronoiDistances`).
 */
export function recommendedCharacteristicLength(voronoiDistances: Tensor | ArrayLike<number>): Promise<number> {
  return percentile(voronoiDistances, 0.05);
}
