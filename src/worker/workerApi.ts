/**
 * The trainer's remote API: what a page calls, over comlink, on the module Web Worker that owns the
 * WebGPU device (see `./worker.ts`), and what the Node CLI (`./cli.ts`) drives in-process. The
 * same {@link TrainerService} class serves both, so every code path the page uses is also tested
 * in Node.
 *
 * Order of calls: {@link TrainerWorkerApi.init} -> {@link TrainerWorkerApi.loadModel} ->
 * {@link TrainerWorkerApi.configure} -> {@link TrainerWorkerApi.start} (with
 * pause/resume/stop while it runs) -> evaluate / checkpoint / cloakSafetensors -> dispose.
 * Every call made out of that order fails with an error that says what to call first.
 */
import * as Comlink from 'comlink';
import { init as initGpu, getContext, hasContext } from '../gpu/context';
import { readAll } from '../tensor/tensor';
import { parseSafetensors, type SafetensorsFile } from '../models/safetensors';
import { loadCausalLM, type CausalLM } from '../models/causalLM';
import { writeSafetensors, type SafetensorsWriteTensor } from '../models/safetensorsWriter';
import type { TransformerCloakOptions } from '../models/cloak';
import { byteTokenizer, loadHuggingFaceTokenizer, type Tokenizer } from '../text/tokenizer';
import { packSequences, textDataset, trainHeldOutSplit, type NoiseMaskOptions, type PackedSequence } from '../text/data';
import { DEFAULT_FACTORY_OPTIONS, FACTORY_NAMES, batchSizeError, isFactoryName, type FactoryName } from '../factories/options';
import { Trainer, type EvaluationReport, type StepReport, type TrainerOptions } from '../train/trainer';

/** What {@link TrainerWorkerApi.init} reports about the WebGPU adapter the service got. */
export interface AdapterSummary {
  /** Where the service runs: a Web Worker, a page's main thread, or Node (Dawn). */
  scope: 'worker' | 'page' | 'node';
  vendor: string;
  architecture: string;
  description: string;
  /** Optional features enabled on the device (`shader-f16`, `subgroups`, `timestamp-query`). */
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** Arguments of {@link TrainerWorkerApi.loadModel}. Pass `weights` with `comlink.transfer(weights, [weights])` so it moves instead of being copied. */
export interface LoadModelArgs {
  /** The parsed `config.json` (or its text). */
  config: unknown;
  /** The bytes of `model.safetensors`. */
  weights: ArrayBuffer | Uint8Array;
  /** The parsed `tokenizer.json` (or its text), when the model ships one. */
  tokenizerJson?: unknown;
  /** The parsed `tokenizer_config.json` (or its text): names the BOS/EOS/PAD tokens. */
  tokenizerConfig?: unknown;
}

/** What {@link TrainerWorkerApi.loadModel} reports about the base model. */
export interface ModelSummary {
  /** The config's `model_type`. */
  type: string;
  /** Transformer blocks. */
  layers: number;
  /** Model width d. */
  hiddenSize: number;
  /** Rows of the embedding table. */
  vocabSize: number;
  /** Attention heads. */
  heads: number;
  /** Longest sequence the model takes. */
  maxPositions: number;
  /** Elements of every tensor in `model.safetensors` (tied embeddings counted once). */
  parameterCount: number;
  /** Which tokenizer `configure({ text })` will use: the model's own, the byte-level fallback, or none (pre-tokenized data only). */
  tokenizer: 'huggingface' | 'byte' | 'none';
}

/**
 * Arguments of {@link TrainerWorkerApi.configure}: the {@link TrainerOptions} (with
 * `factoryOptions` merged over {@link DEFAULT_FACTORY_OPTIONS}), the data, and the run's limits.
 * Exactly one of `text` and `tokens` must be given.
 */
export interface TrainingConfig extends Omit<TrainerOptions, 'factoryOptions'> {
  /** The factory's options; keys not given take {@link DEFAULT_FACTORY_OPTIONS}' values. */
  factoryOptions?: Record<string, unknown>;
  /** Positions per packed sequence (at least 2, at most the model's). */
  seqLen: number;
  /** Training corpus: one text or several documents, tokenized by the model's tokenizer (else the byte-level fallback). */
  text?: string | string[];
  /** Pre-tokenized documents (token ids), packed as given: no BOS/EOS is added. For models without a usable tokenizer. */
  tokens?: number[][];
  /** Which positions the transform leaves clean (see `packSequences`). */
  noiseMask?: NoiseMaskOptions;
  /** Share of the packed sequences held out for {@link TrainerWorkerApi.evaluate} (default 0.1; 0 evaluates on training data). */
  heldOutFraction?: number;
  /** Evaluate every this many steps during {@link TrainerWorkerApi.start} and emit a `metrics` event (default 0: never). */
  evaluateEvery?: number;
  /** Held-out batches per evaluation (default: all of them). */
  evaluateBatches?: number;
  /** The optimizer step at which a run finishes (default `totalSteps`; without either, it runs until `stop()`). */
  maxSteps?: number;
}

/** What {@link TrainerWorkerApi.configure} reports about the data and the cloak. */
export interface ConfigureSummary {
  /** Where the ids came from. */
  tokenizer: 'huggingface' | 'byte' | 'pretokenized';
  /** Packed sequences used for training and held out. */
  trainSequences: number;
  heldOutSequences: number;
  seqLen: number;
  /** Real (non-padding) tokens in the training sequences. */
  trainTokens: number;
  /** The factory options actually used (defaults filled in). */
  factoryOptions: Record<string, unknown>;
  /** The cloak's options with every default filled in. */
  cloak: Record<string, unknown>;
  /** Trainable elements of the cloak. */
  cloakParameterCount: number;
  /** The step a run finishes at, or null when it runs until `stop()`. */
  maxSteps: number | null;
}

/** Emitted after every optimizer step of a run. */
export interface StepEvent {
  type: 'step';
  /** Steps done, this one included. */
  step: number;
  loss: number;
  /** Every component loss, by its camelCase key (including `loss`). */
  components: Record<string, number>;
  learningRate: number;
  /** Global gradient norm before clipping (null without clipping). */
  gradNorm: number | null;
  tokensPerSecond: number;
  /** Real tokens in the step and its wall time. */
  tokens: number;
  seconds: number;
}

/** Emitted after each evaluation of a run (`evaluateEvery`). */
export interface MetricsEvent {
  type: 'metrics';
  /** The step the metrics were taken after. */
  step: number;
  nearestNeighbourFailureRate: number;
  top1Agreement: number;
  meanKL: number;
}

/** A state a run moves through. */
export type RunState = 'running' | 'paused' | 'stopped' | 'finished';

/** Emitted whenever a run's state changes. */
export interface StateEvent {
  type: 'state';
  state: RunState;
  /** Steps done when the state changed. */
  step: number;
}

/** What the `onProgress` callback of {@link TrainerWorkerApi.start} receives. */
export type ProgressEvent = StepEvent | MetricsEvent | StateEvent;

/** The callback of {@link TrainerWorkerApi.start}; from a page, wrap it in `comlink.proxy`. A returned promise is awaited before the next step. */
export type ProgressCallback = (event: ProgressEvent) => void | Promise<void>;

/** How a run ended. */
export interface RunSummary {
  /** `finished`: it reached `maxSteps`; `stopped`: `stop()` ended it. */
  state: 'stopped' | 'finished';
  /** Optimizer steps done in total. */
  step: number;
  /** Steps taken by this run. */
  stepsThisRun: number;
  /** Wall time of this run, pauses included. */
  seconds: number;
}

/** Where the service stands. */
export interface ServiceState {
  state: 'uninitialized' | 'initialized' | 'modelLoaded' | 'configured' | RunState | 'disposed';
  /** Optimizer steps done (0 before `configure`). */
  step: number;
}

/** An evaluation on the held-out sequences, with the step it was taken at. */
export interface EvaluationResult extends EvaluationReport {
  step: number;
}

/**
 * The trainer's API as a page sees it through `comlink.wrap<TrainerWorkerApi>(worker)` (every
 * method then returns a promise). Errors thrown inside reach the page as rejected promises with
 * their original message.
 */
export interface TrainerWorkerApi {
  /** Creates the WebGPU device (once) and reports the adapter. */
  init(): Promise<AdapterSummary>;
  /** Loads the frozen base model (and its tokenizer) onto the device, replacing any previous one. */
  loadModel(args: LoadModelArgs): Promise<ModelSummary>;
  /** Builds the data and the {@link Trainer} (cloak, loss factory, AdamW), replacing any previous one. Bad options reject here. */
  configure(config: TrainingConfig): Promise<ConfigureSummary>;
  /** Runs optimizer steps until `maxSteps` or {@link stop}, reporting through `onProgress`. */
  start(onProgress?: ProgressCallback): Promise<RunSummary>;
  /** Pauses after the current step; resolves once paused (or with the final state if the run ended first). */
  pause(): Promise<RunState>;
  /** Resumes a paused run. */
  resume(): Promise<RunState>;
  /** Ends the run after the current step; resolves with the final state once it has ended. */
  stop(): Promise<RunState>;
  /** One optimizer step outside a run (when none is running). */
  step(): Promise<StepEvent>;
  /** NN-FR, top-1 agreement and mean KL on the held-out data (not while a run is running). */
  evaluate(maxBatches?: number): Promise<EvaluationResult>;
  /** A resumable checkpoint (safetensors bytes: cloak, AdamW state, step, data and noise positions), transferred. */
  checkpoint(): Promise<Uint8Array>;
  /** Restores a {@link checkpoint} made with the same model and cloak options. */
  loadCheckpoint(bytes: Uint8Array | ArrayBuffer): Promise<ServiceState>;
  /** The cloak's weights alone as safetensors bytes, under PyTorch-style names (`input_projection.weight`, ...), transferred. */
  cloakSafetensors(): Promise<Uint8Array>;
  /** Where the service stands. */
  getState(): Promise<ServiceState>;
  /** Ends any run, frees every buffer and destroys the device. Later calls fail. */
  dispose(): Promise<void>;
}

/** Sensible starting options per factory, from the factories' option tables (see `factories/options`). */
export { DEFAULT_FACTORY_OPTIONS };

function where(): AdapterSummary['scope'] {
  const g = globalThis as { WorkerGlobalScope?: unknown; document?: unknown; process?: { versions?: { node?: string } } };
  if (g.WorkerGlobalScope !== undefined && g.document === undefined) return 'worker';
  if (g.document !== undefined) return 'page';
  return g.process?.versions?.node ? 'node' : 'worker';
}

/** Pad/BOS/EOS ids from a raw `config.json`, for pre-tokenized data (HF writes them as a number or a list). */
function configTokenId(config: unknown, key: string): number | undefined {
  if (config === null || typeof config !== 'object') return undefined;
  let v = (config as Record<string, unknown>)[key];
  if (Array.isArray(v)) v = v[0];
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

const fail = (method: string, message: string): never => {
  throw new Error(`TrainerService.${method}: ${message}`);
};

/**
 * The implementation of {@link TrainerWorkerApi}: one base model, one trainer and one run at a
 * time, on the process's (or worker's) single WebGPU context. Usable directly in Node.
 */
export class TrainerService implements TrainerWorkerApi {
  private initialized = false;
  private disposed = false;
  private model: CausalLM | null = null;
  private modelSummary: ModelSummary | null = null;
  private rawConfig: unknown = null;
  private tokenizer: Tokenizer | null = null;
  private trainer: Trainer | null = null;
  private config: TrainingConfig | null = null;
  private maxSteps = Infinity;
  private runState: RunState | null = null;
  private running: Promise<RunSummary> | null = null;
  private pauseRequested = false;
  private stopRequested = false;
  private wake: (() => void) | null = null;
  private pauseWaiters: ((s: RunState) => void)[] = [];
  private endWaiters: ((s: RunState) => void)[] = [];
  /** A call (loadModel, configure, step, evaluate, ...) that must not overlap another. */
  private busy: string | null = null;

  /** Creates the WebGPU device (once) and reports the adapter. */
  async init(): Promise<AdapterSummary> {
    this.checkAlive('init');
    const ctx = await initGpu();
    this.initialized = true;
    const info = (ctx.adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
    return {
      scope: where(),
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      description: info?.description ?? '',
      features: [...ctx.features].sort(),
      maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
      maxBufferSize: ctx.limits.maxBufferSize,
    };
  }

  /** Loads the frozen base model (and its tokenizer), replacing any previous model and trainer. */
  async loadModel(args: LoadModelArgs): Promise<ModelSummary> {
    const M = 'loadModel';
    this.checkAlive(M);
    if (!this.initialized) fail(M, 'call init() first');
    this.checkNotRunning(M);
    if (args === null || typeof args !== 'object') fail(M, 'expected { config, weights, tokenizerJson?, tokenizerConfig? }');
    const { weights } = args;
    if (!(weights instanceof ArrayBuffer) && !(weights instanceof Uint8Array)) {
      fail(
        M,
        `'weights' must be the bytes of model.safetensors (an ArrayBuffer or Uint8Array), got ${weights === null ? 'null' : typeof weights}`,
      );
    }
    return this.exclusive(M, async () => {
      const file: SafetensorsFile = parseSafetensors(weights instanceof Uint8Array ? weights : new Uint8Array(weights));
      // Counted from the file: tied embeddings are stored once, which is the usual convention.
      let parameterCount = 0;
      for (const entry of file.tensors.values()) parameterCount += entry.shape.reduce((a, b) => a * b, 1);
      // Parse the tokenizer before the upload, so that a bad tokenizer.json costs no GPU work.
      let hfTokenizer: Tokenizer | null = null;
      if (args.tokenizerJson !== undefined && args.tokenizerJson !== null) {
        hfTokenizer = await loadHuggingFaceTokenizer(args.tokenizerJson, args.tokenizerConfig);
      }
      const model = await loadCausalLM({ config: args.config, weights: file });
      const c = model.config;
      if (hfTokenizer && hfTokenizer.vocabSize > c.vocabSize) {
        model.dispose();
        fail(M, `the tokenizer produces ids up to ${hfTokenizer.vocabSize - 1}, but the model's vocabulary has only ${c.vocabSize} rows`);
      }
      let tokenizer = hfTokenizer;
      let kind: ModelSummary['tokenizer'] = hfTokenizer ? 'huggingface' : 'none';
      if (!tokenizer && c.vocabSize >= 259) {
        tokenizer = byteTokenizer({ vocabSize: c.vocabSize });
        kind = 'byte';
      }
      this.releaseModel();
      this.model = model;
      this.rawConfig = typeof args.config === 'string' ? JSON.parse(args.config) : args.config;
      this.tokenizer = tokenizer;
      this.modelSummary = {
        type: c.modelType,
        layers: c.numLayers,
        hiddenSize: c.hiddenSize,
        vocabSize: c.vocabSize,
        heads: c.numHeads,
        maxPositions: c.maxPositions,
        parameterCount,
        tokenizer: kind,
      };
      return { ...this.modelSummary };
    });
  }

  /** Builds the data and the trainer, replacing any previous trainer (its steps are lost: checkpoint first). */
  async configure(config: TrainingConfig): Promise<ConfigureSummary> {
    const M = 'configure';
    this.checkAlive(M);
    if (!this.model) fail(M, 'no model is loaded: call loadModel() first');
    this.checkNotRunning(M);
    if (config === null || typeof config !== 'object') fail(M, 'expected an object { factory, batchSize, seqLen, text | tokens, ... }');
    const model = this.model!;
    return this.exclusive(M, async () => {
      if (!isFactoryName(config.factory)) fail(M, `'factory' must be one of ${FACTORY_NAMES.join(', ')}, got ${String(config.factory)}`);
      const batchError = batchSizeError(config.factory, config.batchSize, "'batchSize'");
      if (batchError) fail(M, batchError);
      const { seqLen } = config;
      if (typeof seqLen !== 'number' || !Number.isInteger(seqLen) || seqLen < 2)
        fail(M, `'seqLen' must be an integer >= 2, got ${String(seqLen)}`);
      if (seqLen > model.config.maxPositions) fail(M, `'seqLen' (${seqLen}) exceeds the model's ${model.config.maxPositions} positions`);
      const heldOutFraction = config.heldOutFraction ?? 0.1;
      if (typeof heldOutFraction !== 'number' || !(heldOutFraction >= 0 && heldOutFraction < 1))
        fail(M, `'heldOutFraction' must be in [0, 1), got ${String(heldOutFraction)}`);
      const evaluateEvery = config.evaluateEvery ?? 0;
      if (!Number.isInteger(evaluateEvery) || evaluateEvery < 0)
        fail(M, `'evaluateEvery' must be an integer >= 0, got ${String(evaluateEvery)}`);
      if (config.evaluateBatches !== undefined && !(Number.isInteger(config.evaluateBatches) && config.evaluateBatches >= 1)) {
        fail(M, `'evaluateBatches' must be an integer >= 1, got ${String(config.evaluateBatches)}`);
      }
      const maxSteps = config.maxSteps ?? config.totalSteps;
      if (maxSteps !== undefined && !(Number.isInteger(maxSteps) && maxSteps >= 1))
        fail(M, `'maxSteps' must be an integer >= 1, got ${String(maxSteps)}`);

      const { sequences, kind } = this.buildData(config, seqLen);
      const seed = config.seed ?? 0;
      const split = heldOutFraction > 0 ? trainHeldOutSplit(sequences, heldOutFraction, seed) : { train: sequences, heldOut: [] };
      if (split.train.length < config.batchSize) {
        fail(
          M,
          `the data packs into ${sequences.length} sequences of ${seqLen} tokens, ${split.train.length} of them for training: fewer than 'batchSize' (${config.batchSize}). Give more data, a smaller seqLen or batchSize, or a lower heldOutFraction`,
        );
      }
      const factoryOptions = { ...DEFAULT_FACTORY_OPTIONS[config.factory], ...(config.factoryOptions ?? {}) };
      // Built before the old trainer is dropped: a rejected option leaves the previous setup usable.
      const trainer = new Trainer(model, split, { ...config, factoryOptions });
      this.trainer?.dispose();
      this.trainer = trainer;
      // The corpus is not kept: the packed sequences live in the trainer.
      const { text: _text, tokens: _tokens, ...kept } = config;
      this.config = { ...kept, factoryOptions, evaluateEvery };
      this.maxSteps = maxSteps ?? Infinity;
      this.runState = null;
      let cloakParameterCount = 0;
      for (const t of trainer.transform.parameters()) cloakParameterCount += t.size;
      return {
        tokenizer: kind,
        trainSequences: split.train.length,
        heldOutSequences: split.heldOut.length,
        seqLen,
        trainTokens: split.train.reduce((n, s) => n + s.attentionMask.reduce((a, b) => a + b, 0), 0),
        factoryOptions,
        cloak: { ...trainer.transform.options },
        cloakParameterCount,
        maxSteps: maxSteps ?? null,
      };
    });
  }

  /**
   * Runs optimizer steps until the configured `maxSteps` or {@link stop}. Resolves with how the
   * run ended; rejects with the original error if a step (or the callback) throws. A stopped run
   * can be started again and goes on from where it stopped.
   */
  async start(onProgress?: ProgressCallback): Promise<RunSummary> {
    const M = 'start';
    this.checkAlive(M);
    if (!this.trainer) fail(M, this.model ? 'call configure() first' : 'no model is loaded: call loadModel() and configure() first');
    if (this.running) fail(M, `a run is already ${this.runState === 'paused' ? 'paused' : 'running'}: stop() it first`);
    if (this.busy) fail(M, `${this.busy}() is still running: await it first`);
    if (onProgress !== undefined && typeof onProgress !== 'function')
      fail(M, "'onProgress' must be a function (from a page: comlink.proxy(fn))");
    if (this.trainer!.stepCount >= this.maxSteps) {
      fail(M, `the run already reached maxSteps (${this.maxSteps}): configure() a new run, or one with a larger maxSteps`);
    }
    this.pauseRequested = false;
    this.stopRequested = false;
    this.running = this.runLoop(this.trainer!, onProgress);
    try {
      return await this.running;
    } finally {
      this.running = null;
      // The callback is a comlink proxy when it came from a page: free its message port.
      (onProgress as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  }

  /** Pauses the run after its current step; resolves with `'paused'` once no more steps will start (with the end state if the run ended first, `'running'` if resume() cancelled the request). */
  async pause(): Promise<RunState> {
    this.checkAlive('pause');
    if (!this.running) fail('pause', `no run is in progress (${this.describeIdle()})`);
    if (this.runState === 'paused') return 'paused';
    this.pauseRequested = true;
    return new Promise((resolve) => this.pauseWaiters.push(resolve));
  }

  /** Resumes a paused run (or cancels a pause that has not taken effect yet). */
  async resume(): Promise<RunState> {
    this.checkAlive('resume');
    if (!this.running || (this.runState !== 'paused' && !this.pauseRequested)) {
      fail('resume', `the run is not paused (${this.running ? this.runState : this.describeIdle()})`);
    }
    // The loop's next step would collide with an evaluate() or checkpoint() made while paused.
    if (this.busy) fail('resume', `${this.busy}() is still running: await it first`);
    this.pauseRequested = false;
    // A pause() whose request is cancelled before it took effect resolves too, with the state kept.
    this.settle(this.pauseWaiters, 'running');
    this.wake?.();
    return 'running';
  }

  /** Ends the run after its current step (at once when paused); resolves with its final state. */
  async stop(): Promise<RunState> {
    this.checkAlive('stop');
    if (!this.running) fail('stop', `no run is in progress (${this.describeIdle()})`);
    this.stopRequested = true;
    this.wake?.();
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  /** One optimizer step outside a run. */
  async step(): Promise<StepEvent> {
    const trainer = this.idleTrainer('step');
    return this.exclusive('step', async () => stepEvent(await trainer.step()));
  }

  /** NN-FR, top-1 agreement and mean KL on the held-out data (the training data when none is held out). */
  async evaluate(maxBatches?: number): Promise<EvaluationResult> {
    const trainer = this.idleTrainer('evaluate');
    const batches = maxBatches ?? this.config?.evaluateBatches ?? Infinity;
    return this.exclusive('evaluate', async () => ({ step: trainer.stepCount, ...(await trainer.evaluate(batches)) }));
  }

  /** A resumable checkpoint as safetensors bytes (transferred when called over comlink). */
  async checkpoint(): Promise<Uint8Array> {
    const trainer = this.idleTrainer('checkpoint');
    const bytes = await this.exclusive('checkpoint', () => trainer.checkpoint());
    return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
  }

  /** Restores a {@link checkpoint} (same model and cloak options). */
  async loadCheckpoint(bytes: Uint8Array | ArrayBuffer): Promise<ServiceState> {
    const trainer = this.idleTrainer('loadCheckpoint');
    await this.exclusive('loadCheckpoint', async () => trainer.loadCheckpoint(bytes));
    // A finished run may go on when the restored step is below maxSteps.
    this.runState = trainer.stepCount >= this.maxSteps ? 'finished' : this.runState === 'finished' ? 'stopped' : this.runState;
    return this.getState();
  }

  /**
   * The cloak's weights alone, under the names a PyTorch state dict of the transform would use
   * (`input_projection.weight`, `encoder.layers.0.self_attn.q_proj.weight`, ...), F32; the
   * metadata records the cloak's options, the base model and the step.
   */
  async cloakSafetensors(): Promise<Uint8Array> {
    const trainer = this.idleTrainer('cloakSafetensors');
    const model = this.model!;
    const bytes = await this.exclusive('cloakSafetensors', async () => {
      const named = [...trainer.transform.namedParameters()];
      const values = await readAll(named.map(([, t]) => t));
      const tensors: Record<string, SafetensorsWriteTensor> = {};
      named.forEach(([name, t], i) => {
        tensors[name] = { dtype: 'F32', shape: [...t.shape], data: values[i] as Float32Array };
      });
      const c = model.config;
      return writeSafetensors(tensors, {
        format: 'pt',
        sgt_cloak: JSON.stringify(trainer.transform.options),
        sgt_model: JSON.stringify({
          modelType: c.modelType,
          vocabSize: c.vocabSize,
          hiddenSize: c.hiddenSize,
          numLayers: c.numLayers,
          numHeads: c.numHeads,
        }),
        sgt_factory: trainer.options.factory,
        sgt_step: String(trainer.stepCount),
      });
    });
    return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
  }

  /** Where the service stands. */
  async getState(): Promise<ServiceState> {
    const step = this.trainer?.stepCount ?? 0;
    if (this.disposed) return { state: 'disposed', step };
    if (this.runState) return { state: this.runState, step };
    if (this.trainer) return { state: 'configured', step };
    if (this.model) return { state: 'modelLoaded', step };
    return { state: this.initialized ? 'initialized' : 'uninitialized', step };
  }

  /** Stops any run, frees the trainer and the model, and destroys the device. Idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    if (this.running) {
      this.stopRequested = true;
      this.wake?.();
      // The run's own error (if any) was already delivered to start()'s caller.
      await this.running.catch(() => {});
    }
    this.disposed = true;
    this.releaseModel();
    if (hasContext()) getContext().dispose();
  }

  // -------------------------------------------------------------------------------------------

  private async runLoop(trainer: Trainer, onProgress: ProgressCallback | undefined): Promise<RunSummary> {
    const started = performance.now();
    const firstStep = trainer.stepCount;
    const evaluateEvery = this.config?.evaluateEvery ?? 0;
    const evaluateBatches = this.config?.evaluateBatches ?? Infinity;
    const emit = async (event: ProgressEvent) => {
      if (onProgress) await onProgress(event);
    };
    const setState = async (state: RunState) => {
      this.runState = state;
      await emit({ type: 'state', state, step: trainer.stepCount });
    };
    const metrics = async () => {
      const m = await trainer.evaluate(evaluateBatches);
      await emit({
        type: 'metrics',
        step: trainer.stepCount,
        nearestNeighbourFailureRate: m.nearestNeighbourFailureRate,
        top1Agreement: m.top1Agreement,
        meanKL: m.meanKL,
      });
    };
    let final: RunState = 'stopped';
    try {
      await setState('running');
      let evaluatedAt = -1;
      for (;;) {
        if (this.stopRequested) break;
        if (this.pauseRequested) {
          await setState('paused');
          this.settle(this.pauseWaiters, 'paused');
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = null;
          if (this.stopRequested) break;
          await setState('running');
          continue;
        }
        if (trainer.stepCount >= this.maxSteps) {
          final = 'finished';
          if (evaluateEvery > 0 && evaluatedAt !== trainer.stepCount) await metrics();
          break;
        }
        await emit(stepEvent(await trainer.step()));
        if (evaluateEvery > 0 && trainer.stepCount % evaluateEvery === 0) {
          await metrics();
          evaluatedAt = trainer.stepCount;
        }
      }
      await setState(final);
    } catch (e) {
      this.runState = 'stopped';
      // Tell the page the run ended (best effort: the callback itself may be what failed).
      await emit({ type: 'state', state: 'stopped', step: trainer.stepCount }).catch(() => {});
      this.settle(this.pauseWaiters, 'stopped');
      this.settle(this.endWaiters, 'stopped');
      throw e;
    }
    this.settle(this.pauseWaiters, final);
    this.settle(this.endWaiters, final);
    return {
      state: final,
      step: trainer.stepCount,
      stepsThisRun: trainer.stepCount - firstStep,
      seconds: (performance.now() - started) / 1000,
    };
  }

  private settle(waiters: ((s: RunState) => void)[], state: RunState): void {
    for (const w of waiters.splice(0)) w(state);
  }

  private buildData(config: TrainingConfig, seqLen: number): { sequences: PackedSequence[]; kind: ConfigureSummary['tokenizer'] } {
    const M = 'configure';
    const model = this.model!;
    const hasText = config.text !== undefined;
    const hasTokens = config.tokens !== undefined;
    if (hasText === hasTokens) fail(M, "give exactly one of 'text' (a corpus to tokenize) and 'tokens' (pre-tokenized documents)");
    const vocabSize = model.config.vocabSize;
    if (hasTokens) {
      if (!Array.isArray(config.tokens) || (config.tokens as unknown[]).some((d) => !Array.isArray(d) && !(d instanceof Int32Array))) {
        fail(M, "'tokens' must be an array of documents, each an array of token ids");
      }
      const eos = configTokenId(this.rawConfig, 'eos_token_id');
      const padId = configTokenId(this.rawConfig, 'pad_token_id') ?? eos ?? 0;
      const sequences = packSequences(config.tokens!, {
        seqLen,
        padId: padId < vocabSize ? padId : 0,
        vocabSize,
        noiseMask: config.noiseMask,
      });
      return { sequences, kind: 'pretokenized' };
    }
    if (!this.tokenizer) {
      fail(
        M,
        `the model ships no tokenizer and its vocabulary (${vocabSize} ids) is too small for the byte-level fallback (256 bytes + BOS/EOS/PAD = 259 ids): pass tokenizerJson to loadModel(), or pre-tokenized 'tokens' instead of 'text'`,
      );
    }
    const text = config.text!;
    if (typeof text !== 'string' && !(Array.isArray(text) && text.every((t) => typeof t === 'string')))
      fail(M, "'text' must be a string or an array of strings");
    const sequences = textDataset(text, this.tokenizer!, { seqLen, vocabSize, noiseMask: config.noiseMask });
    return { sequences, kind: this.modelSummary?.tokenizer === 'huggingface' ? 'huggingface' : 'byte' };
  }

  private releaseModel(): void {
    this.trainer?.dispose();
    this.trainer = null;
    this.config = null;
    this.runState = null;
    this.model?.dispose();
    this.model = null;
    this.modelSummary = null;
    this.tokenizer = null;
  }

  private idleTrainer(method: string): Trainer {
    this.checkAlive(method);
    if (!this.trainer) fail(method, this.model ? 'call configure() first' : 'no model is loaded: call loadModel() and configure() first');
    if (this.running && this.runState !== 'paused') fail(method, 'a run is in progress: pause() or stop() it first');
    return this.trainer!;
  }

  private checkAlive(method: string): void {
    if (this.disposed) fail(method, 'the service was disposed');
  }

  private checkNotRunning(method: string): void {
    if (this.running) fail(method, 'a run is in progress: stop() it first');
  }

  private describeIdle(): string {
    if (!this.trainer) return this.model ? 'not configured' : 'no model loaded';
    return this.runState ? `the last run ${this.runState}` : 'not started';
  }

  /** Runs `f` unless another exclusive call is in flight: the GPU work of two calls must not interleave. */
  /**
   * For subclasses that add calls (the demo's prompt inspection): runs `f` with the loaded model,
   * its tokenizer and the trainer, holding the one-call-at-a-time lock, and refuses while a run is
   * stepping (pause it first) or before a trainer exists.
   */
  protected withSession<T>(
    method: string,
    f: (session: { model: CausalLM; tokenizer: Tokenizer | null; trainer: Trainer }) => Promise<T>,
  ): Promise<T> {
    if (this.disposed) fail(method, 'the service was disposed');
    if (this.running && this.runState !== 'paused') fail(method, 'a run is in progress: pause() it first');
    return this.exclusive(method, () => {
      if (!this.model || !this.trainer) fail(method, 'no transform yet: configure() first');
      return f({ model: this.model!, tokenizer: this.tokenizer, trainer: this.trainer! });
    });
  }

  private async exclusive<T>(method: string, f: () => Promise<T>): Promise<T> {
    if (this.busy) fail(method, `${this.busy}() is still running: await it first`);
    this.busy = method;
    try {
      return await f();
    } finally {
      this.busy = null;
    }
  }
}

function stepEvent(r: StepReport): StepEvent {
  return {
    type: 'step',
    step: r.step,
    loss: r.loss,
    components: r.components,
    learningRate: r.learningRate,
    gradNorm: r.gradNorm,
    tokensPerSecond: r.tokensPerSecond,
    tokens: r.tokens,
    seconds: r.seconds,
  };
}

/** Re-exported so that a page can type its options without importing the trainer. */
export type { FactoryName, TransformerCloakOptions };
