/**
 * Float64 CPU twin of the core GPU ops (`src/ops`), forward and backward, for tests.
 *
 * Each op `foo(...)` has a `fooBackward(g, ...sameArguments)` that returns the vector-Jacobian
 * product: the gradients of the op's differentiable inputs given `g`, the gradient of its output,
 * in input order (broadcast operands get their gradient summed back to their own shape).
 *
 * The twin deliberately shares no code with `src/ops` (shapes, broadcasting and strides are
 * re-derived here): a test comparing the two then catches a bug in either, not just in the
 * kernels. Everything is plain loops in float64 so that the twin is an accurate and obviously
 * correct reference, not a fast one; keep inputs small. No WebGPU is used in this folder.
 */

/** A row-major, contiguous float64 array: the twin's tensor. */
export interface NDArray {
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: number[];
  /** Elements in row-major order (`data.length` equals the product of `shape`). */
  data: Float64Array;
}

/** Formats a shape as `[2,3]`, as the GPU ops' messages do. */
function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Product of the dimensions of `shape` (1 for a scalar). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/**
 * Makes an {@link NDArray}, copying `data` into float64. `shape` defaults to `[data.length]`.
 * Throws when the element count does not match the shape.
 */
export function ndarray(data: ArrayLike<number>, shape?: readonly number[]): NDArray {
  const s = shape ? [...shape] : [data.length];
  for (const d of s) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`ndarray: shape ${fmt(s)} must hold non-negative integers`);
  }
  if (sizeOf(s) !== data.length) throw new Error(`ndarray: ${data.length} elements do not fill shape ${fmt(s)}`);
  return { shape: s, data: Float64Array.from(data) };
}

/** An {@link NDArray} of zeros. */
export function zeros(shape: readonly number[]): NDArray {
  return { shape: [...shape], data: new Float64Array(sizeOf(shape)) };
}

/** Row-major strides of a contiguous array of `shape`. */
function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/**
 * NumPy broadcasting of two shapes (right-aligned; a 1 repeats). Throws naming `op` and both
 * shapes, like the GPU ops, so the twin rejects exactly the inputs they reject.
 */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

/**
 * For every element of the broadcast shape `to` (row-major), the flat index of the element of an
 * array of shape `from` that it reads. Computed by counting, independent of any stride trick.
 */
function broadcastIndex(from: readonly number[], to: readonly number[]): Int32Array {
  const offset = to.length - from.length;
  if (offset < 0) throw new Error(`broadcast: ${fmt(from)} has more axes than ${fmt(to)}`);
  const own = stridesOf(from);
  const index = new Int32Array(sizeOf(to));
  const coord = new Array<number>(to.length).fill(0);
  for (let i = 0; i < index.length; i++) {
    let at = 0;
    for (let k = 0; k < from.length; k++) {
      if (from[k] !== 1) at += coord[k + offset] * own[k];
    }
    index[i] = at;
    // Advance the row-major counter over `to`.
    for (let k = to.length - 1; k >= 0; k--) {
      if (++coord[k] < to[k]) break;
      coord[k] = 0;
    }
  }
  return index;
}

// ---------------------------------------------------------------------------------------------
// Unary maps
// ---------------------------------------------------------------------------------------------

function map(x: NDArray, f: (v: number) => number): NDArray {
  const out = zeros(x.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = f(x.data[i]);
  return out;
}

/** g * f'(x), elementwise: the backward of every unary map. */
function chain(g: NDArray, x: NDArray, df: (v: number) => number, op: string): [NDArray] {
  if (!sameShape(g.shape, x.shape)) throw new Error(`${op}Backward: gradient ${fmt(g.shape)} must have the input's shape ${fmt(x.shape)}`);
  const out = zeros(x.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = g.data[i] * df(x.data[i]);
  return [out];
}

/** `-x`. */
export function neg(x: NDArray): NDArray {
  return map(x, (v) => -v);
}
/** Backward of {@link neg}: `[-g]`. */
export function negBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, () => -1, 'neg');
}

/** `e^x`. */
export function exp(x: NDArray): NDArray {
  return map(x, Math.exp);
}
/** Backward of {@link exp}: `[g * e^x]`. */
export function expBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, Math.exp, 'exp');
}

/** Natural logarithm (NaN below 0, -Infinity at 0). */
export function log(x: NDArray): NDArray {
  return map(x, Math.log);
}
/** Backward of {@link log}: `[g / x]`. */
export function logBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, (v) => 1 / v, 'log');
}

/** Square root. */
export function sqrt(x: NDArray): NDArray {
  return map(x, Math.sqrt);
}
/** Backward of {@link sqrt}: `[g / (2 sqrt(x))]`. */
export function sqrtBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, (v) => 0.5 / Math.sqrt(v), 'sqrt');
}

/** Hyperbolic tangent. */
export function tanh(x: NDArray): NDArray {
  return map(x, Math.tanh);
}
/** Backward of {@link tanh}: `[g (1 - tanh(x)^2)]`. */
export function tanhBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(
    g,
    x,
    (v) => {
      const t = Math.tanh(v);
      return 1 - t * t;
    },
    'tanh',
  );
}

/** `|x|`. */
export function abs(x: NDArray): NDArray {
  return map(x, Math.abs);
}
/** Backward of {@link abs}: `[g sign(x)]`; the GPU op picks the subgradient 0 at x = 0, so do we. */
export function absBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, (v) => (v > 0 ? 1 : v < 0 ? -1 : 0), 'abs');
}

/**
 * `x^p` for one scalar `p`. At x = 0 the GPU op returns 0 (p > 0), 1 (p = 0) or +Infinity (p < 0,
 * whatever the sign of the zero), which we copy. A negative base gives the real power for an
 * integer `p` (sign flips for odd `p`) and NaN otherwise, as in IEEE `pow` and PyTorch.
 * (The GPU kernel returns `|x|^p` there instead, and p |x|^(p-1) as its slope, which is not the
 * slope of |x|^p for x < 0; it supports negative bases only for integer `p`, so tests avoid them.)
 */
export function powScalar(v: number, p: number): number {
  if (v === 0) return p > 0 ? 0 : p === 0 ? 1 : Infinity;
  return v ** p;
}

/** `x^p` elementwise for a scalar exponent `p` (see {@link powScalar} for zero and negative bases). */
export function pow(x: NDArray, p: number): NDArray {
  if (!Number.isFinite(p)) throw new Error(`pow: exponent must be a finite number, got ${p}`);
  return map(x, (v) => powScalar(v, p));
}
/**
 * Backward of {@link pow}: `[g p x^(p-1)]`, and exactly 0 for `p = 0` (the output is the constant
 * 1 even at x = 0). At x = 0 it is 0 for p > 1, p for p = 1, and an infinity for p < 1 (+Infinity,
 * the true one-sided slope, for 0 < p < 1; -Infinity at the pole of p < 0). The GPU kernel returns
 * 0 for p < 1 instead (a finite stand-in), so tests compare only p >= 1 at x = 0.
 */
export function powBackward(g: NDArray, x: NDArray, p: number): [NDArray] {
  return chain(g, x, (v) => (p === 0 ? 0 : p * powScalar(v, p - 1)), 'pow');
}

function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/** `x sigmoid(x)` (SiLU / swish). */
export function silu(x: NDArray): NDArray {
  // x / (1 + e^-x) rather than x * sigmoid(x): for very negative x, e^-x = Infinity gives -0, not NaN.
  return map(x, (v) => v / (1 + Math.exp(-v)));
}
/** Backward of {@link silu}: `[g s (1 + x (1 - s))]` with `s = sigmoid(x)`. */
export function siluBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(
    g,
    x,
    (v) => {
      const s = sigmoid(v);
      return s * (1 + v * (1 - s));
    },
    'silu',
  );
}

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/** GELU, tanh approximation (GPT-2's `gelu_new`): `x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`. */
export function geluTanh(x: NDArray): NDArray {
  return map(x, (v) => 0.5 * v * (1 + Math.tanh(GELU_C * (v + GELU_A * v * v * v))));
}
/** Backward of {@link geluTanh} (the derivative of the same tanh approximation, not of exact GELU). */
export function geluTanhBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(
    g,
    x,
    (v) => {
      const t = Math.tanh(GELU_C * (v + GELU_A * v * v * v));
      return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * v * v);
    },
    'geluTanh',
  );
}

/** `max(x, 0)`. */
export function relu(x: NDArray): NDArray {
  return map(x, (v) => Math.max(v, 0));
}
/** Backward of {@link relu}: `[g (x > 0)]`; the subgradient at 0 is 0, as on the GPU. */
export function reluBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, (v) => (v > 0 ? 1 : 0), 'relu');
}

/** `factor x + offset` for scalars. */
export function scale(x: NDArray, factor: number, offset = 0): NDArray {
  return map(x, (v) => factor * v + offset);
}
/** Backward of {@link scale}: `[factor g]` (the offset does not matter). */
export function scaleBackward(g: NDArray, x: NDArray, factor: number, _offset = 0): [NDArray] {
  return chain(g, x, () => factor, 'scale');
}

/** `low + (high - low) * sigmoid(x)`, with the GPU's clamp of the sigmoid to [2^-36, 1 - 2^-24]. */
export function sigmoidRange(x: NDArray, low: number, high: number): NDArray {
  return map(x, (v) => low + (high - low) * Math.min(Math.max(1 / (1 + Math.exp(-v)), 2 ** -36), 1 - 2 ** -24));
}
/** Backward of {@link sigmoidRange}: `[(high - low) s (1 - s) g]` with the unclamped sigmoid `s`. */
export function sigmoidRangeBackward(g: NDArray, x: NDArray, low: number, high: number): [NDArray] {
  return chain(
    g,
    x,
    (v) => {
      const s = 1 / (1 + Math.exp(-v));
      return (high - low) * s * (1 - s);
    },
    'sigmoidRange',
  );
}

/** A copy of `x`. */
export function clone(x: NDArray): NDArray {
  return { shape: [...x.shape], data: Float64Array.from(x.data) };
}
/** Backward of {@link clone}: `[g]` (copied, so callers may mutate it). */
export function cloneBackward(g: NDArray, x: NDArray): [NDArray] {
  return chain(g, x, () => 1, 'clone');
}

// ---------------------------------------------------------------------------------------------
// Broadcasting: sumToShape, expand, binary arithmetic, where
// ---------------------------------------------------------------------------------------------

/**
 * Sums `x` over the axes where `shape` (right-aligned) is 1 or missing, giving an array of
 * `shape`: the gradient of broadcasting `shape` up to `x.shape`. Throws when `shape` is not a
 * broadcast source of `x.shape`.
 */
export function sumToShape(x: NDArray, shape: readonly number[]): NDArray {
  const off = x.shape.length - shape.length;
  if (off < 0 || shape.some((s, i) => s !== 1 && s !== x.shape[i + off])) {
    throw new Error(`sumToShape: ${fmt(x.shape)} does not reduce to ${fmt(shape)}`);
  }
  const out = zeros(shape);
  const index = broadcastIndex(shape, x.shape);
  for (let i = 0; i < index.length; i++) out.data[index[i]] += x.data[i];
  return out;
}
/** Backward of {@link sumToShape}: every summed element receives its sum's gradient (an expand). */
export function sumToShapeBackward(g: NDArray, x: NDArray, shape: readonly number[]): [NDArray] {
  if (!sameShape(g.shape, shape)) throw new Error(`sumToShapeBackward: gradient ${fmt(g.shape)} must have shape ${fmt(shape)}`);
  return [expand(g, x.shape)];
}

/** Broadcasts `x` to `shape` (NumPy rules; `shape` must be the broadcast result). */
export function expand(x: NDArray, shape: readonly number[]): NDArray {
  if (!sameShape(broadcastShapes('expand', x.shape, shape), shape)) {
    throw new Error(`expand: shape ${fmt(x.shape)} cannot expand to ${fmt(shape)}`);
  }
  const out = zeros(shape);
  const index = broadcastIndex(x.shape, shape);
  for (let i = 0; i < index.length; i++) out.data[i] = x.data[index[i]];
  return out;
}
/** Backward of {@link expand}: `[sumToShape(g, x.shape)]`. */
export function expandBackward(g: NDArray, x: NDArray, _shape: readonly number[]): [NDArray] {
  return [sumToShape(g, x.shape)];
}

function binary(op: string, a: NDArray, b: NDArray, f: (p: number, q: number) => number): NDArray {
  const shape = broadcastShapes(op, a.shape, b.shape);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  const out = zeros(shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = f(a.data[ia[i]], b.data[ib[i]]);
  return out;
}

/**
 * Shared backward of the binary ops: per output element, the partials of f with respect to
 * both operands times g, each summed back to its operand's shape.
 */
function binaryBackward(
  op: string,
  g: NDArray,
  a: NDArray,
  b: NDArray,
  partials: (p: number, q: number, gi: number) => [number, number],
): [NDArray, NDArray] {
  const shape = broadcastShapes(op, a.shape, b.shape);
  if (!sameShape(g.shape, shape)) throw new Error(`${op}Backward: gradient ${fmt(g.shape)} must have the output shape ${fmt(shape)}`);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  const ga = zeros(a.shape);
  const gb = zeros(b.shape);
  for (let i = 0; i < g.data.length; i++) {
    const [da, db] = partials(a.data[ia[i]], b.data[ib[i]], g.data[i]);
    ga.data[ia[i]] += da;
    gb.data[ib[i]] += db;
  }
  return [ga, gb];
}

/** `a + b`, broadcasting. */
export function add(a: NDArray, b: NDArray): NDArray {
  return binary('add', a, b, (p, q) => p + q);
}
/** Backward of {@link add}: `[g, g]`, each summed to its operand's shape. */
export function addBackward(g: NDArray, a: NDArray, b: NDArray): [NDArray, NDArray] {
  return binaryBackward('add', g, a, b, (_p, _q, gi) => [gi, gi]);
}

/** `a - b`, broadcasting. */
export function sub(a: NDArray, b: NDArray): NDArray {
  return binary('sub', a, b, (p, q) => p - q);
}
/** Backward of {@link sub}: `[g, -g]`, each summed to its operand's shape. */
export function subBackward(g: NDArray, a: NDArray, b: NDArray): [NDArray, NDArray] {
  return binaryBackward('sub', g, a, b, (_p, _q, gi) => [gi, -gi]);
}

/** `a * b`, broadcasting. */
export function mul(a: NDArray, b: NDArray): NDArray {
  return binary('mul', a, b, (p, q) => p * q);
}
/** Backward of {@link mul}: `[g b, g a]`, each summed to its operand's shape. */
export function mulBackward(g: NDArray, a: NDArray, b: NDArray): [NDArray, NDArray] {
  return binaryBackward('mul', g, a, b, (p, q, gi) => [gi * q, gi * p]);
}

/** `a / b`, broadcasting. */
export function div(a: NDArray, b: NDArray): NDArray {
  return binary('div', a, b, (p, q) => p / q);
}
/** Backward of {@link div}: `[g / b, -g a / b^2]`, each summed to its operand's shape. */
export function divBackward(g: NDArray, a: NDArray, b: NDArray): [NDArray, NDArray] {
  return binaryBackward('div', g, a, b, (p, q, gi) => [gi / q, (-gi * p) / (q * q)]);
}

/**
 * `cond ? a : b` elementwise, broadcasting all three. `cond` holds numbers: any nonzero value
 * (NaN included) selects `a`, as the GPU's `!= 0` test does for f32, i32 and u32 conditions.
 */
export function where(cond: NDArray, a: NDArray, b: NDArray): NDArray {
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  const ic = broadcastIndex(cond.shape, shape);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  const out = zeros(shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = cond.data[ic[i]] !== 0 ? a.data[ia[i]] : b.data[ib[i]];
  return out;
}
/**
 * Backward of {@link where}: `[ga, gb]`, the gradients of `a` and `b` (the condition has none).
 * Each output element's gradient goes to the branch it was read from, summed over broadcasting.
 */
export function whereBackward(g: NDArray, cond: NDArray, a: NDArray, b: NDArray): [NDArray, NDArray] {
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  if (!sameShape(g.shape, shape)) throw new Error(`whereBackward: gradient ${fmt(g.shape)} must have the output shape ${fmt(shape)}`);
  const ic = broadcastIndex(cond.shape, shape);
  const ia = broadcastIndex(a.shape, shape);
  const ib = broadcastIndex(b.shape, shape);
  const ga = zeros(a.shape);
  const gb = zeros(b.shape);
  for (let i = 0; i < g.data.length; i++) {
    if (cond.data[ic[i]] !== 0) ga.data[ia[i]] += g.data[i];
    else gb.data[ib[i]] += g.data[i];
  }
  return [ga, gb];
}

// ---------------------------------------------------------------------------------------------
// Layout: permute, transpose, reshape
// ---------------------------------------------------------------------------------------------

function normalizeAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(axis) || a < 0 || a >= rank) throw new Error(`${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Reorders axes: output axis `i` is input axis `perm[i]`. */
export function permute(x: NDArray, perm: readonly number[]): NDArray {
  const rank = x.shape.length;
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== rank || sorted.some((p, i) => p !== i)) {
    throw new Error(`permute: [${perm.join(',')}] is not a permutation of the ${rank} axes of ${fmt(x.shape)}`);
  }
  const shape = perm.map((p) => x.shape[p]);
  const own = stridesOf(x.shape);
  const out = zeros(shape);
  const coord = new Array<number>(rank).fill(0);
  for (let i = 0; i < out.data.length; i++) {
    let at = 0;
    for (let k = 0; k < rank; k++) at += coord[k] * own[perm[k]];
    out.data[i] = x.data[at];
    for (let k = rank - 1; k >= 0; k--) {
      if (++coord[k] < shape[k]) break;
      coord[k] = 0;
    }
  }
  return out;
}
/** Backward of {@link permute}: `g` permuted by the inverse permutation. */
export function permuteBackward(g: NDArray, _x: NDArray, perm: readonly number[]): [NDArray] {
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inverse[p] = i;
  });
  return [permute(g, inverse)];
}

function transposePerm(rank: number, dim0: number, dim1: number): number[] {
  if (rank < 2 && dim0 === -2 && dim1 === -1) throw new Error(`transpose: needs rank >= 2, got rank ${rank}`);
  const a = normalizeAxis('transpose', dim0, rank);
  const b = normalizeAxis('transpose', dim1, rank);
  return Array.from({ length: rank }, (_, i) => (i === a ? b : i === b ? a : i));
}

/** Swaps axes `dim0` and `dim1` (default: the last two). */
export function transpose(x: NDArray, dim0 = -2, dim1 = -1): NDArray {
  return permute(x, transposePerm(x.shape.length, dim0, dim1));
}
/** Backward of {@link transpose}: the same swap applied to `g` (a swap is its own inverse). */
export function transposeBackward(g: NDArray, x: NDArray, dim0 = -2, dim1 = -1): [NDArray] {
  return [permute(g, transposePerm(x.shape.length, dim0, dim1))];
}

/** Same elements, new shape; one dimension may be -1 (inferred). Throws on a wrong element count. */
export function reshape(x: NDArray, shape: readonly number[]): NDArray {
  const known = shape.filter((s) => s !== -1);
  if (shape.length - known.length > 1 || known.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new Error(`reshape: invalid shape ${fmt(shape)}`);
  }
  const prod = sizeOf(known);
  const n = x.data.length;
  const resolved = shape.map((s) => (s === -1 ? (prod === 0 ? 0 : n / prod) : s));
  if (sizeOf(resolved) !== n || resolved.some((s) => !Number.isInteger(s))) {
    throw new Error(`reshape: cannot view ${fmt(x.shape)} (${n} elements) as ${fmt(shape)}`);
  }
  return { shape: resolved, data: Float64Array.from(x.data) };
}
/** Backward of {@link reshape}: `g` with the input's shape. */
export function reshapeBackward(g: NDArray, x: NDArray, _shape: readonly number[]): [NDArray] {
  return [reshape(g, x.shape)];
}

// ---------------------------------------------------------------------------------------------
// Reductions: sum, mean, max over the last axis or over everything
// ---------------------------------------------------------------------------------------------

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

function checkGrad(op: string, g: NDArray, shape: readonly number[]): void {
  if (!sameShape(g.shape, shape)) throw new Error(`${op}Backward: gradient ${fmt(g.shape)} must have the output shape ${fmt(shape)}`);
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
  if (cols === 0 && rows > 0) throw new Error('max: cannot reduce an empty axis');
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

// ---------------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------------

/** Options of {@link matmul} (as in `src/ops/matmul.ts`). */
export interface MatmulOptions {
  /** Use `a`'s last two axes transposed (`a` stored `[..., K, M]`). */
  transposeA?: boolean;
  /** Use `b`'s last two axes transposed (`b` stored `[..., N, K]`). */
  transposeB?: boolean;
}

interface MatmulGeometry {
  M: number;
  N: number;
  K: number;
  batchShape: number[];
  batch: number;
  /** Elements per batch entry of each operand, 0 for a 2-D operand shared by the whole batch. */
  aStep: number;
  bStep: number;
  tA: boolean;
  tB: boolean;
}

function matmulGeometry(a: NDArray, b: NDArray, options: MatmulOptions): MatmulGeometry {
  const tA = options.transposeA ?? false;
  const tB = options.transposeB ?? false;
  const where = `matmul: a ${fmt(a.shape)}${tA ? 'ᵀ' : ''} @ b ${fmt(b.shape)}${tB ? 'ᵀ' : ''}`;
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error(`${where}: both operands need rank >= 2`);
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const [M, Ka] = tA ? [ac, ar] : [ar, ac];
  const [Kb, N] = tB ? [bc, br] : [br, bc];
  if (Ka !== Kb) throw new Error(`${where}: inner dimensions differ (${Ka} vs ${Kb})`);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  // No general batch broadcasting: equal batch shapes, or one 2-D operand shared by the batch.
  if (batchA.length && batchB.length && !sameShape(batchA, batchB)) {
    throw new Error(`${where}: batch shapes differ (${fmt(batchA)} vs ${fmt(batchB)})`);
  }
  const batchShape = batchA.length ? batchA : batchB;
  return {
    M,
    N,
    K: Ka,
    batchShape,
    batch: sizeOf(batchShape),
    aStep: batchA.length ? M * Ka : 0,
    bStep: batchB.length ? Ka * N : 0,
    tA,
    tB,
  };
}

/** Flat index in `a` of op(A)[m, k] of batch entry `base`. */
function aAt(geo: MatmulGeometry, base: number, m: number, k: number): number {
  return base + (geo.tA ? k * geo.M + m : m * geo.K + k);
}
/** Flat index in `b` of op(B)[k, n] of batch entry `base`. */
function bAt(geo: MatmulGeometry, base: number, k: number, n: number): number {
  return base + (geo.tB ? n * geo.K + k : k * geo.N + n);
}

/**
 * `op(a) @ op(b)` over the last two axes, `op` an optional transpose. Batch axes must be equal,
 * or one operand is 2-D and shared by every batch entry of the other. Output `[...batch, M, N]`.
 */
export function matmul(a: NDArray, b: NDArray, options: MatmulOptions = {}): NDArray {
  const geo = matmulGeometry(a, b, options);
  const { M, N, K, batch } = geo;
  const out = zeros([...geo.batchShape, M, N]);
  for (let z = 0; z < batch; z++) {
    const ab = z * geo.aStep;
    const bb = z * geo.bStep;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a.data[aAt(geo, ab, m, k)] * b.data[bAt(geo, bb, k, n)];
        out.data[(z * M + m) * N + n] = s;
      }
    }
  }
  return out;
}
/**
 * Backward of {@link matmul}: `[ga, gb]` in the operands' stored layouts. With C = op(A) op(B),
 * d op(A) = dC op(B)ᵀ and d op(B) = op(A)ᵀ dC; a shared 2-D operand accumulates over the batch.
 */
export function matmulBackward(g: NDArray, a: NDArray, b: NDArray, options: MatmulOptions = {}): [NDArray, NDArray] {
  const geo = matmulGeometry(a, b, options);
  const { M, N, K, batch } = geo;
  checkGrad('matmul', g, [...geo.batchShape, M, N]);
  const ga = zeros(a.shape);
  const gb = zeros(b.shape);
  // Scatter each product term's contribution to the element it came from: the same index
  // functions as the forward, so the transposes and the shared operand need no special cases.
  for (let z = 0; z < batch; z++) {
    const ab = z * geo.aStep;
    const bb = z * geo.bStep;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const gi = g.data[(z * M + m) * N + n];
        for (let k = 0; k < K; k++) {
          const ia = aAt(geo, ab, m, k);
          const ib = bAt(geo, bb, k, n);
          ga.data[ia] += gi * b.data[ib];
          gb.data[ib] += gi * a.data[ia];
        }
      }
    }
  }
  return [ga, gb];
}

// ---------------------------------------------------------------------------------------------
// softmax, logSoftmax (last axis)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// gather
// ---------------------------------------------------------------------------------------------

function checkGather(table: NDArray, ids: NDArray): [number, number] {
  if (table.shape.length !== 2) throw new Error(`gather: argument 'table' must be 2-D [V, d], got ${fmt(table.shape)}`);
  for (const id of ids.data) {
    if (!Number.isInteger(id)) throw new Error(`gather: ids must be integers, got ${id}`);
  }
  return [table.shape[0], table.shape[1]];
}

/**
 * Row lookup: `out[...i, :] = table[ids[...i], :]`, shape `[...ids.shape, d]`. An id outside
 * `[0, V)` (negative included) gives a zero row, as on the GPU, which reads ids as unsigned.
 */
export function gather(table: NDArray, ids: NDArray): NDArray {
  const [V, d] = checkGather(table, ids);
  const out = zeros([...ids.shape, d]);
  ids.data.forEach((id, n) => {
    if (id >= 0 && id < V) out.data.set(table.data.subarray(id * d, (id + 1) * d), n * d);
  });
  return out;
}
/**
 * Backward of {@link gather}: `[gTable]`, a scatter-add of the output rows' gradients into the
 * rows they were read from. Repeated ids accumulate; out-of-range ids contribute nothing.
 * (The ids get no gradient.)
 */
export function gatherBackward(g: NDArray, table: NDArray, ids: NDArray): [NDArray] {
  const [V, d] = checkGather(table, ids);
  checkGrad('gather', g, [...ids.shape, d]);
  const out = zeros(table.shape);
  ids.data.forEach((id, n) => {
    if (id < 0 || id >= V) return;
    for (let j = 0; j < d; j++) out.data[id * d + j] += g.data[n * d + j];
  });
  return [out];
}
