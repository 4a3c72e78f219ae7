/**
 * The fixture causal LMs (`../shared/fixtures/tiny-*`) in a real page (headless Chromium, WebGPU on
 * SwiftShader) against PyTorch float64: every block output, the logits and the gradient of
 * sum(logits * R * attentionMask) with respect to the input embeddings, at the positions whose
 * attention mask is 1, as test/node/models.test.ts checks them in Node.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { liveBufferCount, mul, readAll, rope, scope, sum, tensor } from '../../src/index';
import { loadCausalLM } from '../../src/models/causalLM';
import { rope as ropeReference } from '../../src/reference/rope';
import { ndarray } from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { browserGpu, randomF32 } from './browser-gpu';
import { MODEL_FIXTURES, loadModelFixture, type ModelFixtureName, type ModelReference } from './fixtures';

/** Keeps the rows (positions) whose attention mask is 1; `width` values per position. */
function realPositions(values: ArrayLike<number>, mask: number[], width: number): number[] {
  const out: number[] = [];
  mask.forEach((m, p) => {
    if (m === 1) for (let j = 0; j < width; j++) out.push(values[p * width + j]);
  });
  return out;
}

/** R * attentionMask broadcast over the last axis: the seed of sum(logits * R * mask). */
function maskedSeed(ref: ModelReference): Float32Array {
  const V = ref.R.shape[2];
  return Float32Array.from(ref.R.data, (r, i) => r * ref.attentionMask.data[Math.floor(i / V)]);
}

/**
 * Tolerances (rtol) of the GPU against PyTorch float64, as in Node: the BF16 fixtures of issue 9
 * (tiny-llama3, tiny-qwen2) at rel. 2e-4 for values and 2e-3 for the input gradient.
 */
const TOLERANCE: Record<ModelFixtureName, { values: number; gradient: number }> = {
  'tiny-llama': { values: 1e-4, gradient: 1e-3 },
  'tiny-gpt2': { values: 1e-4, gradient: 1e-3 },
  'tiny-llama3': { values: 2e-4, gradient: 2e-3 },
  'tiny-qwen2': { values: 2e-4, gradient: 2e-3 },
};

beforeAll(async () => {
  await browserGpu();
});

describe.each(MODEL_FIXTURES)('%s in Chromium', (name) => {
  it('matches PyTorch on the GPU: block outputs, logits and the input-embedding gradient', async () => {
    const { config, weights, ref } = await loadModelFixture(name);
    const tol = TOLERANCE[name];
    const start = liveBufferCount();
    const model = await loadCausalLM({ config, weights });
    const [B, T] = ref.ids.shape;
    const d = model.config.hiddenSize;
    const V = model.config.vocabSize;
    const mask = ref.attentionMask.data;
    // The check is not vacuous: some positions are real, and (in these fixtures) some are padding.
    expect(mask.filter((m) => m === 1).length).toBeGreaterThan(0);
    expect(mask.filter((m) => m === 0).length).toBeGreaterThan(0);
    expect(ref.logits.shape).toEqual([B, T, V]);
    const loaded = liveBufferCount();
    const result = await scope(async () => {
      const x = model.embed({ data: ref.ids.data, shape: [B, T] });
      x.requiresGrad = true;
      const out = model.forward({ inputsEmbeds: x, attentionMask: mask, captureBlocks: 'all' });
      sum(mul(out.logits!, tensor(maskedSeed(ref), [B, T, V]))).backward();
      const arrays = await readAll([...out.blocks, out.logits!, x.grad!]);
      return arrays.map((a) => Array.from(a));
    });
    expect(liveBufferCount(), 'buffers left after forward + backward').toBe(loaded);
    const blocks = result.slice(0, -2);
    const [logits, grad] = result.slice(-2);
    expect(blocks.length).toBe(model.config.numLayers);
    expect(ref.blockOutputs.length).toBe(model.config.numLayers);
    // Every comparison runs, so that a failure lists all the arrays that are off, not the first.
    const failures: string[] = [];
    const check = (actual: number[], expected: number[], rtol: number, atol: number, what: string) => {
      try {
        expectClose(actual, expected, rtol, atol, `${name} ${what}`);
      } catch (e) {
        failures.push((e as Error).message);
      }
    };
    blocks.forEach((b, k) => {
      check(realPositions(b, mask, d), realPositions(ref.blockOutputs[k].data, mask, d), tol.values, 1e-4, `block ${k}`);
    });
    check(realPositions(logits, mask, V), realPositions(ref.logits.data, mask, V), tol.values, 1e-4, 'logits');
    check(
      realPositions(grad, mask, d),
      realPositions(ref.gradInputsEmbedsOfSumLogitsTimesR.data, mask, d),
      tol.gradient,
      1e-4,
      'input-embedding gradient',
    );
    expect(failures, `${name}: arrays that differ from PyTorch in Chromium`).toEqual([]);
    model.dispose();
    expect(liveBufferCount(), 'buffers left after model.dispose()').toBe(start);
  });
});

describe('rotary position embedding (tiny-llama uses it; GPT-2 does not) in Chromium', () => {
  it('rope on [2, 7, 4, 8] (the tiny-llama heads) matches the float64 twin to 1e-5, as in Node', async () => {
    const shape = [2, 7, 4, 8];
    const x = randomF32(7, 2 * 7 * 4 * 8);
    const out = scope(() => rope(tensor(x, shape), { theta: 10000 }));
    const got = await out.toArray();
    out.dispose();
    const want = ropeReference(ndarray(Float64Array.from(x), shape), { theta: 10000 }).data;
    expectClose(got, want, 1e-5, 1e-5, 'rope forward');
  });

  it('rope with llama3 and linear scaling (tiny-llama3: Dh 16, T 24 past the original 16 positions) matches the twin', async () => {
    const shape = [2, 24, 4, 16];
    const x = randomF32(11, 2 * 24 * 4 * 16);
    for (const scaling of [
      { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
      { type: 'linear', factor: 2.5 },
    ] as const) {
      const out = scope(() => rope(tensor(x, shape), { theta: 500000, positionOffset: 5, scaling }));
      const got = await out.toArray();
      out.dispose();
      const want = ropeReference(ndarray(Float64Array.from(x), shape), { theta: 500000, positionOffset: 5, scaling }).data;
      expectClose(got, want, 1e-5, 1e-5, `rope forward, ${scaling.type} scaling`);
    }
  });
});
