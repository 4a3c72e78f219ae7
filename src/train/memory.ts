/**
 * GPU memory you can see before you run: {@link estimateMemory} adds up, from the model's config
 * and the run's sizes alone, what a training step will hold on the GPU, and
 * {@link memoryProblems} compares that with a device's limits and a budget, saying what to lower.
 *
 * How the estimate is made: it replays the step's allocations in the order the code makes them
 * (the same walk as `NoiseMaskedNoisyTransformerModel.forward`, `CausalLM.forward`, the cloak, the
 * loss terms and their backward rules), each rounded up to the buffer pool's size class, and
 * follows what is live: the weights (exact file bytes), the cloak's parameters with AdamW's `m`
 * and `v`, the teacher's pass (under `noGrad`, freed when it returns except its outputs), the
 * student's pass with every intermediate its backward reads, the loss terms, and the backward,
 * whose gradients stay live until it ends. The peak is where the live bytes are highest. Small
 * bookkeeping tensors (0-d scalars, row counts) are counted roughly; see the tests for the
 * tolerance against the pool's measured peaks.
 */
import { sizeClass } from '../gpu/bufferPool';
import { SgtError } from '../gpu/errors';
import { storageBytes, type DType } from '../tensor/tensor';
import { parseModelConfig, type ModelConfig } from '../models/config';
import { expectedWeights, isRowBlockWeight, rowBlockRows } from '../models/weights';
import type { SafetensorsFile } from '../models/safetensors';
import type { CausalLM } from '../models/causalLM';
import type { TransformerCloakOptions } from '../models/cloak';
import { DEFAULT_FACTORY_OPTIONS, FACTORY_NAMES, isFactoryName, parseFactoryOptions, type FactoryName } from '../factories/options';

/** A weight's dtype in the file (and so on the GPU, unless widened): see {@link MemoryEstimateOptions.dtype}. */
export type WeightFileDtype = 'f32' | 'bf16' | 'f16';

/**
 * The dtype of each weight by its Hugging Face name (without prefix), for
 * {@link MemoryEstimateOptions.dtype}: from a loaded model (its GPU dtypes: the file's, or f32
 * when widened) or from parsed safetensors files (one, or every shard), before anything is loaded.
 */
export function weightDtypes(source: CausalLM | SafetensorsFile | readonly SafetensorsFile[]): (name: string) => WeightFileDtype {
  const dtypes = new Map<string, WeightFileDtype>();
  if ('namedParameters' in source) {
    for (const [name, t] of source.namedParameters()) {
      // Row blocks are named `name[start:end]`; GPT-2's c_attn is loaded as its q, k and v parts.
      const base = name.replace(/\[\d+:\d+\]$/, '').replace(/\.attn\.[qkv]\.(weight|bias)$/, '.attn.c_attn.$1');
      dtypes.set(base, t.dtype as WeightFileDtype);
    }
  } else {
    for (const file of 'tensors' in source ? [source] : source) {
      for (const [name, entry] of file.tensors)
        dtypes.set(name.replace(/^transformer\./, ''), entry.dtype.toLowerCase() as WeightFileDtype);
    }
  }
  return (name) => dtypes.get(name) ?? 'f32';
}

/** Options of {@link estimateMemory}: the sizes of the run, as the trainer will be given them. */
export interface MemoryEstimateOptions {
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Tokens per sequence. */
  seqLen: number;
  /** Loss factory (default `crossEntropyDistillation`). */
  factory?: FactoryName;
  /** The factory's options over its defaults (the layer index and the term weights change what is computed). */
  factoryOptions?: Record<string, unknown>;
  /**
   * The weights' dtype in the file: one for every tensor (default `'f32'`), or a function of the
   * tensor's Hugging Face name (without prefix) for a file that mixes them. BF16 and F16 weights
   * stay 16-bit on the GPU unless `weightDtype` is `'f32'`.
   */
  dtype?: WeightFileDtype | ((name: string) => WeightFileDtype);
  /** `'file'` (default: the loader keeps the file's dtype) or `'f32'` (the loader widens). */
  weightDtype?: 'file' | 'f32';
  /** Whether the cross-entropy runs the fused LM head (default true; false: the unfused `[B*T, V]` logits path). */
  fusedHead?: boolean;
  /** The cloak's options (its `hiddenSize` is the model's). */
  cloak?: Omit<TransformerCloakOptions, 'hiddenSize'>;
  /** Micro-batches per optimizer step (default 1). */
  accumulationSteps?: number;
  /**
   * The storage binding limit the weights are laid out under (default: none, every tensor whole):
   * the device's `maxStorageBufferBindingSize` (the context's `bindingLimit`). It decides which
   * weights are stored as row blocks, and the largest binding reported.
   */
  bindingLimit?: number;
}

/** One tensor that needs a single storage binding. */
export interface BindingNeed {
  /** Bytes of the binding. */
  bytes: number;
  /** What it is (`"the logits [512, 49152]"`). */
  what: string;
}

/** What {@link estimateMemory} returns, in bytes. */
export interface MemoryEstimate {
  /** The model's weights on the GPU: equals `CausalLM.weightBytes` (the file's tensor bytes unless widened). */
  weightBytes: number;
  /** What the model keeps beside its weights for the losses: the embedding statistics, an f32 copy of the table a search needs. */
  modelCacheBytes: number;
  /** The cloak's parameters, AdamW's `m` and `v`, and the parameters' gradients. */
  optimizerBytes: number;
  /** The step's own peak: activations, saved tensors, gradients of the activations, loss scratch. */
  activationBytes: number;
  /** The peak of the run: weights + caches + optimizer state + activations. */
  totalBytes: number;
  /** The largest single storage binding the run needs (row-block weights count per block). */
  largestBinding: BindingNeed;
  /**
   * Every binding over `bindingLimit`: first those that no setting shrinks (a weight that cannot be
   * split, a cloak parameter), then the largest. Empty when the run fits the limit or none was given.
   */
  overBindingLimit: BindingNeed[];
  /** Rows per row block of the weights stored split (by name), under `bindingLimit`. */
  rowBlocks: Record<string, number>;
}

/** The step's shapes, resolved once. */
interface Shapes {
  cfg: ModelConfig;
  B: number;
  T: number;
  /** Rows B * T. */
  N: number;
  d: number;
  /** Widths of the query and key/value projections. */
  q: number;
  kv: number;
  I: number;
  V: number;
  heads: number;
  /** The cloak's encoder width, layers, heads, MLP width, and whether its mean is bounded. */
  dc: number;
  cloakLayers: number;
  cloakHeads: number;
  cloakMlp: number;
  meanBound: boolean;
  /** Whether the cross-entropy runs the fused LM head. */
  fused: boolean;
  /** Rows of the LM head's and the embedding table's largest row block (V when whole), and the binding limit. */
  headRows: number;
  tableRows: number;
  limit: number;
}

/** Pool bytes of a 4-byte-element tensor (f32, i32, u32) of `n` elements: what `Tensor.empty` acquires. */
function f32(n: number): number {
  return sizeClass(Math.max(4, 4 * n));
}

/**
 * The live bytes of a replayed step: {@link alloc} and {@link free} as the code does them, with
 * the peak and the largest binding seen.
 */
class Ledger {
  live = 0;
  peak = 0;
  largest: BindingNeed = { bytes: 0, what: 'nothing' };
  /** Every binding over `limit`, by what it is; `fixed` ones (weights, parameters) do not shrink with the batch. */
  readonly over = new Map<string, { bytes: number; fixed: boolean }>();
  /** Whether the needs recorded now are fixed (set while the weights and parameters are counted). */
  fixed = false;

  /** `rows` (B * T) names a step tensor by its shape; `limit` is the binding limit checked. */
  constructor(
    private readonly rows: number,
    private readonly limit: number,
  ) {}

  /** Allocates a pooled f32 tensor of `n` elements; returns its pool bytes (to {@link free} later). */
  alloc(n: number, what?: string): number {
    const bytes = f32(n);
    this.live += bytes;
    this.peak = Math.max(this.peak, this.live);
    this.need(
      4 * n,
      what ?? (n % this.rows === 0 && n > this.rows ? `a step tensor [${this.rows}, ${n / this.rows}]` : `a step tensor of ${n} values`),
    );
    return bytes;
  }

  /** Allocates bytes that are not rounded to a size class (weights: exact sizes). */
  allocExact(bytes: number): void {
    this.live += bytes;
    this.peak = Math.max(this.peak, this.live);
  }

  /** Allocates a tensor and frees it at once: a temporary of the op (a peak, no lasting bytes). */
  transient(n: number, what?: string): void {
    this.free(this.alloc(n, what));
  }

  free(...bytes: number[]): void {
    for (const b of bytes) this.live -= b;
  }

  /** Records a binding of `bytes` (the tensor's own bytes, not its size class). */
  need(bytes: number, what: string): void {
    if (bytes > this.largest.bytes) this.largest = { bytes, what };
    if (bytes > this.limit) this.over.set(what, { bytes: Math.max(bytes, this.over.get(what)?.bytes ?? 0), fixed: this.fixed });
  }
}

function modelConfigOf(config: unknown): ModelConfig {
  const c = config as Partial<ModelConfig> | null;
  if (c && typeof c === 'object' && (c.family === 'llama' || c.family === 'gpt2') && typeof c.hiddenSize === 'number') {
    return c as ModelConfig;
  }
  return parseModelConfig(config);
}

/** The weight tensors as uploaded: GPT-2's c_attn as q, k, v parts, the embedding / head in row blocks. */
function weightLayout(cfg: ModelConfig, options: MemoryEstimateOptions, record: (bytes: number, what: string) => void) {
  const dtypeOf = (name: string): DType => {
    if (options.weightDtype === 'f32') return 'f32';
    const dt = typeof options.dtype === 'function' ? options.dtype(name) : (options.dtype ?? 'f32');
    if (dt !== 'f32' && dt !== 'bf16' && dt !== 'f16') {
      throw new SgtError(
        'INVALID_OPTION',
        `estimateMemory: 'dtype' must be 'f32', 'bf16' or 'f16' (or a function giving one), got ${String(dt)}`,
      );
    }
    return dt;
  };
  const limit = options.bindingLimit ?? Infinity;
  let bytes = 0;
  const rowBlocks: Record<string, number> = {};
  const need = (b: number, what: string) => {
    bytes += b;
    record(b, what);
  };
  for (const [name, shape] of expectedWeights(cfg)) {
    const dtype = dtypeOf(name);
    const count = shape.reduce((a, b) => a * b, 1);
    const gpt2Attn = cfg.family === 'gpt2' && /\.attn\.c_attn\.(weight|bias)$/.test(name);
    if (gpt2Attn) {
      // Split into q, k and v column blocks when loading (splitGpt2Attention).
      for (let p = 0; p < 3; p++) need(storageBytes(dtype, count / 3), `weight '${name}' (one third)`);
      continue;
    }
    const whole = storageBytes(dtype, count);
    if (whole > limit && shape.length === 2 && isRowBlockWeight(cfg, name)) {
      const rows = rowBlockRows(shape[0], shape[1], dtype, limit);
      if (rows > 0) {
        rowBlocks[name] = rows;
        for (let r = 0; r < shape[0]; r += rows)
          need(storageBytes(dtype, (Math.min(shape[0], r + rows) - r) * shape[1]), `a row block of '${name}'`);
        continue;
      }
    }
    need(whole, `weight '${name}' [${shape.join(', ')}] (${dtype})`);
  }
  const tableName = cfg.family === 'llama' ? 'model.embed_tokens.weight' : 'wte.weight';
  return {
    bytes,
    rowBlocks,
    /** The table is one f32 tensor (the statistics read it as it is, no widening). */
    tableWhole: dtypeOf(tableName) === 'f32' && rowBlocks[tableName] === undefined,
    /** Rows of the table's largest block (the searches' per-block row norms). */
    tableBlockRows: rowBlocks[tableName] ?? cfg.vocabSize,
  };
}

function checkSizes(options: MemoryEstimateOptions): void {
  if (!options || typeof options !== 'object')
    throw new SgtError('INVALID_OPTION', 'estimateMemory: options must be an object { batchSize, seqLen, ... }');
  for (const key of ['batchSize', 'seqLen'] as const) {
    const v = options[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new SgtError('INVALID_OPTION', `estimateMemory: '${key}' must be a positive integer, got ${String(v)}`);
    }
  }
  const k = options.accumulationSteps ?? 1;
  if (!Number.isSafeInteger(k) || k < 1)
    throw new SgtError('INVALID_OPTION', `estimateMemory: 'accumulationSteps' must be a positive integer, got ${String(k)}`);
  if (options.factory !== undefined && !isFactoryName(options.factory)) {
    throw new SgtError(
      'INVALID_OPTION',
      `estimateMemory: 'factory' must be one of ${FACTORY_NAMES.join(', ')}, got ${String(options.factory)}`,
    );
  }
  const limit = options.bindingLimit;
  if (limit !== undefined && !(typeof limit === 'number' && limit > 0)) {
    throw new SgtError('INVALID_OPTION', `estimateMemory: 'bindingLimit' must be a positive number of bytes, got ${String(limit)}`);
  }
}

/** Resolves the cloak's options as `TransformerCloak` does (the defaults of LOSSES.md section 1). */
function cloakSizes(d: number, o: MemoryEstimateOptions['cloak'] = {}) {
  const dc = o.encoderWidth ?? Math.min(d, 256);
  return { dc, layers: o.numLayers ?? 1, heads: o.numHeads ?? 4, mlp: (o.mlpRatio ?? 4) * dc, meanBound: o.meanBound != null };
}

/** Element counts of the cloak's parameters (the layout `TransformerCloak` creates). */
function cloakParameterCounts(s: Shapes): number[] {
  const { d, dc, cloakLayers, cloakMlp } = s;
  const linear = (out: number, inp: number) => [out * inp, out];
  const counts = [...linear(dc, d)];
  for (let i = 0; i < cloakLayers; i++) {
    counts.push(dc, dc);
    for (let p = 0; p < 4; p++) counts.push(...linear(dc, dc));
    counts.push(dc, dc, ...linear(cloakMlp, dc), ...linear(dc, cloakMlp));
  }
  counts.push(dc, dc, ...linear(d, dc), ...linear(d, dc));
  return counts;
}

/** Where a loss term's gradient goes. */
type GradTarget = 'xt' | 'mu' | 'sigma' | 'distilled' | 'hidden';

/** One component of a factory's loss, as the estimate needs it. */
interface TermPlan {
  kind: 'crossEntropy' | 'rowPair' | 'medianNorm' | 'stdLogRatio' | 'catalyst' | 'mutualInformation';
  weight: number;
  /** The tensors that receive its gradient. */
  into: GradTarget[];
}

/** The factory's terms with their weights (the term tables of `factories/distillation.ts`) and its distillation layer. */
function factoryPlan(cfg: ModelConfig, factory: FactoryName, overrides: Record<string, unknown>) {
  const hp = parseFactoryOptions(factory, { ...DEFAULT_FACTORY_OPTIONS[factory], ...overrides }, cfg.numLayers) as unknown as Record<
    string,
    number | boolean | null
  >;
  const w = (key: string) => (hp[key] as number | undefined) ?? 0;
  const a = w('alpha');
  const layer = (hp.distillationLayerIndex as number | null | undefined) ?? null;
  const catalyst: TermPlan = { kind: 'catalyst', weight: a * w('inverseL2PowerLawCatalystLossWeight'), into: ['xt'] };
  const inputSimilarity: TermPlan = { kind: 'rowPair', weight: a * w('inputEmbeddingSimilarityLossWeight'), into: ['xt'] };
  const l2 = (scale: number): TermPlan => ({
    kind: 'rowPair',
    weight: scale * w('distillationLayerL2DistanceLossWeight'),
    into: ['distilled'],
  });
  const ceTerms: TermPlan[] = [
    { kind: 'crossEntropy', weight: w('distillationCrossEntropyLossWeight'), into: ['hidden'] },
    { kind: 'rowPair', weight: w('absoluteCosineSimilarityPenaltyWeight'), into: ['xt'] },
    { kind: 'medianNorm', weight: w('medianNormPenaltyWeight'), into: ['mu'] },
  ];
  const mi = (weight: number): TermPlan => ({ kind: 'mutualInformation', weight, into: ['xt', 'mu', 'sigma'] });
  switch (factory) {
    case 'distillation':
      return {
        layer,
        terms: [
          { kind: 'rowPair', weight: (1 - a) * w('distillationLayerCosineDistanceLossWeight'), into: ['distilled'] },
          l2(1 - a),
          { kind: 'stdLogRatio', weight: a * w('stdLogRatioLossWeight'), into: ['sigma'] },
          inputSimilarity,
          catalyst,
        ] as TermPlan[],
      };
    case 'mutualInformationDistillation':
      return {
        layer,
        terms: [
          { kind: 'rowPair', weight: 1 - a, into: ['distilled'] },
          l2(1 - a),
          mi(a * w('mutualInformationLossWeight')),
          inputSimilarity,
          catalyst,
        ] as TermPlan[],
      };
    case 'crossEntropyDistillation':
      return { layer: null, terms: ceTerms };
    default:
      return { layer: null, terms: [mi(w('mutualInformationLossWeight')), ...ceTerms] };
  }
}

/** The base model's pass: what `CausalLM.forward` allocates and keeps for its backward. */
interface PassRecord {
  /** Bytes of every tensor the pass made (freed with the step's scope). */
  made: number[];
  /** Saved statistics per block (norm stats, attention LSE), freed as the backward passes the block. */
  saved: number[][];
  /** Saved statistics of the final norm. */
  finalSaved: number[];
}

/** `rmsNorm` / `layerNorm`: the output and its row statistics (saved with grad, freed at once without). */
function norm(l: Ledger, s: Shapes, rec: PassRecord, saved: number[] | null, width = s.d): void {
  rec.made.push(l.alloc(s.N * width));
  const stats = l.alloc(s.N * 2);
  if (saved) saved.push(stats);
  else l.free(stats);
}

/** One transformer block's forward (`CausalLM.block`): projections with fused biases, RoPE, attention, MLP. */
function blockForward(l: Ledger, s: Shapes, rec: PassRecord, grad: boolean): void {
  const { N, q, kv, d, I, cfg } = s;
  const saved: number[] | null = grad ? [] : null;
  const keep = (n: number, what?: string) => rec.made.push(l.alloc(n, what));
  norm(l, s, rec, saved);
  keep(N * q);
  keep(N * kv);
  keep(N * kv);
  if (cfg.ropeTheta !== null) {
    keep(N * q);
    keep(N * kv);
  }
  keep(N * q);
  const lse = l.alloc(s.B * s.T * s.heads);
  if (saved) saved.push(lse);
  else l.free(lse);
  keep(N * d); // o
  keep(N * d); // residual
  norm(l, s, rec, saved);
  // gate, up, swiglu's product (gpt2: fc, gelu)
  for (let i = 0; i < (cfg.family === 'llama' ? 3 : 2); i++) keep(N * I, `the MLP activations [${N}, ${I}]`);
  keep(N * d); // down
  keep(N * d); // residual
  rec.saved.push(saved ?? []);
}

/** One block's backward (inputs require grad, weights frozen): every gradient it makes stays live until the backward ends. */
function blockBackward(l: Ledger, s: Shapes, saved: number[]): void {
  const { N, q, kv, d, I, cfg } = s;
  const [stats1, lse, stats2] = saved;
  l.alloc(N * I); // down: d(product)
  if (cfg.family === 'llama') {
    l.alloc(N * I);
    l.alloc(N * I); // swiglu's backward: d(gate), d(up) in one kernel
    l.alloc(N * d); // up
    l.alloc(N * d); // gate
    l.alloc(N * d); // the two paths summed
  } else {
    l.alloc(N * I); // gelu'
    l.alloc(N * d); // fc
  }
  l.alloc(N * d); // norm2
  l.free(stats2);
  l.alloc(N * d); // with the residual
  l.alloc(N * q); // o
  l.alloc(N * q);
  l.alloc(N * kv);
  l.alloc(N * kv); // dq, dk, dv
  l.transient(s.B * s.T * s.heads * 2);
  l.free(lse);
  if (cfg.ropeTheta !== null) {
    l.alloc(N * kv);
    l.alloc(N * q);
  }
  for (let i = 0; i < 5; i++) l.alloc(N * d); // q, k, v products, and their three paths summed
  l.alloc(N * d); // norm1
  l.free(stats1);
  l.alloc(N * d); // with the residual
}

/**
 * `CausalLM.forward` from input embeddings: blocks up to `stop` (the last without it), then the
 * final norm and the head's product (`'logits'`), the norm alone (`'hidden'`), or nothing
 * (stopped early). Returns what it made; `outputs` are the bytes of what the caller keeps.
 */
function modelForward(l: Ledger, s: Shapes, grad: boolean, stop: number | null, output: 'logits' | 'hidden' | 'both') {
  const rec: PassRecord = { made: [], saved: [], finalSaved: [] };
  const { N, T, d, V, cfg } = s;
  if (cfg.family === 'gpt2') {
    l.transient(T); // position ids (freed when the pass returns, with the mask temporaries)
    rec.made.push(l.alloc(T * d), l.alloc(N * d));
  }
  const last = stop ?? cfg.numLayers - 1;
  for (let i = 0; i <= last; i++) blockForward(l, s, rec, grad);
  const outputs: number[] = [rec.made[rec.made.length - 1]];
  if (stop !== null) return { rec, outputs };
  norm(l, s, rec, grad ? rec.finalSaved : null);
  const hidden = rec.made[rec.made.length - 1];
  outputs[0] = hidden;
  if (output !== 'hidden') {
    const logits = l.alloc(N * V, `the logits [${N}, ${V}]`);
    rec.made.push(logits);
    outputs[0] = logits;
    if (output === 'both') outputs.push(hidden);
  }
  return { rec, outputs };
}

/** `TransformerCloak.forward` with grad: linear = one matmul with its bias added in the kernel; returns the saved statistics per encoder layer. */
function cloakForward(l: Ledger, s: Shapes): number[][] {
  const { N, d, dc, cloakMlp } = s;
  const linear = (out: number) => {
    l.alloc(N * out);
  };
  const layerNorm = (saved: number[]) => {
    l.alloc(N * dc);
    saved.push(l.alloc(N * 2));
  };
  const saved: number[][] = [];
  linear(dc); // input projection
  for (let i = 0; i < s.cloakLayers; i++) {
    const own: number[] = [];
    layerNorm(own);
    for (let p = 0; p < 3; p++) linear(dc);
    l.alloc(N * dc);
    own.push(l.alloc(s.B * s.T * s.cloakHeads));
    linear(dc);
    l.alloc(N * dc); // residual
    layerNorm(own);
    linear(cloakMlp);
    l.alloc(N * cloakMlp); // gelu
    linear(dc);
    l.alloc(N * dc); // residual
    saved.push(own);
  }
  const final: number[] = [];
  layerNorm(final);
  saved.push(final);
  linear(d); // mu
  if (s.meanBound) for (let i = 0; i < 3; i++) l.alloc(N * d);
  linear(d); // rho
  l.alloc(N * d);
  l.alloc(N * d); // scale, sigmoidRange
  return saved;
}

/** The cloak's backward from the gradients of `mu` and `sigma`: parameter gradients stay (the leaves' `.grad`). */
function cloakBackward(l: Ledger, s: Shapes, saved: number[][]): void {
  const { N, d, dc, cloakMlp } = s;
  const rows = Math.ceil(N / 64);
  // linear(t, W [out, in]) + b: the bias gradient, the input's (when it needs one) and the weight's.
  const linear = (out: number, inp: number, input = true) => {
    l.alloc(out);
    if (input) l.alloc(N * inp);
    l.alloc(out * inp);
  };
  const layerNorm = (stats: number) => {
    l.alloc(N * dc);
    for (let i = 0; i < 2; i++) {
      l.transient(rows * dc);
      l.alloc(dc);
    }
    l.free(stats);
  };
  if (s.meanBound) for (let i = 0; i < 3; i++) l.alloc(N * d);
  linear(d, dc); // mu head
  l.alloc(N * d);
  l.alloc(N * d); // sigmoidRange', scale'
  linear(d, dc); // rho head
  l.alloc(N * dc); // e's two paths summed
  layerNorm(saved[saved.length - 1][0]);
  for (let i = s.cloakLayers - 1; i >= 0; i--) {
    const [stats1, lse, stats2] = saved[i];
    linear(dc, cloakMlp);
    l.alloc(N * cloakMlp); // gelu'
    linear(cloakMlp, dc);
    layerNorm(stats2);
    l.alloc(N * dc); // with the residual
    linear(dc, dc); // out projection
    for (let p = 0; p < 3; p++) l.alloc(N * dc); // dq, dk, dv
    l.transient(s.B * s.T * s.cloakHeads * 2);
    l.free(lse);
    for (let p = 0; p < 3; p++) linear(dc, dc);
    l.alloc(N * dc);
    l.alloc(N * dc); // the three paths summed
    layerNorm(stats1);
    l.alloc(N * dc); // with the residual
  }
  linear(dc, d, false); // input projection (x needs no gradient)
}

/** The fused LM-head cross-entropy's default bound on its backward scratch. */
const LM_HEAD_SCRATCH_BYTES = 16 * 2 ** 20;
/** Its vocabulary chunk: 256 head rows where the workgroup memory allows (18 KiB; 128 below). */
const LM_HEAD_COLUMNS = 256;

/** The fused LM head's row summaries `[splits, N, fields]` (its makePlan): 5 floats for the loss, 7 for the metrics. */
function headSummaries(l: Ledger, s: Shapes, fields: number): void {
  const { N } = s;
  const chunks = Math.ceil(s.headRows / LM_HEAD_COLUMNS);
  const fitting = Math.floor(s.limit / (N * fields * 4));
  const splits = Math.max(1, Math.min(chunks, Math.ceil(512 / Math.min(512, Math.ceil(N / 16))), fitting));
  l.transient(splits * N * fields, `the LM head's row summaries [${splits}, ${N}, ${fields}]`);
}

/** `nearestRows` over the table's row blocks: the running best, each block's row norms, the split partials. */
function nearestSearch(l: Ledger, s: Shapes): void {
  const value = l.alloc(s.N);
  l.transient(s.tableRows, `the row norms of an embedding block [${s.tableRows}]`);
  const splits = Math.min(64, Math.ceil(s.tableRows / 64));
  l.transient(splits * s.N);
  l.transient(splits * s.N);
  l.free(value);
}

/** The forward of one loss term: its saved tensors (freed by its backward), with the 0-d loss it keeps. */
function termForward(l: Ledger, s: Shapes, t: TermPlan, width: number, grad: boolean): number[] {
  const { N } = s;
  const saved: number[] = [];
  const save = (n: number) => saved.push(l.alloc(n));
  switch (t.kind) {
    case 'crossEntropy':
    case 'rowPair':
      save(N * 4); // row statistics
      l.transient(N); // row losses
      if (t.kind === 'crossEntropy' && s.fused) headSummaries(l, s, 5);
      break;
    case 'medianNorm':
      l.transient(N);
      save(N);
      break;
    case 'stdLogRatio':
      l.transient(512);
      l.transient(512);
      break;
    case 'catalyst':
      save(N);
      save(N); // nearest index and distance
      nearestSearch(l, s);
      break;
    case 'mutualInformation':
      save(N * width); // centres
      save(N * (s.B / 2) + 3 * N + 2);
      break;
  }
  save(1); // the count or loss scale the backward reads
  l.alloc(1); // the 0-d loss
  if (!grad) l.free(...saved.splice(0));
  return saved;
}

/** A term's backward: the gradient of each input it feeds (the fused head's scratch window freed at once). */
function termBackward(l: Ledger, s: Shapes, t: TermPlan, width: number, saved: number[]): void {
  const { N, d } = s;
  if (t.kind === 'crossEntropy' && s.fused) {
    l.alloc(N * d);
    // The backward's window: whole chunks within 16 MiB and one binding, at most the largest head block (its backwardWindow).
    const perChunk = 4 * N * LM_HEAD_COLUMNS;
    const wanted = Math.max(1, Math.floor(LM_HEAD_SCRATCH_BYTES / perChunk));
    const window = LM_HEAD_COLUMNS * Math.min(wanted, Math.floor(s.limit / perChunk), Math.ceil(s.headRows / LM_HEAD_COLUMNS));
    l.transient(N * window, `the LM head's backward scratch [${N}, ${window}]`);
  } else if (t.kind === 'crossEntropy') {
    l.alloc(N * s.V, `the logits' gradient [${N}, ${s.V}]`);
  } else if (t.kind === 'mutualInformation') {
    for (let i = 0; i < 3; i++) l.alloc(N * d);
  } else {
    l.alloc(N * width);
  }
  l.free(...saved);
}

/** The gradient paths into `xt`, `mu`, `sigma` and the distilled output: one sum per extra contributor. */
function contributors(terms: TermPlan[], target: GradTarget): number {
  return terms.filter((t) => t.weight !== 0 && t.into.includes(target)).length;
}

/**
 * `CausalLM.embeddingStatistics` the first time (during the first step's loss): the row norms of
 * the whole table, the column moments' partials, and per chunk of `rows` widened rows the ids,
 * the rows, their norms and averaging weights, each chunk freed before the next (`rows` 0: the
 * table is one f32 tensor, read as it is).
 */
function embeddingStatistics(l: Ledger, s: Shapes, rows: number): void {
  const norms = l.alloc(s.V);
  const chunk = rows
    ? [l.alloc(rows), l.alloc(rows * s.d, `a chunk of the widened embedding table [${rows}, ${s.d}]`), l.alloc(rows), l.alloc(rows)]
    : [];
  l.transient(64 * s.d);
  l.transient(64 * s.d);
  l.free(...chunk, norms);
}

/**
 * Replays one micro-batch of `Trainer.step` on the ledger (the noisy model's forward, the loss,
 * the backward) and frees what its scope frees. The peak is in `l.peak`.
 */
function replayMicroBatch(
  l: Ledger,
  s: Shapes,
  plan: ReturnType<typeof factoryPlan>,
  extra: { gradSum: number; stats: { rows: number } | null },
): void {
  const { N, d } = s;
  const start = l.live;
  const layer = plan.layer;
  const usesHidden = plan.terms.some((t) => t.kind === 'crossEntropy');
  const output = usesHidden && s.fused ? 'hidden' : 'logits';
  const width = layer === null && !usesHidden ? s.V : d;
  l.transient(N); // ids, freed once embedded
  l.alloc(N * d); // x
  for (let i = 0; i < 3; i++) l.alloc(N); // attention, noise and loss masks
  const teacher = modelForward(l, s, false, layer, output);
  // The teacher's scope ends: all it made is freed but its outputs.
  l.free(...teacher.rec.made);
  for (const b of teacher.outputs) l.live += b;
  const cloakSaved = cloakForward(l, s);
  for (let i = 0; i < 5; i++) l.alloc(N * d); // eps, sigma * eps, mu + ..., x + ..., where
  const student = modelForward(l, s, true, layer, output);
  // A term on the distilled outputs reads [N, width] rows (the logits when no layer is set); the others [N, d].
  const widthOf = (t: TermPlan) => (t.into.includes('distilled') ? width : d);
  const saved = plan.terms.map((t) => termForward(l, s, t, widthOf(t), t.weight !== 0));
  for (const t of plan.terms) if (t.weight !== 0) l.alloc(1); // weights and sums of the total
  if (extra.stats) embeddingStatistics(l, s, extra.stats.rows);
  // Backward: the terms, the student's pass (head, final norm, blocks), then the noise and the cloak.
  plan.terms.forEach((t, i) => {
    if (t.weight !== 0) termBackward(l, s, t, widthOf(t), saved[i]);
  });
  for (let i = 1; i < contributors(plan.terms, 'distilled'); i++) l.alloc(N * width);
  if (layer === null) {
    if (output === 'logits') l.alloc(N * d); // the head's product
    l.alloc(N * d); // final norm
    l.free(...student.rec.finalSaved);
  }
  for (let i = student.rec.saved.length - 1; i >= 0; i--) blockBackward(l, s, student.rec.saved[i]);
  for (let i = 0; i < contributors(plan.terms, 'xt'); i++) l.alloc(N * d);
  for (let i = 0; i < 3; i++) l.alloc(N * d); // where, sigma * eps (both operands)
  for (let i = 0; i < contributors(plan.terms, 'mu') + contributors(plan.terms, 'sigma'); i++) l.alloc(N * d);
  cloakBackward(l, s, cloakSaved);
  l.transient(extra.gradSum); // a later micro-batch adds each gradient to the one there (freed as its sum is made)
  // The scope ends: everything but the parameters' gradients (counted by the caller) is freed.
  l.live = start;
}

/**
 * `Trainer.evaluate` on one batch, under `noGrad` in one scope: the noisy model's forward with the
 * final hidden states (every block, whatever the factory's layer; the logits too when a factory
 * makes them), then NN-FR (the cosine search over the table's blocks) and the agreement / KL
 * (the fused head's metrics walk, or the logits' row statistics).
 */
function replayEvaluation(l: Ledger, s: Shapes, plan: ReturnType<typeof factoryPlan>): void {
  const { N, d } = s;
  const start = l.live;
  const logits =
    plan.terms.some((t) => t.kind === 'crossEntropy' && !s.fused) ||
    (plan.layer === null && !plan.terms.some((t) => t.kind === 'crossEntropy'));
  const output = logits ? 'both' : 'hidden';
  l.transient(N);
  l.alloc(N * d);
  for (let i = 0; i < 3; i++) l.alloc(N);
  const teacher = modelForward(l, s, false, null, output);
  l.free(...teacher.rec.made);
  for (const b of teacher.outputs) l.live += b;
  if (plan.layer !== null) l.alloc(N * d); // the captured block
  const cloakSaved = cloakForward(l, s);
  for (const saved of cloakSaved) l.free(...saved); // no graph: freed as they are made
  for (let i = 0; i < 5; i++) l.alloc(N * d);
  modelForward(l, s, false, null, output);
  l.alloc(N); // ids
  l.alloc(N);
  nearestSearch(l, s);
  l.alloc(N * 2); // the metrics' row statistics
  if (!logits) headSummaries(l, s, 7);
  l.live = start;
}

/** One optimizer step: its micro-batches, a later one adding its gradients to those of the first. */
function replayStep(
  l: Ledger,
  s: Shapes,
  plan: ReturnType<typeof factoryPlan>,
  step: { accumulationSteps: number; paramBytes: number; largestParam: number },
  stats: { rows: number } | null,
): void {
  replayMicroBatch(l, s, plan, { gradSum: 0, stats });
  if (step.accumulationSteps === 1) return;
  l.allocExact(step.paramBytes); // the first micro-batch's gradients
  replayMicroBatch(l, s, plan, { gradSum: step.largestParam, stats: null });
  l.free(step.paramBytes); // zeroGrad after the optimizer step
}

/** The weight the LM head's blocks come from: the token embedding when tied. */
function headWeightName(cfg: ModelConfig): string {
  if (!cfg.tieWordEmbeddings) return 'lm_head.weight';
  return cfg.family === 'llama' ? 'model.embed_tokens.weight' : 'wte.weight';
}

/** The step's shapes from the config and the options. */
function shapesOf(cfg: ModelConfig, options: MemoryEstimateOptions, headRows: number, tableRows: number): Shapes {
  const { batchSize: B, seqLen: T } = options;
  const c = cloakSizes(cfg.hiddenSize, options.cloak);
  return {
    cfg,
    B,
    T,
    N: B * T,
    d: cfg.hiddenSize,
    q: cfg.numHeads * cfg.headDim,
    kv: cfg.numKvHeads * cfg.headDim,
    I: cfg.intermediateSize,
    V: cfg.vocabSize,
    heads: cfg.numHeads,
    dc: c.dc,
    cloakLayers: c.layers,
    cloakHeads: c.heads,
    cloakMlp: c.mlp,
    meanBound: c.meanBound,
    fused: options.fusedHead ?? true,
    headRows,
    tableRows,
    limit: options.bindingLimit ?? Infinity,
  };
}

/** The model's caches for the losses: the embedding statistics (column std and median row norm). */
function modelCaches(s: Shapes, plan: ReturnType<typeof factoryPlan>) {
  const usesStats = plan.terms.some((t) => t.kind === 'medianNorm' || t.kind === 'stdLogRatio');
  return { bytes: usesStats ? f32(s.d) + f32(1) : 0, usesStats };
}

/**
 * The GPU bytes a training run needs, before any GPU work: the weights (exactly the bytes
 * `CausalLM.weightBytes` will report), the model's caches, the optimizer state (the cloak's
 * parameters, AdamW's `m` and `v`, the gradients) and the peak of one step's activations (the
 * teacher's pass under `noGrad`, the student's pass with what its backward reads, the loss terms
 * (with the fused LM-head cross-entropy the `[B*T, V]` logits are never made: a `[B*T, d]`
 * gradient, a scratch window of at most 16 MiB and `O(B*T)` statistics; unfused, the teacher's
 * and the student's logits and the logits' gradient), and the backward), with the largest single
 * storage binding it needs. See the file comment for how it is counted; the tests measure its
 * error against the buffer pool's peaks. `config` is the model's `config.json` (parsed) or a
 * `ModelConfig`.
 *
 * @throws Before anything else, naming the option: sizes that are not positive integers, an
 *   unknown factory, a bad factory option or dtype, a config that does not parse.
 */
export function estimateMemory(config: unknown, options: MemoryEstimateOptions): MemoryEstimate {
  checkSizes(options);
  const cfg = modelConfigOf(config);
  const factory = options.factory ?? 'crossEntropyDistillation';
  const plan = factoryPlan(cfg, factory, options.factoryOptions ?? {});
  const needs: BindingNeed[] = [];
  const weights = weightLayout(cfg, options, (bytes, what) => needs.push({ bytes, what }));
  const s = shapesOf(cfg, options, weights.rowBlocks[headWeightName(cfg)] ?? cfg.vocabSize, weights.tableBlockRows);
  const l = new Ledger(s.N, s.limit);
  l.fixed = true;
  for (const n of needs) l.need(n.bytes, n.what);
  l.allocExact(weights.bytes);
  const caches = modelCaches(s, plan);
  l.allocExact(caches.bytes);
  const counts = cloakParameterCounts(s);
  for (const n of counts) l.need(4 * n, `a cloak parameter of ${n} values`);
  l.fixed = false;
  const params = counts.map(f32);
  const paramBytes = params.reduce((a, b) => a + b, 0);
  l.allocExact(paramBytes); // the cloak's parameters
  const persistent = l.live + 2 * paramBytes; // with AdamW's m and v
  // The first step computes the statistics (widening a packed or split table 16 MiB of f32 at a time)
  // while its graph is live; AdamW's m and v are made after its backward, and live in every later step.
  const statsRows = Math.max(1, Math.min(s.V, Math.floor(Math.min(16 * 2 ** 20, options.bindingLimit ?? Infinity) / (4 * s.d))));
  const stats = caches.usesStats ? { rows: weights.tableWhole ? 0 : statsRows } : null;
  const step = { accumulationSteps: options.accumulationSteps ?? 1, paramBytes, largestParam: Math.max(...counts) };
  replayStep(l, s, plan, step, stats);
  l.allocExact(2 * paramBytes);
  replayStep(l, s, plan, step, null);
  // Evaluations (the CLI's final one, evaluateEvery) run between steps, with no gradients live.
  replayEvaluation(l, s, plan);
  const optimizerBytes = 4 * paramBytes;
  return {
    weightBytes: weights.bytes,
    modelCacheBytes: caches.bytes,
    optimizerBytes,
    activationBytes: Math.max(0, l.peak - persistent - paramBytes),
    totalBytes: Math.max(l.peak, persistent + paramBytes),
    largestBinding: l.largest,
    // What cannot shrink first (a weight, a parameter), then the largest.
    overBindingLimit: [...l.over]
      .sort(([, a], [, b]) => Number(b.fixed) - Number(a.fixed) || b.bytes - a.bytes)
      .map(([what, { bytes }]) => ({ bytes, what })),
    rowBlocks: weights.rowBlocks,
  };
}

/** What a run is checked against by {@link memoryProblems}. */
export interface MemoryLimits {
  /** The device's `maxBufferSize`. */
  maxBufferSize?: number;
  /** The storage binding limit: the device's `maxStorageBufferBindingSize` (the context's `bindingLimit`). */
  bindingLimit?: number;
  /** The most bytes the run may hold on the GPU at once (a user's choice: a browser tab's share, say). */
  budget?: number;
}

/** How the advice names the settings to lower: the CLI's flags, the worker's fields (the default). */
export interface MemorySettingNames {
  /** The setting of the sequences per micro-batch (`batchSize`, `--batch-size`). */
  batchSize: string;
  /** The setting of the tokens per sequence (`seqLen`, `--seq-len`). */
  seqLen: string;
  /** The setting of the budget (`memoryBudget`, `--memory-budget`). */
  budget: string;
  /** The setting that selects the unfused cross-entropy, when there is one to turn off. */
  fusedHead?: string;
}

const FIELD_NAMES: MemorySettingNames = { batchSize: 'batchSize', seqLen: 'seqLen', budget: 'memoryBudget', fusedHead: 'fusedHead' };

/** `1.25 GiB (1342177280 bytes)`. */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${bytes} bytes` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]} (${bytes} bytes)`;
}

/** Whether a run of these sizes fits every limit. */
function fits(config: unknown, options: MemoryEstimateOptions, limits: MemoryLimits): boolean {
  const e = estimateMemory(config, { ...options, bindingLimit: limits.bindingLimit ?? options.bindingLimit });
  const binding = Math.min(limits.bindingLimit ?? Infinity, limits.maxBufferSize ?? Infinity);
  return e.largestBinding.bytes <= binding && e.totalBytes <= (limits.budget ?? Infinity);
}

/** The largest value in [1, upper) for which `ok` holds (ok is monotone: smaller fits better), or 0. */
function largestFitting(upper: number, ok: (v: number) => boolean): number {
  let lo = 0;
  let hi = upper;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** What to lower so that the run fits: a smaller batch, a shorter sequence, the fused head. */
function advice(config: unknown, options: MemoryEstimateOptions, limits: MemoryLimits, names: MemorySettingNames): string {
  const ways: string[] = [];
  const B = largestFitting(options.batchSize, (b) => fits(config, { ...options, batchSize: b }, limits));
  if (B >= 1) ways.push(`${names.batchSize} ${B}`);
  const T = largestFitting(options.seqLen, (t) => t >= 2 && fits(config, { ...options, seqLen: t }, limits));
  if (T >= 2) ways.push(`${names.seqLen} ${T}`);
  if (options.fusedHead === false && names.fusedHead && fits(config, { ...options, fusedHead: true }, limits)) {
    ways.push(`the fused LM-head cross-entropy (${names.fusedHead} true)`);
  }
  if (ways.length) return `it fits with ${ways.join(', or ')} (lower the batch size or the sequence length; activations grow with both)`;
  const smallest = { ...options, batchSize: 1, seqLen: 2 };
  if (fits(config, smallest, limits)) return `lower both ${names.batchSize} and ${names.seqLen}`;
  const e = estimateMemory(config, { ...smallest, bindingLimit: limits.bindingLimit ?? options.bindingLimit });
  const stuck = e.overBindingLimit[0];
  if (limits.bindingLimit !== undefined && stuck) {
    return `no batch size or sequence length helps: even the smallest run (1 sequence of 2 tokens) needs ${stuck.what} (${formatBytes(stuck.bytes)}) in one binding`;
  }
  return (
    `no batch size or sequence length helps: even the smallest run (1 sequence of 2 tokens) needs about ${formatBytes(e.totalBytes)} ` +
    `(weights ${formatBytes(e.weightBytes)}): raise ${names.budget} to at least that, or use a smaller model`
  );
}

/**
 * What does not fit when a run of `options` meets `limits`: each problem as a sentence that says
 * what needs how much, against which limit, and what to lower (with `names` for the settings: the
 * CLI's flags or the worker's fields). Empty when it fits. Pure arithmetic: no GPU work.
 */
export function memoryProblems(
  config: unknown,
  options: MemoryEstimateOptions,
  limits: MemoryLimits,
  names: MemorySettingNames = FIELD_NAMES,
): string[] {
  const e = estimateMemory(config, { ...options, bindingLimit: limits.bindingLimit ?? options.bindingLimit });
  const problems: string[] = [];
  const tell = (what: string) => problems.push(`${what}; ${advice(config, options, limits, names)}`);
  if (limits.bindingLimit !== undefined && e.overBindingLimit.length) {
    const worst = e.overBindingLimit.slice(0, 3).map((b) => `${b.what} needs ${formatBytes(b.bytes)}`);
    tell(
      `one storage binding may hold ${formatBytes(limits.bindingLimit)} on this device (maxStorageBufferBindingSize), but ${worst.join('; ')}`,
    );
  } else if (limits.maxBufferSize !== undefined && e.largestBinding.bytes > limits.maxBufferSize) {
    tell(
      `${e.largestBinding.what} needs one buffer of ${formatBytes(e.largestBinding.bytes)}, more than this device's maxBufferSize (${formatBytes(limits.maxBufferSize)})`,
    );
  }
  if (limits.budget !== undefined && e.totalBytes > limits.budget) {
    tell(
      `the run needs about ${formatBytes(e.totalBytes)} of GPU memory at its peak (weights ${formatBytes(e.weightBytes)}, ` +
        `activations ${formatBytes(e.activationBytes)}, optimizer state ${formatBytes(e.optimizerBytes)}` +
        `${e.modelCacheBytes ? `, model caches ${formatBytes(e.modelCacheBytes)}` : ''}), more than the budget of ${formatBytes(limits.budget)} (${names.budget})`,
    );
  }
  return problems;
}

/**
 * {@link estimateMemory}, then {@link memoryProblems}: returns the estimate when the run fits,
 * else throws an `SgtError` with code `LIMIT_EXCEEDED` whose message lists what does not fit and
 * what to lower. Call it before any GPU work of the run.
 */
export function checkMemory(
  config: unknown,
  options: MemoryEstimateOptions,
  limits: MemoryLimits,
  names: MemorySettingNames = FIELD_NAMES,
): MemoryEstimate {
  const problems = memoryProblems(config, options, limits, names);
  if (problems.length) throw new SgtError('LIMIT_EXCEEDED', `not enough GPU memory for this run: ${problems.join('; and ')}`);
  return estimateMemory(config, { ...options, bindingLimit: limits.bindingLimit ?? options.bindingLimit });
}
