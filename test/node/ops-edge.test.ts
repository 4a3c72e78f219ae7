/**
 * Edge cases of the core ops with hand-computed expectations (not taken from any implementation),
 * also checked against the float64 twin, and the errors that bad inputs must raise.
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import * as G from '../../src/index';
import { backward, liveBufferCount, readAll, scope, tensor, type Tensor } from '../../src/index';
import * as R from '../../src/reference/index';

/** Runs `body` in a scope and asserts that every GPU buffer it made was freed. */
async function leakFree(body: () => Promise<void>): Promise<void> {
  const before = liveBufferCount();
  await scope(body);
  expect(liveBufferCount(), 'GPU buffers still live after the scope').toBe(before);
}

/** Forward and gradient of `op` at `x` (f32, shape `shape`) for the loss sum(w * op(x)). */
async function forwardAndGrad(op: (t: Tensor) => Tensor, x: ArrayLike<number>, shape: number[], w: ArrayLike<number>) {
  const t = tensor(Float32Array.from(x), shape, { requiresGrad: true });
  const y = op(t);
  G.sum(G.mul(y, tensor(Float32Array.from(w), y.shape))).backward();
  const [out, grad] = await readAll([y, t.grad!]);
  return { out: Array.from(out), grad: Array.from(grad), outShape: [...y.shape] };
}

/** The name an op's errors use: its own. */
const opName = (name: string): string => name;

const allFinite = (v: ArrayLike<number>): boolean => Array.from(v).every(Number.isFinite);

describe('softmax / logSoftmax with logits of magnitude 1e4', () => {
  const cols = 300;
  const rng = new Rng('large logits');
  const rows: number[][] = [
    rng.uniforms(cols, -1e4, 1e4),
    new Array<number>(cols).fill(1e4), // all equal: exactly uniform
    new Array<number>(cols).fill(-1e4).map((v, i) => (i === 17 || i === 200 ? 1e4 : v)), // two tied maxima
    rng.uniforms(cols, 9990, 1e4), // all close to 1e4: many terms matter
    new Array<number>(cols).fill(-1e4).map((v, i) => (i === cols - 1 ? 1e4 : v)), // one-hot at the ragged end
  ];
  const x = Float32Array.from(rows.flat());
  const shape = [rows.length, cols];
  const w = Float32Array.from(rng.uniforms(x.length, -1, 1));
  const xs = R.ndarray(x, shape);
  const ws = R.ndarray(w, shape);

  it('softmax: finite, hand-checked rows, matches the twin forward and backward', async () => {
    await gpu();
    await leakFree(async () => {
      const { out, grad } = await forwardAndGrad(G.softmax, x, shape, w);
      expect(allFinite(out)).toBe(true);
      expect(allFinite(grad)).toBe(true);
      for (let c = 0; c < cols; c++) {
        expect(out[cols + c]).toBeCloseTo(1 / cols, 7);
        expect(out[2 * cols + c]).toBe(c === 17 || c === 200 ? 0.5 : 0);
        expect(out[4 * cols + c]).toBe(c === cols - 1 ? 1 : 0);
      }
      expectClose(out, R.softmax(xs).data, 1e-4, 1e-6, 'softmax');
      expectClose(grad, R.softmaxBackward(ws, xs)[0].data, 1e-4, 1e-6, 'softmax grad');
    });
  });

  it('logSoftmax: finite, hand-checked rows, matches the twin forward and backward', async () => {
    await gpu();
    await leakFree(async () => {
      const { out, grad } = await forwardAndGrad(G.logSoftmax, x, shape, w);
      expect(allFinite(out)).toBe(true);
      expect(allFinite(grad)).toBe(true);
      for (let c = 0; c < cols; c++) {
        expect(out[cols + c]).toBeCloseTo(-Math.log(cols), 5);
        // Non-maxima sit 2e4 below the max: log-probability -2e4 (minus log 2 for the tied row).
        expect(out[2 * cols + c]).toBeCloseTo(c === 17 || c === 200 ? -Math.LN2 : -2e4 - Math.LN2, 2);
        expect(out[4 * cols + c]).toBeCloseTo(c === cols - 1 ? 0 : -2e4, 2);
      }
      expectClose(out, R.logSoftmax(xs).data, 1e-4, 1e-5, 'logSoftmax');
      expectClose(grad, R.logSoftmaxBackward(ws, xs)[0].data, 1e-4, 1e-5, 'logSoftmax grad');
    });
  });
});

describe('reductions over rows that are not a multiple of 256', () => {
  // Row 0 = 1..999, row 1 = -(1..999): integer sums below 2^24 are exact in f32.
  const n = 999;
  const x = [...Array.from({ length: n }, (_, i) => i + 1), ...Array.from({ length: n }, (_, i) => -(i + 1))];

  it('sum / mean / max over the last axis give the closed forms', async () => {
    await gpu();
    await leakFree(async () => {
      const t = tensor(x, [2, n]);
      const [s, m, mx, sAll, mxAll] = await readAll([G.sum(t, -1), G.mean(t, -1), G.max(t, -1), G.sum(t), G.max(t)]);
      expect(Array.from(s)).toEqual([(n * (n + 1)) / 2, -(n * (n + 1)) / 2]);
      expectClose(m, [(n + 1) / 2, -(n + 1) / 2], 1e-6, 0, 'mean');
      expect(Array.from(mx)).toEqual([n, -1]);
      expect(Array.from(sAll)).toEqual([0]);
      expect(Array.from(mxAll)).toEqual([n]);
    });
  });

  it("max's gradient lands on the last element of a ragged row, mean's is 1/n everywhere", async () => {
    await gpu();
    await leakFree(async () => {
      const { grad } = await forwardAndGrad((t) => G.max(t, -1), x, [2, n], [2, -3]);
      const expected = new Array<number>(2 * n).fill(0);
      expected[n - 1] = 2; // row 0: max n at the last column
      expected[n] = -3; // row 1: max -1 at the first column
      expect(grad).toEqual(expected);
      expect(R.maxBackward(R.ndarray([2, -3], [2]), R.ndarray(x, [2, n]), -1)[0].data).toEqual(Float64Array.from(expected));
      const mean = await forwardAndGrad((t) => G.mean(t, -1), x, [2, n], [2, -3]);
      expectClose(mean.grad, [...new Array<number>(n).fill(2 / n), ...new Array<number>(n).fill(-3 / n)], 1e-6, 0, 'mean grad');
    });
  });
});

describe('max ties: the gradient goes to the FIRST maximum', () => {
  const cases: { name: string; x: number[]; shape: number[]; axis?: number; w: number[]; first: number[] }[] = [
    { name: 'short rows', x: [1, 5, 5, 2, 5, -3, -3, -3, -3, -3], shape: [2, 5], axis: -1, w: [2, -3], first: [1, 0] },
    (() => {
      // Ties at columns 300 and 520 of a 1000-wide row: 520 sits in a lower thread (520 % 256 = 8)
      // than 300 (44), so a tie broken by thread order instead of index would pick 520.
      const x = new Array<number>(1000).fill(0.5);
      x[300] = 2;
      x[520] = 2;
      return { name: 'ties in different threads of one row', x, shape: [1, 1000], axis: -1, w: [1.5], first: [300] };
    })(),
    { name: 'an all-equal row', x: new Array<number>(1000).fill(7), shape: [1000], axis: -1, w: [-2], first: [0] },
    (() => {
      // Over all 5000 elements (5 partial workgroups, interleaved by 1280): 4100 is in partial 1,
      // 1800 in partial 2, 2500 in partial 4; the first index, 1800, must win.
      const x = new Rng('max ties all').uniforms(5000, -1, 1);
      x[4100] = 3;
      x[1800] = 3;
      x[2500] = 3;
      return { name: 'ties in different partial workgroups (all elements)', x, shape: [50, 100], w: [0.75], first: [1800] };
    })(),
  ];

  for (const c of cases) {
    it(c.name, async () => {
      await gpu();
      const expected = new Array<number>(c.x.length).fill(0);
      const cols = c.axis === undefined ? c.x.length : c.shape[c.shape.length - 1];
      c.first.forEach((col, r) => {
        expected[r * cols + col] = c.w[r];
      });
      // The twin agrees with the hand-written answer...
      const twin = R.maxBackward(R.ndarray(c.w, c.axis === undefined ? [] : c.shape.slice(0, -1)), R.ndarray(c.x, c.shape), c.axis)[0];
      expect(Array.from(twin.data)).toEqual(expected);
      // ...and so does the GPU.
      await leakFree(async () => {
        const { grad, out } = await forwardAndGrad((t) => G.max(t, c.axis), c.x, c.shape, c.w);
        expect(out).toEqual(c.first.map((col, r) => Math.fround(c.x[r * cols + col])));
        expect(grad).toEqual(expected);
      });
    });
  }
});

describe('gather with repeated and out-of-range ids', () => {
  const table = [1, 2, 3, 10, 20, 30, 100, 200, 300, -1, -2, -3]; // [4, 3]
  const ids = [2, 0, 2, 2, 3, 1, 2]; // 2 four times
  const w = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]; // [7, 3]
  // Hand-computed: rows 2,0,2,2,3,1,2 of the table; d table[2] = w rows 0+2+3+6, d table[0] = w row 1, ...
  const expectedOut = [100, 200, 300, 1, 2, 3, 100, 200, 300, 100, 200, 300, -1, -2, -3, 10, 20, 30, 100, 200, 300];
  const expectedGrad = [4, 5, 6, 16, 17, 18, 1 + 7 + 10 + 19, 2 + 8 + 11 + 20, 3 + 9 + 12 + 21, 13, 14, 15];
  // 5 and -1 are out of range (PyTorch: an IndexError); the first is at flat index 4.
  const outOfRange = [2, 0, 2, 2, 5, -1, 2];

  it('the twin gives the hand-computed rows and scatter-added gradient, and names an id out of range', () => {
    const t = R.ndarray(table, [4, 3]);
    const i = R.ndarray(ids, [7]);
    expect(Array.from(R.gather(t, i).data)).toEqual(expectedOut);
    expect(Array.from(R.gatherBackward(R.ndarray(w, [7, 3]), t, i)[0].data)).toEqual(expectedGrad);
    expect(() => R.gather(t, R.ndarray(outOfRange, [7]))).toThrow(/gather: id 5 at flat index 4 is outside the table \[0, 4\)/);
  });

  for (const dtype of ['i32', 'u32'] as const) {
    it(`the GPU gives the same with ${dtype} ids, and an id out of range fails the next readback`, async () => {
      await gpu();
      await leakFree(async () => {
        const idsT = tensor(dtype === 'i32' ? Int32Array.from(ids) : Uint32Array.from(ids), [7]);
        const { out, grad, outShape } = await forwardAndGrad((t) => G.gather(t, idsT), table, [4, 3], w);
        expect(outShape).toEqual([7, 3]);
        expect(out).toEqual(expectedOut);
        expect(grad).toEqual(expectedGrad);
        const bad = tensor(dtype === 'i32' ? Int32Array.from(outOfRange) : Uint32Array.from(outOfRange), [7]);
        await expect(readAll([G.gather(tensor(table, [4, 3]), bad)])).rejects.toThrow(
          /gather: 2 id\(s\) of an ids tensor lay outside the table \(the first at flat index 4 of its ids\)/,
        );
      });
    });
  }
});

describe('unary ops at extreme and special inputs', () => {
  const big = [-100, -50, -20, -9, -1e-3, 0, 1e-3, 9, 20, 50, 100];
  const w = big.map((_, i) => (i % 3) - 1.25);
  const cases: [string, (t: Tensor) => Tensor, (x: R.NDArray) => R.NDArray, (g: R.NDArray, x: R.NDArray) => [R.NDArray]][] = [
    ['tanh', G.tanh, R.tanh, R.tanhBackward],
    ['geluTanh', G.geluTanh, R.geluTanh, R.geluTanhBackward],
    ['silu', G.silu, R.silu, R.siluBackward],
  ];
  for (const [name, op, ref, back] of cases) {
    it(`${name} saturates without NaN or Infinity for |x| up to 100`, async () => {
      await gpu();
      await leakFree(async () => {
        const { out, grad } = await forwardAndGrad(op, big, [big.length], w);
        expect(allFinite(out), `${name}: ${out}`).toBe(true);
        expect(allFinite(grad), `${name} grad: ${grad}`).toBe(true);
        const xs = R.ndarray(Float32Array.from(big));
        expectClose(out, ref(xs).data, 1e-4, 1e-5, name);
        expectClose(grad, back(R.ndarray(Float32Array.from(w)), xs)[0].data, 1e-4, 1e-5, `${name} grad`);
      });
    });
  }

  it("abs'(0) = 0 and relu'(0) = 0 (on the GPU and in the twin)", async () => {
    await gpu();
    const x = [-1.5, 0, 2];
    const w = [3, 5, 7];
    // abs' = sign: [-1, 0, 1]; relu' = [0, 0, 1]
    const absGrad = [-3, 0, 7];
    const reluGrad = [0, 0, 7];
    expect(Array.from(R.absBackward(R.ndarray(w), R.ndarray(x))[0].data)).toEqual(absGrad);
    expect(Array.from(R.reluBackward(R.ndarray(w), R.ndarray(x))[0].data)).toEqual(reluGrad);
    await leakFree(async () => {
      expect((await forwardAndGrad(G.abs, x, [3], w)).grad).toEqual(absGrad);
      expect((await forwardAndGrad(G.relu, x, [3], w)).grad).toEqual(reluGrad);
      expect((await forwardAndGrad(G.relu, x, [3], w)).out).toEqual([0, 0, 2]);
    });
  });

  // x^p and d/dx (weights 1) at x = -2, -0.5, 0, 3, by hand.
  const x = [-2, -0.5, 0, 3];
  const powCases: [number, number[], number[]][] = [
    [3, [-8, -0.125, 0, 27], [12, 0.75, 0, 27]],
    [2, [4, 0.25, 0, 9], [-4, -1, 0, 6]],
    [1, [-2, -0.5, 0, 3], [1, 1, 1, 1]],
    [0, [1, 1, 1, 1], [0, 0, 0, 0]],
    [-1, [-0.5, -2, Infinity, 1 / 3], [-0.25, -4, NaN, -1 / 9]], // d/dx at 0 is not checked (a pole)
    [-2, [0.25, 4, Infinity, 1 / 9], [0.25, 16, NaN, -2 / 27]],
  ];
  for (const [p, value, slope] of powCases) {
    it(`pow(x, ${p}) at negative bases and 0`, async () => {
      await gpu();
      const ones = [1, 1, 1, 1];
      // Relative 1e-5: the GPU computes |x|^p as exp2(p log2|x|), a few f32 roundings.
      const near = (got: number, want: number, what: string) => {
        if (!Number.isFinite(want)) expect(got, what).toBe(want);
        else expect(Math.abs(got - want), `${what}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
      };
      const check = (out: ArrayLike<number>, grad: ArrayLike<number>, who: string) => {
        value.forEach((v, i) => {
          near(out[i], v, `${who} pow(${x[i]}, ${p})`);
        });
        slope.forEach((d, i) => {
          if (!Number.isNaN(d)) near(grad[i], d, `${who} d/dx pow(${x[i]}, ${p})`);
        });
      };
      check(R.pow(R.ndarray(x), p).data, R.powBackward(R.ndarray(ones), R.ndarray(x), p)[0].data, 'twin');
      await leakFree(async () => {
        const { out, grad } = await forwardAndGrad((t) => G.pow(t, p), x, [4], ones);
        check(out, grad, 'GPU');
      });
    });
  }
});

describe('the same tensor as both operands', () => {
  const x = [0.5, -1.25, 2];
  const w = [1, -2, 0.5];
  const cases: [string, (a: Tensor, b: Tensor) => Tensor, (v: number, wi: number) => number][] = [
    ['add(x, x)', G.add, (_v, wi) => 2 * wi],
    ['sub(x, x)', G.sub, () => 0],
    ['mul(x, x)', G.mul, (v, wi) => 2 * v * wi],
    ['div(x, x)', G.div, () => 0],
  ];
  for (const [name, op, grad] of cases) {
    it(`${name} accumulates both gradients into x`, async () => {
      await gpu();
      await leakFree(async () => {
        const r = await forwardAndGrad((t) => op(t, t), x, [3], w);
        expectClose(
          r.grad,
          x.map((v, i) => grad(v, w[i])),
          1e-6,
          1e-7,
          name,
        );
      });
    });
  }
});

describe('bad inputs raise errors naming the op and the shapes', () => {
  it('add / sub / mul / div / where with shapes that do not broadcast', async () => {
    await gpu();
    scope(() => {
      const a = tensor(new Float32Array(6), [2, 3]);
      const b = tensor(new Float32Array(4), [4]);
      for (const [name, op] of [
        ['add', G.add],
        ['sub', G.sub],
        ['mul', G.mul],
        ['div', G.div],
      ] as const) {
        expect(() => op(a, b)).toThrow(new RegExp(`^${name}: .*\\[2,3\\].*\\[4\\]`));
      }
      expect(() => G.where(tensor([1, 0, 1, 0], [4]), a, a)).toThrow(/^where: .*\[4\].*\[2,3\]/);
      // The twin rejects them too, with the same names.
      expect(() => R.add(R.zeros([2, 3]), R.zeros([4]))).toThrow(/^add: .*\[2,3\].*\[4\]/);
    });
  });

  it('an i32 tensor into a float op names the op, the argument and the dtype', async () => {
    await gpu();
    scope(() => {
      const i = tensor(Int32Array.from([1, 2, 3]), [3]);
      const f = tensor([1, 2, 3], [3]);
      expect(() => G.exp(i)).toThrow(/^exp: argument 'x' has dtype i32; expected f32/);
      const unary: [string, (t: Tensor) => Tensor][] = [
        ['neg', G.neg],
        ['log', G.log],
        ['sqrt', G.sqrt],
        ['tanh', G.tanh],
        ['abs', G.abs],
        ['silu', G.silu],
        ['geluTanh', G.geluTanh],
        ['relu', G.relu],
        ['clone', G.clone],
        ['softmax', G.softmax],
        ['logSoftmax', G.logSoftmax],
        ['sum', (t) => G.sum(t)],
        ['mean', (t) => G.mean(t)],
        ['max', (t) => G.max(t)],
      ];
      for (const [name, op] of unary) expect(() => op(i), name).toThrow(new RegExp(`^${opName(name)}: .*i32`));
      expect(() => G.pow(i, 2)).toThrow(/^pow: .*i32/);
      expect(() => G.scale(i, 2)).toThrow(/^scale: .*i32/);
      expect(() => G.add(f, i)).toThrow(/^add: argument 'b' has dtype i32/);
      const i2 = tensor(Int32Array.from([1, 2, 3, 4]), [2, 2]);
      expect(() => G.matmul(i2, tensor([1, 2, 3, 4], [2, 2]))).toThrow(/^matmul: argument 'a' has dtype i32/);
      expect(() => G.gather(tensor([1, 2, 3, 4], [2, 2]), f)).toThrow(/^gather: argument 'ids' has dtype f32/);
    });
  });

  it('matmul with inner dimensions that differ', async () => {
    await gpu();
    scope(() => {
      const a = tensor(new Float32Array(6), [2, 3]);
      const b = tensor(new Float32Array(20), [4, 5]);
      expect(() => G.matmul(a, b)).toThrow(/^matmul: a \[2,3\] @ b \[4,5\]: inner dimensions differ \(3 vs 4\)/);
      expect(() => G.matmul(a, b, { transposeA: true, transposeB: true })).toThrow(
        /^matmul: .*\[2,3\].*\[4,5\].*inner dimensions differ \(2 vs 5\)/,
      );
      const a3 = tensor(new Float32Array(2 * 2 * 3), [2, 2, 3]);
      const b3 = tensor(new Float32Array(3 * 3 * 5), [3, 3, 5]);
      expect(() => G.matmul(a3, b3)).toThrow(/^matmul: .*\[2,2,3\].*\[3,3,5\].*batch shapes differ/);
      expect(() => R.matmul(R.zeros([2, 3]), R.zeros([4, 5]))).toThrow(/^matmul: .*\[2,3\].*\[4,5\].*inner dimensions differ \(3 vs 4\)/);
    });
  });

  it('reshape to a wrong element count', async () => {
    await gpu();
    scope(() => {
      const x = tensor(new Float32Array(6), [2, 3]);
      expect(() => G.reshape(x, [4])).toThrow(/^reshape: cannot view \[2,3\] \(6 elements\) as \[4\]/);
      expect(() => G.reshape(x, [4, -1])).toThrow(/^reshape: cannot view \[2,3\] \(6 elements\) as \[4,-1\]/);
      expect(() => G.reshape(x, [-1, -1])).toThrow(/^reshape: invalid shape \[-1,-1\]/);
      expect(() => R.reshape(R.zeros([2, 3]), [4])).toThrow(/^reshape: cannot view \[2,3\] \(6 elements\) as \[4\]/);
    });
  });

  it('other shape errors: expand, permute, reductions over a middle axis, softmax of a scalar, gather of a 1-D table', async () => {
    await gpu();
    scope(() => {
      const x = tensor(new Float32Array(6), [2, 3]);
      expect(() => G.expand(x, [3, 3])).toThrow(/^expand: .*\[2,3\].*\[3,3\]/);
      expect(() => G.permute(x, [0, 0])).toThrow(/^permute: \[0,0\] is not a permutation of the 2 axes of \[2,3\]/);
      expect(() => G.sum(x, 0)).toThrow(/^sum: .*axis 0 for \[2,3\]/);
      expect(() => G.max(x, 2)).toThrow(/^max: axis 2 is out of range for rank 2/);
      expect(() => G.softmax(tensor(1))).toThrow(/^softmax: needs rank >= 1, got \[\]/);
      expect(() => G.gather(tensor([1, 2, 3]), tensor(Int32Array.from([0])))).toThrow(
        /^gather: argument 'table' must be 2-D \[V, d\], got \[3\]/,
      );
    });
  });

  it('backward() on a non-scalar without a seed', async () => {
    await gpu();
    await leakFree(async () => {
      const x = tensor(new Float32Array(6), [2, 3], { requiresGrad: true });
      const y = G.exp(x);
      expect(() => y.backward()).toThrow(/^backward: output has shape \[2,3\]; without a seed gradient backward\(\) needs a scalar/);
      expect(() => backward(y, tensor(new Float32Array(3), [3]))).toThrow(
        /^backward: seed shape \[3\] must equal the output shape \[2,3\]/,
      );
      expect(x.grad).toBeNull();
      // With a seed of the right shape it works: d exp(x) = exp(0) = 1 times the seed.
      y.backward(tensor([1, 2, 3, 4, 5, 6], [2, 3]));
      expect(Array.from(await x.grad!.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    });
  });

  describe('any op on a disposed tensor says "used after dispose" and names the op', () => {
    const ops: [string, (d: Tensor, live: Tensor) => unknown][] = [
      ['neg', (d) => G.neg(d)],
      ['exp', (d) => G.exp(d)],
      ['log', (d) => G.log(d)],
      ['sqrt', (d) => G.sqrt(d)],
      ['tanh', (d) => G.tanh(d)],
      ['abs', (d) => G.abs(d)],
      ['pow', (d) => G.pow(d, 2)],
      ['silu', (d) => G.silu(d)],
      ['geluTanh', (d) => G.geluTanh(d)],
      ['relu', (d) => G.relu(d)],
      ['scale', (d) => G.scale(d, 2, 1)],
      ['clone', (d) => G.clone(d)],
      ['add', (d, l) => G.add(l, d)],
      ['sub', (d, l) => G.sub(d, l)],
      ['mul', (d, l) => G.mul(l, d)],
      ['div', (d, l) => G.div(d, l)],
      ['where', (d, l) => G.where(l, d, l)],
      ['expand', (d) => G.expand(d, [4, 2, 3])],
      ['permute', (d) => G.permute(d, [1, 0])],
      ['reshape', (d) => G.reshape(d, [3, 2])],
      ['sum', (d) => G.sum(d, -1)],
      ['mean', (d) => G.mean(d)],
      ['max', (d) => G.max(d, -1, { keepDim: true })],
      ['matmul', (d, l) => G.matmul(l, d, { transposeB: true })],
      ['softmax', (d) => G.softmax(d)],
      ['logSoftmax', (d) => G.logSoftmax(d)],
      ['gather', (d) => G.gather(d, tensor(Int32Array.from([0, 1])))],
      ['toArray', (d) => d.toArray()],
      ['backward', (d) => d.backward()],
    ];
    for (const [name, op] of ops) {
      it(name, async () => {
        await gpu();
        await leakFree(async () => {
          const live = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
          const dead = tensor([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
          dead.dispose();
          expect(dead.disposed).toBe(true);
          let error: unknown = null;
          try {
            await op(dead, live);
          } catch (e) {
            error = e;
          }
          expect(error).toBeInstanceOf(Error);
          expect((error as Error).message).toMatch(new RegExp(`^${opName(name)}\\b.*\\[2,3\\] was used after dispose\\(\\)`));
        });
      });
    }

    it('transpose (reported by permute, which it calls)', async () => {
      await gpu();
      const dead = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      dead.dispose();
      expect(() => G.transpose(dead)).toThrow(/^(transpose|permute)\b.*\[2,3\] was used after dispose\(\)/);
    });

    it('sumToShape', async () => {
      await gpu();
      const dead = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      dead.dispose();
      expect(() => G.sumToShape(dead, [3])).toThrow(/\[2,3\] was used after dispose\(\)/);
    });
  });
});
