/**
 * The four distillation loss factories of LOSSES.md section 4, mirroring the Python API in
 * `distillation-api-reference.txt` (argument names in camelCase, the same defaults). Each takes the
 * noisy model and an options object and returns `[lossFn, getComponentLosses, getHyperparameters]`.
 */
import { Tensor, fmtShape } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';
import { add, scale } from '../ops/index';
import type { NoiseMaskedNoisyTransformerModel, NoisyForwardOutput } from '../models/cloak';
import { distillationCrossEntropy } from '../losses/crossEntropy';
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
import type { FACTORY_OPTIONS, FactoryName, FactoryOptionsFor } from './options';

/** The scalar loss of the latest forward pass (the student's logits may be passed, as in Python). */
export type DistillationLossFn = (studentLogits?: Tensor | null) => Tensor;
/** Every component that went into the latest loss, by its camelCase key, plus `loss` (the total). */
export type ComponentLosses = Record<string, Tensor>;
/** Every option value used, by its camelCase key. */
export type Hyperparameters = Record<string, number | boolean | null>;
/** What each factory returns. */
export type LossFactoryResult = [DistillationLossFn, () => ComponentLosses, () => Hyperparameters];

/** Options of {@link distillationLossFactory}. */
export interface DistillationLossOptions {
  /** The index of the decoder layer in the base model at which to perform distillation. When null, the logits are distilled. */
  distillationLayerIndex: number | null;
  /**
   * The interpolation factor between the distillation loss (maximizing model similarity) and the Stained Glass Transform
   * loss (maximizing transformation strength). Should be in the range [0, 1], where 0 corresponds to higher model
   * similarity and 1 corresponds to higher transformation strength.
   */
  alpha: number;
  /** The weight of the loss component which aims to maximize the Stained Glass Transform's standard deviations (transformation strength). */
  stdLogRatioLossWeight: number;
  /** The weight of the loss component which aims to minimize the similarity of the input embeddings. */
  inputEmbeddingSimilarityLossWeight: number;
  /** The weight of the loss component which aims to maximize the similarity of the distillation layer embeddings. */
  distillationLayerCosineDistanceLossWeight: number;
  /** The weight of a subcomponent of the loss component which aims to maximize the similarity of the distillation layer embeddings. Default 0. */
  distillationLayerL2DistanceLossWeight?: number;
  /** The weight of the inverse l2 power law catalyst loss. This argument is experimental. Default 0. */
  inverseL2PowerLawCatalystLossWeight?: number;
  /**
   * The parameter modifying the distance between embeddings when computing the inverse l2 power law catalyst loss. This
   * allows the user to account for the data dependent distances between embeddings allowing for the loss to be O(1) when
   * the distances are approximately the same value as the scale. For embeddings this is recommended to be the 5th
   * percentile of the Voronoi l2 distances between embeddings (see `embeddingStats` and `recommendedCharacteristicLength`).
   * Default 1.
   */
  inverseL2PowerLawCharacteristicLength?: number;
  /**
   * The value to inverse exponentiate the computed distance by during the computation of the inverse l2 power law catalyst
   * loss. This value must be positive. This argument is experimental. Default 1.
   */
  inverseL2PowerLawExponentOfDecay?: number;
}

/** Options of {@link mutualInformationDistillationLossFactory}. */
export interface MutualInformationDistillationLossOptions {
  /** The index of the decoder layer in the base model at which to perform distillation. When null, the logits are distilled. */
  distillationLayerIndex: number | null;
  /**
   * The interpolation factor between the distillation loss (maximizing model similarity) and the Stained Glass Transform
   * loss (maximizing transformation strength). Should be in the range [0, 1].
   */
  alpha: number;
  /** The weight of a subcomponent of the loss component which aims to maximize the similarity of the distillation layer embeddings. */
  distillationLayerL2DistanceLossWeight: number;
  /** The weight of the mutual information loss. Increasing this makes the optimization prefer higher transformation strength. */
  mutualInformationLossWeight: number;
  /** Experimental parameter. Default 0. */
  inverseL2PowerLawCatalystLossWeight?: number;
  /** Experimental parameter. Default 1. */
  inverseL2PowerLawCharacteristicLength?: number;
  /** Experimental parameter (must be positive). Default 1. */
  inverseL2PowerLawExponentOfDecay?: number;
  /** The weight of the loss component which aims to minimize the similarity of the input embeddings. Default 0. */
  inputEmbeddingSimilarityLossWeight?: number;
  /** Whether to only use the features in the noise masks for the two sub-batches which are simultaneously unmasked when computing the mutual information loss. Default true. */
  combineNoiseMasksForMutualInformationSubBatches?: boolean;
}

/** Options of {@link crossEntropyDistillationFactory}. */
export interface CrossEntropyDistillationOptions {
  /** The weight of the loss component which aims to minimize the difference between the clean and transformed logits. */
  distillationCrossEntropyLossWeight: number;
  /** The weight of the loss component which aims to minimize the absolute value of the similarity of the clean and transformed input embeddings. */
  absoluteCosineSimilarityPenaltyWeight: number;
  /** The weight of the loss component which aims to regularize the mean-shifted input embeddings to have norms near the median norm of the embedding table. */
  medianNormPenaltyWeight: number;
}

/** Options of {@link mutualInformationCrossEntropyDistillationFactory}. */
export interface MutualInformationCrossEntropyDistillationOptions extends CrossEntropyDistillationOptions {
  /** The weight of the mutual information loss. Increasing this makes the optimization prefer higher transformation strength. */
  mutualInformationLossWeight: number;
  /** Whether to only use the features in the noise masks for the two sub-batches which are simultaneously unmasked when computing the mutual information loss. Default true. */
  combineNoiseMasksForMutualInformationSubBatches?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Option checks (at factory time) and the call-at-most-once contract (at call time)

function optionsObject(factory: string, options: unknown): Record<string, unknown> {
  if (!options || typeof options !== 'object') throw new Error(`${factory}: options must be an object`);
  return options as Record<string, unknown>;
}

function weight(factory: string, o: Record<string, unknown>, key: string, fallback?: number): number {
  const v = o[key] ?? fallback;
  if (v === undefined) throw new Error(`${factory}: option '${key}' is required`);
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw new Error(`${factory}: option '${key}' must be a finite number >= 0, got ${String(v)}`);
  return v;
}

function alphaOption(factory: string, o: Record<string, unknown>): number {
  const v = o.alpha;
  if (v === undefined) throw new Error(`${factory}: option 'alpha' is required`);
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new Error(`${factory}: option 'alpha' must be in [0, 1], got ${String(v)}`);
  return v;
}

function positive(factory: string, o: Record<string, unknown>, key: string, fallback: number): number {
  const v = o[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw new Error(`${factory}: option '${key}' must be positive, got ${String(v)}`);
  return v;
}

function flag(factory: string, o: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = o[key] ?? fallback;
  if (typeof v !== 'boolean') throw new Error(`${factory}: option '${key}' must be true or false, got ${String(v)}`);
  return v;
}

function layerIndex(factory: string, o: Record<string, unknown>, model: NoiseMaskedNoisyTransformerModel): number | null {
  if (!('distillationLayerIndex' in o)) throw new Error(`${factory}: option 'distillationLayerIndex' is required (a block index or null)`);
  const k = o.distillationLayerIndex;
  const last = model.baseModel.config.numLayers - 1;
  if (k === null) return null;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > last) {
    throw new Error(`${factory}: option 'distillationLayerIndex' must be null or a block index in 0..${last}, got ${String(k)}`);
  }
  return k;
}

function rejectUnknown(factory: string, o: Record<string, unknown>, known: string[]): void {
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw new Error(`${factory}: unknown option '${key}' (known: ${known.join(', ')})`);
  }
}

/** One weighted component: `weight` 0 means reported only (no graph, no backward pass). */
interface Term {
  key: string;
  weight: number;
  compute: (out: NoisyForwardOutput, studentLogits: Tensor | null) => Tensor;
}

function makeFactory(
  factory: string,
  model: NoiseMaskedNoisyTransformerModel,
  hyperparameters: Hyperparameters,
  terms: Term[],
  checkBatch: (out: NoisyForwardOutput) => void = () => {},
): LossFactoryResult {
  let forwards = 0;
  const used = { lossFn: -1, getComponentLosses: -1, getHyperparameters: -1 };
  let components: ComponentLosses | null = null;
  model.onForward(() => {
    forwards++;
    components = null;
  });
  const claim = (fn: keyof typeof used) => {
    if (forwards === 0) throw new Error(`${factory}: ${fn}() was called before any forward pass of the noisy model`);
    if (used[fn] === forwards) throw new Error(`${factory}: ${fn}() may be called at most once after each forward pass`);
    used[fn] = forwards;
  };
  const lossFn: DistillationLossFn = (studentLogits) => {
    const out = model.lastOutput;
    if (!out || forwards === 0) throw new Error(`${factory}: lossFn() was called before any forward pass of the noisy model`);
    if (studentLogits !== undefined && studentLogits !== null) {
      if (!(studentLogits instanceof Tensor)) throw new Error(`${factory}: lossFn's argument must be the student's logits (a Tensor)`);
      const expected = out.studentLogits?.shape;
      if (expected && fmtShape(studentLogits.shape) !== fmtShape(expected)) {
        throw new Error(
          `${factory}: the logits passed to lossFn have shape ${fmtShape(studentLogits.shape)}; the forward produced ${fmtShape(expected)}`,
        );
      }
    }
    checkBatch(out);
    claim('lossFn');
    const values: ComponentLosses = {};
    let total: Tensor | null = null;
    for (const term of terms) {
      if (term.weight === 0) {
        // Reported (users plot it) but outside the graph: it costs no backward pass.
        values[term.key] = noGrad(() => term.compute(out, studentLogits ?? null));
        continue;
      }
      const c = term.compute(out, studentLogits ?? null);
      values[term.key] = c;
      const weighted = term.weight === 1 ? c : scale(c, term.weight);
      total = total ? add(total, weighted) : weighted;
    }
    const loss = total ?? noGrad(() => scale(values[terms[0].key], 0));
    values.loss = loss;
    components = values;
    return loss;
  };
  const getComponentLosses = (): ComponentLosses => {
    claim('getComponentLosses');
    if (!components) throw new Error(`${factory}: getComponentLosses() needs lossFn() to run first after the forward pass`);
    return { ...components };
  };
  const getHyperparameters = (): Hyperparameters => {
    claim('getHyperparameters');
    return { ...hyperparameters };
  };
  return [lossFn, getComponentLosses, getHyperparameters];
}

function requireEvenBatch(factory: string) {
  return (out: NoisyForwardOutput) => {
    if (out.batchSize < 2 || out.batchSize % 2 !== 0) {
      throw new Error(`${factory}: the micro-batch size must be even and at least 2 for the mutual information loss, got ${out.batchSize}`);
    }
  };
}

function distilled(out: NoisyForwardOutput, which: 'h' | 'ht'): Tensor {
  const t = out[which];
  if (!t) throw new Error(`the noisy model's forward did not compute '${which}'`);
  return t;
}

function logitsOf(out: NoisyForwardOutput, studentLogits: Tensor | null): { teacher: Tensor; student: Tensor } {
  const teacher = out.teacherLogits;
  const student = studentLogits ?? out.studentLogits;
  if (!teacher || !student) throw new Error("the noisy model's forward did not compute the logits");
  return { teacher, student };
}

// ---------------------------------------------------------------------------------------------
// The factories

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model: `(1 - alpha) (wCos cosDist + wL2 l2Dist) + alpha (wStd stdLogRatio + wSim inputSim +
 * wCat catalyst)`. Returns the loss function, a function to retrieve the loss components, and a function to retrieve the
 * hyperparameters; these may be called at most once each after a forward pass through both models.
 */
export function distillationLossFactory(noisyModel: NoiseMaskedNoisyTransformerModel, options: DistillationLossOptions): LossFactoryResult {
  const F = 'distillationLossFactory';
  const o = optionsObject(F, options);
  rejectUnknown(F, o, [
    'distillationLayerIndex',
    'alpha',
    'stdLogRatioLossWeight',
    'inputEmbeddingSimilarityLossWeight',
    'distillationLayerCosineDistanceLossWeight',
    'distillationLayerL2DistanceLossWeight',
    'inverseL2PowerLawCatalystLossWeight',
    'inverseL2PowerLawCharacteristicLength',
    'inverseL2PowerLawExponentOfDecay',
  ]);
  const hp = {
    distillationLayerIndex: layerIndex(F, o, noisyModel),
    alpha: alphaOption(F, o),
    stdLogRatioLossWeight: weight(F, o, 'stdLogRatioLossWeight'),
    inputEmbeddingSimilarityLossWeight: weight(F, o, 'inputEmbeddingSimilarityLossWeight'),
    distillationLayerCosineDistanceLossWeight: weight(F, o, 'distillationLayerCosineDistanceLossWeight'),
    distillationLayerL2DistanceLossWeight: weight(F, o, 'distillationLayerL2DistanceLossWeight', 0),
    inverseL2PowerLawCatalystLossWeight: weight(F, o, 'inverseL2PowerLawCatalystLossWeight', 0),
    inverseL2PowerLawCharacteristicLength: positive(F, o, 'inverseL2PowerLawCharacteristicLength', 1),
    inverseL2PowerLawExponentOfDecay: positive(F, o, 'inverseL2PowerLawExponentOfDecay', 1),
  };
  noisyModel.requestOutputs({ distillationLayerIndex: hp.distillationLayerIndex, logits: hp.distillationLayerIndex === null });
  const base = noisyModel.baseModel;
  const a = hp.alpha;
  return makeFactory(F, noisyModel, hp, [
    {
      key: 'distillationLayerCosineDistanceLoss',
      weight: (1 - a) * hp.distillationLayerCosineDistanceLossWeight,
      compute: (out) => distillationLayerCosineDistance(distilled(out, 'h'), distilled(out, 'ht'), out.lossMask),
    },
    {
      key: 'distillationLayerL2DistanceLoss',
      weight: (1 - a) * hp.distillationLayerL2DistanceLossWeight,
      compute: (out) => distillationLayerL2Distance(distilled(out, 'h'), distilled(out, 'ht'), out.lossMask),
    },
    {
      key: 'stdLogRatioLoss',
      weight: a * hp.stdLogRatioLossWeight,
      compute: (out) => stdLogRatio(out.sigma, base.embeddingStatistics().columnStd, out.noiseMask),
    },
    {
      key: 'inputEmbeddingSimilarityLoss',
      weight: a * hp.inputEmbeddingSimilarityLossWeight,
      compute: (out) => inputEmbeddingSimilarity(out.x, out.xt, out.noiseMask),
    },
    {
      key: 'inverseL2PowerLawCatalystLoss',
      weight: a * hp.inverseL2PowerLawCatalystLossWeight,
      compute: (out) =>
        inverseL2PowerLawCatalyst(out.xt, base.embeddingTable, out.noiseMask, {
          characteristicLength: hp.inverseL2PowerLawCharacteristicLength,
          exponentOfDecay: hp.inverseL2PowerLawExponentOfDecay,
        }),
    },
  ]);
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
): LossFactoryResult {
  const F = 'mutualInformationDistillationLossFactory';
  const o = optionsObject(F, options);
  rejectUnknown(F, o, [
    'distillationLayerIndex',
    'alpha',
    'distillationLayerL2DistanceLossWeight',
    'mutualInformationLossWeight',
    'inverseL2PowerLawCatalystLossWeight',
    'inverseL2PowerLawCharacteristicLength',
    'inverseL2PowerLawExponentOfDecay',
    'inputEmbeddingSimilarityLossWeight',
    'combineNoiseMasksForMutualInformationSubBatches',
  ]);
  const hp = {
    distillationLayerIndex: layerIndex(F, o, noisyModel),
    alpha: alphaOption(F, o),
    distillationLayerL2DistanceLossWeight: weight(F, o, 'distillationLayerL2DistanceLossWeight'),
    mutualInformationLossWeight: weight(F, o, 'mutualInformationLossWeight'),
    inverseL2PowerLawCatalystLossWeight: weight(F, o, 'inverseL2PowerLawCatalystLossWeight', 0),
    inverseL2PowerLawCharacteristicLength: positive(F, o, 'inverseL2PowerLawCharacteristicLength', 1),
    inverseL2PowerLawExponentOfDecay: positive(F, o, 'inverseL2PowerLawExponentOfDecay', 1),
    inputEmbeddingSimilarityLossWeight: weight(F, o, 'inputEmbeddingSimilarityLossWeight', 0),
    combineNoiseMasksForMutualInformationSubBatches: flag(F, o, 'combineNoiseMasksForMutualInformationSubBatches', true),
  };
  noisyModel.requestOutputs({ distillationLayerIndex: hp.distillationLayerIndex, logits: hp.distillationLayerIndex === null });
  const base = noisyModel.baseModel;
  const a = hp.alpha;
  return makeFactory(
    F,
    noisyModel,
    hp,
    [
      {
        key: 'distillationLayerCosineDistanceLoss',
        weight: 1 - a,
        compute: (out) => distillationLayerCosineDistance(distilled(out, 'h'), distilled(out, 'ht'), out.lossMask),
      },
      {
        key: 'distillationLayerL2DistanceLoss',
        weight: (1 - a) * hp.distillationLayerL2DistanceLossWeight,
        compute: (out) => distillationLayerL2Distance(distilled(out, 'h'), distilled(out, 'ht'), out.lossMask),
      },
      {
        key: 'mutualInformationLoss',
        weight: a * hp.mutualInformationLossWeight,
        compute: (out) =>
          mutualInformation(out.x, out.xt, out.mu, out.sigma, out.noiseMask, {
            combineNoiseMasks: hp.combineNoiseMasksForMutualInformationSubBatches,
            attentionMask: out.attentionMask,
          }),
      },
      {
        key: 'inputEmbeddingSimilarityLoss',
        weight: a * hp.inputEmbeddingSimilarityLossWeight,
        compute: (out) => inputEmbeddingSimilarity(out.x, out.xt, out.noiseMask),
      },
      {
        key: 'inverseL2PowerLawCatalystLoss',
        weight: a * hp.inverseL2PowerLawCatalystLossWeight,
        compute: (out) =>
          inverseL2PowerLawCatalyst(out.xt, base.embeddingTable, out.noiseMask, {
            characteristicLength: hp.inverseL2PowerLawCharacteristicLength,
            exponentOfDecay: hp.inverseL2PowerLawExponentOfDecay,
          }),
      },
    ],
    requireEvenBatch(F),
  );
}

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model, on the logits: `wCE CE + wACS absCos + wMNP medianNorm`.
 */
export function crossEntropyDistillationFactory(
  noisyModel: NoiseMaskedNoisyTransformerModel,
  options: CrossEntropyDistillationOptions,
): LossFactoryResult {
  const F = 'crossEntropyDistillationFactory';
  const o = optionsObject(F, options);
  rejectUnknown(F, o, ['distillationCrossEntropyLossWeight', 'absoluteCosineSimilarityPenaltyWeight', 'medianNormPenaltyWeight']);
  const hp = {
    distillationCrossEntropyLossWeight: weight(F, o, 'distillationCrossEntropyLossWeight'),
    absoluteCosineSimilarityPenaltyWeight: weight(F, o, 'absoluteCosineSimilarityPenaltyWeight'),
    medianNormPenaltyWeight: weight(F, o, 'medianNormPenaltyWeight'),
  };
  noisyModel.requestOutputs({ distillationLayerIndex: null, logits: true });
  return makeFactory(F, noisyModel, hp, crossEntropyTerms(noisyModel, hp));
}

function crossEntropyTerms(noisyModel: NoiseMaskedNoisyTransformerModel, hp: CrossEntropyDistillationOptions): Term[] {
  const base = noisyModel.baseModel;
  return [
    {
      key: 'distillationCrossEntropyLoss',
      weight: hp.distillationCrossEntropyLossWeight,
      compute: (out, studentLogits) => {
        const { teacher, student } = logitsOf(out, studentLogits);
        return distillationCrossEntropy(teacher, student, out.lossMask);
      },
    },
    {
      key: 'absoluteCosineSimilarityPenalty',
      weight: hp.absoluteCosineSimilarityPenaltyWeight,
      compute: (out) => absoluteCosineSimilarity(out.x, out.xt, out.noiseMask),
    },
    {
      key: 'medianNormPenalty',
      weight: hp.medianNormPenaltyWeight,
      compute: (out) => medianNormPenalty(out.x, out.mu, base.embeddingStatistics().medianNorm, out.noiseMask),
    },
  ];
}

/**
 * Create a loss function to perform distillation training on a Stained Glass Transform causal language model using a
 * teacher causal language model: `wMI MI + wCE CE + wACS absCos + wMNP medianNorm`. Using this loss requires the micro
 * batch size to be even.
 */
export function mutualInformationCrossEntropyDistillationFactory(
  noisyModel: NoiseMaskedNoisyTransformerModel,
  options: MutualInformationCrossEntropyDistillationOptions,
): LossFactoryResult {
  const F = 'mutualInformationCrossEntropyDistillationFactory';
  const o = optionsObject(F, options);
  rejectUnknown(F, o, [
    'mutualInformationLossWeight',
    'distillationCrossEntropyLossWeight',
    'absoluteCosineSimilarityPenaltyWeight',
    'medianNormPenaltyWeight',
    'combineNoiseMasksForMutualInformationSubBatches',
  ]);
  const hp = {
    mutualInformationLossWeight: weight(F, o, 'mutualInformationLossWeight'),
    distillationCrossEntropyLossWeight: weight(F, o, 'distillationCrossEntropyLossWeight'),
    absoluteCosineSimilarityPenaltyWeight: weight(F, o, 'absoluteCosineSimilarityPenaltyWeight'),
    medianNormPenaltyWeight: weight(F, o, 'medianNormPenaltyWeight'),
    combineNoiseMasksForMutualInformationSubBatches: flag(F, o, 'combineNoiseMasksForMutualInformationSubBatches', true),
  };
  noisyModel.requestOutputs({ distillationLayerIndex: null, logits: true });
  return makeFactory(
    F,
    noisyModel,
    hp,
    [
      {
        key: 'mutualInformationLoss',
        weight: hp.mutualInformationLossWeight,
        compute: (out) =>
          mutualInformation(out.x, out.xt, out.mu, out.sigma, out.noiseMask, {
            combineNoiseMasks: hp.combineNoiseMasksForMutualInformationSubBatches,
            attentionMask: out.attentionMask,
          }),
      },
      ...crossEntropyTerms(noisyModel, hp),
    ],
    requireEvenBatch(F),
  );
}

/**
 * The four factories, by name (the names and their options' tables are in `./options`): every
 * factory in {@link FACTORY_OPTIONS} has its function here, typed with its table's options.
 */
export const FACTORIES: {
  readonly [F in FactoryName]: (noisyModel: NoiseMaskedNoisyTransformerModel, options: FactoryOptionsFor<F>) => LossFactoryResult;
} = {
  distillation: distillationLossFactory,
  mutualInformationDistillation: mutualInformationDistillationLossFactory,
  crossEntropyDistillation: crossEntropyDistillationFactory,
  mutualInformationCrossEntropyDistillation: mutualInformationCrossEntropyDistillationFactory,
};
