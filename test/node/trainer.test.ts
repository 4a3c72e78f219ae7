/** The Trainer on tiny-llama: loss goes down, resume repeats the curve, memory is stable, errors are clear. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { liveBufferCount } from '../../src/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { packSequences, seededRandom, type PackedSequence } from '../../src/text/data';
import { Trainer, type TrainerOptions } from '../../src/train/trainer';
import { warmupCosine } from '../../src/optim/schedule';
import { parseSafetensors } from '../../src/models/safetensors';
import { writeSafetensors } from '../../src/models/safetensorsWriter';
import { checkpointChecksum } from '../../src/train/checkpoint';

let model: CausalLM;
let train: PackedSequence[];
let heldOut: PackedSequence[];

beforeAll(async () => {
  await gpu();
  const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
  const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
  model = await loadCausalLM({ config, weights });
  const random = seededRandom(5);
  const docs = Array.from({ length: 24 }, () => Array.from({ length: 5 + Math.floor(random() * 10) }, () => 3 + Math.floor(random() * 90)));
  const packed = packSequences(docs, { seqLen: 8, padId: 0, bos: 1, eos: 2 });
  train = packed.slice(0, packed.length - 4);
  heldOut = packed.slice(-4);
});

afterAll(() => model.dispose());

const tinyConfig = () => JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
const tinyWeights = () => new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));

/** The safetensors `bytes` with every value of `model.norm.weight` (F32) times `factor`: the same architecture, other weights. */
function scaledNorm(bytes: Uint8Array, factor: number): Uint8Array {
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const [begin, end] = header['model.norm.weight'].data_offsets as [number, number];
  const out = bytes.slice();
  const values = new DataView(out.buffer, 8 + headerLength + begin, end - begin);
  for (let at = 0; at < end - begin; at += 4) values.setFloat32(at, values.getFloat32(at, true) * factor, true);
  return out;
}

/** Checkpoints made from `bytes` whose metadata is wrong in one way each (re-signed, so that only that is wrong), with the error each must give. */
function malformed(bytes: Uint8Array): [string, Uint8Array, RegExp][] {
  const file = parseSafetensors(bytes);
  const state = JSON.parse(file.metadata.sgt_state) as Record<string, unknown>;
  const withState = (edit: Record<string, unknown>, drop?: string): Uint8Array => {
    const next = Object.fromEntries(Object.entries({ ...state, ...edit }).filter(([k]) => k !== drop));
    const metadata: Record<string, string> = { ...file.metadata, sgt_state: JSON.stringify(next) };
    metadata.sgt_checksum = checkpointChecksum(metadata, file.tensors);
    const tensors = Object.fromEntries(
      [...file.tensors].map(([name, e]) => [
        name,
        { dtype: 'F32' as const, shape: e.shape, data: new Float32Array(e.bytes.slice().buffer) },
      ]),
    );
    return writeSafetensors(tensors, metadata);
  };
  return [
    ['no rng position', withState({}, 'rng'), /'sgt_state' metadata has no valid 'rng'/],
    ['a negative step', withState({ step: -1 }), /no valid 'step' \(expected an integer >= 0, got -1\)/],
    ['a non-numeric data position', withState({ data: { epoch: 0, batch: 'x' } }), /no valid 'data.batch'/],
    ['a group without a learning rate', withState({ optimizerGroups: [{ weightDecay: 0.01 }] }), /no valid 'optimizerGroups\[0\].lr'/],
    ['too few parameter steps', withState({ parameterSteps: [1] }), /no valid 'parameterSteps'/],
    // Well formed, but for an optimizer with two groups: only the optimizer can tell, and it does before it changes anything.
    [
      'a second optimizer group',
      withState({
        optimizerGroups: [
          { lr: 1e-3, weightDecay: 0 },
          { lr: 1e-3, weightDecay: 0 },
        ],
      }),
      /AdamW.loadState: state has 2 groups; this optimizer has 1/,
    ],
  ];
}

const options = (over: Partial<TrainerOptions> = {}): TrainerOptions => ({
  factory: 'crossEntropyDistillation',
  factoryOptions: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 0.5, medianNormPenaltyWeight: 0.1 },
  cloak: { numLayers: 1, seed: 3 },
  batchSize: 2,
  learningRate: 3e-3,
  seed: 11,
  ...over,
});

describe('Trainer', () => {
  it('lowers the loss over a few dozen steps and reports every component', async () => {
    // The strength terms start far from their optimum (sigma near its floor, xt = x), unlike the
    // cross-entropy, whose floor is the teacher's entropy: a clear signal in a few dozen steps.
    const trainer = new Trainer(
      model,
      { train, heldOut },
      options({
        factory: 'distillation',
        learningRate: 1e-2,
        factoryOptions: {
          distillationLayerIndex: 1,
          alpha: 0.5,
          stdLogRatioLossWeight: 1,
          inputEmbeddingSimilarityLossWeight: 1,
          distillationLayerCosineDistanceLossWeight: 1,
        },
      }),
    );
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await trainer.step();
      expect(Object.keys(r.components).sort()).toEqual([
        'distillationLayerCosineDistanceLoss',
        'distillationLayerL2DistanceLoss',
        'inputEmbeddingSimilarityLoss',
        'inverseL2PowerLawCatalystLoss',
        'loss',
        'stdLogRatioLoss',
      ]);
      expect(r.step).toBe(i + 1);
      expect(r.tokens).toBeGreaterThan(0);
      losses.push(r.loss);
    }
    const first = (losses[0] + losses[1] + losses[2]) / 3;
    const last = (losses[27] + losses[28] + losses[29]) / 3;
    expect(last).toBeLessThan(first - 0.2);
    const metrics = await trainer.evaluate();
    for (const v of [metrics.nearestNeighbourFailureRate, metrics.top1Agreement]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    expect(metrics.meanKL).toBeGreaterThanOrEqual(0);
    expect(metrics.transformedPositions).toBeGreaterThan(0);
    trainer.dispose();
  });

  it('a resumed run repeats the loss curve of an uninterrupted one', async () => {
    const o = options({
      factory: 'mutualInformationCrossEntropyDistillation',
      factoryOptions: {
        mutualInformationLossWeight: 0.1,
        distillationCrossEntropyLossWeight: 1,
        absoluteCosineSimilarityPenaltyWeight: 0.5,
        medianNormPenaltyWeight: 0.1,
      },
      accumulationSteps: 2,
      warmupSteps: 2,
      totalSteps: 20,
    });
    const straight = new Trainer(model, { train }, o);
    const full: number[] = [];
    for (let i = 0; i < 6; i++) full.push((await straight.step()).loss);
    straight.dispose();

    const first = new Trainer(model, { train }, o);
    for (let i = 0; i < 3; i++) await first.step();
    const bytes = await first.checkpoint();
    first.dispose();
    const resumed = new Trainer(model, { train }, { ...o, cloak: { ...o.cloak } });
    resumed.loadCheckpoint(bytes);
    expect(resumed.stepCount).toBe(3);
    const rest: number[] = [];
    for (let i = 0; i < 3; i++) rest.push((await resumed.step()).loss);
    resumed.dispose();
    rest.forEach((l, i) => {
      expect(l, `step ${i + 4}`).toBeCloseTo(full[i + 3], 6);
    });
  });

  it('rejects a corrupt, foreign or malformed checkpoint and stays exactly as it was (all or nothing)', async () => {
    const o = options();
    const straight = new Trainer(model, { train }, o);
    const full: number[] = [];
    for (let i = 0; i < 4; i++) full.push((await straight.step()).loss);
    straight.dispose();

    // Bad checkpoints made from a run at another step, so that a half-applied load would show.
    const donor = new Trainer(model, { train }, o);
    await donor.step();
    const older = await donor.checkpoint();
    donor.dispose();
    const otherWeights = await loadCausalLM({ config: tinyConfig(), weights: scaledNorm(tinyWeights(), 1.01) });
    const foreignTrainer = new Trainer(otherWeights, { train }, o);
    await foreignTrainer.step();
    const foreign = await foreignTrainer.checkpoint();
    foreignTrainer.dispose();
    otherWeights.dispose();
    const flipped = older.slice();
    flipped[flipped.length - 3] ^= 0x10;

    const trainer = new Trainer(model, { train }, o);
    for (let i = 0; i < 2; i++) await trainer.step();
    const before = await trainer.checkpoint();
    const live = liveBufferCount();
    const cases: [string, Uint8Array, RegExp][] = [
      ['a flipped byte', flipped, /Trainer.loadCheckpoint: .*checksum/],
      ['the same architecture with other base weights', foreign, /Trainer.loadCheckpoint: .*another model's weights/],
      ...malformed(older),
    ];
    for (const [what, bytes, error] of cases) {
      expect(() => trainer.loadCheckpoint(bytes), what).toThrow(error);
      expect(trainer.stepCount, what).toBe(2);
      expect(await trainer.checkpoint(), what).toEqual(before);
      expect(liveBufferCount(), what).toBe(live);
    }
    const rest: number[] = [];
    for (let i = 0; i < 2; i++) rest.push((await trainer.step()).loss);
    trainer.dispose();
    expect(rest).toEqual(full.slice(2));
  });

  it('steps at the learning rates of warmupCosine, from a non-zero first step', async () => {
    const W = 3;
    for (const schedule of [{ totalSteps: 8, minLearningRate: 1e-4 }, {}]) {
      const o = options({ learningRate: 3e-3, warmupSteps: W, ...schedule });
      const lr = warmupCosine({ baseLr: 3e-3, warmupSteps: W, totalSteps: o.totalSteps, minLr: o.minLearningRate });
      const trainer = new Trainer(model, { train }, o);
      const used: number[] = [];
      for (let s = 0; s <= W + 2; s++) used.push((await trainer.step()).learningRate);
      trainer.dispose();
      expect(used).toEqual(Array.from({ length: W + 3 }, (_, s) => lr(s)));
      // The warm-up rises by thirds of the peak from the first step, which is not at rate 0.
      expect(used.slice(0, W + 1).map((x) => +(x / 3e-3).toFixed(12))).toEqual([1 / 3, 2 / 3, 1, 1].map((x) => +x.toFixed(12)));
      expect(used[W + 2]).toBe(schedule.totalSteps ? lr(W + 2) : 3e-3);
    }
  });

  it('leaves the live-buffer count the same after step 5 and after step 50', async () => {
    const trainer = new Trainer(
      model,
      { train },
      options({
        factory: 'distillation',
        factoryOptions: {
          distillationLayerIndex: 0,
          alpha: 0.5,
          stdLogRatioLossWeight: 0.1,
          inputEmbeddingSimilarityLossWeight: 0.5,
          distillationLayerCosineDistanceLossWeight: 1,
        },
      }),
    );
    for (let i = 0; i < 5; i++) await trainer.step();
    const at5 = liveBufferCount();
    for (let i = 5; i < 50; i++) await trainer.step();
    expect(liveBufferCount()).toBe(at5);
    trainer.dispose();
  });

  it('gives clear errors and keeps its state', async () => {
    expect(() => new Trainer(model, { train }, options({ factory: 'nope' as never }))).toThrow(/'factory' must be one of/);
    expect(
      () =>
        new Trainer(
          model,
          { train },
          options({
            factoryOptions: {
              distillationCrossEntropyLossWeight: -1,
              absoluteCosineSimilarityPenaltyWeight: 0,
              medianNormPenaltyWeight: 0,
            },
          }),
        ),
    ).toThrow(/'distillationCrossEntropyLossWeight' must be a finite number >= 0/);
    expect(() => new Trainer(model, { train }, options({ factory: 'mutualInformationCrossEntropyDistillation', batchSize: 3 }))).toThrow(
      /'batchSize' must be even/,
    );
    const long = packSequences([Array.from({ length: 80 }, (_, i) => 3 + (i % 50))], { seqLen: 70, padId: 0 });
    expect(() => new Trainer(model, { train: [...long, ...long] }, options())).toThrow(/exceed the model's 64 positions/);
    const bad = train.map((s) => ({ ...s, ids: s.ids.map((v, i) => (i === 0 ? 500 : v)) }));
    expect(() => new Trainer(model, { train: bad }, options())).toThrow(/token id 500, outside the model's vocabulary/);

    const trainer = new Trainer(model, { train }, options());
    await trainer.step();
    const other = new Trainer(model, { train }, options({ cloak: { numLayers: 2, seed: 3 } }));
    const foreign = await other.checkpoint();
    other.dispose();
    expect(() => trainer.loadCheckpoint(foreign)).toThrow(/another cloak configuration/);
    expect(trainer.stepCount).toBe(1);
    expect(() => trainer.loadCheckpoint(new Uint8Array([1, 2, 3]))).toThrow(/safetensors/);
    trainer.dispose();
    await expect(trainer.step()).rejects.toThrow(/Trainer.step: the trainer was disposed/);
  });
});
