/**
 * Float64 twins of `src/ops/norm.ts`: RMSNorm and LayerNorm over the last axis, forward and
 * backward. Plain loops, no WebGPU; each backward returns the gradients of the differentiable
 * inputs in argument order, given `g`, the gradient of the output.
 */
import type { NDArray } from './ndarray';

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function rowsOf(op: string, x: NDArray, params: [string, NDArray][]): [number, number] {
  if (x.shape.length === 0) throw new Error(`${op}: argument 'x' needs rank >= 1, got ${fmt(x.shape)}`);
  const d = x.shape[x.shape.length - 1];
  for (const [name, p] of params) {
    if (p.shape.length !== 1 || p.shape[0] !== d) {
      throw new Error(`${op}: argument '${name}' has shape ${fmt(p.shape)}; expected [${d}] (the last axis of x ${fmt(x.shape)})`);
    }
  }
  return [d === 0 ? 0 : x.data.length / d, d];
}

function like(x: NDArray): NDArray {
  return { shape: [...x.shape], data: new Float64Array(x.data.length) };
}

/** `x * weight / sqrt(mean(x^2) + eps)` over the last axis of `x`; `weight` has the last axis' length. */
export function rmsNorm(x: NDArray, weight: NDArray, eps: number): NDArray {
  const [rows, d] = rowsOf('rmsNorm', x, [['weight', weight]]);
  const out = like(x);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x.data[r * d + c] ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let c = 0; c < d; c++) out.data[r * d + c] = x.data[r * d + c] * inv * weight.data[c];
  }
  return out;
}

/**
 * Backward of {@link rmsNorm}: `[dx, dweight]`. With `r = (mean(x^2) + eps)^(-1/2)`,
 * `dr/dx_c = -r^3 x_c / d`, so `dx_c = r g_c w_c - x_c r^3 / d * sum_k g_k w_k x_k`.
 */
export function rmsNormBackward(g: NDArray, x: NDArray, weight: NDArray, eps: number): [NDArray, NDArray] {
  const [rows, d] = rowsOf('rmsNormBackward', x, [['weight', weight]]);
  const dx = like(x);
  const dw = like(weight);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x.data[r * d + c] ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    let dot = 0;
    for (let c = 0; c < d; c++) dot += g.data[r * d + c] * weight.data[c] * x.data[r * d + c];
    for (let c = 0; c < d; c++) {
      const i = r * d + c;
      dx.data[i] = inv * g.data[i] * weight.data[c] - (x.data[i] * inv ** 3 * dot) / d;
      dw.data[c] += g.data[i] * x.data[i] * inv;
    }
  }
  return [dx, dw];
}

/** `(x - mean) / sqrt(var + eps) * weight + bias` over the last axis (population variance). */
export function layerNorm(x: NDArray, weight: NDArray, bias: NDArray, eps: number): NDArray {
  const [rows, d] = rowsOf('layerNorm', x, [
    ['weight', weight],
    ['bias', bias],
  ]);
  const out = like(x);
  for (let r = 0; r < rows; r++) {
    const [mu, inv] = moments(x, r, d, eps);
    for (let c = 0; c < d; c++) out.data[r * d + c] = (x.data[r * d + c] - mu) * inv * weight.data[c] + bias.data[c];
  }
  return out;
}

function moments(x: NDArray, r: number, d: number, eps: number): [number, number] {
  let mu = 0;
  for (let c = 0; c < d; c++) mu += x.data[r * d + c];
  mu /= d;
  let v = 0;
  for (let c = 0; c < d; c++) v += (x.data[r * d + c] - mu) ** 2;
  return [mu, 1 / Math.sqrt(v / d + eps)];
}

/**
 * Backward of {@link layerNorm}: `[dx, dweight, dbias]`. With `xhat = (x - mean) r` and
 * `h = g * weight`: `dx = r (h - mean(h) - xhat mean(h xhat))`, `dweight = sum_rows g xhat`,
 * `dbias = sum_rows g`.
 */
export function layerNormBackward(g: NDArray, x: NDArray, weight: NDArray, bias: NDArray, eps: number): [NDArray, NDArray, NDArray] {
  const [rows, d] = rowsOf('layerNormBackward', x, [
    ['weight', weight],
    ['bias', bias],
  ]);
  const dx = like(x);
  const dw = like(weight);
  const db = like(bias);
  for (let r = 0; r < rows; r++) {
    const [mu, inv] = moments(x, r, d, eps);
    let meanH = 0;
    let meanHX = 0;
    for (let c = 0; c < d; c++) {
      const i = r * d + c;
      const h = g.data[i] * weight.data[c];
      meanH += h / d;
      meanHX += (h * (x.data[i] - mu) * inv) / d;
    }
    for (let c = 0; c < d; c++) {
      const i = r * d + c;
      const xhat = (x.data[i] - mu) * inv;
      dx.data[i] = inv * (g.data[i] * weight.data[c] - meanH - xhat * meanHX);
      dw.data[c] += g.data[i] * xhat;
      db.data[c] += g.data[i];
    }
  }
  return [dx, dw, db];
}
