/**
 * Float64 twins of `src/ops/elementwise.ts`, forward and backward: unary maps, binary arithmetic
 * with broadcasting, `where`, `expand`, and the layout ops `permute`, `transpose` and `reshape`.
 */
import { map, zeros, type NDArray } from './ndarray';
import { broadcastIndex, broadcastShapes, fmt, normalizeAxis, sameShape, sizeOf, stridesOf } from './shape';
import { broadcastTo, sumToShape } from './broadcast';

// ---------------------------------------------------------------------------------------------
// Unary maps
// ---------------------------------------------------------------------------------------------

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
// Broadcasting: expand, binary arithmetic, where
// ---------------------------------------------------------------------------------------------

/** Broadcasts `x` to `shape` (NumPy rules; `shape` must be the broadcast result). */
export function expand(x: NDArray, shape: readonly number[]): NDArray {
  return broadcastTo(x, shape);
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

/** `silu(gate) * up` (same shapes): the SwiGLU gate of a Llama MLP. */
export function swiglu(gate: NDArray, up: NDArray): NDArray {
  return mul(silu(gate), up);
}
/** Backward of {@link swiglu}: `[g up silu'(gate), g silu(gate)]`. */
export function swigluBackward(g: NDArray, gate: NDArray, up: NDArray): [NDArray, NDArray] {
  const [dSilu, dUp] = mulBackward(g, silu(gate), up);
  return [siluBackward(dSilu, gate)[0], dUp];
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
