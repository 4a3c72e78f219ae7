/**
 * Float64 twin of `src/ops/shape.ts`: the shape arithmetic the twins share (sizes, strides,
 * broadcasting, axis normalisation), re-derived here rather than imported so that a test comparing
 * twin and GPU op catches a bug in either.
 */

/** Formats a shape as `[2,3]`, as the GPU ops' messages do. */
export function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Product of the dimensions of `shape` (1 for a scalar). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Row-major strides of a contiguous array of `shape`. */
export function stridesOf(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/** Whether two shapes are equal. */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
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
export function broadcastIndex(from: readonly number[], to: readonly number[]): Int32Array {
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

/** Normalises a possibly negative axis; throws naming `op` when out of range. */
export function normalizeAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(axis) || a < 0 || a >= rank) throw new Error(`${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}
