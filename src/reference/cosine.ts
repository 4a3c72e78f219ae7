/**
 * Float64 CPU twin of `src/losses/cosine.ts`: the layer cosine distance, the layer L2 distance, the
 * input-embedding similarity and the absolute cosine similarity, with their gradients with
 * respect to both inputs, straight from LOSSES.md (the tests' oracle; no WebGPU).
 */
import { isSelected, selectedCount } from './mask';

/** The floor on `|u| |v|` in `cos(u, v) = u.v / max(|u| |v|, 1e-8)`. */
export const COSINE_FLOOR = 1e-8;

/** Which row-pair loss: the camelCase function names of `src/losses/cosine.ts`. */
export type RowPairLossName =
  | 'distillationLayerCosineDistance'
  | 'distillationLayerL2Distance'
  | 'inputEmbeddingSimilarity'
  | 'absoluteCosineSimilarity';

/** Arguments of the twins: row-major data of two `[B, T, d]` tensors and a `[B, T]` mask. */
export interface RowPairReferenceInput {
  /** The first input (`h` or `x`), `B * T * d` values. */
  u: ArrayLike<number>;
  /** The second input (`ht` or `xt`), `B * T * d` values. */
  v: ArrayLike<number>;
  /** The mask (`L` or `N`), `B * T` values: non-zero selects (`./mask`). */
  mask: ArrayLike<number>;
  /** `[B, T, d]`. */
  shape: readonly [number, number, number];
}

/** The loss value and its gradients with respect to `u` and `v`. */
export interface RowPairReferenceResult {
  value: number;
  gradU: Float64Array;
  gradV: Float64Array;
}

/** Per-row value and gradient coefficients: d/dv = vu * u + vv * v, d/du = uu * u + uv * v. */
interface RowTerms {
  value: number;
  vu: number;
  vv: number;
  uv: number;
  uu: number;
}

function rowTerms(name: RowPairLossName, u: ArrayLike<number>, v: ArrayLike<number>, base: number, d: number): RowTerms {
  if (name === 'distillationLayerL2Distance') {
    let sq = 0;
    for (let k = 0; k < d; k++) sq += (u[base + k] - v[base + k]) ** 2;
    const dist = Math.sqrt(sq);
    // The gradient of |w| at w = 0 is taken as 0.
    const k = dist > 0 ? 1 / dist : 0;
    return { value: dist, vu: -k, vv: k, uv: -k, uu: k };
  }
  let dot = 0;
  let uu2 = 0;
  let vv2 = 0;
  for (let k = 0; k < d; k++) {
    dot += u[base + k] * v[base + k];
    uu2 += u[base + k] ** 2;
    vv2 += v[base + k] ** 2;
  }
  const product = Math.sqrt(uu2) * Math.sqrt(vv2);
  let cos: number;
  let t: Omit<RowTerms, 'value'>;
  if (product >= COSINE_FLOOR) {
    cos = dot / product;
    // d cos / dv = u / (|u||v|) - cos v / |v|^2, symmetrically for u.
    t = { vu: 1 / product, vv: -cos / vv2, uv: 1 / product, uu: -cos / uu2 };
  } else {
    // Floor active: cos = u.v / 1e-8, linear in each input.
    cos = dot / COSINE_FLOOR;
    t = { vu: 1 / COSINE_FLOOR, vv: 0, uv: 1 / COSINE_FLOOR, uu: 0 };
  }
  const [value, outer] =
    name === 'distillationLayerCosineDistance'
      ? [1 - cos, -1]
      : name === 'inputEmbeddingSimilarity'
        ? [cos, 1]
        : [Math.abs(cos), Math.sign(cos)];
  return { value, vu: outer * t.vu, vv: outer * t.vv, uv: outer * t.uv, uu: outer * t.uu };
}

/**
 * The loss `name` in float64: one flat mean of the row values over the rows the mask selects
 * (0 when there are none), with `d(loss)/du` and `d(loss)/dv` scaled by `gradOutput`.
 */
export function rowPairLossReference(name: RowPairLossName, input: RowPairReferenceInput, gradOutput = 1): RowPairReferenceResult {
  const { u, v, mask, shape } = input;
  const [B, T, d] = shape;
  const rows = B * T;
  if (u.length !== rows * d || v.length !== rows * d || mask.length !== rows) {
    throw new Error(`${name}Reference: lengths ${u.length}, ${v.length}, ${mask.length} do not fit shape [${shape.join(',')}]`);
  }
  const count = selectedCount(mask);
  const gradU = new Float64Array(rows * d);
  const gradV = new Float64Array(rows * d);
  if (count === 0) return { value: 0, gradU, gradV };
  const scale = gradOutput / count;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    if (!isSelected(mask[r])) continue;
    const base = r * d;
    const t = rowTerms(name, u, v, base, d);
    total += t.value;
    for (let k = 0; k < d; k++) {
      gradV[base + k] = (t.vu * u[base + k] + t.vv * v[base + k]) * scale;
      gradU[base + k] = (t.uu * u[base + k] + t.uv * v[base + k]) * scale;
    }
  }
  return { value: total / count, gradU, gradV };
}

/** `mean over L = 1 of 1 - cos(h, ht)` and its gradients (`gradU` for h, `gradV` for ht). */
export function distillationLayerCosineDistanceReference(input: RowPairReferenceInput, gradOutput = 1): RowPairReferenceResult {
  return rowPairLossReference('distillationLayerCosineDistance', input, gradOutput);
}

/** `mean over L = 1 of ||h - ht||_2` and its gradients (`gradU` for h, `gradV` for ht). */
export function distillationLayerL2DistanceReference(input: RowPairReferenceInput, gradOutput = 1): RowPairReferenceResult {
  return rowPairLossReference('distillationLayerL2Distance', input, gradOutput);
}

/** `mean over N = 1 of cos(x, xt)` and its gradients (`gradU` for x, `gradV` for xt). */
export function inputEmbeddingSimilarityReference(input: RowPairReferenceInput, gradOutput = 1): RowPairReferenceResult {
  return rowPairLossReference('inputEmbeddingSimilarity', input, gradOutput);
}

/** `mean over N = 1 of |cos(x, xt)|` and its gradients (`gradU` for x, `gradV` for xt). */
export function absoluteCosineSimilarityReference(input: RowPairReferenceInput, gradOutput = 1): RowPairReferenceResult {
  return rowPairLossReference('absoluteCosineSimilarity', input, gradOutput);
}
