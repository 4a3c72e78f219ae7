/**
 * Fused scaled dot-product attention over `shaders/attention.wgsl`: grouped-query heads, causal
 * or bidirectional, with an optional key padding mask. The [B, H, T, T] scores are never stored:
 * the forward keeps only the per-row logsumexp, from which the backward recomputes them.
 */
import source from '../../shaders/attention.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { checkFloatTensor } from '../tensor/validate';
import { Tensor, fmtShape } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

/** Rows per workgroup (the WGSL `WG`). */
const WG = 64;
/** Largest head dimension: the kernels keep a row of Dh floats per thread in fixed-size arrays. */
const MAX_HEAD_DIM = 128;
/** Floats in one workgroup tile and most rows in one (the WGSL `TILE` and `MAX_TILE_ROWS`). */
const TILE = 2048;
const MAX_TILE_ROWS = 64;
const PREP_WG = 64;

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Query t sees only keys at positions <= t (decoders: Llama, GPT-2); false for encoders. */
  causal: boolean;
  /**
   * [B, T] f32: 0 marks a padding key, which no query sees; any other value keeps the key (the
   * tokenizer's `attention_mask`). A query row left with no visible key outputs zeros.
   */
  keyMask?: Tensor;
  /** Multiplies q . k (default `1 / sqrt(Dh)`). */
  scale?: number;
}

interface AttentionAttrs {
  causal: boolean;
  hasMask: boolean;
  scale: number;
}

/**
 * Heads up to this wide are compiled with their width as a constant (see HEAD_DIM in the WGSL):
 * 2-4x faster on lavapipe at 32; at 64 it gained nothing there and measured slower on SwiftShader.
 */
const CONSTANT_HEAD_DIM_MAX = 32;

function headDimConstant(q: Tensor): Record<string, number> {
  const dh = q.shape[3];
  return { HEAD_DIM: dh <= CONSTANT_HEAD_DIM_MAX ? dh : 0 };
}

function attentionParams(q: Tensor, k: Tensor, { causal, hasMask, scale }: AttentionAttrs): ArrayBuffer {
  const [b, t, h, dh] = q.shape;
  const buf = new ArrayBuffer(48);
  const u = new Uint32Array(buf);
  u.set([b, t, h, k.shape[2], dh, Math.min(MAX_TILE_ROWS, Math.floor(TILE / dh)), causal ? 1 : 0, hasMask ? 1 : 0]);
  new Float32Array(buf)[8] = scale;
  return buf;
}

/** Query-row (or key-row) blocks of WG rows over every (batch, head): the kernels' work items. */
function blockItems(batch: number, heads: number, seq: number): number {
  return batch * heads * Math.ceil(seq / WG);
}

const attentionOp = defineOp<AttentionAttrs>({
  name: 'attention',
  forward: ([q, k, v, keyMask], attrs) => {
    const [b, t, h] = q.shape;
    const out = Tensor.empty(q.shape);
    const lse = Tensor.empty([b, t, h]);
    if (q.size > 0) {
      const ctx = getContext();
      ctx.dispatch({
        shader: source,
        entryPoint: 'attentionForward',
        label: 'attention',
        // Without a mask the kernel never reads keyMask, but it must still be bound: q stands in.
        resources: { q: q.buffer, k: k.buffer, v: v.buffer, keyMask: (keyMask ?? q).buffer, out: out.buffer, lse: lse.buffer },
        params: attentionParams(q, k, attrs),
        constants: headDimConstant(q),
        workgroups: [ctx.gridSize(blockItems(b, h, t), 1)],
      });
    }
    return { output: out, saved: [lse] };
  },
  backward: (g, { inputs: [q, k, v, keyMask], output, saved: [lse], attrs }) => {
    const [b, t, h] = q.shape;
    const hkv = k.shape[2];
    const wantQ = q.requiresGrad;
    const wantKV = k.requiresGrad || v.requiresGrad;
    const dq = wantQ ? Tensor.empty(q.shape) : null;
    const dk = wantKV ? Tensor.empty(k.shape) : null;
    const dv = wantKV ? Tensor.empty(v.shape) : null;
    if (q.size > 0 && (wantQ || wantKV)) {
      const ctx = getContext();
      const params = attentionParams(q, k, attrs);
      const mask = (keyMask ?? q).buffer;
      const rowStats = Tensor.empty([b, t, h, 2]);
      ctx.dispatch({
        shader: source,
        entryPoint: 'attentionBackwardPrep',
        label: 'attention (backward)',
        resources: { o: output.buffer, gradOut: g.buffer, savedLse: lse.buffer, rowStats: rowStats.buffer },
        params,
        constants: headDimConstant(q),
        workgroups: [ctx.gridSize(b * t * h, PREP_WG)],
      });
      if (dq) {
        ctx.dispatch({
          shader: source,
          entryPoint: 'attentionBackwardQuery',
          label: 'attention (backward, dq)',
          resources: {
            q: q.buffer,
            k: k.buffer,
            v: v.buffer,
            keyMask: mask,
            gradOut: g.buffer,
            savedRowStats: rowStats.buffer,
            dq: dq.buffer,
          },
          params,
          constants: headDimConstant(q),
          workgroups: [ctx.gridSize(blockItems(b, h, t), 1)],
        });
      }
      if (dk && dv) {
        ctx.dispatch({
          shader: source,
          entryPoint: 'attentionBackwardKeyValue',
          label: 'attention (backward, dk and dv)',
          resources: {
            q: q.buffer,
            k: k.buffer,
            v: v.buffer,
            keyMask: mask,
            gradOut: g.buffer,
            savedRowStats: rowStats.buffer,
            dk: dk.buffer,
            dv: dv.buffer,
          },
          params,
          constants: headDimConstant(q),
          workgroups: [ctx.gridSize(blockItems(b, hkv, t), 1)],
        });
      }
      rowStats.dispose();
    }
    if (dk && !k.requiresGrad) dk.dispose();
    if (dv && !v.requiresGrad) dv.dispose();
    // The key mask is data, not a parameter: it gets no gradient.
    return [dq, k.requiresGrad ? dk : null, v.requiresGrad ? dv : null, null];
  },
});

/** Throws naming the argument unless `t` is a live f32 tensor of rank 4. */
function checkHeads(arg: string, t: Tensor, layout: string): void {
  checkFloatTensor('attention', arg, t);
  if (t.rank !== 4) throw new SgtError('SHAPE_MISMATCH', `attention: argument '${arg}' has shape ${fmtShape(t.shape)}; expected ${layout}`);
}

/**
 * Scaled dot-product attention `softmax(scale * q k^T) v`, fused (no score matrix in memory).
 * `q` is [B, T, H, Dh]; `k` and `v` are [B, T, Hkv, Dh] with H a multiple of Hkv (grouped-query
 * attention: query head h reads kv head floor(h / (H / Hkv))); Dh <= 128. Returns [B, T, H, Dh].
 * Causal attention hides keys later than the query; `keyMask` hides padding keys. Gradients flow
 * to `q`, `k` and `v`.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions): Tensor {
  checkHeads('q', q, '[B, T, H, Dh]');
  checkHeads('k', k, '[B, T, Hkv, Dh]');
  checkHeads('v', v, '[B, T, Hkv, Dh]');
  const [b, t, h, dh] = q.shape;
  if (k.shape[0] !== b || k.shape[1] !== t || k.shape[3] !== dh) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `attention: argument 'k' has shape ${fmtShape(k.shape)}; expected [${b}, ${t}, Hkv, ${dh}] to match q ${fmtShape(q.shape)}`,
    );
  }
  if (v.shape.some((s, i) => s !== k.shape[i])) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `attention: argument 'v' has shape ${fmtShape(v.shape)}; expected the shape of k ${fmtShape(k.shape)}`,
    );
  }
  const hkv = k.shape[2];
  if (hkv === 0 || h % hkv !== 0) {
    throw new SgtError('SHAPE_MISMATCH', `attention: q has H = ${h} heads, not a multiple of the Hkv = ${hkv} heads of k and v`);
  }
  if (dh < 1 || dh > MAX_HEAD_DIM)
    throw new SgtError('UNSUPPORTED', `attention: head dimension Dh = ${dh} must be between 1 and ${MAX_HEAD_DIM}`);
  if (typeof options?.causal !== 'boolean') throw new SgtError('INVALID_OPTION', `attention: option 'causal' must be true or false`);
  const { keyMask } = options;
  if (keyMask !== undefined) {
    if (!(keyMask instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `attention: argument 'keyMask' must be a Tensor`);
    keyMask.bufferFor(`attention (argument 'keyMask')`);
    if (keyMask.dtype !== 'f32')
      throw new SgtError('DTYPE_MISMATCH', `attention: argument 'keyMask' has dtype ${keyMask.dtype}; expected f32 (0 = padding)`);
    if (keyMask.rank !== 2 || keyMask.shape[0] !== b || keyMask.shape[1] !== t) {
      throw new SgtError('SHAPE_MISMATCH', `attention: argument 'keyMask' has shape ${fmtShape(keyMask.shape)}; expected [${b}, ${t}]`);
    }
  }
  const scale = options.scale ?? 1 / Math.sqrt(dh);
  if (typeof scale !== 'number' || !Number.isFinite(scale))
    throw new SgtError('INVALID_OPTION', `attention: option 'scale' must be a finite number, got ${String(scale)}`);
  const inputs = keyMask ? [q, k, v, keyMask] : [q, k, v];
  return attentionOp(inputs, { causal: options.causal, hasMask: keyMask !== undefined, scale });
}
