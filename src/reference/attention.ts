/**
 * Float64 twin of `src/ops/attention.ts`: scaled dot-product attention with grouped-query heads,
 * optional causal masking and an optional key padding mask, forward and backward. Unlike the
 * fused GPU kernel it materialises each row of scores and differentiates the softmax directly
 * (`dS = P * (dP - rowsum(P * dP))`), so the two derivations check each other.
 */
import type { NDArray } from './ndarray';

/** Options of {@link attention}. */
export interface AttentionReferenceOptions {
  /** Query i sees only keys j <= i. */
  causal: boolean;
  /** [B, T]: 0 marks a padding key that no query sees; any other value keeps the key. */
  keyMask?: NDArray;
  /** Multiplies the scores (default `1 / sqrt(Dh)`). */
  scale?: number;
}

interface Dims {
  b: number;
  t: number;
  h: number;
  hkv: number;
  dh: number;
  group: number;
  scale: number;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function dimsOf(op: string, q: NDArray, k: NDArray, v: NDArray, options: AttentionReferenceOptions): Dims {
  if (q.shape.length !== 4) throw new Error(`${op}: argument 'q' must be [B, T, H, Dh], got ${fmt(q.shape)}`);
  const [b, t, h, dh] = q.shape;
  if (k.shape.length !== 4 || k.shape[0] !== b || k.shape[1] !== t || k.shape[3] !== dh) {
    throw new Error(`${op}: argument 'k' has shape ${fmt(k.shape)}; expected [${b}, ${t}, Hkv, ${dh}]`);
  }
  const hkv = k.shape[2];
  if (v.shape.length !== 4 || v.shape.some((s, i) => s !== k.shape[i])) {
    throw new Error(`${op}: argument 'v' has shape ${fmt(v.shape)}; expected the shape of k ${fmt(k.shape)}`);
  }
  if (hkv === 0 || h % hkv !== 0) throw new Error(`${op}: H = ${h} query heads is not a multiple of Hkv = ${hkv}`);
  const m = options.keyMask;
  if (m && (m.shape.length !== 2 || m.shape[0] !== b || m.shape[1] !== t)) {
    throw new Error(`${op}: argument 'keyMask' has shape ${fmt(m.shape)}; expected [${b}, ${t}]`);
  }
  return { b, t, h, hkv, dh, group: h / hkv, scale: options.scale ?? 1 / Math.sqrt(dh) };
}

const at = (d: Dims, heads: number, bi: number, ti: number, hi: number) => ((bi * d.t + ti) * heads + hi) * d.dh;

/**
 * The attention probabilities of query row (bi, i, hi) over all T keys; 0 where a key is hidden
 * (later than i when causal, or padding). All zero when every key is hidden.
 */
function probabilities(
  d: Dims,
  q: NDArray,
  k: NDArray,
  options: AttentionReferenceOptions,
  bi: number,
  i: number,
  hi: number,
): Float64Array {
  const p = new Float64Array(d.t);
  const visible: boolean[] = [];
  let max = -Infinity;
  const qa = at(d, d.h, bi, i, hi);
  const g = Math.floor(hi / d.group);
  for (let j = 0; j < d.t; j++) {
    visible[j] = (!options.causal || j <= i) && options.keyMask?.data[bi * d.t + j] !== 0;
    if (!visible[j]) continue;
    const ka = at(d, d.hkv, bi, j, g);
    let s = 0;
    for (let c = 0; c < d.dh; c++) s += q.data[qa + c] * k.data[ka + c];
    p[j] = s * d.scale;
    max = Math.max(max, p[j]);
  }
  let total = 0;
  for (let j = 0; j < d.t; j++) {
    p[j] = visible[j] ? Math.exp(p[j] - max) : 0;
    total += p[j];
  }
  if (total > 0) for (let j = 0; j < d.t; j++) p[j] /= total;
  return p;
}

/**
 * `softmax(scale * q k^T) v` per batch and query head, for q [B, T, H, Dh] and k, v
 * [B, T, Hkv, Dh] (query head h reads kv head floor(h / (H / Hkv))). Returns [B, T, H, Dh]; a
 * query row that sees no key gets zeros.
 */
export function attention(q: NDArray, k: NDArray, v: NDArray, options: AttentionReferenceOptions): NDArray {
  const d = dimsOf('attention', q, k, v, options);
  const out: NDArray = { shape: [...q.shape], data: new Float64Array(q.data.length) };
  for (let bi = 0; bi < d.b; bi++) {
    for (let hi = 0; hi < d.h; hi++) {
      const g = Math.floor(hi / d.group);
      for (let i = 0; i < d.t; i++) {
        const p = probabilities(d, q, k, options, bi, i, hi);
        const oa = at(d, d.h, bi, i, hi);
        for (let j = 0; j < d.t; j++) {
          if (p[j] === 0) continue;
          const va = at(d, d.hkv, bi, j, g);
          for (let c = 0; c < d.dh; c++) out.data[oa + c] += p[j] * v.data[va + c];
        }
      }
    }
  }
  return out;
}

/** Backward of {@link attention}: `[dq, dk, dv]` given `g` [B, T, H, Dh], the gradient of the output. */
export function attentionBackward(
  g: NDArray,
  q: NDArray,
  k: NDArray,
  v: NDArray,
  options: AttentionReferenceOptions,
): [NDArray, NDArray, NDArray] {
  const d = dimsOf('attentionBackward', q, k, v, options);
  const dq: NDArray = { shape: [...q.shape], data: new Float64Array(q.data.length) };
  const dk: NDArray = { shape: [...k.shape], data: new Float64Array(k.data.length) };
  const dv: NDArray = { shape: [...v.shape], data: new Float64Array(v.data.length) };
  for (let bi = 0; bi < d.b; bi++) {
    for (let hi = 0; hi < d.h; hi++) {
      const kvh = Math.floor(hi / d.group);
      for (let i = 0; i < d.t; i++) {
        const p = probabilities(d, q, k, options, bi, i, hi);
        const ga = at(d, d.h, bi, i, hi);
        // dP_ij = g_i . v_j; the softmax Jacobian gives dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik).
        const dp = new Float64Array(d.t);
        let weighted = 0;
        for (let j = 0; j < d.t; j++) {
          const va = at(d, d.hkv, bi, j, kvh);
          for (let c = 0; c < d.dh; c++) dp[j] += g.data[ga + c] * v.data[va + c];
          weighted += p[j] * dp[j];
        }
        for (let j = 0; j < d.t; j++) {
          if (p[j] === 0) continue;
          const ka = at(d, d.hkv, bi, j, kvh);
          const ds = p[j] * (dp[j] - weighted) * d.scale;
          for (let c = 0; c < d.dh; c++) {
            dv.data[ka + c] += p[j] * g.data[ga + c];
            dq.data[ga + c] += ds * k.data[ka + c];
            dk.data[ka + c] += ds * q.data[ga + c];
          }
        }
      }
    }
  }
  return [dq, dk, dv];
}
