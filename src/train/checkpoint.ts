/**
 * The {@link Trainer}'s checkpoint format, encoded and decoded without touching the GPU: the
 * trainer reads its state into a {@link TrainerCheckpoint} and applies a decoded one.
 *
 * A checkpoint is safetensors bytes: the cloak's weights (`cloak.<name>`) and AdamW's moments
 * (`optimizer.state.<i>.exp_avg`, `.exp_avg_sq`) as F32 tensors; the base model's fingerprint
 * (`sgt_model`), the cloak's options (`sgt_cloak`), the factory (`sgt_factory`) and its options
 * (`sgt_factory_options`), and the counters (`sgt_state`: step, optimizer step, per-parameter
 * optimizer steps and group rates, data position, noise-generator position) in the metadata, as
 * JSON strings: integers up to 2^53 that an F32 tensor could not hold exactly. `sgt_format` is
 * the format's version ({@link CHECKPOINT_FORMAT}) and `sgt_checksum` covers every other metadata
 * entry and every tensor, so a changed byte is found before anything is applied.
 *
 * {@link encodeCloakWeights} writes the cloak alone (no optimizer state), for use outside training.
 *
 * @see Trainer.checkpoint
 */
import { fmtShape } from '../tensor/tensor';
import type { AdamWState } from '../optim/adamw';
import type { ModelConfig } from '../models/config';
import { type SafetensorsFile, parseSafetensors, toFloat32 } from '../models/safetensors';
import { Fnv1a32 } from '../models/digest';
import { type SafetensorsWriteTensor, writeSafetensors } from '../models/safetensorsWriter';
import { SgtError } from '../gpu/errors';

/** The checkpoint format this version writes and reads (`sgt_format`); 2 added the checksum and the base weights' digest. */
export const CHECKPOINT_FORMAT = 2;

/** What a checkpoint records of the base model: a checkpoint resumes only on the same one. */
export interface ModelFingerprint {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** The digest of the base model's weights file (`CausalLM.weightsDigest`). */
  weightsDigest: string;
}

/**
 * The {@link ModelFingerprint} of a model's configuration and weights digest (also the `sgt_model`
 * of a cloak's safetensors).
 */
export function modelFingerprint(
  c: Pick<ModelConfig, Exclude<keyof ModelFingerprint, 'weightsDigest'>>,
  weightsDigest: string,
): ModelFingerprint {
  return {
    modelType: c.modelType,
    vocabSize: c.vocabSize,
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    weightsDigest,
  };
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
  const metadata: Record<string, string> = {
    format: 'pt',
    sgt_format: String(CHECKPOINT_FORMAT),
    sgt_model: JSON.stringify(c.model),
    sgt_cloak: JSON.stringify(c.cloak),
    sgt_factory: c.factory,
    sgt_factory_options: JSON.stringify(c.factoryOptions),
    sgt_state: JSON.stringify(counters),
  };
  const entries = new Map(
    Object.entries(tensors).map(([name, t]) => {
      const data = t.data as Float32Array;
      return [name, { dtype: 'F32', shape: t.shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }];
    }),
  );
  return writeSafetensors(tensors, { ...metadata, sgt_checksum: checkpointChecksum(metadata, entries) });
}

/**
 * The checksum of a checkpoint (`fnv1a32:` and 8 hex digits, see `Fnv1a32`): every metadata entry
 * but `sgt_checksum` itself, and every tensor's name, dtype, shape and bytes, in name order. A
 * flipped byte anywhere in the data or the metadata changes it.
 */
export function checkpointChecksum(
  metadata: Readonly<Record<string, string>>,
  tensors: ReadonlyMap<string, { dtype: string; shape: readonly number[]; bytes: Uint8Array }>,
): string {
  const hash = new Fnv1a32();
  for (const key of Object.keys(metadata).sort()) if (key !== 'sgt_checksum') hash.text(`${key}\0${metadata[key]}`);
  for (const name of [...tensors.keys()].sort()) {
    const { dtype, shape, bytes } = tensors.get(name)!;
    hash.text(`${name}\0${dtype}\0${shape.join(',')}`).bytes(bytes);
  }
  return `fnv1a32:${hash.hex()}`;
}

/** Parses checkpoint bytes; a file that is not safetensors is an invalid checkpoint (same message). */
function parseCheckpointBytes(bytes: Uint8Array | ArrayBuffer): SafetensorsFile {
  try {
    return parseSafetensors(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  } catch (e) {
    throw new SgtError('CHECKPOINT_INVALID', (e as Error).message, { cause: e });
  }
}

/**
 * Parses and checks a checkpoint against `target`, all of it before anything is applied: the
 * format version, the checksum, the same base model (architecture and weights) and cloak
 * options, every metadata field present and typed, counters that are non-negative integers, and
 * exactly the expected tensors, F32, with their parameters' shapes. Throws (prefixed by `where`)
 * on the first problem; changes nothing. The optimizer's group count is left to
 * `AdamW.loadState`, which checks everything before it changes anything.
 */
export function decodeCheckpoint(
  bytes: Uint8Array | ArrayBuffer,
  target: CheckpointTarget,
  where = 'Trainer.loadCheckpoint',
): DecodedCheckpoint {
  const file = parseCheckpointBytes(bytes);
  const meta = file.metadata;
  checkIntegrity(file, where);
  checkModel(meta.sgt_model, target.model, where);
  const cloak = JSON.stringify(target.cloak);
  if (meta.sgt_cloak !== cloak) {
    throw new SgtError(
      'CHECKPOINT_INVALID',
      `${where}: the checkpoint is from another cloak configuration (${meta.sgt_cloak ?? 'unknown'}); this trainer's is ${cloak}`,
    );
  }
  if (typeof meta.sgt_factory !== 'string' || meta.sgt_factory === '')
    throw new SgtError('CHECKPOINT_INVALID', `${where}: the checkpoint has no 'sgt_factory' metadata`);
  const options = parseJsonField(meta, 'sgt_factory_options', where);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new SgtError('CHECKPOINT_INVALID', `${where}: the checkpoint's 'sgt_factory_options' metadata must be a JSON object`);
  }
  const expected = new Map<string, readonly number[]>();
  target.parameters.forEach((p, i) => {
    expected.set(`cloak.${p.name}`, p.shape);
    expected.set(`optimizer.state.${i}.exp_avg`, p.shape);
    expected.set(`optimizer.state.${i}.exp_avg_sq`, p.shape);
  });
  for (const name of file.tensors.keys()) {
    if (!expected.has(name))
      throw new SgtError(
        'CHECKPOINT_INVALID',
        `${where}: the checkpoint holds an unexpected tensor '${name}' (not a parameter of this cloak)`,
      );
  }
  const tensorOf = (name: string): Float32Array => {
    const shape = expected.get(name)!;
    const entry = file.tensors.get(name);
    if (entry?.dtype !== 'F32' || entry.shape.join() !== shape.join())
      throw new SgtError('CHECKPOINT_INVALID', `${where}: tensor '${name}' is missing or mis-shaped (expected F32 ${fmtShape(shape)})`);
    return Float32Array.from(toFloat32(entry));
  };
  const weights = target.parameters.map((p) => tensorOf(`cloak.${p.name}`));
  const moments = target.parameters.map((_, i) => [tensorOf(`optimizer.state.${i}.exp_avg`), tensorOf(`optimizer.state.${i}.exp_avg_sq`)]);
  const counters = parseCounters(parseJsonField(meta, 'sgt_state', where), target.parameters.length, where);
  return {
    step: counters.step,
    data: { epoch: counters.data.epoch, batch: counters.data.batch },
    rng: { seed: counters.rng.seed, offset: counters.rng.offset },
    weights,
    optimizer: {
      step: counters.optimizerStep,
      groups: counters.optimizerGroups.map((g) => ({ lr: g.lr, weightDecay: g.weightDecay })),
      params: target.parameters.map((p, i) => ({
        shape: [...p.shape],
        step: counters.parameterSteps[i],
        m: moments[i][0],
        v: moments[i][1],
      })),
    },
  };
}

/** The format version and the checksum: a checkpoint from another format, or one changed since it was written, stops here. */
function checkIntegrity(file: SafetensorsFile, where: string): void {
  const meta = file.metadata;
  if (meta.sgt_format !== String(CHECKPOINT_FORMAT)) {
    const older = meta.sgt_format === undefined && meta.sgt_state !== undefined;
    throw new SgtError(
      'CHECKPOINT_INVALID',
      older
        ? `${where}: the checkpoint is in format 1 (written before version 0.1.0 recorded checksums and the base weights' digest); this version reads format ${CHECKPOINT_FORMAT} only: train again or load its cloak weights with TransformerCloak.fromSafetensors`
        : `${where}: the checkpoint's 'sgt_format' is ${JSON.stringify(meta.sgt_format ?? null)}; this version reads format ${CHECKPOINT_FORMAT} (is it a Trainer checkpoint?)`,
    );
  }
  const recorded = meta.sgt_checksum;
  const actual = checkpointChecksum(meta, file.tensors);
  if (recorded !== actual) {
    throw new SgtError(
      'CHECKPOINT_INVALID',
      `${where}: the checkpoint fails its checksum (recorded ${recorded ?? 'none'}, computed ${actual}): the file is corrupt or was changed after it was written`,
    );
  }
}

/** The base model: the same architecture, then the same weights (digest). */
function checkModel(json: string | undefined, model: ModelFingerprint, where: string): void {
  const mine = JSON.stringify(model);
  let theirs: Partial<ModelFingerprint> | null = null;
  try {
    theirs = JSON.parse(json ?? '') as Partial<ModelFingerprint>;
  } catch {
    // reported below
  }
  if (theirs === null || typeof theirs !== 'object')
    throw new SgtError('CHECKPOINT_INVALID', `${where}: the checkpoint has no valid 'sgt_model' metadata`);
  const architecture = (m: Partial<ModelFingerprint>) => JSON.stringify([m.modelType, m.vocabSize, m.hiddenSize, m.numLayers, m.numHeads]);
  if (architecture(theirs) !== architecture(model)) {
    throw new SgtError('CHECKPOINT_INVALID', `${where}: the checkpoint is from another model (${json}); this trainer's model is ${mine}`);
  }
  if (theirs.weightsDigest !== model.weightsDigest) {
    throw new SgtError(
      'CHECKPOINT_INVALID',
      `${where}: the checkpoint is from another model's weights: the same architecture, but base weights with digest ${String(theirs.weightsDigest)}; this trainer's model has ${model.weightsDigest}`,
    );
  }
}

function parseJsonField(meta: Record<string, string>, key: string, where: string): unknown {
  try {
    return JSON.parse(meta[key] ?? '');
  } catch {
    throw new SgtError('CHECKPOINT_INVALID', `${where}: the checkpoint has no valid '${key}' metadata (JSON expected)`);
  }
}

/** `sgt_state`, checked field by field: every counter a non-negative integer, one step per parameter, every group's rates. */
function parseCounters(value: unknown, parameterCount: number, where: string): CheckpointCounters {
  const bad = (key: string, v: unknown, expected: string): never => {
    throw new SgtError(
      'CHECKPOINT_INVALID',
      `${where}: the checkpoint's 'sgt_state' metadata has no valid '${key}' (expected ${expected}, got ${JSON.stringify(v) ?? 'nothing'})`,
    );
  };
  const object = (key: string, v: unknown): Record<string, unknown> => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(key, v, 'an object');
    return v as Record<string, unknown>;
  };
  const count = (key: string, v: unknown): number => {
    if (!Number.isSafeInteger(v) || (v as number) < 0) bad(key, v, 'an integer >= 0');
    return v as number;
  };
  const rate = (key: string, v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(key, v, 'a finite number >= 0');
    return v as number;
  };
  const c = object('sgt_state', value);
  const steps = c.parameterSteps;
  if (!Array.isArray(steps) || steps.length !== parameterCount) bad('parameterSteps', steps, `a list of ${parameterCount} step counts`);
  const groups = c.optimizerGroups;
  if (!Array.isArray(groups) || groups.length === 0) bad('optimizerGroups', groups, 'a non-empty list of { lr, weightDecay }');
  const data = object('data', c.data);
  const rng = object('rng', c.rng);
  return {
    step: count('step', c.step),
    optimizerStep: count('optimizerStep', c.optimizerStep),
    parameterSteps: (steps as unknown[]).map((s, i) => count(`parameterSteps[${i}]`, s)),
    optimizerGroups: (groups as unknown[]).map((g, i) => {
      const group = object(`optimizerGroups[${i}]`, g);
      return { lr: rate(`optimizerGroups[${i}].lr`, group.lr), weightDecay: rate(`optimizerGroups[${i}].weightDecay`, group.weightDecay) };
    }),
    data: { epoch: count('data.epoch', data.epoch), batch: count('data.batch', data.batch) },
    rng: { seed: count('rng.seed', rng.seed), offset: count('rng.offset', rng.offset) },
  };
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
