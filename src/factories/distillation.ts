/**
 * The four distillation loss factories of LOSSES.md section 4, mirroring the Python API in
 * `distillation-api-reference.txt` (argument names in camelCase, the same defaults). Each takes the
 * noisy model and an options object and returns `[lossFn, getComponentLosses, getHyperparameters]`.
 */
import { Tensor, fmtShape } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';
import { add, matmulRowBlocks, scale } from '../ops/index';
import type { NoiseMaskedNoisyTransformerModel, NoisyForwardOutput } from '../models/cloak';
import { distillationCrossEntropy } from '../losses/crossEntropy';
import { lmHeadDistillationCrossEntropy } from '../losses/lmHeadCrossEntropy';
import {
  absoluteCosineSimilarity,
  distillationLayerCosineDistance,
  distillationLayerL2Distance,
  inputEmbeddingSimilarity,
} from '../losses/cosine';
import { stdLogRatio } from '../losses/stdLogRatio';
import { medianNormPenalty } from '../losses/medianNorm';
import { inverseL2PowerLawCatalyst } from '../losses/catalyst';
import { mutualInformation } from '../losses/mutualInformation';
import {
  FACTORY_OPTIONS,
  batchSizeError,
  parseFactoryOptions,
  type FactoryName,
  type FactoryOptionsFor,
  type ResolvedFactoryOptions,
} from './options';
import { SgtError } from '../gpu/errors';

/**
 * The scalar loss of the latest forward pass. The student's logits may be passed, as in Python:
 * a tensor given here is what the cross-entropy term reads (the unfused reference path, with the
 * teacher's logits of the forward, or made from its final hidden states when the forward did not
 * materialise them). Without it (`undefined` or `null`, which is what the forward's
 * `studentLogits` is when the noisy model uses the fused head), the cross-entropy term uses the
 * forward's own outputs: the fused LM head on the final hidden states when the noisy model's
 * `fusedHead` is on (the default), the forward's logits otherwise.
 */
export type DistillationLossFn = (studentLogits?: Tensor | null) => Tensor;
/** Every component that went into the latest loss, by its camelCase key, plus `loss` (the total). */
export type ComponentLosses = Record<string, Tensor>;
/** Every option value used, by its camelCase key. */
export type Hyperparameters = Record<string, number | boolean | null>;
/** What each factory returns. */
export type LossFactoryResult = [DistillationLossFn, () => ComponentLosses, () => Hyperparameters];

/**
 * Options of {@link distillationLossFactory}: the rows of `FACTORY_OPTIONS.distillation` (see
 * `./options`, where each option's help, default and range are).
 */
export type DistillationLossOptions = FactoryOptionsFor<'distillation'>;

/** Options of {@link mutualInformationDistillationLossFactory}: the rows of `FACTORY_OPTIONS.mutualInformationDistillation`. */
export type MutualInformationDistillationLossOptions = FactoryOptionsFor<'mutualInformationDistillation'>;

/** Options of {@link crossEntropyDistillationFactory}: the rows of `FACTORY_OPTIONS.crossEntropyDistillation`. */
export type CrossEntropyDistillationOptions = FactoryOptionsFor<'crossEntropyDistillation'>;

/** Options of {@link mutualInformationCrossEntropyDistillationFactory}: the rows of `FACTORY_OPTIONS.mutualInformationCrossEntropyDistillation`. */
export type MutualInformationCrossEntropyDistillationOptions = FactoryOptionsFor<'mutualInformationCrossEntropyDistillation'>;

// ---------------------------------------------------------------------------------------------
// The call-at-most-once contract (at call time); the options are checked at factory time by
// parseFactoryOptions, from the factory's table in ./options.

/**
 * What a factory may take besides its options (the trainer passes it): the privacy-weight
 * schedule's current scale (see `./schedule`), read at every loss call.
 */
export interface FactoryRuntime {
  /**
   * The multiplier of the privacy terms' weights for the next loss (default: always 1). The
   * privacy terms are the ones that push the transform away from the clean embeddings: std-log-
   * ratio, input-embedding similarity, catalyst, mutual information, absolute cosine similarity
   * and the median-norm penalty that goes with it; the distillation distances and the
   * cross-entropy are the utility terms and keep their weights.
   */
  privacyWeightScale?: () => number;
}

/**
 * One weighted component: a weight of 0 (after the privacy scale, for a privacy term) means
 * reported only (no graph, no backward pass).
 */
interface Term {
  key: string;
  weight: number;
  /** Whether the privacy-weight schedule scales it (see {@link FactoryRuntime}). */
  privacy?: boolean;
  compute: (out: NoisyForwardOutput, studentLogits: Tensor | null) => Tensor;
}

function makeFactory(
  factory: string,
  model: NoiseMaskedNoisyTransformerModel,
  hyperparameters: Hyperparameters,
  terms: Term[],
  checkBatch: (out: NoisyForwardOutput) => void,
  runtime: FactoryRuntime | undefined,
): LossFactoryResult {
  let forwards = 0;
  const used = { lossFn: -1, getComponentLosses: -1, getHyperparameters: -1 };
  let components: ComponentLosses | null = null;
  model.onForward(() => {
    forwards++;
    components = null;
  });
  const claim = (fn: keyof typeof used) => {
    if (forwards === 0) throw new SgtError('INVALID_STATE', `${factory}: ${fn}() was called before any forward pass of the noisy model`);
    if (used[fn] === forwards)
      throw new SgtError('INVALID_STATE', `${factory}: ${fn}() may be called at most once after each forward pass`);
    used[fn] = forwards;
  };
  const lossFn: DistillationLossFn = (studentLogits) => {
    const out = model.lastOutput;
    if (!out || forwards === 0)
      throw new SgtError('INVALID_STATE', `${factory}: lossFn() was called before any forward pass of the noisy model`);
    if (studentLogits !== undefined && studentLogits !== null) {
      if (!(studentLogits instanceof Tensor))
        throw new SgtError('INVALID_ARGUMENT', `${factory}: lossFn's argument must be the student's logits (a Tensor)`);
      const expected = out.studentLogits?.shape ?? [out.batchSize, out.seqLen, model.baseModel.config.vocabSize];
      if (fmtShape(studentLogits.shape) !== fmtShape(expected)) {
        throw new SgtError(
          'SHAPE_MISMATCH',
          `${factory}: the logits passed to lossFn have shape ${fmtShape(studentLogits.shape)}; the forward produced ${fmtShape(expected)}`,
        );
      }
    }
    checkBatch(out);
    claim('lossFn');
    const values: ComponentLosses = {};
    let total: Tensor | null = null;
    const privacyScale = runtime?.privacyWeightScale?.() ?? 1;
    if (!(Number.isFinite(privacyScale) && privacyScale >= 0))
      throw new SgtError('INVALID_STATE', `${factory}: the privacy weight scale must be a finite number >= 0, got ${privacyScale}`);
    for (const term of terms) {
      const weight = term.privacy ? term.weight * privacyScale : term.weight;
      if (weight === 0) {
        // Reported (users plot it) but outside the graph: it costs no backward pass.
        values[term.key] = noGrad(() => term.compute(out, studentLogits ?? null));
        continue;
      }
      const c = term.compute(out, studentLogits ?? null);
      values[term.key] = c;
      const weighted = weight === 1 ? c : scale(c, weight);
      total = total ? add(total, weighted) : weighted;
    }
    const loss = total ?? noGrad(() => scale(values[terms[0].key], 0));
    values.loss = loss;
    components = values;
    return loss;
  };
  const getComponentLosses = (): ComponentLosses => {
    claim('getComponentLosses');
    if (!components)
      throw new SgtError('INVALID_STATE', `${factory}: getComponentLosses() needs lossFn() to run first after the forward pass`);
    return { ...components };
  };
  const getHyperparameters = (): Hyperparameters => {
    claim('getHyperparameters');
    return { ...hyperparameters };
  };
  return [lossFn, getComponentLosses, getHyperparameters];
}

/** The factory's batch rule (its table's `batch`), checked on each forward's micro-batch. */
function batchCheck(factory: FactoryName): (out: NoisyForwardOutput) => void {
  const fn = FACTORY_OPTIONS[factory].functionName;
  return (out) => {
    const error = batchSizeError(factory, out.batchSize, 'the micro-batch size');
    if (error) throw new SgtError('INVALID_OPTION', `${fn}: ${error}`);
  };
}

/** The teacher's (`h`) or student's (`ht`) output of block `layer` (null: the logits) of this forward. */
function distilled(out: NoisyForwardOutput, layer: number | null, which: 'h' | 'ht'): Tensor {
  const t = layer === null ? (which === 'h' ? out.teacherLogits : out.studentLogits) : out.layers.get(layer)?.[which];
  if (!t)
    throw new SgtError(
      'INVALID_STATE',
      `the noisy model's forward did not compute '${which}' of ${layer === null ? 'the logits' : `block ${layer}`}`,
    );
  return t;
}

type CausalLMOf = NoiseMaskedNoisyTransformerModel['baseModel'];

/**
 * The distillation cross-entropy of one forward (see {@link DistillationLossFn} for which path):
 * logits passed to lossFn, or the forward's logits when the model is not fused, go through the
 * unfused reference path; otherwise the fused LM head reads the final hidden states.
 */
function crossEntropyOf(out: NoisyForwardOutput, studentLogits: Tensor | null, base: CausalLMOf, fused: boolean): Tensor {
  if (studentLogits || !fused) {
    const student = studentLogits ?? out.studentLogits;
    // The teacher is a constant: its logits are made from its final hidden states when the forward did not keep them.
    const teacher = out.teacherLogits ?? (out.teacherHidden ? noGrad(() => matmulRowBlocks(out.teacherHidden!, base.headBlocks())) : null);
    if (!teacher || !student) throw new SgtError('INVALID_STATE', "the noisy model's forward did not compute the logits");
    return distillationCrossEntropy(teacher, student, out.lossMask);
  }
  if (!out.teacherHidden || !out.studentHidden)
    throw new SgtError('INVALID_STATE', "the noisy model's forward did not compute the final hidden states");
  return lmHeadDistillationCrossEntropy(out.teacherHidden, out.studentHidden, base.headBlocks(), out.lossMask);
}

/** What a cross-entropy factory asks of the forward: the final hidden states (fused head) or the logits. */
function crossEntropyOutputs(noisyModel: NoiseMaskedNoisyTransformerModel): void {
  noisyModel.addFactoryOutputs(
    noisyModel.fusedHead
      ? { distillationLayerIndex: null, logits: false, finalHidden: true }
      : { distillationLayerIndex: null, logits: true },
  );
}

// ---------------------------------------------------------------------------------------------
// The component terms, each written once; a factory lists the ones it sums, with their weights.

type CatalystOptions = { inverseL2PowerLawCharacteristicLength: number; inverseL2PowerLawExponentOfDecay: number };

const term = {
  layerCosineDistance: (weight: number, layer: number | null): Term => ({
    key: 'distillationLayerCosineDistanceLoss',
    weight,
    compute: (out) => distillationLayerCosineDistance(distilled(out, layer, 'h'), distilled(out, layer, 'ht'), out.lossMask),
  }),
  layerL2Distance: (weight: number, layer: number | null): Term => ({
    key: 'distillationLayerL2DistanceLoss',
    weight,
    compute: (out) => distillationLayerL2Distance(distilled(out, layer, 'h'), distilled(out, layer, 'ht'), out.lossMask),
  }),
  stdLogRatio: (weight: number, base: CausalLMOf): Term => ({
    key: 'stdLogRatioLoss',
    weight,
    privacy: true,
    compute: (out) => stdLogRatio(out.sigma, base.embeddingStatistics().columnStd, out.noiseMask),
  }),
  inputEmbeddingSimilarity: (weight: number): Term => ({
    key: 'inputEmbeddingSimilarityLoss',
    weight,
    privacy: true,
    compute: (out) => inputEmbeddingSimilarity(out.x, out.xt, out.noiseMask),
  }),
  catalyst: (weight: number, base: CausalLMOf, hp: CatalystOptions): Term => ({
    key: 'inverseL2PowerLawCatalystLoss',
    weight,
    privacy: true,
    compute: (out) =>
      inverseL2PowerLawCatalyst(out.xt, base.embeddingBlocks(), out.noiseMask, {
        characteristicLength: hp.inverseL2PowerLawCharacteristicLength,
        exponentOfDecay: hp.inverseL2PowerLawExponentOfDecay,
      }),
  }),
  mutualInformation: (weight: number, combineNoiseMasks: boolean): Term => ({
    key: 'mutualInformationLoss',
    weight,
    privacy: true,
    compute: (out) =>
      mutualInformation(out.x, out.xt, out.mu, out.sigma, out.noiseMask, { combineNoiseMasks, attentionMask: out.attentionMask }),
  }),
  distillationCrossEntropy: (weight: number, model: NoiseMaskedNoisyTransformerModel): Term => ({
    key: 'distillationCrossEntropyLoss',
    weight,
    compute: (out, studentLogits) => crossEntropyOf(out, studentLogits, model.baseModel, model.fusedHead),
  }),
  absoluteCosineSimilarity: (weight: number): Term => ({
    key: 'absoluteCosineSimilarityPenalty',
    weight,
    privacy: true,
    compute: (out) => absoluteCosineSimilarity(out.x, out.xt, out.noiseMask),
  }),
  medianNorm: (weight: number, base: CausalLMOf): Term => ({
    key: 'medianNormPenalty',
    weight,
    privacy: true,
    compute: (out) => medianNormPenalty(out.x, out.mu, base.embeddingStatistics().medianNorm, out.noiseMask),
  }),
};

// ---------------------------------------------------------------------------------------------
// The factories

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model: `(1 - alpha) (wCos cosDist + wL2 l2Dist) + alpha (wStd stdLogRatio + wSim inputSim +
 * wCat catalyst)`. Returns the loss function, a function to retrieve the loss components, and a function to retrieve the
 * hyperparameters; these may be called at most once each after a forward pass through both models.
 */
export function distillationLossFactory(
  noisyModel: NoiseMaskedNoisyTransformerModel,
  options: DistillationLossOptions,
  runtime?: FactoryRuntime,
): LossFactoryResult {
  const F = FACTORY_OPTIONS.distillation.functionName;
  const hp = parseFactoryOptions('distillation', options, noisyModel.baseModel.config.numLayers);
  noisyModel.addFactoryOutputs({ distillationLayerIndex: hp.distillationLayerIndex, logits: hp.distillationLayerIndex === null });
  const base = noisyModel.baseModel;
  const a = hp.alpha;
  const terms = [
    term.layerCosineDistance((1 - a) * hp.distillationLayerCosineDistanceLossWeight, hp.distillationLayerIndex),
    term.layerL2Distance((1 - a) * hp.distillationLayerL2DistanceLossWeight, hp.distillationLayerIndex),
    term.stdLogRatio(a * hp.stdLogRatioLossWeight, base),
    term.inputEmbeddingSimilarity(a * hp.inputEmbeddingSimilarityLossWeight),
    term.catalyst(a * hp.inverseL2PowerLawCatalystLossWeight, base, hp),
  ];
  return makeFactory(F, noisyModel, hp, terms, () => {}, runtime);
}

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model, with the mutual-information estimate as the transformation-strength term:
 * `(1 - alpha) (cosDist + wL2 l2Dist) + alpha (wMI MI + wSim inputSim + wCat catalyst)`. The micro-batch size must be
 * even (at least 2); `lossFn` checks it.
 */
export function mutualInformationDistillationLossFactory(
  noisyModel: NoiseMaskedNoisyTransformerModel,
  options: MutualInformationDistillationLossOptions,
  runtime?: FactoryRuntime,
): LossFactoryResult {
  const F = FACTORY_OPTIONS.mutualInformationDistillation.functionName;
  const hp = parseFactoryOptions('mutualInformationDistillation', options, noisyModel.baseModel.config.numLayers);
  noisyModel.addFactoryOutputs({ distillationLayerIndex: hp.distillationLayerIndex, logits: hp.distillationLayerIndex === null });
  const base = noisyModel.baseModel;
  const a = hp.alpha;
  const terms = [
    term.layerCosineDistance(1 - a, hp.distillationLayerIndex),
    term.layerL2Distance((1 - a) * hp.distillationLayerL2DistanceLossWeight, hp.distillationLayerIndex),
    term.mutualInformation(a * hp.mutualInformationLossWeight, hp.combineNoiseMasksForMutualInformationSubBatches),
    term.inputEmbeddingSimilarity(a * hp.inputEmbeddingSimilarityLossWeight),
    term.catalyst(a * hp.inverseL2PowerLawCatalystLossWeight, base, hp),
  ];
  return makeFactory(F, noisyModel, hp, terms, batchCheck('mutualInformationDistillation'), runtime);
}

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model, on the logits: `wCE CE + wACS absCos + wMNP medianNorm`. The cross-entropy runs the
 * LM head fused with the loss on the final hidden states (no `[B, T, V]` logits) unless the noisy model was made with
 * `fusedHead: false` or logits are passed to the loss function (see {@link DistillationLossFn}).
 */
export function crossEntropyDistillationFactory(
  noisyModel: NoiseMaskedNoisyTransformerModel,
  options: CrossEntropyDistillationOptions,
  runtime?: FactoryRuntime,
): LossFactoryResult {
  const F = FACTORY_OPTIONS.crossEntropyDistillation.functionName;
  const hp = parseFactoryOptions('crossEntropyDistillation', options);
  crossEntropyOutputs(noisyModel);
  return makeFactory(F, noisyModel, hp, crossEntropyTerms(noisyModel, hp), () => {}, runtime);
}

function crossEntropyTerms(noisyModel: NoiseMaskedNoisyTransformerModel, hp: ResolvedFactoryOptions<'crossEntropyDistillation'>): Term[] {
  return [
    term.distillationCrossEntropy(hp.distillationCrossEntropyLossWeight, noisyModel),
    term.absoluteCosineSimilarity(hp.absoluteCosineSimilarityPenaltyWeight),
    term.medianNorm(hp.medianNormPenaltyWeight, noisyModel.baseModel),
  ];
}

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model: `wMI MI + wCE CE + wACS absCos + wMNP medianNorm`. Using this loss requires the micro
 * batch size to be even. The cross-entropy path is chosen as in {@link crossEntropyDistillationFactory}.
 */
export function mutualInformationCrossEntropyDistillationFactory(
  noisyModel: NoiseMaskedNoisyTransformerModel,
  options: MutualInformationCrossEntropyDistillationOptions,
  runtime?: FactoryRuntime,
): LossFactoryResult {
  const F = FACTORY_OPTIONS.mutualInformationCrossEntropyDistillation.functionName;
  const hp = parseFactoryOptions('mutualInformationCrossEntropyDistillation', options);
  crossEntropyOutputs(noisyModel);
  const terms = [
    term.mutualInformation(hp.mutualInformationLossWeight, hp.combineNoiseMasksForMutualInformationSubBatches),
    ...crossEntropyTerms(noisyModel, hp),
  ];
  return makeFactory(F, noisyModel, hp, terms, batchCheck('mutualInformationCrossEntropyDistillation'), runtime);
}

/**
 * The four factories, by name (the names and their options' tables are in `./options`): every
 * factory in {@link FACTORY_OPTIONS} has its function here, typed with its table's options.
 */
export const FACTORIES: {
  readonly [F in FactoryName]: (
    noisyModel: NoiseMaskedNoisyTransformerModel,
    options: FactoryOptionsFor<F>,
    runtime?: FactoryRuntime,
  ) => LossFactoryResult;
} = {
  distillation: distillationLossFactory,
  mutualInformationDistillation: mutualInformationDistillationLossFactory,
  crossEntropyDistillation: crossEntropyDistillationFactory,
  mutualInformationCrossEntropyDistillation: mutualInformationCrossEntropyDistillationFactory,
};
