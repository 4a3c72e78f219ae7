import { noise } from '../helpers/random';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { LOSS_FIXTURES, loadLossFixture } from '../helpers/fixtures';
import { liveBufferCount, scope, tensor } from '../../src/index';
import { embeddingColumnStd, embeddingStats, percentile, recommendedCharacteristicLength } from '../../src/models/embeddingStats';
import {
  columnStdReference,
  embeddingStatsReference,
  percentileReference,
  voronoiDistancesReference,
} from '../../src/reference/embeddingStats';

describe('embeddingStats', () => {
  for (const name of LOSS_FIXTURES) {
    const f = loadLossFixture(name);
    const E = f.inputs.E;
    it(`${name}: float64 twin matches PyTorch (s, m, r), and ell is the 5th percentile of r`, () => {
      const r = embeddingStatsReference(E.data, f.d);
      expectClose(r.columnStd, f.stats.s.data, 1e-9, 1e-12, 'column std');
      expectClose([r.medianNorm], [f.stats.m], 1e-10, 1e-12, 'median norm');
      expectClose(r.voronoiDistances, f.stats.r.data, 1e-9, 1e-12, 'voronoi distances');
      expectClose([percentileReference(f.stats.r.data, 0.05)], [f.ell], 1e-12, 0, 'ell');
    });

    it(`${name}: GPU matches PyTorch (s, m, r) and recommends ell`, async () => {
      await gpu();
      const before = liveBufferCount();
      await scope(async () => {
        const stats = await embeddingStats(tensor(E.data, E.shape));
        expect(stats.columnStd.shape).toEqual([f.d]);
        expect(stats.voronoiDistances.shape).toEqual([f.V]);
        expectClose(await stats.columnStd.toArray(), f.stats.s.data, 1e-4, 1e-6, 'column std');
        expectClose([stats.medianNorm], [f.stats.m], 1e-5, 1e-6, 'median norm');
        expectClose(await stats.voronoiDistances.toArray(), f.stats.r.data, 1e-4, 1e-6, 'voronoi distances');
        expectClose([await recommendedCharacteristicLength(stats.voronoiDistances)], [f.ell], 1e-4, 1e-6, 'ell');
        expectClose([await percentile(stats.voronoiDistances, 0.05)], [f.ell], 1e-4, 1e-6, 'ell (percentile)');
      });
      expect(liveBufferCount()).toBe(before);
    });
  }

  it('random tables of odd sizes (V not a multiple of the tiles, several chunks) match the twin', async () => {
    await gpu();
    await scope(async () => {
      for (const [V, d, offset] of [
        [2, 3, 0],
        [3, 1, 0],
        [301, 20, 0],
        [1000, 3, 5],
        [257, 300, 0],
      ] as const) {
        const data = Float32Array.from(noise(V * d, V * 7 + d), (v) => v + offset);
        const ref = embeddingStatsReference(data, d);
        const stats = await embeddingStats(tensor(data, [V, d]));
        const what = `V=${V} d=${d}`;
        expectClose(await stats.columnStd.toArray(), ref.columnStd, 1e-4, 1e-6, `column std ${what}`);
        expectClose([stats.medianNorm], [ref.medianNorm], 1e-5, 1e-6, `median ${what}`);
        expectClose(await stats.voronoiDistances.toArray(), ref.voronoiDistances, 1e-4, 1e-5, `voronoi ${what}`);
      }
    });
  });

  it('a one-row table has an infinite Voronoi distance; duplicated rows have distance 0', async () => {
    await gpu();
    await scope(async () => {
      const one = await embeddingStats(tensor([3, 4], [1, 2]));
      expect(Array.from(await one.voronoiDistances.toArray())).toEqual([Infinity]);
      expect(one.medianNorm).toBe(5);
      expect(Array.from(await one.columnStd.toArray())).toEqual([0, 0]);
      const dup = [1, 2, 5, 5, 1, 2, -1, 0];
      const stats = await embeddingStats(tensor(dup, [4, 2]));
      const r = await stats.voronoiDistances.toArray();
      expect(r[0]).toBe(0);
      expect(r[2]).toBe(0);
      expectClose(r, voronoiDistancesReference(dup, 2), 1e-6, 1e-6, 'voronoi');
    });
  });

  it('column std is accurate for a column far from zero (no E[x^2] - E[x]^2 cancellation)', async () => {
    await gpu();
    await scope(async () => {
      const [V, d] = [3000, 2];
      const data = Float32Array.from(noise(V * d, 11), (v) => 100 + 0.01 * v);
      const std = await embeddingColumnStd(tensor(data, [V, d])).toArray();
      expectClose(std, columnStdReference(data, d), 1e-3, 0, 'column std');
    });
  });

  it('percentile interpolates linearly at q (n - 1) like NumPy, and rejects q outside [0, 1]', async () => {
    await gpu();
    // Hand-computed: sorted [10, 20, 30, 40]; q = 0.5 -> position 1.5 -> 25; q = 0.05 over [10, 20, 30] -> position 0.1 -> 11.
    expect(await percentile([40, 10, 30, 20], 0.5)).toBeCloseTo(25, 12);
    expect(await percentile([30, 10, 20], 0.05)).toBeCloseTo(11, 12);
    expect(await percentile([30, 10, 20], 0)).toBe(10);
    expect(await percentile([30, 10, 20], 1)).toBe(30);
    expect(await percentile([7], 0.3)).toBe(7);
    expect(percentileReference([40, 10, 30, 20], 0.5)).toBeCloseTo(25, 12);
    await scope(async () => {
      expect(await percentile(tensor([40, 10, 30, 20], [2, 2]), 0.25)).toBeCloseTo(17.5, 5);
      expect(() => percentile(tensor([1, 2], [2]), 1.5)).toThrow(/percentile: 'q' must be in \[0, 1\], got 1.5/);
      expect(() => percentile(tensor([], [0]), 0.5)).toThrow(/percentile: 'values' has shape \[0\]/);
    });
    expect(() => percentile([1, 2], -0.1)).toThrow(/'q' must be in \[0, 1\]/);
    expect(() => percentile([1, 2], NaN)).toThrow(/'q' must be in \[0, 1\]/);
    expect(() => percentile([], 0.5)).toThrow(/'values' is empty/);
    expect(() => percentileReference([1, 2], 2)).toThrow(/q must be in \[0, 1\]/);
  });

  it('rejects bad tables, naming the argument', async () => {
    await gpu();
    scope(() => {
      expect(() => embeddingStats(tensor([1, 2, 3], [3]))).toThrow(/embeddingStats: argument 'E' has shape \[3\]; expected rank 2/);
      expect(() => embeddingStats(tensor([], [0, 3]))).toThrow(/embeddingStats: 'E' has shape \[0,3\]/);
    });
  });
});
