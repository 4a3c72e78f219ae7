/**
 * Float64 twin of `src/ops/rope.ts`: rotary position embedding in Hugging Face's rotate_half
 * convention (dimension i pairs with i + Dh/2, not with its neighbour), forward and backward,
 * with the `linear` and `llama3` frequency scalings written as transformers writes them
 * (`_compute_linear_scaling_rope_parameters`, `_compute_llama3_parameters`).
 */
import type { RopeScaling } from '../ops/rope';
import type { NDArray } from './ndarray';

/** Options of {@link rope}. */
export interface RopeReferenceOptions {
  /** Base of the frequencies (`rope_theta`). */
  theta: number;
  /** Position of the first time step (default 0). */
  positionOffset?: number;
  /** Frequency scaling (default none). */
  scaling?: RopeScaling | null;
}

/**
 * The inverse frequencies `inv_freq` [Dh / 2], as transformers computes them: the default
 * `1 / theta^(2i/Dh)`, then for `linear` `inv_freq / factor`, and for `llama3`
 * `where(wavelen > low_wl, inv_freq / factor, inv_freq)`, replaced by the smooth interpolation
 * where `!(wavelen < high_wl) && !(wavelen > low_wl)`.
 */
export function ropeInverseFrequencies(dh: number, theta: number, scaling?: RopeScaling | null): Float64Array {
  const invFreq = Float64Array.from({ length: dh / 2 }, (_, i) => 1 / theta ** ((2 * i) / dh));
  if (!scaling) return invFreq;
  if (scaling.type === 'linear') return invFreq.map((f) => f / scaling.factor);
  if (scaling.type !== 'llama3') throw new Error(`ropeInverseFrequencies: unknown scaling type '${(scaling as { type: string }).type}'`);
  const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: oldContextLen } = scaling;
  const lowFreqWavelen = oldContextLen / low;
  const highFreqWavelen = oldContextLen / high;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    const llama = wavelen > lowFreqWavelen ? f / factor : f;
    const smoothFactor = (oldContextLen / wavelen - low) / (high - low);
    const smoothed = ((1 - smoothFactor) * llama) / factor + smoothFactor * llama;
    const isMediumFreq = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    return isMediumFreq ? smoothed : llama;
  });
}

function rotate(op: string, x: NDArray, options: RopeReferenceOptions, direction: 1 | -1): NDArray {
  if (x.shape.length !== 4) throw new Error(`${op}: argument 'x' must be [B, T, H, Dh], got [${x.shape.join(',')}]`);
  const [b, t, h, dh] = x.shape;
  if (dh % 2 !== 0) throw new Error(`${op}: argument 'x' has an odd head dimension ${dh}`);
  const half = dh / 2;
  const offset = options.positionOffset ?? 0;
  const invFreq = ropeInverseFrequencies(dh, options.theta, options.scaling);
  const out: NDArray = { shape: [...x.shape], data: new Float64Array(x.data.length) };
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      const pos = ti + offset;
      for (let hi = 0; hi < h; hi++) {
        const base = ((bi * t + ti) * h + hi) * dh;
        for (let i = 0; i < half; i++) {
          const angle = pos * invFreq[i];
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
 * `x` [B, T, H, Dh] rotated by `angle = (t + positionOffset) * invFreq_i` (see
 * {@link ropeInverseFrequencies}): `out_i = x_i cos - x_{i+Dh/2} sin`,
 * `out_{i+Dh/2} = x_{i+Dh/2} cos + x_i sin`, for i < Dh/2.
 */
export function rope(x: NDArray, options: RopeReferenceOptions): NDArray {
  return rotate('rope', x, options, 1);
}

/** Backward of {@link rope}: `[dx]`, the gradient rotated back (the transpose of a rotation is its inverse). */
export function ropeBackward(g: NDArray, _x: NDArray, options: RopeReferenceOptions): [NDArray] {
  return [rotate('ropeBackward', g, options, -1)];
}
