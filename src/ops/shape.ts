/** Shape arithmetic shared by the ops: broadcasting, strides, axis normalisation. */
import { fmtShape } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

/** Largest tensor rank the strided kernels index. */
export const MAX_RANK = 8;

/** Row-major strides of a contiguous tensor. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** NumPy broadcasting of two shapes; throws naming `op` when they do not broadcast. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new SgtError('SHAPE_MISMATCH', `${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast (axis ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read a tensor of shape `from` at every index of the broadcast shape `to` (0 = repeat). */
export function broadcastStrides(from: readonly number[], to: readonly number[]): number[] {
  const own = contiguousStrides(from);
  const offset = to.length - from.length;
  return to.map((_, i) => {
    const k = i - offset;
    return k < 0 || from[k] === 1 ? 0 : own[k];
  });
}

/** Normalises a possibly negative axis; throws naming `op` when out of range. */
export function normalizeAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(axis) || a < 0 || a >= rank)
    throw new SgtError('INVALID_ARGUMENT', `${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Whether two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}
