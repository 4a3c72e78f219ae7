/**
 * Rotary position embedding (RoPE) over `shaders/rope.wgsl`, in Hugging Face's rotate_half
 * convention (Llama, Mistral, Qwen: the first half of each head pairs with the second half). The
 * per-pair inverse frequencies (with any `linear` or `llama3` scaling applied) are computed on the
 * host in float64 and passed to the kernel in its uniform parameters.
 */
import source from '../../shaders/rope.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

const WG = 256;

/** Largest head dimension: the kernel's parameters hold Dh / 2 <= 128 inverse frequencies. */
export const ROPE_MAX_HEAD_DIM = 256;

/** RoPE scalings that {@link rope} implements (Hugging Face's `rope_type`s). */
export const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'llama3'] as const;

/**
 * A RoPE frequency scaling, as Hugging Face's `rope_scaling` / `rope_parameters` spell it:
 * - `linear`: positions divided by `factor` (every inverse frequency divided by `factor`);
 * - `llama3` (Llama 3.1 / 3.2 / 3.3): wavelengths longer than `originalMaxPositionEmbeddings /
 *   lowFreqFactor` are divided by `factor`, those shorter than `originalMaxPositionEmbeddings /
 *   highFreqFactor` are kept, and those between are interpolated (`_compute_llama3_parameters`).
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

/** Options of {@link rope}. */
export interface RopeOptions {
  /** Base of the rotation frequencies: the model config's `rope_theta` (10000 for Llama 2). */
  theta: number;
  /** Position of time step 0 (default 0), e.g. the length of a cached prefix. */
  positionOffset?: number;
  /** Frequency scaling (default none). */
  scaling?: RopeScaling | null;
}

interface RopeAttrs {
  invFreq: Float32Array;
  positionOffset: number;
}

/**
 * The `Dh / 2` inverse frequencies of RoPE, in float64: `theta^(-2i/Dh)`, then scaled as
 * Hugging Face's `linear` or `llama3` rope types do. Throws, naming the field, on a bad scaling.
 */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling?: RopeScaling | null): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(half);
  for (let i = 0; i < half; i++) out[i] = 1 / theta ** ((2 * i) / headDim);
  if (!scaling) return out;
  checkRopeScaling(scaling);
  if (scaling.type === 'linear') return out.map((f) => f / scaling.factor);
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = scaling;
  const lowFreqWavelen = old / lowFreqFactor;
  const highFreqWavelen = old / highFreqFactor;
  return out.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f; // high frequencies: unchanged
    if (wavelen > lowFreqWavelen) return f / factor; // low frequencies: interpolated like `linear`
    const smooth = (old / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return ((1 - smooth) * f) / factor + smooth * f;
  });
}

/** Throws naming the field when a {@link RopeScaling} is not usable. */
export function checkRopeScaling(scaling: RopeScaling): void {
  const where = `rope: option 'scaling'`;
  const positive = (key: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      throw new SgtError('INVALID_OPTION', `${where}.${key} must be a finite number > 0, got ${String(v)}`);
  };
  if (scaling === null || typeof scaling !== 'object') throw new SgtError('INVALID_OPTION', `${where} must be an object or null`);
  const type = (scaling as { type: unknown }).type;
  if (type !== 'linear' && type !== 'llama3') {
    throw new SgtError(
      'UNSUPPORTED',
      `${where} has type '${String(type)}', which is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(', ')})`,
    );
  }
  positive('factor', scaling.factor);
  if (scaling.type === 'llama3') {
    positive('lowFreqFactor', scaling.lowFreqFactor);
    positive('highFreqFactor', scaling.highFreqFactor);
    positive('originalMaxPositionEmbeddings', scaling.originalMaxPositionEmbeddings);
    if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
      throw new SgtError(
        'INVALID_OPTION',
        `${where}.highFreqFactor (${scaling.highFreqFactor}) must be greater than lowFreqFactor (${scaling.lowFreqFactor})`,
      );
    }
  }
}

/** Byte size of the kernel's `Params`: 8 words, then `Dh / 2` frequencies padded to 128. */
const PARAMS_BYTES = 32 + (ROPE_MAX_HEAD_DIM / 2) * 4;

function ropeKernel(x: Tensor, { invFreq, positionOffset }: RopeAttrs, direction: 1 | -1): Tensor {
  const out = Tensor.empty(x.shape);
  if (x.size === 0) return out;
  const [, t, h, dh] = x.shape;
  const pairs = x.size / 2;
  const buf = new ArrayBuffer(PARAMS_BYTES);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  u[0] = pairs;
  u[1] = t;
  u[2] = h;
  u[3] = dh / 2;
  u[4] = positionOffset;
  f[5] = direction;
  f.set(invFreq, 8);
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'ropeApply',
    label: direction === 1 ? 'rope' : 'rope (backward)',
    resources: { x: x.buffer, out: out.buffer },
    params: buf,
    // One thread per (position, pair index): each rotates that pair of every head.
    workgroups: [ctx.gridSize(pairs / h, WG)],
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
 * Rotates `x` [B, T, H, Dh] (Dh even, at most {@link ROPE_MAX_HEAD_DIM}) by position: for
 * i < Dh/2, with `angle = (t + positionOffset) * invFreq_i` (`invFreq_i = theta^(-2i/Dh)`, scaled
 * as `scaling` says, see {@link ropeInverseFrequencies}),
 * `out[..., i] = x_i cos - x_{i+Dh/2} sin` and `out[..., i+Dh/2] = x_{i+Dh/2} cos + x_i sin`
 * (Hugging Face's `apply_rotary_pos_emb` with `rotate_half`). Differentiable in `x`.
 */
export function rope(x: Tensor, options: RopeOptions): Tensor {
  if (!(x instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `rope: argument 'x' must be a Tensor`);
  x.bufferFor(`rope (argument 'x')`);
  if (x.dtype !== 'f32') throw new SgtError('DTYPE_MISMATCH', `rope: argument 'x' has dtype ${x.dtype}; expected f32`);
  if (x.rank !== 4) throw new SgtError('SHAPE_MISMATCH', `rope: argument 'x' has shape ${fmtShape(x.shape)}; expected [B, T, H, Dh]`);
  if (x.shape[3] % 2 !== 0) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `rope: argument 'x' has an odd head dimension Dh = ${x.shape[3]} (shape ${fmtShape(x.shape)}); rotate_half needs Dh even`,
    );
  }
  if (x.shape[3] > ROPE_MAX_HEAD_DIM) {
    throw new SgtError(
      'UNSUPPORTED',
      `rope: argument 'x' has head dimension Dh = ${x.shape[3]}; at most ${ROPE_MAX_HEAD_DIM} is supported`,
    );
  }
  const theta = options?.theta;
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 0) {
    throw new SgtError('INVALID_OPTION', `rope: option 'theta' must be a finite number > 0, got ${String(theta)}`);
  }
  const positionOffset = options.positionOffset ?? 0;
  if (!Number.isInteger(positionOffset) || positionOffset < 0 || positionOffset + x.shape[1] > 2 ** 24) {
    throw new SgtError(
      'INVALID_OPTION',
      `rope: option 'positionOffset' must be an integer >= 0 with positionOffset + T <= 2^24 (exact in f32), got ${positionOffset}`,
    );
  }
  const invFreq = Float32Array.from(ropeInverseFrequencies(x.shape[3], theta, options.scaling));
  return ropeOp([x], { invFreq, positionOffset });
}
