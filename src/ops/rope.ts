/**
 * Rotary position embedding (RoPE) over `shaders/rope.wgsl`, in Hugging Face's rotate_half
 * convention (Llama, Mistral, Qwen: the first half of each head pairs with the second half).
 */
import source from '../../shaders/rope.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';

const WG = 256;

/** Options of {@link rope}. */
export interface RopeOptions {
  /** Base of the rotation frequencies: the model config's `rope_theta` (10000 for Llama 2). */
  theta: number;
  /** Position of time step 0 (default 0), e.g. the length of a cached prefix. */
  positionOffset?: number;
}

interface RopeAttrs {
  theta: number;
  positionOffset: number;
}

function ropeKernel(x: Tensor, { theta, positionOffset }: RopeAttrs, direction: 1 | -1): Tensor {
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
    label: direction === 1 ? 'rope' : 'rope (backward)',
    resources: { x: x.buffer, out: out.buffer },
    params: buf,
    workgroups: [ctx.gridSize(pairs, WG)],
  });
  return out;
}

const ropeOp = defineOp<RopeAttrs>({
  name: 'rope',
  forward: ([x], attrs) => ropeKernel(x, attrs, 1),
  // out = R x with R orthogonal, so dx = R^T g = R^-1 g: the rotation by the opposite angle.
  backward: (g, { attrs }) => [ropeKernel(g, attrs, -1)],
});

/**
 * Rotates `x` [B, T, H, Dh] (Dh even) by position: for i < Dh/2, with
 * `angle = (t + positionOffset) * theta^(-2i/Dh)`,
 * `out[..., i] = x_i cos - x_{i+Dh/2} sin` and `out[..., i+Dh/2] = x_{i+Dh/2} cos + x_i sin`
 * (Hugging Face's `apply_rotary_pos_emb` with `rotate_half`). Differentiable in `x`.
 */
export function rope(x: Tensor, options: RopeOptions): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`rope: argument 'x' must be a Tensor`);
  x.bufferFor(`rope (argument 'x')`);
  if (x.dtype !== 'f32') throw new Error(`rope: argument 'x' has dtype ${x.dtype}; expected f32`);
  if (x.rank !== 4) throw new Error(`rope: argument 'x' has shape ${fmtShape(x.shape)}; expected [B, T, H, Dh]`);
  if (x.shape[3] % 2 !== 0) {
    throw new Error(
      `rope: argument 'x' has an odd head dimension Dh = ${x.shape[3]} (shape ${fmtShape(x.shape)}); rotate_half needs Dh even`,
    );
  }
  const theta = options?.theta;
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) {
    throw new Error(`rope: option 'theta' must be a finite number > 0, got ${String(theta)}`);
  }
  const positionOffset = options.positionOffset ?? 0;
  if (!Number.isInteger(positionOffset) || positionOffset < 0 || positionOffset + x.shape[1] > 2 ** 24) {
    throw new Error(
      `rope: option 'positionOffset' must be an integer >= 0 with positionOffset + T <= 2^24 (exact in f32), got ${positionOffset}`,
    );
  }
  return ropeOp([x], { theta, positionOffset });
}
