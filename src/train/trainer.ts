/**
 * The training loop: a `Trainer` owns the noisy model (frozen base + cloak), the data, one of the
 * four loss factories and AdamW. A step runs its micro-batches' forward and backward passes,
 * clips, updates, and reads every scalar of the step back with one readback. Checkpoints hold the
 * cloak's weights, the optimizer state, the step, the data position and the noise generator's
 * position, so that a resumed run repeats the loss curve of an uninterrupted one.
 */
import { getContext } from '../gpu/context';
import { type Tensor, keep, readAll, scope } from '../tensor/tensor';
import { enableGrad } from '../autograd/engine';
import { AdamW } from '../optim/adamw';
import { clipGradNorm } from '../optim/clip';
import { warmupCosine } from '../optim/schedule';
import { accumulateGradients } from '../optim/index';
import type { CausalLM } from '../models/causalLM';
import { NoiseMaskedNoisyTransformerModel, TransformerCloak, type TransformerCloakOptions } from '../models/cloak';
import { FACTORIES, type FactoryRuntime, type LossFactoryResult } from '../factories/distillation';
import { FACTORY_NAMES, batchSizeError, isFactoryName, type FactoryName } from '../factories/options';
import { checkPrivacySchedule, privacyWeightScale, type PrivacyWeightSchedule } from '../factories/schedule';
import { batches, type HostBatch, type PackedSequence } from '../text/data';
import type { UtilityReport } from '../eval/utility';
import { evaluateHeldOut, inversionAttacks, type InversionAttackReport, type InversionAttacksOptions } from '../eval/privacyUtility';
import { type DataPosition, decodeCheckpoint, encodeCheckpoint, modelFingerprint } from './checkpoint';
import { SgtError } from '../gpu/errors';

/** Options of {@link Trainer}. */
export interface TrainerOptions {
  /** Which loss factory to train with. */
  factory: FactoryName;
  /** The factory's options (the reference's argument names in camelCase). */
  factoryOptions: Record<string, unknown>;
  /** Options of the cloak (its `hiddenSize` comes from the model). */
  cloak?: Omit<TransformerCloakOptions, 'hiddenSize'>;
  /** Sequences per micro-batch (even for the mutual-information factories). */
  batchSize: number;
  /** Micro-batches per optimizer step (default 1); each micro-batch loss is scaled by 1/k. */
  accumulationSteps?: number;
  /** Peak learning rate (default 1e-3). */
  learningRate?: number;
  /** AdamW weight decay (default 0.01). */
  weightDecay?: number;
  /** Linear warm-up steps (default 0): step `s < warmupSteps` runs at `learningRate * (s + 1) / warmupSteps` (see `warmupCosine`). */
  warmupSteps?: number;
  /** Steps of the cosine schedule (default: constant learning rate after warm-up). */
  totalSteps?: number;
  /** Final learning rate of the cosine schedule (default 0). */
  minLearningRate?: number;
  /** Clip the gradients' global norm to this (default 1; null: no clipping). */
  maxGradNorm?: number | null;
  /** Seed of the data order and the noise (default 0). */
  seed?: number;
  /**
   * Whether the cross-entropy factories run the LM head fused with the loss (default true: no
   * `[B*T, V]` logits); false selects the unfused reference path, which makes the teacher's and
   * the student's logits and their gradient (see `NoiseMaskedNoisyTransformerModel`'s `fusedHead`).
   */
  fusedHead?: boolean;
  /**
   * The privacy terms' weights follow this schedule over the optimizer steps (see
   * `privacyWeightScale`: from `startScale` to the factory's weights over `rampSteps`); default
   * null: the factory's weights from the first step.
   */
  privacySchedule?: PrivacyWeightSchedule | null;
}

/** Scalars of one optimizer step, read back once. */
export interface StepReport {
  /** Steps done, this one included. */
  step: number;
  /** Total loss (mean over the micro-batches). */
  loss: number;
  /** Every component loss (mean over the micro-batches), by its camelCase key. */
  components: Record<string, number>;
  /** Learning rate used. */
  learningRate: number;
  /** The privacy terms' weight multiplier used (1 without a `privacySchedule`). */
  privacyWeightScale: number;
  /** Global gradient norm before clipping (null without clipping). */
  gradNorm: number | null;
  /** Real (attention-mask) tokens in the step. */
  tokens: number;
  /** Wall time of the step. */
  seconds: number;
  /** Real tokens per second. */
  tokensPerSecond: number;
}

/**
 * Metrics on held-out batches (LOSSES.md section 5 and issue 14): privacy by nearest-neighbour
 * search (cosine and L2) and utility against the true next token (see `UtilityReport`).
 */
export interface EvaluationReport extends UtilityReport {
  /** Share of transformed positions whose nearest vocabulary embedding to `xt` (by cosine) is not the true token. */
  nearestNeighbourFailureRate: number;
  /** The same by L2 distance (which also sees each row's norm). */
  nearestNeighbourFailureRateL2: number;
  /** Transformed positions counted. */
  transformedPositions: number;
}

function checkTrainerOptions(
  o: TrainerOptions,
): Required<Omit<TrainerOptions, 'cloak' | 'totalSteps' | 'maxGradNorm' | 'privacySchedule'>> &
  Pick<TrainerOptions, 'cloak' | 'totalSteps'> & { maxGradNorm: number | null; privacySchedule: Required<PrivacyWeightSchedule> | null } {
  const fail = (m: string): never => {
    throw new SgtError('INVALID_OPTION', `Trainer: ${m}`);
  };
  if (!o || typeof o !== 'object') fail('options must be an object');
  if (!isFactoryName(o.factory)) fail(`'factory' must be one of ${FACTORY_NAMES.join(', ')}, got ${String(o.factory)}`);
  if (!o.factoryOptions || typeof o.factoryOptions !== 'object') fail(`'factoryOptions' must be an object`);
  const int = (k: string, v: unknown, min: number) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`'${k}' must be an integer >= ${min}, got ${String(v)}`);
    return v as number;
  };
  const num = (k: string, v: unknown, min: number) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) fail(`'${k}' must be a finite number >= ${min}, got ${String(v)}`);
    return v as number;
  };
  const batchSize = int('batchSize', o.batchSize, 1);
  const batchError = batchSizeError(o.factory, batchSize, "'batchSize'");
  if (batchError) fail(batchError);
  const maxGradNorm = o.maxGradNorm === null ? null : num('maxGradNorm', o.maxGradNorm ?? 1, 0);
  if (maxGradNorm === 0) fail(`'maxGradNorm' must be positive or null`);
  if (o.fusedHead !== undefined && typeof o.fusedHead !== 'boolean') fail(`'fusedHead' must be true or false, got ${String(o.fusedHead)}`);
  return {
    factory: o.factory,
    factoryOptions: o.factoryOptions,
    cloak: o.cloak,
    batchSize,
    accumulationSteps: int('accumulationSteps', o.accumulationSteps ?? 1, 1),
    learningRate: num('learningRate', o.learningRate ?? 1e-3, 0),
    weightDecay: num('weightDecay', o.weightDecay ?? 0.01, 0),
    warmupSteps: int('warmupSteps', o.warmupSteps ?? 0, 0),
    totalSteps: o.totalSteps === undefined ? undefined : int('totalSteps', o.totalSteps, 1),
    minLearningRate: num('minLearningRate', o.minLearningRate ?? 0, 0),
    maxGradNorm,
    seed: int('seed', o.seed ?? 0, 0),
    fusedHead: o.fusedHead ?? true,
    privacySchedule: o.privacySchedule == null ? null : checkPrivacySchedule(o.privacySchedule, 'Trainer'),
  };
}

/**
 * Reads one-element tensors back as numbers and frees them. They are taken out of any scope
 * first: the caller owns them while the readback is awaited, outside every scope.
 */
async function readScalarsAndDispose(scalars: Tensor[]): Promise<number[]> {
  for (const t of scalars) keep(t);
  try {
    return (await readAll(scalars)).map((v) => v[0]);
  } finally {
    for (const t of scalars) t.dispose();
  }
}

/**
 * Trains a Stained Glass Transform for a frozen causal LM. Create it, call {@link step} as often as
 * you like (or {@link evaluate}), save with {@link checkpoint}, resume with {@link loadCheckpoint}.
 */
export class Trainer {
  /** The noisy model (base model + cloak) being trained. */
  readonly noisyModel: NoiseMaskedNoisyTransformerModel;
  /** The resolved options. */
  readonly options: ReturnType<typeof checkTrainerOptions>;
  private readonly model: CausalLM;
  private readonly cloak: TransformerCloak;
  private readonly optimizer: AdamW;
  private readonly lossFns: LossFactoryResult;
  private readonly schedule: (step: number) => number;
  private readonly train: readonly PackedSequence[];
  private readonly heldOut: readonly PackedSequence[];
  private position: DataPosition = { epoch: 0, batch: 0 };
  private epochBatches: HostBatch[] | null = null;
  private steps = 0;
  /** The privacy-weight scale of the step being run (the factory reads it at each loss). */
  private privacyScale = 1;
  private disposed = false;
  private busy = false;

  /**
   * `model` is the frozen base model (the trainer does not own it); `data.train` are packed
   * sequences of one length, `data.heldOut` the sequences {@link evaluate} uses.
   */
  constructor(model: CausalLM, data: { train: readonly PackedSequence[]; heldOut?: readonly PackedSequence[] }, options: TrainerOptions) {
    this.options = checkTrainerOptions(options);
    const { batchSize } = this.options;
    if (!data || !Array.isArray(data.train) || data.train.length < batchSize) {
      throw new SgtError(
        'INVALID_ARGUMENT',
        `Trainer: 'data.train' must hold at least batchSize (${batchSize}) sequences, got ${data?.train?.length ?? 'none'}`,
      );
    }
    const seqLen = data.train[0].ids.length;
    for (const [name, set] of [
      ['train', data.train],
      ['heldOut', data.heldOut ?? []],
    ] as const) {
      set.forEach((s, i) => {
        if (s.ids.length !== seqLen)
          throw new SgtError(
            'INVALID_ARGUMENT',
            `Trainer: data.${name}[${i}] has length ${s.ids.length}; every sequence must have length ${seqLen}`,
          );
        for (const id of s.ids) {
          if (id < 0 || id >= model.config.vocabSize)
            throw new SgtError(
              'INVALID_ARGUMENT',
              `Trainer: data.${name}[${i}] holds token id ${id}, outside the model's vocabulary [0, ${model.config.vocabSize})`,
            );
        }
      });
    }
    if (seqLen > model.config.maxPositions)
      throw new SgtError(
        'INVALID_ARGUMENT',
        `Trainer: sequences of length ${seqLen} exceed the model's ${model.config.maxPositions} positions`,
      );
    this.model = model;
    this.train = data.train;
    this.heldOut = data.heldOut ?? [];
    this.cloak = new TransformerCloak({ ...this.options.cloak, hiddenSize: model.config.hiddenSize });
    try {
      this.noisyModel = new NoiseMaskedNoisyTransformerModel(model, this.cloak, {
        seed: this.options.seed,
        fusedHead: this.options.fusedHead,
      });
      this.lossFns = (
        FACTORIES[this.options.factory] as (m: NoiseMaskedNoisyTransformerModel, o: unknown, r: FactoryRuntime) => LossFactoryResult
      )(this.noisyModel, this.options.factoryOptions, { privacyWeightScale: () => this.privacyScale });
      this.optimizer = new AdamW(this.cloak.parameters(), { lr: this.options.learningRate, weightDecay: this.options.weightDecay });
    } catch (e) {
      this.cloak.dispose();
      throw e;
    }
    const { learningRate, warmupSteps, totalSteps, minLearningRate } = this.options;
    this.schedule = warmupCosine({ baseLr: learningRate, warmupSteps, totalSteps, minLr: minLearningRate });
  }

  /** Optimizer steps done. */
  get stepCount(): number {
    return this.steps;
  }

  /** The cloak being trained. */
  get transform(): TransformerCloak {
    return this.cloak;
  }

  /** One optimizer step over `accumulationSteps` micro-batches; resolves with the step's scalars. */
  async step(): Promise<StepReport> {
    this.enter('step');
    const started = performance.now();
    const k = this.options.accumulationSteps;
    const learningRate = this.schedule(this.steps);
    this.privacyScale = privacyWeightScale(this.options.privacySchedule, this.steps);
    try {
      this.optimizer.setLearningRate('all', learningRate);
      const [lossFn, getComponents] = this.lossFns;
      const params = this.cloak.parameters();
      const microBatches = Array.from({ length: k }, () => this.nextBatch());
      let tokens = 0;
      for (const batch of microBatches) tokens += batch.attentionMask.reduce((a, b) => a + b, 0);
      // The GPU work runs in a synchronous scope with grad mode on, and the readback is awaited
      // outside it: the step holds no scope or grad mode across an await, so tasks that run
      // meanwhile (a transform, another task's noGrad) neither affect it nor lose tensors to it.
      const { keys, scalars, clipped } = scope(() =>
        enableGrad(() => {
          const { components: sums } = accumulateGradients(microBatches, (batch) => {
            const loss = lossFn(this.noisyModel.forward(batch).studentLogits);
            return { loss, components: getComponents() };
          });
          const gradNorm = this.options.maxGradNorm === null ? null : clipGradNorm(params, this.options.maxGradNorm);
          this.optimizer.step();
          this.optimizer.zeroGrad();
          const names = Object.keys(sums);
          return { keys: names, scalars: [...names.map((key) => sums[key]), ...(gradNorm ? [gradNorm] : [])], clipped: gradNorm !== null };
        }),
      );
      const values = await readScalarsAndDispose(scalars);
      const result = {
        components: Object.fromEntries(keys.map((key, i) => [key, values[i]])),
        gradNorm: clipped ? values[keys.length] : null,
      };
      this.steps++;
      const seconds = (performance.now() - started) / 1000;
      return {
        step: this.steps,
        loss: result.components.loss,
        components: result.components,
        learningRate,
        privacyWeightScale: this.privacyScale,
        gradNorm: result.gradNorm,
        tokens,
        seconds,
        tokensPerSecond: tokens / Math.max(seconds, 1e-9),
      };
    } finally {
      this.busy = false;
    }
  }

  /**
   * NN-FR (cosine and L2) and utility against the true next token (accuracy, perplexity, top-1
   * agreement, mean KL) on the held-out sequences (or `maxBatches` of them), with a fixed noise
   * draw so that evaluations at different steps are comparable. Training's noise stream is left
   * where it was. The metrics walk the LM head without `[B, T, V]` logits.
   */
  async evaluate(maxBatches = Infinity): Promise<EvaluationReport> {
    this.enter('evaluate');
    const savedRng = this.noisyModel.rngState();
    const savedRequest = { ...this.noisyModel.outputsRequest };
    try {
      const sets = this.heldOut.length >= this.options.batchSize ? this.heldOut : this.train;
      const evalBatches = [...batches(sets, this.options.batchSize, { dropLast: true })].slice(0, maxBatches);
      this.noisyModel.setRngState({ seed: this.options.seed + 1, offset: 0 });
      // The final hidden states, not the logits: the metrics walk the head without a [B, T, V] tensor.
      this.noisyModel.requestOutputs({ distillationLayerIndex: null, logits: false, finalHidden: true });
      const { utility, privacy } = await evaluateHeldOut(this.noisyModel, this.model, evalBatches);
      return {
        nearestNeighbourFailureRate: privacy.nnfrCosine,
        nearestNeighbourFailureRateL2: privacy.nnfrL2,
        transformedPositions: privacy.transformedPositions,
        ...utility,
      };
    } finally {
      this.noisyModel.setRngState(savedRng);
      this.noisyModel.requestOutputs(savedRequest);
      this.busy = false;
    }
  }

  /**
   * The learned inversion attacks on the current transform (see `inversionAttacks`): a linear
   * probe and a window MLP trained on the training sequences through the transform (fresh noise
   * each batch) and on clean embeddings, scored on the held-out sequences (the training ones when
   * there are none). Slower than {@link evaluate} (seconds to minutes): for the end of a run.
   */
  async attack(options: InversionAttacksOptions = {}): Promise<InversionAttackReport> {
    this.enter('attack');
    try {
      const heldOut = this.heldOut.length ? this.heldOut : this.train;
      return await inversionAttacks(this.model, this.cloak, { train: this.train, heldOut }, { seed: this.options.seed, ...options });
    } finally {
      this.busy = false;
    }
  }

  /**
   * A checkpoint as safetensors bytes (the format is `./checkpoint.ts`'s): the cloak's weights,
   * AdamW's state, the step, the data position and the noise generator's position, with the base
   * model's fingerprint and the configuration.
   */
  async checkpoint(): Promise<Uint8Array> {
    this.enter('checkpoint');
    try {
      const named = [...this.cloak.namedParameters()];
      const values = await readAll(named.map(([, t]) => t));
      return encodeCheckpoint({
        model: modelFingerprint(this.model.config, this.model.weightsDigest),
        cloak: this.cloak.options,
        factory: this.options.factory,
        factoryOptions: this.options.factoryOptions,
        step: this.steps,
        data: this.position,
        rng: this.noisyModel.rngState(),
        weights: named.map(([name, t], i) => ({ name, shape: t.shape, data: values[i] as Float32Array })),
        optimizer: await this.optimizer.state(),
      });
    } finally {
      this.busy = false;
    }
  }

  /**
   * Restores a {@link checkpoint}, all or nothing: it must pass its checksum and come from the
   * same base model (architecture and weights) and cloak configuration, and everything in it is
   * checked before anything changes; a rejected checkpoint leaves the trainer as it was.
   */
  loadCheckpoint(bytes: Uint8Array | ArrayBuffer): void {
    this.enter('loadCheckpoint');
    try {
      const named = [...this.cloak.namedParameters()];
      const decoded = decodeCheckpoint(bytes, {
        model: modelFingerprint(this.model.config, this.model.weightsDigest),
        cloak: this.cloak.options,
        parameters: named.map(([name, t]) => ({ name, shape: t.shape })),
      });
      // Everything is parsed and checked. loadState goes first: it checks what only the optimizer
      // knows (its group count) before it changes anything; nothing after it can throw.
      this.optimizer.loadState(decoded.optimizer);
      this.noisyModel.setRngState(decoded.rng);
      named.forEach(([, t], i) => {
        getContext().write(t.buffer, decoded.weights[i]);
      });
      this.position = decoded.data;
      this.epochBatches = null;
      this.steps = decoded.step;
    } finally {
      this.busy = false;
    }
  }

  /** Frees the cloak and the optimizer state (not the base model, which the caller owns). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.optimizer.dispose();
    this.cloak.dispose();
  }

  private enter(what: string): void {
    if (this.disposed) throw new SgtError('USE_AFTER_DISPOSE', `Trainer.${what}: the trainer was disposed`);
    if (this.busy) throw new SgtError('INVALID_STATE', `Trainer.${what}: another call is still running (await it first)`);
    this.busy = true;
  }

  private nextBatch(): HostBatch {
    const { batchSize, seed } = this.options;
    for (;;) {
      if (!this.epochBatches) {
        this.epochBatches = [...batches(this.train, batchSize, { shuffle: true, seed, epoch: this.position.epoch, dropLast: true })];
      }
      if (this.position.batch < this.epochBatches.length) return this.epochBatches[this.position.batch++];
      this.position = { epoch: this.position.epoch + 1, batch: 0 };
      this.epochBatches = null;
    }
  }
}
