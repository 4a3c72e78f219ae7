/**
 * The trainer's remote API as data: the {@link TrainerWorkerApi} interface a page calls over
 * comlink, its arguments, summaries and progress events, and the error convention every call
 * follows (`TrainerService.<method>: <what is wrong and what to call first>`). The implementation
 * is `TrainerService` in `./workerApi.ts`; `./loading.ts`, `./configure.ts` and `./run.ts` hold
 * its parts.
 */
import { SgtError, type SgtErrorCode } from '../gpu/errors';
import type { FactoryName, FactoryOptionsFor } from '../factories/options';
import type { NoiseMaskOptions } from '../text/data';
import type { EvaluationReport, TrainerOptions } from '../train/trainer';
import type { InversionAttackReport, InversionAttacksOptions } from '../eval/privacyUtility';
import type { MemoryEstimate } from '../train/memory';

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

/** Bytes of one safetensors file. */
export type WeightBytes = ArrayBuffer | Uint8Array;

/**
 * Arguments of {@link TrainerWorkerApi.loadModel}. Pass `weights` with
 * `comlink.transfer(args, [buffers])` (every shard's buffer) so it moves instead of being copied.
 */
export interface LoadModelArgs {
  /** The parsed `config.json` (or its text). */
  config: unknown;
  /**
   * The bytes of `model.safetensors`; or of a sharded checkpoint: a list of shards, or
   * `{ index, shards }` with `model.safetensors.index.json` (parsed or text) and the shards by file name.
   */
  weights: WeightBytes | WeightBytes[] | { index: unknown; shards: Record<string, WeightBytes> };
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
 * Arguments of {@link TrainerWorkerApi.configure}, one member per loss factory: `factory` picks
 * the member, and `factoryOptions` takes that factory's options ({@link FactoryOptionsFor}), each
 * optional (keys not given take `DEFAULT_FACTORY_OPTIONS`' values). An option name the factory
 * does not have fails to compile. Code that picks the factory at run time (a form, a command line)
 * may assert the type: the service checks every option again and names what is wrong.
 *
 * ```ts
 * await trainer.configure({ factory: 'distillation', factoryOptions: { alpha: 0.3 }, batchSize: 4, seqLen: 64, text });
 * ```
 */
export type TrainingConfig<F extends FactoryName = FactoryName> = F extends FactoryName
  ? TrainingRunConfig & {
      /** Which loss factory to train with. */
      factory: F;
      /** The factory's options; keys not given take `DEFAULT_FACTORY_OPTIONS`' values. */
      factoryOptions?: Partial<FactoryOptionsFor<F>>;
    }
  : never;

/**
 * What {@link TrainingConfig} holds besides the factory and its options: the rest of the
 * {@link TrainerOptions}, the data and the run's limits. Exactly one of `text` and `tokens` must be given.
 */
export interface TrainingRunConfig extends Omit<TrainerOptions, 'factory' | 'factoryOptions'> {
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
  /**
   * Evaluate once before the first optimizer step of a run that starts at step 0 (a `metrics`
   * event at step 0, with the untrained transform): the baseline that later metrics compare with
   * (default false).
   */
  evaluateAtStart?: boolean;
  /**
   * Run the learned inversion attacks (`inversionAttacks`: a linear probe and a window MLP through
   * the transform and on clean embeddings) when a run finishes: its last `metrics` event then
   * carries `attack`. `true` uses the attack's defaults; an object sets its options. Default false.
   */
  attackAtEnd?: boolean | InversionAttacksOptions;
  /** The optimizer step at which a run finishes (default `totalSteps`; without either, it runs until `stop()`). */
  maxSteps?: number;
  /**
   * The most GPU memory (bytes) the run may hold at once: `configure` refuses a run whose estimate
   * (`estimateMemory`) exceeds it, before any GPU work of the run, saying what to lower. The
   * device's buffer and binding limits are always checked.
   */
  memoryBudget?: number;
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
  /** The peak learning rate used (the factory's recommended one when the config gave none). */
  learningRate: number;
  /**
   * The privacy-weight schedule used (the factory's recommended one, its ramp a share of
   * `maxSteps`, when the config gave none; null: the factory's weights from the first step).
   */
  privacySchedule: { shape: string; rampSteps: number; startScale: number } | null;
  /** The cloak's options with every default filled in. */
  cloak: Record<string, unknown>;
  /** Trainable elements of the cloak. */
  cloakParameterCount: number;
  /** The run's GPU memory estimate (weights, optimizer state, activations, peak), checked against the device and `memoryBudget`. */
  memory: MemoryEstimate | null;
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
  /** The factor the privacy-weight schedule applied to the privacy terms' weights in this step (1 without a schedule). */
  privacyWeightScale: number;
}

/**
 * Emitted after each evaluation of a run (`evaluateEvery`, and at step 0 with `evaluateAtStart`):
 * every metric of `Trainer.evaluate` (NN-FR by cosine and L2, accuracy against the true next token
 * of teacher and student, perplexities, agreement, KL), and at the end of a run with `attackAtEnd`
 * the learned attacks' results.
 */
export interface MetricsEvent extends EvaluationReport {
  type: 'metrics';
  /** The step the metrics were taken after. */
  step: number;
  /** The learned inversion attacks on the transform at this step (only with `attackAtEnd`, on the run's last event). */
  attack?: InversionAttackReport;
}

/**
 * Emitted when a run begins a piece of work, before it starts, so that a page can say at once what
 * is happening: the first step of a run also compiles the GPU kernels it uses, which takes tens
 * of seconds on a software adapter, and an evaluation runs the held-out batches.
 */
export interface PhaseEvent {
  type: 'phase';
  /** `step`: an optimizer step begins; `evaluate`: an evaluation on the held-out data begins. */
  phase: 'step' | 'evaluate';
  /** For `step`, the step that begins (steps done + 1); for `evaluate`, the steps done (0: the untrained transform). */
  step: number;
  /** The run's first step (or first evaluation): the kernels it uses compile first, unless an earlier call compiled them. */
  first: boolean;
  /** The step the run finishes at (null: it runs until `stop()`). */
  maxSteps: number | null;
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
export type ProgressEvent = PhaseEvent | StepEvent | MetricsEvent | StateEvent;

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
  /**
   * GPU memory, once a model is loaded: the model's weight bytes (its file's tensor bytes unless
   * widened), and the buffer pool's bytes handed out now and at most since the model was loaded
   * (training, evaluation and the weights themselves included); `heldPeakBytes` also counts the
   * freed buffers the pool keeps for reuse (the GPU memory it occupied at most).
   */
  memory?: { weightBytes: number; liveBytes: number; peakBytes: number; heldPeakBytes: number };
}

/** An evaluation on the held-out sequences, with the step it was taken at. */
export interface EvaluationResult extends EvaluationReport {
  step: number;
}

/**
 * The trainer's API as a page sees it through `comlink.wrap<TrainerWorkerApi>(worker)` (every
 * method then returns a promise). Errors thrown inside reach the page as rejected promises with
 * their original message and, for an `SgtError`, its `code` (the worker installs
 * `installErrorTransfer`; install it on the page too for `instanceof SgtError`).
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
  /**
   * The learned inversion attacks on the current transform (not while a run is running): token
   * recovery of a linear probe and a window MLP through the transform and on clean embeddings.
   */
  attack(options?: InversionAttacksOptions): Promise<InversionAttackReport & { step: number }>;
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

/**
 * Throws the service's error for `method` (`TrainerService.<method>: <message>`), an `SgtError`
 * with `code` (default `INVALID_STATE`: a call out of order).
 */
export function fail(method: string, message: string, code: SgtErrorCode = 'INVALID_STATE'): never {
  throw new SgtError(code, `TrainerService.${method}: ${message}`);
}
