import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { Rng, f32 } from '../helpers/random';
import { type Tensor, liveBufferCount, matmul, mean, mul, readAll, scope, sub, sum, tensor } from '../../src/index';
import { AdamW, accumulateGradients, clipGradNorm, warmupCosine, type AdamWState } from '../../src/optim/index';
import { adamwStepReference, clipGradNormReference, type AdamWReferenceHyper } from '../../src/reference/adamw';

/** A float64 mirror of one parameter: what the twin says it and its moments should be. */
interface Mirror {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
  step: number;
}

function mirrorOf(values: Float32Array): Mirror {
  const n = values.length;
  return { p: Float64Array.from(values), m: new Float64Array(n), v: new Float64Array(n), step: 0 };
}

function param(values: Float32Array, shape: number[]): Tensor {
  return tensor(values, shape, { requiresGrad: true });
}

function setGrad(p: Tensor, values: Float32Array): void {
  p.grad?.dispose();
  p.grad = tensor(values, p.shape);
}

async function values(ts: Tensor[]): Promise<Float32Array[]> {
  return (await readAll(ts)) as Float32Array[];
}

describe('AdamW', () => {
  it('float64 twin: known answers of two hand-computed steps', () => {
    const hyper = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const [p, m, v] = [new Float64Array([1]), new Float64Array(1), new Float64Array(1)];
    // Step 1, g = 0.5: p = 0.99 (decay 1 - 0.01); m_hat = 0.5, v_hat = 0.25;
    // p -= 0.1 * 0.5 / (0.5 + 1e-8)  ->  0.99 - 0.099999998 = 0.890000002.
    adamwStepReference(p, [0.5], m, v, 1, hyper);
    expect(p[0]).toBeCloseTo(0.890000002, 12);
    expect(m[0]).toBeCloseTo(0.05, 15);
    expect(v[0]).toBeCloseTo(0.00025, 15);
    // Step 2, g = -0.5: m = -0.005, v = 0.00049975; m_hat = -0.005 / 0.19, v_hat = 0.00049975 / 0.001999 = 0.25;
    // p = 0.890000002 * 0.99 + 0.1 * (0.005 / 0.19) / (0.5 + 1e-8) = 0.88110000198 + 0.00526315779.
    adamwStepReference(p, [-0.5], m, v, 2, hyper);
    expect(m[0]).toBeCloseTo(-0.005, 15);
    expect(v[0]).toBeCloseTo(0.00049975, 15);
    expect(p[0]).toBeCloseTo(0.88636315977, 10);
  });

  it('5 steps with two groups and a parameter without grad match the float64 twin', async () => {
    await gpu();
    const rng = new Rng('adamw-twin');
    const betas: [number, number] = [0.9, 0.95];
    const eps = 1e-8;
    const shapes = [[3, 50], [37], [20], [5]];
    const init = shapes.map((s) => f32(rng.normals(s.reduce((a, b) => a * b, 1))));
    await scope(async () => {
      const [a, b, c, frozen] = init.map((v, i) => param(v, shapes[i]));
      const groupHyper: AdamWReferenceHyper[] = [
        { lr: 1e-2, beta1: betas[0], beta2: betas[1], eps, weightDecay: 0.1 },
        { lr: 3e-3, beta1: betas[0], beta2: betas[1], eps, weightDecay: 0 },
      ];
      const opt = new AdamW(
        [
          { params: [a, b], lr: 1e-2, weightDecay: 0.1 },
          { params: [c, frozen], lr: 3e-3, weightDecay: 0 },
        ],
        { betas, eps },
      );
      const params = [a, b, c, frozen];
      const groupOf = [0, 0, 1, 1];
      const mirrors = init.map(mirrorOf);
      const buffers = params.map((p) => p.buffer);
      for (let step = 0; step < 5; step++) {
        for (let i = 0; i < 3; i++) {
          // Grads of varied magnitude, so that v spans several orders.
          const g = f32(rng.normals(params[i].size, 10 ** rng.uniform(-3, 1)));
          setGrad(params[i], g);
          mirrors[i].step++;
          adamwStepReference(mirrors[i].p, g, mirrors[i].m, mirrors[i].v, mirrors[i].step, groupHyper[groupOf[i]]);
        }
        opt.step();
        const got = await values(params);
        for (let i = 0; i < 4; i++) expectClose(got[i], mirrors[i].p, 1e-5, 1e-7, `step ${step + 1}, param ${i}`);
      }
      expect(opt.stepCount).toBe(5);
      // Updated in place: same tensor objects, same GPU buffers, no autograd record.
      params.forEach((p, i) => {
        expect(p.buffer).toBe(buffers[i]);
        expect(p.gradFn).toBeNull();
      });
      expect(await frozen.toArray()).toEqual(init[3]);

      const state = await opt.state();
      expect(state.params.map((s) => s.step)).toEqual([5, 5, 5, 0]);
      for (let i = 0; i < 3; i++) {
        expectClose(state.params[i].m, mirrors[i].m, 1e-5, 1e-9, `m of param ${i}`);
        expectClose(state.params[i].v, mirrors[i].v, 1e-5, 1e-12, `v of param ${i}`);
      }
      expect(state.params[3].m.every((x) => x === 0) && state.params[3].v.every((x) => x === 0)).toBe(true);

      // The frozen parameter's first update is a step-1 update (bias corrections of t = 1).
      const g = f32(rng.normals(frozen.size));
      setGrad(frozen, g);
      for (const p of [a, b, c]) {
        p.grad!.dispose();
        p.grad = null;
      }
      adamwStepReference(mirrors[3].p, g, mirrors[3].m, mirrors[3].v, 1, groupHyper[1]);
      opt.step();
      const after = await values(params);
      for (let i = 0; i < 3; i++) expectClose(after[i], mirrors[i].p, 1e-5, 1e-7, `param ${i} without grad this step`);
      expectClose(after[3], mirrors[3].p, 1e-5, 1e-7, 'first update of the frozen param');
      expect((await opt.state()).params.map((s) => s.step)).toEqual([5, 5, 5, 1]);
      opt.dispose();
    });
  });

  it('a plain Tensor[] uses the defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01)', async () => {
    await gpu();
    const rng = new Rng('adamw-defaults');
    const init = f32(rng.normals(64));
    await scope(async () => {
      const p = param(init, [8, 8]);
      const opt = new AdamW([p]);
      const mirror = mirrorOf(init);
      const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
      for (let t = 1; t <= 3; t++) {
        const g = f32(rng.normals(64));
        setGrad(p, g);
        adamwStepReference(mirror.p, g, mirror.m, mirror.v, t, hyper);
        opt.step();
      }
      expectClose(await p.toArray(), mirror.p, 1e-5, 1e-7, 'param');
      opt.dispose();
    });
  });

  it('a parameter split over several dispatches (binding-sized chunks) matches the twin', async () => {
    await gpu();
    const rng = new Rng('adamw-chunks');
    const init = f32(rng.normals(300));
    await scope(async () => {
      const p = param(init, [300]);
      const opt = new AdamW([p], { lr: 5e-2, weightDecay: 0.05, chunkElements: 64 });
      const mirror = mirrorOf(init);
      for (let t = 1; t <= 3; t++) {
        const g = f32(rng.normals(300));
        setGrad(p, g);
        adamwStepReference(mirror.p, g, mirror.m, mirror.v, t, { lr: 5e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 });
        opt.step();
      }
      expectClose(await p.toArray(), mirror.p, 1e-5, 1e-7, 'chunked param');
      opt.dispose();
    });
  });

  it('state() / loadState() round-trip continues with identical steps', async () => {
    await gpu();
    const rng = new Rng('adamw-state');
    const shapes = [[4, 6], [9]];
    await scope(async () => {
      const ps = shapes.map((s) => param(f32(rng.normals(s[0] * (s[1] ?? 1))), s));
      const opt = new AdamW([{ params: [ps[0]] }, { params: [ps[1]], lr: 2e-2 }], { lr: 1e-2 });
      for (let t = 0; t < 3; t++) {
        ps.forEach((p) => {
          setGrad(p, f32(rng.normals(p.size)));
        });
        opt.step();
      }
      opt.setLearningRate(0, 7e-3);
      const state: AdamWState = await opt.state();
      expect(state.step).toBe(3);
      expect(state.groups.map((g) => g.lr)).toEqual([7e-3, 2e-2]);

      // A fresh optimizer (defaults differ on purpose) over copies of the parameters.
      const copies = (await values(ps)).map((v, i) => param(v, shapes[i]));
      const restored = new AdamW(copies, { lr: 1, weightDecay: 0 });
      expect(() => restored.loadState(state)).toThrow(/groups/);
      const twin = new AdamW([{ params: [copies[0]] }, { params: [copies[1]] }], { lr: 1, weightDecay: 0 });
      twin.loadState(state);
      expect(twin.stepCount).toBe(3);
      expect(twin.learningRate(0)).toBe(7e-3);
      expect(twin.learningRate(1)).toBe(2e-2);

      for (let t = 0; t < 2; t++) {
        ps.forEach((p, i) => {
          const g = f32(rng.normals(p.size));
          setGrad(p, g);
          setGrad(copies[i], g);
        });
        opt.step();
        twin.step();
      }
      const [orig, copy] = [await values(ps), await values(copies)];
      orig.forEach((o, i) => {
        expect(copy[i]).toEqual(o);
      });
      const [s1, s2] = [await opt.state(), await twin.state()];
      expect(s2).toEqual(s1);

      // Shapes and lengths are validated before anything changes.
      const wrongShape = { ...state, params: [{ ...state.params[0], shape: [6, 4] }, state.params[1]] };
      expect(() => twin.loadState(wrongShape)).toThrow(/parameter 0 has shape \[4,6\]/);
      const wrongLength = { ...state, params: [state.params[0], { ...state.params[1], m: new Float32Array(3) }] };
      expect(() => twin.loadState(wrongLength)).toThrow(/'m' must be a Float32Array of 9/);
      expect(() => twin.loadState({ ...state, params: [state.params[0]] })).toThrow(/1 parameters/);
      // Entries that are not objects are named errors too, not TypeErrors.
      expect(() => twin.loadState({ ...state, groups: state.groups.map(() => null as never) })).toThrow(
        /AdamW.loadState: group 0 must be \{ lr, weightDecay \}/,
      );
      expect(() => twin.loadState({ ...state, params: [null as never, state.params[1]] })).toThrow(
        /AdamW.loadState: parameter 0 must be \{ shape, step, m, v \}/,
      );
      expect(twin.stepCount).toBe(5);
      for (const o of [opt, restored, twin]) o.dispose();
    });
  });

  it('a training loop (forward, backward, clip, step, zeroGrad) leaves the live-buffer count unchanged after its first step', async () => {
    await gpu();
    const rng = new Rng('adamw-leak');
    await scope(async () => {
      const w = param(f32(rng.normals(12, 0.5)), [4, 3]);
      const bias = param(f32(rng.normals(3, 0.1)), [3]);
      const x = tensor(f32(rng.normals(32)), [8, 4]);
      const y = tensor(f32(rng.normals(24)), [8, 3]);
      const opt = new AdamW([w, bias], { lr: 1e-2 });
      const trainStep = async () => {
        const norm = scope(() => {
          const d = sub(sub(matmul(x, w), y), bias);
          mean(sum(mul(d, d), -1)).backward();
          const n = clipGradNorm([w, bias], 0.5);
          opt.step();
          opt.zeroGrad();
          return n;
        });
        const value = await norm.item();
        norm.dispose();
        return value;
      };
      const first = await trainStep();
      const before = liveBufferCount();
      let last = first;
      for (let i = 0; i < 10; i++) last = await trainStep();
      expect(liveBufferCount()).toBe(before);
      expect(w.grad).toBeNull();
      // Training made progress on this convex problem.
      expect(last).toBeLessThan(first);
      opt.dispose();
    });
  });

  it('rejects bad options with errors that name them', async () => {
    await gpu();
    await scope(() => {
      const p = param(f32([1, 2, 3]), [3]);
      expect(() => new AdamW([p], { lr: -1 })).toThrow(/'lr'/);
      expect(() => new AdamW([p], { lr: NaN })).toThrow(/'lr'/);
      expect(() => new AdamW([p], { betas: [1, 0.999] })).toThrow(/'betas'/);
      expect(() => new AdamW([p], { betas: [0.9, -0.1] })).toThrow(/'betas'/);
      expect(() => new AdamW([p], { eps: 0 })).toThrow(/'eps'/);
      expect(() => new AdamW([p], { weightDecay: -0.01 })).toThrow(/'weightDecay'/);
      expect(() => new AdamW([{ params: [p], lr: -3 }])).toThrow(/group 0.*'lr'/);
      expect(() => new AdamW([{ params: [p], weightDecay: Infinity }])).toThrow(/group 0.*'weightDecay'/);
      expect(() => new AdamW([])).toThrow(/empty parameter list/);
      expect(() => new AdamW([{ params: [p] }, { params: [p] }])).toThrow(/more than once/);
      const nonLeaf = mul(p, p);
      expect(() => new AdamW([nonLeaf])).toThrow(/not a leaf/);
      expect(() => new AdamW([tensor(new Int32Array([1]))])).toThrow(/dtype i32/);
      const opt = new AdamW([p]);
      expect(() => opt.setLearningRate('all', -1)).toThrow(/'lr'/);
      expect(() => opt.setLearningRate(1, 0.1)).toThrow(/group index 1/);
      p.grad = tensor(f32([1, 2]), [2]);
      expect(() => opt.step()).toThrow(/gradient has shape \[2\]/);
      opt.dispose();
      expect(() => opt.step()).toThrow(/after dispose/);
    });
  });
});

describe('clipGradNorm', () => {
  async function clipCase(maxNorm: number, seed: string) {
    await gpu();
    const rng = new Rng(seed);
    // 5000 elements: several workgroups of partials in one tensor.
    const shapes = [[5000], [7, 13], [1]];
    const grads = shapes.map((s) => f32(rng.normals(s[0] * (s[1] ?? 1), 0.05)));
    return scope(async () => {
      const ps = shapes.map((s) => param(new Float32Array(s[0] * (s[1] ?? 1)), s));
      ps.forEach((p, i) => {
        setGrad(p, grads[i]);
      });
      const noGradParam = param(f32([1, 2]), [2]);
      const before = liveBufferCount();
      const norm = clipGradNorm([...ps, noGradParam], maxNorm);
      expect(norm.shape).toEqual([]);
      expect(liveBufferCount()).toBe(before + 1);
      const ref = clipGradNormReference(grads, maxNorm);
      const [n, ...clipped] = await values([norm, ...ps.map((p) => p.grad!)]);
      expect(noGradParam.grad).toBeNull();
      return { n: n[0], clipped, ref, grads };
    });
  }

  it('clips when the norm exceeds maxNorm: norm and scaled grads match float64', async () => {
    const { n, clipped, ref } = await clipCase(1, 'clip-on');
    expect(ref.totalNorm).toBeGreaterThan(2); // the case really clips
    expectClose([n], [ref.totalNorm], 1e-5, 0, 'total norm');
    clipped.forEach((g, i) => {
      expectClose(g, ref.clipped[i], 1e-5, 1e-9, `clipped grad ${i}`);
    });
    let sq = 0;
    for (const g of clipped) for (const x of g) sq += x * x;
    expectClose([Math.sqrt(sq)], [1], 1e-5, 0, 'norm after clipping');
  });

  it('leaves grads unchanged when the norm is below maxNorm', async () => {
    const { n, clipped, ref, grads } = await clipCase(100, 'clip-off');
    expect(ref.factor).toBe(1);
    expectClose([n], [ref.totalNorm], 1e-5, 0, 'total norm');
    clipped.forEach((g, i) => {
      expect(g).toEqual(grads[i]);
    });
  });

  it('returns 0 when no parameter has a gradient, and validates maxNorm', async () => {
    await gpu();
    await scope(async () => {
      const p = param(f32([3, 4]), [2]);
      expect(await clipGradNorm([p], 1).item()).toBe(0);
      expect(() => clipGradNorm([p], -1)).toThrow(/'maxNorm'/);
      expect(() => clipGradNorm([p], NaN)).toThrow(/'maxNorm'/);
      // A parameter listed twice is clipped once: norm 5 -> factor 0.5 (hand-computed).
      setGrad(p, f32([3, 4]));
      expect(await clipGradNorm([p, p], 2.5).item()).toBeCloseTo(5, 5);
      expectClose(await p.grad!.toArray(), [1.5, 2], 1e-6, 0, 'clipped once');
    });
  });
});

describe('warmupCosine', () => {
  const lr = warmupCosine({ baseLr: 1e-3, warmupSteps: 10, totalSteps: 110, minLr: 1e-5 });

  it('warms up linearly, decays by a cosine, then holds minLr', () => {
    // Step s of the warm-up runs at (s + 1) / 10 of the peak: the first step is never at rate 0,
    // the tenth (index 9) is at the peak, and the decay starts from the peak at index 10.
    expect(lr(0)).toBeCloseTo(1e-4, 15);
    expect(lr(4)).toBeCloseTo(5e-4, 15);
    expect(lr(9)).toBeCloseTo(1e-3, 15);
    expect(lr(10)).toBeCloseTo(1e-3, 15);
    for (let s = 0; s < 9; s++) expect(lr(s + 1)).toBeGreaterThan(lr(s));
    // Half-way through the decay the cosine is 0: the mean of baseLr and minLr.
    expect(lr(60)).toBeCloseTo((1e-3 + 1e-5) / 2, 15);
    // A quarter of the way: cos(pi/4) = sqrt(2)/2.
    expect(lr(35)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + Math.SQRT1_2), 15);
    expect(lr(110)).toBeCloseTo(1e-5, 15);
    expect(lr(500)).toBe(1e-5);
    // Monotone decay after the warm-up.
    for (let s = 10; s < 110; s++) expect(lr(s + 1)).toBeLessThanOrEqual(lr(s));
    const noWarmup = warmupCosine({ baseLr: 2, warmupSteps: 0, totalSteps: 4 });
    expect([0, 1, 2, 3, 4, 9].map(noWarmup).map((x) => +x.toFixed(12))).toEqual(
      [2, 1 + Math.SQRT1_2, 1, 1 - Math.SQRT1_2, 0, 0].map((x) => +x.toFixed(12)),
    );
  });

  it('without totalSteps, warms up then holds baseLr', () => {
    // baseLr 2 over 4 warm-up steps: 0.5, 1, 1.5, 2, then 2 for ever (minLr has no decay to floor).
    const constant = warmupCosine({ baseLr: 2, warmupSteps: 4, minLr: 3 });
    expect([0, 1, 2, 3, 4, 5, 1000].map(constant)).toEqual([0.5, 1, 1.5, 2, 2, 2, 2]);
    expect([0, 7].map(warmupCosine({ baseLr: 0.25, warmupSteps: 0 }))).toEqual([0.25, 0.25]);
  });

  it('rejects bad options and steps, naming them', () => {
    expect(() => warmupCosine({ baseLr: -1, warmupSteps: 1, totalSteps: 2 })).toThrow(/'baseLr'/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1.5, totalSteps: 2 })).toThrow(/'warmupSteps'/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 5, totalSteps: 4 })).toThrow(/'totalSteps'/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 0, totalSteps: 0 })).toThrow(/'totalSteps'/);
    expect(() => warmupCosine({ baseLr: 1, warmupSteps: 1, totalSteps: 2, minLr: 2 })).toThrow(/'minLr'/);
    expect(() => lr(-1)).toThrow(/step/);
  });
});

describe('accumulateGradients', () => {
  it('k micro-batches of loss/k give the gradient of the whole batch (and float64)', async () => {
    await gpu();
    const rng = new Rng('accumulate');
    const B = 8;
    const [K, N] = [4, 3];
    const xs = f32(rng.normals(B * K));
    const ys = f32(rng.normals(B * N));
    const w0 = f32(rng.normals(K * N, 0.5));
    // loss = mean over rows of sum_j (xW - y)_ij^2  =>  dL/dW = (2 / B) x^T (xW - y)
    const expected = new Float64Array(K * N);
    let expectedLoss = 0;
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < N; j++) {
        let d = -ys[b * N + j];
        for (let k = 0; k < K; k++) d += xs[b * K + k] * w0[k * N + j];
        expectedLoss += (d * d) / B;
        for (let k = 0; k < K; k++) expected[k * N + j] += (2 / B) * xs[b * K + k] * d;
      }
    }
    const lossOf = (w: Tensor, rows: number[]) => {
      const x = tensor(f32(rows.flatMap((r) => Array.from(xs.subarray(r * K, r * K + K)))), [rows.length, K]);
      const y = tensor(f32(rows.flatMap((r) => Array.from(ys.subarray(r * N, r * N + N)))), [rows.length, N]);
      const d = sub(matmul(x, w), y);
      return mean(sum(mul(d, d), -1));
    };
    await scope(async () => {
      const whole = param(w0, [K, N]);
      scope(() => lossOf(whole, [0, 1, 2, 3, 4, 5, 6, 7]).backward());
      const split = param(w0, [K, N]);
      const before = liveBufferCount();
      const loss = accumulateGradients(
        [
          [0, 1, 2, 3],
          [4, 5, 6, 7],
        ],
        (rows) => lossOf(split, rows),
      );
      // Only the returned loss and the new .grad remain.
      expect(liveBufferCount()).toBe(before + 2);
      expect(loss.shape).toEqual([]);
      expect(loss.requiresGrad).toBe(false);
      const [gWhole, gSplit, l] = await values([whole.grad!, split.grad!, loss]);
      expectClose(gSplit, gWhole, 1e-5, 1e-6, 'accumulated vs whole-batch grad');
      expectClose(gSplit, expected, 1e-4, 1e-5, 'accumulated grad vs float64');
      expectClose(l, [expectedLoss], 1e-5, 1e-6, 'mean loss');
      expect(() => accumulateGradients([], () => loss)).toThrow(/non-empty/);
    });
  });

  it('averages named components alongside the loss, and leaves nothing behind', async () => {
    await gpu();
    await scope(async () => {
      // w = [1, 2]; micro-batch c: loss = c * (w0 + w1) = 3c, components half = 1.5c and index = i + 1.
      // c = 3, 5: mean loss (9 + 15) / 2 = 12, half 6, index 1.5; dLoss/dw = mean c = 4 per element.
      // One micro-batch (c = 3): no scaling, loss 9, half 4.5, index 1, gradient 3.
      const lossOf = (w: Tensor, c: number, i: number) => {
        const loss = sum(mul(w, tensor(f32([c, c]), [2])));
        return { loss, components: { half: mul(loss, tensor(f32([0.5]), [])), index: tensor(f32([i + 1]), [1]) } };
      };
      for (const [cs, expected] of [
        [[3, 5], { loss: 12, half: 6, index: 1.5, grad: 4 }],
        [[3], { loss: 9, half: 4.5, index: 1, grad: 3 }],
      ] as const) {
        const w = param(f32([1, 2]), [2]);
        const before = liveBufferCount();
        const out = accumulateGradients(cs, (c, i) => lossOf(w, c, i));
        // The mean loss, the two mean components and the new .grad.
        expect(liveBufferCount()).toBe(before + 4);
        expect(Object.keys(out.components)).toEqual(['half', 'index']);
        for (const t of [out.loss, out.components.half, out.components.index]) {
          expect(t.shape).toEqual([]);
          expect(t.requiresGrad).toBe(false);
        }
        const [l, half, index, grad] = await values([out.loss, out.components.half, out.components.index, w.grad!]);
        expectClose([l[0], half[0], index[0]], [expected.loss, expected.half, expected.index], 1e-6, 0, `means of ${cs}`);
        expectClose(grad, [expected.grad, expected.grad], 1e-6, 0, `grad of ${cs}`);
      }
      const w = param(f32([1, 2]), [2]);
      expect(() => accumulateGradients([1], () => ({ loss: sum(w), components: { bad: w } }))).toThrow(/'bad' is \[2\]/);
    });
  });
});
