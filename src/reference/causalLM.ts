/**
 * Float64 twin of `src/models/causalLM.ts`: the same Llama-family and GPT-2 forward, built from
 * the op twins on a {@link RefTape}, so the input-embedding gradient comes from the same per-op
 * rules. Weights are host float64 arrays under their Hugging Face names.
 */
import type { ModelConfig } from '../models/config';
import * as R from './index';
import { attention, attentionBackward } from './attention';
import { layerNorm, layerNormBackward, rmsNorm, rmsNormBackward } from './norm';
import { rope, ropeBackward } from './rope';
import { RefTape, type RefVar } from './tape';

type NDArray = R.NDArray;

/** Result of {@link referenceCausalLM}. */
export interface ReferenceCausalLMResult {
  /** Output of every block `[B, T, d]`. */
  blocks: NDArray[];
  /** Logits `[B, T, V]`. */
  logits: NDArray;
  /** Gradient of `sum(logits * seed)` with respect to the input embeddings. */
  inputGradient: (seed: NDArray) => NDArray;
}

/** The columns `[start, start + width)` of the last axis. */
function columns(x: NDArray, start: number, width: number): NDArray {
  const cols = x.shape[x.shape.length - 1];
  const rows = x.data.length / cols;
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(x.data.subarray(r * cols + start, r * cols + start + width), r * width);
  return { shape: [...x.shape.slice(0, -1), width], data: out };
}

/**
 * Runs the twin on `inputsEmbeds` `[B, T, d]` with an attention mask `[B, T]` (1 real, 0 padding).
 * GPT-2's `c_attn` is split into q, k, v column blocks, as the GPU model does.
 */
export function referenceCausalLM(
  config: ModelConfig,
  weights: Map<string, NDArray>,
  inputsEmbeds: NDArray,
  attentionMask: NDArray,
): ReferenceCausalLMResult {
  const tape = new RefTape();
  const W = (name: string): RefVar => {
    const w = weights.get(name);
    if (!w) throw new Error(`referenceCausalLM: weight '${name}' is missing`);
    return tape.leaf(w);
  };
  const [B, T, d] = inputsEmbeds.shape;
  const { numHeads: H, numKvHeads: Hkv, headDim: Dh, normEps: eps } = config;
  const x0 = tape.leaf(inputsEmbeds);
  const add = (a: RefVar, b: RefVar) => tape.apply(R.add, R.addBackward, [a, b]);
  const mul = (a: RefVar, b: RefVar) => tape.apply(R.mul, R.mulBackward, [a, b]);
  const reshape = (a: RefVar, shape: number[]) => tape.apply(R.reshape, R.reshapeBackward, [a], shape);
  // torch Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
  const linear = (a: RefVar, w: RefVar, b: RefVar | null, outIn: boolean) => {
    const y = tape.apply(R.matmul, R.matmulBackward, [a, w], { transposeB: outIn });
    return b ? add(y, b) : y;
  };
  const rms = (a: RefVar, w: RefVar) => tape.apply(rmsNorm, rmsNormBackward, [a, w], eps);
  const ln = (a: RefVar, w: RefVar, b: RefVar) => tape.apply(layerNorm, layerNormBackward, [a, w, b], eps);
  const attend = (q: RefVar, k: RefVar, v: RefVar) =>
    tape.apply(attention, attentionBackward, [q, k, v], { causal: true, keyMask: attentionMask });
  const blocks: NDArray[] = [];
  let h: RefVar;
  let logits: RefVar;
  if (config.family === 'llama') {
    h = x0;
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}.`;
      const optBias = (n: string) => (weights.has(`${p}${n}.bias`) ? W(`${p}${n}.bias`) : null);
      const a = rms(h, W(`${p}input_layernorm.weight`));
      const ropeOptions = { theta: config.ropeTheta ?? 10000, scaling: config.ropeScaling };
      const q = tape.apply(
        rope,
        ropeBackward,
        [reshape(linear(a, W(`${p}self_attn.q_proj.weight`), optBias('self_attn.q_proj'), true), [B, T, H, Dh])],
        ropeOptions,
      );
      const k = tape.apply(
        rope,
        ropeBackward,
        [reshape(linear(a, W(`${p}self_attn.k_proj.weight`), optBias('self_attn.k_proj'), true), [B, T, Hkv, Dh])],
        ropeOptions,
      );
      const v = reshape(linear(a, W(`${p}self_attn.v_proj.weight`), optBias('self_attn.v_proj'), true), [B, T, Hkv, Dh]);
      h = add(h, linear(reshape(attend(q, k, v), [B, T, H * Dh]), W(`${p}self_attn.o_proj.weight`), null, true));
      const m = rms(h, W(`${p}post_attention_layernorm.weight`));
      const gate = tape.apply(R.silu, R.siluBackward, [linear(m, W(`${p}mlp.gate_proj.weight`), optBias('mlp.gate_proj'), true)]);
      const up = linear(m, W(`${p}mlp.up_proj.weight`), optBias('mlp.up_proj'), true);
      h = add(h, linear(mul(gate, up), W(`${p}mlp.down_proj.weight`), optBias('mlp.down_proj'), true));
      blocks.push(h.value);
    }
    const head = config.tieWordEmbeddings ? W('model.embed_tokens.weight') : W('lm_head.weight');
    logits = linear(rms(h, W('model.norm.weight')), head, null, true);
  } else {
    const positions = R.ndarray(
      Array.from({ length: T }, (_, i) => i),
      [T],
    );
    const pos = tape.apply(
      (wpe: NDArray) => R.gather(wpe, positions),
      (g: NDArray, wpe: NDArray) => R.gatherBackward(g, wpe, positions),
      [W('wpe.weight')],
    );
    h = add(x0, pos);
    for (let i = 0; i < config.numLayers; i++) {
      const p = `h.${i}.`;
      const a = ln(h, W(`${p}ln_1.weight`), W(`${p}ln_1.bias`));
      const cAttnW = weights.get(`${p}attn.c_attn.weight`)!;
      const cAttnB = weights.get(`${p}attn.c_attn.bias`)!;
      const qkv = (j: number) => linear(a, tape.leaf(columns(cAttnW, j * d, d)), tape.leaf(columns(cAttnB, j * d, d)), false);
      const q = reshape(qkv(0), [B, T, H, Dh]);
      const k = reshape(qkv(1), [B, T, Hkv, Dh]);
      const v = reshape(qkv(2), [B, T, Hkv, Dh]);
      h = add(h, linear(reshape(attend(q, k, v), [B, T, d]), W(`${p}attn.c_proj.weight`), W(`${p}attn.c_proj.bias`), false));
      const m = ln(h, W(`${p}ln_2.weight`), W(`${p}ln_2.bias`));
      const inner = tape.apply(R.geluTanh, R.geluTanhBackward, [linear(m, W(`${p}mlp.c_fc.weight`), W(`${p}mlp.c_fc.bias`), false)]);
      h = add(h, linear(inner, W(`${p}mlp.c_proj.weight`), W(`${p}mlp.c_proj.bias`), false));
      blocks.push(h.value);
    }
    const head = weights.has('lm_head.weight') && !config.tieWordEmbeddings ? W('lm_head.weight') : W('wte.weight');
    logits = linear(ln(h, W('ln_f.weight'), W('ln_f.bias')), head, null, true);
  }
  const out = logits;
  return { blocks, logits: out.value, inputGradient: (seed) => tape.gradients(out, seed, [x0])[0] };
}
