/** The four distillation loss factories: contracts, component keys, totals, and gradients through the whole noisy model. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { Rng } from '../helpers/random';
import { getContext, readAll, scope } from '../../src/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { NoiseMaskedNoisyTransformerModel, TransformerCloak } from '../../src/models/cloak';
import {
  crossEntropyDistillationFactory,
  distillationLossFactory,
  mutualInformationCrossEntropyDistillationFactory,
  mutualInformationDistillationLossFactory,
  type LossFactoryResult,
} from '../../src/factories/distillation';

let model: CausalLM;
let cloak: TransformerCloak;
let noisy: NoiseMaskedNoisyTransformerModel;

beforeAll(async () => {
  await gpu();
  const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
  const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
  model = await loadCausalLM({ config, weights });
  // rhoInit 0: a strong transform, so that every term has a sizeable gradient.
  cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, rhoInit: -1, seed: 1, initStd: 0.2 });
  noisy = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 9 });
});

afterAll(() => {
  cloak.dispose();
  model.dispose();
});

const batch = (B = 2) => ({
  ids: Array.from({ length: B * 6 }, (_, i) => (i * 7 + 3) % 96),
  attentionMask: Array.from({ length: B * 6 }, (_, i) => (i % 6 === 5 && i >= 6 ? 0 : 1)),
  noiseMask: Array.from({ length: B * 6 }, (_, i) => (i % 6 === 5 && i >= 6 ? 0 : i % 6 === 0 ? 0 : 1)),
  batchSize: B,
  seqLen: 6,
});

type Factory = { name: string; make: () => LossFactoryResult; keys: string[]; mi: boolean };

const factories: Factory[] = [
  {
    name: 'distillationLossFactory (layer 0)',
    make: () =>
      distillationLossFactory(noisy, {
        distillationLayerIndex: 0,
        alpha: 0.4,
        stdLogRatioLossWeight: 0.5,
        inputEmbeddingSimilarityLossWeight: 0.7,
        distillationLayerCosineDistanceLossWeight: 1.3,
        distillationLayerL2DistanceLossWeight: 0.2,
        inverseL2PowerLawCatalystLossWeight: 0.3,
        inverseL2PowerLawCharacteristicLength: 0.5,
        inverseL2PowerLawExponentOfDecay: 1.5,
      }),
    keys: [
      'distillationLayerCosineDistanceLoss',
      'distillationLayerL2DistanceLoss',
      'stdLogRatioLoss',
      'inputEmbeddingSimilarityLoss',
      'inverseL2PowerLawCatalystLoss',
      'loss',
    ],
    mi: false,
  },
  {
    name: 'distillationLossFactory (logits)',
    make: () =>
      distillationLossFactory(noisy, {
        distillationLayerIndex: null,
        alpha: 0.25,
        stdLogRatioLossWeight: 0.1,
        inputEmbeddingSimilarityLossWeight: 0.5,
        distillationLayerCosineDistanceLossWeight: 1,
      }),
    keys: [
      'distillationLayerCosineDistanceLoss',
      'distillationLayerL2DistanceLoss',
      'stdLogRatioLoss',
      'inputEmbeddingSimilarityLoss',
      'inverseL2PowerLawCatalystLoss',
      'loss',
    ],
    mi: false,
  },
  {
    name: 'mutualInformationDistillationLossFactory',
    make: () =>
      mutualInformationDistillationLossFactory(noisy, {
        distillationLayerIndex: 1,
        alpha: 0.3,
        distillationLayerL2DistanceLossWeight: 0.2,
        mutualInformationLossWeight: 0.6,
        inputEmbeddingSimilarityLossWeight: 0.4,
        inverseL2PowerLawCatalystLossWeight: 0.1,
      }),
    keys: [
      'distillationLayerCosineDistanceLoss',
      'distillationLayerL2DistanceLoss',
      'mutualInformationLoss',
      'inputEmbeddingSimilarityLoss',
      'inverseL2PowerLawCatalystLoss',
      'loss',
    ],
    mi: true,
  },
  {
    name: 'crossEntropyDistillationFactory',
    make: () =>
      crossEntropyDistillationFactory(noisy, {
        distillationCrossEntropyLossWeight: 1,
        absoluteCosineSimilarityPenaltyWeight: 0.5,
        medianNormPenaltyWeight: 0.25,
      }),
    keys: ['distillationCrossEntropyLoss', 'absoluteCosineSimilarityPenalty', 'medianNormPenalty', 'loss'],
    mi: false,
  },
  {
    name: 'mutualInformationCrossEntropyDistillationFactory',
    make: () =>
      mutualInformationCrossEntropyDistillationFactory(noisy, {
        mutualInformationLossWeight: 0.3,
        distillationCrossEntropyLossWeight: 1,
        absoluteCosineSimilarityPenaltyWeight: 0.5,
        medianNormPenaltyWeight: 0.25,
        combineNoiseMasksForMutualInformationSubBatches: false,
      }),
    keys: ['mutualInformationLoss', 'distillationCrossEntropyLoss', 'absoluteCosineSimilarityPenalty', 'medianNormPenalty', 'loss'],
    mi: true,
  },
];

/** The loss of one forward pass with the noise fixed (the generator rewound to offset 0). */
function fixedNoiseLoss(lossFn: LossFactoryResult[0]): Promise<number> {
  return scope(async () => {
    noisy.setRngState({ seed: 9, offset: 0 });
    noisy.forward(batch());
    return lossFn().item();
  });
}

describe.each(factories)('$name', ({ make, keys, mi }) => {
  it('reports every component and the total as their weighted sum; weight-0 terms stay out of the graph', async () => {
    const [lossFn, getComponents, getHyper] = make();
    const hyper = getHyperparameters(getHyper);
    await scope(async () => {
      noisy.setRngState({ seed: 9, offset: 0 });
      noisy.forward(batch());
      const loss = lossFn();
      const components = getComponents();
      expect(Object.keys(components).sort()).toEqual([...keys].sort());
      expect(components.loss).toBe(loss);
      const values = await readAll(keys.map((k) => components[k]));
      const byKey = Object.fromEntries(keys.map((k, i) => [k, values[i][0]]));
      const expected = weightedSum(byKey, hyper);
      expect(Math.abs(byKey.loss - expected), `loss ${byKey.loss} vs ${expected}`).toBeLessThanOrEqual(sumRoundingBound(byKey, hyper));
      for (const k of keys) {
        expect(Number.isFinite(byKey[k]), k).toBe(true);
        if (k !== 'loss' && effectiveWeight(k, hyper) === 0) expect(components[k].requiresGrad, k).toBe(false);
      }
    });
  });

  it('enforces the call-at-most-once-per-forward contract', async () => {
    const fresh = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 2 });
    const [lossFn, getComponents, getHyper] = remake(make, fresh);
    expect(() => lossFn()).toThrow(/before any forward pass/);
    expect(() => getComponents()).toThrow(/before any forward pass/);
    expect(() => getHyper()).toThrow(/before any forward pass/);
    await scope(async () => {
      fresh.forward(batch());
      lossFn();
      expect(() => lossFn()).toThrow(/at most once after each forward pass/);
      getComponents();
      expect(() => getComponents()).toThrow(/at most once/);
      getHyper();
      expect(() => getHyper()).toThrow(/at most once/);
      fresh.forward(batch());
      lossFn();
      getComponents();
    });
  });

  it('the gradient with respect to the cloak parameters matches finite differences (fixed noise)', async () => {
    const [lossFn] = make();
    const params = cloak.parameters();
    await scope(async () => {
      noisy.setRngState({ seed: 9, offset: 0 });
      noisy.forward(batch());
      lossFn().backward();
    });
    const grads = await readAll(params.map((p) => p.grad!));
    const values = await readAll(params);
    for (const p of params) {
      p.grad!.dispose();
      p.grad = null;
    }
    const rng = new Rng(`fd ${keys.join()}`);
    for (let trial = 0; trial < 2; trial++) {
      const dirs = params.map((p) => Float32Array.from(rng.uniforms(p.size, -1, 1)));
      const analytic = dirs.reduce((acc, dv, i) => acc + dv.reduce((s, v, j) => s + v * grads[i][j], 0), 0);
      const h = 2e-3;
      const at = async (sign: number) => {
        params.forEach((p, i) => {
          getContext().write(
            p.buffer,
            values[i].map((v, j) => v + sign * h * dirs[i][j]),
          );
        });
        return fixedNoiseLoss(lossFn);
      };
      const numeric = ((await at(1)) - (await at(-1))) / (2 * h);
      params.forEach((p, i) => {
        getContext().write(p.buffer, values[i]);
      });
      // f32 forward passes: central differences are good to a few percent of the derivative.
      expect(Math.abs(numeric - analytic), `directional derivative ${analytic} vs ${numeric}`).toBeLessThan(
        0.03 * Math.abs(analytic) + 2e-3,
      );
    }
  });

  if (mi) {
    it('rejects an odd batch in lossFn', async () => {
      const [lossFn] = make();
      await scope(async () => {
        noisy.forward(batch(3));
        expect(() => lossFn()).toThrow(/micro-batch size must be even and at least 2.*got 3/);
      });
    });
  }
});

function getHyperparameters(getHyper: () => Record<string, number | boolean | null>): Record<string, number | boolean | null> {
  // getHyperparameters may only be called after a forward: run one.
  return scope(() => {
    noisy.forward(batch());
    return getHyper();
  });
}

function remake(make: () => LossFactoryResult, model2: NoiseMaskedNoisyTransformerModel): LossFactoryResult {
  // The factories bind to the noisy model they are given; rebuild the same options against another one.
  const [, , getHyper] = make();
  const hp = scope(() => {
    noisy.forward(batch());
    return getHyper();
  });
  const opts = Object.fromEntries(Object.entries(hp)) as never;
  if ('alpha' in hp && 'mutualInformationLossWeight' in hp) return mutualInformationDistillationLossFactory(model2, opts);
  if ('alpha' in hp) return distillationLossFactory(model2, opts);
  if ('mutualInformationLossWeight' in hp) return mutualInformationCrossEntropyDistillationFactory(model2, opts);
  return crossEntropyDistillationFactory(model2, opts);
}

const WEIGHT_KEYS: Record<string, string> = {
  distillationLayerCosineDistanceLoss: 'distillationLayerCosineDistanceLossWeight',
  distillationLayerL2DistanceLoss: 'distillationLayerL2DistanceLossWeight',
  stdLogRatioLoss: 'stdLogRatioLossWeight',
  inputEmbeddingSimilarityLoss: 'inputEmbeddingSimilarityLossWeight',
  inverseL2PowerLawCatalystLoss: 'inverseL2PowerLawCatalystLossWeight',
  mutualInformationLoss: 'mutualInformationLossWeight',
  distillationCrossEntropyLoss: 'distillationCrossEntropyLossWeight',
  absoluteCosineSimilarityPenalty: 'absoluteCosineSimilarityPenaltyWeight',
  medianNormPenalty: 'medianNormPenaltyWeight',
};
const STRENGTH_TERMS = ['stdLogRatioLoss', 'inputEmbeddingSimilarityLoss', 'inverseL2PowerLawCatalystLoss', 'mutualInformationLoss'];

/** LOSSES.md section 4, written independently of the factories. */
function effectiveWeight(key: string, hp: Record<string, number | boolean | null>): number {
  const hasAlpha = typeof hp.alpha === 'number';
  // In the MI distillation factory the cosine distance has no weight of its own.
  const w = key === 'distillationLayerCosineDistanceLoss' && !(WEIGHT_KEYS[key] in hp) ? 1 : (hp[WEIGHT_KEYS[key]] as number);
  if (!hasAlpha) return w;
  const a = hp.alpha as number;
  return STRENGTH_TERMS.includes(key) ? a * w : (1 - a) * w;
}

function weightedSum(values: Record<string, number>, hp: Record<string, number | boolean | null>): number {
  return Object.entries(values).reduce((acc, [k, v]) => (k === 'loss' ? acc : acc + effectiveWeight(k, hp) * v), 0);
}

/**
 * How far the GPU's f32 total may be from the exact weighted sum of its f32 components: each of
 * the K weighted terms is rounded at most twice (its weight to f32, the product) and each of the
 * K - 1 additions once, (K + 1) roundings of at most 2^-24 relative to sum |w v|, which
 * K * 2^-23 (f32 epsilon) bounds. An absolute 5e-5 was below f32 resolution at a total of 790
 * (spacing 6.1e-5 there), and failed on SwiftShader.
 */
function sumRoundingBound(values: Record<string, number>, hp: Record<string, number | boolean | null>): number {
  const terms = Object.entries(values).filter(([k]) => k !== 'loss' && effectiveWeight(k, hp) !== 0);
  const magnitude = terms.reduce((acc, [k, v]) => acc + Math.abs(effectiveWeight(k, hp) * v), 0);
  return terms.length * 2 ** -23 * magnitude;
}

describe('option checks at factory time', () => {
  const base = {
    distillationLayerIndex: 0,
    alpha: 0.5,
    stdLogRatioLossWeight: 1,
    inputEmbeddingSimilarityLossWeight: 1,
    distillationLayerCosineDistanceLossWeight: 1,
  };
  it('names the bad option', () => {
    expect(() => distillationLossFactory(noisy, { ...base, alpha: 1.5 })).toThrow(
      /distillationLossFactory: option 'alpha' must be in \[0, 1\], got 1.5/,
    );
    expect(() => distillationLossFactory(noisy, { ...base, stdLogRatioLossWeight: -1 })).toThrow(
      /option 'stdLogRatioLossWeight' must be a finite number >= 0/,
    );
    expect(() => distillationLossFactory(noisy, { ...base, inputEmbeddingSimilarityLossWeight: NaN })).toThrow(
      /'inputEmbeddingSimilarityLossWeight'/,
    );
    expect(() => distillationLossFactory(noisy, { ...base, distillationLayerIndex: 2 })).toThrow(
      /'distillationLayerIndex' must be null or a block index in 0..1, got 2/,
    );
    expect(() => distillationLossFactory(noisy, { ...base, inverseL2PowerLawExponentOfDecay: 0 })).toThrow(
      /'inverseL2PowerLawExponentOfDecay' must be positive/,
    );
    expect(() => distillationLossFactory(noisy, { ...base, inverseL2PowerLawCharacteristicLength: -2 })).toThrow(
      /'inverseL2PowerLawCharacteristicLength' must be positive/,
    );
    const { alpha: _alpha, ...noAlpha } = base;
    expect(() => distillationLossFactory(noisy, noAlpha as never)).toThrow(/option 'alpha' is required/);
    expect(() => distillationLossFactory(noisy, { ...base, alhpa: 1 } as never)).toThrow(/unknown option 'alhpa'/);
    expect(() =>
      crossEntropyDistillationFactory(noisy, {
        distillationCrossEntropyLossWeight: 1,
        absoluteCosineSimilarityPenaltyWeight: Infinity,
        medianNormPenaltyWeight: 0,
      }),
    ).toThrow(/'absoluteCosineSimilarityPenaltyWeight'/);
    expect(() =>
      mutualInformationCrossEntropyDistillationFactory(noisy, {
        mutualInformationLossWeight: 1,
        distillationCrossEntropyLossWeight: 1,
        absoluteCosineSimilarityPenaltyWeight: 0,
        medianNormPenaltyWeight: 0,
        combineNoiseMasksForMutualInformationSubBatches: 'yes' as never,
      }),
    ).toThrow(/'combineNoiseMasksForMutualInformationSubBatches' must be true or false/);
  });

  it('getHyperparameters returns every option, defaults included', () => {
    const [, , getHyper] = distillationLossFactory(noisy, base);
    const hp = getHyperparameters(getHyper);
    expect(hp).toEqual({
      ...base,
      distillationLayerL2DistanceLossWeight: 0,
      inverseL2PowerLawCatalystLossWeight: 0,
      inverseL2PowerLawCharacteristicLength: 1,
      inverseL2PowerLawExponentOfDecay: 1,
    });
  });
});

describe('several factories on one noisy model', () => {
  /** Every component of one fixed-noise forward of `noisyModel`, read by each factory in `fns`. */
  async function componentsOf(noisyModel: NoiseMaskedNoisyTransformerModel, fns: LossFactoryResult[]): Promise<Record<string, number>[]> {
    return scope(async () => {
      noisyModel.setRngState({ seed: 9, offset: 0 });
      noisyModel.forward(batch());
      const all = fns.map(([lossFn, getComponents]) => {
        lossFn();
        return getComponents();
      });
      const keys = all.map((c) => Object.keys(c).sort());
      const values = await readAll(all.flatMap((c, i) => keys[i].map((k) => c[k])));
      let at = 0;
      return keys.map((ks) => Object.fromEntries(ks.map((k) => [k, values[at++][0]])));
    });
  }

  it('each factory computes the loss it computes alone, whatever layer or logits the others asked for', async () => {
    // Factories in the table ask for block 0, the logits, block 1 and the logits: every pair disagrees somewhere.
    const alone: Record<string, number>[] = [];
    for (const f of factories) {
      const own = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 9 });
      alone.push((await componentsOf(own, [remake(f.make, own)]))[0]);
    }
    const shared = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 9 });
    const together = await componentsOf(
      shared,
      factories.map((f) => remake(f.make, shared)),
    );
    together.forEach((components, i) => {
      expect(Object.keys(components), factories[i].name).toEqual(Object.keys(alone[i]));
      for (const [k, v] of Object.entries(alone[i])) expect(components[k], `${factories[i].name}: ${k}`).toBe(v);
    });
  });
});
