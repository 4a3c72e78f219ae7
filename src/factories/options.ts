/**
 * The loss factories' options as data: one table per factory ({@link FACTORY_OPTIONS}), each row an
 * option's camelCase name, its name in the reference Python API (`distillation-api-reference.txt`),
 * its kind (which values it takes), its default or starting value, and its help text. Everything
 * else is generated from these tables: the factories' option types ({@link FactoryOptionsFor}) and
 * parsing ({@link parseFactoryOptions}, with its error messages), the worker's and the CLI's
 * starting options ({@link DEFAULT_FACTORY_OPTIONS}), the CLI's help ({@link factoryOptionsHelp}),
 * the batch-size rule of each factory ({@link batchSizeError}) and the demo's form fields.
 *
 * This module imports nothing, so that a page can read the tables without loading the library.
 */
import { SgtError } from '../gpu/errors';
import type { PrivacyScheduleShape } from './schedule';

/**
 * Which values an option takes:
 * - `layer`: null (distil the logits) or a decoder block index in 0..numLayers-1;
 * - `alpha`: a number in [0, 1];
 * - `weight`: a finite number >= 0 (every loss weight);
 * - `positive`: a finite number > 0;
 * - `flag`: true or false.
 */
export type OptionKind = 'layer' | 'alpha' | 'weight' | 'positive' | 'flag';

/** The value type of an option of kind `K`. */
export type OptionValueOf<K extends OptionKind> = K extends 'flag' ? boolean : K extends 'layer' ? number | null : number;

/** Any option's value. */
export type OptionValue = number | boolean | null;

/** What every row of a factory's table says, whether the option is required or not. */
export interface OptionDefinition {
  /** The option's name, the reference's argument name in camelCase. */
  readonly name: string;
  /** The argument's name in the reference Python API. */
  readonly pythonName: string;
  /** Which values it takes (see {@link OptionKind}). */
  readonly kind: OptionKind;
  /** A short label (the demo's form shows it). */
  readonly label: string;
  /** The reference's description of the argument. */
  readonly help: string;
  /** Step of a number input's arrows (the demo's form). */
  readonly step?: string;
}

/**
 * A required option: the caller must give it, so the table holds a sensible starting value,
 * which the worker, the CLI and the demo offer ({@link DEFAULT_FACTORY_OPTIONS}).
 */
export interface RequiredOptionSpec extends OptionDefinition {
  /** The value the worker, the CLI and the demo start from. */
  readonly start: OptionValue;
  readonly default?: undefined;
}

/** An optional option: the factory takes the reference's default when it is not given. */
export interface OptionalOptionSpec extends OptionDefinition {
  /** The reference's default. */
  readonly default: OptionValue;
  readonly start?: undefined;
}

/** One row of a factory's table. */
export type OptionSpec = RequiredOptionSpec | OptionalOptionSpec;

/**
 * The micro-batch size a factory needs: any size, or an even size of at least 2 (and why, in a
 * few words, for the messages).
 */
export type BatchRule = { readonly even: false } | { readonly even: true; readonly reason: string };

/**
 * The run settings recommended with a factory for the default model (`models/default`), besides
 * its options' `start` values: what the CLI, the worker and the demo use when the caller does not
 * say. They come from `npm run privacy-frontier` (docs/measurements/privacy-frontier.md).
 */
export interface RecommendedRun {
  /** AdamW's peak learning rate. */
  readonly learningRate: number;
  /** The privacy-weight schedule's shape (see `./schedule`). */
  readonly privacySchedule: PrivacyScheduleShape;
  /** Its ramp as a share of the run's steps (the ramp takes `round(share * steps)` steps). */
  readonly privacyRamp: number;
}

/** One factory's entry: its names, how the demo presents it, its batch rule and its options' table. */
export interface FactoryEntry {
  /** The exported function's name (the prefix of its error messages). */
  readonly functionName: string;
  /** The function's name in the reference Python API. */
  readonly pythonName: string;
  /** A short label (the demo's factory picker). */
  readonly label: string;
  /** The loss, in one line. */
  readonly formula: string;
  /** The micro-batch sizes it accepts. */
  readonly batch: BatchRule;
  /** The options, in the reference's argument order. */
  readonly options: readonly OptionSpec[];
  /** The learning rate and privacy-weight schedule recommended with the options' `start` values. */
  readonly recommended: RecommendedRun;
}

const ANY_BATCH = { even: false } as const;
const EVEN_BATCH = { even: true, reason: 'mutual information pairs two halves of the batch' } as const;

/**
 * Options that several factories take, with the same meaning: a factory's row spreads one of these
 * and adds `start` (required there) or `default` (optional there).
 */
const SHARED = {
  distillationLayerIndex: {
    name: 'distillationLayerIndex',
    pythonName: 'distillation_layer_index',
    kind: 'layer',
    label: 'Distillation layer',
    help: 'The index of the decoder layer in the base model at which to perform distillation. When null, the logits are distilled.',
  },
  alpha: {
    name: 'alpha',
    pythonName: 'alpha',
    kind: 'alpha',
    label: 'Alpha (α)',
    step: '0.05',
    help: 'The interpolation factor between the distillation loss (maximizing model similarity) and the Stained Glass Transform loss (maximizing transformation strength). Should be in the range [0, 1], where 0 corresponds to higher model similarity and 1 corresponds to higher transformation strength.',
  },
  inputEmbeddingSimilarityLossWeight: {
    name: 'inputEmbeddingSimilarityLossWeight',
    pythonName: 'input_embedding_similarity_loss_weight',
    kind: 'weight',
    label: 'Input-embedding similarity weight',
    step: '0.1',
    help: 'The weight of the loss component which aims to minimize the similarity of the input embeddings.',
  },
  distillationLayerL2DistanceLossWeight: {
    name: 'distillationLayerL2DistanceLossWeight',
    pythonName: 'distillation_layer_l2_distance_loss_weight',
    kind: 'weight',
    label: 'L2 distance weight',
    step: '0.1',
    help: 'The weight of a subcomponent of the loss component which aims to maximize the similarity of the distillation layer embeddings.',
  },
  inverseL2PowerLawCatalystLossWeight: {
    name: 'inverseL2PowerLawCatalystLossWeight',
    pythonName: 'inverse_l2_power_law_catalyst_loss_weight',
    kind: 'weight',
    label: 'Catalyst loss weight (experimental)',
    step: '0.01',
    help: 'The weight of the inverse l2 power law catalyst loss. This argument is experimental.',
  },
  inverseL2PowerLawCharacteristicLength: {
    name: 'inverseL2PowerLawCharacteristicLength',
    pythonName: 'inverse_l2_power_law_characteristic_length',
    kind: 'positive',
    label: 'Catalyst characteristic length',
    step: '0.1',
    help: 'The parameter modifying the distance between embeddings when computing the inverse l2 power law catalyst loss. This allows the user to account for the data dependent distances between embeddings allowing for the loss to be O(1) when the distances are approximately the same value as the scale. For embeddings this is recommended to be the 5th percentile of the Voronoi l2 distances between embeddings (see `embeddingStats` and `recommendedCharacteristicLength`).',
  },
  inverseL2PowerLawExponentOfDecay: {
    name: 'inverseL2PowerLawExponentOfDecay',
    pythonName: 'inverse_l2_power_law_exponent_of_decay',
    kind: 'positive',
    label: 'Catalyst exponent of decay',
    step: '0.1',
    help: 'The value to inverse exponentiate the computed distance by during the computation of the inverse l2 power law catalyst loss. This value must be positive. This argument is experimental.',
  },
  mutualInformationLossWeight: {
    name: 'mutualInformationLossWeight',
    pythonName: 'mutual_information_loss_weight',
    kind: 'weight',
    label: 'Mutual information weight',
    step: '0.005',
    help: 'The weight of the mutual information loss. Increasing this makes the optimization prefer higher transformation strength.',
  },
  combineNoiseMasksForMutualInformationSubBatches: {
    name: 'combineNoiseMasksForMutualInformationSubBatches',
    pythonName: 'combine_noise_masks_for_mutual_information_sub_batches',
    kind: 'flag',
    label: 'Combine the sub-batches’ noise masks',
    help: 'Whether to only use the features in the noise masks for the two sub-batches which are simultaneously unmasked when computing the mutual information loss.',
  },
  distillationCrossEntropyLossWeight: {
    name: 'distillationCrossEntropyLossWeight',
    pythonName: 'distillation_cross_entropy_loss_weight',
    kind: 'weight',
    label: 'Cross-entropy weight',
    step: '0.1',
    help: 'The weight of the loss component which aims to minimize the difference between the clean and transformed logits.',
  },
  absoluteCosineSimilarityPenaltyWeight: {
    name: 'absoluteCosineSimilarityPenaltyWeight',
    pythonName: 'absolute_cosine_similarity_penalty_weight',
    kind: 'weight',
    label: 'Absolute cosine similarity weight',
    step: '0.1',
    help: 'The weight of the loss component which aims to minimize the absolute value of the similarity of the clean and transformed input embeddings.',
  },
  medianNormPenaltyWeight: {
    name: 'medianNormPenaltyWeight',
    pythonName: 'median_norm_penalty_weight',
    kind: 'weight',
    label: 'Median-norm penalty weight',
    step: '0.05',
    help: 'The weight of the loss component which aims to regularize the mean-shifted input embeddings to have norms near the median norm of the embedding table.',
  },
} as const satisfies Readonly<Record<string, OptionDefinition>>;

/**
 * The four loss factories (LOSSES.md section 4), in that order, each with its table of options in
 * the reference's argument order. The starting values (`start`, for the required options) and each
 * factory's `recommended` run settings are what `npm run privacy-frontier` recommends for the
 * default model (README, "The privacy-utility frontier"); the layer index starts at null (the
 * logits), which every model has. The `default`s are the reference's.
 */
export const FACTORY_OPTIONS = {
  distillation: {
    functionName: 'distillationLossFactory',
    pythonName: 'distillation_loss_factory',
    label: 'Distillation',
    formula: '(1 − α)(w_cos·cosine distance + w_L2·L2 distance) + α(w_std·std-log-ratio + w_sim·input similarity + w_cat·catalyst)',
    batch: ANY_BATCH,
    options: [
      { ...SHARED.distillationLayerIndex, start: null },
      // Small: AdamW moves the scale at its full rate whatever alpha is (README, "Why the layer-distillation factory loses the predictions").
      { ...SHARED.alpha, start: 0.001 },
      {
        name: 'stdLogRatioLossWeight',
        pythonName: 'std_log_ratio_loss_weight',
        kind: 'weight',
        label: 'Std-log-ratio weight',
        step: '0.05',
        help: "The weight of the loss component which aims to maximize the Stained Glass Transform's standard deviations (transformation strength).",
        start: 0.1,
      },
      { ...SHARED.inputEmbeddingSimilarityLossWeight, start: 0.5 },
      {
        name: 'distillationLayerCosineDistanceLossWeight',
        pythonName: 'distillation_layer_cosine_distance_loss_weight',
        kind: 'weight',
        label: 'Cosine distance weight',
        step: '0.1',
        help: 'The weight of the loss component which aims to maximize the similarity of the distillation layer embeddings.',
        start: 1,
      },
      { ...SHARED.distillationLayerL2DistanceLossWeight, default: 0 },
      { ...SHARED.inverseL2PowerLawCatalystLossWeight, default: 0 },
      { ...SHARED.inverseL2PowerLawCharacteristicLength, default: 1 },
      { ...SHARED.inverseL2PowerLawExponentOfDecay, default: 1 },
    ],
    recommended: { learningRate: 1e-3, privacySchedule: 'cosine', privacyRamp: 0.5 },
  },
  mutualInformationDistillation: {
    functionName: 'mutualInformationDistillationLossFactory',
    pythonName: 'mutual_information_distillation_loss_factory',
    label: 'Mutual-information distillation',
    formula: '(1 − α)(cosine distance + w_L2·L2 distance) + α(w_MI·mutual information + w_sim·input similarity + w_cat·catalyst)',
    batch: EVEN_BATCH,
    options: [
      { ...SHARED.distillationLayerIndex, start: null },
      { ...SHARED.alpha, start: 0.01 },
      { ...SHARED.distillationLayerL2DistanceLossWeight, start: 0 },
      { ...SHARED.mutualInformationLossWeight, start: 0.01 },
      { ...SHARED.inverseL2PowerLawCatalystLossWeight, default: 0 },
      { ...SHARED.inverseL2PowerLawCharacteristicLength, default: 1 },
      { ...SHARED.inverseL2PowerLawExponentOfDecay, default: 1 },
      { ...SHARED.inputEmbeddingSimilarityLossWeight, default: 0 },
      { ...SHARED.combineNoiseMasksForMutualInformationSubBatches, default: true },
    ],
    recommended: { learningRate: 1e-3, privacySchedule: 'cosine', privacyRamp: 0.5 },
  },
  crossEntropyDistillation: {
    functionName: 'crossEntropyDistillationFactory',
    pythonName: 'cross_entropy_distillation_factory',
    label: 'Cross-entropy distillation',
    formula: 'w_CE·cross entropy(teacher, student) + w_ACS·|cosine(x, x̃)| + w_MNP·median-norm penalty',
    batch: ANY_BATCH,
    options: [
      { ...SHARED.distillationCrossEntropyLossWeight, start: 1 },
      { ...SHARED.absoluteCosineSimilarityPenaltyWeight, start: 0.5 },
      { ...SHARED.medianNormPenaltyWeight, start: 0.05 },
    ],
    recommended: { learningRate: 1e-3, privacySchedule: 'cosine', privacyRamp: 0.5 },
  },
  mutualInformationCrossEntropyDistillation: {
    functionName: 'mutualInformationCrossEntropyDistillationFactory',
    pythonName: 'mutual_information_cross_entropy_distillation_factory',
    label: 'Mutual-information cross-entropy distillation',
    formula: 'w_MI·mutual information + w_CE·cross entropy + w_ACS·|cosine(x, x̃)| + w_MNP·median-norm penalty',
    batch: EVEN_BATCH,
    options: [
      { ...SHARED.mutualInformationLossWeight, start: 0.01 },
      { ...SHARED.distillationCrossEntropyLossWeight, start: 1 },
      { ...SHARED.absoluteCosineSimilarityPenaltyWeight, start: 0.5 },
      { ...SHARED.medianNormPenaltyWeight, start: 0.05 },
      { ...SHARED.combineNoiseMasksForMutualInformationSubBatches, default: true },
    ],
    recommended: { learningRate: 1e-3, privacySchedule: 'cosine', privacyRamp: 0.5 },
  },
} as const satisfies Readonly<Record<string, FactoryEntry>>;

/** Name of a loss factory. */
export type FactoryName = keyof typeof FACTORY_OPTIONS;

/** Every factory's name, in the order of {@link FACTORY_OPTIONS}. */
export const FACTORY_NAMES: readonly FactoryName[] = Object.freeze(Object.keys(FACTORY_OPTIONS) as FactoryName[]);

/** Whether `name` is one of {@link FACTORY_NAMES}. */
export function isFactoryName(name: unknown): name is FactoryName {
  return typeof name === 'string' && (FACTORY_NAMES as readonly string[]).includes(name);
}

/** The entry of a factory (typed as the general {@link FactoryEntry}). */
export function factoryEntry(factory: FactoryName): FactoryEntry {
  return FACTORY_OPTIONS[factory];
}

// ---------------------------------------------------------------------------------------------
// Types generated from the tables

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type RowOf<F extends FactoryName> = (typeof FACTORY_OPTIONS)[F]['options'][number];

/**
 * The options object factory `F` takes: its required options (rows with a `start`) and, optional,
 * those with a reference `default`. Each option's meaning is its row's `help` in {@link FACTORY_OPTIONS}.
 */
export type FactoryOptionsFor<F extends FactoryName> = Simplify<
  { -readonly [R in RowOf<F> as R extends { readonly start: OptionValue } ? R['name'] : never]: OptionValueOf<R['kind']> } & {
    -readonly [R in RowOf<F> as R extends { readonly default: OptionValue } ? R['name'] : never]?: OptionValueOf<R['kind']>;
  }
>;

/** Every option of factory `F` with its value, defaults filled in (what `getHyperparameters` reports). */
export type ResolvedFactoryOptions<F extends FactoryName> = Simplify<{
  -readonly [R in RowOf<F> as R['name']]: OptionValueOf<R['kind']>;
}>;

// ---------------------------------------------------------------------------------------------
// Checking values (shared by the factories, and by the demo's form as values are typed)

/**
 * Whether `value` is a valid value of an option of kind `kind`. `numLayers` bounds a `layer`
 * index (null: not known yet, any index >= 0 passes).
 */
export function acceptsOptionValue(kind: OptionKind, value: unknown, numLayers: number | null = null): boolean {
  switch (kind) {
    case 'flag':
      return typeof value === 'boolean';
    case 'layer':
      return (
        value === null ||
        (typeof value === 'number' && Number.isInteger(value) && value >= 0 && (numLayers === null || value <= numLayers - 1))
      );
    case 'alpha':
      return typeof value === 'number' && value >= 0 && value <= 1;
    case 'weight':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0;
    case 'positive':
      return typeof value === 'number' && Number.isFinite(value) && value > 0;
  }
}

/** What a kind's values must be, as the factories' error messages say it. */
function mustBe(kind: OptionKind, numLayers: number | null): string {
  switch (kind) {
    case 'flag':
      return 'true or false';
    case 'layer':
      return numLayers === null ? 'null or a block index >= 0' : `null or a block index in 0..${numLayers - 1}`;
    case 'alpha':
      return 'in [0, 1]';
    case 'weight':
      return 'a finite number >= 0';
    case 'positive':
      return 'positive';
  }
}

/** What a kind's values may be, as the CLI's help says it. */
const RANGE: Readonly<Record<OptionKind, string>> = {
  flag: 'true or false',
  layer: 'null (the logits) or a block index',
  alpha: 'in [0, 1]',
  weight: '>= 0',
  positive: '> 0',
};

/**
 * Checks `options` against factory `factory`'s table and returns every option with its value
 * (the reference's defaults filled in), in the table's order. Throws, naming the factory's
 * function and the option, on a value that is not an object, an unknown key (listing the known
 * ones), a missing required option, or a value out of its kind's range.
 *
 * @param numLayers - the base model's decoder blocks, which bound a `layer` option (null: unbounded).
 */
export function parseFactoryOptions<F extends FactoryName>(
  factory: F,
  options: unknown,
  numLayers: number | null = null,
): ResolvedFactoryOptions<F> {
  const entry = factoryEntry(factory);
  const fn = entry.functionName;
  if (!options || typeof options !== 'object') throw new SgtError('INVALID_OPTION', `${fn}: options must be an object`);
  const o = options as Record<string, unknown>;
  const known = entry.options.map((row) => row.name);
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw new SgtError('INVALID_OPTION', `${fn}: unknown option '${key}' (known: ${known.join(', ')})`);
  }
  const out: Record<string, OptionValue> = {};
  for (const row of entry.options) {
    // A layer index may be null (the logits), so only a missing key counts as not given; for the
    // other kinds null counts as not given too.
    const given = row.kind === 'layer' ? row.name in o : o[row.name] !== undefined && o[row.name] !== null;
    const value = given ? o[row.name] : row.default;
    if (value === undefined) {
      throw new SgtError(
        'INVALID_OPTION',
        `${fn}: option '${row.name}' is required${row.kind === 'layer' ? ' (a block index or null)' : ''}`,
      );
    }
    if (!acceptsOptionValue(row.kind, value, numLayers)) {
      throw new SgtError('INVALID_OPTION', `${fn}: option '${row.name}' must be ${mustBe(row.kind, numLayers)}, got ${String(value)}`);
    }
    out[row.name] = value as OptionValue;
  }
  return out as ResolvedFactoryOptions<F>;
}

// ---------------------------------------------------------------------------------------------
// Batch rules

/** Whether factory `factory` needs an even micro-batch (of at least 2). */
export function needsEvenBatch(factory: FactoryName): boolean {
  return factoryEntry(factory).batch.even;
}

/**
 * The error for micro-batch size `batchSize` under factory `factory`'s batch rule, or null when it
 * is allowed: `<subject> must be even and at least 2 for the <factory> factory (<reason>), got <n>`.
 *
 * A size that is not an integer >= 1 is left to the caller's own check (null here).
 *
 * @param subject - what the message calls the size (`'batchSize'`, `the micro-batch size`).
 */
export function batchSizeError(factory: FactoryName, batchSize: number, subject: string): string | null {
  const rule = factoryEntry(factory).batch;
  if (!rule.even || !Number.isInteger(batchSize) || batchSize < 1 || batchSize % 2 === 0) return null;
  return `${subject} must be even and at least 2 for the ${factory} factory (${rule.reason}), got ${batchSize}`;
}

// ---------------------------------------------------------------------------------------------
// Starting options and help

/**
 * The run settings recommended with each factory for the default model (its table's
 * `recommended`), in the order of {@link FACTORY_NAMES}.
 */
export const RECOMMENDED_RUNS: { readonly [F in FactoryName]: RecommendedRun } = Object.freeze(
  Object.fromEntries(FACTORY_NAMES.map((f) => [f, Object.freeze({ ...factoryEntry(f).recommended })])),
) as { readonly [F in FactoryName]: RecommendedRun };

/**
 * Sensible starting options per factory: every required option at its table's `start` value
 * (the recommended weights for the default model; the layer index is null, i.e. the logits,
 * because every model has them). The worker's `configure` and the CLI merge the caller's options over
 * these; the options left out take the reference's defaults in the factory.
 */
export const DEFAULT_FACTORY_OPTIONS: { readonly [F in FactoryName]: Readonly<FactoryOptionsFor<F>> } = Object.freeze(
  Object.fromEntries(
    FACTORY_NAMES.map((f) => [
      f,
      Object.freeze(Object.fromEntries(factoryEntry(f).options.flatMap((row) => (row.start === undefined ? [] : [[row.name, row.start]])))),
    ]),
  ),
) as { readonly [F in FactoryName]: Readonly<FactoryOptionsFor<F>> };

/** The value an option has when the caller does not give it: its starting value or its default. */
export function initialValue(row: OptionSpec): OptionValue {
  return row.start !== undefined ? row.start : row.default;
}

/**
 * The factories' options as the CLI's help lists them: per factory, its reference name and its
 * batch rule, then every option as `name=value` (the value used when not given) with its range,
 * `*` marking the required ones.
 *
 * @param indent - the spaces before each factory's line (the options get two more).
 */
export function factoryOptionsHelp(indent = '    '): string {
  const cell = (row: OptionSpec) => `${row.name}=${JSON.stringify(initialValue(row))}`;
  const width = Math.max(...FACTORY_NAMES.flatMap((f) => factoryEntry(f).options.map((row) => cell(row).length)));
  const lines: string[] = [];
  for (const f of FACTORY_NAMES) {
    const entry = factoryEntry(f);
    lines.push(`${indent}${f}: ${entry.pythonName}`);
    if (entry.batch.even) lines.push(`${indent}  (needs an even batch size: ${entry.batch.reason})`);
    for (const row of entry.options) {
      lines.push(`${indent}  ${cell(row).padEnd(width)}  ${row.start !== undefined ? '*' : ' '} ${RANGE[row.kind]}`);
    }
  }
  return lines.join('\n');
}
