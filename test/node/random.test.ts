import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { randn } from '../../src/ops/random';
import { philox4x32, randnReference } from '../../src/reference/random';
import { expectClose } from '../helpers/compare';

describe('randn (Philox4x32-10 + Box-Muller)', () => {
  it('the reference Philox matches the published known-answer vectors', () => {
    // Random123's kat_vectors for philox4x32_10.
    expect(philox4x32([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    expect(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])).toEqual([
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd,
    ]);
    expect(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1,
    ]);
  });

  it('matches the float64 twin element for element, to f32 rounding, on every adapter', async () => {
    await gpu();
    const t = randn([3, 37], { seed: 1234567890123, offset: 5 });
    // Bound: |z| <= 5.8, the angle 2 pi u rounded to f32 (<= 1.2e-7 rad), sinCos and logAccurate
    // (common.wgsl) to ~2 ulp: under 3e-6 absolute. The built-in log / cos / sin were 3e-4 off on
    // SwiftShader, and u rounded to f32 (24 bits) moved small normals by 2e-5 on every adapter.
    expectClose(await t.toArray(), randnReference(111, 1234567890123, 5), 0, 3e-6, 'normals');
    t.dispose();
    const many = randn([40_000], { seed: 12345 });
    expectClose(await many.toArray(), randnReference(40_000, 12345), 0, 3e-6, '40,000 normals');
    many.dispose();
  });

  it('repeats bit for bit with a seed, differs with another seed or offset', async () => {
    await gpu();
    const [a, b, c, d] = [
      randn([1000], { seed: 7 }),
      randn([1000], { seed: 7 }),
      randn([1000], { seed: 8 }),
      randn([1000], { seed: 7, offset: 1 }),
    ];
    const [va, vb, vc, vd] = await Promise.all([a, b, c, d].map((t) => t.toArray()));
    expect(new Uint32Array(va.buffer)).toEqual(new Uint32Array(vb.buffer));
    expect(va.filter((x, i) => x === vc[i]).length).toBeLessThan(5);
    // offset 1 skips one 4-value block: the same stream, shifted by 4
    expect([...vd.slice(0, 996)]).toEqual([...va.slice(4)]);
    for (const t of [a, b, c, d]) t.dispose();
  });

  it('has mean ~0 and std ~1 over 100,000 samples, and no non-finite values', async () => {
    await gpu();
    const t = randn([100_000], { seed: 42 });
    const v = await t.toArray();
    t.dispose();
    let sum = 0;
    let sq = 0;
    for (const x of v) {
      expect(Number.isFinite(x)).toBe(true);
      sum += x;
      sq += x * x;
    }
    const mean = sum / v.length;
    const std = Math.sqrt(sq / v.length - mean * mean);
    // Standard errors: 1/sqrt(n) = 0.0032 for the mean, ~0.0022 for the std: 4 sigma bounds.
    expect(Math.abs(mean)).toBeLessThan(0.013);
    expect(Math.abs(std - 1)).toBeLessThan(0.009);
  });

  it('rejects bad seeds and offsets', async () => {
    await gpu();
    expect(() => randn([4], { seed: -1 })).toThrow(/randn: 'seed' must be an integer/);
    expect(() => randn([4], { seed: 1.5 })).toThrow(/randn: 'seed'/);
    expect(() => randn([8], { seed: 1, offset: 2 ** 32 - 1 })).toThrow(/randn: 'offset'/);
  });
});
