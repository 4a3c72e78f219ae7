/**
 * One mask rule for every loss and metric (README, "Reliability"): a position is selected iff its
 * mask value is not 0 (PyTorch's `mask.bool()`); a mask never weights. A tensor mask holding 2,
 * 0.5 or -1 therefore gives exactly the result of the 0/1 mask that is 1 where it is non-zero,
 * values and gradients, on the GPU and in the float64 twins. Host masks must hold only 0 and 1.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { Rng } from '../helpers/random';
import { liveBufferCount, readAll, scope, tensor, type Tensor } from '../../src/index';
import { distillationCrossEntropyReference } from '../../src/reference/crossEntropy';
import { lmHeadDistillationCrossEntropyReference } from '../../src/reference/lmHeadCrossEntropy';
import { rowPairLossReference, type RowPairLossName } from '../../src/reference/cosine';
import { medianNormPenaltyReference } from '../../src/reference/medianNorm';
import { stdLogRatioReference } from '../../src/reference/stdLogRatio';
import { inverseL2PowerLawCatalystReference } from '../../src/reference/catalyst';
import { mutualInformationReference } from '../../src/reference/mutualInformation';
import { agreementAndKLReference, nearestNeighbourInversionReference } from '../../src/reference/metrics';
import { distillationCrossEntropy } from '../../src/losses/crossEntropy';
import { lmHeadDistillationCrossEntropy } from '../../src/losses/lmHeadCrossEntropy';
import {
  absoluteCosineSimilarity,
  distillationLayerCosineDistance,
  distillationLayerL2Distance,
  inputEmbeddingSimilarity,
} from '../../src/losses/cosine';
import { medianNormPenalty } from '../../src/losses/medianNorm';
import { stdLogRatio } from '../../src/losses/stdLogRatio';
import { inverseL2PowerLawCatalyst } from '../../src/losses/catalyst';
import { mutualInformation } from '../../src/losses/mutualInformation';
import { agreementAndKL, nearestNeighbourInversion } from '../../src/eval/metrics';
import type { MaskInput } from '../../src/tensor/validate';

beforeAll(async () => {
  await gpu();
});

const [B, T, d, V] = [2, 4, 5, 7];
const n = B * T;
/** Non-zero values other than 1 (they select, and do not weight), zeros, and ones. */
const RULE_MASK = [1, 2, 0, 0.5, -1, 0, 1, 0.25];
const BINARY_MASK = RULE_MASK.map((v) => (v !== 0 ? 1 : 0));

const rng = new Rng('mask rule');
const data = {
  a: rng.uniforms(n * d, -1, 1),
  b: rng.uniforms(n * d, -1, 1),
  c: rng.uniforms(n * d, -0.3, 0.3),
  sigma: rng.uniforms(n * d, 0.2, 0.9),
  logitsA: rng.uniforms(n * V, -3, 3),
  logitsB: rng.uniforms(n * V, -3, 3),
  table: rng.uniforms(V * d, -1, 1),
  std: rng.uniforms(d, 0.3, 0.8),
  ids: Array.from({ length: n }, (_, i) => (i * 3) % V),
};

/** A loss or metric with the mask given; `grads` are the inputs whose gradients are compared. */
interface MaskCase {
  name: string;
  run: (mask: MaskInput) => { values: Tensor[]; grads: Tensor[] };
  /** The float64 twin with the mask as host numbers (the rule values or the 0/1 ones): its values folded into one number. */
  twin: (mask: number[]) => number;
}

const f = (values: number[], shape: number[], requiresGrad = false) => tensor(Float32Array.from(values), shape, { requiresGrad });

/** A scalar loss with two differentiable [B, T, d] inputs. */
function pairCase(name: RowPairLossName, loss: (u: Tensor, v: Tensor, m: MaskInput) => Tensor): MaskCase {
  const twin = (mask: number[]) => rowPairLossReference(name, { u: data.a, v: data.b, mask, shape: [B, T, d] }).value;
  return {
    name,
    run: (mask) => {
      const u = f(data.a, [B, T, d], true);
      const v = f(data.b, [B, T, d], true);
      const l = loss(u, v, mask);
      l.backward();
      return { values: [l], grads: [u.grad!, v.grad!] };
    },
    twin,
  };
}

const CASES: MaskCase[] = [
  {
    name: 'distillationCrossEntropy',
    run: (mask) => {
      const student = f(data.logitsB, [B, T, V], true);
      const l = distillationCrossEntropy(f(data.logitsA, [B, T, V]), student, mask);
      l.backward();
      return { values: [l], grads: [student.grad!] };
    },
    twin: (mask) => distillationCrossEntropyReference({ teacher: data.logitsA, student: data.logitsB, mask, shape: [B, T, V] }),
  },
  {
    name: 'lmHeadDistillationCrossEntropy',
    run: (mask) => {
      const student = f(data.b, [B, T, d], true);
      const l = lmHeadDistillationCrossEntropy(f(data.a, [B, T, d]), student, f(data.table, [V, d]), mask);
      l.backward();
      return { values: [l], grads: [student.grad!] };
    },
    twin: (mask) =>
      lmHeadDistillationCrossEntropyReference({
        teacherHidden: data.a,
        studentHidden: data.b,
        headBlocks: [data.table],
        mask,
        rows: n,
        hidden: d,
      }),
  },
  pairCase('distillationLayerCosineDistance', distillationLayerCosineDistance),
  pairCase('distillationLayerL2Distance', distillationLayerL2Distance),
  pairCase('inputEmbeddingSimilarity', inputEmbeddingSimilarity),
  pairCase('absoluteCosineSimilarity', absoluteCosineSimilarity),
  {
    name: 'medianNormPenalty',
    run: (mask) => {
      const mu = f(data.c, [B, T, d], true);
      const l = medianNormPenalty(f(data.a, [B, T, d]), mu, 1.1, mask);
      l.backward();
      return { values: [l], grads: [mu.grad!] };
    },
    twin: (mask) => medianNormPenaltyReference(data.a, data.c, 1.1, mask, d).value,
  },
  {
    name: 'stdLogRatio',
    run: (mask) => {
      const sigma = f(data.sigma, [B, T, d], true);
      const l = stdLogRatio(sigma, f(data.std, [d]), mask);
      l.backward();
      return { values: [l], grads: [sigma.grad!] };
    },
    twin: (mask) => stdLogRatioReference(data.sigma, data.std, mask).value,
  },
  {
    name: 'inverseL2PowerLawCatalyst',
    run: (mask) => {
      const xt = f(data.a, [B, T, d], true);
      const l = inverseL2PowerLawCatalyst(xt, f(data.table, [V, d]), mask, { characteristicLength: 0.5, exponentOfDecay: 1.5 });
      l.backward();
      return { values: [l], grads: [xt.grad!] };
    },
    twin: (mask) => inverseL2PowerLawCatalystReference(data.a, data.table, mask, d, 0.5, 1.5).value,
  },
  {
    name: 'mutualInformation (noise mask, and attention mask when uncombined)',
    run: (mask) => {
      const [xt, mu, sigma] = [f(data.b, [B, T, d], true), f(data.c, [B, T, d], true), f(data.sigma, [B, T, d], true)];
      const x = f(data.a, [B, T, d]);
      const combined = mutualInformation(x, xt, mu, sigma, mask);
      const uncombined = mutualInformation(
        x,
        xt,
        mu,
        sigma,
        BINARY_MASK.map(() => 1),
        { combineNoiseMasks: false, attentionMask: mask },
      );
      combined.backward();
      return { values: [combined, uncombined], grads: [xt.grad!, mu.grad!, sigma.grad!] };
    },
    twin: (mask) => {
      const inputs = { B, T, d, x: data.a, xt: data.b, mu: data.c, sigma: data.sigma };
      const all = mask.map(() => 1);
      return (
        mutualInformationReference({ ...inputs, noiseMask: mask }) +
        1000 * mutualInformationReference({ ...inputs, noiseMask: all, attentionMask: mask, combineNoiseMasks: false })
      );
    },
  },
  {
    name: 'nearestNeighbourInversion',
    run: (mask) => {
      const r = nearestNeighbourInversion(f(data.a, [B, T, d]), f(data.table, [V, d]), tensor(Int32Array.from(data.ids), [B, T]), mask);
      return { values: [r.failures, r.count], grads: [] };
    },
    twin: (mask) => {
      const r = nearestNeighbourInversionReference(data.a, data.table, data.ids, mask, d, V);
      return r.failures + 1000 * r.count;
    },
  },
  {
    name: 'agreementAndKL',
    run: (mask) => {
      const r = agreementAndKL(f(data.logitsA, [B, T, V]), f(data.logitsB, [B, T, V]), mask);
      return { values: [r.agree, r.kl, r.count], grads: [] };
    },
    twin: (mask) => {
      const r = agreementAndKLReference(data.logitsA, data.logitsB, mask, V);
      return r.agree + 1000 * r.count + 1e6 * r.kl;
    },
  },
];

/** Every value and gradient of `c` with `mask`, read back. */
function results(c: MaskCase, mask: () => MaskInput): Promise<number[][]> {
  return scope(async () => {
    const { values, grads } = c.run(mask());
    const read = await readAll([...values, ...grads]);
    for (const g of grads) g.dispose();
    return read.map((r) => Array.from(r));
  });
}

describe.each(CASES)('$name', (c) => {
  it('a tensor mask holding 2, 0.5, -1 and 0.25 selects exactly where it is non-zero (values and gradients)', async () => {
    const before = liveBufferCount();
    const rule = await results(c, () => tensor(RULE_MASK, [B, T]));
    const binary = await results(c, () => tensor(BINARY_MASK, [B, T]));
    expect(rule).toEqual(binary);
    // The selection is not empty and not everything: the comparison can tell a rule from another.
    expect(binary.flat().some((v) => v !== 0)).toBe(true);
    expect(liveBufferCount()).toBe(before);
  });

  it('its float64 twin follows the same rule', () => {
    expect(c.twin(RULE_MASK)).toBe(c.twin(BINARY_MASK));
    expect(c.twin(RULE_MASK)).not.toBe(c.twin(BINARY_MASK.map(() => 1)));
  });

  it('a host mask holding anything but 0 and 1 is a named error before any GPU work', () => {
    for (const bad of [2, 0.5]) {
      const mask = BINARY_MASK.map((v, i) => (i === 3 ? bad : v));
      expect(() => scope(() => c.run(mask)), `${bad}`).toThrow(new RegExp(`must hold only 0 and 1; found ${bad} at index 3`));
    }
  });
});
