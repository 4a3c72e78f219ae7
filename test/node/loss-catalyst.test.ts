import { noise } from '../helpers/random';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { LOSS_FIXTURES, loadLossFixture } from '../helpers/fixtures';
import { type Tensor, liveBufferCount, noGrad, scope, tensor } from '../../src/index';
import { inverseL2PowerLawCatalyst, nearestRows } from '../../src/losses/catalyst';
import { inverseL2PowerLawCatalystReference, nearestRowsReference } from '../../src/reference/catalyst';

const KEY = 'inverseL2PowerLawCatalystLoss';

async function run(xt: Tensor, E: Tensor, mask: Tensor | ArrayLike<number>, l: number, p: number) {
  const loss = inverseL2PowerLawCatalyst(xt, E, mask, { characteristicLength: l, exponentOfDecay: p });
  expect(loss.shape).toEqual([]);
  loss.backward();
  const value = await loss.item();
  const grad = await xt.grad!.toArray();
  loss.dispose();
  xt.grad!.dispose();
  xt.grad = null;
  return { value, grad };
}

describe('inverseL2PowerLawCatalyst', () => {
  for (const name of LOSS_FIXTURES) {
    const f = loadLossFixture(name);
    const expected = f.components[KEY];
    it(`${name}: float64 twin matches PyTorch`, () => {
      const r = inverseL2PowerLawCatalystReference(f.inputs.xt.data, f.inputs.E.data, f.inputs.N.data, f.d, f.ell, f.p);
      expectClose([r.value], [expected.value], 1e-10, 1e-12, 'value');
      expectClose(r.gradXt, expected.grad.xt.data, 1e-9, 1e-12, 'grad xt');
    });

    it(`${name}: GPU matches PyTorch (tensor and host masks)`, async () => {
      await gpu();
      const before = liveBufferCount();
      await scope(async () => {
        const xt = tensor(f.inputs.xt.data, f.inputs.xt.shape, { requiresGrad: true });
        const E = tensor(f.inputs.E.data, f.inputs.E.shape);
        for (const mask of [tensor(f.inputs.N.data, f.inputs.N.shape), f.inputs.N.data]) {
          const r = await run(xt, E, mask, f.ell, f.p);
          expectClose([r.value], [expected.value], 1e-4, 1e-6, 'value');
          expectClose(r.grad, expected.grad.xt.data, 1e-3, 1e-6, 'grad xt');
        }
        // Without a graph the uploaded mask is freed at once; the value must not change.
        const plain = noGrad(() =>
          inverseL2PowerLawCatalyst(xt, E, f.inputs.N.data, { characteristicLength: f.ell, exponentOfDecay: f.p }),
        );
        expect(plain.gradFn).toBeNull();
        expectClose([await plain.item()], [expected.value], 1e-4, 1e-6, 'value (no grad)');
      });
      expect(liveBufferCount()).toBe(before);
    });
  }

  it('float64 twin backward matches central finite differences', () => {
    const [positions, d, V] = [5, 3, 11];
    const xt = noise(positions * d, 1);
    const E = noise(V * d, 2);
    const mask = [1, 1, 0, 1, 1];
    const [l, p] = [0.3, 1.7];
    const r = inverseL2PowerLawCatalystReference(xt, E, mask, d, l, p);
    const h = 1e-6;
    for (let i = 0; i < xt.length; i++) {
      const plus = Float64Array.from(xt);
      const minus = Float64Array.from(xt);
      plus[i] += h;
      minus[i] -= h;
      const fd =
        (inverseL2PowerLawCatalystReference(plus, E, mask, d, l, p).value -
          inverseL2PowerLawCatalystReference(minus, E, mask, d, l, p).value) /
        (2 * h);
      expect(Math.abs(fd - r.gradXt[i])).toBeLessThan(1e-6 * Math.max(1, Math.abs(r.gradXt[i])));
    }
  });

  it('a large vocabulary (V = 50,003, not a multiple of the tiles) on a small batch matches the twin', async () => {
    await gpu();
    await scope(async () => {
      const [B, T, d, V] = [1, 2, 16, 50_003];
      const E = Float32Array.from(noise(V * d, 3));
      // Queries near chosen rows, one of them at the last (partial) tile.
      const xt = new Float32Array(B * T * d);
      const near = [12_345, V - 1];
      const jitter = noise(B * T * d, 4);
      for (let p = 0; p < B * T; p++) for (let j = 0; j < d; j++) xt[p * d + j] = E[near[p] * d + j] + 0.05 * jitter[p * d + j];
      const mask = [1, 1];
      const ref = inverseL2PowerLawCatalystReference(xt, E, mask, d, 0.2, 1.5);
      expect(Array.from(ref.nearest.index)).toEqual(near);
      const xtT = tensor(xt, [B, T, d], { requiresGrad: true });
      const ET = tensor(E, [V, d]);
      const found = nearestRows(xtT.view([B * T, d]), ET);
      expect(Array.from(await found.index.toArray())).toEqual(near);
      expectClose(await found.distance.toArray(), ref.nearest.distance, 1e-5, 1e-7, 'distance');
      const r = await run(xtT, ET, mask, 0.2, 1.5);
      expectClose([r.value], [ref.value], 1e-4, 1e-6, 'value');
      expectClose(r.grad, ref.gradXt, 1e-3, 1e-6, 'grad xt');
    });
  });

  it('nearest search over many queries and odd sizes (P, V, d not multiples of the tiles) matches the twin', async () => {
    await gpu();
    await scope(async () => {
      for (const [P, V, d] of [
        [1, 1, 1],
        [33, 65, 17],
        [70, 130, 5],
        [200, 1000, 40],
      ] as const) {
        const q = Float32Array.from(noise(P * d, P));
        const E = Float32Array.from(noise(V * d, V + 1));
        const ref = nearestRowsReference(q, E, d);
        const found = nearestRows(tensor(q, [P, d]), tensor(E, [V, d]));
        expect(Array.from(await found.index.toArray()), `P=${P} V=${V} d=${d}`).toEqual(Array.from(ref.index));
        expectClose(await found.distance.toArray(), ref.distance, 1e-5, 1e-6, `distance P=${P} V=${V} d=${d}`);
      }
    });
  });

  it('a position exactly on a vocabulary row: floored distance, zero gradient there; clean positions are selected out', async () => {
    await gpu();
    await scope(async () => {
      const [B, T, d, V] = [1, 3, 4, 6];
      const E = Float32Array.from(noise(V * d, 5));
      const xt = Float32Array.from(noise(B * T * d, 6));
      for (let j = 0; j < d; j++) {
        xt[j] = E[2 * d + j]; // position 0, selected, on row 2
        xt[d + j] = E[4 * d + j]; // position 1, not selected (a clean token), on row 4
      }
      const mask = [1, 0, 1];
      // Small l keeps the floored term within f32: (1e-10 / 1e-8)^0.5 = 0.1.
      const [l, p] = [1e-10, 0.5];
      const ref = inverseL2PowerLawCatalystReference(xt, E, mask, d, l, p);
      const r = await run(tensor(xt, [B, T, d], { requiresGrad: true }), tensor(E, [V, d]), mask, l, p);
      expect(Number.isFinite(r.value)).toBe(true);
      expectClose([r.value], [ref.value], 1e-4, 0, 'value');
      expectClose(r.grad, ref.gradXt, 1e-3, 1e-12, 'grad xt');
      for (let j = 0; j < 2 * d; j++) expect(r.grad[j]).toBe(0);
    });
  });

  it('an empty noise mask gives 0 and a zero gradient', async () => {
    await gpu();
    await scope(async () => {
      const r = await run(
        tensor(noise(2 * 3 * 4, 7), [2, 3, 4], { requiresGrad: true }),
        tensor(noise(5 * 4, 8), [5, 4]),
        new Array(6).fill(0),
        1,
        2,
      );
      expect(r.value).toBe(0);
      expect(Array.from(r.grad).every((v) => v === 0)).toBe(true);
    });
  });

  it('rejects bad arguments on the host, naming them', async () => {
    await gpu();
    scope(() => {
      const xt = tensor(noise(2 * 3 * 4, 9), [2, 3, 4]);
      const E = tensor(noise(5 * 4, 10), [5, 4]);
      const mask = new Array(6).fill(1);
      const opts = { characteristicLength: 1, exponentOfDecay: 2 };
      expect(() => inverseL2PowerLawCatalyst(xt, E, mask, { ...opts, exponentOfDecay: 0 })).toThrow(
        /inverseL2PowerLawCatalyst: 'exponentOfDecay' must be positive/,
      );
      expect(() => inverseL2PowerLawCatalyst(xt, E, mask, { ...opts, exponentOfDecay: -1.5 })).toThrow(
        /'exponentOfDecay' must be positive/,
      );
      expect(() => inverseL2PowerLawCatalyst(xt, E, mask, { ...opts, characteristicLength: 0 })).toThrow(
        /inverseL2PowerLawCatalyst: 'characteristicLength' must be positive/,
      );
      expect(() => inverseL2PowerLawCatalyst(xt, E, mask, { ...opts, characteristicLength: NaN })).toThrow(
        /'characteristicLength' must be a finite number/,
      );
      expect(() => inverseL2PowerLawCatalyst(xt, tensor(noise(5 * 3, 1), [5, 3]), mask, opts)).toThrow(
        /'embeddingTable' has shape \[5,3\]/,
      );
      expect(() => inverseL2PowerLawCatalyst(xt, E, [1, 1, 1], opts)).toThrow(/inverseL2PowerLawCatalyst: mask 'noiseMask'/);
      expect(() => inverseL2PowerLawCatalyst(xt, E, tensor(new Float32Array(6), [6, 1]), opts)).toThrow(
        /'noiseMask' has shape \[6,1\]; expected \[2,3\]/,
      );
      expect(() => inverseL2PowerLawCatalyst(xt, tensor([], [0, 4]), mask, opts)).toThrow(/'embeddingTable' has no rows/);
    });
  });
});
