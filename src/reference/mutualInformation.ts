/**
 * float64 CPU twin of `mutualInformationLoss` (LOSSES.md section 3): forward and backward, the
 * oracle of the GPU kernels in `shaders/mutualInformation.wgsl`. No WebGPU here.
 */
import { isSelected } from './mask';

const LOG_2PI = Math.log(2 * Math.PI);
const HALF_LOG_2PI_E = 0.5 * Math.log(2 * Math.PI * Math.E);

/** Inputs of the twin: row-major `[B,T,d]` arrays and `[B,T]` 0/1 masks. */
export interface MutualInformationReferenceInputs {
  B: number;
  T: number;
  d: number;
  x: ArrayLike<number>;
  xt: ArrayLike<number>;
  mu: ArrayLike<number>;
  sigma: ArrayLike<number>;
  /** `N`: the transformed positions. */
  noiseMask: ArrayLike<number>;
  /** `A`: the real tokens; used for the components when `combineNoiseMasks` is false. */
  attentionMask?: ArrayLike<number>;
  /** Default true: a pair counts only when both positions are transformed. */
  combineNoiseMasks?: boolean;
}

/** Gradients of the loss with respect to each `[B,T,d]` input (xt, mu, sigma independent). */
export interface MutualInformationReferenceGrads {
  x: Float64Array;
  xt: Float64Array;
  mu: Float64Array;
  sigma: Float64Array;
}

interface Query {
  /** Row-major item index i*T + t. */
  item: number;
  /** Other-half rows included as components. */
  components: number[];
  /** Responsibilities of those components (softmax of their log densities). */
  weights: number[];
  term: number;
}

function check(inp: MutualInformationReferenceInputs): void {
  const { B, T, d } = inp;
  if (!(B >= 2) || B % 2 !== 0) {
    throw new Error(`mutualInformationReference: argument 'x' has batch size B=${B}; B must be even and at least 2`);
  }
  const n = B * T * d;
  for (const k of ['x', 'xt', 'mu', 'sigma'] as const) {
    if (inp[k].length !== n) throw new Error(`mutualInformationReference: '${k}' has ${inp[k].length} values; expected ${n}`);
  }
  if (inp.noiseMask.length !== B * T) throw new Error(`mutualInformationReference: 'noiseMask' must have ${B * T} values`);
  if (inp.attentionMask && inp.attentionMask.length !== B * T) {
    throw new Error(`mutualInformationReference: 'attentionMask' must have ${B * T} values`);
  }
}

/** Every included query with its components, responsibilities and term. */
function queries(inp: MutualInformationReferenceInputs): Query[] {
  check(inp);
  const { B, T, d, x, xt, mu, sigma, noiseMask, attentionMask } = inp;
  const combine = inp.combineNoiseMasks ?? true;
  const H = B / 2;
  const out: Query[] = [];
  for (let i = 0; i < B; i++) {
    const kStart = i < H ? H : 0;
    for (let t = 0; t < T; t++) {
      const item = i * T + t;
      if (!isSelected(noiseMask[item])) continue;
      const components: number[] = [];
      const logN: number[] = [];
      for (let k = kStart; k < kStart + H; k++) {
        const included = combine ? isSelected(noiseMask[k * T + t]) : attentionMask ? isSelected(attentionMask[k * T + t]) : true;
        if (!included) continue;
        let acc = 0;
        for (let j = 0; j < d; j++) {
          const at = (k * T + t) * d + j;
          const z = (xt[item * d + j] - (x[at] + mu[at])) / sigma[at];
          acc += z * z + 2 * Math.log(sigma[at]) + LOG_2PI;
        }
        components.push(k);
        logN.push(-0.5 * acc);
      }
      const K = components.length;
      if (K === 0) continue;
      const m = Math.max(...logN);
      let s = 0;
      for (const l of logN) s += Math.exp(l - m);
      const lse = m + Math.log(s);
      let hcond = 0;
      for (let j = 0; j < d; j++) hcond += Math.log(sigma[item * d + j]) + HALF_LOG_2PI_E;
      const logQ = lse - Math.log(K);
      out.push({ item, components, weights: logN.map((l) => Math.exp(l - lse)), term: (-logQ - hcond) / d });
    }
  }
  return out;
}

/** The loss value: the mean of the terms of every included query of both halves (0 if none). */
export function mutualInformationReference(inp: MutualInformationReferenceInputs): number {
  const qs = queries(inp);
  if (qs.length === 0) return 0;
  let total = 0;
  for (const q of qs) total += q.term;
  return total / qs.length;
}

/**
 * The gradients of `gradOutput * loss` with respect to `x`, `xt`, `mu` and `sigma` (taken as
 * independent inputs). `x` and `mu` enter only through the centres `x + mu`, so theirs are equal.
 */
export function mutualInformationReferenceBackward(inp: MutualInformationReferenceInputs, gradOutput = 1): MutualInformationReferenceGrads {
  const qs = queries(inp);
  const { B, T, d, x, xt, mu, sigma } = inp;
  const n = B * T * d;
  const gXt = new Float64Array(n);
  const gC = new Float64Array(n);
  const gS = new Float64Array(n);
  const f = qs.length === 0 ? 0 : gradOutput / (qs.length * d);
  for (const q of qs) {
    const row = q.item * d;
    const t = q.item % T;
    q.components.forEach((k, c) => {
      const w = q.weights[c];
      const rowK = (k * T + t) * d;
      for (let j = 0; j < d; j++) {
        const s = sigma[rowK + j];
        const diff = xt[row + j] - (x[rowK + j] + mu[rowK + j]);
        // -log q = -logsumexp(log N_k) + log K: its gradient is minus the responsibility-weighted
        // gradient of log N_k = -1/2 sum ((y - c)/s)^2 - sum log s - d/2 log(2 pi).
        gXt[row + j] += f * w * (diff / (s * s));
        gC[rowK + j] -= f * w * (diff / (s * s));
        gS[rowK + j] += f * w * (1 / s - (diff * diff) / (s * s * s));
      }
    });
    // -Hcond / d
    for (let j = 0; j < d; j++) gS[row + j] -= f / sigma[row + j];
  }
  return { x: gC.slice(), xt: gXt, mu: gC, sigma: gS };
}
