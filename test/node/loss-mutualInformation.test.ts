/** mutualInformationLoss (LOSSES.md section 3): the GPU kernels and the float64 twin. */
import { seededRandom } from '../../src/text/data';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { liveBufferCount, readAll, scale, scope, tensor, type Tensor } from '../../src/index';
import { mutualInformation, type MutualInformationOptions } from '../../src/losses/mutualInformation';
import {
  mutualInformationReference,
  mutualInformationReferenceBackward,
  type MutualInformationReferenceInputs,
} from '../../src/reference/mutualInformation';
import { LOSS_FIXTURES, loadLossFixture, type LossFixture } from '../helpers/fixtures';
import { expectClose } from '../helpers/compare';

const GRAD_KEYS = ['xt', 'mu', 'sigma'] as const;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Tolerance floor for gradient elements near zero: relative to the array's largest element. */
function gradAtol(expected: ArrayLike<number>, rel: number): number {
  return Math.max(rel * maxAbs(expected), 1e-30);
}

/** A small deterministic generator so that random cases are repeatable. */
const rng = seededRandom;

function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

interface Case extends MutualInformationReferenceInputs {
  attentionMask: number[];
  noiseMask: number[];
  x: number[];
  xt: number[];
  mu: number[];
  sigma: number[];
}

/**
 * A random case as the cloak makes it: xt = x + N * (mu + sigma * eps). Values are rounded to f32
 * so that the GPU and the twin see the same numbers.
 */
function randomCase(seed: number, B: number, T: number, d: number, noise: number[], attention?: number[]): Case {
  const r = rng(seed);
  const f32 = (v: number) => Math.fround(v);
  const n = B * T * d;
  const x = Array.from({ length: n }, () => f32(normal(r)));
  const mu = Array.from({ length: n }, () => f32(0.3 * normal(r)));
  const sigma = Array.from({ length: n }, () => f32(0.3 + 0.9 * r()));
  const xt = x.map((v, e) => f32(v + noise[Math.floor(e / d)] * (mu[e] + sigma[e] * normal(r))));
  return { B, T, d, x, xt, mu, sigma, noiseMask: noise, attentionMask: attention ?? noise.map(() => 1) };
}

interface GpuResult {
  value: number;
  grads: Record<'x' | 'xt' | 'mu' | 'sigma', Float32Array>;
}

/** Runs the GPU loss forward and backward on a case; frees everything it made. */
async function runGpu(c: Case, options: MutualInformationOptions & { maskAsTensor?: boolean } = {}): Promise<GpuResult> {
  const { B, T, d } = c;
  const before = liveBufferCount();
  const result = await scope(async () => {
    const shape = [B, T, d];
    const x = tensor(c.x, shape, { requiresGrad: true });
    const xt = tensor(c.xt, shape, { requiresGrad: true });
    const mu = tensor(c.mu, shape, { requiresGrad: true });
    const sigma = tensor(c.sigma, shape, { requiresGrad: true });
    const noise = options.maskAsTensor ? tensor(c.noiseMask, [B, T]) : c.noiseMask;
    const loss = mutualInformation(x, xt, mu, sigma, noise, options);
    expect(loss.shape).toEqual([]);
    loss.backward();
    const leaves: Tensor[] = [x, xt, mu, sigma];
    const arrays = await readAll([loss, ...leaves.map((t) => t.grad!)]);
    for (const t of leaves) t.grad!.dispose();
    const [v, gx, gxt, gmu, gsigma] = arrays as Float32Array[];
    return { value: v[0], grads: { x: gx, xt: gxt, mu: gmu, sigma: gsigma } };
  });
  expect(liveBufferCount(), 'buffers leaked by forward + backward').toBe(before);
  return result;
}

function fixtureCase(f: LossFixture): Case {
  return {
    B: f.B,
    T: f.T,
    d: f.d,
    x: f.inputs.x.data,
    xt: f.inputs.xt.data,
    mu: f.inputs.mu.data,
    sigma: f.inputs.sigma.data,
    noiseMask: f.inputs.N.data,
    attentionMask: f.inputs.A.data,
    combineNoiseMasks: f.combine,
  };
}

describe('mutualInformation: the reference cases', () => {
  for (const name of LOSS_FIXTURES) {
    const f = loadLossFixture(name);
    const expected = f.components.mutualInformationLoss;
    const c = fixtureCase(f);

    it(`${name}: the float64 twin matches value and gradients`, () => {
      expect(mutualInformationReference(c)).toBeCloseTo(expected.value, 9);
      expectClose([mutualInformationReference(c)], [expected.value], 1e-10, 0, `${name} value`);
      const g = mutualInformationReferenceBackward(c);
      for (const k of GRAD_KEYS) {
        const want = expected.grad[k];
        expect(want.shape).toEqual([f.B, f.T, f.d]);
        expectClose(g[k], want.data, 1e-9, gradAtol(want.data, 1e-12), `${name} twin grad ${k}`);
      }
    });

    it(`${name}: the GPU matches value and gradients (combine=${f.combine})`, async () => {
      await gpu();
      const r = await runGpu(c, { combineNoiseMasks: f.combine, attentionMask: c.attentionMask });
      expectClose([r.value], [expected.value], 1e-4, 0, `${name} value`);
      for (const k of GRAD_KEYS) {
        const want = expected.grad[k].data;
        expectClose(r.grads[k], want, 1e-3, gradAtol(want, 1e-5), `${name} GPU grad ${k}`);
      }
      // x enters only through the centres x + mu: its gradient is the twin's, equal to mu's.
      const twin = mutualInformationReferenceBackward(c);
      expectClose(r.grads.x, twin.x, 1e-3, gradAtol(twin.x, 1e-5), `${name} GPU grad x`);
    });
  }

  it('losses-small-sigma is the regime of f32 concern (MI in the tens of thousands)', () => {
    const f = loadLossFixture('losses-small-sigma');
    expect(f.components.mutualInformationLoss.value).toBeGreaterThan(1e4);
  });
});

describe('mutualInformation: the float64 twin against central finite differences', () => {
  const cases: [string, Case][] = [
    ['combined', { ...randomCase(11, 4, 3, 4, [1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1]), combineNoiseMasks: true }],
    [
      'uncombined with A',
      {
        ...randomCase(12, 4, 3, 4, [1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1], [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]),
        combineNoiseMasks: false,
      },
    ],
    ['six rows', { ...randomCase(13, 6, 2, 3, [1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1]), combineNoiseMasks: true }],
  ];
  for (const [label, c] of cases) {
    it(label, () => {
      const g = mutualInformationReferenceBackward(c, 1.7);
      const h = 1e-6;
      for (const key of ['x', 'xt', 'mu', 'sigma'] as const) {
        const base = c[key];
        const fd = new Float64Array(base.length);
        for (let e = 0; e < base.length; e++) {
          const plus = [...base];
          const minus = [...base];
          plus[e] += h;
          minus[e] -= h;
          fd[e] =
            (1.7 * (mutualInformationReference({ ...c, [key]: plus }) - mutualInformationReference({ ...c, [key]: minus }))) / (2 * h);
        }
        expect(maxAbs(fd), `${label} ${key}: the check is not vacuous`).toBeGreaterThan(1e-3);
        expectClose(g[key], fd, 1e-6, 1e-8, `${label} d/d${key}`);
      }
    });
  }
});

describe('mutualInformation: edge cases', () => {
  it('B = 2 is the single-pair form: log-determinant ratio + Mahalanobis distance', async () => {
    await gpu();
    const T = 5;
    const d = 6;
    const noise = [1, 1, 0, 1, 1, /* row 1 */ 1, 0, 1, 1, 1];
    const c = randomCase(21, 2, T, d, noise);
    // Written from the closed form, independently of the kernels: for each t where both rows are
    // transformed, each row is scored under the other's single Gaussian:
    //   term = (1/d) [ sum_j log(s_k / s_i) + 1/2 sum_j ((xt_i - x_k - mu_k) / s_k)^2 - d/2 ].
    let total = 0;
    let count = 0;
    const gradXt = new Float64Array(2 * T * d);
    const pairs: [number, number][] = [];
    for (let t = 0; t < T; t++) {
      if (noise[t] !== 1 || noise[T + t] !== 1) continue;
      for (const [i, k] of [
        [0, 1],
        [1, 0],
      ]) {
        let logDetRatio = 0;
        let mahalanobis = 0;
        for (let j = 0; j < d; j++) {
          const a = (i * T + t) * d + j;
          const b = (k * T + t) * d + j;
          logDetRatio += Math.log(c.sigma[b] / c.sigma[a]);
          mahalanobis += ((c.xt[a] - c.x[b] - c.mu[b]) / c.sigma[b]) ** 2;
        }
        total += (logDetRatio + 0.5 * mahalanobis - d / 2) / d;
        count++;
        pairs.push([i * T + t, k * T + t]);
      }
    }
    expect(count).toBe(6); // t = 0, 3, 4, both directions
    for (const [qi, ki] of pairs) {
      for (let j = 0; j < d; j++) {
        const s = c.sigma[ki * d + j];
        gradXt[qi * d + j] = (c.xt[qi * d + j] - c.x[ki * d + j] - c.mu[ki * d + j]) / (s * s) / (count * d);
      }
    }
    const closedForm = total / count;
    expectClose([mutualInformationReference(c)], [closedForm], 1e-12, 0, 'twin vs closed form');
    const r = await runGpu(c);
    expectClose([r.value], [closedForm], 1e-4, 0, 'GPU vs closed form');
    expectClose(r.grads.xt, gradXt, 1e-3, gradAtol(gradXt, 1e-5), 'GPU d/dxt vs closed form');
  });

  it('an odd batch, B = 1 or B = 0 throws before any GPU work, naming the function and the argument', async () => {
    const ctx = await gpu();
    for (const B of [3, 1, 0, 5]) {
      const T = 2;
      const d = 3;
      const make = () => tensor(new Float32Array(B * T * d).fill(0.5), [B, T, d]);
      const [x, xt, mu, sigma] = [make(), make(), make(), make()];
      ctx.flush();
      const live = liveBufferCount();
      expect(() => mutualInformation(x, xt, mu, sigma, new Array(B * T).fill(1))).toThrow(
        new RegExp(`^mutualInformation: argument 'x' has batch size B=${B} .*B must be even and at least 2`),
      );
      expect(ctx.pending, 'no dispatch was recorded').toBe(0);
      expect(liveBufferCount(), 'no mask was uploaded').toBe(live);
      for (const t of [x, xt, mu, sigma]) t.dispose();
    }
  });

  it('other argument errors name the argument', async () => {
    await gpu();
    scope(() => {
      const a = tensor(new Float32Array(2 * 3 * 4).fill(1), [2, 3, 4]);
      const b = tensor(new Float32Array(2 * 3 * 5).fill(1), [2, 3, 5]);
      expect(() => mutualInformation(a, a, b, a, new Array(6).fill(1))).toThrow(
        /mutualInformation: 'x' has shape \[2,3,4\] but 'mu' has shape \[2,3,5\]/,
      );
      expect(() => mutualInformation(a, a, a, a, new Array(5).fill(1))).toThrow(/mutualInformation: mask 'noiseMask' has 5 values/);
      expect(() =>
        mutualInformation(a, a, a, a, new Array(6).fill(1), { combineNoiseMasks: false, attentionMask: [1, 2, 1, 1, 1, 1] }),
      ).toThrow(/mutualInformation: mask 'attentionMask' must hold only 0 and 1/);
    });
  });

  it('an empty noise mask gives 0 and zero gradients, never NaN (GPU and twin)', async () => {
    await gpu();
    const noise = new Array(4 * 3).fill(0);
    const c = randomCase(31, 4, 3, 5, noise);
    expect(mutualInformationReference(c)).toBe(0);
    const twin = mutualInformationReferenceBackward(c);
    for (const k of ['x', 'xt', 'mu', 'sigma'] as const) expect(maxAbs(twin[k])).toBe(0);
    for (const combineNoiseMasks of [true, false]) {
      const r = await runGpu(c, { combineNoiseMasks });
      expect(r.value).toBe(0);
      for (const k of ['x', 'xt', 'mu', 'sigma'] as const) {
        expect(
          r.grads[k].every((v) => v === 0),
          `grad ${k} is exactly zero`,
        ).toBe(true);
      }
    }
  });

  it('queries with no included component are dropped from the mean, not counted as 0', async () => {
    await gpu();
    // Rows 0-1 form P, rows 2-3 form Q. At t = 0 only P is transformed: with combined masks those
    // queries have K = 0 and drop out. At t = 1 all four are transformed.
    const T = 2;
    const noise = [1, 1, 1, 1, 0, 1, 0, 1];
    const c = randomCase(41, 4, T, 3, noise);
    const onlyT1: Case = { ...c, noiseMask: [0, 1, 0, 1, 0, 1, 0, 1] };
    const value = mutualInformationReference(c);
    expect(value).toBeCloseTo(mutualInformationReference(onlyT1), 12);
    const r = await runGpu(c);
    expectClose([r.value], [value], 1e-4, 0, 'value');
    // Dropped queries get no gradient through xt, nor through Hcond.
    for (const k of ['xt', 'sigma'] as const) {
      for (const i of [0, 1]) for (let j = 0; j < 3; j++) expect(r.grads[k][(i * T + 0) * 3 + j]).toBe(0);
    }
  });

  it('combined and uncombined masks differ when N != A, each matching the twin', async () => {
    await gpu();
    const B = 4;
    const T = 4;
    const d = 5;
    const noise = [1, 0, 1, 1, /**/ 0, 1, 1, 0, /**/ 1, 1, 0, 1, /**/ 1, 0, 1, 0];
    const attention = [1, 1, 1, 1, /**/ 1, 1, 1, 0, /**/ 1, 1, 1, 1, /**/ 1, 1, 1, 0];
    const c = randomCase(51, B, T, d, noise, attention);
    const combined = await runGpu(c, { combineNoiseMasks: true, attentionMask: attention });
    const uncombined = await runGpu(c, { combineNoiseMasks: false, attentionMask: attention });
    const noAttention = await runGpu(c, { combineNoiseMasks: false });
    const twinC = mutualInformationReference({ ...c, combineNoiseMasks: true });
    const twinU = mutualInformationReference({ ...c, combineNoiseMasks: false });
    const twinAll = mutualInformationReference({ ...c, combineNoiseMasks: false, attentionMask: undefined });
    expect(Math.abs(twinC - twinU)).toBeGreaterThan(1e-3);
    expect(Math.abs(twinU - twinAll)).toBeGreaterThan(1e-3);
    expectClose([combined.value], [twinC], 1e-4, 0, 'combined');
    expectClose([uncombined.value], [twinU], 1e-4, 0, 'uncombined');
    expectClose([noAttention.value], [twinAll], 1e-4, 0, 'uncombined, no attention mask');
    const gU = mutualInformationReferenceBackward({ ...c, combineNoiseMasks: false });
    for (const k of ['x', 'xt', 'mu', 'sigma'] as const) {
      expectClose(uncombined.grads[k], gU[k], 1e-3, gradAtol(gU[k], 1e-5), `uncombined grad ${k}`);
    }
    // The combined setting ignores A altogether.
    const combinedNoA = await runGpu(c, { combineNoiseMasks: true });
    expect(combinedNoA.value).toBe(combined.value);
  });

  it('a mask given as a tensor works like host data, and results are bit-for-bit repeatable', async () => {
    await gpu();
    const c = randomCase(61, 6, 3, 4, [1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1]);
    const a = await runGpu(c);
    const b = await runGpu(c, { maskAsTensor: true });
    expect(b.value).toBe(a.value);
    for (const k of ['x', 'xt', 'mu', 'sigma'] as const) expect(Array.from(b.grads[k])).toEqual(Array.from(a.grads[k]));
    const twin = mutualInformationReferenceBackward(c);
    expectClose([a.value], [mutualInformationReference(c)], 1e-4, 0, 'six-row value');
    for (const k of ['x', 'xt', 'mu', 'sigma'] as const)
      expectClose(a.grads[k], twin[k], 1e-3, gradAtol(twin[k], 1e-5), `six-row grad ${k}`);
  });

  it('reads the incoming gradient on the GPU (a loss weight scales every gradient)', async () => {
    await gpu();
    const c = randomCase(71, 4, 3, 4, [1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1]);
    const twin = mutualInformationReferenceBackward(c, -2.5);
    await scope(async () => {
      const shape = [4, 3, 4];
      const xt = tensor(c.xt, shape, { requiresGrad: true });
      const mu = tensor(c.mu, shape, { requiresGrad: true });
      const sigma = tensor(c.sigma, shape, { requiresGrad: true });
      const x = tensor(c.x, shape);
      scale(mutualInformation(x, xt, mu, sigma, c.noiseMask), -2.5).backward();
      expect(x.grad, 'x does not require grad').toBeNull();
      const [gxt, gmu, gsigma] = await readAll([xt.grad!, mu.grad!, sigma.grad!]);
      expectClose(gxt, twin.xt, 1e-3, gradAtol(twin.xt, 1e-5), 'weighted grad xt');
      expectClose(gmu, twin.mu, 1e-3, gradAtol(twin.mu, 1e-5), 'weighted grad mu');
      expectClose(gsigma, twin.sigma, 1e-3, gradAtol(twin.sigma, 1e-5), 'weighted grad sigma');
    });
  });

  it('a sequence length of 0 gives 0', async () => {
    await gpu();
    const r = await runGpu({ B: 2, T: 0, d: 3, x: [], xt: [], mu: [], sigma: [], noiseMask: [], attentionMask: [] });
    expect(r.value).toBe(0);
    expect(r.grads.xt.length).toBe(0);
  });
});
