/**
 * Edge values get PyTorch's result or a named error, never a plausible wrong number: reductions
 * over empty axes, non-numeric and non-integer host data, a second backward, token ids outside
 * the vocabulary in a GPU tensor, and a mutual information with sigma = 0.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import * as G from '../../src/index';
import { liveBufferCount, readAll, scope, tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { mutualInformation } from '../../src/losses/mutualInformation';

beforeAll(async () => {
  await gpu();
});

/** Runs `body` in a scope and asserts that every GPU buffer it made was freed. */
async function leakFree(body: () => Promise<void> | void): Promise<void> {
  const before = liveBufferCount();
  await scope(body);
  expect(liveBufferCount(), 'GPU buffers still live after the scope').toBe(before);
}

/** Leaves stale non-zero bytes in the pool's free buffers of every small size class. */
function poisonPool(): void {
  scope(() => {
    for (const n of [1, 2, 3, 4, 16, 64]) tensor(new Float32Array(n).fill(123.25), [n]);
  });
}

describe('reductions over empty axes (PyTorch: sum 0, mean NaN, max an error)', () => {
  it('over an empty last axis: sum gives zeros and mean NaNs for every row, as the twin; max names the axis', async () => {
    await leakFree(async () => {
      for (const keepDim of [false, true]) {
        poisonPool();
        const x = tensor(new Float32Array(0), [3, 0]);
        const [s, m] = await readAll([G.sum(x, -1, { keepDim }), G.mean(x, -1, { keepDim })]);
        expect(Array.from(s), `sum keepDim=${keepDim}`).toEqual([0, 0, 0]);
        expect(Array.from(m), `mean keepDim=${keepDim}`).toEqual([Number.NaN, Number.NaN, Number.NaN]);
        expect(Array.from(R.sum(R.ndarray([], [3, 0]), -1).data)).toEqual([0, 0, 0]);
        expect(Array.from(R.mean(R.ndarray([], [3, 0]), -1).data)).toEqual([Number.NaN, Number.NaN, Number.NaN]);
        expect(G.sum(x, -1, { keepDim }).shape).toEqual(keepDim ? [3, 1] : [3]);
      }
      const before = liveBufferCount();
      expect(() => G.max(tensor(new Float32Array(0), [2, 0]), -1)).toThrow(/max: cannot reduce an axis of length 0/);
      expect(liveBufferCount(), 'a refused max leaks nothing').toBe(before + 1); // the input only
    });
  });

  it('over an empty tensor: sum 0, mean NaN, max an error; an empty row set gives an empty result', async () => {
    await leakFree(async () => {
      poisonPool();
      const x = tensor(new Float32Array(0), [0, 4]);
      const [s, m] = await readAll([G.sum(x), G.mean(x)]);
      expect(Array.from(s)).toEqual([0]);
      expect(Array.from(m)).toEqual([Number.NaN]);
      expect(() => G.max(x)).toThrow(/max: cannot reduce an empty tensor/);
      expect(G.sum(x, -1).shape).toEqual([0]);
      expect(G.mean(x, -1).shape).toEqual([0]);
    });
  });

  it('the gradients through an empty axis are empty, and leak nothing', async () => {
    await leakFree(async () => {
      const x = tensor(new Float32Array(0), [2, 0], { requiresGrad: true });
      G.sum(G.add(G.sum(x, -1), G.mean(x, -1))).backward();
      expect(x.grad?.shape).toEqual([2, 0]);
      x.grad?.dispose();
    });
  });
});

describe('host data checked by tensor()', () => {
  it('names non-numeric data', () => {
    for (const bad of [['a'], [1, null], [1, undefined], [{}], [1n], [true]] as unknown[][]) {
      expect(
        () => tensor(bad as number[]),
        JSON.stringify(bad, (_, v) => (typeof v === 'bigint' ? 'bigint' : v)),
      ).toThrow(/tensor: data\[\d\] is .*; expected a number/);
    }
  });

  it('names a non-integer or out-of-range value for an integer dtype', () => {
    expect(() => tensor([0, 1.7], [2], { dtype: 'i32' })).toThrow(/tensor: data\[1\] = 1.7 is not an integer; dtype i32 holds integers/);
    expect(() => tensor(Float32Array.of(2.5), [1], { dtype: 'u32' })).toThrow(/data\[0\] = 2.5 is not an integer/);
    expect(() => tensor([Number.NaN], [1], { dtype: 'i32' })).toThrow(/data\[0\] = NaN is not an integer/);
    expect(() => tensor([2 ** 31], [1], { dtype: 'i32' })).toThrow(
      /data\[0\] = 2147483648 is outside i32's range \[-2147483648, 2147483647\]/,
    );
    expect(() => tensor([-1], [1], { dtype: 'u32' })).toThrow(/data\[0\] = -1 is outside u32's range \[0, 4294967295\]/);
    expect(() => tensor(3.5, [], { dtype: 'i32' })).toThrow(/data\[0\] = 3.5 is not an integer/);
  });

  it('keeps what is valid: integers at the ends of the ranges, NaN and infinities in f32', async () => {
    await leakFree(async () => {
      const [i, u, f] = await readAll([
        tensor([-(2 ** 31), 2 ** 31 - 1, -0], [3], { dtype: 'i32' }),
        tensor([0, 2 ** 32 - 1], [2], { dtype: 'u32' }),
        tensor([Number.NaN, Number.POSITIVE_INFINITY, -1.5]),
      ]);
      expect(Array.from(i)).toEqual([-(2 ** 31), 2 ** 31 - 1, 0]);
      expect(Array.from(u)).toEqual([0, 2 ** 32 - 1]);
      expect(Array.from(f)).toEqual([Number.NaN, Number.POSITIVE_INFINITY, -1.5]);
    });
  });
});

describe('backward a second time', () => {
  it('is a named error that changes no gradient and leaks no buffer (PyTorch: the graph was freed)', async () => {
    await leakFree(async () => {
      const x = tensor([1, 2, 3], [3], { requiresGrad: true });
      const hidden = G.scale(x, 2);
      const y = G.sum(hidden);
      const z = G.sum(G.mul(hidden, hidden)); // shares `hidden` with y
      y.backward();
      const live = liveBufferCount();
      expect(() => y.backward()).toThrow(/backward: the graph of this tensor was already freed by an earlier backward\(\)/);
      expect(() => z.backward()).toThrow(/backward: the graph of this tensor was already freed/);
      expect(liveBufferCount()).toBe(live);
      expect(Array.from((await readAll([x.grad!]))[0])).toEqual([2, 2, 2]);
      x.grad?.dispose();
    });
  });

  it('runs again when the first kept the graph (retainGraph), accumulating', async () => {
    await leakFree(async () => {
      const x = tensor([1, 2], [2], { requiresGrad: true });
      const y = G.sum(G.scale(x, 3));
      G.backward(y, undefined, { retainGraph: true });
      y.backward();
      expect(Array.from((await readAll([x.grad!]))[0])).toEqual([6, 6]);
      x.grad?.dispose();
    });
  });
});

describe('token ids outside the vocabulary', () => {
  let model: CausalLM;
  beforeAll(async () => {
    const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
    model = await loadCausalLM({ config, weights });
  });
  afterAll(() => model.dispose());

  it('in host data: a named error at the call, before any GPU work', () => {
    const V = model.config.vocabSize;
    expect(() => model.embed({ data: [1, V], shape: [1, 2] })).toThrow(
      new RegExp(`embed: token id ${V} at index 1 is outside the vocabulary`),
    );
  });

  it('in a GPU tensor: the next readback throws, naming the first bad position, then the check is clear again', async () => {
    const V = model.config.vocabSize;
    await leakFree(async () => {
      for (const [what, ids] of [
        ['an id = V in embed', () => model.embed(tensor([1, 2, V, 3], [2, 2], { dtype: 'i32' }))],
        ['a negative id in forward', () => model.forward({ ids: tensor([4, -1, 5, -7], [2, 2], { dtype: 'i32' }) }).logits!],
        ['a u32 id past the table in gather', () => G.gather(model.embeddingTable, tensor([0, 0, 0, 2 ** 31], [4], { dtype: 'u32' }))],
      ] as const) {
        const out = ids();
        const firstBad = what.includes('negative') ? 1 : what.includes('gather') ? 3 : 2;
        await expect(readAll([out]), what).rejects.toThrow(
          new RegExp(`gather: .*id.* outside the table \\(the first at flat index ${firstBad} of its ids\\)`),
        );
        // Reported once: the next readback works.
        expect((await readAll([tensor([5])]))[0][0], what).toBe(5);
      }
      // Valid ids in a GPU tensor raise nothing.
      const ok = model.embed(tensor([0, V - 1], [1, 2], { dtype: 'i32' }));
      expect((await readAll([ok]))[0].length).toBe(2 * model.config.hiddenSize);
    });
  });
});

describe('mutual information with sigma = 0', () => {
  it('the next readback throws a named error (log sigma and (y - c) / sigma are undefined there)', async () => {
    const [B, T, d] = [2, 2, 3];
    const n = B * T * d;
    const ones = () => tensor(new Float32Array(n).fill(1), [B, T, d]);
    await leakFree(async () => {
      const x = ones();
      const xt = tensor(
        Float32Array.from({ length: n }, (_, i) => 1 + 0.1 * i),
        [B, T, d],
      );
      const mu = tensor(new Float32Array(n), [B, T, d]);
      const sigma = tensor(
        Float32Array.from({ length: n }, (_, i) => (i === 4 ? 0 : 0.5)),
        [B, T, d],
      );
      const mask = [1, 1, 1, 1];
      await expect(readAll([mutualInformation(x, xt, mu, sigma, mask)])).rejects.toThrow(
        /mutualInformation: 1 value\(s\) of sigma <= 0 \(or NaN\) at selected positions/,
      );
      // A sigma of 0 where no pair is selected is never read, and raises nothing.
      const loss = mutualInformation(x, xt, mu, sigma, [1, 0, 1, 0]);
      expect(Number.isFinite((await readAll([loss]))[0][0])).toBe(true);
      const positive = tensor(new Float32Array(n).fill(0.5), [B, T, d]);
      expect(Number.isFinite((await readAll([mutualInformation(x, xt, mu, positive, mask)]))[0][0])).toBe(true);
    });
  });
});
