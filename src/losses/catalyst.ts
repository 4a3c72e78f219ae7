/**
 * The inverse-L2 power-law catalyst `mean over N=1 of (l / max(dmin, 1e-8))^p`, `dmin` the distance
 * from `xt` to the nearest vocabulary embedding (LOSSES.md section 2), over `shaders/catalyst.wgsl`,
 * and the tiled nearest-row search it is built on (also used for the Voronoi distances).
 */
import source from '../../shaders/catalyst.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkFloatTensor, checkNumber, maskTensor, type MaskInput } from '../tensor/validate';
import { embeddingRowNorms } from './medianNorm';
import { SgtError } from '../gpu/errors';

const WG = 256;
const TABLE_TILE = 64;
const MAX_SPLITS = 64;
const NAME = 'inverseL2PowerLawCatalyst';

/** The nearest table row of each query row. */
export interface NearestRows {
  /** `[P]` u32: index of the nearest row (smallest index among ties; `0xffffffff` when there is none). */
  index: Tensor;
  /** `[P]` f32: its Euclidean distance, recomputed exactly as `||q - E_v||` (`+Infinity` when none). */
  distance: Tensor;
}

/** Options of {@link nearestRows}. */
export interface NearestRowsOptions {
  /** The queries are the table itself: row `p` is not a candidate for query `p` (Voronoi distances). */
  excludeSelf?: boolean;
  /** `||E_v||^2` of the table's rows (`[V]`), when the caller already has them (Euclidean search). */
  tableSquaredNorms?: Tensor;
  /**
   * `'euclidean'` (default) or `'cosine'`: the row with the largest `q . E_v / (|q| |E_v|)`, ties to
   * the smaller index, a zero-norm row never winning unless all are zero; `distance` is then unset.
   */
  metric?: 'euclidean' | 'cosine';
  /** `||E_v||` of the table's rows (`[V]`), when the caller already has them (cosine search). */
  tableNorms?: Tensor;
  /** Element type of the returned `index` (default `u32`; `i32` gives -1 where there is no row). */
  indexDtype?: 'u32' | 'i32';
}

/**
 * For each row of `queries` (`[P, d]`), the nearest row of `table` (`[V, d]`) in Euclidean distance,
 * on the GPU: a tiled reduction over `|b|^2 - 2 a.b` that never materialises the `P x V` matrix,
 * split across the vocabulary so that a few queries still fill the device. Not differentiable.
 */
export function nearestRows(queries: Tensor, table: Tensor, options: NearestRowsOptions = {}): NearestRows {
  const where = 'nearestRows';
  checkFloatTensor(where, 'queries', queries, 2);
  checkFloatTensor(where, 'table', table, 2);
  const [P, d] = queries.shape;
  const [V, dt] = table.shape;
  if (d !== dt)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${where}: 'queries' has shape ${fmtShape(queries.shape)} but 'table' has shape ${fmtShape(table.shape)}; the rows must have the same length`,
    );
  if (options.excludeSelf && P !== V)
    throw new SgtError('INVALID_ARGUMENT', `${where}: excludeSelf needs the queries to be the table (${P} queries, ${V} rows)`);
  const cosine = options.metric === 'cosine';
  const normsArg = cosine ? 'tableNorms' : 'tableSquaredNorms';
  const sq = cosine ? options.tableNorms : options.tableSquaredNorms;
  if (sq) {
    checkFloatTensor(where, normsArg, sq, 1);
    if (sq.shape[0] !== V) throw new SgtError('SHAPE_MISMATCH', `${where}: '${normsArg}' has shape ${fmtShape(sq.shape)}; expected [${V}]`);
  }
  const index = Tensor.empty([P], options.indexDtype ?? 'u32');
  const distance = Tensor.empty([P]);
  if (P === 0) return { index, distance };
  const ctx = getContext();
  const norms = sq ?? embeddingRowNorms(table, !cosine);
  // Query rows per thread: a tile of 16, 32 or 64 queries, the smallest that P fills.
  const rowsPerThread = P <= 16 ? 1 : P <= 32 ? 2 : 4;
  const queryTiles = Math.ceil(P / (16 * rowsPerThread));
  const tableTiles = Math.max(1, Math.ceil(V / TABLE_TILE));
  const groupsX = Math.min(queryTiles, ctx.maxGridWorkgroups);
  const splits = Math.max(1, Math.min(tableTiles, MAX_SPLITS, Math.floor(ctx.maxGridWorkgroups / groupsX)));
  const partialValue = Tensor.empty([splits, P]);
  const partialIndex = Tensor.empty([splits, P], 'u32');
  const params = new Uint32Array([P, V, d, splits]);
  ctx.dispatch({
    shader: source,
    entryPoint: 'nearestPartials',
    label: where,
    constants: { EXCLUDE_SELF: options.excludeSelf ? 1 : 0, ROWS_PER_THREAD: rowsPerThread, COSINE: cosine ? 1 : 0 },
    resources: {
      queries: queries.buffer,
      table: table.buffer,
      tableNorm: norms.buffer,
      partialValue: partialValue.buffer,
      partialIndex: partialIndex.buffer,
    },
    params,
    workgroups: [groupsX, splits],
  });
  ctx.dispatch({
    shader: source,
    entryPoint: 'nearestCombine',
    label: where,
    constants: { COSINE: cosine ? 1 : 0 },
    resources: {
      queries: queries.buffer,
      table: table.buffer,
      partialValue: partialValue.buffer,
      partialIndex: partialIndex.buffer,
      nearestIndex: index.buffer,
      nearestDistance: distance.buffer,
    },
    params,
    workgroups: [ctx.gridSize(P, WG)],
  });
  partialValue.dispose();
  partialIndex.dispose();
  if (!sq) norms.dispose();
  return { index, distance };
}

/** Options of {@link inverseL2PowerLawCatalyst}: the reference's argument names in camelCase. */
export interface CatalystOptions {
  /** `l`, the characteristic length (> 0); recommended: the 5th percentile of the Voronoi distances. */
  characteristicLength: number;
  /** `p`, the exponent of decay (> 0). */
  exponentOfDecay: number;
}

interface CatalystAttrs {
  positions: number;
  d: number;
  length: number;
  exponent: number;
  /** The mask was uploaded by this call: keep it (as saved) until the backward, then free it. */
  ownsMask: boolean;
}

function lossParams({ positions, d, length, exponent }: CatalystAttrs): ArrayBuffer {
  const buf = new ArrayBuffer(32);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = positions;
  u[1] = d;
  f[4] = length;
  f[5] = exponent;
  return buf;
}

// Inputs: xt, E, mask. Saved: the nearest rows found by the forward (so that the backward follows
// the same argmin), the selected count, and an uploaded mask.
const catalystOp = defineOp<CatalystAttrs>({
  name: NAME,
  forward: ([xt, table, mask], attrs) => {
    const ctx = getContext();
    const queries = xt.view([attrs.positions, attrs.d]);
    const { index, distance } = nearestRows(queries, table);
    queries.dispose();
    const out = Tensor.empty([]);
    const count = Tensor.empty([1]);
    ctx.dispatch({
      shader: source,
      entryPoint: 'catalystFinalize',
      label: NAME,
      resources: { mask: mask.buffer, nearestDistanceIn: distance.buffer, out: out.buffer, count: count.buffer },
      params: lossParams(attrs),
      workgroups: [1],
    });
    return { output: out, saved: attrs.ownsMask ? [index, distance, count, mask] : [index, distance, count] };
  },
  // Only xt receives a gradient: E is the frozen base model's embedding table.
  backward: (g, { inputs: [xt, table, mask], saved: [index, distance, count], attrs }) => {
    const ctx = getContext();
    const grad = Tensor.empty(xt.shape);
    ctx.dispatch({
      shader: source,
      entryPoint: 'catalystBackward',
      label: `${NAME} backward`,
      resources: {
        queries: xt.buffer,
        table: table.buffer,
        mask: mask.buffer,
        nearestIndexIn: index.buffer,
        nearestDistanceIn: distance.buffer,
        count: count.buffer,
        gradOut: g.buffer,
        out: grad.buffer,
      },
      params: lossParams(attrs),
      workgroups: [ctx.gridSize(attrs.positions * attrs.d, WG)],
    });
    return [grad, null, null];
  },
});

/**
 * `mean over positions with noiseMask = 1 of (l / max(dmin, 1e-8))^p`, `dmin = min_v ||xt - E_v||_2`,
 * a 0-d tensor whose gradient flows to `xt` (through the nearest row found by the forward; 0
 * where `dmin` is at the floor).
 *
 * `xt` is `[B, T, d]`, `embeddingTable` the frozen `[V, d]` input-embedding table (no gradient),
 * `noiseMask` `[B, T]`. Throws, naming the option, unless `characteristicLength` and
 * `exponentOfDecay` are positive. No selected position gives 0 and a zero gradient.
 */
export function inverseL2PowerLawCatalyst(xt: Tensor, embeddingTable: Tensor, noiseMask: MaskInput, options: CatalystOptions): Tensor {
  checkFloatTensor(NAME, 'xt', xt, 3);
  checkFloatTensor(NAME, 'embeddingTable', embeddingTable, 2);
  const { characteristicLength, exponentOfDecay } = options ?? ({} as CatalystOptions);
  checkNumber(NAME, 'exponentOfDecay', exponentOfDecay, { positive: true });
  checkNumber(NAME, 'characteristicLength', characteristicLength, { positive: true });
  const [B, T, d] = xt.shape;
  const [V, dE] = embeddingTable.shape;
  if (dE !== d)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${NAME}: 'xt' has shape ${fmtShape(xt.shape)} but 'embeddingTable' has shape ${fmtShape(embeddingTable.shape)}; the feature sizes must match`,
    );
  if (V === 0)
    throw new SgtError('INVALID_ARGUMENT', `${NAME}: 'embeddingTable' has no rows; the catalyst needs at least one vocabulary embedding`);
  const { mask, owned } = maskTensor(NAME, 'noiseMask', noiseMask, [B, T]);
  return catalystOp([xt, embeddingTable, mask], {
    positions: B * T,
    d,
    length: characteristicLength,
    exponent: exponentOfDecay,
    ownsMask: owned,
  });
}
