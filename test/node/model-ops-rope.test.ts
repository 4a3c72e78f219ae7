/** RoPE (rotate_half convention): the float64 twin against hand values and finite differences, the GPU against the twin. */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { mul, readAll, scope, sum, tensor } from '../../src/index';
import { rope, ropeInverseFrequencies, type RopeScaling } from '../../src/ops/rope';
import * as ref from '../../src/reference/rope';
import type { NDArray } from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';

function nd(data: ArrayLike<number>, shape: number[]): NDArray {
  return { shape: [...shape], data: Float64Array.from(data) };
}

function randomF32(seed: string, n: number): number[] {
  return Array.from(Float32Array.from(new Rng(seed).normals(n)));
}

describe('float64 twin of rope', () => {
  it('rotates dimension i with i + Dh/2 by pos * theta^(-2i/Dh), as Hugging Face does', () => {
    const theta = 100;
    const pos = 3;
    // Dh = 4: pairs (0, 2) at frequency 1 and (1, 3) at frequency theta^(-1/2) = 0.1.
    const x = nd([0, 0, 0, 0, 0, 1, 0, 0], [1, 2, 1, 4]);
    const out = ref.rope(x, { theta, positionOffset: pos - 1 }); // the second step is at position 3
    const row = Array.from(out.data.slice(4));
    expect(row[0]).toBeCloseTo(0, 14);
    expect(row[2]).toBeCloseTo(0, 14);
    expect(row[1]).toBeCloseTo(Math.cos(0.3), 14);
    expect(row[3]).toBeCloseTo(Math.sin(0.3), 14);
    // The first step, at position 2, holds only zeros.
    for (const v of out.data.slice(0, 4)) expect(v).toBeCloseTo(0, 14);
    const y = ref.rope(nd([2, 0, -1, 0], [1, 1, 1, 4]), { theta, positionOffset: 5 });
    // Pair (0, 2) at angle 5: [a cos - z sin, ., z cos + a sin, .] with a = 2, z = -1.
    expect(y.data[0]).toBeCloseTo(2 * Math.cos(5) + Math.sin(5), 14);
    expect(y.data[2]).toBeCloseTo(-Math.cos(5) + 2 * Math.sin(5), 14);
  });

  it('ropeBackward matches central differences', () => {
    const shape = [2, 3, 2, 6];
    const n = 72;
    const x = nd(randomF32('rope fd x', n), shape);
    const w = nd(randomF32('rope fd w', n), shape);
    const options = { theta: 10000, positionOffset: 7 };
    const [dx] = ref.ropeBackward(w, x, options);
    const h = 1e-6;
    const numeric = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const at = (delta: number) => {
        const moved = nd(x.data, shape);
        moved.data[i] += delta;
        return ref.rope(moved, options).data.reduce((s, v, k) => s + v * w.data[k], 0);
      };
      numeric[i] = (at(h) - at(-h)) / (2 * h);
    }
    expectClose(dx.data, numeric, 1e-7, 1e-8, 'dx');
  });
});

describe('RoPE scaling (linear, llama3) in the float64 twin', () => {
  const llama31: RopeScaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

  it('linear: inverse frequencies divided by the factor, i.e. position p rotates as p / factor', () => {
    const plain = ref.ropeInverseFrequencies(16, 10000);
    const scaled = ref.ropeInverseFrequencies(16, 10000, { type: 'linear', factor: 4 });
    scaled.forEach((f, i) => {
      expect(f).toBeCloseTo(plain[i] / 4, 15);
    });
    const x = nd(randomF32('rope linear', 2 * 3 * 2 * 8), [2, 3, 2, 8]);
    const a = ref.rope(x, { theta: 100, positionOffset: 8, scaling: { type: 'linear', factor: 4 } });
    const b = ref.rope(x, { theta: 100, positionOffset: 2, scaling: null });
    // Positions 8, 9, 10 scaled by 1/4 are 2, 2.25, 2.5: only the first step matches plain position 2.
    expectClose(a.data.slice(0, 16), b.data.slice(0, 16), 1e-13, 1e-13, 'first step');
  });

  it("llama3: HF's _compute_llama3_parameters (Llama 3.1: theta 5e5, Dh 128, factor 8, 1 / 4, 8192)", () => {
    const plain = ref.ropeInverseFrequencies(128, 500000);
    const scaled = ref.ropeInverseFrequencies(128, 500000, llama31);
    let kept = 0;
    let divided = 0;
    let smoothed = 0;
    plain.forEach((f, i) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < 8192 / 4) {
        expect(scaled[i]).toBe(f); // high frequencies are kept
        kept++;
      } else if (wavelen > 8192 / 1) {
        expect(scaled[i]).toBeCloseTo(f / 8, 18); // low frequencies are divided by the factor
        divided++;
      } else {
        const s = (8192 / wavelen - 1) / (4 - 1);
        expect(scaled[i]).toBeCloseTo((1 - s) * (f / 8) + s * f, 18);
        expect(scaled[i]).toBeLessThanOrEqual(f);
        expect(scaled[i]).toBeGreaterThanOrEqual(f / 8);
        smoothed++;
      }
    });
    // Llama 3.1's 64 pairs split into all three bands.
    expect([kept, smoothed, divided].every((n) => n > 0)).toBe(true);
    expect(kept + smoothed + divided).toBe(64);
    // The host frequencies the GPU kernel gets are the twin's.
    expectClose(ropeInverseFrequencies(128, 500000, llama31), scaled, 1e-15, 0, 'GPU-side frequencies');
    expectClose(
      ropeInverseFrequencies(16, 10000, { type: 'linear', factor: 3 }),
      ref.ropeInverseFrequencies(16, 10000, { type: 'linear', factor: 3 }),
      1e-15,
      0,
    );
  });

  it('ropeBackward with llama3 scaling matches central differences', () => {
    const shape = [1, 5, 2, 8];
    const n = 80;
    const x = nd(randomF32('rope llama3 fd x', n), shape);
    const w = nd(randomF32('rope llama3 fd w', n), shape);
    const options = { theta: 500000, positionOffset: 20, scaling: { ...llama31, originalMaxPositionEmbeddings: 16, factor: 4 } };
    const [dx] = ref.ropeBackward(w, x, options);
    const h = 1e-6;
    const numeric = Float64Array.from({ length: n }, (_, i) => {
      const at = (delta: number) => {
        const moved = nd(x.data, shape);
        moved.data[i] += delta;
        return ref.rope(moved, options).data.reduce((s, v, k) => s + v * w.data[k], 0);
      };
      return (at(h) - at(-h)) / (2 * h);
    });
    expectClose(dx.data, numeric, 1e-7, 1e-8, 'dx');
  });
});

interface RopeCase {
  shape: number[];
  theta: number;
  positionOffset?: number;
  scaling?: RopeScaling;
  rtol?: number;
  atol?: number;
}

const cases: RopeCase[] = [
  { shape: [2, 5, 3, 8], theta: 10000 },
  { shape: [1, 37, 2, 64], theta: 500000 },
  { shape: [2, 4, 2, 16], theta: 10000, positionOffset: 100 },
  { shape: [3, 1, 4, 8], theta: 10000, positionOffset: 9 }, // T = 1 (one decoding step)
  // Positions in the thousands: the angle carries f32 rounding of theta^(-2i/Dh) times pos.
  { shape: [1, 3, 2, 64], theta: 10000, positionOffset: 4000, rtol: 1e-3, atol: 2e-3 },
  // Scaled frequencies, at positions past the original context (tiny-llama3's setting, and Llama 3.1's).
  {
    shape: [2, 24, 4, 16],
    theta: 500000,
    scaling: { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
  },
  {
    shape: [1, 4, 2, 128],
    theta: 500000,
    positionOffset: 9000,
    scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
    rtol: 1e-3,
    atol: 2e-3,
  },
  { shape: [2, 6, 3, 8], theta: 10000, positionOffset: 30, scaling: { type: 'linear', factor: 2.5 } },
];

describe('rope on the GPU', () => {
  for (const c of cases) {
    it(`forward and backward match the twin for ${JSON.stringify(c.shape)}, theta ${c.theta}, offset ${c.positionOffset ?? 0}${c.scaling ? `, ${c.scaling.type} scaling` : ''}`, async () => {
      await gpu();
      const n = c.shape.reduce((a, b) => a * b, 1);
      const xData = randomF32(`rope x ${JSON.stringify(c)}`, n);
      const wData = randomF32(`rope w ${JSON.stringify(c)}`, n);
      const options = { theta: c.theta, positionOffset: c.positionOffset, scaling: c.scaling };
      const [got, dx] = await scope(async () => {
        const x = tensor(xData, c.shape, { requiresGrad: true });
        const out = rope(x, options);
        const loss = sum(mul(out, tensor(wData, c.shape)));
        loss.backward();
        return readAll([out, x.grad!]);
      });
      expectClose(got, ref.rope(nd(xData, c.shape), options).data, c.rtol ?? 1e-5, c.atol ?? 1e-5, 'out');
      const [want] = ref.ropeBackward(nd(wData, c.shape), nd(xData, c.shape), options);
      expectClose(dx, want.data, c.rtol ?? 1e-5, c.atol ?? 1e-5, 'dx');
    });
  }

  it('continues a sequence: rope at offset k equals the tail of rope over the whole sequence', async () => {
    await gpu();
    const shape = [1, 6, 2, 8];
    const data = randomF32('rope offset', 96);
    const whole = tensor(data, shape);
    const tail = tensor(data.slice(64), [1, 2, 2, 8]);
    const a = rope(whole, { theta: 10000 });
    const b = rope(tail, { theta: 10000, positionOffset: 4 });
    const [wa, wb] = await readAll([a, b]);
    expectClose(wb, wa.slice(64), 1e-6, 1e-6);
    for (const t of [whole, tail, a, b]) t.dispose();
  });

  it('rejects bad input, naming the op and the argument', async () => {
    await gpu();
    const odd = tensor(new Float32Array(2 * 3 * 5), [1, 2, 3, 5]);
    const rank3 = tensor(new Float32Array(8), [2, 1, 4]);
    const good = tensor(new Float32Array(8), [1, 1, 2, 4]);
    const ints = tensor(new Int32Array(8), [1, 1, 2, 4]);
    expect(() => rope(odd, { theta: 10000 })).toThrow(/rope: argument 'x' has an odd head dimension Dh = 5/);
    expect(() => rope(rank3, { theta: 10000 })).toThrow(/rope: argument 'x' has shape \[2,1,4\]; expected \[B, T, H, Dh\]/);
    expect(() => rope(ints, { theta: 10000 })).toThrow(/rope: argument 'x' has dtype i32/);
    expect(() => rope(good, { theta: 0 })).toThrow(/rope: option 'theta'/);
    expect(() => rope(good, { theta: 10000, positionOffset: -1 })).toThrow(/rope: option 'positionOffset'/);
    expect(() => rope(good, { theta: 10000, positionOffset: 1.5 })).toThrow(/rope: option 'positionOffset'/);
    const yarn = { type: 'yarn', factor: 4 } as unknown as RopeScaling;
    expect(() => rope(good, { theta: 10000, scaling: yarn })).toThrow(
      "rope: option 'scaling' has type 'yarn', which is not supported (supported: default, linear, llama3)",
    );
    expect(() => rope(good, { theta: 10000, scaling: { type: 'linear', factor: 0 } })).toThrow(/rope: option 'scaling'.factor must be/);
    const inverted: RopeScaling = { type: 'llama3', factor: 8, lowFreqFactor: 4, highFreqFactor: 1, originalMaxPositionEmbeddings: 64 };
    expect(() => rope(good, { theta: 10000, scaling: inverted })).toThrow(/highFreqFactor \(1\) must be greater than lowFreqFactor \(4\)/);
    for (const t of [odd, rank3, good, ints]) t.dispose();
  });
});
