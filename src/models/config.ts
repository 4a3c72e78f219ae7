/**
 * Normalises a Hugging Face `config.json` into one {@link ModelConfig} shape, so that the model
 * code reads `hiddenSize` whatever the architecture calls it (`hidden_size`, `n_embd`). Anything
 * that would change the computation and is not implemented (RoPE types other than `default`,
 * `linear` and `llama3`, other activations, biases the model code does not carry) is rejected
 * here, loudly, instead of loading a model that silently computes something else.
 */
import { SUPPORTED_ROPE_TYPES, type RopeScaling } from '../ops/rope';
import { SgtError } from '../gpu/errors';

/** `model_type`s that {@link parseModelConfig} accepts (SmolLM checkpoints are `llama`). */
export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2'] as const;

/** A supported Hugging Face `model_type`. */
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

/** The architecture of a causal LM, normalised across Hugging Face model types. */
export interface ModelConfig {
  /** The `model_type` it came from. */
  modelType: ModelType;
  /** `llama`: pre-RMSNorm, RoPE, gated SiLU MLP, grouped-query attention (llama, mistral, qwen2). `gpt2`: pre-LayerNorm, learned positions, GELU MLP. */
  family: 'llama' | 'gpt2';
  /** Vocabulary size (rows of the embedding). */
  vocabSize: number;
  /** Model width d. */
  hiddenSize: number;
  /** Width of the MLP's hidden layer. */
  intermediateSize: number;
  /** Number of transformer blocks. */
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (divides `numHeads`; equal to it without grouped-query attention). */
  numKvHeads: number;
  /** Width of one head (usually `hiddenSize / numHeads`). */
  headDim: number;
  /** Epsilon of the RMSNorm (llama family) or LayerNorm (gpt2). */
  normEps: number;
  /** RoPE base frequency (llama family); null for gpt2, which has learned positions. */
  ropeTheta: number | null;
  /**
   * RoPE frequency scaling (`rope_scaling` / `rope_parameters` of type `linear` or `llama3`), set
   * only where the config asks for one.
   */
  ropeScaling?: RopeScaling;
  /** Longest sequence the model was trained for (gpt2: the size of its position table). */
  maxPositions: number;
  /** Whether the output head reuses the token embedding (no `lm_head.weight` needed). */
  tieWordEmbeddings: boolean;
  /** Whether the q/k/v projections have biases (qwen2, gpt2). */
  attentionBias: boolean;
  /** Whether the MLP projections have biases (gpt2; llama with `mlp_bias`). */
  mlpBias: boolean;
  /** MLP activation: SiLU (gated, llama family) or tanh-approximated GELU (gpt2). */
  activation: 'silu' | 'gelu_tanh';
  /**
   * Sliding-window attention span, set only where the config turns it on (mistral's
   * `sliding_window`, qwen2's `use_sliding_window`); sequences no longer than it are unaffected.
   */
  slidingWindow?: number;
}

function fail(message: string): never {
  throw new SgtError('MODEL_INVALID', `config.json: ${message}`);
}

/**
 * A value as an error message shows it: its JSON, else its type. Never throws: `String()` of an
 * object like `{ "toString": 1 }` (valid JSON) throws a TypeError, and so does JSON of a BigInt.
 */
function show(v: unknown): string {
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

/** A RoPE type as messages name it: `'yarn'`, or the JSON of a value that is not a string. */
function ropeType(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : show(v);
}

type Json = Record<string, unknown>;

/** A required positive integer; HF writes every architecture field, so absence means a broken file. */
function posInt(c: Json, key: string): number {
  const v = c[key];
  if (v === undefined || v === null) fail(`missing required field '${key}'`);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) fail(`field '${key}' must be a positive integer, got ${show(v)}`);
  return v;
}

/** An optional positive integer (null or absent gives `fallback`). */
function optPosInt(c: Json, key: string, fallback: number): number {
  return c[key] === undefined || c[key] === null ? fallback : posInt(c, key);
}

/** An optional positive finite number (null or absent gives `fallback`, the HF class default). */
function optPosNum(c: Json, key: string, fallback: number): number {
  const v = c[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`field '${key}' must be a positive number, got ${show(v)}`);
  return v;
}

function optBool(c: Json, key: string, fallback: boolean): boolean {
  const v = c[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') fail(`field '${key}' must be true or false, got ${show(v)}`);
  return v;
}

function checkHeads(
  numHeads: number,
  numKvHeads: number,
  hiddenSize: number,
  headDimGiven: boolean,
  names: [string, string, string],
): void {
  const [heads, kv, hidden] = names;
  if (!headDimGiven && hiddenSize % numHeads !== 0) fail(`'${heads}' (${numHeads}) must divide '${hidden}' (${hiddenSize})`);
  if (numHeads % numKvHeads !== 0) fail(`'${kv}' (${numKvHeads}) must divide '${heads}' (${numHeads})`);
}

/** A required positive finite number inside a rope dict, named `<dict>.<key>`. */
function ropeNum(dict: Json, where: string, key: string): number {
  const v = dict[key];
  if (v === undefined || v === null) fail(`'${where}' of type ${ropeType(dict.rope_type ?? dict.type)} needs '${key}'`);
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`field '${where}.${key}' must be a positive number, got ${show(v)}`);
  return v;
}

/** The scaling one rope dict asks for (null: plain RoPE), its type checked against the supported list. */
function ropeScalingOf(dict: Json, where: string): RopeScaling | null {
  const type = dict.rope_type ?? dict.type;
  if (type === undefined || type === null || type === 'default') return null;
  if (type === 'linear') return { type: 'linear', factor: ropeNum(dict, where, 'factor') };
  if (type === 'llama3') {
    const scaling: RopeScaling = {
      type: 'llama3',
      factor: ropeNum(dict, where, 'factor'),
      lowFreqFactor: ropeNum(dict, where, 'low_freq_factor'),
      highFreqFactor: ropeNum(dict, where, 'high_freq_factor'),
      originalMaxPositionEmbeddings: ropeNum(dict, where, 'original_max_position_embeddings'),
    };
    if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
      fail(`'${where}.high_freq_factor' (${scaling.highFreqFactor}) must be greater than 'low_freq_factor' (${scaling.lowFreqFactor})`);
    }
    return scaling;
  }
  fail(`'${where}' asks for RoPE type ${ropeType(type)}, which is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(', ')})`);
}

/**
 * RoPE base and scaling: transformers before v5 writes `rope_theta` and `rope_scaling` (with
 * `rope_type`, or the older `type`), v5 writes both inside `rope_parameters`. Types other than
 * `default`, `linear` and `llama3` are rejected by name with the supported list; two dicts that
 * ask for different scalings are rejected too.
 */
function ropeSettings(c: Json): { theta: number; scaling: RopeScaling | null } {
  const params = c.rope_parameters;
  let scaling: RopeScaling | null = null;
  let from = '';
  for (const [key, value] of [
    ['rope_scaling', c.rope_scaling],
    ['rope_parameters', params],
  ] as const) {
    if (value === undefined || value === null) continue;
    if (typeof value !== 'object' || Array.isArray(value)) fail(`field '${key}' must be an object or null`);
    const s = ropeScalingOf(value as Json, key);
    if (!s) continue;
    if (scaling && JSON.stringify(scaling) !== JSON.stringify(s)) fail(`'${from}' and '${key}' ask for different RoPE scalings`);
    scaling = s;
    from = key;
  }
  const partial = c.partial_rotary_factor ?? (params && typeof params === 'object' ? (params as Json).partial_rotary_factor : undefined);
  if (partial !== undefined && partial !== null && partial !== 1)
    fail(`'partial_rotary_factor' ${show(partial)} is not supported (only 1)`);
  const nested = params && typeof params === 'object' ? (params as Json).rope_theta : undefined;
  const theta =
    c.rope_theta === undefined && nested !== undefined ? optPosNum(params as Json, 'rope_theta', 10000) : optPosNum(c, 'rope_theta', 10000);
  return { theta, scaling };
}

function parseLlamaFamily(c: Json, modelType: 'llama' | 'mistral' | 'qwen2'): ModelConfig {
  const hiddenSize = posInt(c, 'hidden_size');
  const numHeads = posInt(c, 'num_attention_heads');
  const numKvHeads = optPosInt(c, 'num_key_value_heads', numHeads);
  const headDimGiven = c.head_dim !== undefined && c.head_dim !== null;
  checkHeads(numHeads, numKvHeads, hiddenSize, headDimGiven, ['num_attention_heads', 'num_key_value_heads', 'hidden_size']);
  const headDim = headDimGiven ? posInt(c, 'head_dim') : hiddenSize / numHeads;

  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') fail(`'hidden_act' is ${show(act)}; only 'silu' is supported for ${modelType}`);

  const attentionBias = modelType === 'qwen2';
  let mlpBias = false;
  if (modelType !== 'qwen2') {
    // Llama's attention_bias also puts a bias on o_proj, which the llama-family model does not carry.
    if (optBool(c, 'attention_bias', false)) fail(`'attention_bias: true' (biases on q/k/v/o_proj) is not supported for ${modelType}`);
    mlpBias = optBool(c, 'mlp_bias', false);
  }

  let slidingWindow: number | undefined;
  if (modelType === 'mistral' && c.sliding_window !== undefined && c.sliding_window !== null) slidingWindow = posInt(c, 'sliding_window');
  if (modelType === 'qwen2' && optBool(c, 'use_sliding_window', false)) slidingWindow = posInt(c, 'sliding_window');

  const rope = ropeSettings(c);
  const config: ModelConfig = {
    modelType,
    family: 'llama',
    vocabSize: posInt(c, 'vocab_size'),
    hiddenSize,
    intermediateSize: posInt(c, 'intermediate_size'),
    numLayers: posInt(c, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    normEps: optPosNum(c, 'rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    maxPositions: posInt(c, 'max_position_embeddings'),
    // The HF default for these classes is untied; SmolLM and small Qwen2 set it to true.
    tieWordEmbeddings: optBool(c, 'tie_word_embeddings', false),
    attentionBias,
    mlpBias,
    activation: 'silu',
  };
  if (slidingWindow !== undefined) config.slidingWindow = slidingWindow;
  if (rope.scaling) config.ropeScaling = rope.scaling;
  return config;
}

function parseGpt2(c: Json): ModelConfig {
  const hiddenSize = posInt(c, 'n_embd');
  const numHeads = posInt(c, 'n_head');
  checkHeads(numHeads, numHeads, hiddenSize, false, ['n_head', 'n_head', 'n_embd']);
  const act = c.activation_function ?? 'gelu_new';
  if (act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    fail(`'activation_function' is ${show(act)}; supported for gpt2: 'gelu_new', 'gelu_pytorch_tanh'`);
  }
  // These flags change the attention scores; GPT-2 checkpoints leave them at their defaults.
  if (!optBool(c, 'scale_attn_weights', true)) fail(`'scale_attn_weights: false' is not supported`);
  if (optBool(c, 'scale_attn_by_inverse_layer_idx', false)) fail(`'scale_attn_by_inverse_layer_idx: true' is not supported`);
  return {
    modelType: 'gpt2',
    family: 'gpt2',
    vocabSize: posInt(c, 'vocab_size'),
    hiddenSize,
    intermediateSize: optPosInt(c, 'n_inner', 4 * hiddenSize),
    numLayers: posInt(c, 'n_layer'),
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    normEps: optPosNum(c, 'layer_norm_epsilon', 1e-5),
    ropeTheta: null,
    maxPositions: posInt(c, 'n_positions'),
    // GPT2LMHeadModel ties its head to wte unless told otherwise.
    tieWordEmbeddings: optBool(c, 'tie_word_embeddings', true),
    attentionBias: true,
    mlpBias: true,
    activation: 'gelu_tanh',
  };
}

/**
 * Reads a parsed Hugging Face `config.json` (llama, mistral, qwen2, SmolLM as llama, gpt2) into a
 * {@link ModelConfig}. Throws naming the field when a required size is missing or not a positive
 * integer, listing the supported types for any other `model_type`, and when heads do not divide
 * (`num_attention_heads` must divide `hidden_size` unless `head_dim` is given, and
 * `num_key_value_heads` must divide `num_attention_heads`). Fields HF itself defaults
 * (`rms_norm_eps`, `rope_theta`, `num_key_value_heads`, `n_inner`, ...) get HF's defaults.
 */
export function parseModelConfig(json: unknown): ModelConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    fail(`must be a JSON object, got ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const c = json as Json;
  const type = c.model_type;
  if (typeof type !== 'string') fail(`missing 'model_type' (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  switch (type) {
    case 'llama':
    case 'mistral':
    case 'qwen2':
      return parseLlamaFamily(c, type);
    case 'gpt2':
      return parseGpt2(c);
    default:
      fail(`model_type '${type}' is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
}
