/**
 * The {@link Trainer}'s checkpoint format, encoded and decoded without touching the GPU: the
 * trainer reads its state into a {@link TrainerCheckpoint} and applies a decoded one.
 *
 * A checkpoint is safetensors bytes: the cloak's weights (`cloak.<name>`) and AdamW's moments
 * (`optimizer.state.<i>.exp_avg`, `.exp_avg_sq`) as F32 tensors; the base model's fingerprint
 * (`sgt_model`), the cloak's options (`sgt_cloak`), the factory (`sgt_factory`) and its options
 * (`sgt_factory_options`), and the counters (`sgt_state`: step, optimizer step, per-parameter
 * optimizer steps and group rates, data position, noise-generator position) in the metadata, as
 * JSON strings: integers up to 2^53 that an F32 tensor could not hold exactly.
 *
 * {@link encodeCloakWeights} writes the cloak alone (no optimizer state), for use outside training.
 *
 * @see Trainer.checkpoint
 */
import { fmtShape } from '../tensor/tensor';
import type { AdamWParamState, AdamWState } from '../optim/adamw';
import type { ModelConfig } from '../models/config';
import { parseSafetensors, toFloat32 } from '../models/safetensors';
import { type SafetensorsWriteTensor, writeSafetensors } from '../models/safetensorsWriter';

/** What a checkpoint records of the base model: a checkpoint resumes only on the same one. */
export interface ModelFingerprint {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
}

/** The {@link ModelFingerprint} of a model's configuration (also the `sgt_model` of a cloak's safetensors). */
export function modelFingerprint(c: Pick<ModelConfig, keyof ModelFingerprint>): ModelFingerprint {
  return { modelType: c.modelType, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize, numLayers: c.numLayers, numHeads: c.numHeads };
}

/** Where the data iterator stands: the epoch and the next batch in it. */
export interface DataPosition {
  epoch: number;
  batch: number;
}

/** The noise generator's position (`NoiseMaskedNoisyTransformerModel.rngState`). */
export interface RngPosition {
  seed: number;
  offset: number;
}

/** One cloak parameter: its name in `namedParameters()`, shape and values. */
export interface NamedWeights {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

/** Everything a checkpoint holds, as the trainer reads it off its state. */
export interface TrainerCheckpoint {
  model: ModelFingerprint;
  /** The cloak's resolved options. */
  cloak: unknown;
  factory: string;
  factoryOptions: Record<string, unknown>;
  /** Optimizer steps done. */
  step: number;
  data: DataPosition;
  rng: RngPosition;
  /** The cloak's parameters, in `namedParameters()` order (the optimizer's order too). */
  weights: NamedWeights[];
  optimizer: AdamWState;
}

/** What a checkpoint must match to be loaded: the model, the cloak's options and its parameters' names and shapes, in order. */
export interface CheckpointTarget {
  model: ModelFingerprint;
  cloak: unknown;
  parameters: readonly { name: string; shape: readonly number[] }[];
}

/** A checked checkpoint, ready to apply: weights in the target's parameter order. */
export interface DecodedCheckpoint {
  step: number;
  data: DataPosition;
  rng: RngPosition;
  weights: Float32Array[];
  optimizer: AdamWState;
}

/** The counters of `sgt_state`, as stored. */
interface CheckpointCounters {
  step: number;
  optimizerStep: number;
  parameterSteps: number[];
  optimizerGroups: { lr: number; weightDecay: number }[];
  data: DataPosition;
  rng: RngPosition;
}

/** Encodes `c` as safetensors bytes (see the module's description). */
export function encodeCheckpoint(c: TrainerCheckpoint): Uint8Array {
  const tensors: Record<string, SafetensorsWriteTensor> = {};
  for (const w of c.weights) tensors[`cloak.${w.name}`] = { dtype: 'F32', shape: [...w.shape], data: w.data };
  c.optimizer.params.forEach((p, i) => {
    tensors[`optimizer.state.${i}.exp_avg`] = { dtype: 'F32', shape: p.shape, data: p.m };
    tensors[`optimizer.state.${i}.exp_avg_sq`] = { dtype: 'F32', shape: p.shape, data: p.v };
  });
  const counters: CheckpointCounters = {
    step: c.step,
    optimizerStep: c.optimizer.step,
    parameterSteps: c.optimizer.params.map((p) => p.step),
    optimizerGroups: c.optimizer.groups,
    data: { epoch: c.data.epoch, batch: c.data.batch },
    rng: { seed: c.rng.seed, offset: c.rng.offset },
  };
  return writeSafetensors(tensors, {
    format: 'pt',
    sgt_model: JSON.stringify(c.model),
    sgt_cloak: JSON.stringify(c.cloak),
    sgt_factory: c.factory,
    sgt_factory_options: JSON.stringify(c.factoryOptions),
    sgt_state: JSON.stringify(counters),
  });
}

/**
 * Parses and checks a checkpoint against `target`: the same base model and cloak options, every
 * tensor present with its parameter's shape, and counters that are non-negative integers. Throws
 * (prefixed by `where`) on the first problem; changes nothing. The optimizer state's own
 * consistency (group count, rates) is left to `AdamW.loadState`, which also checks before changing.
 */
export function decodeCheckpoint(
  bytes: Uint8Array | ArrayBuffer,
  target: CheckpointTarget,
  where = 'Trainer.loadCheckpoint',
): DecodedCheckpoint {
  const file = parseSafetensors(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  const meta = file.metadata;
  const model = JSON.stringify(target.model);
  if (meta.sgt_model !== model) {
    throw new Error(`${where}: the checkpoint is from another model (${meta.sgt_model ?? 'unknown'}); this trainer's model is ${model}`);
  }
  const cloak = JSON.stringify(target.cloak);
  if (meta.sgt_cloak !== cloak) {
    throw new Error(
      `${where}: the checkpoint is from another cloak configuration (${meta.sgt_cloak ?? 'unknown'}); this trainer's is ${cloak}`,
    );
  }
  const counters = parseCounters(meta.sgt_state, where);
  const tensorOf = (name: string, shape: readonly number[]): Float32Array => {
    const entry = file.tensors.get(name);
    if (!entry || entry.shape.join() !== shape.join())
      throw new Error(`${where}: tensor '${name}' is missing or mis-shaped (expected ${fmtShape(shape)})`);
    return Float32Array.from(toFloat32(entry));
  };
  const weights = target.parameters.map((p) => tensorOf(`cloak.${p.name}`, p.shape));
  const params: AdamWParamState[] = target.parameters.map((p, i) => ({
    shape: [...p.shape],
    step: counters.parameterSteps?.[i] ?? 0,
    m: tensorOf(`optimizer.state.${i}.exp_avg`, p.shape),
    v: tensorOf(`optimizer.state.${i}.exp_avg_sq`, p.shape),
  }));
  return {
    step: counters.step,
    data: { epoch: counters.data.epoch, batch: counters.data.batch },
    rng: { seed: counters.rng.seed, offset: counters.rng.offset },
    weights,
    optimizer: { step: counters.optimizerStep, groups: counters.optimizerGroups, params },
  };
}

/** `sgt_state`, parsed, with its counters checked (a missing `parameterSteps` reads as 0 steps). */
function parseCounters(json: string | undefined, where: string): CheckpointCounters {
  let counters: CheckpointCounters;
  try {
    counters = JSON.parse(json ?? '') as CheckpointCounters;
  } catch {
    throw new Error(`${where}: the checkpoint has no valid 'sgt_state' metadata`);
  }
  const bad = (key: string, value: unknown): never => {
    throw new Error(`${where}: the checkpoint's 'sgt_state' metadata has no valid '${key}' (got ${JSON.stringify(value) ?? 'nothing'})`);
  };
  const count = (key: string, value: unknown) => {
    if (!Number.isSafeInteger(value) || (value as number) < 0) bad(key, value);
  };
  if (counters === null || typeof counters !== 'object') bad('step', counters);
  count('step', counters.step);
  count('optimizerStep', counters.optimizerStep);
  if (counters.parameterSteps !== undefined) {
    if (!Array.isArray(counters.parameterSteps)) bad('parameterSteps', counters.parameterSteps);
    counters.parameterSteps.forEach((s, i) => {
      count(`parameterSteps[${i}]`, s);
    });
  }
  if (!Array.isArray(counters.optimizerGroups)) bad('optimizerGroups', counters.optimizerGroups);
  if (counters.data === null || typeof counters.data !== 'object') bad('data', counters.data);
  count('data.epoch', counters.data.epoch);
  count('data.batch', counters.data.batch);
  if (counters.rng === null || typeof counters.rng !== 'object') bad('rng', counters.rng);
  count('rng.seed', counters.rng.seed);
  count('rng.offset', counters.rng.offset);
  return counters;
}

/** What {@link encodeCloakWeights} writes: the cloak alone, for use outside training. */
export interface CloakExport {
  /** The cloak's parameters, in `namedParameters()` order. */
  weights: NamedWeights[];
  /** The cloak's resolved options. */
  cloak: unknown;
  model: ModelFingerprint;
  factory: string;
  /** Optimizer steps the cloak was trained for. */
  step: number;
}

/**
 * The cloak's weights alone as safetensors bytes, F32, under the names a PyTorch state dict of
 * the transform would use (`input_projection.weight`, `encoder.layers.0.self_attn.q_proj.weight`,
 * ...); the metadata records the cloak's options (`sgt_cloak`), the base model (`sgt_model`), the
 * factory (`sgt_factory`) and the step (`sgt_step`).
 */
export function encodeCloakWeights(c: CloakExport): Uint8Array {
  const tensors: Record<string, SafetensorsWriteTensor> = {};
  for (const w of c.weights) tensors[w.name] = { dtype: 'F32', shape: [...w.shape], data: w.data };
  return writeSafetensors(tensors, {
    format: 'pt',
    sgt_cloak: JSON.stringify(c.cloak),
    sgt_model: JSON.stringify(c.model),
    sgt_factory: c.factory,
    sgt_step: String(c.step),
  });
}
