/**
 * The training form's fields: the four loss factories' options (help texts are the reference's
 * parameter descriptions, as in the TSDoc of `src/factories/distillation.ts`) and the run's settings,
 * with validation rules that mirror the factories' and the trainer's own checks, so that the page
 * catches a bad value as it is typed instead of when training starts.
 */
import type { FactoryName } from '../../src/factories/options';

/** How a field's text is read and checked. */
export type Rule =
  /** In [0, 1] (the factories' `alpha`). */
  | 'alpha'
  /** A finite number >= 0 (every loss weight). */
  | 'weight'
  /** A finite number > 0 (the catalyst's length and exponent, the learning rate). */
  | 'positive'
  /** Empty (the logits) or a block index 0..numLayers-1. */
  | 'layer'
  /** A checkbox. */
  | 'flag'
  /** An integer >= 1. */
  | 'count'
  /** An integer >= 0. */
  | 'countOrZero'
  /** An integer in 2..maxPositions. */
  | 'seqLen'
  /** An integer >= 1, even for the mutual-information factories. */
  | 'batchSize';

/** One field of the form. */
export interface FieldSpec {
  /** The option's name (camelCase, as the factory or `configure` takes it). */
  key: string;
  label: string;
  rule: Rule;
  /** Shown under the field and as its tooltip. */
  help: string;
  /** Step of the number input's arrows. */
  step?: string;
}

/** What the checks need to know about the loaded model and the chosen factory. */
export interface ValidationContext {
  numLayers: number | null;
  maxPositions: number | null;
  factory: FactoryName;
}

const HELP = {
  distillationLayerIndex:
    'The index of the decoder layer in the base model at which to perform distillation. When empty, the logits are distilled.',
  alpha:
    'The interpolation factor between the distillation loss (maximizing model similarity) and the Stained Glass Transform loss (maximizing transformation strength). Should be in the range [0, 1], where 0 corresponds to higher model similarity and 1 corresponds to higher transformation strength.',
  stdLogRatioLossWeight:
    "The weight of the loss component which aims to maximize the Stained Glass Transform's standard deviations (transformation strength).",
  inputEmbeddingSimilarityLossWeight: 'The weight of the loss component which aims to minimize the similarity of the input embeddings.',
  distillationLayerCosineDistanceLossWeight:
    'The weight of the loss component which aims to maximize the similarity of the distillation layer embeddings.',
  distillationLayerL2DistanceLossWeight:
    'The weight of a subcomponent of the loss component which aims to maximize the similarity of the distillation layer embeddings.',
  inverseL2PowerLawCatalystLossWeight: 'The weight of the inverse l2 power law catalyst loss. This argument is experimental.',
  inverseL2PowerLawCharacteristicLength:
    'The parameter modifying the distance between embeddings when computing the inverse l2 power law catalyst loss, so that the loss is O(1) when the distances are about this value. Recommended: the 5th percentile of the Voronoi l2 distances between embeddings.',
  inverseL2PowerLawExponentOfDecay:
    'The value to inverse exponentiate the computed distance by during the computation of the inverse l2 power law catalyst loss. Must be positive. This argument is experimental.',
  mutualInformationLossWeight:
    'The weight of the mutual information loss. Increasing this makes the optimization prefer higher transformation strength.',
  combineNoiseMasksForMutualInformationSubBatches:
    'Whether to only use the features in the noise masks for the two sub-batches which are simultaneously unmasked when computing the mutual information loss.',
  distillationCrossEntropyLossWeight:
    'The weight of the loss component which aims to minimize the difference between the clean and transformed logits.',
  absoluteCosineSimilarityPenaltyWeight:
    'The weight of the loss component which aims to minimize the absolute value of the similarity of the clean and transformed input embeddings.',
  medianNormPenaltyWeight:
    'The weight of the loss component which aims to regularize the mean-shifted input embeddings to have norms near the median norm of the embedding table.',
} as const;

const f = (key: keyof typeof HELP, label: string, rule: Rule, step?: string): FieldSpec => ({ key, label, rule, help: HELP[key], step });

const catalyst = [
  f('inverseL2PowerLawCatalystLossWeight', 'Catalyst loss weight (experimental)', 'weight', '0.01'),
  f('inverseL2PowerLawCharacteristicLength', 'Catalyst characteristic length', 'positive', '0.1'),
  f('inverseL2PowerLawExponentOfDecay', 'Catalyst exponent of decay', 'positive', '0.1'),
];

/** A factory as the picker shows it. */
export interface FactorySpec {
  name: FactoryName;
  label: string;
  /** The loss, in one line. */
  formula: string;
  fields: FieldSpec[];
}

/** The four factories, in the order of LOSSES.md section 4. */
export const FACTORY_SPECS: readonly FactorySpec[] = [
  {
    name: 'distillation',
    label: 'Distillation',
    formula: '(1 − α)(w_cos·cosine distance + w_L2·L2 distance) + α(w_std·std-log-ratio + w_sim·input similarity + w_cat·catalyst)',
    fields: [
      f('distillationLayerIndex', 'Distillation layer', 'layer'),
      f('alpha', 'Alpha (α)', 'alpha', '0.05'),
      f('distillationLayerCosineDistanceLossWeight', 'Cosine distance weight', 'weight', '0.1'),
      f('distillationLayerL2DistanceLossWeight', 'L2 distance weight', 'weight', '0.1'),
      f('stdLogRatioLossWeight', 'Std-log-ratio weight', 'weight', '0.05'),
      f('inputEmbeddingSimilarityLossWeight', 'Input-embedding similarity weight', 'weight', '0.1'),
      ...catalyst,
    ],
  },
  {
    name: 'mutualInformationDistillation',
    label: 'Mutual-information distillation',
    formula: '(1 − α)(cosine distance + w_L2·L2 distance) + α(w_MI·mutual information + w_sim·input similarity + w_cat·catalyst)',
    fields: [
      f('distillationLayerIndex', 'Distillation layer', 'layer'),
      f('alpha', 'Alpha (α)', 'alpha', '0.05'),
      f('distillationLayerL2DistanceLossWeight', 'L2 distance weight', 'weight', '0.1'),
      f('mutualInformationLossWeight', 'Mutual information weight', 'weight', '0.005'),
      f('inputEmbeddingSimilarityLossWeight', 'Input-embedding similarity weight', 'weight', '0.1'),
      f('combineNoiseMasksForMutualInformationSubBatches', 'Combine the sub-batches’ noise masks', 'flag'),
      ...catalyst,
    ],
  },
  {
    name: 'crossEntropyDistillation',
    label: 'Cross-entropy distillation',
    formula: 'w_CE·cross entropy(teacher, student) + w_ACS·|cosine(x, x̃)| + w_MNP·median-norm penalty',
    fields: [
      f('distillationCrossEntropyLossWeight', 'Cross-entropy weight', 'weight', '0.1'),
      f('absoluteCosineSimilarityPenaltyWeight', 'Absolute cosine similarity weight', 'weight', '0.1'),
      f('medianNormPenaltyWeight', 'Median-norm penalty weight', 'weight', '0.05'),
    ],
  },
  {
    name: 'mutualInformationCrossEntropyDistillation',
    label: 'Mutual-information cross-entropy distillation',
    formula: 'w_MI·mutual information + w_CE·cross entropy + w_ACS·|cosine(x, x̃)| + w_MNP·median-norm penalty',
    fields: [
      f('mutualInformationLossWeight', 'Mutual information weight', 'weight', '0.005'),
      f('distillationCrossEntropyLossWeight', 'Cross-entropy weight', 'weight', '0.1'),
      f('absoluteCosineSimilarityPenaltyWeight', 'Absolute cosine similarity weight', 'weight', '0.1'),
      f('medianNormPenaltyWeight', 'Median-norm penalty weight', 'weight', '0.05'),
      f('combineNoiseMasksForMutualInformationSubBatches', 'Combine the sub-batches’ noise masks', 'flag'),
    ],
  },
];

/** Defaults of the options the library's DEFAULT_FACTORY_OPTIONS leaves to the factories. */
export const OPTIONAL_DEFAULTS: Readonly<Record<string, number | boolean | null>> = {
  distillationLayerIndex: null,
  distillationLayerL2DistanceLossWeight: 0,
  inputEmbeddingSimilarityLossWeight: 0,
  inverseL2PowerLawCatalystLossWeight: 0,
  inverseL2PowerLawCharacteristicLength: 1,
  inverseL2PowerLawExponentOfDecay: 1,
  combineNoiseMasksForMutualInformationSubBatches: true,
};

/** The run's settings (passed to `configure`). */
export const RUN_FIELDS: readonly FieldSpec[] = [
  {
    key: 'batchSize',
    label: 'Batch size',
    rule: 'batchSize',
    help: 'Sequences per optimizer step (even for the mutual-information factories, which pair two halves of the batch).',
  },
  { key: 'seqLen', label: 'Sequence length', rule: 'seqLen', help: 'Tokens per packed training sequence (at most the model’s positions).' },
  {
    key: 'learningRate',
    label: 'Learning rate',
    rule: 'positive',
    step: '0.0005',
    help: 'AdamW’s learning rate for the transform’s parameters (the base model stays frozen).',
  },
  { key: 'maxSteps', label: 'Steps', rule: 'count', help: 'Optimizer steps before the run finishes (Stop ends it earlier).' },
  {
    key: 'evaluateEvery',
    label: 'Evaluate every',
    rule: 'countOrZero',
    help: 'Measure NN-FR and top-1 agreement on held-out text every this many steps (0: never).',
  },
];

/** Starting values of the run's settings, sized for the default model on a laptop GPU. */
export const RUN_DEFAULTS: Readonly<Record<string, number>> = {
  batchSize: 4,
  seqLen: 64,
  learningRate: 0.001,
  maxSteps: 300,
  evaluateEvery: 10,
};

const MI: readonly FactoryName[] = ['mutualInformationDistillation', 'mutualInformationCrossEntropyDistillation'];

/** The outcome of checking one field. */
export type Checked = { ok: true; value: number | boolean | null } | { ok: false; error: string };

/**
 * Reads and checks one field's raw input (the text of a number box, or a checkbox's state) with
 * the same rules as the factories and `configure`. Errors are short sentences for the page.
 */
export function checkField(spec: FieldSpec, raw: string | boolean, ctx: ValidationContext): Checked {
  if (spec.rule === 'flag') return { ok: true, value: Boolean(raw) };
  const text = String(raw).trim();
  if (spec.rule === 'layer') {
    if (text === '') return { ok: true, value: null };
    const k = Number(text);
    const last = ctx.numLayers === null ? null : ctx.numLayers - 1;
    if (!Number.isInteger(k) || k < 0 || (last !== null && k > last)) {
      return {
        ok: false,
        error:
          last === null ? 'Must be empty (logits) or a block index ≥ 0.' : `Must be empty (logits) or a block index from 0 to ${last}.`,
      };
    }
    return { ok: true, value: k };
  }
  if (text === '') return { ok: false, error: 'Required.' };
  const v = Number(text);
  if (!Number.isFinite(v)) return { ok: false, error: 'Must be a finite number.' };
  switch (spec.rule) {
    case 'alpha':
      return v >= 0 && v <= 1 ? { ok: true, value: v } : { ok: false, error: 'Must be between 0 and 1.' };
    case 'weight':
      return v >= 0 ? { ok: true, value: v } : { ok: false, error: 'Must be 0 or more.' };
    case 'positive':
      return v > 0 ? { ok: true, value: v } : { ok: false, error: 'Must be greater than 0.' };
    case 'count':
      return Number.isInteger(v) && v >= 1 ? { ok: true, value: v } : { ok: false, error: 'Must be a whole number ≥ 1.' };
    case 'countOrZero':
      return Number.isInteger(v) && v >= 0 ? { ok: true, value: v } : { ok: false, error: 'Must be a whole number ≥ 0.' };
    case 'seqLen': {
      const max = ctx.maxPositions;
      if (!Number.isInteger(v) || v < 2 || (max !== null && v > max)) {
        return { ok: false, error: max === null ? 'Must be a whole number ≥ 2.' : `Must be a whole number from 2 to ${max}.` };
      }
      return { ok: true, value: v };
    }
    case 'batchSize':
      if (!Number.isInteger(v) || v < 1) return { ok: false, error: 'Must be a whole number ≥ 1.' };
      if (MI.includes(ctx.factory) && v % 2 !== 0) return { ok: false, error: 'Must be even for the mutual-information factories.' };
      return { ok: true, value: v };
  }
}
