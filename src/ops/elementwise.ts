/**
 * Elementwise ops over `shaders/elementwise.wgsl`: unary maps, binary arithmetic with
 * broadcasting, `where`, `expand`, `permute`/`transpose` (strided copies) and `reshape` (a view).
 */
import source from '../../shaders/elementwise.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape, numel } from '../tensor/tensor';
import { MAX_RANK, broadcastShapes, broadcastStrides, contiguousStrides, normalizeAxis, sameShape } from './shape';
import { sumToShape } from './broadcast';
import { requireFloat } from '../tensor/validate';
import { SgtError } from '../gpu/errors';

const WG = 256;
/**
 * Elements per thread the grid is sized for (up to `maxGridWorkgroups`): a software adapter pays
 * for every workgroup (an add of 32K elements ran 2.5x faster on lavapipe with 16 workgroups than
 * with 128, 1.5x on SwiftShader), and large tensors still get the whole grid.
 */
const ITEMS_PER_THREAD = 8;

/** Codes of the unary maps (the OP override of `unary` / `unaryBackward`). */
const UNARY = {
  neg: 0,
  exp: 1,
  log: 2,
  sqrt: 3,
  tanh: 4,
  abs: 5,
  pow: 6,
  silu: 7,
  geluTanh: 8,
  relu: 9,
  scale: 10,
  clone: 11,
  sigmoidRange: 12,
  fill: 13,
} as const;
const BINARY = { add: 0, sub: 1, mul: 2, div: 3 } as const;
type UnaryName = keyof typeof UNARY;

function packParams(n: number, outShape: readonly number[], strides: number[][], alpha = 0, beta = 0): ArrayBuffer {
  if (outShape.length > MAX_RANK) throw new SgtError('UNSUPPORTED', `tensor rank ${outShape.length} exceeds ${MAX_RANK}`);
  const buf = new ArrayBuffer(4 * (4 + 8 * 4));
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = n;
  u[1] = outShape.length;
  f[2] = alpha;
  f[3] = beta;
  outShape.forEach((s, i) => {
    u[4 + i] = s;
  });
  strides.forEach((st, k) => {
    st.forEach((s, i) => {
      u[12 + 8 * k + i] = s;
    });
  });
  return buf;
}

function launch(
  entryPoint: string,
  op: number,
  out: Tensor,
  resources: Record<string, Tensor>,
  strides: number[][] | null,
  extra: { alpha?: number; beta?: number; conditionIsFloat?: boolean } = {},
): Tensor {
  const ctx = getContext();
  if (out.size === 0) return out;
  const res: Record<string, GPUBuffer> = { out: out.buffer };
  for (const [k, t] of Object.entries(resources)) res[k] = t.buffer;
  ctx.dispatch({
    shader: source,
    entryPoint,
    label: entryPoint,
    constants: { OP: op, STRIDED: strides ? 1 : 0, CONDITION_IS_FLOAT: extra.conditionIsFloat === false ? 0 : 1 },
    resources: res,
    params: packParams(out.size, out.shape, strides ?? [], extra.alpha, extra.beta),
    workgroups: [ctx.gridSize(out.size, WG * ITEMS_PER_THREAD)],
  });
  return out;
}

function unaryKernel(name: UnaryName, x: Tensor, alpha = 0, beta = 0): Tensor {
  return launch('unary', UNARY[name], Tensor.empty(x.shape), { a: x }, null, { alpha, beta });
}

function unaryGradKernel(name: UnaryName, x: Tensor, g: Tensor, alpha = 0, beta = 0): Tensor {
  return launch('unaryBackward', UNARY[name], Tensor.empty(x.shape), { a: x, b: g }, null, { alpha, beta });
}

/** Copies `x` through arbitrary strides into a new contiguous tensor of shape `outShape`. */
function stridedCopy(x: Tensor, outShape: readonly number[], strides: number[]): Tensor {
  return launch('unary', UNARY.clone, Tensor.empty(outShape), { a: x }, [strides]);
}

interface UnaryAttrs {
  alpha: number;
  beta: number;
}

function defineUnary(name: UnaryName) {
  const apply = defineOp<UnaryAttrs>({
    name,
    forward: ([x], { alpha, beta }) => unaryKernel(name, x, alpha, beta),
    // d f(x) = f'(x) dx, f' evaluated by unaryDerivative in the same WGSL file as f.
    backward: (g, { inputs: [x], attrs }) => [unaryGradKernel(name, x, g, attrs.alpha, attrs.beta)],
  });
  return (x: Tensor, alpha = 0, beta = 0): Tensor => {
    requireFloat(name, 'x', x);
    return apply([x], { alpha, beta });
  };
}

const negOp = defineUnary('neg');
const expOp = defineUnary('exp');
const logOp = defineUnary('log');
const sqrtOp = defineUnary('sqrt');
const tanhOp = defineUnary('tanh');
const absOp = defineUnary('abs');
const powOp = defineUnary('pow');
const siluOp = defineUnary('silu');
const geluOp = defineUnary('geluTanh');
const reluOp = defineUnary('relu');
const scaleOp = defineUnary('scale');
const copyOp = defineUnary('clone');
const sigmoidRangeOp = defineUnary('sigmoidRange');

/** `-x`. */
export const neg = (x: Tensor): Tensor => negOp(x);
/** `e^x`. */
export const exp = (x: Tensor): Tensor => expOp(x);
/** Natural logarithm. */
export const log = (x: Tensor): Tensor => logOp(x);
/** Square root. */
export const sqrt = (x: Tensor): Tensor => sqrtOp(x);
/** Hyperbolic tangent. */
export const tanh = (x: Tensor): Tensor => tanhOp(x);
/** `|x|` (gradient `sign(x)`, 0 at 0). */
export const abs = (x: Tensor): Tensor => absOp(x);
/** `x^p` for a scalar exponent `p` (negative bases allowed for integer `p`). */
export function pow(x: Tensor, p: number): Tensor {
  if (!Number.isFinite(p)) throw new SgtError('INVALID_ARGUMENT', `pow: exponent must be a finite number, got ${p}`);
  return powOp(x, p);
}
/** `x * sigmoid(x)`. */
export const silu = (x: Tensor): Tensor => siluOp(x);
/** GELU with the tanh approximation (GPT-2's `gelu_new`). */
export const geluTanh = (x: Tensor): Tensor => geluOp(x);
/** `max(x, 0)`. */
export const relu = (x: Tensor): Tensor => reluOp(x);
/** `factor * x + offset` for scalars. */
export function scale(x: Tensor, factor: number, offset = 0): Tensor {
  if (!Number.isFinite(factor) || !Number.isFinite(offset))
    throw new SgtError('INVALID_ARGUMENT', `scale: factor and offset must be finite, got ${factor}, ${offset}`);
  return scaleOp(x, factor, offset);
}
/**
 * `low + (high - low) * sigmoid(x)`, kept strictly inside `(low, high)` even where f32 would
 * round to a bound (the sigmoid is clamped to [2^-36, 1 - 2^-24]; the gradient is the unclamped
 * one). With `x = 2 rho / shallow` it is the cloak's `sMin + (sMax - sMin) (1 + tanh(rho / shallow)) / 2`.
 */
export function sigmoidRange(x: Tensor, low: number, high: number): Tensor {
  if (!Number.isFinite(low) || !Number.isFinite(high) || !(low < high)) {
    throw new SgtError('INVALID_ARGUMENT', `sigmoidRange: need finite low < high, got low=${low}, high=${high}`);
  }
  return sigmoidRangeOp(x, low, high);
}
/**
 * A tensor of `x`'s shape filled with `value`, made on the GPU (no upload, so no submit in the
 * middle of a step). Not recorded by autograd.
 */
export function fullLike(x: Tensor, value: number): Tensor {
  return unaryKernel('fill', x, 0, value);
}
/** A new tensor with the same elements (differentiable). */
export const clone = (x: Tensor): Tensor => copyOp(x);

type BinaryName = keyof typeof BINARY;

function binaryKernel(name: BinaryName, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(name, a.shape, b.shape);
  const contiguous = sameShape(a.shape, shape) && sameShape(b.shape, shape);
  const strides = contiguous ? null : [broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)];
  return launch('binary', BINARY[name], Tensor.empty(shape), { a, b }, strides);
}

function defineBinary(name: BinaryName, rule: (g: Tensor, a: Tensor, b: Tensor, out: Tensor) => [Tensor, Tensor]) {
  const apply = defineOp<null>({
    name,
    forward: ([a, b]) => binaryKernel(name, a, b),
    backward: (g, { inputs: [a, b], output }) => {
      const [ga, gb] = rule(g, a, b, output);
      // Broadcast operands received the gradient of every copy: sum it back to their shape.
      return [a.requiresGrad ? sumToShape(ga, a.shape) : null, b.requiresGrad ? sumToShape(gb, b.shape) : null];
    },
  });
  return (a: Tensor, b: Tensor): Tensor => {
    requireFloat(name, 'a', a);
    requireFloat(name, 'b', b);
    broadcastShapes(name, a.shape, b.shape);
    return apply([a, b], null);
  };
}

/** `a + b`, broadcasting. d(a+b) = da + db */
export const add = defineBinary('add', (g) => [g, g]);
/** `a - b`, broadcasting. d(a-b) = da - db */
export const sub = defineBinary('sub', (g) => [g, negOp(g)]);
/** `a * b`, broadcasting. d(ab) = b da + a db */
export const mul = defineBinary('mul', (g, a, b) => [binaryKernel('mul', g, b), binaryKernel('mul', g, a)]);
/** `a / b`, broadcasting. d(a/b) = da / b - (a/b) db / b */
export const div = defineBinary('div', (g, _a, b, out) => {
  const gOverB = binaryKernel('div', g, b);
  return [gOverB, negOp(binaryKernel('mul', gOverB, out))];
});

const swigluOp = defineOp<null>({
  name: 'swiglu',
  forward: ([gate, up]) => launch('swiglu', 0, Tensor.empty(gate.shape), { a: gate, b: up }, null),
  // d gate = (g up) silu'(gate) and d up = g silu(gate), both from one pass.
  backward: (g, { inputs: [gate, up] }) => {
    const dGate = Tensor.empty(gate.shape);
    const dUp = Tensor.empty(up.shape);
    launch('swigluBackward', 0, dGate, { a: gate, b: up, grad: g, out2: dUp }, null);
    if (!gate.requiresGrad) dGate.dispose();
    if (!up.requiresGrad) dUp.dispose();
    return [gate.requiresGrad ? dGate : null, up.requiresGrad ? dUp : null];
  },
});

/**
 * `silu(gate) * up`: the SwiGLU gate of a Llama MLP (`act_fn(gate_proj(x)) * up_proj(x)`) in one
 * kernel, and its backward in one, with the same bits as `mul(silu(gate), up)`. `gate` and `up`
 * must have the same shape (no broadcasting).
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  requireFloat('swiglu', 'gate', gate);
  requireFloat('swiglu', 'up', up);
  if (!sameShape(gate.shape, up.shape)) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `swiglu: 'gate' has shape ${fmtShape(gate.shape)} and 'up' ${fmtShape(up.shape)}; they must be the same`,
    );
  }
  return swigluOp([gate, up], null);
}

function selectKernel(op: number, cond: Tensor, a: Tensor, b: Tensor, shape: readonly number[]): Tensor {
  const strides = [broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape), broadcastStrides(cond.shape, shape)];
  const contiguous = [a.shape, b.shape, cond.shape].every((s) => sameShape(s, shape));
  return launch('selectWhere', op, Tensor.empty(shape), { a, b, cond }, contiguous ? null : strides, {
    conditionIsFloat: cond.dtype === 'f32',
  });
}

const whereOp = defineOp<null>({
  name: 'where',
  forward: ([cond, a, b]) => selectKernel(0, cond, a, b, broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape)),
  // The gradient flows to the branch each element came from.
  backward: (g, { inputs: [cond, a, b] }) => [
    null,
    a.requiresGrad ? sumToShape(selectKernel(1, cond, g, g, g.shape), a.shape) : null,
    b.requiresGrad ? sumToShape(selectKernel(2, cond, g, g, g.shape), b.shape) : null,
  ],
});

/** `cond ? a : b` elementwise, broadcasting all three; `cond` is nonzero/zero of any dtype. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  requireFloat('where', 'a', a);
  requireFloat('where', 'b', b);
  broadcastShapes('where', broadcastShapes('where', cond.shape, a.shape), b.shape);
  return whereOp([cond, a, b], null);
}

const expandOp = defineOp<{ shape: number[] }>({
  name: 'expand',
  forward: ([x], { shape }) => stridedCopy(x, shape, broadcastStrides(x.shape, shape)),
  backward: (g, { inputs: [x] }) => [sumToShape(g, x.shape)],
});

/** Broadcasts `x` to `shape` (materialised). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  requireFloat('expand', 'x', x);
  const target = broadcastShapes('expand', x.shape, shape);
  if (!sameShape(target, shape))
    throw new SgtError('SHAPE_MISMATCH', `expand: shape ${fmtShape(x.shape)} cannot expand to ${fmtShape(shape)}`);
  return expandOp([x], { shape: [...shape] });
}

const permuteOp = defineOp<{ perm: number[] }>({
  name: 'permute',
  forward: ([x], { perm }) => {
    const own = contiguousStrides(x.shape);
    return stridedCopy(
      x,
      perm.map((p) => x.shape[p]),
      perm.map((p) => own[p]),
    );
  },
  // The inverse permutation puts each gradient element back where its input came from.
  backward: (g, { attrs: { perm } }) => {
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => {
      inverse[p] = i;
    });
    const own = contiguousStrides(g.shape);
    return [
      stridedCopy(
        g,
        inverse.map((p) => g.shape[p]),
        inverse.map((p) => own[p]),
      ),
    ];
  },
});

/** Reorders axes: output axis `i` is input axis `perm[i]`. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  requireFloat('permute', 'x', x);
  const sorted = [...perm].sort((p, q) => p - q);
  if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) {
    throw new SgtError(
      'INVALID_ARGUMENT',
      `permute: [${perm.join(',')}] is not a permutation of the ${x.rank} axes of ${fmtShape(x.shape)}`,
    );
  }
  return permuteOp([x], { perm: [...perm] });
}

/** Swaps two axes (default: the last two). */
export function transpose(x: Tensor, dim0 = -2, dim1 = -1): Tensor {
  if (x.rank < 2 && dim0 === -2 && dim1 === -1)
    throw new SgtError('SHAPE_MISMATCH', `transpose: needs rank >= 2, got ${fmtShape(x.shape)}`);
  const a = normalizeAxis('transpose', dim0, x.rank);
  const b = normalizeAxis('transpose', dim1, x.rank);
  const perm = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(x, perm);
}

const reshapeOp = defineOp<{ shape: number[] }>({
  name: 'reshape',
  forward: ([x], { shape }) => x.view(shape),
  backward: (g, { inputs: [x] }) => [g.view(x.shape)],
});

/** Same elements, new shape (a view sharing the buffer); one dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((s) => s !== -1);
  const free = shape.length - known.length;
  const prod = numel(known);
  if (free > 1 || known.some((s) => !Number.isInteger(s) || s < 0))
    throw new SgtError('INVALID_ARGUMENT', `reshape: invalid shape ${fmtShape(shape)}`);
  const resolved = shape.map((s) => (s === -1 ? (prod === 0 ? 0 : x.size / prod) : s));
  if (numel(resolved) !== x.size || resolved.some((s) => !Number.isInteger(s))) {
    throw new SgtError('SHAPE_MISMATCH', `reshape: cannot view ${fmtShape(x.shape)} (${x.size} elements) as ${fmtShape(shape)}`);
  }
  return reshapeOp([x], { shape: resolved });
}
