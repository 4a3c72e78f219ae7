/**
 * Which Hugging Face tensors each architecture needs, a check of a safetensors file against that
 * list, and the upload of the weights to the GPU in the file's dtype (F32 as f32, BF16 / F16 as
 * packed `bf16` / `f16` tensors, 2 bytes per element) or widened to f32. The token embedding and
 * the LM head, when larger than one storage binding, are stored as row blocks. The checks (names,
 * shapes, sizes, the binding limit) run before any GPU work, so a wrong file or config costs
 * nothing and reports every problem at once.
 */
import { getContext } from '../gpu/context';
import { bits16ToFloats } from '../tensor/half';
import { Tensor, fmtShape, keep, numel, storageBytes, type DType } from '../tensor/tensor';
import type { ModelConfig } from './config';
import { SAFETENSORS_DTYPE_BYTES, toFloat32, words16, type SafetensorsEntry, type SafetensorsFile } from './safetensors';
import { SgtError } from '../gpu/errors';

/** Options of {@link checkWeights} and {@link uploadWeights}. */
export interface WeightOptions {
  /**
   * Text that precedes every expected name in the file (e.g. `'transformer.'` for a GPT-2 saved
   * from `GPT2LMHeadModel`). When omitted it is detected: none, or `transformer.` for gpt2.
   */
  prefix?: string;
}

/**
 * A weight's elements on the host as stored in the file: f32 values (`Float32Array`) or 16-bit
 * patterns (`Uint16Array`) of a BF16 / F16 tensor.
 */
export type WeightData = Float32Array | Uint16Array;

/**
 * What the weights become on the GPU: `'file'` keeps each tensor's file dtype (F32 as f32, BF16
 * and F16 as packed `bf16` / `f16` tensors that the weight-reading kernels unpack); `'f32'`
 * widens everything to f32 (exactly: every bfloat16 and half value is an f32).
 */
export type WeightDtype = 'file' | 'f32';

/** Options of {@link uploadWeights}. */
export interface UploadWeightsOptions extends WeightOptions {
  /**
   * Whether the uploaded tensors require gradients (default false: the base model is frozen).
   * Only f32 tensors can: with a BF16 / F16 file, leave `weightDtype` at its default ('f32' then).
   */
  requiresGrad?: boolean;
  /** The GPU dtype of the weights (default `'file'`, or `'f32'` when `requiresGrad`). */
  weightDtype?: WeightDtype;
  /** Called after each tensor is on the GPU. */
  onProgress?: (uploaded: number, total: number, name: string) => void;
  /**
   * Rewrites a weight on the host before it is uploaded, e.g. into several tensors (GPT-2's fused
   * `c_attn` into q, k and v blocks); by default each weight is uploaded as it is. `data` holds the
   * file's elements (f32 values, or the 16-bit patterns of a BF16 / F16 tensor), and the parts keep
   * that representation. It may run twice per weight (once to check the parts' sizes), and is not
   * called for a weight stored as row blocks (uploaded as it is).
   */
  transform?: (name: string, data: WeightData, shape: number[]) => Iterable<[string, WeightData, number[]]>;
}

/**
 * The uploaded weights: every GPU tensor, by its Hugging Face name without prefix. A weight stored
 * as row blocks (an embedding or LM head larger than one storage binding) has one entry per block,
 * named `name[start:end]` by its rows, and {@link ModelWeights.blocks} returns them in order.
 */
export class ModelWeights extends Map<string, Tensor> {
  private readonly split = new Map<string, Tensor[]>();

  /** @internal Records that `name` is stored as these row blocks (already in the map). */
  addBlocks(name: string, blocks: Tensor[]): void {
    this.split.set(name, blocks);
  }

  /** The tensors of weight `name` in row order: the weight itself, or its row blocks. Throws when absent. */
  blocks(name: string): Tensor[] {
    const blocks = this.split.get(name);
    if (blocks) return [...blocks];
    const t = this.get(name);
    if (!t) throw new SgtError('INTERNAL', `weights: '${name}' was not uploaded`);
    return [t];
  }

  /** Whether weight `name` is stored as more than one row block. */
  isSplit(name: string): boolean {
    return (this.split.get(name)?.length ?? 1) > 1;
  }

  /** Bytes of every weight tensor on the GPU (with `weightDtype: 'file'`, the file's tensor bytes). */
  get bytes(): number {
    let total = 0;
    for (const t of this.values()) total += t.byteLength;
    return total;
  }
}

/**
 * Whether weight `name` of `config` may be stored as row blocks when it exceeds one storage
 * binding: the token embedding and the LM head (and GPT-2's position table), which only gather
 * and the LM-head product read, both of which work block by block.
 */
export function isRowBlockWeight(config: ModelConfig, name: string): boolean {
  if (name === 'lm_head.weight') return true;
  return config.family === 'llama' ? name === 'model.embed_tokens.weight' : name === 'wte.weight' || name === 'wpe.weight';
}

/**
 * Rows per block for a `[rows, cols]` weight of `dtype` under a binding limit of `limit` bytes:
 * all of them when the whole fits, else the most that fit, rounded down to a multiple of 16 when
 * at least 16 fit (so that a product split at block boundaries sums in the order of one product).
 * 0 when not even one row fits.
 */
export function rowBlockRows(rows: number, cols: number, dtype: DType, limit: number): number {
  if (storageBytes(dtype, rows * cols) <= limit) return rows;
  let r = Math.floor(limit / (storageBytes(dtype, 2 * cols) / 2));
  while (r > 0 && storageBytes(dtype, r * cols) > limit) r--;
  return r >= 16 ? r - (r % 16) : r;
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
  // Every layer needs several tensors: a file with fewer tensors than the config has layers cannot
  // match, and listing the names it lacks would take minutes and all memory for a layer count of
  // 2^53 (a valid config.json number).
  if (config.numLayers > file.tensors.size) {
    const key = config.family === 'gpt2' ? 'n_layer' : 'num_hidden_layers';
    throw new SgtError(
      'MODEL_INVALID',
      `weights do not match the ${config.modelType} config: it has ${config.numLayers} layers ('${key}'), ` +
        `more than the file's ${file.tensors.size} tensors could hold`,
    );
  }
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
  throw new SgtError('MODEL_INVALID', parts.join('\n'));
}

const GPU_DTYPE: Record<SafetensorsEntry['dtype'], DType> = { F32: 'f32', BF16: 'bf16', F16: 'f16' };

/** The entry's elements as stored: f32 values, or 16-bit patterns (views of the file where aligned). */
function fileData(entry: SafetensorsEntry): WeightData {
  return entry.dtype === 'F32' ? toFloat32(entry) : words16(entry);
}

/** One tensor to upload (or its row blocks), planned before any GPU work. */
interface Upload {
  /** Expected weight it comes from. */
  source: string;
  entry: SafetensorsEntry;
  /** Set when it is a part made by the transform. */
  part?: string;
  shape: number[];
  dtype: DType;
  /** Rows per block when stored as row blocks. */
  blockRows?: number;
}

/** Throws MODEL_INVALID unless a file tensor (or a transform's part) holds the `need` its shape says. */
function checkSize(has: string, size: number, need: number, shape: string): void {
  if (size !== need) throw new SgtError('MODEL_INVALID', `weights: ${has} but ${shape} needs ${need}`);
}

/** The error for a tensor (or a part, or a row of a row-block tensor) over the storage binding limit. */
function overLimitError(limit: number, what: string, bytes: number, dtype: DType, oneRow?: number): Error {
  return new SgtError(
    'LIMIT_EXCEEDED',
    `weights: ${what} needs ${bytes} bytes as ${dtype}, more than the storage binding limit (${limit} bytes)` +
      (oneRow !== undefined
        ? `; it is stored as row blocks, but one row of ${oneRow} bytes does not fit`
        : '; only the token embedding and the LM head are stored as row blocks'),
  );
}

/**
 * Uploads every weight `config` needs, keyed by its Hugging Face name without prefix (the shapes of
 * {@link expectedWeights}). By default each tensor keeps its file dtype: F32 as f32, BF16 / F16 as
 * packed `bf16` / `f16` tensors (so the GPU weight bytes equal the file's tensor bytes); with
 * `weightDtype: 'f32'` (the default when `requiresGrad`) they are widened. Each is allocated at its
 * exact size (no pool rounding). The token embedding and the LM head (and GPT-2's position table),
 * when larger than the context's `bindingLimit`, are stored as row blocks under it
 * ({@link ModelWeights.blocks}); any other tensor over the limit is a named error. The file is
 * checked first ({@link checkWeights}), then every tensor's size and layout, so those failures
 * happen before any GPU work; a failure midway disposes the tensors already made. The tensors are
 * removed from any open `scope` (the caller owns them and disposes them).
 */
export function uploadWeights(config: ModelConfig, file: SafetensorsFile, options: UploadWeightsOptions = {}): ModelWeights {
  checkWeights(config, file, options);
  const prefix = resolveWeightPrefix(config, file, options);
  const expected = expectedWeights(config);
  const requiresGrad = options.requiresGrad ?? false;
  const weightDtype = options.weightDtype ?? (requiresGrad ? 'f32' : 'file');
  if (weightDtype !== 'file' && weightDtype !== 'f32')
    throw new SgtError('INVALID_OPTION', `weights: 'weightDtype' must be 'file' or 'f32', got ${String(weightDtype)}`);
  const limit = getContext().bindingLimit;
  const keyOf = (name: string) => fileName(config, name, prefix);
  const dtypeOf = (entry: SafetensorsEntry): DType => (weightDtype === 'f32' ? 'f32' : GPU_DTYPE[entry.dtype]);
  const overLimit = (what: string, bytes: number, dtype: DType, oneRow?: number) => overLimitError(limit, what, bytes, dtype, oneRow);
  // First the layout, from the shapes alone: which tensors are row blocks, which cannot fit.
  const blockRows = new Map<string, number>();
  for (const [name, shape] of expected) {
    const entry = file.tensors.get(keyOf(name))!;
    const dtype = dtypeOf(entry);
    if (requiresGrad && dtype !== 'f32') {
      throw new SgtError(
        'INVALID_OPTION',
        `weights: '${keyOf(name)}' is ${entry.dtype} and weightDtype is 'file'; weights that require gradients must be f32 (weightDtype 'f32')`,
      );
    }
    const bytes = storageBytes(dtype, numel(shape));
    if (bytes <= limit) continue;
    if (shape.length === 2 && isRowBlockWeight(config, name)) {
      const rows = rowBlockRows(shape[0], shape[1], dtype, limit);
      if (rows === 0) throw overLimit(`'${keyOf(name)}' ${fmt(shape)}`, bytes, dtype, storageBytes(dtype, shape[1]));
      blockRows.set(name, rows);
    } else if (!options.transform) {
      throw overLimit(`'${keyOf(name)}' ${fmt(shape)}`, bytes, dtype);
    }
  }
  // Then the bytes, and the parts a transform makes.
  const plan: Upload[] = [];
  for (const [name, shape] of expected) {
    const key = keyOf(name);
    const entry = file.tensors.get(key)!;
    const need = numel(shape) * SAFETENSORS_DTYPE_BYTES[entry.dtype];
    checkSize(`'${key}' has ${entry.bytes.byteLength} bytes`, entry.bytes.byteLength, need, `shape ${fmt(shape)} in ${entry.dtype}`);
    const dtype = dtypeOf(entry);
    if (!options.transform || blockRows.has(name)) {
      plan.push({ source: name, entry, shape, dtype, blockRows: blockRows.get(name) });
      continue;
    }
    for (const [p, data, s] of options.transform(name, fileData(entry), shape)) {
      checkSize(`part '${p}' of '${key}' has ${data.length} elements`, data.length, numel(s), `shape ${fmtShape(s)}`);
      const bytes = storageBytes(dtype, numel(s));
      if (bytes > limit) throw overLimit(`part '${p}' ${fmt(s)} of '${key}'`, bytes, dtype);
      plan.push({ source: name, entry, shape: s, dtype, part: p });
    }
  }
  const out = new ModelWeights();
  const ctx = getContext();
  const make = (key: string, shape: number[], dtype: DType, data: WeightData, from: SafetensorsEntry['dtype']): Tensor => {
    const t = keep(Tensor.empty(shape, dtype, 'weights', true));
    out.set(key, t);
    const values = dtype === 'f32' && data instanceof Uint16Array ? bits16ToFloats(data, from === 'BF16' ? 'bf16' : 'f16') : data;
    if (values.length > 0) ctx.write(t.buffer, values);
    t.requiresGrad = requiresGrad;
    return t;
  };
  try {
    let done = 0;
    let at = 0;
    for (const [name] of expected) {
      const entry = file.tensors.get(fileName(config, name, prefix))!;
      const data = fileData(entry);
      const transformed = options.transform && plan[at]?.part !== undefined;
      const parts = transformed ? new Map([...options.transform!(name, data, expected.get(name)!)].map(([p, d]) => [p, d])) : null;
      for (; at < plan.length && plan[at].source === name; at++) {
        const u = plan[at];
        const values = parts ? parts.get(u.part!)! : data;
        if (u.blockRows === undefined) {
          make(u.part ?? name, u.shape, u.dtype, values, entry.dtype);
          continue;
        }
        const [rows, cols] = u.shape;
        const blocks: Tensor[] = [];
        for (let r = 0; r < rows; r += u.blockRows) {
          const end = Math.min(rows, r + u.blockRows);
          blocks.push(make(`${name}[${r}:${end}]`, [end - r, cols], u.dtype, values.subarray(r * cols, end * cols), entry.dtype));
        }
        out.addBlocks(name, blocks);
      }
      options.onProgress?.(++done, expected.size, name);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}
