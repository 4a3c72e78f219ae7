/** Float64 twins of `src/ops/softmax.ts`: softmax and log-softmax over the last axis. */
import { checkGrad, zeros, type NDArray } from './ndarray';
import { fmt } from './shape';

/**
 * Per row: the max and log(sum(exp(x - max))). Shifting by the max keeps exp from overflowing on
 * large logits, as the GPU kernel does.
 */
function rowStats(op: string, x: NDArray): { rows: number; cols: number; m: Float64Array; logS: Float64Array } {
  if (x.shape.length === 0) throw new Error(`${op}: needs rank >= 1, got ${fmt(x.shape)}`);
  const cols = x.shape[x.shape.length - 1];
  const rows = cols === 0 ? 0 : x.data.length / cols;
  const m = new Float64Array(rows);
  const logS = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let c = 0; c < cols; c++) mx = Math.max(mx, x.data[r * cols + c]);
    let s = 0;
    for (let c = 0; c < cols; c++) s += Math.exp(x.data[r * cols + c] - mx);
    m[r] = mx;
    logS[r] = Math.log(s);
  }
  return { rows, cols, m, logS };
}

/** Softmax over the last axis. */
export function softmax(x: NDArray): NDArray {
  const { cols, m, logS } = rowStats('softmax', x);
  const out = zeros(x.shape);
  for (let i = 0; i < out.data.length; i++) {
    const r = Math.floor(i / cols);
    out.data[i] = Math.exp(x.data[i] - m[r] - logS[r]);
  }
  return out;
}
/** Backward of {@link softmax}: `[y (g - sum(g y))]` per row, `y = softmax(x)`. */
export function softmaxBackward(g: NDArray, x: NDArray): [NDArray] {
  checkGrad('softmax', g, x.shape);
  const y = softmax(x);
  const { rows, cols } = rowStats('softmax', x);
  const out = zeros(x.shape);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += g.data[r * cols + c] * y.data[r * cols + c];
    for (let c = 0; c < cols; c++) out.data[r * cols + c] = y.data[r * cols + c] * (g.data[r * cols + c] - dot);
  }
  return [out];
}

/** Log-softmax over the last axis: `x - max - log(sum(exp(x - max)))`. */
export function logSoftmax(x: NDArray): NDArray {
  const { cols, m, logS } = rowStats('logSoftmax', x);
  const out = zeros(x.shape);
  for (let i = 0; i < out.data.length; i++) {
    const r = Math.floor(i / cols);
    out.data[i] = x.data[i] - m[r] - logS[r];
  }
  return out;
}
/** Backward of {@link logSoftmax}: `[g - softmax(x) sum(g)]` per row. */
export function logSoftmaxBackward(g: NDArray, x: NDArray): [NDArray] {
  checkGrad('logSoftmax', g, x.shape);
  const y = softmax(x);
  const { rows, cols } = rowStats('logSoftmax', x);
  const out = zeros(x.shape);
  for (let r = 0; r < rows; r++) {
    let total = 0;
    for (let c = 0; c < cols; c++) total += g.data[r * cols + c];
    for (let c = 0; c < cols; c++) out.data[r * cols + c] = g.data[r * cols + c] - y.data[r * cols + c] * total;
  }
  return [out];
}
