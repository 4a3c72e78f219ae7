/**
 * The training form's fields: the four loss factories' options, generated from the factories'
 * option tables (`FACTORY_OPTIONS` in `src/factories/options.ts`: labels, help texts, kinds,
 * starting values and batch rules), and the run's settings. Values are checked as they are typed
 * with the same value checks as the factories (`acceptsOptionValue`) and the same batch rule as
 * the trainer (`batchSizeError`), so that the page catches a bad value before training starts.
 */
import {
  FACTORY_NAMES,
  FACTORY_OPTIONS,
  RECOMMENDED_RUNS,
  acceptsOptionValue,
  batchSizeError,
  factoryEntry,
  initialValue,
  needsEvenBatch,
  type FactoryName,
  type OptionKind,
  type OptionValue,
} from '../../src/factories/options';

/** How a field's text is read and checked: a factory option's kind, or one of the run's settings. */
export type Rule =
  | OptionKind
  /** An integer >= 1. */
  | 'count'
  /** An integer >= 0. */
  | 'countOrZero'
  /** An integer in 2..maxPositions. */
  | 'seqLen'
  /** An integer >= 1 that the chosen factory's batch rule accepts. */
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
  /** The value shown before the user types (a factory option's starting value or default). */
  initial?: OptionValue;
}

/** What the checks need to know about the loaded model and the chosen factory. */
export interface ValidationContext {
  numLayers: number | null;
  maxPositions: number | null;
  factory: FactoryName;
}

/** A factory as the picker shows it. */
export interface FactorySpec {
  name: FactoryName;
  label: string;
  /** The loss, in one line. */
  formula: string;
  fields: FieldSpec[];
}

/** The four factories, in the order of their tables, each option a field (its row in the table). */
export const FACTORY_SPECS: readonly FactorySpec[] = FACTORY_NAMES.map((name) => {
  const entry = factoryEntry(name);
  return {
    name,
    label: entry.label,
    formula: entry.formula,
    fields: entry.options.map((row) => ({
      key: row.name,
      label: row.label,
      rule: row.kind,
      help: row.help,
      step: row.step,
      initial: initialValue(row),
    })),
  };
});

const evenBatchFactories = FACTORY_NAMES.filter(needsEvenBatch);
const evenBatchReasons = [
  ...new Set(evenBatchFactories.map((f) => FACTORY_OPTIONS[f].batch).flatMap((rule) => (rule.even ? [rule.reason] : []))),
];

/** The run's settings (passed to `configure`). */
export const RUN_FIELDS: readonly FieldSpec[] = [
  {
    key: 'batchSize',
    label: 'Batch size',
    rule: 'batchSize',
    help: `Sequences per optimizer step (even for ${evenBatchFactories.map((f) => FACTORY_OPTIONS[f].label).join(' and ')}: ${evenBatchReasons.join('; ')}).`,
  },
  { key: 'seqLen', label: 'Sequence length', rule: 'seqLen', help: 'Tokens per packed training sequence (at most the model’s positions).' },
  {
    key: 'learningRate',
    label: 'Learning rate',
    rule: 'positive',
    step: '0.0005',
    help: 'AdamW’s learning rate for the transform’s parameters (the base model stays frozen). Starts at the factory’s recommended rate.',
  },
  {
    key: 'privacyRamp',
    label: 'Privacy ramp (share of steps)',
    rule: 'alpha',
    step: '0.05',
    help:
      'The privacy terms’ weights start at 0 and reach theirs over this share of the steps (the factory’s recommended ' +
      'schedule shape; 0: their full weights from the first step), so that the transform starts at the utility end.',
  },
  { key: 'maxSteps', label: 'Steps', rule: 'count', help: 'Optimizer steps before the run finishes (Stop ends it earlier).' },
  {
    key: 'evaluateEvery',
    label: 'Evaluate every',
    rule: 'countOrZero',
    help: 'Measure NN-FR and top-1 agreement on held-out text every this many steps (0: never).',
  },
  {
    key: 'attackSteps',
    label: 'Learned attack steps',
    rule: 'countOrZero',
    help:
      'When the run finishes, train the learned inversion attacks (a linear classifier and a small network over neighbouring ' +
      'positions, through the transform and on clean embeddings) for this many steps each and show their token recovery (0: skip).',
  },
  {
    key: 'memoryBudgetMiB',
    label: 'GPU memory budget (MiB)',
    rule: 'countOrZero',
    help:
      'The most GPU memory the run may hold at once (0: no budget). The run is estimated before it starts (weights, ' +
      'activations, optimizer state) and refused, saying what to lower, when it would need more or exceed a device limit.',
  },
];

/** The run settings that follow the chosen factory's recommended ones (`RECOMMENDED_RUNS`) until the user types one. */
export const FACTORY_RUN_DEFAULTS = (factory: FactoryName): Readonly<Record<string, number>> => ({
  learningRate: RECOMMENDED_RUNS[factory].learningRate,
  privacyRamp: RECOMMENDED_RUNS[factory].privacyRamp,
});

/** Starting values of the run's settings, sized for the default model on a laptop GPU (for the first factory shown). */
export const RUN_DEFAULTS: Readonly<Record<string, number>> = {
  batchSize: 4,
  seqLen: 64,
  ...FACTORY_RUN_DEFAULTS('crossEntropyDistillation'),
  maxSteps: 300,
  evaluateEvery: 10,
  attackSteps: 30,
  memoryBudgetMiB: 0,
};

/** What the page says when a factory option's value is out of its kind's range. */
const OUT_OF_RANGE: Readonly<Record<Exclude<OptionKind, 'flag' | 'layer'>, string>> = {
  alpha: 'Must be between 0 and 1.',
  weight: 'Must be 0 or more.',
  positive: 'Must be greater than 0.',
};

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
    const k = text === '' ? null : Number(text);
    const last = ctx.numLayers === null ? null : ctx.numLayers - 1;
    if (!acceptsOptionValue('layer', k, ctx.numLayers)) {
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
    case 'weight':
    case 'positive':
      return acceptsOptionValue(spec.rule, v) ? { ok: true, value: v } : { ok: false, error: OUT_OF_RANGE[spec.rule] };
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
      if (batchSizeError(ctx.factory, v, 'batchSize') !== null) {
        const rule = FACTORY_OPTIONS[ctx.factory].batch;
        return { ok: false, error: `Must be even for this factory${rule.even ? `: ${rule.reason}` : ''}.` };
      }
      return { ok: true, value: v };
  }
}
