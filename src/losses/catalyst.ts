/**
 * The inverse-L2 power-law catalyst `mean over N=1 of (l / max(dmin, 1e-8))^p`, `dmin` the distance
 * from `xt` to the nearest vocabulary embedding (LOSSES.md section 2), over `shaders/catalyst.wgsl`,
 * and the tiled nearest-row search it is built on (also used for the Voronoi distances). The table
 * may be given as row blocks (an embedding larger than one storage binding, `CausalLM.embeddingBlocks()`)
 * and as a packed `bf16` / `f16` weight: the search runs block by block and merges the blocks'
 * winners, so no f32 copy of the whole table is ever made.
 */
import source from '../../shaders/catalyst.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import {
  checkBindingSize,
  checkFloatTensor,
  checkNumber,
  maskTensor,
  requireWeight,
  weightDtypeCode,
  type MaskInput,
} from '../tensor/validate';
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

/** A table as row blocks: the blocks, their first rows, and the whole table's size. */
export interface TableBlocks {
  blocks: readonly Tensor[];
  /** The table row of each block's first row. */
  starts: number[];
  /** Rows of the whole table. */
  rows: number;
  /** The row length. */
  width: number;
  /** How messages describe the table's size: `'arg' has shape [V,d]`, or its row length for blocks. */
  described: string;
}

/**
 * Checks a table given as one `[V, d]` tensor or as row blocks `[V_i, d]` in order (each a live
 * f32 / bf16 / f16 tensor of the same width that fits one storage binding), before any GPU work;
 * the messages name `fn` and `arg` (`arg[i]` for a block).
 */
export function tableBlocks(fn: string, arg: string, table: Tensor | readonly Tensor[]): TableBlocks {
  const blocks = table instanceof Tensor ? [table] : table;
  if (!Array.isArray(blocks) || blocks.length === 0) {
    throw new SgtError('INVALID_ARGUMENT', `${fn}: '${arg}' must be a [V, d] tensor or a non-empty list of [V_i, d] row blocks`);
  }
  const starts: number[] = [];
  let rows = 0;
  let width = -1;
  for (const [i, block] of blocks.entries()) {
    const name = table instanceof Tensor ? arg : `${arg}[${i}]`;
    if (!(block instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${fn}: argument '${name}' must be a Tensor`);
    block.bufferFor(`${fn} (argument '${name}')`);
    requireWeight(fn, name, block);
    if (block.rank !== 2)
      throw new SgtError('SHAPE_MISMATCH', `${fn}: argument '${name}' has shape ${fmtShape(block.shape)}; expected rank 2`);
    if (width >= 0 && block.shape[1] !== width) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `${fn}: '${name}' has shape ${fmtShape(block.shape)}; every block needs the width ${width} of block 0`,
      );
    }
    checkBindingSize(fn, name, block);
    width = block.shape[1];
    starts.push(rows);
    rows += block.shape[0];
  }
  const described = table instanceof Tensor ? `'${arg}' has shape ${fmtShape(table.shape)}` : `'${arg}' has rows of length ${width}`;
  return { blocks, starts, rows, width, described };
}

/**
 * For each row of `queries` (`[P, d]`), the nearest row of `table` (`[V, d]`, or its row blocks
 * `[V_i, d]` in order; f32 or a packed bf16 / f16 weight) in Euclidean distance, on the GPU: a
 * tiled reduction over `|b|^2 - 2 a.b` that never materialises the `P x V` matrix, split across
 * the vocabulary so that a few queries still fill the device. Row blocks are searched one after
 * the other and their winners merged on the search value (ties to the smaller index), which gives
 * the result of one whole table. Not differentiable.
 */
export function nearestRows(queries: Tensor, table: Tensor | readonly Tensor[], options: NearestRowsOptions = {}): NearestRows {
  const where = 'nearestRows';
  checkFloatTensor(where, 'queries', queries, 2);
  const t = tableBlocks(where, 'table', table);
  const [P, d] = queries.shape;
  const V = t.rows;
  if (d !== t.width)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${where}: 'queries' has shape ${fmtShape(queries.shape)} but ${t.described}; the rows must have the same length`,
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
  const value = Tensor.empty([P]);
  // Every block with rows (an empty table still runs once: that writes "no row" everywhere).
  const work = t.blocks.map((block, i) => ({ block, start: t.starts[i] })).filter(({ block }) => block.shape[0] > 0);
  if (work.length === 0) work.push({ block: t.blocks[0], start: 0 });
  work.forEach(({ block, start }, i) => {
    const norms = sq && t.blocks.length === 1 ? sq : blockNorms(block, start, sq, !cosine);
    searchBlock({ queries, block, norms, start, first: i === 0, options, index, distance, value });
    if (norms !== sq) norms.dispose();
  });
  value.dispose();
  return { index, distance };
}

/** The norms of one block's rows: sliced from the whole table's, or computed. */
function blockNorms(block: Tensor, start: number, whole: Tensor | undefined, squared: boolean): Tensor {
  if (!whole) return embeddingRowNorms(block, squared);
  const out = Tensor.empty([block.shape[0]]);
  getContext().copy(whole.buffer, start * 4, out.buffer, 0, block.shape[0] * 4);
  return out;
}

interface BlockSearch {
  queries: Tensor;
  block: Tensor;
  norms: Tensor;
  /** The table row of the block's first row. */
  start: number;
  /** The first block searched: its winners are written, not merged. */
  first: boolean;
  options: NearestRowsOptions;
  index: Tensor;
  distance: Tensor;
  value: Tensor;
}

/** One block: the split partial searches, then the combine pass that merges into the results so far. */
function searchBlock({ queries, block, norms, start, first, options, index, distance, value }: BlockSearch): void {
  const ctx = getContext();
  const [P, d] = queries.shape;
  const V = block.shape[0];
  const cosine = options.metric === 'cosine' ? 1 : 0;
  const dtype = weightDtypeCode(block);
  // Query rows per thread: a tile of 16, 32 or 64 queries, the smallest that P fills.
  const rowsPerThread = P <= 16 ? 1 : P <= 32 ? 2 : 4;
  const queryTiles = Math.ceil(P / (16 * rowsPerThread));
  const tableTiles = Math.max(1, Math.ceil(V / TABLE_TILE));
  const groupsX = Math.min(queryTiles, ctx.maxGridWorkgroups);
  const splits = Math.max(1, Math.min(tableTiles, MAX_SPLITS, Math.floor(ctx.maxGridWorkgroups / groupsX)));
  const partialValue = Tensor.empty([splits, P]);
  const partialIndex = Tensor.empty([splits, P], 'u32');
  const params = new Uint32Array([P, V, d, splits, start, first ? 1 : 0, 0, 0]);
  const label = 'nearestRows';
  ctx.dispatch({
    shader: source,
    entryPoint: 'nearestPartials',
    label,
    constants: { EXCLUDE_SELF: options.excludeSelf ? 1 : 0, ROWS_PER_THREAD: rowsPerThread, COSINE: cosine, TABLE_DTYPE: dtype },
    resources: {
      queries: queries.buffer,
      table: block.buffer,
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
    label,
    constants: { COSINE: cosine, TABLE_DTYPE: dtype },
    resources: {
      queries: queries.buffer,
      table: block.buffer,
      partialValue: partialValue.buffer,
      partialIndex: partialIndex.buffer,
      nearestIndex: index.buffer,
      nearestDistance: distance.buffer,
      nearestValue: value.buffer,
    },
    params,
    workgroups: [ctx.gridSize(P, WG)],
  });
  partialValue.dispose();
  partialIndex.dispose();
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
  /** The table row of each block's first row. */
  starts: number[];
  /** The mask was uploaded by this call: keep it (as saved) until the backward, then free it. */
  ownsMask: boolean;
}

/** The uniform of the finalize and backward kernels; `block` (its first row, rows, whether first) for the backward. */
function lossParams({ positions, d, length, exponent }: CatalystAttrs, block = { start: 0, rows: 0, first: true }): ArrayBuffer {
  const buf = new ArrayBuffer(32);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = positions;
  u[1] = d;
  u[2] = block.start;
  u[3] = block.rows;
  f[4] = length;
  f[5] = exponent;
  u[6] = block.first ? 1 : 0;
  return buf;
}

// Inputs: xt, mask, then E's row blocks. Saved: the nearest rows found by the forward (so that the
// backward follows the same argmin), the selected count, and an uploaded mask.
const catalystOp = defineOp<CatalystAttrs>({
  name: NAME,
  forward: ([xt, mask, ...table], attrs) => {
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
  // Only xt receives a gradient: E is the frozen base model's embedding table. One dispatch per
  // block: each position's gradient reads its nearest row from the block that holds it.
  backward: (g, { inputs: [xt, mask, ...table], saved: [index, distance, count], attrs }) => {
    const ctx = getContext();
    const grad = Tensor.empty(xt.shape);
    table.forEach((block, i) => {
      if (block.shape[0] === 0 && i > 0) return;
      ctx.dispatch({
        shader: source,
        entryPoint: 'catalystBackward',
        label: `${NAME} backward`,
        constants: { TABLE_DTYPE: weightDtypeCode(block) },
        resources: {
          queries: xt.buffer,
          table: block.buffer,
          mask: mask.buffer,
          nearestIndexIn: index.buffer,
          nearestDistanceIn: distance.buffer,
          count: count.buffer,
          gradOut: g.buffer,
          out: grad.buffer,
        },
        params: lossParams(attrs, { start: attrs.starts[i], rows: block.shape[0], first: i === 0 }),
        workgroups: [ctx.gridSize(attrs.positions * attrs.d, WG)],
      });
    });
    return [grad, null, ...table.map(() => null)];
  },
});

/**
 * `mean over positions with noiseMask = 1 of (l / max(dmin, 1e-8))^p`, `dmin = min_v ||xt - E_v||_2`,
 * a 0-d tensor whose gradient flows to `xt` (through the nearest row found by the forward; 0
 * where `dmin` is at the floor).
 *
 * `xt` is `[B, T, d]`, `embeddingTable` the frozen `[V, d]` input-embedding table (no gradient),
 * or its row blocks `[V_i, d]` in order (`CausalLM.embeddingBlocks()`; f32 or packed bf16 / f16,
 * each within one storage binding), `noiseMask` `[B, T]`. Throws, naming the option, unless
 * `characteristicLength` and `exponentOfDecay` are positive. No selected position gives 0 and a
 * zero gradient.
 */
export function inverseL2PowerLawCatalyst(
  xt: Tensor,
  embeddingTable: Tensor | readonly Tensor[],
  noiseMask: MaskInput,
  options: CatalystOptions,
): Tensor {
  checkFloatTensor(NAME, 'xt', xt, 3);
  const table = tableBlocks(NAME, 'embeddingTable', embeddingTable);
  const { characteristicLength, exponentOfDecay } = options ?? ({} as CatalystOptions);
  checkNumber(NAME, 'exponentOfDecay', exponentOfDecay, { positive: true });
  checkNumber(NAME, 'characteristicLength', characteristicLength, { positive: true });
  const [B, T, d] = xt.shape;
  const V = table.rows;
  if (table.width !== d)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${NAME}: 'xt' has shape ${fmtShape(xt.shape)} but ${table.described}; the feature sizes must match`,
    );
  if (V === 0)
    throw new SgtError('INVALID_ARGUMENT', `${NAME}: 'embeddingTable' has no rows; the catalyst needs at least one vocabulary embedding`);
  const { mask, owned } = maskTensor(NAME, 'noiseMask', noiseMask, [B, T]);
  return catalystOp([xt, mask, ...table.blocks], {
    positions: B * T,
    d,
    length: characteristicLength,
    exponent: exponentOfDecay,
    starts: table.starts,
    ownsMask: owned,
  });
}
