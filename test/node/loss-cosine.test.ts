/**
 * The row-pair losses (layer cosine distance, layer L2 distance, input-embedding similarity,
 * absolute cosine similarity): GPU kernels and float64 twins against the PyTorch fixtures and
 * each other, plus the floor, zero-vector and selection edge cases.
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { LOSS_FIXTURES, loadLossFixture } from '../helpers/fixtures';
import { liveBufferCount, scale, scope, tensor, type Tensor } from '../../src/index';
import {
  absoluteCosineSimilarity,
  distillationLayerCosineDistance,
  distillationLayerL2Distance,
  inputEmbeddingSimilarity,
} from '../../src/losses/cosine';
import { COSINE_FLOOR, rowPairLossReference, type RowPairLossName, type RowPairReferenceInput } from '../../src/reference/cosine';
import type { MaskInput } from '../../src/tensor/validate';

type LossFn = (u: Tensor, v: Tensor, mask: MaskInput) => Tensor;

/** Each loss: its GPU function, its fixture key, which inputs it reads and which gradient the fixture lists. */
const CASES: { name: RowPairLossName; fn: LossFn; key: string; u: 'h' | 'x'; v: 'ht' | 'xt'; mask: 'L' | 'N' }[] = [
  {
    name: 'distillationLayerCosineDistance',
    fn: distillationLayerCosineDistance,
    key: 'distillationLayerCosineDistanceLoss',
    u: 'h',
    v: 'ht',
    mask: 'L',
  },
  {
    name: 'distillationLayerL2Distance',
    fn: distillationLayerL2Distance,
    key: 'distillationLayerL2DistanceLoss',
    u: 'h',
    v: 'ht',
    mask: 'L',
  },
  { name: 'inputEmbeddingSimilarity', fn: inputEmbeddingSimilarity, key: 'inputEmbeddingSimilarityLoss', u: 'x', v: 'xt', mask: 'N' },
  { name: 'absoluteCosineSimilarity', fn: absoluteCosineSimilarity, key: 'absoluteCosineSimilarityPenalty', u: 'x', v: 'xt', mask: 'N' },
];

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(n: number, seed: number, magnitude = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * r() - 1) * magnitude;
  return out;
}

/** Runs a GPU loss with both inputs requiring grad; returns the value and both gradients. */
async function runGpu(fn: LossFn, input: RowPairReferenceInput, options: { maskAsTensor?: boolean; outer?: number; gradU?: boolean } = {}) {
  return scope(async () => {
    const { shape } = input;
    const u = tensor(Float32Array.from(input.u), shape, { requiresGrad: options.gradU ?? true });
    const v = tensor(Float32Array.from(input.v), shape, { requiresGrad: true });
    const mask = options.maskAsTensor ? tensor(Float32Array.from(input.mask), shape.slice(0, 2)) : input.mask;
    const loss = fn(u, v, mask);
    expect(loss.shape).toEqual([]);
    (options.outer === undefined ? loss : scale(loss, options.outer)).backward();
    return {
      value: await loss.item(),
      gradU: u.grad ? ((await u.grad.toArray()) as Float32Array) : null,
      gradV: (await v.grad!.toArray()) as Float32Array,
    };
  });
}

describe('the row-pair losses against the PyTorch fixtures', () => {
  for (const fixtureName of LOSS_FIXTURES) {
    const f = loadLossFixture(fixtureName);
    for (const c of CASES) {
      const expected = f.components[c.key];
      const input: RowPairReferenceInput = {
        u: f.inputs[c.u].data,
        v: f.inputs[c.v].data,
        mask: f.inputs[c.mask].data,
        shape: [f.B, f.T, f.d],
      };
      const label = `${fixtureName} ${c.key}`;

      it(`${label}: the float64 twin matches value and d/d${c.v} to ~1e-9`, () => {
        const ref = rowPairLossReference(c.name, input);
        expectClose([ref.value], [expected.value], 1e-9, 1e-12, `${label} twin value`);
        expectClose(ref.gradV, expected.grad[c.v].data, 1e-9, 1e-12, `${label} twin grad ${c.v}`);
      });

      it(`${label}: the GPU kernel matches value and d/d${c.v}, and d/d${c.u} matches the twin`, async () => {
        await gpu();
        for (const maskAsTensor of [false, true]) {
          const got = await runGpu(c.fn, input, { maskAsTensor });
          expectClose([got.value], [expected.value], 1e-4, 1e-6, `${label} value`);
          expectClose(got.gradV, expected.grad[c.v].data, 1e-3, 1e-6, `${label} grad ${c.v}`);
          expectClose(got.gradU!, rowPairLossReference(c.name, input).gradU, 1e-3, 1e-6, `${label} grad ${c.u}`);
        }
      });
    }
  }

  it('scales the gradients by the outer gradient and gives none to an input that does not require grad', async () => {
    await gpu();
    const f = loadLossFixture('losses-small');
    const input: RowPairReferenceInput = { u: f.inputs.h.data, v: f.inputs.ht.data, mask: f.inputs.L.data, shape: [f.B, f.T, f.d] };
    for (const c of CASES) {
      const got = await runGpu(c.fn, input, { outer: -3, gradU: false });
      expect(got.gradU).toBeNull();
      expectClose(got.gradV, rowPairLossReference(c.name, input, -3).gradV, 1e-3, 1e-6, `${c.name} grad (outer gradient -3)`);
    }
  });
});

describe('the float64 twins', () => {
  it('have the gradients of their own values (central finite differences, both inputs)', () => {
    const shape = [2, 3, 5] as const;
    const n = 30;
    const u = Array.from(randomArray(n, 1));
    const v = Array.from(randomArray(n, 2));
    // Row 2: v nearly orthogonal to u is fine; make one row's cosine negative for the |cos| sign.
    for (let k = 0; k < 5; k++) v[5 + k] = -u[5 + k] + 0.3 * v[5 + k];
    const mask = [1, 1, 0, 1, 1, 1];
    const h = 1e-6;
    for (const name of CASES.map((c) => c.name)) {
      const { gradU, gradV } = rowPairLossReference(name, { u, v, mask, shape });
      for (const [which, grad] of [
        ['u', gradU],
        ['v', gradV],
      ] as const) {
        for (let i = 0; i < n; i++) {
          const plus = (which === 'u' ? u : v).slice();
          const minus = plus.slice();
          plus[i] += h;
          minus[i] -= h;
          const at = (w: number[]) => rowPairLossReference(name, which === 'u' ? { u: w, v, mask, shape } : { u, v: w, mask, shape }).value;
          const fd = (at(plus) - at(minus)) / (2 * h);
          expect(Math.abs(fd - grad[i]), `${name} d/d${which}[${i}]: finite difference ${fd}, analytic ${grad[i]}`).toBeLessThan(1e-8);
        }
      }
      // The unselected row (2) gets exactly zero.
      for (let k = 10; k < 15; k++) expect(gradU[k] === 0 && gradV[k] === 0).toBe(true);
    }
  });

  it('follow the definitions on hand-computed rows', () => {
    // u = (3, 4), v = (4, -3) + (3, 4): cos = 25 / (5 * sqrt(50)), |u - v| = 5.
    const input = { u: [3, 4], v: [7, 1], mask: [1], shape: [1, 1, 2] as const };
    const cos = 25 / (5 * Math.sqrt(50));
    expect(rowPairLossReference('distillationLayerCosineDistance', input).value).toBeCloseTo(1 - cos, 14);
    expect(rowPairLossReference('inputEmbeddingSimilarity', input).value).toBeCloseTo(cos, 14);
    expect(rowPairLossReference('absoluteCosineSimilarity', { ...input, v: [-7, -1] }).value).toBeCloseTo(cos, 14);
    expect(rowPairLossReference('distillationLayerL2Distance', input).value).toBeCloseTo(5, 14);
    // Floor active (v = 1e-9 * (1, 0), |u||v| = 5e-9): cos = u.v / 1e-8 = 0.3, d cos/dv = u / 1e-8.
    const floored = rowPairLossReference('inputEmbeddingSimilarity', { u: [3, 4], v: [1e-9, 0], mask: [1], shape: [1, 1, 2] });
    expect(floored.value).toBeCloseTo(3e-9 / COSINE_FLOOR, 12);
    expectClose(floored.gradV, [3 / COSINE_FLOOR, 4 / COSINE_FLOOR], 1e-14, 1e-20, 'floored d/dv');
    expectClose(floored.gradU, [1e-9 / COSINE_FLOOR, 0], 1e-14, 1e-20, 'floored d/du');
  });
});

describe('the row-pair losses on edge cases', () => {
  it('give 0 and all-zero gradients for an empty mask', async () => {
    await gpu();
    const shape = [2, 3, 8] as const;
    const input = { u: randomArray(48, 3), v: randomArray(48, 4), mask: [0, 0, 0, 0, 0, 0], shape };
    for (const c of CASES) {
      const got = await runGpu(c.fn, input);
      expect(got.value, c.name).toBe(0);
      expect(got.gradU!.every((g) => g === 0) && got.gradV.every((g) => g === 0), c.name).toBe(true);
    }
  });

  it('handle h == ht exactly (L2 gradient 0, cosine gradient ~0, never NaN)', async () => {
    await gpu();
    const shape = [1, 3, 70] as const; // 70 > the workgroup size: the row reduction strides
    const u = randomArray(210, 5);
    const v = Float32Array.from(u);
    for (let k = 140; k < 210; k++) v[k] += 0.5; // only the last row differs
    const input = { u, v, mask: [1, 1, 1], shape };
    const l2 = await runGpu(distillationLayerL2Distance, input);
    expect(l2.gradV.subarray(0, 140).every((g) => g === 0) && l2.gradU!.subarray(0, 140).every((g) => g === 0)).toBe(true);
    const l2ref = rowPairLossReference('distillationLayerL2Distance', input);
    expectClose([l2.value], [l2ref.value], 1e-4, 1e-6, 'L2 value');
    expectClose(l2.gradV, l2ref.gradV, 1e-3, 1e-6, 'L2 grad');
    const cos = await runGpu(distillationLayerCosineDistance, input);
    const cosRef = rowPairLossReference('distillationLayerCosineDistance', input);
    expect(Number.isFinite(cos.value) && cos.gradV.every(Number.isFinite)).toBe(true);
    expectClose([cos.value], [cosRef.value], 1e-4, 1e-6, 'cosine distance value');
    expectClose(cos.gradV, cosRef.gradV, 1e-3, 1e-6, 'cosine distance grad');
  });

  it('apply the floor max(|u||v|, 1e-8) and its gradient, including v = 0 and u = 0 rows', async () => {
    await gpu();
    const shape = [1, 4, 6] as const;
    const u = randomArray(24, 6);
    const v = randomArray(24, 7);
    for (let k = 0; k < 6; k++) v[k] = 0; // row 0: v = 0
    for (let k = 6; k < 12; k++) u[k] = 0; // row 1: u = 0
    for (let k = 12; k < 18; k++) v[k] *= 1e-9; // row 2: |u||v| below the floor, v != 0
    const input = { u, v, mask: [1, 1, 1, 1], shape };
    for (const c of CASES) {
      const got = await runGpu(c.fn, input);
      const ref = rowPairLossReference(c.name, input);
      expect(Number.isFinite(got.value) && got.gradV.every(Number.isFinite) && got.gradU!.every(Number.isFinite), c.name).toBe(true);
      expectClose([got.value], [ref.value], 1e-4, 1e-6, `${c.name} value`);
      // Gradients on the floor rows are u / 1e-8: large, so compare relatively.
      expectClose(got.gradV, ref.gradV, 1e-3, 1e-3, `${c.name} grad v`);
      expectClose(got.gradU!, ref.gradU, 1e-3, 1e-3, `${c.name} grad u`);
    }
    // The cosine similarity's gradient on the v = 0 row is u / (1e-8 * 4 rows), not 0 or NaN.
    const sim = await runGpu(inputEmbeddingSimilarity, input);
    expect(sim.gradV[0]).toBeCloseTo(u[0] / COSINE_FLOOR / 4, -2);
    expect(sim.gradV[0]).not.toBe(0);
  });

  it('select rows out: NaN and Inf at unselected positions change nothing', async () => {
    await gpu();
    const shape = [2, 2, 9] as const;
    const u = randomArray(36, 8);
    const v = randomArray(36, 9);
    const mask = [0, 1, 1, 0];
    const clean = { u: Float32Array.from(u), v: Float32Array.from(v), mask, shape };
    u[2] = NaN;
    v[30] = Infinity;
    for (const c of CASES) {
      const got = await runGpu(c.fn, { u, v, mask, shape });
      const ref = rowPairLossReference(c.name, clean);
      expectClose([got.value], [ref.value], 1e-4, 1e-6, `${c.name} value`);
      expectClose(got.gradV, ref.gradV, 1e-3, 1e-6, `${c.name} grad v`);
      expectClose(got.gradU!, ref.gradU, 1e-3, 1e-6, `${c.name} grad u`);
    }
  });

  it('handle a hidden size of 4096 and free everything they make', async () => {
    await gpu();
    const shape = [2, 2, 4096] as const;
    const input = { u: randomArray(4 * 4096, 10), v: randomArray(4 * 4096, 11), mask: [1, 0, 1, 1], shape };
    const before = liveBufferCount();
    for (const c of CASES) {
      const got = await runGpu(c.fn, input);
      const ref = rowPairLossReference(c.name, input);
      expectClose([got.value], [ref.value], 1e-4, 1e-6, `${c.name} value`);
      expectClose(got.gradV, ref.gradV, 1e-3, 1e-7, `${c.name} grad v`);
    }
    expect(liveBufferCount()).toBe(before);
  });
});

describe('the row-pair losses argument checks', () => {
  it('reject bad inputs on the host, naming the function and the argument', async () => {
    await gpu();
    scope(() => {
      const a = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      const b = tensor(new Float32Array(2 * 3 * 5), [2, 3, 5]);
      const flat = tensor(new Float32Array(24), [6, 4]);
      const ok = [1, 0, 1, 1, 1, 0];
      expect(() => distillationLayerCosineDistance(a, b, ok)).toThrow(
        "distillationLayerCosineDistance: 'ht' has shape [2,3,5] but 'h' has shape [2,3,4]; they must match",
      );
      expect(() => distillationLayerL2Distance(a, b, ok)).toThrow(/distillationLayerL2Distance: 'ht' has shape \[2,3,5\] but 'h'/);
      expect(() => inputEmbeddingSimilarity(a, b, ok)).toThrow(/inputEmbeddingSimilarity: 'xt' has shape \[2,3,5\] but 'x'/);
      expect(() => absoluteCosineSimilarity(flat, flat, ok)).toThrow(
        /absoluteCosineSimilarity: argument 'x' has shape \[6,4\]; expected rank 3/,
      );
      expect(() => inputEmbeddingSimilarity(a, a, [1, 0, 2, 1, 1, 0])).toThrow(
        /inputEmbeddingSimilarity: mask 'noiseMask' must hold only 0 and 1; found 2 at index 2/,
      );
      expect(() => distillationLayerCosineDistance(a, a, [1, 1])).toThrow(
        /distillationLayerCosineDistance: mask 'lossMask' has 2 values; expected 6/,
      );
      expect(() => distillationLayerL2Distance(a, a, tensor(new Float32Array(6), [6, 1]))).toThrow(
        /distillationLayerL2Distance: mask 'lossMask' has shape \[6,1\]; expected \[2,3\]/,
      );
      expect(() => absoluteCosineSimilarity(a, a, tensor(new Int32Array(6), [2, 3]))).toThrow(
        /absoluteCosineSimilarity: mask 'noiseMask' has dtype i32/,
      );
    });
  });

  it('the twins select where the mask is non-zero (the one mask rule): 0.5 and 2 select like 1', () => {
    const at = (mask: number[]) =>
      rowPairLossReference('inputEmbeddingSimilarity', { u: [1, 2, 3, -1], v: [1, 0, 2, 1], mask, shape: [1, 2, 2] }).value;
    expect(at([0.5, 2])).toBe(at([1, 1]));
    expect(at([0.5, 0])).toBe(at([1, 0]));
    expect(at([1, 0])).not.toBe(at([1, 1]));
  });
});
