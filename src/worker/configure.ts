/**
 * What `TrainerService.configure` does, apart from the service's state: checks the
 * {@link TrainingConfig}, builds the data (a corpus tokenized by the model's tokenizer, or
 * pre-tokenized documents), splits off the held-out sequences, and creates the {@link Trainer}.
 */
import type { CausalLM } from '../models/causalLM';
import type { Tokenizer } from '../text/tokenizer';
import { packSequences, textDataset, trainHeldOutSplit, type PackedSequence } from '../text/data';
import { DEFAULT_FACTORY_OPTIONS, FACTORY_NAMES, RECOMMENDED_RUNS, batchSizeError, isFactoryName } from '../factories/options';
import { scheduleForRun } from '../factories/schedule';
import { Trainer } from '../train/trainer';
import { checkMemory, weightDtypes, type MemoryEstimate } from '../train/memory';
import { getContext } from '../gpu/context';
import { isSgtError } from '../gpu/errors';
import { type ConfigureSummary, type ModelSummary, type TrainingConfig, fail } from './api';

/** The loaded model and what comes with it, as `configure()` reads them. */
export interface ConfigureSource {
  model: CausalLM;
  tokenizer: Tokenizer | null;
  /** Which tokenizer `tokenizer` is. */
  tokenizerKind: ModelSummary['tokenizer'] | undefined;
  /** The model's `config.json` (pad/EOS ids for pre-tokenized data). */
  rawConfig: unknown;
}

/** A configured trainer with the run's limits and the summary `configure()` returns. */
export interface ConfiguredTrainer {
  trainer: Trainer;
  /** The configuration kept for the run (the corpus dropped, defaults filled in). */
  config: TrainingConfig;
  /** The step a run finishes at (Infinity: until `stop()`). */
  maxSteps: number;
  summary: ConfigureSummary;
}

/** The data and run options checked against the model, with their defaults. */
interface RunLimits {
  seqLen: number;
  heldOutFraction: number;
  evaluateEvery: number;
  maxSteps: number | undefined;
}

const M = 'configure';

/** Pad/BOS/EOS ids from a raw `config.json`, for pre-tokenized data (HF writes them as a number or a list). */
function configTokenId(config: unknown, key: string): number | undefined {
  if (config === null || typeof config !== 'object') return undefined;
  let v = (config as Record<string, unknown>)[key];
  if (Array.isArray(v)) v = v[0];
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** Checks the factory, batch size, lengths, held-out share and run limits (the trainer checks the rest). */
function checkLimits(config: TrainingConfig, model: CausalLM): RunLimits {
  if (!isFactoryName(config.factory))
    fail(M, `'factory' must be one of ${FACTORY_NAMES.join(', ')}, got ${String(config.factory)}`, 'INVALID_OPTION');
  const batchError = batchSizeError(config.factory, config.batchSize, "'batchSize'");
  if (batchError) fail(M, batchError, 'INVALID_OPTION');
  const { seqLen } = config;
  if (typeof seqLen !== 'number' || !Number.isInteger(seqLen) || seqLen < 2)
    fail(M, `'seqLen' must be an integer >= 2, got ${String(seqLen)}`, 'INVALID_OPTION');
  if (seqLen > model.config.maxPositions)
    fail(M, `'seqLen' (${seqLen}) exceeds the model's ${model.config.maxPositions} positions`, 'INVALID_OPTION');
  const heldOutFraction = config.heldOutFraction ?? 0.1;
  if (typeof heldOutFraction !== 'number' || !(heldOutFraction >= 0 && heldOutFraction < 1))
    fail(M, `'heldOutFraction' must be in [0, 1), got ${String(heldOutFraction)}`, 'INVALID_OPTION');
  const evaluateEvery = config.evaluateEvery ?? 0;
  if (!Number.isInteger(evaluateEvery) || evaluateEvery < 0)
    fail(M, `'evaluateEvery' must be an integer >= 0, got ${String(evaluateEvery)}`, 'INVALID_OPTION');
  if (config.evaluateBatches !== undefined && !(Number.isInteger(config.evaluateBatches) && config.evaluateBatches >= 1)) {
    fail(M, `'evaluateBatches' must be an integer >= 1, got ${String(config.evaluateBatches)}`, 'INVALID_OPTION');
  }
  if (config.evaluateAtStart !== undefined && typeof config.evaluateAtStart !== 'boolean')
    fail(M, `'evaluateAtStart' must be true or false, got ${String(config.evaluateAtStart)}`, 'INVALID_OPTION');
  const attack = config.attackAtEnd;
  if (attack !== undefined && typeof attack !== 'boolean' && (attack === null || typeof attack !== 'object' || Array.isArray(attack)))
    fail(M, `'attackAtEnd' must be true, false or an object of attack options, got ${String(attack)}`, 'INVALID_OPTION');
  const maxSteps = config.maxSteps ?? config.totalSteps;
  if (maxSteps !== undefined && !(Number.isInteger(maxSteps) && maxSteps >= 1))
    fail(M, `'maxSteps' must be an integer >= 1, got ${String(maxSteps)}`, 'INVALID_OPTION');
  return { seqLen, heldOutFraction, evaluateEvery, maxSteps };
}

/** The packed sequences of `config.text` (tokenized) or `config.tokens` (as given), and where their ids came from. */
function buildData(
  config: TrainingConfig,
  seqLen: number,
  source: ConfigureSource,
): { sequences: PackedSequence[]; kind: ConfigureSummary['tokenizer'] } {
  const hasText = config.text !== undefined;
  const hasTokens = config.tokens !== undefined;
  if (hasText === hasTokens)
    fail(M, "give exactly one of 'text' (a corpus to tokenize) and 'tokens' (pre-tokenized documents)", 'INVALID_OPTION');
  const vocabSize = source.model.config.vocabSize;
  if (hasTokens) {
    if (!Array.isArray(config.tokens) || (config.tokens as unknown[]).some((d) => !Array.isArray(d) && !(d instanceof Int32Array))) {
      fail(M, "'tokens' must be an array of documents, each an array of token ids", 'INVALID_OPTION');
    }
    const eos = configTokenId(source.rawConfig, 'eos_token_id');
    const padId = configTokenId(source.rawConfig, 'pad_token_id') ?? eos ?? 0;
    const sequences = packSequences(config.tokens!, {
      seqLen,
      padId: padId < vocabSize ? padId : 0,
      vocabSize,
      noiseMask: config.noiseMask,
    });
    return { sequences, kind: 'pretokenized' };
  }
  if (!source.tokenizer) {
    fail(
      M,
      `the model ships no tokenizer and its vocabulary (${vocabSize} ids) is too small for the byte-level fallback (256 bytes + BOS/EOS/PAD = 259 ids): pass tokenizerJson to loadModel(), or pre-tokenized 'tokens' instead of 'text'`,
      'INVALID_OPTION',
    );
  }
  const text = config.text!;
  if (typeof text !== 'string' && !(Array.isArray(text) && text.every((t) => typeof t === 'string')))
    fail(M, "'text' must be a string or an array of strings", 'INVALID_OPTION');
  const sequences = textDataset(text, source.tokenizer!, { seqLen, vocabSize, noiseMask: config.noiseMask });
  return { sequences, kind: source.tokenizerKind === 'huggingface' ? 'huggingface' : 'byte' };
}

/**
 * The run's GPU memory estimate, checked against the device's buffer and binding limits and the
 * `memoryBudget` before the trainer makes anything on the GPU: a run that cannot fit is refused
 * with what does not fit and what to lower (`LIMIT_EXCEEDED`). Null when an option is bad (the
 * trainer then names it).
 */
function checkRunMemory(config: TrainingConfig, factoryOptions: Record<string, unknown>, model: CausalLM): MemoryEstimate | null {
  const budget = config.memoryBudget;
  if (budget !== undefined && !(typeof budget === 'number' && budget > 0)) {
    fail(M, `'memoryBudget' must be a positive number of bytes, got ${String(budget)}`, 'INVALID_OPTION');
  }
  const ctx = getContext();
  try {
    return checkMemory(
      model.config,
      {
        batchSize: config.batchSize,
        seqLen: config.seqLen,
        factory: config.factory,
        factoryOptions,
        cloak: config.cloak,
        accumulationSteps: config.accumulationSteps,
        fusedHead: config.fusedHead,
        dtype: weightDtypes(model),
        bindingLimit: ctx.bindingLimit,
      },
      { maxBufferSize: ctx.limits.maxBufferSize, bindingLimit: ctx.bindingLimit, budget },
    );
  } catch (e) {
    if (isSgtError(e, 'LIMIT_EXCEEDED')) fail(M, e.message, 'LIMIT_EXCEEDED');
    // An option the estimate cannot read: the trainer names it next, in its own words.
    return null;
  }
}

/**
 * The factory's recommended run settings (`RECOMMENDED_RUNS`) for what `config` leaves out: the
 * learning rate, and the privacy-weight schedule with its ramp a share of the run's `maxSteps`
 * (no schedule for a run without an end; `privacySchedule: null` asks for none).
 */
function recommendedRunDefaults(
  config: TrainingConfig,
  maxSteps: number | undefined,
): Pick<TrainingConfig, 'learningRate' | 'privacySchedule'> {
  // An unknown factory is the trainer's to name.
  if (!isFactoryName(config.factory)) return {};
  const r = RECOMMENDED_RUNS[config.factory];
  const schedule = maxSteps === undefined ? null : scheduleForRun(r.privacySchedule, r.privacyRamp, maxSteps);
  return {
    learningRate: config.learningRate ?? r.learningRate,
    privacySchedule: config.privacySchedule !== undefined ? config.privacySchedule : schedule,
  };
}

/** The check `configure()` makes on its argument before taking the service's lock. */
export function checkConfigureArg(config: TrainingConfig): void {
  if (config === null || typeof config !== 'object')
    fail(M, 'expected an object { factory, batchSize, seqLen, text | tokens, ... }', 'INVALID_OPTION');
}

/**
 * Checks `config` (an object: see {@link checkConfigureArg}), builds the data and a new {@link Trainer} (cloak, loss factory with
 * `factoryOptions` merged over the defaults, AdamW). Throws the service's errors; creates nothing
 * that outlives a throw.
 */
export function configureTrainer(config: TrainingConfig, source: ConfigureSource): ConfiguredTrainer {
  const { seqLen, heldOutFraction, evaluateEvery, maxSteps } = checkLimits(config, source.model);
  const { sequences, kind } = buildData(config, seqLen, source);
  const seed = config.seed ?? 0;
  const split = heldOutFraction > 0 ? trainHeldOutSplit(sequences, heldOutFraction, seed) : { train: sequences, heldOut: [] };
  if (split.train.length < config.batchSize) {
    fail(
      M,
      `the data packs into ${sequences.length} sequences of ${seqLen} tokens, ${split.train.length} of them for training: fewer than 'batchSize' (${config.batchSize}). Give more data, a smaller seqLen or batchSize, or a lower heldOutFraction`,
      'INVALID_OPTION',
    );
  }
  const factoryOptions = { ...DEFAULT_FACTORY_OPTIONS[config.factory], ...(config.factoryOptions ?? {}) };
  const memory = checkRunMemory(config, factoryOptions, source.model);
  const run = recommendedRunDefaults(config, maxSteps);
  const trainer = new Trainer(source.model, split, { ...config, factoryOptions, ...run });
  // The corpus is not kept: the packed sequences live in the trainer.
  const { text: _text, tokens: _tokens, ...kept } = config;
  let cloakParameterCount = 0;
  for (const t of trainer.transform.parameters()) cloakParameterCount += t.size;
  return {
    trainer,
    // The same factory with its own options, defaults merged in (a union TypeScript cannot follow through the spread).
    config: { ...kept, factoryOptions, evaluateEvery, ...run } as TrainingConfig,
    maxSteps: maxSteps ?? Infinity,
    summary: {
      tokenizer: kind,
      trainSequences: split.train.length,
      heldOutSequences: split.heldOut.length,
      seqLen,
      trainTokens: split.train.reduce((n, s) => n + s.attentionMask.reduce((a, b) => a + b, 0), 0),
      factoryOptions,
      learningRate: trainer.options.learningRate,
      privacySchedule: trainer.options.privacySchedule,
      cloak: { ...trainer.transform.options },
      cloakParameterCount,
      memory,
      maxSteps: maxSteps ?? null,
    },
  };
}
