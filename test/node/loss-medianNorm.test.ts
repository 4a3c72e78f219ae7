import { noise } from '../helpers/random';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { LOSS_FIXTURES, loadLossFixture } from '../helpers/fixtures';
import { type Tensor, liveBufferCount, scope, tensor } from '../../src/index';
import { embeddingRowNorms, medianNormPenalty, medianOfNonNegative } from '../../src/losses/medianNorm';
import { medianNormPenaltyReference, medianReference, rowNormsReference } from '../../src/reference/medianNorm';

const KEY = 'medianNormPenalty';

async function run(x: Tensor, mu: Tensor, m: number | Tensor, mask: Tensor | number[]) {
  const loss = medianNormPenalty(x, mu, m, mask);
  expect(loss.shape).toEqual([]);
  loss.backward();
  const value = await loss.item();
  const gradMu = await mu.grad!.toArray();
  const gradX = x.requiresGrad ? await x.grad!.toArray() : null;
  loss.dispose();
  return { value, gradMu, gradX };
}

describe('medianNormPenalty', () => {
  for (const name of LOSS_FIXTURES) {
    const f = loadLossFixture(name);
    const expected = f.components[KEY];
    it(`${name}: float64 twin matches PyTorch`, () => {
      const r = medianNormPenaltyReference(f.inputs.x.data, f.inputs.mu.data, f.stats.m, f.inputs.N.data, f.d);
      expectClose([r.value], [expected.value], 1e-10, 1e-12, 'value');
      expectClose(r.gradMu, expected.grad.mu.data, 1e-9, 1e-12, 'grad mu');
      expectClose(r.gradX, expected.grad.mu.data, 1e-9, 1e-12, 'grad x');
    });

    it(`${name}: GPU matches PyTorch (number and 0-d tensor median, tensor and host masks)`, async () => {
      await gpu();
      const before = liveBufferCount();
      await scope(async () => {
        const shape = f.inputs.x.shape;
        const x = tensor(f.inputs.x.data, shape, { requiresGrad: true });
        const mu = tensor(f.inputs.mu.data, shape, { requiresGrad: true });
        const a = await run(x, mu, f.stats.m, tensor(f.inputs.N.data, f.inputs.N.shape));
        expectClose([a.value], [expected.value], 1e-4, 1e-6, 'value');
        expectClose(a.gradMu, expected.grad.mu.data, 1e-3, 1e-6, 'grad mu');
        expectClose(a.gradX!, expected.grad.mu.data, 1e-3, 1e-6, 'grad x');
        x.grad!.dispose();
        x.grad = null;
        mu.grad!.dispose();
        mu.grad = null;
        const x2 = tensor(f.inputs.x.data, shape);
        const b = await run(x2, mu, tensor([f.stats.m], []), f.inputs.N.data);
        expect(b.gradX).toBeNull();
        expectClose([b.value], [expected.value], 1e-4, 1e-6, 'value (0-d median, host mask)');
        expectClose(b.gradMu, expected.grad.mu.data, 1e-3, 1e-6, 'grad mu (0-d median, host mask)');
      });
      expect(liveBufferCount()).toBe(before);
    });
  }

  it('float64 twin backward matches central finite differences', () => {
    const positions = 6;
    const d = 5;
    const x = noise(positions * d, 1);
    const mu = noise(positions * d, 2);
    const mask = [1, 0, 1, 1, 0, 1];
    const m = 1.1;
    const r = medianNormPenaltyReference(x, mu, m, mask, d);
    const h = 1e-6;
    for (let i = 0; i < mu.length; i++) {
      const plus = Float64Array.from(mu);
      const minus = Float64Array.from(mu);
      plus[i] += h;
      minus[i] -= h;
      const fd = (medianNormPenaltyReference(x, plus, m, mask, d).value - medianNormPenaltyReference(x, minus, m, mask, d).value) / (2 * h);
      expect(Math.abs(fd - r.gradMu[i])).toBeLessThan(1e-7);
    }
  });

  it('an empty noise mask gives 0 and zero gradients', async () => {
    await gpu();
    await scope(async () => {
      const x = tensor(noise(2 * 3 * 4, 3), [2, 3, 4]);
      const mu = tensor(noise(2 * 3 * 4, 4), [2, 3, 4], { requiresGrad: true });
      const r = await run(x, mu, 0.5, new Array(6).fill(0));
      expect(r.value).toBe(0);
      expect(Array.from(r.gradMu).every((v) => v === 0)).toBe(true);
    });
  });

  it('unselected positions are selected out (a NaN there does not leak), and a zero vector has zero gradient', async () => {
    await gpu();
    await scope(async () => {
      const d = 4;
      const xData = noise(2 * 2 * d, 5);
      const muData = noise(2 * 2 * d, 6);
      xData[d] = NaN; // position 1, not selected
      // position 2: x + mu = 0 exactly
      for (let j = 0; j < d; j++) muData[2 * d + j] = -xData[2 * d + j];
      const mask = [1, 0, 1, 1];
      const x = tensor(xData, [2, 2, d]);
      const mu = tensor(muData, [2, 2, d], { requiresGrad: true });
      const gpuResult = await run(x, mu, 0.7, mask);
      const ref = medianNormPenaltyReference(Float32Array.from(xData), Float32Array.from(muData), 0.7, mask, d);
      expect(Number.isFinite(gpuResult.value)).toBe(true);
      expectClose([gpuResult.value], [ref.value], 1e-4, 1e-6, 'value');
      expectClose(gpuResult.gradMu, ref.gradMu, 1e-3, 1e-6, 'grad mu');
      for (let j = 0; j < d; j++) expect(gpuResult.gradMu[2 * d + j]).toBe(0);
    });
  });

  it('wide rows (d > workgroup size) match the twin', async () => {
    await gpu();
    await scope(async () => {
      const [B, T, d] = [2, 3, 700];
      const xData = noise(B * T * d, 7);
      const muData = noise(B * T * d, 8);
      const mask = [1, 1, 0, 1, 0, 1];
      const x = tensor(xData, [B, T, d]);
      const mu = tensor(muData, [B, T, d], { requiresGrad: true });
      const r = await run(x, mu, 15, mask);
      const ref = medianNormPenaltyReference(Float32Array.from(xData), Float32Array.from(muData), 15, mask, d);
      expectClose([r.value], [ref.value], 1e-4, 1e-6, 'value');
      expectClose(r.gradMu, ref.gradMu, 1e-3, 1e-7, 'grad mu');
    });
  });

  it('wide rows of a length not a multiple of 4 (scalar reads, two pieces per row) match the twin', async () => {
    await gpu();
    await scope(async () => {
      const [B, T, d] = [2, 3, 301];
      const xData = noise(B * T * d, 9);
      const muData = noise(B * T * d, 10);
      xData[2 * d + 5] = NaN; // position 2, not selected
      const mask = [1, 1, 0, 1, 0, 1];
      const x = tensor(xData, [B, T, d]);
      const mu = tensor(muData, [B, T, d], { requiresGrad: true });
      const r = await run(x, mu, 9, mask);
      const ref = medianNormPenaltyReference(Float32Array.from(xData), Float32Array.from(muData), 9, mask, d);
      expectClose([r.value], [ref.value], 1e-4, 1e-6, 'value');
      expectClose(r.gradMu, ref.gradMu, 1e-3, 1e-7, 'grad mu');
    });
  });

  it('rejects bad arguments on the host, naming them', async () => {
    await gpu();
    scope(() => {
      const x = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      const mu = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      const mu2 = tensor(new Float32Array(2 * 3 * 5), [2, 3, 5]);
      const mask = new Array(6).fill(1);
      expect(() => medianNormPenalty(x, mu2, 1, mask)).toThrow(/medianNormPenalty: 'x' has shape \[2,3,4\] but 'mu' has shape \[2,3,5\]/);
      expect(() => medianNormPenalty(x, mu, 1, [1, 0, 1])).toThrow(/medianNormPenalty: mask 'noiseMask'/);
      expect(() => medianNormPenalty(x, mu, 1, tensor(new Float32Array(6), [3, 2]))).toThrow(
        /'noiseMask' has shape \[3,2\]; expected \[2,3\]/,
      );
      expect(() => medianNormPenalty(x, mu, NaN, mask)).toThrow(/medianNormPenalty: 'medianNorm'/);
      expect(() => medianNormPenalty(x, mu, tensor([1, 2], [2]), mask)).toThrow(/medianNormPenalty: argument 'medianNorm' has shape \[2\]/);
      expect(() => medianNormPenalty(x.view([6, 4]), mu, 1, mask)).toThrow(
        /medianNormPenalty: argument 'x' has shape \[6,4\]; expected rank 3/,
      );
    });
  });

  it('row norms and the GPU median (odd, even, ties, sizes beyond one workgroup) match the twin', async () => {
    await gpu();
    await scope(async () => {
      for (const [V, d] of [
        [1, 3],
        [2, 3],
        [7, 5],
        [40, 16],
        [1001, 3],
        [4096, 2],
      ] as const) {
        const data = noise(V * d, V + d);
        const table = tensor(data, [V, d]);
        const norms = embeddingRowNorms(table);
        const squared = embeddingRowNorms(table, true);
        const med = medianOfNonNegative(norms);
        const ref = rowNormsReference(Float32Array.from(data), d);
        expectClose(await norms.toArray(), ref, 1e-5, 1e-7, `norms V=${V}`);
        expectClose(
          await squared.toArray(),
          ref.map((v) => v * v),
          1e-5,
          1e-7,
          `squared norms V=${V}`,
        );
        // The selection must return exactly the f32 middle value(s) of the GPU's own norms.
        const gpuNorms = Array.from(await norms.toArray());
        expect(await med.item()).toBeCloseTo(Math.fround(medianReference(gpuNorms)), 6);
        expectClose([await med.item()], [medianReference(ref)], 1e-5, 1e-7, `median V=${V}`);
      }
      // Many ties, zeros and an even count.
      const values = tensor([3, 0, 3, 1, 0, 3, 2, 3], [8]);
      expect(await medianOfNonNegative(values).item()).toBe(2.5);
      expect(await medianOfNonNegative(tensor([0, 0, 0, 0], [4])).item()).toBe(0);
    });
  });
});
