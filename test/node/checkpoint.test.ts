/** The checkpoint format without a GPU: round trip, and the checks decodeCheckpoint makes before anything is applied. */
import { describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/models/safetensors';
import { writeSafetensors } from '../../src/models/safetensorsWriter';
import { Fnv1a32, weightsDigest } from '../../src/models/digest';
import {
  type TrainerCheckpoint,
  checkpointChecksum,
  decodeCheckpoint,
  encodeCheckpoint,
  modelFingerprint,
} from '../../src/train/checkpoint';

const model = modelFingerprint({ modelType: 'llama', vocabSize: 100, hiddenSize: 4, numLayers: 2, numHeads: 2 }, 'fnv1a32:0123abcd');
const cloak = { hiddenSize: 4, numLayers: 1 };
const parameters = [
  { name: 'a.weight', shape: [2, 2] },
  { name: 'b.bias', shape: [3] },
];

function sample(): TrainerCheckpoint {
  return {
    model,
    cloak,
    factory: 'distillation',
    factoryOptions: { alpha: 0.5 },
    step: 7,
    data: { epoch: 1, batch: 3 },
    rng: { seed: 11, offset: 2 ** 40 + 1 },
    weights: [
      { name: 'a.weight', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
      { name: 'b.bias', shape: [3], data: Float32Array.of(5, 6, 7) },
    ],
    optimizer: {
      step: 7,
      groups: [{ lr: 0.001, weightDecay: 0.01 }],
      params: [
        { shape: [2, 2], step: 7, m: Float32Array.of(0.1, 0.2, 0.3, 0.4), v: Float32Array.of(1, 1, 1, 1) },
        { shape: [3], step: 6, m: Float32Array.of(-1, 0, 1), v: Float32Array.of(2, 2, 2) },
      ],
    },
  };
}

/**
 * A copy of `bytes` with its metadata changed by `edit` (a value of undefined deletes the key) and
 * its tensors by `editTensors`, re-signed with a valid checksum unless `resign` is false: a
 * checkpoint whose only fault is the one made here.
 */
function rewrite(
  bytes: Uint8Array,
  edit: Record<string, string | undefined>,
  { resign = true, editTensors = (t: Map<string, { dtype: 'F32' | 'F16'; shape: number[]; data: Float32Array | Uint16Array }>) => t } = {},
): Uint8Array {
  const file = parseSafetensors(bytes);
  const tensors = editTensors(
    new Map(
      [...file.tensors].map(([name, e]) => [
        name,
        { dtype: 'F32' as 'F32' | 'F16', shape: e.shape, data: new Float32Array(e.bytes.slice().buffer) as Float32Array | Uint16Array },
      ]),
    ),
  );
  const metadata: Record<string, string> = { ...file.metadata };
  for (const [k, v] of Object.entries(edit)) {
    if (v === undefined) delete metadata[k];
    else metadata[k] = v;
  }
  const entries = new Map(
    [...tensors].map(([name, t]) => [
      name,
      { dtype: t.dtype, shape: t.shape, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) },
    ]),
  );
  if (resign) metadata.sgt_checksum = checkpointChecksum(metadata, entries);
  return writeSafetensors(Object.fromEntries(tensors), metadata);
}

/** A copy of `bytes` with its `sgt_state` metadata replaced (and re-signed). */
function withState(bytes: Uint8Array, state: unknown): Uint8Array {
  return rewrite(bytes, { sgt_state: typeof state === 'string' ? state : JSON.stringify(state) });
}

describe('checkpoint format', () => {
  it('round-trips every tensor and counter, and writes the metadata the format documents', () => {
    const bytes = encodeCheckpoint(sample());
    const meta = parseSafetensors(bytes).metadata;
    expect(meta.format).toBe('pt');
    expect(JSON.parse(meta.sgt_model)).toEqual({
      modelType: 'llama',
      vocabSize: 100,
      hiddenSize: 4,
      numLayers: 2,
      numHeads: 2,
      weightsDigest: 'fnv1a32:0123abcd',
    });
    expect(meta.sgt_format).toBe('2');
    expect(meta.sgt_checksum).toMatch(/^fnv1a32:[0-9a-f]{8}$/);
    expect(meta.sgt_factory).toBe('distillation');
    expect(JSON.parse(meta.sgt_factory_options)).toEqual({ alpha: 0.5 });
    expect(JSON.parse(meta.sgt_state)).toEqual({
      step: 7,
      optimizerStep: 7,
      parameterSteps: [7, 6],
      optimizerGroups: [{ lr: 0.001, weightDecay: 0.01 }],
      data: { epoch: 1, batch: 3 },
      rng: { seed: 11, offset: 2 ** 40 + 1 },
    });
    const d = decodeCheckpoint(bytes.slice().buffer, { model, cloak, parameters });
    expect(d.step).toBe(7);
    expect(d.data).toEqual({ epoch: 1, batch: 3 });
    expect(d.rng).toEqual({ seed: 11, offset: 2 ** 40 + 1 });
    expect(d.weights).toEqual([Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7)]);
    expect(d.optimizer).toEqual(sample().optimizer);
  });

  it('refuses another model, another cloak, missing or mis-shaped tensors and bad counters', () => {
    const bytes = encodeCheckpoint(sample());
    expect(() => decodeCheckpoint(bytes, { model: { ...model, hiddenSize: 8 }, cloak, parameters })).toThrow(
      /Trainer.loadCheckpoint: the checkpoint is from another model/,
    );
    expect(() => decodeCheckpoint(bytes, { model, cloak: { ...cloak, numLayers: 2 }, parameters })).toThrow(/another cloak configuration/);
    expect(() => decodeCheckpoint(bytes, { model, cloak, parameters: [{ name: 'a.weight', shape: [4] }, parameters[1]] })).toThrow(
      /tensor 'cloak.a.weight' is missing or mis-shaped \(expected F32 \[4\]\)/,
    );
    expect(() => decodeCheckpoint(bytes, { model, cloak, parameters: [...parameters, { name: 'c', shape: [1] }] })).toThrow(
      /tensor 'cloak.c' is missing/,
    );
    const state = JSON.parse(parseSafetensors(bytes).metadata.sgt_state);
    expect(() => decodeCheckpoint(withState(bytes, 'not json'), { model, cloak, parameters })).toThrow(/no valid 'sgt_state' metadata/);
    for (const [bad, key] of [
      [{ ...state, step: -1 }, 'step'],
      [{ ...state, optimizerStep: 1.5 }, 'optimizerStep'],
      [{ ...state, parameterSteps: [1, 'x'] }, 'parameterSteps\\[1\\]'],
      [{ ...state, optimizerGroups: null }, 'optimizerGroups'],
      [{ ...state, data: { epoch: 0 } }, 'data.batch'],
      [{ ...state, rng: { seed: 1, offset: -2 } }, 'rng.offset'],
    ] as const) {
      expect(() => decodeCheckpoint(withState(bytes, bad), { model, cloak, parameters }), key).toThrow(new RegExp(`no valid '${key}'`));
    }
  });
});

describe('checkpoint integrity (all checked before anything is applied)', () => {
  const target = { model, cloak, parameters };
  const bytes = encodeCheckpoint(sample());

  it('rejects a flipped byte anywhere: in a tensor, in the counters, in the header', () => {
    const file = parseSafetensors(bytes);
    const data = file.tensors.get('optimizer.state.1.exp_avg')!.bytes;
    const at = data.byteOffset - bytes.byteOffset + 5;
    const inData = bytes.slice();
    inData[at] ^= 0x01;
    expect(() => decodeCheckpoint(inData, target)).toThrow(/Trainer.loadCheckpoint: the checkpoint fails its checksum .*corrupt/);
    const text = new TextDecoder().decode(bytes);
    const inCounters = bytes.slice();
    inCounters[text.indexOf('\\"step\\":7') + 8] = '8'.charCodeAt(0); // "step":7 -> "step":8, still valid JSON
    expect(() => decodeCheckpoint(inCounters, target)).toThrow(/fails its checksum/);
    // Not re-signed: a hand-edited counter is a changed file.
    expect(() => decodeCheckpoint(rewrite(bytes, { sgt_factory: 'other' }, { resign: false }), target)).toThrow(/fails its checksum/);
    expect(() => decodeCheckpoint(rewrite(bytes, { sgt_checksum: undefined }, { resign: false }), target)).toThrow(/recorded none/);
  });

  it('rejects a checkpoint of the same architecture from other base weights, and another format', () => {
    const other = encodeCheckpoint({ ...sample(), model: { ...model, weightsDigest: 'fnv1a32:ffff0000' } });
    expect(() => decodeCheckpoint(other, target)).toThrow(
      /another model's weights: the same architecture, but base weights with digest fnv1a32:ffff0000; this trainer's model has fnv1a32:0123abcd/,
    );
    const format1 = rewrite(bytes, { sgt_format: undefined, sgt_checksum: undefined }, { resign: false });
    expect(() => decodeCheckpoint(format1, target)).toThrow(/the checkpoint is in format 1 .* reads format 2 only/);
    expect(() => decodeCheckpoint(rewrite(bytes, { sgt_format: '3' }), target)).toThrow(/'sgt_format' is "3"; this version reads format 2/);
  });

  it('names every missing or mistyped metadata field', () => {
    for (const [key, error] of [
      ['sgt_model', /no valid 'sgt_model'/],
      ['sgt_cloak', /another cloak configuration \(unknown\)/],
      ['sgt_factory', /no 'sgt_factory' metadata/],
      ['sgt_factory_options', /no valid 'sgt_factory_options'/],
      ['sgt_state', /no valid 'sgt_state' metadata/],
    ] as const) {
      expect(() => decodeCheckpoint(rewrite(bytes, { [key]: undefined }), target), key).toThrow(error);
    }
    expect(() => decodeCheckpoint(rewrite(bytes, { sgt_factory_options: '[1]' }), target)).toThrow(
      /'sgt_factory_options' metadata must be a JSON object/,
    );
    const state = JSON.parse(parseSafetensors(bytes).metadata.sgt_state);
    const without = (key: string) => Object.fromEntries(Object.entries(state).filter(([k]) => k !== key));
    for (const key of Object.keys(state)) {
      expect(() => decodeCheckpoint(withState(bytes, without(key)), target), key).toThrow(
        new RegExp(`'sgt_state' metadata has no valid '${key}'`),
      );
    }
    for (const [bad, key] of [
      [null, 'sgt_state'],
      [{ ...state, step: '7' }, 'step'],
      [{ ...state, optimizerStep: 2 ** 60 }, 'optimizerStep'],
      [{ ...state, parameterSteps: [7] }, 'parameterSteps'],
      [{ ...state, parameterSteps: [7, -1] }, 'parameterSteps\\[1\\]'],
      [{ ...state, optimizerGroups: [] }, 'optimizerGroups'],
      [{ ...state, optimizerGroups: [null] }, 'optimizerGroups\\[0\\]'],
      [{ ...state, optimizerGroups: [{ weightDecay: 0.01 }] }, 'optimizerGroups\\[0\\].lr'],
      [{ ...state, optimizerGroups: [{ lr: 0.001, weightDecay: -1 }] }, 'optimizerGroups\\[0\\].weightDecay'],
      [{ ...state, data: [0, 1] }, 'data'],
      [{ ...state, data: { epoch: 0, batch: 'x' } }, 'data.batch'],
      [{ ...state, rng: { seed: 1.5, offset: 0 } }, 'rng.seed'],
    ] as const) {
      expect(() => decodeCheckpoint(withState(bytes, bad), target), key).toThrow(new RegExp(`no valid '${key}'`));
    }
  });

  it('names an unexpected tensor and a tensor of the wrong dtype', () => {
    const extra = rewrite(bytes, {}, { editTensors: (t) => t.set('cloak.extra', { dtype: 'F32', shape: [1], data: new Float32Array(1) }) });
    expect(() => decodeCheckpoint(extra, target)).toThrow(/unexpected tensor 'cloak.extra'/);
    const half = rewrite(bytes, {}, { editTensors: (t) => t.set('cloak.b.bias', { dtype: 'F16', shape: [3], data: new Uint16Array(3) }) });
    expect(() => decodeCheckpoint(half, target)).toThrow(/tensor 'cloak.b.bias' is missing or mis-shaped \(expected F32 \[3\]\)/);
  });
});

describe('weights digest and checksum', () => {
  /** A parsed-file stand-in: tensors by name with their bytes. */
  const fileOf = (tensors: [string, Uint8Array][]) =>
    ({
      metadata: {},
      tensors: new Map(tensors.map(([name, bytes]) => [name, { dtype: 'F32', shape: [bytes.length / 4], bytes }])),
    }) as never;
  const random = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 2654435761 + seed * 97) >>> 24);

  it('does not depend on the tensors order, and changes with any byte of a small tensor or of a sampled window', () => {
    const small = random(400, 1);
    const big = random(1 << 20, 2);
    const digest = weightsDigest(
      fileOf([
        ['a', small],
        ['b', big],
      ]),
    );
    expect(digest).toMatch(/^fnv1a32:[0-9a-f]{8}$/);
    expect(
      weightsDigest(
        fileOf([
          ['b', big],
          ['a', small],
        ]),
      ),
    ).toBe(digest);
    for (const at of [0, 399]) {
      const changed = small.slice();
      changed[at] ^= 1;
      expect(
        weightsDigest(
          fileOf([
            ['a', changed],
            ['b', big],
          ]),
        ),
        `small byte ${at}`,
      ).not.toBe(digest);
    }
    // The first and the last byte of a large tensor are in its first and last windows.
    for (const at of [0, big.length - 1]) {
      const changed = big.slice();
      changed[at] ^= 0x80;
      expect(
        weightsDigest(
          fileOf([
            ['a', small],
            ['b', changed],
          ]),
        ),
        `large byte ${at}`,
      ).not.toBe(digest);
    }
    expect(
      weightsDigest(
        fileOf([
          ['a', small],
          ['c', big],
        ]),
      ),
    ).not.toBe(digest);
  });

  it('Fnv1a32 reads the same words from an aligned and an unaligned view, and tells trailing zeros apart', () => {
    const bytes = random(403, 3);
    const padded = new Uint8Array(404);
    padded.set(bytes, 1);
    expect(new Fnv1a32().bytes(padded.subarray(1)).hex()).toBe(new Fnv1a32().bytes(bytes).hex());
    expect(new Fnv1a32().bytes(new Uint8Array(4)).hex()).not.toBe(new Fnv1a32().bytes(new Uint8Array(8)).hex());
  });
});
