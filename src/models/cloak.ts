/**
 * The Stained Glass Transform (LOSSES.md section 1): `TransformerCloak`, a small bidirectional
 * transformer encoder reading the clean embeddings and giving a mean `mu` and a scale `sigma` per
 * position, and `NoiseMaskedNoisyTransformerModel`, which runs the frozen base model twice —
 * teacher on `x`, student on `xt = x + N * (mu + sigma * eps)` — and exposes what the losses need.
 */
import { type Tensor, fmtShape, keep, scope, tensor } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';
import { add, geluTanh, matmul, mul, reshape, scale, sigmoidRange, tanh, where } from '../ops/index';
import { attention } from '../ops/attention';
import { layerNorm } from '../ops/norm';
import { randn, randnBlocks } from '../ops/random';
import type { CausalLM } from './causalLM';
import type { Tokenizer } from '../text/tokenizer';
import { writeSafetensors } from './safetensorsWriter';
import { parseSafetensors, toFloat32 } from './safetensors';
import { getContext } from '../gpu/context';
import { readAll } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

/** Options of {@link TransformerCloak.transform}. */
export interface TransformOptions {
  /** The frozen base model whose embeddings are transformed. */
  model: CausalLM;
  /** Turns text into ids (needed when the input is a string). */
  tokenizer?: Tokenizer;
  /** 1 = transform this position (default: every position). */
  noiseMask?: ArrayLike<number>;
  /**
   * Seed of the noise. Default: a fresh random seed from `crypto.getRandomValues`, so that two
   * transforms of the same prompt differ (a fixed seed is for tests and reproducible demos).
   */
  seed?: number;
}

/** What {@link TransformerCloak.transform} returns: what an app sends instead of the prompt. */
export interface TransformedPrompt {
  /** Transformed input embeddings, row-major `[T, d]`. */
  embeddings: Float32Array;
  /** `[T, d]`. */
  shape: [number, number];
  /** The noise mask that was used `[T]`. */
  noiseMask: Float32Array;
}

/**
 * Serialises a transformed prompt as safetensors (`inputs_embeds` F32 `[1, T, d]` and
 * `attention_mask` F32 `[1, T]`), which a server feeds to the model as input embeddings. The token
 * ids are not included: they are what the transform hides.
 */
export function serializeTransformedPrompt(prompt: TransformedPrompt, metadata: Record<string, string> = {}): Uint8Array {
  const [T, d] = prompt.shape;
  return writeSafetensors(
    {
      inputs_embeds: { dtype: 'F32', shape: [1, T, d], data: prompt.embeddings },
      attention_mask: { dtype: 'F32', shape: [1, T], data: new Float32Array(T).fill(1) },
    },
    { format: 'pt', ...metadata },
  );
}

function randomSeed(): number {
  const words = new Uint32Array(2);
  globalThis.crypto.getRandomValues(words);
  // 53 random bits: the largest seed randn accepts.
  return (words[0] & 0x1fffff) * 2 ** 32 + words[1];
}

/** Options of {@link TransformerCloak} (LOSSES.md section 1 for the defaults). */
export interface TransformerCloakOptions {
  /** Hidden size `d` of the base model's embeddings. */
  hiddenSize: number;
  /** Encoder width `dc` (default `min(d, 256)`). */
  encoderWidth?: number;
  /** Encoder layers `nc` (default 1). */
  numLayers?: number;
  /** Attention heads of the encoder (default 4; must divide `dc`). */
  numHeads?: number;
  /** MLP width as a multiple of `dc` (default 4). */
  mlpRatio?: number;
  /** Lower bound of sigma (default 1e-4). */
  sMin?: number;
  /** Upper bound of sigma (default 2.0). */
  sMax?: number;
  /** Slope of the tanh parameterisation: `sigma = sMin + (sMax - sMin) (1 + tanh(rho / shallow)) / 2` (default 1). */
  shallow?: number;
  /** When set, `mu <- b * tanh(mu / b)` (default null: unbounded). */
  meanBound?: number | null;
  /** Initial bias of the rho head (default -4: sigma starts near sMin, the transform near the identity). */
  rhoInit?: number;
  /** Seed of the weight initialisation (default 0). */
  seed?: number;
  /** Standard deviation of the initial weights (default 0.02). */
  initStd?: number;
}

type ResolvedCloakOptions = Required<Omit<TransformerCloakOptions, 'meanBound'>> & { meanBound: number | null };

function resolveCloakOptions(o: TransformerCloakOptions): ResolvedCloakOptions {
  const fail = (msg: string): never => {
    throw new SgtError('INVALID_OPTION', `TransformerCloak: ${msg}`);
  };
  if (!o || typeof o !== 'object') fail("options must be an object with 'hiddenSize'");
  const d = o.hiddenSize;
  if (!Number.isInteger(d) || d < 1) fail(`'hiddenSize' must be a positive integer, got ${d}`);
  const r: ResolvedCloakOptions = {
    hiddenSize: d,
    encoderWidth: o.encoderWidth ?? Math.min(d, 256),
    numLayers: o.numLayers ?? 1,
    numHeads: o.numHeads ?? 4,
    mlpRatio: o.mlpRatio ?? 4,
    sMin: o.sMin ?? 1e-4,
    sMax: o.sMax ?? 2.0,
    shallow: o.shallow ?? 1.0,
    meanBound: o.meanBound ?? null,
    rhoInit: o.rhoInit ?? -4,
    seed: o.seed ?? 0,
    initStd: o.initStd ?? 0.02,
  };
  const positiveInt = (k: 'encoderWidth' | 'numHeads' | 'mlpRatio') => {
    if (!Number.isInteger(r[k]) || r[k] < 1) fail(`'${k}' must be a positive integer, got ${r[k]}`);
  };
  positiveInt('encoderWidth');
  positiveInt('numHeads');
  positiveInt('mlpRatio');
  if (!Number.isInteger(r.numLayers) || r.numLayers < 0) fail(`'numLayers' must be an integer >= 0, got ${r.numLayers}`);
  if (r.encoderWidth % r.numHeads !== 0) fail(`'numHeads' (${r.numHeads}) must divide 'encoderWidth' (${r.encoderWidth})`);
  if (r.encoderWidth / r.numHeads > 128) fail(`head width encoderWidth / numHeads = ${r.encoderWidth / r.numHeads} exceeds 128`);
  if (!(Number.isFinite(r.sMin) && r.sMin >= 0)) fail(`'sMin' must be a finite number >= 0, got ${r.sMin}`);
  if (!(Number.isFinite(r.sMax) && r.sMax > r.sMin)) fail(`'sMax' must be finite and greater than sMin (${r.sMin}), got ${r.sMax}`);
  if (!(Number.isFinite(r.shallow) && r.shallow > 0)) fail(`'shallow' must be positive, got ${r.shallow}`);
  if (r.meanBound !== null && !(Number.isFinite(r.meanBound) && r.meanBound > 0))
    fail(`'meanBound' must be positive or null, got ${r.meanBound}`);
  if (!Number.isFinite(r.rhoInit)) fail(`'rhoInit' must be finite, got ${r.rhoInit}`);
  if (!Number.isSafeInteger(r.seed) || r.seed < 0) fail(`'seed' must be a non-negative integer, got ${r.seed}`);
  if (!(Number.isFinite(r.initStd) && r.initStd >= 0)) fail(`'initStd' must be >= 0, got ${r.initStd}`);
  return r;
}

/** The parameter names and shapes of a cloak configuration (the same walk as the constructor). */
class TransformerCloakShapes {
  constructor(private readonly o: ResolvedCloakOptions) {}
  /** name -> shape and initialisation, in a fixed order. */
  layout(): Map<string, { shape: number[]; init: 'normal' | 'zeros' | 'ones' | number }> {
    const { hiddenSize: d, encoderWidth: dc, numLayers, mlpRatio, rhoInit } = this.o;
    const m = new Map<string, { shape: number[]; init: 'normal' | 'zeros' | 'ones' | number }>();
    const linear = (name: string, out: number, inp: number, weight: 'normal' | 'zeros' = 'normal', bias: 'zeros' | number = 'zeros') => {
      m.set(`${name}.weight`, { shape: [out, inp], init: weight });
      m.set(`${name}.bias`, { shape: [out], init: bias });
    };
    const norm = (name: string, width: number) => {
      m.set(`${name}.weight`, { shape: [width], init: 'ones' });
      m.set(`${name}.bias`, { shape: [width], init: 'zeros' });
    };
    linear('input_projection', dc, d);
    for (let i = 0; i < numLayers; i++) {
      const p = `encoder.layers.${i}.`;
      norm(`${p}norm1`, dc);
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}self_attn.${proj}`, dc, dc);
      norm(`${p}norm2`, dc);
      linear(`${p}linear1`, mlpRatio * dc, dc);
      linear(`${p}linear2`, dc, mlpRatio * dc);
    }
    norm('encoder.norm', dc);
    // The mu head starts at zero and the rho head's bias at rhoInit: the transform starts near the identity.
    linear('mu_head', d, dc, 'zeros', 'zeros');
    linear('rho_head', d, dc, 'normal', rhoInit);
    return m;
  }
}

/** What {@link TransformerCloak.forward} returns. */
export interface CloakOutput {
  /** Mean shift `[B, T, d]`. */
  mu: Tensor;
  /** Scale `[B, T, d]`, strictly inside `(sMin, sMax)`. */
  sigma: Tensor;
}

/**
 * The transformed embeddings `xt = x + N * (mu + sigma * eps)` (LOSSES.md section 1), the one
 * place this formula is written: `x`, `mu`, `sigma` and `eps` are `[B, T, d]`, the noise mask `N`
 * is `[B, T]` of 0/1, and a position where `N` is 0 stays exactly `x` (selected, not multiplied,
 * so it is clean to the bit and passes no gradient to `mu` or `sigma`).
 */
export function noisyEmbeddings(x: Tensor, mu: Tensor, sigma: Tensor, eps: Tensor, noiseMask: Tensor): Tensor {
  const [B, T] = noiseMask.shape;
  return where(reshape(noiseMask, [B, T, 1]), add(x, add(mu, mul(sigma, eps))), x);
}

/**
 * The learned stochastic transform. Its parameters carry PyTorch-style names (see
 * {@link TransformerCloak.namedParameters}); the mu head starts at zero and the rho head's bias at
 * `rhoInit`, so the transform starts nearly the identity.
 */
export class TransformerCloak {
  /** The options with every default filled in. */
  readonly options: Readonly<ResolvedCloakOptions>;
  private readonly params = new Map<string, Tensor>();
  private disposed = false;

  /** Creates the cloak's parameters on the GPU (seeded: the same seed gives the same weights). */
  constructor(options: TransformerCloakOptions) {
    this.options = Object.freeze(resolveCloakOptions(options));
    const { seed, initStd } = this.options;
    let offset = 0;
    try {
      for (const [name, { shape, init }] of new TransformerCloakShapes(this.options).layout()) {
        const n = shape.reduce((a, b) => a * b, 1);
        let t: Tensor;
        if (init === 'normal') {
          t = noGrad(() => scope(() => scale(randn(shape, { seed, offset }), initStd)));
          offset += randnBlocks(n);
        } else {
          t = tensor(new Float32Array(n).fill(init === 'zeros' ? 0 : init === 'ones' ? 1 : init), shape);
        }
        t.requiresGrad = true;
        this.params.set(name, keep(t));
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The trainable parameters, in a fixed order. */
  parameters(): Tensor[] {
    this.checkAlive('parameters');
    return [...this.params.values()];
  }

  /** The parameters by their PyTorch-style names (for checkpoints). */
  namedParameters(): Map<string, Tensor> {
    this.checkAlive('namedParameters');
    return new Map(this.params);
  }

  /**
   * `mu` and `sigma` for clean embeddings `x` `[B, T, d]`; padding keys (`attentionMask` 0) are
   * hidden from the encoder's bidirectional attention.
   */
  forward(x: Tensor, attentionMask: Tensor): CloakOutput {
    this.checkAlive('forward');
    const { hiddenSize: d, encoderWidth: dc, numLayers, numHeads, sMin, sMax, shallow, meanBound } = this.options;
    if (x.rank !== 3 || x.shape[2] !== d)
      throw new SgtError('SHAPE_MISMATCH', `TransformerCloak.forward: 'x' has shape ${fmtShape(x.shape)}; expected [B, T, ${d}]`);
    const [B, T] = x.shape;
    if (attentionMask.dtype !== 'f32' || attentionMask.rank !== 2 || attentionMask.shape[0] !== B || attentionMask.shape[1] !== T) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `TransformerCloak.forward: 'attentionMask' is ${attentionMask.dtype} ${fmtShape(attentionMask.shape)}; expected f32 [${B},${T}]`,
      );
    }
    const p = (name: string) => this.params.get(name)!;
    // The bias rides in the product's kernel (no separate broadcast add, and its gradient is one sum).
    const linear = (t: Tensor, name: string) => matmul(t, p(`${name}.weight`), { transposeB: true, bias: p(`${name}.bias`) });
    const norm = (t: Tensor, name: string) => layerNorm(t, p(`${name}.weight`), p(`${name}.bias`), 1e-5);
    let e = linear(x, 'input_projection');
    for (let i = 0; i < numLayers; i++) {
      const l = `encoder.layers.${i}.`;
      const a = norm(e, `${l}norm1`);
      const heads = (name: string) => reshape(linear(a, `${l}self_attn.${name}`), [B, T, numHeads, dc / numHeads]);
      const att = attention(heads('q_proj'), heads('k_proj'), heads('v_proj'), { causal: false, keyMask: attentionMask });
      e = add(e, linear(reshape(att, [B, T, dc]), `${l}self_attn.out_proj`));
      e = add(e, linear(geluTanh(linear(norm(e, `${l}norm2`), `${l}linear1`)), `${l}linear2`));
    }
    e = norm(e, 'encoder.norm');
    let mu = linear(e, 'mu_head');
    if (meanBound !== null) mu = scale(tanh(scale(mu, 1 / meanBound)), meanBound);
    // (1 + tanh(u)) / 2 = sigmoid(2u), computed as a sigmoid for precision near sMin.
    const sigma = sigmoidRange(scale(linear(e, 'rho_head'), 2 / shallow), sMin, sMax);
    return { mu, sigma };
  }

  /**
   * The client-side obfuscation: the prompt (text or ids) -> its transformed input embeddings
   * `xt = x + N (mu + sigma eps)`, read back to the host. This, not the prompt, is what an app
   * sends to a server (see {@link serializeTransformedPrompt}).
   */
  async transform(input: string | ArrayLike<number>, options: TransformOptions): Promise<TransformedPrompt> {
    this.checkAlive('transform');
    const { model, tokenizer } = options;
    if (!model || typeof model.embed !== 'function')
      throw new SgtError('INVALID_OPTION', "TransformerCloak.transform: option 'model' (the base CausalLM) is required");
    if (model.config.hiddenSize !== this.options.hiddenSize) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `TransformerCloak.transform: the model's hidden size ${model.config.hiddenSize} differs from the cloak's ${this.options.hiddenSize}`,
      );
    }
    let ids: ArrayLike<number>;
    if (typeof input === 'string') {
      if (!tokenizer) throw new SgtError('INVALID_OPTION', "TransformerCloak.transform: a text input needs option 'tokenizer'");
      ids = tokenizer.encode(input);
    } else {
      ids = input;
    }
    const T = ids.length;
    if (T === 0) throw new SgtError('INVALID_ARGUMENT', 'TransformerCloak.transform: the prompt is empty');
    const noiseMask = Float32Array.from(options.noiseMask ?? new Array<number>(T).fill(1));
    if (noiseMask.length !== T || noiseMask.some((v) => v !== 0 && v !== 1)) {
      throw new SgtError('INVALID_ARGUMENT', `TransformerCloak.transform: 'noiseMask' must hold ${T} values of 0 or 1`);
    }
    const seed = options.seed ?? randomSeed();
    const d = this.options.hiddenSize;
    // GPU work in a synchronous scope without grad; the readback awaited outside both, so a
    // training step running meanwhile keeps its grad mode and its tensors.
    const xt = keep(
      scope(() =>
        noGrad(() => {
          const x = model.embed({ data: ids, shape: [1, T] });
          const { mu, sigma } = this.forward(x, tensor(new Float32Array(T).fill(1), [1, T]));
          const eps = randn([1, T, d], { seed });
          return noisyEmbeddings(x, mu, sigma, eps, tensor(noiseMask, [1, T]));
        }),
      ),
    );
    let embeddings: Float32Array;
    try {
      embeddings = (await xt.toArray()) as Float32Array;
    } finally {
      xt.dispose();
    }
    return { embeddings, shape: [T, d], noiseMask };
  }

  /**
   * The cloak as safetensors: every parameter under its PyTorch-style name (F32), and the resolved
   * options as JSON in the metadata key `sgt_cloak`, so that {@link TransformerCloak.fromSafetensors}
   * rebuilds the same transform.
   */
  async toSafetensors(): Promise<Uint8Array> {
    this.checkAlive('toSafetensors');
    const named = [...this.params];
    const values = await readAll(named.map(([, t]) => t));
    const tensors = Object.fromEntries(
      named.map(([name, t], i) => [name, { dtype: 'F32' as const, shape: [...t.shape], data: values[i] as Float32Array }]),
    );
    return writeSafetensors(tensors, { format: 'pt', sgt_cloak: JSON.stringify(this.options) });
  }

  /** Rebuilds a cloak saved by {@link toSafetensors} (options from its metadata, then its weights). */
  static fromSafetensors(bytes: Uint8Array | ArrayBuffer): TransformerCloak {
    let file: ReturnType<typeof parseSafetensors>;
    try {
      file = parseSafetensors(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
    } catch (e) {
      // Not safetensors at all: an invalid saved cloak, with the parser's message.
      throw new SgtError('CHECKPOINT_INVALID', (e as Error).message, { cause: e });
    }
    let options: TransformerCloakOptions;
    try {
      options = JSON.parse(file.metadata.sgt_cloak ?? '') as TransformerCloakOptions;
    } catch {
      throw new SgtError(
        'CHECKPOINT_INVALID',
        "TransformerCloak.fromSafetensors: the file has no 'sgt_cloak' metadata (was it written by toSafetensors?)",
      );
    }
    // Check every tensor before allocating anything.
    const expected = new TransformerCloakShapes(resolveCloakOptions(options)).layout();
    for (const [name, { shape }] of expected) {
      const entry = file.tensors.get(name);
      if (!entry || entry.shape.join() !== shape.join()) {
        throw new SgtError(
          'CHECKPOINT_INVALID',
          `TransformerCloak.fromSafetensors: tensor '${name}' is missing or has the wrong shape (expected [${shape.join(',')}])`,
        );
      }
    }
    const cloak = new TransformerCloak(options);
    for (const [name, t] of cloak.params) getContext().write(t.buffer, Float32Array.from(toFloat32(file.tensors.get(name)!)));
    return cloak;
  }

  /** Frees the parameters. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.params.values()) t.dispose();
  }

  private checkAlive(where: string): void {
    if (this.disposed) throw new SgtError('USE_AFTER_DISPOSE', `TransformerCloak.${where}: the cloak was disposed`);
  }
}

/** A batch for {@link NoiseMaskedNoisyTransformerModel.forward}: host arrays, row-major `[B, T]`. */
export interface NoisyBatch {
  /** Token ids. */
  ids: ArrayLike<number>;
  /** 1 = real token, 0 = padding. */
  attentionMask: ArrayLike<number>;
  /** 1 = transformed (must be <= attentionMask); default: the attention mask. */
  noiseMask?: ArrayLike<number>;
  /** 1 = counted in the distillation terms; default: the attention mask. */
  lossMask?: ArrayLike<number>;
  /** B. */
  batchSize: number;
  /** T. */
  seqLen: number;
}

/** Everything one {@link NoiseMaskedNoisyTransformerModel.forward} produced. */
export interface NoisyForwardOutput {
  /** Clean input embeddings `[B, T, d]`. */
  x: Tensor;
  /** Transformed input embeddings `[B, T, d]`. */
  xt: Tensor;
  /** The cloak's mean `[B, T, d]`. */
  mu: Tensor;
  /** The cloak's scale `[B, T, d]`. */
  sigma: Tensor;
  /** The standard normal draw used for this pass `[B, T, d]`. */
  eps: Tensor;
  /** Masks `[B, T]` (f32 0/1) on the GPU. */
  attentionMask: Tensor;
  noiseMask: Tensor;
  lossMask: Tensor;
  /** Teacher's and student's output of the distillation layer (the logits when the layer is null). */
  h: Tensor | null;
  ht: Tensor | null;
  /**
   * Teacher's and student's output of every captured block, by block index: the union of the
   * blocks that {@link NoiseMaskedNoisyTransformerModel.requestOutputs} and every loss factory of
   * the model asked for (each factory reads its own block here).
   */
  layers: ReadonlyMap<number, { h: Tensor; ht: Tensor }>;
  /** Logits `[B, T, V]`, when requested. */
  teacherLogits: Tensor | null;
  studentLogits: Tensor | null;
  /**
   * The teacher's and the student's final hidden states `[B, T, d]` (the final norm's output,
   * before the head), when requested (`finalHidden`): with the base model's `headBlocks()`, what
   * the fused LM-head cross-entropy and metrics read instead of logits.
   */
  teacherHidden: Tensor | null;
  studentHidden: Tensor | null;
  /** Which block `h`/`ht` come from (null: the logits). */
  distillationLayerIndex: number | null;
  /** Batch size and sequence length. */
  batchSize: number;
  seqLen: number;
}

/** What the losses need from the forward pass (set by the loss factories). */
export interface NoisyOutputsRequest {
  /**
   * Block whose output is `h`/`ht`, or null for the logits (a request with a null layer computes
   * the logits unless it asks for `finalHidden` instead).
   */
  distillationLayerIndex: number | null;
  /** Whether the logits are needed (the unfused cross-entropy, logit metrics). */
  logits: boolean;
  /**
   * Whether the final hidden states are needed (`teacherHidden` / `studentHidden`: the fused
   * LM-head cross-entropy and metrics, which never make the `[B, T, V]` logits). Default false.
   */
  finalHidden?: boolean;
}

/** Options of {@link NoiseMaskedNoisyTransformerModel}. */
export interface NoisyModelOptions {
  /** Drives the noise `eps` (default 0; the cloak's own seed drives its initial weights). */
  seed?: number;
  /**
   * Whether the cross-entropy factories use the LM head fused with the loss (default true): the
   * forward returns the final hidden states, and the loss walks the head's vocabulary in chunks
   * without ever making `[B, T, V]` logits, their gradient or a softmax. `false` selects the
   * unfused reference path: logits from the head's product, then `distillationCrossEntropy`.
   */
  fusedHead?: boolean;
}

function checkMask(name: string, mask: ArrayLike<number>, n: number): Float32Array {
  if (mask.length !== n)
    throw new SgtError('SHAPE_MISMATCH', `NoiseMaskedNoisyTransformerModel.forward: '${name}' has ${mask.length} values; expected ${n}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = mask[i];
    if (v !== 0 && v !== 1)
      throw new SgtError(
        'INVALID_ARGUMENT',
        `NoiseMaskedNoisyTransformerModel.forward: '${name}' must hold only 0 and 1; found ${v} at index ${i}`,
      );
    out[i] = v;
  }
  return out;
}

/**
 * The frozen base causal LM and the cloak, run as teacher (on `x`, no gradient) and student (on
 * `xt`, gradients to the cloak's parameters only). `parameters()` is the cloak's.
 */
export class NoiseMaskedNoisyTransformerModel {
  /** The frozen base model. */
  readonly baseModel: CausalLM;
  /** The trainable transform. */
  readonly cloak: TransformerCloak;
  /** Whether the cross-entropy factories use the fused LM head (see {@link NoisyModelOptions.fusedHead}). */
  readonly fusedHead: boolean;
  private seed: number;
  private offset = 0;
  /** What {@link requestOutputs} set (null: nothing yet). */
  private request: NoisyOutputsRequest | null = null;
  /** What each loss factory of this model needs, by `layer|logits`: the forward computes the union. */
  private readonly factoryRequests = new Map<string, NoisyOutputsRequest>();
  private forwardListeners = new Set<() => void>();
  private latest: NoisyForwardOutput | null = null;

  /** See {@link NoisyModelOptions}: `seed` drives the noise, `fusedHead` picks the cross-entropy path. */
  constructor(baseModel: CausalLM, cloak: TransformerCloak, options: NoisyModelOptions = {}) {
    if (cloak.options.hiddenSize !== baseModel.config.hiddenSize) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `NoiseMaskedNoisyTransformerModel: the cloak's hiddenSize (${cloak.options.hiddenSize}) differs from the model's (${baseModel.config.hiddenSize})`,
      );
    }
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new SgtError('INVALID_OPTION', `NoiseMaskedNoisyTransformerModel: 'seed' must be a non-negative integer, got ${seed}`);
    const fusedHead = options.fusedHead ?? true;
    if (typeof fusedHead !== 'boolean')
      throw new SgtError('INVALID_OPTION', `NoiseMaskedNoisyTransformerModel: 'fusedHead' must be true or false, got ${String(fusedHead)}`);
    this.fusedHead = fusedHead;
    this.baseModel = baseModel;
    this.cloak = cloak;
    this.seed = seed;
  }

  /** The cloak's parameters (the base model is frozen). */
  parameters(): Tensor[] {
    return this.cloak.parameters();
  }

  /**
   * Sets the outputs the forward computes beyond what the model's loss factories need (they add
   * theirs with {@link addFactoryOutputs}), and which block `h`/`ht` of the output are.
   */
  requestOutputs(request: NoisyOutputsRequest): void {
    this.request = this.checkRequest(request);
  }

  /**
   * @internal A loss factory's needs. Several factories may share one noisy model: the forward
   * computes the union of their blocks and logits (so a forward costs what the most demanding
   * one needs), and each factory reads its own block from `layers`.
   */
  addFactoryOutputs(request: NoisyOutputsRequest): void {
    const r = this.checkRequest(request);
    this.factoryRequests.set(`${r.distillationLayerIndex}|${r.logits}|${r.finalHidden}`, r);
  }

  /** Which block `h`/`ht` come from and whether logits are needed: the latest request (the logits by default). */
  get outputsRequest(): Readonly<NoisyOutputsRequest> {
    return this.request ?? [...this.factoryRequests.values()].at(-1) ?? { distillationLayerIndex: null, logits: true };
  }

  private checkRequest(request: NoisyOutputsRequest): NoisyOutputsRequest {
    const k = request.distillationLayerIndex;
    const last = this.baseModel.config.numLayers - 1;
    if (k !== null && (!Number.isInteger(k) || k < 0 || k > last)) {
      throw new SgtError(
        'INVALID_OPTION',
        `distillationLayerIndex ${k} is out of range: the model has blocks 0..${last} (or null for the logits)`,
      );
    }
    return { distillationLayerIndex: k, logits: request.logits === true, finalHidden: request.finalHidden === true };
  }

  /** The blocks to capture (ascending), and whether to compute the logits and the final hidden states: the union of every request. */
  private outputsPlan(): { layers: number[]; logits: boolean; hidden: boolean } {
    const all = [this.outputsRequest, ...this.factoryRequests.values()];
    const layers = new Set<number>();
    for (const r of all) if (r.distillationLayerIndex !== null) layers.add(r.distillationLayerIndex);
    const logits = all.some((r) => r.logits || (r.distillationLayerIndex === null && !r.finalHidden));
    const hidden = all.some((r) => r.finalHidden === true);
    return { layers: [...layers].sort((a, b) => a - b), logits, hidden };
  }

  /** The output of the latest {@link forward} (null before the first), which the loss functions read. */
  get lastOutput(): NoisyForwardOutput | null {
    return this.latest;
  }

  /** @internal Called after every forward (the factories reset their call-once guards). */
  onForward(listener: () => void): () => void {
    this.forwardListeners.add(listener);
    return () => this.forwardListeners.delete(listener);
  }

  /** The noise generator's position (for checkpoints). */
  rngState(): { seed: number; offset: number } {
    return { seed: this.seed, offset: this.offset };
  }

  /** Restores {@link rngState}. */
  setRngState(state: { seed: number; offset: number }): void {
    if (!Number.isSafeInteger(state.seed) || state.seed < 0 || !Number.isSafeInteger(state.offset) || state.offset < 0) {
      throw new SgtError('INVALID_ARGUMENT', `setRngState: seed and offset must be non-negative integers, got ${JSON.stringify(state)}`);
    }
    this.seed = state.seed;
    this.offset = state.offset;
  }

  /**
   * Teacher pass on `x`, the cloak, `xt = x + N (mu + sigma eps)`, and the student pass on `xt`.
   * Everything returned is a tensor of the current scope: run it inside `scope(...)`.
   */
  forward(batch: NoisyBatch): NoisyForwardOutput {
    const { batchSize: B, seqLen: T } = batch;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) {
      throw new SgtError(
        'INVALID_ARGUMENT',
        `NoiseMaskedNoisyTransformerModel.forward: batchSize and seqLen must be positive integers, got ${B}, ${T}`,
      );
    }
    const n = B * T;
    const A = checkMask('attentionMask', batch.attentionMask, n);
    const N = batch.noiseMask ? checkMask('noiseMask', batch.noiseMask, n) : A;
    const L = batch.lossMask ? checkMask('lossMask', batch.lossMask, n) : A;
    for (let i = 0; i < n; i++) {
      if (N[i] > A[i])
        throw new SgtError(
          'INVALID_ARGUMENT',
          `NoiseMaskedNoisyTransformerModel.forward: noiseMask is 1 at index ${i} where attentionMask is 0 (N must be <= A)`,
        );
    }
    const k = this.outputsRequest.distillationLayerIndex;
    const { layers, logits: wantLogits, hidden: wantHidden } = this.outputsPlan();
    const d = this.baseModel.config.hiddenSize;
    const x = this.baseModel.embed({ data: batch.ids, shape: [B, T] });
    const attentionMask = tensor(A, [B, T]);
    const noiseMask = tensor(N, [B, T]);
    const lossMask = tensor(L, [B, T]);
    const stopAfterBlock = wantLogits || wantHidden ? undefined : layers[layers.length - 1];
    const head = wantLogits && wantHidden ? 'both' : wantHidden ? 'hidden' : 'logits';
    const pass = { attentionMask, captureBlocks: layers, stopAfterBlock, output: head } as const;
    // The teacher's intermediates are not needed for any backward: free them right away.
    const teacher = scope(() => noGrad(() => this.baseModel.forward({ inputsEmbeds: x, ...pass })));
    const { mu, sigma } = this.cloak.forward(x, attentionMask);
    const eps = randn([B, T, d], { seed: this.seed, offset: this.offset });
    this.offset += randnBlocks(n * d);
    const xt = noisyEmbeddings(x, mu, sigma, eps, noiseMask);
    const student = this.baseModel.forward({ inputsEmbeds: xt, ...pass });
    const output: NoisyForwardOutput = {
      x,
      xt,
      mu,
      sigma,
      eps,
      attentionMask,
      noiseMask,
      lossMask,
      h: k === null ? (teacher.logits ?? null) : teacher.blocks[layers.indexOf(k)],
      ht: k === null ? (student.logits ?? null) : student.blocks[layers.indexOf(k)],
      layers: new Map(layers.map((layer, i) => [layer, { h: teacher.blocks[i], ht: student.blocks[i] }])),
      teacherLogits: teacher.logits ?? null,
      studentLogits: student.logits ?? null,
      teacherHidden: teacher.hidden ?? null,
      studentHidden: student.hidden ?? null,
      distillationLayerIndex: k,
      batchSize: B,
      seqLen: T,
    };
    this.latest = output;
    for (const f of this.forwardListeners) f();
    return output;
  }
}
