/**
 * The twins' tensor: {@link NDArray}, a row-major float64 array, with its constructors and the
 * helpers every family of twins uses (an elementwise map, the check of a gradient's shape).
 */
import { fmt, sameShape, sizeOf } from './shape';

/** A row-major, contiguous float64 array: the twin's tensor. */
export interface NDArray {
  /** Dimensions, outermost first; `[]` is a scalar. */
  shape: number[];
  /** Elements in row-major order (`data.length` equals the product of `shape`). */
  data: Float64Array;
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

/** `f` applied to every element of `x`, as a new array. */
export function map(x: NDArray, f: (v: number) => number): NDArray {
  const out = zeros(x.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = f(x.data[i]);
  return out;
}

/** Throws unless the gradient `g` of `op`'s output has the output's shape. */
export function checkGrad(op: string, g: NDArray, shape: readonly number[]): void {
  if (!sameShape(g.shape, shape)) throw new Error(`${op}Backward: gradient ${fmt(g.shape)} must have the output shape ${fmt(shape)}`);
}
