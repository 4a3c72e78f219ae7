/**
 * Privacy-weight schedules: the scale at given steps, the checks of the option, every factory's
 * total as the scheduled weighted sum of its components, and the trainer stepping through a ramp.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { liveBufferCount, readAll, scope } from '../../src/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { NoiseMaskedNoisyTransformerModel, TransformerCloak } from '../../src/models/cloak';
import { FACTORIES, type LossFactoryResult } from '../../src/factories/distillation';
import type { FactoryName } from '../../src/factories/options';
import { checkPrivacySchedule, privacyWeightScale, scheduleForRun } from '../../src/factories/schedule';
import { packSequences, seededRandom } from '../../src/text/data';
import { Trainer } from '../../src/train/trainer';
import { stepEvent } from '../../src/worker/run';

describe('privacyWeightScale', () => {
  it('ramps linearly from startScale to 1 over rampSteps, then stays at 1', () => {
    const linear = { shape: 'linear', rampSteps: 10 } as const;
    expect([0, 1, 5, 9, 10, 11, 500].map((s) => privacyWeightScale(linear, s))).toEqual([0, 0.1, 0.5, 0.9, 1, 1, 1]);
    const fromFifth = { shape: 'linear', rampSteps: 4, startScale: 0.2 } as const;
    // 0.2 + 0.8 * s / 4
    expect([0, 1, 2, 3, 4].map((s) => privacyWeightScale(fromFifth, s))).toEqual([0.2, 0.4, 0.6000000000000001, 0.8, 1]);
  });

  it('ramps along a half cosine: slow at both ends, half way at the middle', () => {
    const cosine = { shape: 'cosine', rampSteps: 8 } as const;
    expect(privacyWeightScale(cosine, 0)).toBe(0);
    expect(privacyWeightScale(cosine, 2)).toBeCloseTo((1 - Math.SQRT1_2) / 2, 12);
    expect(privacyWeightScale(cosine, 4)).toBeCloseTo(0.5, 12);
    expect(privacyWeightScale(cosine, 6)).toBeCloseTo((1 + Math.SQRT1_2) / 2, 12);
    expect(privacyWeightScale(cosine, 8)).toBe(1);
  });

  it('is 1 without a schedule, for constant, and for a ramp of 0 steps', () => {
    expect(privacyWeightScale(null, 0)).toBe(1);
    expect(privacyWeightScale(undefined, 3)).toBe(1);
    expect(privacyWeightScale({ shape: 'constant', rampSteps: 100 }, 0)).toBe(1);
    expect(privacyWeightScale({ shape: 'linear', rampSteps: 0 }, 0)).toBe(1);
  });

  it('scheduleForRun takes the ramp as a share of the run', () => {
    expect(scheduleForRun('cosine', 0.3, 200)).toEqual({ shape: 'cosine', rampSteps: 60, startScale: 0 });
    expect(scheduleForRun('constant', 0.3, 200)).toEqual({ shape: 'constant', rampSteps: 0, startScale: 0 });
  });

  it('checkPrivacySchedule fills the defaults and names what is wrong', () => {
    expect(checkPrivacySchedule({ shape: 'linear', rampSteps: 3 }, 'X')).toEqual({ shape: 'linear', rampSteps: 3, startScale: 0 });
    expect(() => checkPrivacySchedule('linear', 'X')).toThrow("X: 'privacySchedule' must be an object");
    expect(() => checkPrivacySchedule({ shape: 'step', rampSteps: 3 }, 'X')).toThrow(
      "X: 'privacySchedule.shape' must be one of constant, linear, cosine, got step",
    );
    expect(() => checkPrivacySchedule({ shape: 'linear', rampSteps: 2.5 }, 'X')).toThrow(
      "'privacySchedule.rampSteps' must be an integer >= 0, got 2.5",
    );
    expect(() => checkPrivacySchedule({ shape: 'linear', rampSteps: 2, startScale: 1.5 }, 'X')).toThrow(
      "'privacySchedule.startScale' must be a number in [0, 1], got 1.5",
    );
    expect(() => checkPrivacySchedule({ shape: 'linear', rampSteps: 2, ramp: 1 }, 'X')).toThrow("unknown 'privacySchedule' field 'ramp'");
  });
});

let model: CausalLM;

beforeAll(async () => {
  await gpu();
  const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
  const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
  model = await loadCausalLM({ config, weights });
});

afterAll(() => model.dispose());

/** The privacy terms (written here, independently of the factories) and each term's weight before the scale. */
const PRIVACY_TERMS = [
  'stdLogRatioLoss',
  'inputEmbeddingSimilarityLoss',
  'inverseL2PowerLawCatalystLoss',
  'mutualInformationLoss',
  'absoluteCosineSimilarityPenalty',
  'medianNormPenalty',
];
const CASES: { factory: FactoryName; options: Record<string, unknown>; weights: Record<string, number> }[] = [
  {
    factory: 'distillation',
    options: {
      distillationLayerIndex: 0,
      alpha: 0.4,
      stdLogRatioLossWeight: 0.5,
      inputEmbeddingSimilarityLossWeight: 0.7,
      distillationLayerCosineDistanceLossWeight: 1.3,
      distillationLayerL2DistanceLossWeight: 0.2,
      inverseL2PowerLawCatalystLossWeight: 0.3,
    },
    weights: {
      distillationLayerCosineDistanceLoss: 0.6 * 1.3,
      distillationLayerL2DistanceLoss: 0.6 * 0.2,
      stdLogRatioLoss: 0.4 * 0.5,
      inputEmbeddingSimilarityLoss: 0.4 * 0.7,
      inverseL2PowerLawCatalystLoss: 0.4 * 0.3,
    },
  },
  {
    factory: 'mutualInformationDistillation',
    options: { distillationLayerIndex: 1, alpha: 0.3, distillationLayerL2DistanceLossWeight: 0.2, mutualInformationLossWeight: 0.6 },
    weights: {
      distillationLayerCosineDistanceLoss: 0.7,
      distillationLayerL2DistanceLoss: 0.7 * 0.2,
      mutualInformationLoss: 0.3 * 0.6,
      inputEmbeddingSimilarityLoss: 0,
      inverseL2PowerLawCatalystLoss: 0,
    },
  },
  {
    factory: 'crossEntropyDistillation',
    options: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 0.5, medianNormPenaltyWeight: 0.25 },
    weights: { distillationCrossEntropyLoss: 1, absoluteCosineSimilarityPenalty: 0.5, medianNormPenalty: 0.25 },
  },
  {
    factory: 'mutualInformationCrossEntropyDistillation',
    options: {
      mutualInformationLossWeight: 0.3,
      distillationCrossEntropyLossWeight: 1,
      absoluteCosineSimilarityPenaltyWeight: 0.5,
      medianNormPenaltyWeight: 0.25,
    },
    weights: { mutualInformationLoss: 0.3, distillationCrossEntropyLoss: 1, absoluteCosineSimilarityPenalty: 0.5, medianNormPenalty: 0.25 },
  },
];

const batch = () => ({
  ids: Array.from({ length: 12 }, (_, i) => (i * 7 + 3) % 96),
  attentionMask: Array.from({ length: 12 }, () => 1),
  noiseMask: Array.from({ length: 12 }, (_, i) => (i % 6 === 0 ? 0 : 1)),
  batchSize: 2,
  seqLen: 6,
});

/** The scheduled weighted sum: utility terms at their weight, privacy terms at `scale` times theirs. */
function scheduledSum(values: Record<string, number>, weights: Record<string, number>, scale: number): number {
  return Object.entries(weights).reduce((acc, [k, w]) => acc + (PRIVACY_TERMS.includes(k) ? scale * w : w) * values[k], 0);
}

describe.each(CASES)('$factory under a privacy-weight scale', ({ factory, options, weights }) => {
  it('the total is the scheduled weighted sum, and a privacy term at scale 0 is out of the graph', async () => {
    const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, rhoInit: -1, seed: 1, initStd: 0.2 });
    const noisy = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 9 });
    let scale = 0;
    const make = FACTORIES[factory] as (m: NoiseMaskedNoisyTransformerModel, o: unknown, r: unknown) => LossFactoryResult;
    const [lossFn, getComponents] = make(noisy, options, { privacyWeightScale: () => scale });
    const totals: number[] = [];
    for (const s of [0, 0.25, 1]) {
      scale = s;
      await scope(async () => {
        noisy.setRngState({ seed: 9, offset: 0 });
        noisy.forward(batch());
        lossFn();
        const c = getComponents();
        const keys = Object.keys(weights);
        const v = await readAll([...keys.map((k) => c[k]), c.loss]);
        const values = Object.fromEntries(keys.map((k, i) => [k, v[i][0]]));
        const loss = v[keys.length][0];
        const magnitude = keys.reduce((a, k) => a + Math.abs(weights[k] * values[k]), 0);
        expect(Math.abs(loss - scheduledSum(values, weights, s)), `scale ${s}`).toBeLessThanOrEqual(
          keys.length * 2 ** -23 * magnitude + 1e-7,
        );
        for (const k of keys) {
          const w = PRIVACY_TERMS.includes(k) ? s * weights[k] : weights[k];
          expect(c[k].requiresGrad, `${k} at scale ${s}`).toBe(w !== 0);
        }
        totals.push(loss);
      });
    }
    // The privacy terms are not zero here, so the scale changes the total.
    expect(new Set(totals).size).toBe(3);
    cloak.dispose();
  });
});

describe('Trainer with a privacySchedule', () => {
  it('each step reports the scale of its step and a loss equal to the scheduled weighted sum of its components', async () => {
    const random = seededRandom(5);
    const docs = Array.from({ length: 24 }, () =>
      Array.from({ length: 5 + Math.floor(random() * 10) }, () => 3 + Math.floor(random() * 90)),
    );
    const train = packSequences(docs, { seqLen: 8, padId: 0, bos: 1, eos: 2 });
    const live = liveBufferCount();
    const weights = { distillationCrossEntropyLoss: 1, absoluteCosineSimilarityPenalty: 0.8, medianNormPenalty: 0.1 };
    const trainer = new Trainer(
      model,
      { train },
      {
        factory: 'crossEntropyDistillation',
        factoryOptions: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 0.8, medianNormPenaltyWeight: 0.1 },
        batchSize: 2,
        learningRate: 1e-2,
        privacySchedule: { shape: 'linear', rampSteps: 4 },
        cloak: { seed: 3, rhoInit: -1 },
      },
    );
    const scales: number[] = [];
    // The worker's step events carry the same scale, for the demo and other listeners.
    const eventScales: number[] = [];
    for (let s = 0; s < 6; s++) {
      const r = await trainer.step();
      scales.push(r.privacyWeightScale);
      eventScales.push(stepEvent(r).privacyWeightScale);
      const magnitude = Object.entries(weights).reduce((a, [k, w]) => a + Math.abs(w * r.components[k]), 0);
      expect(Math.abs(r.loss - scheduledSum(r.components, weights, r.privacyWeightScale)), `step ${r.step}`).toBeLessThanOrEqual(
        4 * 2 ** -23 * magnitude + 1e-7,
      );
    }
    expect(scales).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
    expect(eventScales).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
    trainer.dispose();
    expect(liveBufferCount()).toBe(live);
  });

  it('refuses a bad schedule before making anything', () => {
    const live = liveBufferCount();
    expect(
      () =>
        new Trainer(
          model,
          { train: [] },
          {
            factory: 'crossEntropyDistillation',
            factoryOptions: {},
            batchSize: 2,
            privacySchedule: { shape: 'exponential', rampSteps: 4 } as never,
          },
        ),
    ).toThrow("Trainer: 'privacySchedule.shape' must be one of constant, linear, cosine, got exponential");
    expect(liveBufferCount()).toBe(live);
  });
});
