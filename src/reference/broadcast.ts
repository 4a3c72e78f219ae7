/**
 * Float64 twin of `src/ops/broadcast.ts`: `sumToShape`, the gradient of broadcasting, and the
 * broadcast copy that is both its backward and the forward of `expand` (in `./elementwise`).
 */
import { zeros, type NDArray } from './ndarray';
import { broadcastIndex, broadcastShapes, fmt, sameShape } from './shape';

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
  return [broadcastTo(g, x.shape)];
}

/**
 * Broadcasts `x` to `shape` (NumPy rules; `shape` must be the broadcast result): the forward of
 * `expand` and the backward of {@link sumToShape}. Its errors name `expand`.
 */
export function broadcastTo(x: NDArray, shape: readonly number[]): NDArray {
  if (!sameShape(broadcastShapes('expand', x.shape, shape), shape)) {
    throw new Error(`expand: shape ${fmt(x.shape)} cannot expand to ${fmt(shape)}`);
  }
  const out = zeros(shape);
  const index = broadcastIndex(x.shape, shape);
  for (let i = 0; i < index.length; i++) out.data[i] = x.data[index[i]];
  return out;
}
