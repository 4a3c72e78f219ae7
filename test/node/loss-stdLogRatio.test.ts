import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { LOSS_FIXTURES, loadLossFixture } from '../helpers/fixtures';
import { type Tensor, liveBufferCount, scope, tensor } from '../../src/index';
import { stdLogRatio } from '../../src/losses/stdLogRatio';
import { stdLogRatioReference } from '../../src/reference/stdLogRatio';

const KEY = 'stdLogRatioLoss';

async function run(sigma: Tensor, columnStd: Tensor, mask: Tensor | number[]) {
  const loss = stdLogRatio(sigma, columnStd, mask);
  expect(loss.shape).toEqual([]);
  loss.backward();
  const value = await loss.item();
  const grad = await sigma.grad!.toArray();
  loss.dispose();
  sigma.grad!.dispose();
  sigma.grad = null;
  return { value, grad };
}

/** Deterministic pseudo-random numbers in [lo, hi). */
function uniform(n: number, seed: number, lo: number, hi: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((hi - lo) * s) / 2 ** 32;
  }
  return out;
}

describe('stdLogRatio', () => {
  for (const name of LOSS_FIXTURES) {
    const f = loadLossFixture(name);
    const expected = f.components[KEY];
    it(`${name}: float64 twin matches PyTorch`, () => {
      const r = stdLogRatioReference(f.inputs.sigma.data, f.stats.s.data, f.inputs.N.data);
      expectClose([r.value], [expected.value], 1e-10, 1e-12, 'value');
      expectClose(r.gradSigma, expected.grad.sigma.data, 1e-9, 1e-12, 'grad sigma');
    });

    it(`${name}: GPU matches PyTorch (tensor and host masks)`, async () => {
      await gpu();
      const before = liveBufferCount();
      await scope(async () => {
        const sigma = tensor(f.inputs.sigma.data, f.inputs.sigma.shape, { requiresGrad: true });
        const s = tensor(f.stats.s.data, f.stats.s.shape);
        for (const mask of [tensor(f.inputs.N.data, f.inputs.N.shape), f.inputs.N.data]) {
          const r = await run(sigma, s, mask);
          expectClose([r.value], [expected.value], 1e-4, 1e-6, 'value');
          expectClose(r.grad, expected.grad.sigma.data, 1e-3, 1e-6, 'grad sigma');
        }
      });
      expect(liveBufferCount()).toBe(before);
    });
  }

  it('float64 twin backward matches central finite differences', () => {
    const d = 4;
    const sigma = uniform(5 * d, 1, 0.01, 2);
    const s = uniform(d, 2, 0.1, 1);
    const mask = [1, 0, 1, 1, 0];
    const r = stdLogRatioReference(sigma, s, mask);
    for (let i = 0; i < sigma.length; i++) {
      const h = 1e-7 * sigma[i];
      const plus = Float64Array.from(sigma);
      const minus = Float64Array.from(sigma);
      plus[i] += h;
      minus[i] -= h;
      const fd = (stdLogRatioReference(plus, s, mask).value - stdLogRatioReference(minus, s, mask).value) / (2 * h);
      expect(Math.abs(fd - r.gradSigma[i])).toBeLessThan(1e-6 * Math.max(1, Math.abs(r.gradSigma[i])));
    }
  });

  for (const d of [300, 301]) {
    it(`sigma at its floor (1e-4) and sizes beyond one workgroup match the twin (d = ${d}: ${d % 4 ? 'scalar' : 'vec4'} reads, two pieces a row)`, async () => {
      await gpu();
      await scope(async () => {
        const [B, T] = [3, 7];
        const data = uniform(B * T * d, 3, 0.5, 2);
        for (let i = 0; i < data.length; i += 3) data[i] = 1e-4;
        const s = uniform(d, 4, 0.05, 1.5);
        const mask = [1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1];
        const ref = stdLogRatioReference(Float32Array.from(data), Float32Array.from(s), mask);
        const r = await run(tensor(data, [B, T, d], { requiresGrad: true }), tensor(s, [d]), mask);
        expectClose([r.value], [ref.value], 1e-4, 1e-6, 'value');
        expectClose(r.grad, ref.gradSigma, 1e-3, 1e-9, 'grad sigma');
      });
    });
  }

  it('an empty noise mask gives 0 and a zero gradient; unselected NaNs do not leak', async () => {
    await gpu();
    await scope(async () => {
      const data = uniform(2 * 3 * 4, 5, 0.1, 1);
      data[0] = -1; // log of a negative ratio is NaN, at an unselected position
      data[5] = NaN;
      const sigma = tensor(data, [2, 3, 4], { requiresGrad: true });
      const s = tensor([1, 1, 1, 1], [4]);
      const empty = await run(sigma, s, new Array(6).fill(0));
      expect(empty.value).toBe(0);
      expect(Array.from(empty.grad).every((v) => v === 0)).toBe(true);
      const mask = [0, 0, 1, 1, 0, 1];
      const some = await run(sigma, s, mask);
      const ref = stdLogRatioReference(Float32Array.from(data), [1, 1, 1, 1], mask);
      expect(Number.isFinite(some.value)).toBe(true);
      expectClose([some.value], [ref.value], 1e-4, 1e-6, 'value');
      expectClose(some.grad, ref.gradSigma, 1e-3, 1e-7, 'grad');
    });
  });

  it('rejects bad arguments on the host, naming them', async () => {
    await gpu();
    scope(() => {
      const sigma = tensor(new Float32Array(2 * 3 * 4).fill(1), [2, 3, 4]);
      const mask = new Array(6).fill(1);
      expect(() => stdLogRatio(sigma, tensor([1, 1, 1], [3]), mask)).toThrow(/stdLogRatio: 'columnStd' has shape \[3\]/);
      expect(() => stdLogRatio(sigma, tensor([1, 1, 1, 1], [1, 4]), mask)).toThrow(
        /stdLogRatio: argument 'columnStd' has shape \[1,4\]; expected rank 1/,
      );
      expect(() => stdLogRatio(sigma, tensor([1, 1, 1, 1], [4]), [1, 1])).toThrow(/stdLogRatio: mask 'noiseMask' has 2 values; expected 6/);
      expect(() => stdLogRatio(sigma, tensor([1, 1, 1, 1], [4]), [1, 1, 2, 0, 0, 0])).toThrow(/must hold only 0 and 1/);
      expect(() => stdLogRatio(sigma.view([6, 4]), tensor([1, 1, 1, 1], [4]), mask)).toThrow(/stdLogRatio: argument 'sigma'/);
    });
  });
});
