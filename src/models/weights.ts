/**
 * Which Hugging Face tensors each architecture needs, a check of a safetensors file against that
 * list, and the upload of the weights to the GPU as f32 tensors. The check runs before any GPU
 * work, so a wrong file or config costs nothing and reports every problem at once.
 */
import { getContext } from '../gpu/context';
import { keep, tensor, type Tensor } from '../tensor/tensor';
import type { ModelConfig } from './config';
import { toFloat32, type SafetensorsFile } from './safetensors';

/** Options of {@link checkWeights} and {@link uploadWeights}. */
export interface WeightOptions {
  /**
   * Text that precedes every expected name in the file (e.g. `'transformer.'` for a GPT-2 saved
   * from `GPT2LMHeadModel`). When omitted it is detected: none, or `transformer.` for gpt2.
   */
  prefix?: string;
}

/** Options of {@link uploadWeights}. */
export interface UploadWeightsOptions extends WeightOptions {
  /** Whether the uploaded tensors require gradients (default false: the base model is frozen). */
  requiresGrad?: boolean;
  /** Called after each tensor is on the GPU. */
  onProgress?: (uploaded: number, total: number, name: string) => void;
  /**
   * Rewrites a weight on the host before it is uploaded, e.g. into several tensors (GPT-2's fused
   * `c_attn` into q, k and v blocks); by default each weight is uploaded as it is.
   */
  transform?: (name: string, data: Float32Array, shape: number[]) => Iterable<[string, Float32Array, number[]]>;
}

/**
 * The tensors a model needs, by their Hugging Face names (without any prefix), with their shapes.
 * Linear weights keep the checkpoint's layout: `[out, in]` for the llama family, GPT-2's Conv1D
 * `[in, out]` for gpt2.
 */
export function expectedWeights(config: ModelConfig): Map<string, number[]> {
  const w = new Map<string, number[]>();
  const d = config.hiddenSize;
  const V = config.vocabSize;
  const ff = config.intermediateSize;
  if (config.family === 'llama') {
    const q = config.numHeads * config.headDim;
    const kv = config.numKvHeads * config.headDim;
    w.set('model.embed_tokens.weight', [V, d]);
    for (let i = 0; i < config.numLayers; i++) {
      const p = `model.layers.${i}.`;
      w.set(`${p}input_layernorm.weight`, [d]);
      w.set(`${p}self_attn.q_proj.weight`, [q, d]);
      w.set(`${p}self_attn.k_proj.weight`, [kv, d]);
      w.set(`${p}self_attn.v_proj.weight`, [kv, d]);
      if (config.attentionBias) {
        w.set(`${p}self_attn.q_proj.bias`, [q]);
        w.set(`${p}self_attn.k_proj.bias`, [kv]);
        w.set(`${p}self_attn.v_proj.bias`, [kv]);
      }
      w.set(`${p}self_attn.o_proj.weight`, [d, q]);
      w.set(`${p}post_attention_layernorm.weight`, [d]);
      w.set(`${p}mlp.gate_proj.weight`, [ff, d]);
      w.set(`${p}mlp.up_proj.weight`, [ff, d]);
      w.set(`${p}mlp.down_proj.weight`, [d, ff]);
      if (config.mlpBias) {
        w.set(`${p}mlp.gate_proj.bias`, [ff]);
        w.set(`${p}mlp.up_proj.bias`, [ff]);
        w.set(`${p}mlp.down_proj.bias`, [d]);
      }
    }
    w.set('model.norm.weight', [d]);
    if (!config.tieWordEmbeddings) w.set('lm_head.weight', [V, d]);
    return w;
  }
  w.set('wte.weight', [V, d]);
  w.set('wpe.weight', [config.maxPositions, d]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = `h.${i}.`;
    w.set(`${p}ln_1.weight`, [d]);
    w.set(`${p}ln_1.bias`, [d]);
    w.set(`${p}attn.c_attn.weight`, [d, 3 * d]);
    w.set(`${p}attn.c_attn.bias`, [3 * d]);
    w.set(`${p}attn.c_proj.weight`, [d, d]);
    w.set(`${p}attn.c_proj.bias`, [d]);
    w.set(`${p}ln_2.weight`, [d]);
    w.set(`${p}ln_2.bias`, [d]);
    w.set(`${p}mlp.c_fc.weight`, [d, ff]);
    w.set(`${p}mlp.c_fc.bias`, [ff]);
    w.set(`${p}mlp.c_proj.weight`, [ff, d]);
    w.set(`${p}mlp.c_proj.bias`, [d]);
  }
  w.set('ln_f.weight', [d]);
  w.set('ln_f.bias', [d]);
  // lm_head sits outside `transformer.`, so it never takes the prefix.
  if (!config.tieWordEmbeddings) w.set('lm_head.weight', [V, d]);
  return w;
}

/** The name a weight has in the file, given the detected prefix. */
function fileName(config: ModelConfig, name: string, prefix: string): string {
  return config.family === 'gpt2' && name === 'lm_head.weight' ? name : prefix + name;
}

/**
 * The prefix the file's names carry: the one given, else the candidate under which the first
 * expected tensor (the token embedding) is found. Extra tensors (GPT-2's `attn.bias` masks, a
 * tied `lm_head.weight`) are ignored, so they need no handling here.
 */
export function resolveWeightPrefix(config: ModelConfig, file: SafetensorsFile, options: WeightOptions = {}): string {
  if (options.prefix !== undefined) return options.prefix;
  const candidates = config.family === 'gpt2' ? ['', 'transformer.'] : [''];
  const probe = config.family === 'gpt2' ? 'wte.weight' : 'model.embed_tokens.weight';
  return candidates.find((p) => file.tensors.has(p + probe)) ?? '';
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Checks that the file holds every tensor `config` needs with the right shape. Throws one error
 * listing every missing tensor and every mis-shaped one (expected vs found); tensors the model
 * does not use are allowed.
 */
export function checkWeights(config: ModelConfig, file: SafetensorsFile, options: WeightOptions = {}): void {
  const prefix = resolveWeightPrefix(config, file, options);
  const missing: string[] = [];
  const misShaped: string[] = [];
  for (const [name, shape] of expectedWeights(config)) {
    const key = fileName(config, name, prefix);
    const entry = file.tensors.get(key);
    if (!entry) missing.push(key);
    else if (entry.shape.length !== shape.length || entry.shape.some((s, i) => s !== shape[i])) {
      misShaped.push(`${key}: expected ${fmt(shape)}, found ${fmt(entry.shape)}`);
    }
  }
  if (!missing.length && !misShaped.length) return;
  const parts = [`weights do not match the ${config.modelType} config${prefix ? ` (names prefixed '${prefix}')` : ''}:`];
  if (missing.length) {
    const where = file.shards?.length ? ` (absent from every shard: ${file.shards.join(', ')})` : '';
    parts.push(`missing ${missing.length} tensor(s)${where}: ${missing.join(', ')}`);
  }
  if (misShaped.length) parts.push(`wrong shape for ${misShaped.length} tensor(s): ${misShaped.join('; ')}`);
  if (missing.length === expectedWeights(config).size) {
    const some = [...file.tensors.keys()].slice(0, 5);
    parts.push(
      `none of the expected tensors is in the file (it has ${file.tensors.size}${some.length ? `, e.g. ${some.join(', ')}` : ''}): wrong config, or a prefix to pass?`,
    );
  }
  throw new Error(parts.join('\n'));
}

/**
 * Uploads every weight `config` needs as an f32 GPU tensor, keyed by its Hugging Face name without
 * prefix (the shapes of {@link expectedWeights}). The file is checked first ({@link checkWeights})
 * and every tensor's size against the device's `maxStorageBufferBindingSize`, so those failures
 * happen before any GPU work; a failure midway disposes the tensors already made. The tensors are
 * removed from any open `scope` (the caller owns them and disposes them).
 */
export function uploadWeights(config: ModelConfig, file: SafetensorsFile, options: UploadWeightsOptions = {}): Map<string, Tensor> {
  checkWeights(config, file, options);
  const prefix = resolveWeightPrefix(config, file, options);
  const expected = expectedWeights(config);
  const limit = getContext().limits.maxStorageBufferBindingSize;
  for (const [name, shape] of expected) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    if (bytes > limit) {
      throw new Error(
        `weights: '${fileName(config, name, prefix)}' ${fmt(shape)} needs ${bytes} bytes as f32, more than this device's ` +
          `maxStorageBufferBindingSize (${limit} bytes); splitting large tensors across buffers is not supported yet`,
      );
    }
  }
  const out = new Map<string, Tensor>();
  try {
    let done = 0;
    for (const [name, shape] of expected) {
      const entry = file.tensors.get(fileName(config, name, prefix))!;
      const parts = options.transform ? options.transform(name, toFloat32(entry), shape) : [[name, toFloat32(entry), shape] as const];
      for (const [partName, data, partShape] of parts) {
        out.set(partName, keep(tensor(data, partShape, { requiresGrad: options.requiresGrad ?? false })));
      }
      options.onProgress?.(++done, expected.size, name);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}
