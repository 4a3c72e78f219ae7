/**
 * The fused LM head wired into training (issue 9, point 3): the causal LM's final hidden states,
 * the noisy model's `finalHidden` request, and the cross-entropy factories on the fused path
 * against the unfused reference path (`fusedHead: false`) on tiny-llama: the same loss and the
 * same cloak gradients, the logits never made, and logits passed to lossFn taking the unfused path.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { expectClose } from '../helpers/compare';
import { liveBufferCount, readAll, scope } from '../../src/index';
import { matmulRowBlocks } from '../../src/ops/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { NoiseMaskedNoisyTransformerModel, TransformerCloak } from '../../src/models/cloak';
import {
  crossEntropyDistillationFactory,
  mutualInformationCrossEntropyDistillationFactory,
  type LossFactoryResult,
} from '../../src/factories/distillation';

let model: CausalLM;
let cloak: TransformerCloak;

beforeAll(async () => {
  await gpu();
  const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
  const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
  model = await loadCausalLM({ config, weights });
  // Cached by the model on first use (the median-norm term): made here, outside the buffer counts.
  model.embeddingStatistics();
  // A strong transform, so that the cross-entropy and its gradient are far from 0.
  cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, rhoInit: -1, seed: 3, initStd: 0.2 });
});

afterAll(() => {
  cloak.dispose();
  model.dispose();
});

const batch = {
  ids: Array.from({ length: 2 * 7 }, (_, i) => (i * 11 + 5) % 96),
  attentionMask: Array.from({ length: 2 * 7 }, (_, i) => (i >= 12 ? 0 : 1)),
  noiseMask: Array.from({ length: 2 * 7 }, (_, i) => (i >= 12 || i % 7 === 0 ? 0 : 1)),
  lossMask: Array.from({ length: 2 * 7 }, (_, i) => (i >= 12 || i % 5 === 2 ? 0 : 1)),
  batchSize: 2,
  seqLen: 7,
};

type Make = (noisy: NoiseMaskedNoisyTransformerModel) => LossFactoryResult;
const CE_FACTORIES: { name: string; make: Make }[] = [
  {
    name: 'crossEntropyDistillationFactory',
    make: (noisy) =>
      crossEntropyDistillationFactory(noisy, {
        distillationCrossEntropyLossWeight: 1.5,
        absoluteCosineSimilarityPenaltyWeight: 0.5,
        medianNormPenaltyWeight: 0.25,
      }),
  },
  {
    name: 'mutualInformationCrossEntropyDistillationFactory',
    make: (noisy) =>
      mutualInformationCrossEntropyDistillationFactory(noisy, {
        mutualInformationLossWeight: 0.3,
        distillationCrossEntropyLossWeight: 1,
        absoluteCosineSimilarityPenaltyWeight: 0.5,
        medianNormPenaltyWeight: 0.25,
      }),
  },
];

/** One fixed-noise step: the components, whether the forward made logits, and the cloak's gradients (then cleared). */
async function step(
  fusedHead: boolean,
  make: Make,
  passLogits = false,
): Promise<{ components: Record<string, number>; madeLogits: boolean; grads: Float32Array[] }> {
  const noisy = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 4, fusedHead });
  const [lossFn, getComponents] = make(noisy);
  const params = cloak.parameters();
  const { components, madeLogits } = await scope(async () => {
    const out = noisy.forward(batch);
    const logits = passLogits ? matmulRowBlocks(out.studentHidden!, model.headBlocks()) : out.studentLogits;
    const loss = lossFn(logits);
    loss.backward();
    const c = getComponents();
    const keys = Object.keys(c).sort();
    const values = await readAll(keys.map((k) => c[k]));
    return { components: Object.fromEntries(keys.map((k, i) => [k, values[i][0]])), madeLogits: out.teacherLogits !== null };
  });
  const grads = (await readAll(params.map((p) => p.grad!))) as Float32Array[];
  for (const p of params) {
    p.grad!.dispose();
    p.grad = null;
  }
  return { components, madeLogits, grads };
}

describe('the final hidden states of a causal LM', () => {
  it("output 'hidden' is the final norm's output that the head maps to the logits; 'both' gives both", async () => {
    const before = liveBufferCount();
    await scope(async () => {
      const ids = { data: batch.ids, shape: [2, 7] as const };
      const logits = model.forward({ ids }).logits!;
      const hiddenOnly = model.forward({ ids, output: 'hidden' });
      expect(hiddenOnly.logits).toBeUndefined();
      expect(hiddenOnly.hidden!.shape).toEqual([2, 7, model.config.hiddenSize]);
      const both = model.forward({ ids, output: 'both' });
      const [a, b, c, d] = await readAll([logits, matmulRowBlocks(hiddenOnly.hidden!, model.headBlocks()), both.logits!, both.hidden!]);
      expect(Array.from(b)).toEqual(Array.from(a));
      expect(Array.from(c)).toEqual(Array.from(a));
      expect(Array.from(d)).toEqual(Array.from(await hiddenOnly.hidden!.toArray()));
      expect(() => model.forward({ ids, output: 'probabilities' as never })).toThrow(
        /forward: 'output' must be 'logits', 'hidden' or 'both', got probabilities/,
      );
    });
    expect(liveBufferCount()).toBe(before);
  });
});

describe.each(CE_FACTORIES)('$name: fused vs unfused LM head', ({ make }) => {
  it('gives the same components and the same cloak gradients; only the unfused path makes logits', async () => {
    const before = liveBufferCount();
    const fused = await step(true, make);
    const unfused = await step(false, make);
    expect(fused.madeLogits).toBe(false);
    expect(unfused.madeLogits).toBe(true);
    expect(Object.keys(fused.components)).toEqual(Object.keys(unfused.components));
    expect(fused.components.distillationCrossEntropyLoss).toBeGreaterThan(0.01);
    for (const [k, v] of Object.entries(unfused.components)) expect(fused.components[k], k).toBeCloseTo(v, 5);
    const all = (g: Float32Array[]) => Float32Array.from(g.flatMap((x) => Array.from(x)));
    const scaleOf = Math.max(...all(unfused.grads).map(Math.abs));
    expect(scaleOf).toBeGreaterThan(1e-3);
    expectClose(all(fused.grads), all(unfused.grads), 1e-3, 1e-5 * scaleOf, 'cloak gradients');
    expect(liveBufferCount()).toBe(before);
  });

  it('logits passed to lossFn go through the unfused path (teacher logits made from its hidden states)', async () => {
    const fused = await step(true, make);
    const passed = await step(true, make, true);
    expect(passed.madeLogits).toBe(false);
    for (const [k, v] of Object.entries(fused.components)) expect(passed.components[k], k).toBeCloseTo(v, 5);
  });
});

describe('the noisy model', () => {
  it("checks 'fusedHead', and makes logits for a null-layer request unless it asks for the final hidden states", async () => {
    expect(() => new NoiseMaskedNoisyTransformerModel(model, cloak, { fusedHead: 'yes' as never })).toThrow(
      /'fusedHead' must be true or false, got yes/,
    );
    const noisy = new NoiseMaskedNoisyTransformerModel(model, cloak);
    expect(noisy.fusedHead).toBe(true);
    await scope(async () => {
      noisy.requestOutputs({ distillationLayerIndex: null, logits: false });
      const a = noisy.forward(batch);
      expect(a.studentLogits).not.toBeNull();
      expect(a.studentHidden).toBeNull();
      noisy.requestOutputs({ distillationLayerIndex: 1, logits: false, finalHidden: true });
      const b = noisy.forward(batch);
      expect(b.studentLogits).toBeNull();
      expect(b.teacherHidden!.requiresGrad).toBe(false);
      expect(b.studentHidden!.requiresGrad).toBe(true);
      expect(b.layers.get(1)).toBeDefined();
    });
  });
});
