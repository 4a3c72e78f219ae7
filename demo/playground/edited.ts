/**
 * Kernel launchers that take the WGSL source as an argument, for "Run edited WGSL".
 *
 * The library's op wrappers (`src/ops/*.ts`) compile the WGSL they import and offer no way to
 * substitute it, so the playground re-implements the wrappers of the simpler families here, each
 * a few `getContext().dispatch({ shader: source, ... })` calls that pack the same parameters,
 * bind the same buffers (by their WGSL names) and launch the same grids as the library. Run with
 * the unedited source they reproduce the library's results; run with an edited source they show
 * what the edit does. Every function here allocates with `Tensor.empty`, so a surrounding
 * `scope()` frees what it makes.
 */
import { Tensor, getContext, expand, reshape, scale, sumToShape } from '../../src/index';
import { fmtShape } from './compare';

/** Workgroup size of the grid-stride kernels (`WG` in the WGSL). */
const WG = 256;
/** Largest tensor rank the strided elementwise kernels index (`MAX_RANK` in the WGSL). */
const MAX_RANK = 8;
/** Rows at most this long take the one-thread-per-row kernels (`NARROW_ROW` in `src/ops/softmax.ts`). */
const NARROW_ROW = 64;
/** Output tile edge of `matmul.wgsl`. */
const MATMUL_TILE = 64;

// ---------------------------------------------------------------------------------------------
// Shapes (re-derived here rather than imported from the library's internals)
// ---------------------------------------------------------------------------------------------

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** NumPy broadcasting of shapes; throws naming `op` when they do not broadcast. */
function broadcastShapes(op: string, ...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const di = s[s.length - rank + i] ?? 1;
      if (di !== 1 && d !== 1 && di !== d) throw new Error(`${op}: shapes ${shapes.map(fmtShape).join(', ')} do not broadcast`);
      if (di !== 1) d = di;
    }
    out.push(d);
  }
  return out;
}

/** Strides reading a tensor of shape `from` at every index of the broadcast shape `to` (0 repeats). */
function broadcastStrides(from: readonly number[], to: readonly number[]): number[] {
  const own = contiguousStrides(from);
  const offset = to.length - from.length;
  return to.map((_, i) => {
    const k = i - offset;
    return k < 0 || from[k] === 1 ? 0 : own[k];
  });
}

// ---------------------------------------------------------------------------------------------
// elementwise.wgsl: unary maps, binary arithmetic, where
// ---------------------------------------------------------------------------------------------

/** The OP override of `unary` / `unaryBackward` for each map (as in `src/ops/elementwise.ts`). */
export const UNARY_OPS = {
  neg: 0, exp: 1, log: 2, sqrt: 3, tanh: 4, abs: 5, pow: 6, silu: 7, geluTanh: 8, relu: 9, scale: 10, clone: 11, sigmoidRange: 12,
} as const;
/** A unary map of `elementwise.wgsl`. */
export type UnaryName = keyof typeof UNARY_OPS;

/** The OP override of `binary` for each operator. */
export const BINARY_OPS = { add: 0, sub: 1, mul: 2, div: 3 } as const;
/** A binary operator of `elementwise.wgsl`. */
export type BinaryName = keyof typeof BINARY_OPS;

/** The `Params` struct of `elementwise.wgsl`: n, rank, alpha, beta, then shape and strides (8 each). */
function elementwiseParams(n: number, outShape: readonly number[], strides: number[][], alpha: number, beta: number): ArrayBuffer {
  if (outShape.length > MAX_RANK) throw new Error(`tensor rank ${outShape.length} exceeds ${MAX_RANK}`);
  const buf = new ArrayBuffer(4 * (4 + 8 * 4));
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = n;
  u[1] = outShape.length;
  f[2] = alpha;
  f[3] = beta;
  outShape.forEach((s, i) => (u[4 + i] = s));
  strides.forEach((st, k) => st.forEach((s, i) => (u[12 + 8 * k + i] = s)));
  return buf;
}

interface ElementwiseLaunch {
  entryPoint: 'unary' | 'unaryBackward' | 'binary' | 'selectWhere';
  op: number;
  outShape: readonly number[];
  resources: Record<string, Tensor>;
  /** Per-operand strides over the output shape, or null when every operand is contiguous with it. */
  strides: number[][] | null;
  alpha?: number;
  beta?: number;
  conditionIsFloat?: boolean;
}

function elementwise(source: string, l: ElementwiseLaunch): Tensor {
  const out = Tensor.empty(l.outShape);
  if (out.size === 0) return out;
  const ctx = getContext();
  const resources: Record<string, GPUBuffer> = { out: out.buffer };
  for (const [name, t] of Object.entries(l.resources)) resources[name] = t.buffer;
  ctx.dispatch({
    shader: source,
    entryPoint: l.entryPoint,
    label: `${l.entryPoint} (edited WGSL)`,
    constants: { OP: l.op, STRIDED: l.strides ? 1 : 0, CONDITION_IS_FLOAT: l.conditionIsFloat === false ? 0 : 1 },
    resources,
    params: elementwiseParams(out.size, l.outShape, l.strides ?? [], l.alpha ?? 0, l.beta ?? 0),
    workgroups: [ctx.gridSize(out.size, WG)],
  });
  return out;
}

/** `f(x)` for the unary map `name` (alpha, beta: its scalar arguments, e.g. pow's exponent). */
export function unary(source: string, name: UnaryName, x: Tensor, alpha = 0, beta = 0): Tensor {
  return elementwise(source, { entryPoint: 'unary', op: UNARY_OPS[name], outShape: x.shape, resources: { a: x }, strides: null, alpha, beta });
}

/** `g * f'(x)` for the unary map `name`: its backward, from the same WGSL file. */
export function unaryBackward(source: string, name: UnaryName, x: Tensor, g: Tensor, alpha = 0, beta = 0): Tensor {
  return elementwise(source, {
    entryPoint: 'unaryBackward', op: UNARY_OPS[name], outShape: x.shape, resources: { a: x, b: g }, strides: null, alpha, beta,
  });
}

/** `a (op) b` with NumPy broadcasting. */
export function binary(source: string, name: BinaryName, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShapes(name, a.shape, b.shape);
  const contiguous = sameShape(a.shape, shape) && sameShape(b.shape, shape);
  const strides = contiguous ? null : [broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)];
  return elementwise(source, { entryPoint: 'binary', op: BINARY_OPS[name], outShape: shape, resources: { a, b }, strides });
}

/**
 * Backward of {@link binary}: the same rules as `src/ops/elementwise.ts`, every product and
 * quotient run by the edited `binary` / `unary` kernels. Broadcast operands get their gradient
 * summed back to their own shape by the library's `sumToShape` (a `reduce.wgsl` kernel, not edited).
 */
export function binaryBackward(source: string, name: BinaryName, a: Tensor, b: Tensor, out: Tensor, g: Tensor): [Tensor, Tensor] {
  let ga: Tensor;
  let gb: Tensor;
  switch (name) {
    case 'add':
      [ga, gb] = [g, g];
      break;
    case 'sub':
      [ga, gb] = [g, unary(source, 'neg', g)];
      break;
    case 'mul':
      [ga, gb] = [binary(source, 'mul', g, b), binary(source, 'mul', g, a)];
      break;
    case 'div': {
      // d(a/b) = da / b - (a/b) db / b
      ga = binary(source, 'div', g, b);
      gb = unary(source, 'neg', binary(source, 'mul', ga, out));
      break;
    }
  }
  return [sumToShape(ga, a.shape), sumToShape(gb, b.shape)];
}

function selectWhere(source: string, op: number, cond: Tensor, a: Tensor, b: Tensor, shape: readonly number[]): Tensor {
  const strides = [broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape), broadcastStrides(cond.shape, shape)];
  const contiguous = [a.shape, b.shape, cond.shape].every((s) => sameShape(s, shape));
  return elementwise(source, {
    entryPoint: 'selectWhere', op, outShape: shape, resources: { a, b, cond }, strides: contiguous ? null : strides,
    conditionIsFloat: cond.dtype === 'f32',
  });
}

/** `cond ? a : b`, broadcasting all three. */
export function where(source: string, cond: Tensor, a: Tensor, b: Tensor): Tensor {
  return selectWhere(source, 0, cond, a, b, broadcastShapes('where', cond.shape, a.shape, b.shape));
}

/** Backward of {@link where}: the gradient routed to the branch each element came from (OP 1 and 2). */
export function whereBackward(source: string, cond: Tensor, a: Tensor, b: Tensor, g: Tensor): [Tensor, Tensor] {
  return [
    sumToShape(selectWhere(source, 1, cond, g, g, g.shape), a.shape),
    sumToShape(selectWhere(source, 2, cond, g, g, g.shape), b.shape),
  ];
}

// ---------------------------------------------------------------------------------------------
// reduce.wgsl: sum / mean / max over the last axis or over everything
// ---------------------------------------------------------------------------------------------

/** The OP override of `reduce.wgsl`. */
const REDUCE_OPS = { sum: 0, max: 1 } as const;
/** A reduction of the playground. */
export type ReduceName = 'sum' | 'mean' | 'max';

function rowParams(rows: number, cols: number, factor: number): ArrayBuffer {
  const buf = new ArrayBuffer(16);
  const u = new Uint32Array(buf);
  u[0] = rows;
  u[1] = cols;
  new Float32Array(buf)[2] = factor;
  return buf;
}

/** A reduction's output and, for max, the argmax of each row (needed by its backward). */
export interface ReduceResult {
  out: Tensor;
  index: Tensor;
}

/**
 * `name` over the last axis (`lastAxis`) or over all elements, as `src/ops/reduce.ts` launches it:
 * one workgroup per row (one thread per row for rows of at most 64), or grid-stride partials and
 * one workgroup over them for a reduction over everything. No keepDim: the axis is dropped.
 */
export function reduce(source: string, name: ReduceName, x: Tensor, lastAxis: boolean): ReduceResult {
  const ctx = getContext();
  const op = name === 'max' ? REDUCE_OPS.max : REDUCE_OPS.sum;
  const label = `${name} (edited WGSL)`;
  if (lastAxis) {
    if (x.rank === 0) throw new Error(`${name}: a 0-d tensor has no last axis`);
    const cols = x.shape[x.rank - 1];
    const rows = x.shape.slice(0, -1).reduce((p, s) => p * s, 1);
    if (rows > 0 && cols === 0) throw new Error(`${name}: cannot reduce an axis of length 0`);
    const out = Tensor.empty(x.shape.slice(0, -1));
    const index = Tensor.empty([Math.max(rows, 1)], 'u32');
    if (rows > 0) {
      const narrow = cols <= NARROW_ROW;
      ctx.dispatch({
        shader: source,
        entryPoint: narrow ? 'reduceRowsNarrow' : 'reduceRows',
        label,
        constants: { OP: op, INDEXED: 0 },
        // inIndex is not read with INDEXED = 0 but is statically used, so it must be bound.
        resources: { x: x.buffer, out: out.buffer, outIndex: index.buffer, inIndex: x.buffer },
        params: rowParams(rows, cols, name === 'mean' ? 1 / cols : 1),
        workgroups: [narrow ? ctx.gridSize(rows, WG) : ctx.gridSize(rows, 1)],
      });
    }
    return { out, index };
  }
  const n = x.size;
  if (n === 0) throw new Error(`${name}: the playground does not reduce an empty tensor`);
  const groups = ctx.gridSize(n, WG * 4);
  const partial = Tensor.empty([groups]);
  const partialIndex = Tensor.empty([groups], 'u32');
  ctx.dispatch({
    shader: source,
    entryPoint: 'reducePartials',
    label,
    constants: { OP: op },
    resources: { x: x.buffer, out: partial.buffer, outIndex: partialIndex.buffer },
    params: rowParams(1, n, 1),
    workgroups: [groups],
  });
  const out = Tensor.empty([]);
  const index = Tensor.empty([1], 'u32');
  ctx.dispatch({
    shader: source,
    entryPoint: 'reduceRows',
    label,
    constants: { OP: op, INDEXED: 1 },
    resources: { x: partial.buffer, out: out.buffer, outIndex: index.buffer, inIndex: partialIndex.buffer },
    params: rowParams(1, groups, name === 'mean' ? 1 / n : 1),
    workgroups: [1],
  });
  return { out, index };
}

/**
 * Backward of {@link reduce}. max: the edited `maxBackward` sends each row's gradient to its
 * argmax. sum / mean: the gradient is a broadcast (times 1/n for a mean), which the library does
 * with `expand` and `scale` (`elementwise.wgsl`, not edited): `reduce.wgsl` has no kernel for it.
 */
export function reduceBackward(source: string, name: ReduceName, x: Tensor, lastAxis: boolean, index: Tensor, g: Tensor): Tensor {
  const cols = lastAxis ? x.shape[x.rank - 1] : x.size;
  if (name !== 'max') {
    const kept = lastAxis ? [...x.shape.slice(0, -1), 1] : x.shape.map(() => 1);
    const gk = reshape(g, kept);
    return expand(name === 'mean' ? scale(gk, 1 / cols) : gk, x.shape);
  }
  const out = Tensor.empty(x.shape);
  if (x.size === 0) return out;
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'maxBackward',
    label: 'max backward (edited WGSL)',
    resources: { out: out.buffer, grad: g.buffer, inIndex: index.buffer },
    params: rowParams(x.size / cols, cols, 1),
    workgroups: [ctx.gridSize(x.size, WG)],
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// softmax.wgsl
// ---------------------------------------------------------------------------------------------

/**
 * `softmaxForward` (or, given the output `y` and its gradient `grad`, `softmaxBackward`) over the
 * last axis; `log` selects log-softmax. Rows of at most 64 take the one-thread-per-row kernels.
 */
export function softmax(source: string, log: boolean, x: Tensor, grad?: Tensor): Tensor {
  if (x.rank === 0) throw new Error(`${log ? 'logSoftmax' : 'softmax'}: needs rank >= 1, got []`);
  const out = Tensor.empty(x.shape);
  const cols = x.shape[x.rank - 1];
  const rows = cols === 0 ? 0 : x.size / cols;
  if (rows === 0) return out;
  const ctx = getContext();
  const narrow = cols <= NARROW_ROW;
  const kernel = grad ? 'softmaxBackward' : 'softmaxForward';
  const resources: Record<string, GPUBuffer> = { x: x.buffer, out: out.buffer };
  if (grad) resources.grad = grad.buffer;
  ctx.dispatch({
    shader: source,
    entryPoint: narrow ? `${kernel}Narrow` : kernel,
    label: `${log ? 'logSoftmax' : 'softmax'} (edited WGSL)`,
    constants: { LOG: log ? 1 : 0 },
    resources,
    params: new Uint32Array([rows, cols, 0, 0]),
    workgroups: [narrow ? ctx.gridSize(rows, WG) : ctx.gridSize(rows, 1)],
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// gather.wgsl
// ---------------------------------------------------------------------------------------------

function gatherParams(count: number, width: number, rows: number): Uint32Array {
  return new Uint32Array([count, width, rows, 0]);
}

/** `table[ids]` (rows of a `[V, d]` table at integer ids of any shape): `gatherRows`. */
export function gather(source: string, table: Tensor, ids: Tensor): Tensor {
  if (table.rank !== 2) throw new Error(`gather: argument 'table' must be 2-D [V, d], got ${fmtShape(table.shape)}`);
  if (ids.dtype === 'f32') throw new Error(`gather: argument 'ids' has dtype f32; expected i32 or u32`);
  const [rows, width] = table.shape;
  const out = Tensor.empty([...ids.shape, width]);
  if (out.size === 0) return out;
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'gatherRows',
    label: 'gather (edited WGSL)',
    resources: { table: table.buffer, ids: ids.buffer, out: out.buffer },
    params: gatherParams(ids.size, width, rows),
    workgroups: [ctx.gridSize(out.size, WG)],
  });
  return out;
}

/** Backward of {@link gather}: the scatter-add of the output gradient into the table's rows (`scatterAddRows`). */
export function gatherBackward(source: string, table: Tensor, ids: Tensor, g: Tensor): Tensor {
  const [rows, width] = table.shape;
  const out = Tensor.empty(table.shape);
  if (out.size === 0) return out;
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'scatterAddRows',
    label: 'gather backward (edited WGSL)',
    resources: { grad: g.buffer, ids: ids.buffer, out: out.buffer },
    params: gatherParams(ids.size, width, rows),
    workgroups: [ctx.gridSize(width, WG)],
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// rope.wgsl
// ---------------------------------------------------------------------------------------------

/**
 * RoPE of `x` `[B, T, H, Dh]` (`ropeApply`); `direction` -1 rotates back, which is the backward
 * (a rotation's transpose is its inverse).
 */
export function rope(source: string, x: Tensor, theta: number, positionOffset: number, direction: 1 | -1): Tensor {
  if (x.rank !== 4 || x.shape[3] % 2 !== 0) throw new Error(`rope: argument 'x' has shape ${fmtShape(x.shape)}; expected [B, T, H, Dh] with Dh even`);
  const out = Tensor.empty(x.shape);
  if (x.size === 0) return out;
  const [, t, h, dh] = x.shape;
  const pairs = x.size / 2;
  const buf = new ArrayBuffer(32);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = pairs;
  u[1] = t;
  u[2] = h;
  u[3] = dh / 2;
  u[4] = positionOffset;
  f[5] = direction;
  f[6] = Math.log2(theta);
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'ropeApply',
    label: `rope${direction === 1 ? '' : ' backward'} (edited WGSL)`,
    resources: { x: x.buffer, out: out.buffer },
    params: buf,
    workgroups: [ctx.gridSize(pairs, WG)],
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// matmul.wgsl
// ---------------------------------------------------------------------------------------------

/**
 * `op(a) @ op(b)` (`op` an optional transpose of the last two axes) with 64x64 output tiles.
 * The playground's version takes operands of equal rank only (2-D, or equal batch shapes): the
 * library's shared-2-D-operand case needs a batch-folding backward not re-implemented here.
 */
export function matmul(source: string, a: Tensor, b: Tensor, tA: boolean, tB: boolean): Tensor {
  const where = `matmul: a ${fmtShape(a.shape)}${tA ? 'ᵀ' : ''} @ b ${fmtShape(b.shape)}${tB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new Error(`${where}: both operands need rank >= 2`);
  if (a.rank !== b.rank || !sameShape(a.shape.slice(0, -2), b.shape.slice(0, -2))) {
    throw new Error(`${where}: the playground's edited matmul needs equal batch shapes (the library also shares a 2-D operand)`);
  }
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const [M, K] = tA ? [ac, ar] : [ar, ac];
  const [Kb, N] = tB ? [bc, br] : [br, bc];
  if (K !== Kb) throw new Error(`${where}: inner dimensions differ (${K} vs ${Kb})`);
  const batchShape = a.shape.slice(0, -2);
  const batch = batchShape.reduce((p, s) => p * s, 1);
  const out = Tensor.empty([...batchShape, M, N]);
  if (out.size === 0) return out;
  const ctx = getContext();
  if (K === 0) {
    ctx.write(out.buffer, new Float32Array(out.size));
    return out;
  }
  const batched = a.rank > 2;
  ctx.dispatch({
    shader: source,
    entryPoint: 'matmul',
    label: 'matmul (edited WGSL)',
    constants: { TRANS_A: tA ? 1 : 0, TRANS_B: tB ? 1 : 0 },
    resources: { a: a.buffer, b: b.buffer, c: out.buffer },
    params: new Uint32Array([M, N, K, batch, batched ? M * K : 0, batched ? K * N : 0, 0, 0]),
    workgroups: [Math.ceil(N / MATMUL_TILE), Math.ceil(M / MATMUL_TILE), Math.min(batch, ctx.limits.maxComputeWorkgroupsPerDimension)],
  });
  return out;
}

/**
 * Backward of {@link matmul}: with C = op(A) op(B), dA = dC op(B)ᵀ and dB = op(A)ᵀ dC, written per
 * transpose combination (as in `src/ops/matmul.ts`) so that no transposed copy is made.
 */
export function matmulBackward(source: string, a: Tensor, b: Tensor, tA: boolean, tB: boolean, g: Tensor): [Tensor, Tensor] {
  const ga = tA ? matmul(source, b, g, tB, true) : matmul(source, g, b, false, !tB);
  const gb = tB ? matmul(source, g, a, true, tA) : matmul(source, a, g, !tA, false);
  return [ga, gb];
}
