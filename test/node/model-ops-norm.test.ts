/** RMSNorm and LayerNorm: the float64 twin against finite differences, the GPU against the twin. */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { mul, readAll, scope, sum, tensor, type Tensor } from '../../src/index';
import { layerNorm, rmsNorm } from '../../src/ops/norm';
import * as ref from '../../src/reference/norm';
import type { NDArray } from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';

function nd(data: ArrayLike<number>, shape: number[]): NDArray {
  return { shape: [...shape], data: Float64Array.from(data) };
}

/** sum(f(inputs) * w): the scalar whose gradient is f's vector-Jacobian product with w. */
function weightedSum(out: NDArray, w: NDArray): number {
  let s = 0;
  for (let i = 0; i < out.data.length; i++) s += out.data[i] * w.data[i];
  return s;
}

/** Central differences of sum(f(inputs) * w) with respect to every element of every input. */
function numericGrads(f: (inputs: NDArray[]) => NDArray, inputs: NDArray[], w: NDArray, h = 1e-6): Float64Array[] {
  return inputs.map((input, k) => {
    const grad = new Float64Array(input.data.length);
    for (let i = 0; i < input.data.length; i++) {
      const at = (delta: number) => {
        const moved = inputs.map((x, m) => (m === k ? nd(x.data, x.shape) : x));
        moved[k].data[i] += delta;
        return weightedSum(f(moved), w);
      };
      grad[i] = (at(h) - at(-h)) / (2 * h);
    }
    return grad;
  });
}

interface Case {
  x: number[];
  shape: number[];
  weight: number[];
  bias: number[];
  w: number[];
}

function makeCase(seed: string, shape: number[], xScale = 1, xShift = 0): Case {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = shape[shape.length - 1];
  return {
    // Rounded to f32 first, so the twin sees exactly what the GPU sees.
    x: Array.from(Float32Array.from(rng.normals(n, xScale).map((v) => v + xShift))),
    shape,
    weight: Array.from(Float32Array.from(rng.uniforms(d, 0.5, 1.5))),
    bias: Array.from(Float32Array.from(rng.normals(d))),
    w: Array.from(Float32Array.from(rng.normals(n))),
  };
}

/** Runs `op` on the GPU with grad on every input, backpropagates sum(out * w); returns out and grads. */
function gpuRun(op: (ts: Tensor[]) => Tensor, inputs: { data: number[]; shape: number[] }[], w: number[]) {
  // The scope frees every tensor made here (inputs, intermediates, gradients) once read back.
  return scope(async () => {
    const ts = inputs.map((i) => tensor(i.data, i.shape, { requiresGrad: true }));
    const out = op(ts);
    const loss = sum(mul(out, tensor(w, out.shape)));
    loss.backward();
    const arrays = await readAll([out, ...ts.map((t) => t.grad!)]);
    return { out: arrays[0], grads: arrays.slice(1) };
  });
}

describe('float64 twins of rmsNorm and layerNorm', () => {
  it('rmsNormBackward matches central differences', () => {
    const c = makeCase('rms fd', [3, 5]);
    const eps = 1e-3;
    const inputs = [nd(c.x, c.shape), nd(c.weight, [5])];
    const w = nd(c.w, c.shape);
    const analytic = ref.rmsNormBackward(w, inputs[0], inputs[1], eps);
    const numeric = numericGrads(([x, weight]) => ref.rmsNorm(x, weight, eps), inputs, w);
    analytic.forEach((a, k) => {
      expectClose(a.data, numeric[k], 1e-6, 1e-7, `input ${k}`);
    });
  });

  it('layerNormBackward matches central differences', () => {
    const c = makeCase('ln fd', [3, 5]);
    const eps = 1e-3;
    const inputs = [nd(c.x, c.shape), nd(c.weight, [5]), nd(c.bias, [5])];
    const w = nd(c.w, c.shape);
    const analytic = ref.layerNormBackward(w, inputs[0], inputs[1], inputs[2], eps);
    const numeric = numericGrads(([x, weight, bias]) => ref.layerNorm(x, weight, bias, eps), inputs, w);
    analytic.forEach((a, k) => {
      expectClose(a.data, numeric[k], 1e-6, 1e-7, `input ${k}`);
    });
  });

  it('normalise as defined: unit RMS, zero mean and unit variance', () => {
    const c = makeCase('ln def', [2, 6], 3, 2);
    const ones = nd(new Array(6).fill(1), [6]);
    const zeros = nd(new Array(6).fill(0), [6]);
    const r = ref.rmsNorm(nd(c.x, c.shape), ones, 0);
    const l = ref.layerNorm(nd(c.x, c.shape), ones, zeros, 0);
    for (let row = 0; row < 2; row++) {
      const rr = r.data.slice(row * 6, row * 6 + 6);
      const lr = l.data.slice(row * 6, row * 6 + 6);
      expect(rr.reduce((a, v) => a + v * v, 0) / 6).toBeCloseTo(1, 12);
      expect(lr.reduce((a, v) => a + v, 0) / 6).toBeCloseTo(0, 12);
      expect(lr.reduce((a, v) => a + v * v, 0) / 6).toBeCloseTo(1, 12);
    }
  });
});

describe('rmsNorm on the GPU', () => {
  // [70, 4]: more rows than one weight-gradient chunk (64); [3, 1000]: rows longer than a workgroup.
  for (const shape of [
    [2, 3, 8],
    [3, 1000],
    [70, 4],
    [1, 1],
  ]) {
    it(`forward and backward match the twin for x ${JSON.stringify(shape)}`, async () => {
      await gpu();
      const c = makeCase(`rms ${shape}`, shape);
      const d = shape[shape.length - 1];
      const eps = 1e-5;
      const { out, grads } = await gpuRun(
        ([x, weight]) => rmsNorm(x, weight, eps),
        [
          { data: c.x, shape },
          { data: c.weight, shape: [d] },
        ],
        c.w,
      );
      const x = nd(c.x, shape);
      const weight = nd(c.weight, [d]);
      expectClose(out, ref.rmsNorm(x, weight, eps).data, 1e-4, 1e-5, 'out');
      const [dx, dw] = ref.rmsNormBackward(nd(c.w, shape), x, weight, eps);
      expectClose(grads[0], dx.data, 2e-4, 2e-5, 'dx');
      expectClose(grads[1], dw.data, 2e-4, 2e-5, 'dweight');
    });
  }

  it('uses the default eps 1e-6 and leaves no buffer behind', async () => {
    const ctx = await gpu();
    const start = ctx.pool.live;
    const c = makeCase('rms eps', [2, 4], 1e-4); // tiny values: eps matters
    const x = tensor(c.x, [2, 4]);
    const weight = tensor(c.weight, [4]);
    const out = rmsNorm(x, weight);
    expectClose(await out.toArray(), ref.rmsNorm(nd(c.x, [2, 4]), nd(c.weight, [4]), 1e-6).data, 1e-4, 1e-5);
    for (const t of [x, weight, out]) t.dispose();
    expect(ctx.pool.live).toBe(start);
  });
});

describe('layerNorm on the GPU', () => {
  for (const shape of [
    [2, 3, 8],
    [3, 1000],
    [70, 4],
    [1, 1],
  ]) {
    it(`forward and backward match the twin for x ${JSON.stringify(shape)}`, async () => {
      await gpu();
      // A large mean next to a small spread: a one-pass E[x^2] - E[x]^2 variance would fail here.
      const c = makeCase(`ln ${shape}`, shape, 1, 30);
      const d = shape[shape.length - 1];
      const eps = 1e-5;
      const { out, grads } = await gpuRun(
        ([x, weight, bias]) => layerNorm(x, weight, bias, eps),
        [
          { data: c.x, shape },
          { data: c.weight, shape: [d] },
          { data: c.bias, shape: [d] },
        ],
        c.w,
      );
      const x = nd(c.x, shape);
      const weight = nd(c.weight, [d]);
      const bias = nd(c.bias, [d]);
      expectClose(out, ref.layerNorm(x, weight, bias, eps).data, 1e-3, 1e-4, 'out');
      const [dx, dw, db] = ref.layerNormBackward(nd(c.w, shape), x, weight, bias, eps);
      expectClose(grads[0], dx.data, 2e-3, 2e-4, 'dx');
      expectClose(grads[1], dw.data, 1e-3, 1e-4, 'dweight');
      expectClose(grads[2], db.data, 1e-4, 1e-5, 'dbias');
    });
  }

  it('gives bit-identical gradients on every run (no atomics, fixed summation order)', async () => {
    await gpu();
    const c = makeCase('ln det', [150, 6]);
    const run = () =>
      gpuRun(
        ([x, weight, bias]) => layerNorm(x, weight, bias),
        [
          { data: c.x, shape: [150, 6] },
          { data: c.weight, shape: [6] },
          { data: c.bias, shape: [6] },
        ],
        c.w,
      );
    const a = await run();
    const b = await run();
    a.grads.forEach((g, k) => {
      expect(Array.from(g)).toEqual(Array.from(b.grads[k]));
    });
  });
});

describe('norm argument checks', () => {
  it('reject bad shapes, dtypes and eps, naming the op and the argument', async () => {
    await gpu();
    const x = tensor(new Float32Array(6), [2, 3]);
    const w3 = tensor(new Float32Array(3), [3]);
    const w4 = tensor(new Float32Array(4), [4]);
    const w2d = tensor(new Float32Array(3), [1, 3]);
    const scalar = tensor(1);
    const ints = tensor(new Int32Array(6), [2, 3]);
    expect(() => rmsNorm(x, w4)).toThrow(/rmsNorm: argument 'weight' has shape \[4\]; expected \[3\]/);
    expect(() => rmsNorm(x, w2d)).toThrow(/rmsNorm: argument 'weight' has shape \[1,3\]/);
    expect(() => rmsNorm(scalar, w3)).toThrow(/rmsNorm: argument 'x' has shape \[\]/);
    expect(() => rmsNorm(ints, w3)).toThrow(/rmsNorm: argument 'x' has dtype i32/);
    expect(() => rmsNorm(x, w3, -1)).toThrow(/rmsNorm: argument 'eps'/);
    expect(() => layerNorm(x, w3, w4)).toThrow(/layerNorm: argument 'bias' has shape \[4\]; expected \[3\]/);
    expect(() => layerNorm(x, w4, w3)).toThrow(/layerNorm: argument 'weight' has shape \[4\]/);
    expect(() => layerNorm(x, w3, w3, NaN)).toThrow(/layerNorm: argument 'eps'/);
    for (const t of [x, w3, w4, w2d, scalar, ints]) t.dispose();
  });
});
