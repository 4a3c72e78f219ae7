/**
 * Float64 twin of `src/ops/rope.ts`: rotary position embedding in Hugging Face's rotate_half
 * convention (dimension i pairs with i + Dh/2, not with its neighbour), forward and backward.
 */
import type { NDArray } from './ops';

/** Options of {@link rope}. */
export interface RopeReferenceOptions {
  /** Base of the frequencies (`rope_theta`). */
  theta: number;
  /** Position of the first time step (default 0). */
  positionOffset?: number;
}

function rotate(op: string, x: NDArray, options: RopeReferenceOptions, direction: 1 | -1): NDArray {
  if (x.shape.length !== 4) throw new Error(`${op}: argument 'x' must be [B, T, H, Dh], got [${x.shape.join(',')}]`);
  const [b, t, h, dh] = x.shape;
  if (dh % 2 !== 0) throw new Error(`${op}: argument 'x' has an odd head dimension ${dh}`);
  const half = dh / 2;
  const offset = options.positionOffset ?? 0;
  const out: NDArray = { shape: [...x.shape], data: new Float64Array(x.data.length) };
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      const pos = ti + offset;
      for (let hi = 0; hi < h; hi++) {
        const base = ((bi * t + ti) * h + hi) * dh;
        for (let i = 0; i < half; i++) {
          const angle = pos * options.theta ** ((-2 * i) / dh);
          const c = Math.cos(angle);
          const s = direction * Math.sin(angle);
          const a = x.data[base + i];
          const z = x.data[base + i + half];
          out.data[base + i] = a * c - z * s;
          out.data[base + i + half] = z * c + a * s;
        }
      }
    }
  }
  return out;
}

/**
 * `x` [B, T, H, Dh] rotated by `angle = (t + positionOffset) * theta^(-2i/Dh)`:
 * `out_i = x_i cos - x_{i+Dh/2} sin`, `out_{i+Dh/2} = x_{i+Dh/2} cos + x_i sin`, for i < Dh/2.
 */
export function rope(x: NDArray, options: RopeReferenceOptions): NDArray {
  return rotate('rope', x, options, 1);
}

/** Backward of {@link rope}: `[dx]`, the gradient rotated back (the transpose of a rotation is its inverse). */
export function ropeBackward(g: NDArray, _x: NDArray, options: RopeReferenceOptions): [NDArray] {
  return [rotate('ropeBackward', g, options, -1)];
}
