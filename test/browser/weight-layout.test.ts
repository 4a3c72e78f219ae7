/**
 * Weights in their file dtype and in row blocks in a real page (headless Chromium, SwiftShader,
 * which has no `shader-f16`), as test/node/weight-layout.test.ts checks them in Node: the BF16
 * fixtures give the widened model's logits and input gradient bit for bit with the file's bytes on
 * the GPU, and again with the binding limit forced small (embedding and head in row blocks); an
 * f16 weight is unpacked without `shader-f16`.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { getContext, liveBufferCount, matmul, mul, readAll, scope, sum, tensor } from '../../src/index';
import { gather } from '../../src/ops/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { floatsToBits16 } from '../../src/tensor/half';
import { gather as refGather, matmul as refMatmul, ndarray, unpackBits16 } from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { browserGpu, randomF32 } from './browser-gpu';
import { loadModelFixture } from './fixtures';

beforeAll(async () => {
  await browserGpu();
});

afterEach(() => {
  getContext().setBindingLimit(null);
});

/** Logits and the input-embedding gradient of sum(logits * seed) at seeded ids. */
async function pass(model: CausalLM, B: number, T: number): Promise<{ logits: number[]; grad: number[] }> {
  const V = model.config.vocabSize;
  const ids = Array.from(randomF32(7, B * T, 0, V), Math.floor);
  const seed = randomF32(8, B * T * V);
  const start = liveBufferCount();
  const r = await scope(async () => {
    const x = model.embed({ data: ids, shape: [B, T] });
    x.requiresGrad = true;
    const out = model.forward({ inputsEmbeds: x });
    sum(mul(out.logits!, tensor(seed, [B, T, V]))).backward();
    const [logits, grad] = await readAll([out.logits!, x.grad!]);
    return { logits: Array.from(logits), grad: Array.from(grad) };
  });
  expect(liveBufferCount()).toBe(start);
  return r;
}

describe.each([
  { name: 'tiny-qwen2' as const, limit: 4096, blocks: 3, B: 1, T: 6 },
  { name: 'tiny-llama3' as const, limit: 9216, blocks: 2, B: 1, T: 8 },
])('$name (BF16) in Chromium', ({ name, limit, blocks, B, T }) => {
  it('keeps the weights 16-bit and in row blocks with the same logits and input gradient', async () => {
    const { config, weights } = await loadModelFixture(name);
    const widened = await loadCausalLM({ config, weights, weightDtype: 'f32' });
    const expected = await pass(widened, B, T);
    const widenedBytes = widened.weightBytes;
    widened.dispose();

    const packed = await loadCausalLM({ config, weights });
    expect(packed.weightBytes * 2).toBe(widenedBytes);
    expect(packed.parameters().every((t) => t.dtype === 'bf16')).toBe(true);
    const got = await pass(packed, B, T);
    expect(got.logits).toEqual(expected.logits);
    expect(got.grad).toEqual(expected.grad);
    packed.dispose();

    getContext().setBindingLimit(limit);
    const split = await loadCausalLM({ config, weights });
    expect(split.embeddingBlocks().length).toBe(blocks);
    for (const t of split.parameters()) expect(t.byteLength).toBeLessThanOrEqual(limit);
    const again = await pass(split, B, T);
    expect(again.logits).toEqual(expected.logits);
    expect(again.grad).toEqual(expected.grad);
    split.dispose();
  });
});

describe('an f16 weight without shader-f16', () => {
  it('is unpacked by matmul and gather', async () => {
    const w = floatsToBits16(randomF32(3, 9 * 6), 'f16');
    const x = randomF32(4, 5 * 6);
    const [y, e] = await scope(async () => {
      const W = tensor(w, [9, 6], { dtype: 'f16' });
      return readAll([matmul(tensor(x, [5, 6]), W, { transposeB: true }), gather(W, tensor(Int32Array.of(8, 0, 3), [3]))]);
    });
    const refW = ndarray(unpackBits16(w, 'f16'), [9, 6]);
    expectClose(y, refMatmul(ndarray(x, [5, 6]), refW, { transposeB: true }).data, 1e-5, 1e-5, 'product');
    expect(Array.from(e)).toEqual(Array.from(refGather(refW, ndarray([8, 0, 3], [3])).data));
  });
});
