/**
 * Reductions over `shaders/reduce.wgsl`: `sum`, `mean`, `max` over the last axis or over all
 * elements. (`sumToShape`, the gradient of broadcasting, is in `broadcast.ts`.)
 */
import source from '../../shaders/reduce.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape, numel } from '../tensor/tensor';
import { normalizeAxis } from './shape';
import { expand, scale } from './elementwise';
import { requireFloat } from '../tensor/validate';
import { NARROW_ROW } from './softmax';
import { SgtError } from '../gpu/errors';

const WG = 256;
const SUM = 0;
const MAX = 1;

function rowParams(rows: number, cols: number, factor: number): ArrayBuffer {
  const buf = new ArrayBuffer(16);
  const u = new Uint32Array(buf);
  u[0] = rows;
  u[1] = cols;
  new Float32Array(buf)[2] = factor;
  return buf;
}

/** A new f32 tensor of `shape` with every element `value` (the result of reducing nothing). */
function filled(shape: readonly number[], value: number): Tensor {
  const t = Tensor.empty(shape);
  if (t.size > 0) getContext().write(t.buffer, new Float32Array(t.size).fill(value));
  return t;
}

/**
 * Reduces the rows of a [rows, cols] view; returns values [rows] and (for max) argmax [rows].
 * Rows of no elements reduce as in PyTorch: `empty` (0 for a sum, NaN for a mean); a max has no
 * value there and the caller has refused it.
 */
function reduceRowsKernel(op: number, x: Tensor, rows: number, cols: number, factor: number, outShape: readonly number[], empty: number) {
  const ctx = getContext();
  if (rows > 0 && cols === 0) return { out: filled(outShape, empty), index: Tensor.empty([rows], 'u32') };
  const out = Tensor.empty(outShape);
  const index = Tensor.empty([rows], 'u32');
  if (rows > 0) {
    const narrow = cols <= NARROW_ROW;
    ctx.dispatch({
      shader: source,
      entryPoint: narrow ? 'reduceRowsNarrow' : 'reduceRows',
      constants: { OP: op, INDEXED: 0 },
      resources: { x: x.buffer, out: out.buffer, outIndex: index.buffer, inIndex: x.buffer }, // inIndex unread (INDEXED=0) but statically used: must be bound
      params: rowParams(rows, cols, factor),
      workgroups: [narrow ? ctx.gridSize(rows, 256) : ctx.gridSize(rows, 1)],
    });
  }
  return { out, index };
}

/** Reduces all n elements: grid-stride partials, then one workgroup over the partials. No elements give `empty`. */
function reduceAllKernel(op: number, x: Tensor, factor: number, empty: number) {
  const ctx = getContext();
  const n = x.size;
  if (n === 0) return { out: filled([], empty), index: Tensor.empty([1], 'u32') };
  const groups = ctx.gridSize(n, WG * 4);
  const partial = Tensor.empty([groups]);
  const partialIndex = Tensor.empty([groups], 'u32');
  ctx.dispatch({
    shader: source,
    entryPoint: 'reducePartials',
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
    constants: { OP: op, INDEXED: 1 },
    resources: { x: partial.buffer, out: out.buffer, outIndex: index.buffer, inIndex: partialIndex.buffer },
    params: rowParams(1, groups, factor),
    workgroups: [1],
  });
  partial.dispose();
  partialIndex.dispose();
  return { out, index };
}

interface ReduceAttrs {
  /** true: last axis; false: all elements. */
  lastAxis: boolean;
  keepDim: boolean;
}

function reducedShape(x: Tensor, { lastAxis, keepDim }: ReduceAttrs): number[] {
  if (!lastAxis) return keepDim ? x.shape.map(() => 1) : [];
  const s = x.shape.slice(0, -1);
  return keepDim ? [...s, 1] : s;
}

function runReduce(op: number, x: Tensor, attrs: ReduceAttrs, mean: boolean) {
  const shape = reducedShape(x, attrs);
  // PyTorch's value of an empty reduction: the sum of nothing is 0, its mean 0/0 = NaN.
  const empty = mean ? Number.NaN : 0;
  if (attrs.lastAxis) {
    const cols = x.shape[x.rank - 1];
    const rows = numel(x.shape.slice(0, -1));
    return reduceRowsKernel(op, x, rows, cols, mean ? 1 / cols : 1, shape, empty);
  }
  const r = reduceAllKernel(op, x, mean ? 1 / Math.max(x.size, 1) : 1, empty);
  return { out: r.out.view(shape), index: r.index, scratch: r.out };
}

/** The gradient of a sum/mean: the output gradient broadcast over the reduced axes. */
function spread(g: Tensor, x: Tensor, attrs: ReduceAttrs, factor: number): Tensor {
  if (x.size === 0) return Tensor.empty(x.shape); // nothing receives a gradient (and 1/0 is not a factor)
  const keptShape = attrs.lastAxis ? [...x.shape.slice(0, -1), 1] : x.shape.map(() => 1);
  const gk = g.view(keptShape);
  const spreadOut = expand(factor === 1 ? gk : scale(gk, factor), x.shape);
  return spreadOut;
}

function defineSumLike(name: 'sum' | 'mean') {
  const isMean = name === 'mean';
  return defineOp<ReduceAttrs>({
    name,
    forward: ([x], attrs) => {
      const r = runReduce(SUM, x, attrs, isMean);
      r.index.dispose();
      if ('scratch' in r) r.scratch.dispose();
      return r.out;
    },
    // d(sum x) = sum dx: every element receives the gradient of its row; a mean also divides by the count.
    backward: (g, { inputs: [x], attrs }) => {
      const count = attrs.lastAxis ? x.shape[x.rank - 1] : x.size;
      return [spread(g, x, attrs, isMean ? 1 / count : 1)];
    },
  });
}

const sumOp = defineSumLike('sum');
const meanOp = defineSumLike('mean');

function maxBackwardKernel(g: Tensor, index: Tensor, x: Tensor, attrs: ReduceAttrs): Tensor {
  const ctx = getContext();
  const out = Tensor.empty(x.shape);
  const cols = attrs.lastAxis ? x.shape[x.rank - 1] : x.size;
  if (x.size === 0) return out;
  ctx.dispatch({
    shader: source,
    entryPoint: 'maxBackward',
    resources: { out: out.buffer, grad: g.buffer, inIndex: index.buffer },
    params: rowParams(x.size / cols, cols, 1),
    workgroups: [ctx.gridSize(x.size, WG)],
  });
  return out;
}

const maxOp = defineOp<ReduceAttrs>({
  name: 'max',
  forward: ([x], attrs) => {
    const r = runReduce(MAX, x, attrs, false);
    return { output: r.out, saved: 'scratch' in r ? [r.index, r.scratch] : [r.index] };
  },
  // d(max x) goes to the (first) argmax element.
  backward: (g, { inputs: [x], saved: [index], attrs }) => [maxBackwardKernel(g, index, x, attrs)],
});

/** Options of the reductions. */
export interface ReduceOptions {
  /** Keep the reduced axis with size 1. */
  keepDim?: boolean;
}

function reduceArgs(name: string, x: Tensor, axis: number | undefined, options: ReduceOptions): ReduceAttrs {
  requireFloat(name, 'x', x);
  if (axis === undefined) {
    if (name === 'max' && x.size === 0)
      throw new SgtError('INVALID_ARGUMENT', `max: cannot reduce an empty tensor (shape ${fmtShape(x.shape)}): it has no maximum`);
    return { lastAxis: false, keepDim: options.keepDim ?? false };
  }
  if (x.rank === 0 || normalizeAxis(name, axis, x.rank) !== x.rank - 1) {
    throw new SgtError(
      'UNSUPPORTED',
      `${name}: only the last axis (-1) or all axes (no axis) can be reduced; got axis ${axis} for ${fmtShape(x.shape)}`,
    );
  }
  // As PyTorch: an axis of length 0 has no maximum, even when there are no rows either.
  if (name === 'max' && x.shape[x.rank - 1] === 0) {
    throw new SgtError('INVALID_ARGUMENT', `max: cannot reduce an axis of length 0 (shape ${fmtShape(x.shape)}): it has no maximum`);
  }
  return { lastAxis: true, keepDim: options.keepDim ?? false };
}

/** Sum over the last axis (`axis = -1`) or over all elements (no axis). */
export function sum(x: Tensor, axis?: number, options: ReduceOptions = {}): Tensor {
  return sumOp([x], reduceArgs('sum', x, axis, options));
}

/** Mean over the last axis (`axis = -1`) or over all elements (no axis). */
export function mean(x: Tensor, axis?: number, options: ReduceOptions = {}): Tensor {
  return meanOp([x], reduceArgs('mean', x, axis, options));
}

/** Max over the last axis (`axis = -1`) or over all elements; the gradient goes to the first argmax. */
export function max(x: Tensor, axis?: number, options: ReduceOptions = {}): Tensor {
  return maxOp([x], reduceArgs('max', x, axis, options));
}
