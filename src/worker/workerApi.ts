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
 *
 * This file is the facade: the API's types are in `./api.ts`, loading the device and the model in
 * `./loading.ts`, checking the configuration and building the data and trainer in
 * `./configure.ts`, and the run loop (start/pause/resume/stop, progress events) in `./run.ts`.
 */
import * as Comlink from 'comlink';
import { init as initGpu, getContext, hasContext } from '../gpu/context';
import { readAll } from '../tensor/tensor';
import type { CausalLM } from '../models/causalLM';
import type { TransformerCloakOptions } from '../models/cloak';
import type { Tokenizer } from '../text/tokenizer';
import { DEFAULT_FACTORY_OPTIONS, type FactoryName, type FactoryOptionsFor } from '../factories/options';
import type { InversionAttackReport, InversionAttacksOptions } from '../eval/privacyUtility';
import type { Trainer } from '../train/trainer';
import { encodeCloakWeights, modelFingerprint } from '../train/checkpoint';
import {
  type AdapterSummary,
  type ConfigureSummary,
  type EvaluationResult,
  type LoadModelArgs,
  type ModelSummary,
  type ProgressCallback,
  type RunState,
  type RunSummary,
  type ServiceState,
  type StepEvent,
  type TrainerWorkerApi,
  type TrainingConfig,
  fail,
} from './api';
import { adapterSummary, checkLoadModelArgs, loadModelAndTokenizer } from './loading';
import { checkConfigureArg, configureTrainer } from './configure';
import { RunController, stepEvent } from './run';

export type {
  AdapterSummary,
  LoadModelArgs,
  ModelSummary,
  TrainingConfig,
  TrainingRunConfig,
  ConfigureSummary,
  PhaseEvent,
  StepEvent,
  MetricsEvent,
  RunState,
  StateEvent,
  ProgressEvent,
  ProgressCallback,
  RunSummary,
  ServiceState,
  EvaluationResult,
  TrainerWorkerApi,
} from './api';

/** Sensible starting options per factory, from the factories' option tables (see `factories/options`). */
export { DEFAULT_FACTORY_OPTIONS };

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
  private readonly run = new RunController();
  /** A call (loadModel, configure, step, evaluate, ...) that must not overlap another. */
  private busy: string | null = null;

  /** Creates the WebGPU device (once) and reports the adapter. */
  async init(): Promise<AdapterSummary> {
    this.checkAlive('init');
    const ctx = await initGpu();
    this.initialized = true;
    return adapterSummary(ctx);
  }

  /** Loads the frozen base model (and its tokenizer), replacing any previous model and trainer. */
  async loadModel(args: LoadModelArgs): Promise<ModelSummary> {
    const M = 'loadModel';
    this.checkAlive(M);
    if (!this.initialized) fail(M, 'call init() first');
    this.checkNotRunning(M);
    checkLoadModelArgs(M, args);
    return this.exclusive(M, async () => {
      const loaded = await loadModelAndTokenizer(M, args);
      this.releaseModel();
      // The state's peak is measured from here: the weights are its floor.
      getContext().pool.resetPeak();
      this.model = loaded.model;
      this.rawConfig = loaded.rawConfig;
      this.tokenizer = loaded.tokenizer;
      this.modelSummary = loaded.summary;
      return { ...this.modelSummary };
    });
  }

  /** Builds the data and the trainer, replacing any previous trainer (its steps are lost: checkpoint first). */
  async configure(config: TrainingConfig): Promise<ConfigureSummary> {
    const M = 'configure';
    this.checkAlive(M);
    if (!this.model) fail(M, 'no model is loaded: call loadModel() first');
    this.checkNotRunning(M);
    checkConfigureArg(config);
    const source = {
      model: this.model!,
      tokenizer: this.tokenizer,
      tokenizerKind: this.modelSummary?.tokenizer,
      rawConfig: this.rawConfig,
    };
    return this.exclusive(M, async () => {
      // Built before the old trainer is dropped: a rejected option leaves the previous setup usable.
      const configured = configureTrainer(config, source);
      this.trainer?.dispose();
      this.trainer = configured.trainer;
      this.config = configured.config;
      this.maxSteps = configured.maxSteps;
      this.run.state = null;
      return configured.summary;
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
    if (this.run.active) fail(M, `a run is already ${this.run.state === 'paused' ? 'paused' : 'running'}: stop() it first`);
    if (this.busy) fail(M, `${this.busy}() is still running: await it first`);
    if (onProgress !== undefined && typeof onProgress !== 'function')
      fail(M, "'onProgress' must be a function (from a page: comlink.proxy(fn))", 'INVALID_ARGUMENT');
    if (this.trainer!.stepCount >= this.maxSteps) {
      fail(M, `the run already reached maxSteps (${this.maxSteps}): configure() a new run, or one with a larger maxSteps`);
    }
    const limits = {
      maxSteps: this.maxSteps,
      evaluateEvery: this.config?.evaluateEvery ?? 0,
      evaluateBatches: this.config?.evaluateBatches ?? Infinity,
      evaluateAtStart: this.config?.evaluateAtStart ?? false,
      attackAtEnd: attackOptions(this.config?.attackAtEnd),
    };
    return this.run.start(this.trainer!, limits, onProgress);
  }

  /** Pauses the run after its current step; resolves with `'paused'` once no more steps will start (with the end state if the run ended first, `'running'` if resume() cancelled the request). */
  async pause(): Promise<RunState> {
    this.checkAlive('pause');
    if (!this.run.active) fail('pause', `no run is in progress (${this.describeIdle()})`);
    return this.run.pause();
  }

  /** Resumes a paused run (or cancels a pause that has not taken effect yet). */
  async resume(): Promise<RunState> {
    this.checkAlive('resume');
    if (!this.run.active || (this.run.state !== 'paused' && !this.run.pausePending)) {
      fail('resume', `the run is not paused (${this.run.active ? this.run.state : this.describeIdle()})`);
    }
    // The loop's next step would collide with an evaluate() or checkpoint() made while paused.
    if (this.busy) fail('resume', `${this.busy}() is still running: await it first`);
    this.run.resume();
    return 'running';
  }

  /** Ends the run after its current step (at once when paused); resolves with its final state. */
  async stop(): Promise<RunState> {
    this.checkAlive('stop');
    if (!this.run.active) fail('stop', `no run is in progress (${this.describeIdle()})`);
    return this.run.stop();
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

  /** The learned inversion attacks on the current transform (see `Trainer.attack`). */
  async attack(options?: InversionAttacksOptions): Promise<InversionAttackReport & { step: number }> {
    const trainer = this.idleTrainer('attack');
    return this.exclusive('attack', async () => ({ step: trainer.stepCount, ...(await trainer.attack(options)) }));
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
    const state = this.run.state;
    this.run.state = trainer.stepCount >= this.maxSteps ? 'finished' : state === 'finished' ? 'stopped' : state;
    return this.getState();
  }

  /**
   * The cloak's weights alone, under the names a PyTorch state dict of the transform would use
   * (`input_projection.weight`, `encoder.layers.0.self_attn.q_proj.weight`, ...), F32; the
   * metadata records the cloak's options, the base model and the step (see `encodeCloakWeights`).
   */
  async cloakSafetensors(): Promise<Uint8Array> {
    const trainer = this.idleTrainer('cloakSafetensors');
    const model = this.model!;
    const bytes = await this.exclusive('cloakSafetensors', async () => {
      const named = [...trainer.transform.namedParameters()];
      const values = await readAll(named.map(([, t]) => t));
      return encodeCloakWeights({
        weights: named.map(([name, t], i) => ({ name, shape: t.shape, data: values[i] as Float32Array })),
        cloak: trainer.transform.options,
        model: modelFingerprint(model.config, model.weightsDigest),
        factory: trainer.options.factory,
        step: trainer.stepCount,
      });
    });
    return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
  }

  /** Where the service stands. */
  async getState(): Promise<ServiceState> {
    const step = this.trainer?.stepCount ?? 0;
    if (this.disposed) return { state: 'disposed', step };
    const pool = this.model ? getContext().pool : null;
    const memory = pool
      ? {
          memory: {
            weightBytes: this.model!.weightBytes,
            liveBytes: pool.liveBytes,
            peakBytes: pool.peakLiveBytes,
            heldPeakBytes: pool.peakHeldBytes,
          },
        }
      : {};
    if (this.run.state) return { state: this.run.state, step, ...memory };
    if (this.trainer) return { state: 'configured', step, ...memory };
    if (this.model) return { state: 'modelLoaded', step, ...memory };
    return { state: this.initialized ? 'initialized' : 'uninitialized', step };
  }

  /** Stops any run, frees the trainer and the model, and destroys the device. Idempotent. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    // The run's own error (if any) was already delivered to start()'s caller.
    await this.run.end();
    this.disposed = true;
    this.releaseModel();
    if (hasContext()) getContext().dispose();
  }

  /**
   * For subclasses that add calls (the demo's prompt inspection): runs `f` with the loaded model,
   * its tokenizer and the trainer, holding the one-call-at-a-time lock, and refuses while a run is
   * stepping (pause it first) or before a trainer exists.
   */
  protected withSession<T>(
    method: string,
    f: (session: { model: CausalLM; tokenizer: Tokenizer | null; trainer: Trainer }) => Promise<T>,
  ): Promise<T> {
    if (this.disposed) fail(method, 'the service was disposed', 'USE_AFTER_DISPOSE');
    if (this.run.active && this.run.state !== 'paused') fail(method, 'a run is in progress: pause() it first');
    return this.exclusive(method, () => {
      if (!this.model || !this.trainer) fail(method, 'no transform yet: configure() first');
      return f({ model: this.model!, tokenizer: this.tokenizer, trainer: this.trainer! });
    });
  }

  // -------------------------------------------------------------------------------------------

  private releaseModel(): void {
    this.trainer?.dispose();
    this.trainer = null;
    this.config = null;
    this.run.state = null;
    this.model?.dispose();
    this.model = null;
    this.modelSummary = null;
    this.tokenizer = null;
  }

  private idleTrainer(method: string): Trainer {
    this.checkAlive(method);
    if (!this.trainer) fail(method, this.model ? 'call configure() first' : 'no model is loaded: call loadModel() and configure() first');
    if (this.run.active && this.run.state !== 'paused') fail(method, 'a run is in progress: pause() or stop() it first');
    return this.trainer!;
  }

  private checkAlive(method: string): void {
    if (this.disposed) fail(method, 'the service was disposed', 'USE_AFTER_DISPOSE');
  }

  private checkNotRunning(method: string): void {
    if (this.run.active) fail(method, 'a run is in progress: stop() it first');
  }

  private describeIdle(): string {
    if (!this.trainer) return this.model ? 'not configured' : 'no model loaded';
    return this.run.state ? `the last run ${this.run.state}` : 'not started';
  }

  /** Runs `f` unless another exclusive call is in flight: the GPU work of two calls must not interleave. */
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

/** Re-exported so that a page can type its options without importing the trainer. */
export type { FactoryName, FactoryOptionsFor, TransformerCloakOptions };

/** The attack options of `attackAtEnd`: null for none, the defaults for `true`. */
function attackOptions(setting: TrainingConfig['attackAtEnd']): InversionAttacksOptions | null {
  if (!setting) return null;
  return setting === true ? {} : setting;
}
