/** The checkpoint format without a GPU: round trip, and the checks decodeCheckpoint makes before anything is applied. */
import { describe, expect, it } from 'vitest';
import { parseSafetensors } from '../../src/models/safetensors';
import { writeSafetensors } from '../../src/models/safetensorsWriter';
import { type TrainerCheckpoint, decodeCheckpoint, encodeCheckpoint, modelFingerprint } from '../../src/train/checkpoint';

const model = modelFingerprint({ modelType: 'llama', vocabSize: 100, hiddenSize: 4, numLayers: 2, numHeads: 2 });
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

/** A copy of `bytes` with its `sgt_state` metadata replaced. */
function withState(bytes: Uint8Array, state: unknown): Uint8Array {
  const file = parseSafetensors(bytes);
  const tensors = Object.fromEntries(
    [...file.tensors].map(([name, e]) => [name, { dtype: 'F32' as const, shape: e.shape, data: new Float32Array(e.bytes.slice().buffer) }]),
  );
  return writeSafetensors(tensors, { ...file.metadata, sgt_state: typeof state === 'string' ? state : JSON.stringify(state) });
}

describe('checkpoint format', () => {
  it('round-trips every tensor and counter, and writes the metadata the format documents', () => {
    const bytes = encodeCheckpoint(sample());
    const meta = parseSafetensors(bytes).metadata;
    expect(meta.format).toBe('pt');
    expect(JSON.parse(meta.sgt_model)).toEqual({ modelType: 'llama', vocabSize: 100, hiddenSize: 4, numLayers: 2, numHeads: 2 });
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
    expect(() => decodeCheckpoint(bytes, { model, cloak, parameters: [{ name: 'a.weight', shape: [4] }] })).toThrow(
      /tensor 'cloak.a.weight' is missing or mis-shaped \(expected \[4\]\)/,
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
    // A checkpoint without per-parameter steps (an older writer) reads them as 0.
    const { parameterSteps: _, ...older } = state;
    expect(decodeCheckpoint(withState(bytes, older), { model, cloak, parameters }).optimizer.params.map((p) => p.step)).toEqual([0, 0]);
  });
});
