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
