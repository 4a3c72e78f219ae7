/** Float64 twins of `src/ops/reduce.ts`: `sum`, `mean`, `max` over the last axis or over everything. */
import { checkGrad, map, zeros, type NDArray } from './ndarray';
import { fmt, normalizeAxis, sizeOf } from './shape';

/** Options of the reductions (as in `src/ops/reduce.ts`). */
export interface ReduceOptions {
  /** Keep the reduced axis (or, with no axis, every axis) with size 1. */
  keepDim?: boolean;
}

interface Rows {
  rows: number;
  cols: number;
  outShape: number[];
}

/**
 * Views a reduction as `rows` rows of `cols` elements. The GPU ops reduce only the last axis
 * (`axis` -1 or rank-1) or everything (no axis); the twin refuses anything else so that a test
 * cannot silently compare a reduction the GPU does not implement.
 */
function rowsOf(op: string, x: NDArray, axis: number | undefined, options: ReduceOptions): Rows {
  const rank = x.shape.length;
  const keep = options.keepDim ?? false;
  if (axis === undefined) {
    return { rows: 1, cols: x.data.length, outShape: keep ? x.shape.map(() => 1) : [] };
  }
  if (rank === 0 || normalizeAxis(op, axis, rank) !== rank - 1) {
    throw new Error(`${op}: only the last axis (-1) or all axes (no axis) can be reduced; got axis ${axis} for ${fmt(x.shape)}`);
  }
  const cols = x.shape[rank - 1];
  const lead = x.shape.slice(0, -1);
  return { rows: sizeOf(lead), cols, outShape: keep ? [...lead, 1] : lead };
}

/** Sum over the last axis (`axis` = -1) or over all elements (no axis). */
export function sum(x: NDArray, axis?: number, options: ReduceOptions = {}): NDArray {
  const { rows, cols, outShape } = rowsOf('sum', x, axis, options);
  const out = zeros(outShape);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += x.data[r * cols + c];
    out.data[r] = s;
  }
  return out;
}
/** Backward of {@link sum}: each element receives its row's gradient. */
export function sumBackward(g: NDArray, x: NDArray, axis?: number, options: ReduceOptions = {}): [NDArray] {
  const { cols, outShape } = rowsOf('sum', x, axis, options);
  checkGrad('sum', g, outShape);
  const out = zeros(x.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = g.data[Math.floor(i / cols)];
  return [out];
}

/** Mean over the last axis (`axis` = -1) or over all elements (no axis). */
export function mean(x: NDArray, axis?: number, options: ReduceOptions = {}): NDArray {
  const { cols } = rowsOf('mean', x, axis, options);
  const s = sum(x, axis, options);
  return map(s, (v) => v / cols);
}
/** Backward of {@link mean}: each element receives its row's gradient divided by the row length. */
export function meanBackward(g: NDArray, x: NDArray, axis?: number, options: ReduceOptions = {}): [NDArray] {
  const { cols } = rowsOf('mean', x, axis, options);
  const [out] = sumBackward(g, x, axis, options);
  return [map(out, (v) => v / cols)];
}

/**
 * Index within each row of the element that receives a max's gradient: the FIRST maximum, so
 * that ties are deterministic (the GPU kernel breaks ties by the lower index). A NaN in a row
 * makes the row's max NaN (IEEE / PyTorch); its gradient then goes to the first NaN. The GPU may
 * differ there: WGSL lets compilers assume no NaN, and on lavapipe the kernel skips NaNs.
 */
function argmaxRows(x: NDArray, rows: number, cols: number): Int32Array {
  if (cols === 0) throw new Error('max: cannot reduce an axis of length 0: it has no maximum');
  const idx = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) {
      const v = x.data[r * cols + c];
      const b = x.data[r * cols + best];
      if (Number.isNaN(b)) break;
      if (v > b || Number.isNaN(v)) best = c;
    }
    idx[r] = best;
  }
  return idx;
}

/** Max over the last axis (`axis` = -1) or over all elements (no axis). */
export function max(x: NDArray, axis?: number, options: ReduceOptions = {}): NDArray {
  const { rows, cols, outShape } = rowsOf('max', x, axis, options);
  const idx = argmaxRows(x, rows, cols);
  const out = zeros(outShape);
  for (let r = 0; r < rows; r++) out.data[r] = x.data[r * cols + idx[r]];
  return out;
}
/** Backward of {@link max}: each row's gradient goes to its first argmax, zero elsewhere. */
export function maxBackward(g: NDArray, x: NDArray, axis?: number, options: ReduceOptions = {}): [NDArray] {
  const { rows, cols, outShape } = rowsOf('max', x, axis, options);
  checkGrad('max', g, outShape);
  const idx = argmaxRows(x, rows, cols);
  const out = zeros(x.shape);
  for (let r = 0; r < rows; r++) out.data[r * cols + idx[r]] = g.data[r];
  return [out];
}
