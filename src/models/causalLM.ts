/**
 * Frozen base causal LMs from Hugging Face files on WebGPU: the Llama family (Llama, Mistral,
 * Qwen2, SmolLM: RMSNorm, RoPE, grouped-query attention, SwiGLU) and GPT-2 (LayerNorm, learned
 * positions, GELU-tanh, Conv1D weights). The forward starts from token ids or from input
 * embeddings (so that a transform can be applied to them), can capture the residual stream after
 * any block and stop there, and is differentiable end to end: the gradient reaches the input
 * embeddings (and the weights, when asked). Weights keep their file dtype on the GPU (BF16 / F16
 * as packed 16-bit tensors that the kernels unpack as they load); the token embedding and the LM
 * head are stored as row blocks when larger than one storage binding.
 */
import { getContext } from '../gpu/context';
import { Tensor, fmtShape, isPackedDType, keep, scope, tensor } from '../tensor/tensor';
import { checkBindingBytes } from '../tensor/validate';
import { add, gatherRowBlocks, geluTanh, matmul, matmulRowBlocks, mul, reshape, scale, sqrt, sub, swiglu } from '../ops/index';
import { attention } from '../ops/attention';
import { layerNorm, rmsNorm } from '../ops/norm';
import { rope } from '../ops/rope';
import { parseModelConfig, type ModelConfig } from './config';
import type { ReadSafetensorsOptions } from './safetensors';
import { readWeights, type WeightsInput } from './shards';
import { uploadWeights, type ModelWeights, type WeightData, type WeightDtype } from './weights';
import { weightsDigest } from './digest';
import { noGrad } from '../autograd/engine';
import { embeddingColumnStd } from './embeddingStats';
import { embeddingRowNorms, medianOfNonNegative } from '../losses/medianNorm';
import { SgtError } from '../gpu/errors';

/** Statistics of the embedding table that the losses use, computed once on the GPU. */
export interface EmbeddingStatistics {
  /** Population standard deviation of each column of `E` `[d]` (std-log-ratio). */
  columnStd: Tensor;
  /** Median of the row norms of `E`, 0-d (median-norm penalty). */
  medianNorm: Tensor;
}

/** Token ids: an i32/u32 tensor `[B, T]`, or host data with its shape (checked against the vocabulary). */
export type IdsInput = Tensor | { data: ArrayLike<number>; shape: readonly [number, number] };

/** A `[B, T]` 0/1 attention mask (1 = real token, 0 = right padding): an f32 tensor or host data. */
export type AttentionMaskInput = Tensor | ArrayLike<number>;

/** Arguments of {@link CausalLM.forward}. */
export interface CausalLMForwardOptions {
  /** Input embeddings `[B, T, d]` (give this or `ids`). */
  inputsEmbeds?: Tensor;
  /** Token ids `[B, T]` (give this or `inputsEmbeds`). */
  ids?: IdsInput;
  /** `[B, T]`, 1 = real token, 0 = padding (right padding). Default: all ones. */
  attentionMask?: AttentionMaskInput;
  /** Blocks whose output (the residual stream after the block, before the final norm) to return. */
  captureBlocks?: number[] | 'all';
  /** Stop after this block: no later block runs and no logits are computed. */
  stopAfterBlock?: number;
  /**
   * What a full pass returns after the last block: `'logits'` (the default: `[B, T, V]`, which
   * must fit one storage binding), `'hidden'` (the final norm's output `[B, T, d]`, without the
   * head's product: hand it with {@link CausalLM.headBlocks} to the fused LM-head loss or metrics,
   * which never make the logits) or `'both'`. Ignored when `stopAfterBlock` is set.
   */
  output?: 'logits' | 'hidden' | 'both';
}

/** What {@link CausalLM.forward} returns. */
export interface CausalLMOutput {
  /** Captured block outputs `[B, T, d]`, in block order. */
  blocks: Tensor[];
  /** Logits `[B, T, V]` (absent when the pass stopped early or `output` is `'hidden'`). */
  logits?: Tensor;
  /** The final norm's output `[B, T, d]` (present when `output` is `'hidden'` or `'both'`). */
  hidden?: Tensor;
}

/** Arguments of {@link loadCausalLM}. */
export interface LoadCausalLMOptions {
  /** The parsed `config.json` (an object) or its text. */
  config: unknown;
  /**
   * `model.safetensors` (bytes, a Blob/File, a URL, or an already parsed file), or a sharded
   * checkpoint: a list of shard sources, or `{ index, shards }` with `model.safetensors.index.json`
   * and the shards by file name (see {@link WeightsInput}).
   */
  weights: WeightsInput;
  /** Progress while reading the weights. */
  onProgress?: ReadSafetensorsOptions['onProgress'];
  /** Whether the weights receive gradients (default false: a frozen model). */
  trainable?: boolean;
  /**
   * The weights' GPU dtype: `'file'` (the default for a frozen model) keeps BF16 / F16 tensors as
   * packed 16-bit tensors, so the GPU weight bytes equal the file's; `'f32'` (the default when
   * `trainable`) widens them.
   */
  weightDtype?: WeightDtype;
}

interface Linear {
  weight: Tensor;
  bias?: Tensor;
  /** `outIn`: torch Linear `[out, in]`; `inOut`: GPT-2's Conv1D `[in, out]`. */
  layout: 'outIn' | 'inOut';
}

function linear(x: Tensor, l: Linear): Tensor {
  return matmul(x, l.weight, { transposeB: l.layout === 'outIn', bias: l.bias });
}

/** Rows of one chunk when the embedding statistics widen the table piece by piece (at most 16 MiB of f32). */
const STATS_CHUNK_BYTES = 16 * 2 ** 20;

interface Block {
  norm1: { weight: Tensor; bias?: Tensor };
  norm2: { weight: Tensor; bias?: Tensor };
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  /** llama: gate and up; gpt2: fc in `up`. */
  gate?: Linear;
  up: Linear;
  down: Linear;
}

/** A frozen causal language model on the GPU. Create it with {@link loadCausalLM}. */
export class CausalLM {
  /** The normalised `config.json`. */
  readonly config: ModelConfig;
  private readonly weights: ModelWeights;
  private readonly blocks: Block[];
  /** The token embedding `[V, d]` as row blocks (one block unless it exceeds a storage binding). */
  private readonly embedding: Tensor[];
  private readonly positions: Tensor[] | null;
  private readonly finalNorm: { weight: Tensor; bias?: Tensor };
  /** The LM head `[V, d]` as row blocks (the embedding's when tied). */
  private readonly head: Tensor[];
  private disposed = false;
  private stats: EmbeddingStatistics | null = null;
  private widenedTable: Tensor | null = null;

  /**
   * The digest of the weights file this model was loaded from (see `weightsDigest`): a checkpoint
   * records it and resumes only on a model with the same one.
   */
  readonly weightsDigest: string;

  /** @internal Use {@link loadCausalLM}. */
  constructor(config: ModelConfig, weights: ModelWeights, weightsDigest: string) {
    this.config = config;
    this.weights = weights;
    this.weightsDigest = weightsDigest;
    const w = (name: string): Tensor => {
      const t = weights.get(name);
      if (!t) throw new SgtError('MODEL_INVALID', `CausalLM: weight '${name}' is missing`);
      return t;
    };
    const opt = (name: string): Tensor | undefined => weights.get(name);
    if (config.family === 'llama') {
      this.embedding = weights.blocks('model.embed_tokens.weight');
      this.positions = null;
      this.blocks = Array.from({ length: config.numLayers }, (_, i) => {
        const p = `model.layers.${i}.`;
        const lin = (name: string): Linear => ({ weight: w(`${p}${name}.weight`), bias: opt(`${p}${name}.bias`), layout: 'outIn' });
        return {
          norm1: { weight: w(`${p}input_layernorm.weight`) },
          norm2: { weight: w(`${p}post_attention_layernorm.weight`) },
          q: lin('self_attn.q_proj'),
          k: lin('self_attn.k_proj'),
          v: lin('self_attn.v_proj'),
          o: lin('self_attn.o_proj'),
          gate: lin('mlp.gate_proj'),
          up: lin('mlp.up_proj'),
          down: lin('mlp.down_proj'),
        };
      });
      this.finalNorm = { weight: w('model.norm.weight') };
      this.head = config.tieWordEmbeddings ? this.embedding : weights.blocks('lm_head.weight');
    } else {
      this.embedding = weights.blocks('wte.weight');
      this.positions = weights.blocks('wpe.weight');
      this.blocks = Array.from({ length: config.numLayers }, (_, i) => {
        const p = `h.${i}.`;
        const conv = (name: string): Linear => ({ weight: w(`${p}${name}.weight`), bias: w(`${p}${name}.bias`), layout: 'inOut' });
        return {
          norm1: { weight: w(`${p}ln_1.weight`), bias: w(`${p}ln_1.bias`) },
          norm2: { weight: w(`${p}ln_2.weight`), bias: w(`${p}ln_2.bias`) },
          // c_attn is split into q, k and v column blocks when loading (see splitGpt2Attention).
          q: conv('attn.q'),
          k: conv('attn.k'),
          v: conv('attn.v'),
          o: conv('attn.c_proj'),
          up: conv('mlp.c_fc'),
          down: conv('mlp.c_proj'),
        };
      });
      this.finalNorm = { weight: w('ln_f.weight'), bias: w('ln_f.bias') };
      const untied = !config.tieWordEmbeddings && (weights.has('lm_head.weight') || weights.isSplit('lm_head.weight'));
      this.head = untied ? weights.blocks('lm_head.weight') : this.embedding;
    }
  }

  /**
   * The token-embedding table `[V, d]` as one f32 tensor, for callers that want the whole table in
   * one tensor (the toolkit's own searches — the catalyst, nearest-neighbour inversion, inspect —
   * read {@link embeddingBlocks} block by block instead). When the table is stored as one f32
   * tensor, it is that tensor. When it is packed (BF16 / F16) or split into row blocks, a widened
   * f32 copy is made on first use and kept (owned by the model, freed by {@link dispose}): it costs
   * `V * d * 4` bytes, and a table whose f32 copy exceeds one storage binding throws, naming it and
   * the limit. The forward, {@link embed} and {@link embeddingStatistics} never need it: they read
   * {@link embeddingBlocks}.
   */
  get embeddingTable(): Tensor {
    this.checkAlive('embeddingTable');
    const blocks = this.embedding;
    if (blocks.length === 1 && blocks[0].dtype === 'f32') return blocks[0];
    if (!this.widenedTable) {
      const { vocabSize: V, hiddenSize: d } = this.config;
      checkBindingBytes(
        'CausalLM.embeddingTable',
        `an f32 copy of the ${blocks[0].dtype} token embedding [${V}, ${d}] (stored as ${blocks.length} row block(s))`,
        V * d * 4,
        'use embeddingBlocks() (gather, matmulRowBlocks) instead of the whole table',
      );
      this.widenedTable = keep(noGrad(() => this.embeddingRows(0, V)));
    }
    return this.widenedTable;
  }

  /** The token embedding `[V, d]` as row blocks in order, in the file's dtype (one block unless it exceeds a storage binding). */
  embeddingBlocks(): Tensor[] {
    this.checkAlive('embeddingBlocks');
    return [...this.embedding];
  }

  /**
   * The LM head `[V, d]` (logits = h Wᵀ) as row blocks in order, in the file's dtype: the
   * embedding's blocks when the model ties them. Hand them to `matmulRowBlocks` or to the fused
   * LM-head loss.
   */
  headBlocks(): Tensor[] {
    this.checkAlive('headBlocks');
    return [...this.head];
  }

  /** Bytes of the model's weights on the GPU: the file's tensor bytes unless they were widened to f32. */
  get weightBytes(): number {
    return this.weights.bytes;
  }

  /** Every weight tensor (all frozen unless the model was loaded `trainable`). */
  parameters(): Tensor[] {
    return [...this.weights.values()];
  }

  /** Named weights, with the names of the Hugging Face file (GPT-2's c_attn appears split as attn.q/k/v). */
  namedParameters(): Map<string, Tensor> {
    return new Map(this.weights);
  }

  /** Turns weight gradients on or off (on needs f32 weights: load with `weightDtype: 'f32'`). */
  setTrainable(trainable: boolean): void {
    const packed = [...this.weights].find(([, t]) => isPackedDType(t.dtype));
    if (trainable && packed) {
      throw new SgtError(
        'DTYPE_MISMATCH',
        `CausalLM.setTrainable: weight '${packed[0]}' is ${packed[1].dtype}, a packed read-only weight; load the model with weightDtype 'f32' to train it`,
      );
    }
    for (const t of this.weights.values()) t.requiresGrad = trainable;
  }

  /** Token embeddings `[B, T, d]` of ids `[B, T]`. */
  embed(ids: IdsInput): Tensor {
    this.checkAlive('embed');
    const { ids: t, owned } = this.idsTensor('embed', ids);
    try {
      return gatherRowBlocks(this.embedding, t, 'embed');
    } finally {
      if (owned) t.dispose();
    }
  }

  /**
   * Runs the model. Returns the captured block outputs and, unless `stopAfterBlock` is set, the
   * logits or the final hidden states (option `output`). Differentiable: gradients reach
   * `inputsEmbeds` (and the weights when trainable).
   */
  forward(options: CausalLMForwardOptions): CausalLMOutput {
    this.checkAlive('forward');
    const cfg = this.config;
    const { inputsEmbeds, ids } = options;
    if ((inputsEmbeds === undefined) === (ids === undefined)) {
      throw new SgtError('INVALID_ARGUMENT', "forward: give exactly one of 'inputsEmbeds' and 'ids'");
    }
    if (inputsEmbeds) {
      if (!(inputsEmbeds instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', "forward: 'inputsEmbeds' must be a Tensor");
      if (inputsEmbeds.rank !== 3 || inputsEmbeds.shape[2] !== cfg.hiddenSize) {
        throw new SgtError(
          'SHAPE_MISMATCH',
          `forward: 'inputsEmbeds' has shape ${fmtShape(inputsEmbeds.shape)}; expected [B, T, ${cfg.hiddenSize}]`,
        );
      }
    }
    const [B, T] = inputsEmbeds ? inputsEmbeds.shape : ids instanceof Tensor ? ids.shape : ids!.shape;
    if (T > cfg.maxPositions)
      throw new SgtError('INVALID_ARGUMENT', `forward: sequence length ${T} exceeds the model's ${cfg.maxPositions} positions`);
    if (cfg.slidingWindow !== undefined && T > cfg.slidingWindow) {
      throw new SgtError(
        'UNSUPPORTED',
        `forward: sequence length ${T} exceeds the sliding window (${cfg.slidingWindow}), which is not supported`,
      );
    }
    const last = cfg.numLayers - 1;
    const stop = options.stopAfterBlock;
    if (stop !== undefined && (!Number.isInteger(stop) || stop < 0 || stop > last)) {
      throw new SgtError('INVALID_OPTION', `forward: 'stopAfterBlock' ${stop} is out of range: the model has blocks 0..${last}`);
    }
    const capture = options.captureBlocks === 'all' ? [...Array(cfg.numLayers).keys()] : (options.captureBlocks ?? []);
    for (const k of capture) {
      if (!Number.isInteger(k) || k < 0 || k > last)
        throw new SgtError('INVALID_OPTION', `forward: block index ${k} in 'captureBlocks' is out of range 0..${last}`);
      if (stop !== undefined && k > stop)
        throw new SgtError('INVALID_OPTION', `forward: block ${k} is captured but the pass stops after block ${stop}`);
    }
    const output = options.output ?? 'logits';
    if (output !== 'logits' && output !== 'hidden' && output !== 'both') {
      throw new SgtError('INVALID_OPTION', `forward: 'output' must be 'logits', 'hidden' or 'both', got ${String(output)}`);
    }
    if (stop === undefined && output !== 'hidden') {
      checkBindingBytes(
        'forward',
        `the logits [${B}, ${T}, ${cfg.vocabSize}]`,
        B * T * cfg.vocabSize * 4,
        "use fewer or shorter sequences per pass, or output: 'hidden' and the fused LM-head loss and metrics with headBlocks()",
      );
    }
    const mask = this.maskTensor(options.attentionMask, B, T);
    const idsIn = ids === undefined ? null : this.idsTensor('forward', ids);
    const temporaries: Tensor[] = [];
    if (mask.owned) temporaries.push(mask.mask);
    if (idsIn?.owned) temporaries.push(idsIn.ids);
    try {
      let h = inputsEmbeds ?? gatherRowBlocks(this.embedding, idsIn!.ids, 'forward');
      if (this.positions) {
        const positionIds = tensor(
          Int32Array.from({ length: T }, (_, i) => i),
          [T],
        );
        temporaries.push(positionIds);
        h = add(h, gatherRowBlocks(this.positions, positionIds, 'forward'));
      }
      const blocks: Tensor[] = [];
      const end = stop ?? last;
      for (let i = 0; i <= end; i++) {
        h = this.block(this.blocks[i], h, mask.mask, B, T);
        if (capture.includes(i)) blocks.push(h);
      }
      if (stop !== undefined) return { blocks };
      const n = this.finalNorm;
      const normed = n.bias ? layerNorm(h, n.weight, n.bias, cfg.normEps) : rmsNorm(h, n.weight, cfg.normEps);
      if (output === 'hidden') return { blocks, hidden: normed };
      const logits = matmulRowBlocks(normed, this.head);
      return output === 'both' ? { blocks, logits, hidden: normed } : { blocks, logits };
    } finally {
      for (const t of temporaries) t.dispose();
    }
  }

  /**
   * Column std and median row norm of the embedding table (LOSSES.md section 1), computed on the
   * GPU the first time and cached; owned by the model (freed by {@link dispose}). A packed or split
   * table is widened piece by piece (at most 16 MiB of f32 at a time), never as a whole.
   */
  embeddingStatistics(): EmbeddingStatistics {
    this.checkAlive('embeddingStatistics');
    if (!this.stats) {
      const { columnStd, medianNorm } = noGrad(() => scope(() => this.computeEmbeddingStatistics()));
      this.stats = { columnStd: keep(columnStd), medianNorm: keep(medianNorm) };
    }
    return this.stats;
  }

  /** Frees every weight (and the cached statistics and widened table). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.weights.values()) t.dispose();
    this.stats?.columnStd.dispose();
    this.stats?.medianNorm.dispose();
    this.stats = null;
    this.widenedTable?.dispose();
    this.widenedTable = null;
  }

  /** Rows `[start, end)` of the token embedding as one f32 tensor (gathered across blocks, widened). */
  private embeddingRows(start: number, end: number): Tensor {
    const ids = tensor(
      Int32Array.from({ length: end - start }, (_, i) => start + i),
      [end - start],
    );
    try {
      return gatherRowBlocks(this.embedding, ids, 'embeddingRows');
    } finally {
      ids.dispose();
    }
  }

  /** The statistics, inside a scope that frees every temporary. */
  private computeEmbeddingStatistics(): EmbeddingStatistics {
    const { vocabSize: V, hiddenSize: d } = this.config;
    const whole = this.embedding.length === 1 && this.embedding[0].dtype === 'f32' ? this.embedding[0] : null;
    const chunkRows = whole ? V : Math.max(1, Math.floor(Math.min(STATS_CHUNK_BYTES, getContext().bindingLimit) / (4 * d)));
    if (chunkRows >= V) {
      const table = whole ?? this.embeddingRows(0, V);
      return { columnStd: embeddingColumnStd(table), medianNorm: medianOfNonNegative(embeddingRowNorms(table)) };
    }
    // Chunk by chunk: the row norms are copied into one [V] vector and the column moments combined,
    // mean = sum_c n_c mean_c / V and variance = sum_c n_c (std_c^2 + (mean_c - mean)^2) / V.
    const ctx = getContext();
    const norms = Tensor.empty([V]);
    const chunks: { n: number; mean: Tensor; std: Tensor }[] = [];
    for (let start = 0; start < V; start += chunkRows) {
      const n = Math.min(V, start + chunkRows) - start;
      // Each chunk's widened rows are freed before the next is made: one chunk of f32 at a time.
      const moments = scope(() => {
        const rows = this.embeddingRows(start, start + n);
        const chunkNorms = embeddingRowNorms(rows);
        ctx.copy(chunkNorms.buffer, 0, norms.buffer, start * 4, n * 4);
        const average = tensor(new Float32Array(n).fill(1 / n), [1, n]);
        return { mean: reshape(matmul(average, rows), [d]), std: embeddingColumnStd(rows) };
      });
      chunks.push({ n, ...moments });
    }
    let mean: Tensor | null = null;
    for (const c of chunks) mean = mean ? add(mean, scale(c.mean, c.n / V)) : scale(c.mean, c.n / V);
    let variance: Tensor | null = null;
    for (const c of chunks) {
      const deviation = sub(c.mean, mean!);
      const term = scale(add(mul(c.std, c.std), mul(deviation, deviation)), c.n / V);
      variance = variance ? add(variance, term) : term;
    }
    return { columnStd: sqrt(variance!), medianNorm: medianOfNonNegative(norms) };
  }

  private block(b: Block, x: Tensor, mask: Tensor, B: number, T: number): Tensor {
    const cfg = this.config;
    const norm = (n: { weight: Tensor; bias?: Tensor }, t: Tensor) =>
      n.bias ? layerNorm(t, n.weight, n.bias, cfg.normEps) : rmsNorm(t, n.weight, cfg.normEps);
    const a = norm(b.norm1, x);
    let q = reshape(linear(a, b.q), [B, T, cfg.numHeads, cfg.headDim]);
    let k = reshape(linear(a, b.k), [B, T, cfg.numKvHeads, cfg.headDim]);
    const v = reshape(linear(a, b.v), [B, T, cfg.numKvHeads, cfg.headDim]);
    if (cfg.ropeTheta !== null) {
      q = rope(q, { theta: cfg.ropeTheta, scaling: cfg.ropeScaling });
      k = rope(k, { theta: cfg.ropeTheta, scaling: cfg.ropeScaling });
    }
    const heads = attention(q, k, v, { causal: true, keyMask: mask });
    const h = add(x, linear(reshape(heads, [B, T, cfg.numHeads * cfg.headDim]), b.o));
    const m = norm(b.norm2, h);
    const inner = b.gate ? swiglu(linear(m, b.gate), linear(m, b.up)) : geluTanh(linear(m, b.up));
    return add(h, linear(inner, b.down));
  }

  private checkAlive(where: string): void {
    if (this.disposed) throw new SgtError('USE_AFTER_DISPOSE', `CausalLM.${where}: the model was disposed`);
  }

  private idsTensor(where: string, ids: IdsInput): { ids: Tensor; owned: boolean } {
    const V = this.config.vocabSize;
    if (ids instanceof Tensor) {
      if (ids.dtype === 'f32') throw new SgtError('DTYPE_MISMATCH', `${where}: 'ids' has dtype f32; expected i32 or u32`);
      if (ids.rank !== 2) throw new SgtError('SHAPE_MISMATCH', `${where}: 'ids' has shape ${fmtShape(ids.shape)}; expected [B, T]`);
      return { ids, owned: false };
    }
    const { data, shape } = ids;
    if (shape.length !== 2 || data.length !== shape[0] * shape[1]) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `${where}: 'ids' has ${data.length} values for shape ${fmtShape(shape)}; expected [B, T] with B*T values`,
      );
    }
    for (let i = 0; i < data.length; i++) {
      const id = data[i];
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new SgtError('INVALID_ARGUMENT', `${where}: token id ${id} at index ${i} is outside the vocabulary [0, ${V})`);
      }
    }
    return { ids: tensor(Int32Array.from(data), shape), owned: true };
  }

  private maskTensor(mask: AttentionMaskInput | undefined, B: number, T: number): { mask: Tensor; owned: boolean } {
    if (mask instanceof Tensor) {
      if (mask.dtype !== 'f32' || mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] !== T) {
        throw new SgtError('SHAPE_MISMATCH', `forward: 'attentionMask' is ${mask.dtype} ${fmtShape(mask.shape)}; expected f32 [${B},${T}]`);
      }
      return { mask, owned: false };
    }
    if (mask === undefined) return { mask: tensor(new Float32Array(B * T).fill(1), [B, T]), owned: true };
    if (mask.length !== B * T)
      throw new SgtError('SHAPE_MISMATCH', `forward: 'attentionMask' has ${mask.length} values; expected ${B * T} for [${B},${T}]`);
    const values = new Float32Array(B * T);
    for (let i = 0; i < values.length; i++) {
      if (mask[i] !== 0 && mask[i] !== 1)
        throw new SgtError('INVALID_ARGUMENT', `forward: 'attentionMask' must hold only 0 and 1; found ${mask[i]} at index ${i}`);
      values[i] = mask[i];
    }
    return { mask: tensor(values, [B, T]), owned: true };
  }
}

/** GPT-2 stores q, k and v as one Conv1D `[d, 3d]`; split it into three `[d, d]` column blocks on the host. */
function splitColumns(data: WeightData, rows: number, cols: number, parts: number): WeightData[] {
  const width = cols / parts;
  return Array.from({ length: parts }, (_, p) => {
    const out = data instanceof Float32Array ? new Float32Array(rows * width) : new Uint16Array(rows * width);
    for (let r = 0; r < rows; r++) out.set(data.subarray(r * cols + p * width, r * cols + (p + 1) * width), r * width);
    return out;
  });
}

/** GPT-2's fused `h.<i>.attn.c_attn` weight / bias, split into `h.<i>.attn.{q,k,v}` column blocks. */
function* splitGpt2Attention(
  config: ModelConfig,
  name: string,
  data: WeightData,
  shape: number[],
): Iterable<[string, WeightData, number[]]> {
  const attn = /^(h\.\d+\.attn\.)c_attn\.(weight|bias)$/.exec(name);
  if (!attn) {
    yield [name, data, shape];
    return;
  }
  const d = config.hiddenSize;
  const isWeight = attn[2] === 'weight';
  const parts = splitColumns(data, isWeight ? d : 1, 3 * d, 3);
  for (const [i, p] of ['q', 'k', 'v'].entries()) yield [`${attn[1]}${p}.${attn[2]}`, parts[i], isWeight ? [d, d] : [d]];
}

/**
 * Loads a Hugging Face causal LM (`config.json` + `model.safetensors`, or its shards) onto the GPU.
 * Supported `model_type`s: llama (and SmolLM, Llama 3.x with `llama3` RoPE scaling), mistral,
 * qwen2, gpt2. Everything is validated before any GPU work (the config, every shard, the tensor
 * names and shapes); on failure nothing stays allocated.
 */
export async function loadCausalLM(options: LoadCausalLMOptions): Promise<CausalLM> {
  const raw = typeof options.config === 'string' ? parseJson(options.config) : options.config;
  const config = parseModelConfig(raw);
  const file = await readWeights(options.weights, { onProgress: options.onProgress });
  const digest = weightsDigest(file);
  const weights = uploadWeights(config, file, {
    requiresGrad: options.trainable ?? false,
    weightDtype: options.weightDtype,
    transform: config.family === 'gpt2' ? (name, data, shape) => splitGpt2Attention(config, name, data, shape) : undefined,
  });
  return new CausalLM(config, weights, digest);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SgtError('MODEL_INVALID', `loadCausalLM: config.json is not valid JSON: ${(e as Error).message}`);
  }
}
