/**
 * Every core op against its float64 twin (`src/reference/ops.ts`), three ways per case:
 *  1. GPU forward vs the twin's forward on the same (f32-rounded) inputs;
 *  2. GPU backward (autograd, through `sum(mul(out, w))` with random weights w) vs the twin's
 *     backward given w, which is exactly the gradient of that loss with respect to `out`;
 *  3. the twin's backward vs central finite differences of the twin's forward, in float64.
 * (3) makes the twin trustworthy on its own, so (1) and (2) test the GPU against a known-good
 * answer. Sizes are small but odd (not multiples of the 256-thread workgroups or 64-wide tiles).
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import * as G from '../../src/index';
import { liveBufferCount, readAll, scope, tensor, type Tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import type { NDArray } from '../../src/reference/index';

type DT = 'f32' | 'i32' | 'u32';

/** One input of a case: its shapes and how to draw its values. */
interface ArgSpec {
  /** Shape in the GPU tests. */
  shape: number[];
  /** Smaller shape for the finite-difference check, whose cost is quadratic (default: `shape`). */
  fdShape?: number[];
  gen: (rng: Rng, n: number) => number[];
  dtype?: DT;
  /** Whether the input is differentiated (default: f32 inputs are). */
  grad?: boolean;
}

interface Tol {
  rtol: number;
  atol: number;
}

/** The tolerance of a single f32 rounding chain of a few operations (the brief's default). */
const F32: Tol = { rtol: 1e-4, atol: 1e-5 };

interface OpCase {
  name: string;
  args: ArgSpec[];
  gpu: (t: Tensor[]) => Tensor;
  ref: (x: NDArray[]) => NDArray;
  /** Gradients aligned with `args` (null where an input is not differentiated). */
  back: (g: NDArray, x: NDArray[]) => (NDArray | null)[];
  tol?: Tol;
  gradTol?: Tol;
  /** Why the GPU backward is not tested through autograd (the op is not recorded), if so. */
  noAutograd?: string;
}

const isGrad = (a: ArgSpec): boolean => a.grad ?? (a.dtype ?? 'f32') === 'f32';

// Value generators.
const U = (lo: number, hi: number) => (rng: Rng, n: number) => rng.uniforms(n, lo, hi);
/** Magnitudes in [lo, hi) with random signs: keeps clear of kinks (abs, relu) and poles (div, pow < 0). */
const S = (lo: number, hi: number) => (rng: Rng, n: number) => rng.signed(n, lo, hi);
const N = (std: number) => (rng: Rng, n: number) => rng.normals(n, std);
const INTS = (lo: number, hi: number) => (rng: Rng, n: number) => rng.ints(n, lo, hi);
const PICK = (values: number[]) => (rng: Rng, n: number) => rng.ints(n, 0, values.length).map((i) => values[i]);

interface Input {
  shape: number[];
  values: Float32Array | Int32Array | Uint32Array | Float64Array;
  dtype: DT;
}

function makeInputs(specs: ArgSpec[], rng: Rng, forFd: boolean): Input[] {
  return specs.map((spec) => {
    const shape = forFd ? (spec.fdShape ?? spec.shape) : spec.shape;
    const raw = spec.gen(rng, R.sizeOf(shape));
    const dtype = spec.dtype ?? 'f32';
    let values: Input['values'];
    if (dtype === 'i32') values = Int32Array.from(raw);
    else if (dtype === 'u32') values = Uint32Array.from(raw);
    // The GPU tests feed the twin the f32-rounded values the GPU really holds.
    else values = forFd ? Float64Array.from(raw) : Float32Array.from(raw);
    return { shape, values, dtype };
  });
}

const toNd = (inputs: Input[]): NDArray[] => inputs.map((i) => R.ndarray(i.values, i.shape));

function upload(inputs: Input[], specs: ArgSpec[], withGrad: boolean): Tensor[] {
  return inputs.map((i, k) => {
    const data = i.values instanceof Float64Array ? Float32Array.from(i.values) : i.values;
    return tensor(data, i.shape, { dtype: i.dtype, requiresGrad: withGrad && isGrad(specs[k]) });
  });
}

/** Runs `body` in a scope and asserts that every GPU buffer it made was freed. */
async function leakFree(body: () => Promise<void>): Promise<void> {
  const before = liveBufferCount();
  await scope(body);
  expect(liveBufferCount(), 'GPU buffers still live after the scope').toBe(before);
}

async function checkForward(c: OpCase): Promise<void> {
  await gpu();
  const inputs = makeInputs(c.args, new Rng(`${c.name}/gpu`), false);
  const expected = c.ref(toNd(inputs));
  await leakFree(async () => {
    const out = c.gpu(upload(inputs, c.args, false));
    expect(out.shape).toEqual(expected.shape);
    const tol = c.tol ?? F32;
    expectClose(await out.toArray(), expected.data, tol.rtol, tol.atol, `${c.name} forward`);
  });
}

async function checkBackward(c: OpCase): Promise<void> {
  await gpu();
  const rng = new Rng(`${c.name}/gpu`);
  const inputs = makeInputs(c.args, rng, false);
  const xs = toNd(inputs);
  const outShape = c.ref(xs).shape;
  const w = Float32Array.from(rng.uniforms(R.sizeOf(outShape), -1, 1));
  const expected = c.back(R.ndarray(w, outShape), xs);
  await leakFree(async () => {
    const ts = upload(inputs, c.args, true);
    const out = c.gpu(ts);
    G.sum(G.mul(out, tensor(w, outShape))).backward();
    const wanted = ts.filter((_, k) => isGrad(c.args[k]));
    for (const [k, t] of ts.entries()) {
      if (isGrad(c.args[k])) expect(t.grad, `input ${k} has a gradient`).not.toBeNull();
      else expect(t.grad, `input ${k} (not differentiable) has no gradient`).toBeNull();
    }
    const got = await readAll(wanted.map((t) => t.grad!));
    const tol = c.gradTol ?? c.tol ?? F32;
    let j = 0;
    for (const [k, t] of ts.entries()) {
      if (!isGrad(c.args[k])) continue;
      expect(t.grad!.shape).toEqual(t.shape);
      expectClose(got[j++], expected[k]!.data, tol.rtol, tol.atol, `${c.name} d/d(input ${k})`);
    }
  });
}

/**
 * Central differences of L(x) = sum(w * f(x)) in float64. Only the difference f(x+h) - f(x-h) is
 * weighted and summed, so outputs that do not depend on the perturbed element cancel exactly and
 * the rounding error stays ~eps * |f| / h (about 1e-11 relative), far below the tolerance.
 */
function checkFiniteDifferences(c: OpCase): void {
  const rng = new Rng(`${c.name}/fd`);
  const xs = toNd(makeInputs(c.args, rng, true));
  const out = c.ref(xs);
  const w = R.ndarray(rng.uniforms(out.data.length, -1, 1), out.shape);
  const grads = c.back(w, xs);
  expect(grads.length).toBe(xs.length);
  xs.forEach((x, k) => {
    if (!isGrad(c.args[k])) {
      expect(grads[k]).toBeNull();
      return;
    }
    const gk = grads[k];
    expect(gk).not.toBeNull();
    expect(gk!.shape).toEqual(x.shape);
    const numeric = new Float64Array(x.data.length);
    for (let i = 0; i < x.data.length; i++) {
      const v = x.data[i];
      const h = 1e-5 * Math.max(1, Math.abs(v));
      const up = v + h;
      const down = v - h;
      x.data[i] = up;
      const fUp = c.ref(xs).data;
      x.data[i] = down;
      const fDown = c.ref(xs).data;
      x.data[i] = v;
      let s = 0;
      for (let j = 0; j < fUp.length; j++) s += w.data[j] * (fUp[j] - fDown[j]);
      numeric[i] = s / (up - down);
    }
    expectClose(gk!.data, numeric, 1e-6, 1e-8, `${c.name} d/d(input ${k}) vs finite differences`);
  });
}

function defineCases(group: string, cases: OpCase[]): void {
  describe(group, () => {
    for (const c of cases) {
      describe(c.name, () => {
        it('GPU forward matches the float64 twin', () => checkForward(c));
        if (!c.noAutograd) it('GPU backward matches the twin backward', () => checkBackward(c));
        it('twin backward matches central finite differences', () => checkFiniteDifferences(c));
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Unary maps: [7, 131] = 917 elements (not a multiple of 256); [3, 7] for finite differences.
// ---------------------------------------------------------------------------------------------

const UNARY_SHAPE = [7, 131];
const UNARY_FD = [3, 7];

function unaryCase(
  name: string,
  gen: ArgSpec['gen'],
  gpuOp: (x: Tensor) => Tensor,
  ref: (x: NDArray) => NDArray,
  back: (g: NDArray, x: NDArray) => [NDArray],
  tol?: Tol,
): OpCase {
  return {
    name,
    args: [{ shape: UNARY_SHAPE, fdShape: UNARY_FD, gen }],
    gpu: ([x]) => gpuOp(x),
    ref: ([x]) => ref(x),
    back: (g, [x]) => back(g, x),
    tol,
  };
}

defineCases('unary ops', [
  unaryCase('neg', U(-3, 3), G.neg, R.neg, R.negBackward),
  unaryCase('exp', U(-4, 4), G.exp, R.exp, R.expBackward),
  unaryCase('log', U(0.05, 5), G.log, R.log, R.logBackward),
  unaryCase('sqrt', U(0.05, 5), G.sqrt, R.sqrt, R.sqrtBackward),
  unaryCase('tanh', U(-4, 4), G.tanh, R.tanh, R.tanhBackward),
  unaryCase('abs', S(0.01, 3), G.abs, R.abs, R.absBackward),
  unaryCase(
    'pow(x, 3) with negative bases',
    S(0.1, 2),
    (x) => G.pow(x, 3),
    (x) => R.pow(x, 3),
    (g, x) => R.powBackward(g, x, 3),
  ),
  unaryCase(
    'pow(x, 2) with negative bases',
    S(0.1, 2),
    (x) => G.pow(x, 2),
    (x) => R.pow(x, 2),
    (g, x) => R.powBackward(g, x, 2),
  ),
  unaryCase(
    'pow(x, -1) with negative bases',
    S(0.25, 2),
    (x) => G.pow(x, -1),
    (x) => R.pow(x, -1),
    (g, x) => R.powBackward(g, x, -1),
  ),
  unaryCase(
    'pow(x, -2) with negative bases',
    S(0.25, 2),
    (x) => G.pow(x, -2),
    (x) => R.pow(x, -2),
    (g, x) => R.powBackward(g, x, -2),
  ),
  unaryCase(
    'pow(x, 0.5)',
    U(0.05, 4),
    (x) => G.pow(x, 0.5),
    (x) => R.pow(x, 0.5),
    (g, x) => R.powBackward(g, x, 0.5),
  ),
  unaryCase(
    'pow(x, 2.5)',
    U(0.05, 3),
    (x) => G.pow(x, 2.5),
    (x) => R.pow(x, 2.5),
    (g, x) => R.powBackward(g, x, 2.5),
  ),
  unaryCase(
    'pow(x, 0)',
    S(0.1, 2),
    (x) => G.pow(x, 0),
    (x) => R.pow(x, 0),
    (g, x) => R.powBackward(g, x, 0),
  ),
  unaryCase('silu', U(-6, 6), G.silu, R.silu, R.siluBackward),
  unaryCase('geluTanh', U(-5, 5), G.geluTanh, R.geluTanh, R.geluTanhBackward),
  unaryCase('relu', S(0.01, 3), G.relu, R.relu, R.reluBackward),
  unaryCase(
    'scale(x, -0.75, 0.5)',
    U(-3, 3),
    (x) => G.scale(x, -0.75, 0.5),
    (x) => R.scale(x, -0.75, 0.5),
    (g, x) => R.scaleBackward(g, x, -0.75, 0.5),
  ),
  unaryCase('clone', U(-3, 3), G.clone, R.clone, R.cloneBackward),
  unaryCase(
    'sigmoidRange(x, 1e-4, 2)',
    U(-8, 8),
    (x) => G.sigmoidRange(x, 1e-4, 2),
    (x) => R.sigmoidRange(x, 1e-4, 2),
    (g, x) => R.sigmoidRangeBackward(g, x, 1e-4, 2),
  ),
]);

// ---------------------------------------------------------------------------------------------
// Binary arithmetic with broadcasting, and where
// ---------------------------------------------------------------------------------------------

type GpuBinary = (a: Tensor, b: Tensor) => Tensor;
type RefBinary = (a: NDArray, b: NDArray) => NDArray;
type RefBinaryBack = (g: NDArray, a: NDArray, b: NDArray) => [NDArray, NDArray];

const BINARY: [string, GpuBinary, RefBinary, RefBinaryBack][] = [
  ['add', G.add, R.add, R.addBackward],
  ['sub', G.sub, R.sub, R.subBackward],
  ['mul', G.mul, R.mul, R.mulBackward],
  ['div', G.div, R.div, R.divBackward],
];

/** [a shape, a fd shape, b shape, b fd shape]: same shape, rank-3 two-sided broadcast, a row vector, a scalar. */
const BINARY_SHAPES: [number[], number[], number[], number[]][] = [
  [
    [33, 31],
    [3, 4],
    [33, 31],
    [3, 4],
  ],
  [
    [2, 1, 5],
    [2, 1, 5],
    [3, 1],
    [3, 1],
  ],
  [[3, 4, 67], [2, 3, 5], [67], [5]],
  [[], [], [17, 13], [3, 4]],
  [
    [6, 1],
    [4, 1],
    [1, 1, 1, 19],
    [1, 1, 1, 3],
  ],
];

const fmt = (s: number[]): string => `[${s.join(',')}]`;

defineCases(
  'binary ops (broadcasting)',
  BINARY.flatMap(([name, gpuOp, ref, back]) =>
    BINARY_SHAPES.map(
      ([as, afd, bs, bfd]): OpCase => ({
        name: `${name} ${fmt(as)} with ${fmt(bs)}`,
        args: [
          { shape: as, fdShape: afd, gen: U(-2, 2) },
          // Divisors stay away from 0, where a / b and its gradient blow up.
          { shape: bs, fdShape: bfd, gen: name === 'div' ? S(0.5, 2) : U(-2, 2) },
        ],
        gpu: ([a, b]) => gpuOp(a, b),
        ref: ([a, b]) => ref(a, b),
        back: (g, [a, b]) => back(g, a, b),
      }),
    ),
  ),
);

/** Conditions mixing zero, one, other nonzero values and a negative zero (false, as 0 == -0). */
const COND_F32 = PICK([0, 1, -2.5, -0, 0.001]);

defineCases('where', [
  {
    name: 'where f32 cond [2,1,5], a [3,1], b [5]',
    args: [
      { shape: [2, 1, 5], gen: COND_F32, grad: false },
      { shape: [3, 1], gen: U(-2, 2) },
      { shape: [5], gen: U(-2, 2) },
    ],
    gpu: ([c, a, b]) => G.where(c, a, b),
    ref: ([c, a, b]) => R.where(c, a, b),
    back: (g, [c, a, b]) => [null, ...R.whereBackward(g, c, a, b)],
  },
  {
    name: 'where i32 cond, all [33,31]',
    args: [
      { shape: [33, 31], fdShape: [3, 4], gen: PICK([0, 1, -7]), dtype: 'i32' },
      { shape: [33, 31], fdShape: [3, 4], gen: U(-2, 2) },
      { shape: [33, 31], fdShape: [3, 4], gen: U(-2, 2) },
    ],
    gpu: ([c, a, b]) => G.where(c, a, b),
    ref: ([c, a, b]) => R.where(c, a, b),
    back: (g, [c, a, b]) => [null, ...R.whereBackward(g, c, a, b)],
  },
  {
    name: 'where u32 cond [37], a [4,37], b []',
    args: [
      { shape: [37], fdShape: [5], gen: PICK([0, 1, 0xffffffff]), dtype: 'u32' },
      { shape: [4, 37], fdShape: [2, 5], gen: U(-2, 2) },
      { shape: [], gen: U(-2, 2) },
    ],
    gpu: ([c, a, b]) => G.where(c, a, b),
    ref: ([c, a, b]) => R.where(c, a, b),
    back: (g, [c, a, b]) => [null, ...R.whereBackward(g, c, a, b)],
  },
]);

// ---------------------------------------------------------------------------------------------
// Layout: expand, permute, transpose, reshape; and sumToShape
// ---------------------------------------------------------------------------------------------

/** A one-input case drawn from U(-2, 2); `fdShape` defaults to `shape`. */
function layoutCase(
  name: string,
  shape: number[],
  fdShape: number[] | undefined,
  ops: {
    gpu: (x: Tensor) => Tensor;
    ref: (x: NDArray) => NDArray;
    back: (g: NDArray, x: NDArray) => [NDArray];
  },
): OpCase {
  return {
    name,
    args: [{ shape, fdShape, gen: U(-2, 2) }],
    gpu: ([x]) => ops.gpu(x),
    ref: ([x]) => ops.ref(x),
    back: (g, [x]) => ops.back(g, x),
  };
}

/** expand to `target(x.shape)`, so that the finite-difference shape gets a matching target. */
const expandCase = (shape: number[], fdShape: number[] | undefined, target: (s: readonly number[]) => number[]): OpCase =>
  layoutCase(`expand ${fmt(shape)} to ${fmt(target(shape))}`, shape, fdShape, {
    gpu: (x) => G.expand(x, target(x.shape)),
    ref: (x) => R.expand(x, target(x.shape)),
    back: (g, x) => R.expandBackward(g, x, target(x.shape)),
  });

const permuteCase = (shape: number[], perm: number[]): OpCase =>
  layoutCase(`permute ${fmt(shape)} by ${fmt(perm)}`, shape, undefined, {
    gpu: (x) => G.permute(x, perm),
    ref: (x) => R.permute(x, perm),
    back: (g, x) => R.permuteBackward(g, x, perm),
  });

const transposeCase = (shape: number[], fdShape: number[] | undefined, dims: [number, number] = [-2, -1]): OpCase =>
  layoutCase(`transpose ${fmt(shape)} axes ${dims[0]} and ${dims[1]}`, shape, fdShape, {
    gpu: (x) => (dims[0] === -2 && dims[1] === -1 ? G.transpose(x) : G.transpose(x, ...dims)), // default arguments too
    ref: (x) => R.transpose(x, ...dims),
    back: (g, x) => R.transposeBackward(g, x, ...dims),
  });

const reshapeCase = (shape: number[], fdShape: number[] | undefined, to: number[]): OpCase =>
  layoutCase(`reshape ${fmt(shape)} to ${fmt(to)}`, shape, fdShape, {
    gpu: (x) => G.reshape(x, to),
    ref: (x) => R.reshape(x, to),
    back: (g, x) => R.reshapeBackward(g, x, to),
  });

defineCases('layout ops', [
  expandCase([3, 1, 5], undefined, () => [2, 3, 4, 5]),
  expandCase([67], [5], (s) => [3, ...s]),
  expandCase([], undefined, () => [2, 3]),
  permuteCase([3, 4, 5], [2, 0, 1]),
  permuteCase([2, 3, 4, 5], [1, 3, 0, 2]),
  transposeCase([37, 29], [3, 4]),
  transposeCase([3, 4, 5], undefined, [0, 2]),
  transposeCase([2, 3, 4], undefined, [-3, -2]),
  reshapeCase([6, 35], [3, 5], [5, -1, 3]),
  reshapeCase([2, 3, 4], undefined, [24]),
]);

// sumToShape is not recorded by autograd (it is the building block of backward rules), so only
// its forward runs on the GPU; the twin's backward (an expand) is still checked numerically.
function sumToShapeCase(from: number[], fdFrom: number[], to: number[]): OpCase {
  return {
    name: `sumToShape ${fmt(from)} to ${fmt(to)}`,
    args: [{ shape: from, fdShape: fdFrom, gen: U(-2, 2) }],
    gpu: ([x]) => G.sumToShape(x, to),
    ref: ([x]) => R.sumToShape(x, to),
    back: (g, [x]) => R.sumToShapeBackward(g, x, to),
    noAutograd: 'sumToShape is not recorded by autograd',
  };
}

defineCases('sumToShape', [
  sumToShapeCase([2, 3, 5], [2, 3, 5], [3, 1]),
  sumToShapeCase([4, 5, 67], [2, 5, 3], [5, 1]),
  sumToShapeCase([4, 5, 6], [2, 5, 6], [1, 5, 6]),
  sumToShapeCase([9, 37], [3, 4], []),
  sumToShapeCase([9, 37], [3, 4], [1, 1]),
  sumToShapeCase([7, 9], [7, 9], [7, 9]),
]);

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

/** max only compares and copies: bit-exact (a zero atol would make expectClose divide 0 by 0). */
const EXACT: Tol = { rtol: 0, atol: 1e-30 };

/**
 * f32 sums: each of the n roundings errs by <= eps |partial sum|, partial sums of n values in
 * [-1, 1] are ~sqrt(n), and the errors add like a random walk: ~sqrt(n) eps sqrt(n) = n eps =
 * 6e-8 n. Near-zero sums make rtol useless, so atol = 1e-7 n (1e-4 for a row of 1000, 4e-3 for
 * the 40200 elements of [200,201], whose sum is ~100).
 */
const sumTol = (n: number): Tol => ({ rtol: 1e-4, atol: Math.max(1e-5, 1e-7 * n) });

type GpuReduce = (x: Tensor, axis?: number, options?: { keepDim?: boolean }) => Tensor;
type RefReduce = (x: NDArray, axis?: number, options?: R.ReduceOptions) => NDArray;
type RefReduceBack = (g: NDArray, x: NDArray, axis?: number, options?: R.ReduceOptions) => [NDArray];

const REDUCE: [string, GpuReduce, RefReduce, RefReduceBack][] = [
  ['sum', G.sum, R.sum, R.sumBackward],
  ['mean', G.mean, R.mean, R.meanBackward],
  ['max', G.max, R.max, R.maxBackward],
];

/** [shape, fd shape, axis, keepDim] */
const REDUCE_SHAPES: [number[], number[], number | undefined, boolean][] = [
  [[3, 1000], [3, 7], -1, false],
  [[5, 257], [2, 5], -1, true],
  [[600, 3], [4, 3], -1, false], // more rows than the 512-workgroup grid: the row loop strides
  [[1000], [9], -1, false],
  [[2, 3, 77], [2, 3, 4], 2, true],
  [[37, 29], [3, 4], undefined, false],
  [[200, 201], [2, 3], undefined, true], // 40200 elements: several partial workgroups
  [[], [], undefined, false],
];

defineCases(
  'reductions',
  REDUCE.flatMap(([name, gpuOp, ref, back]) =>
    REDUCE_SHAPES.map(([shape, fdShape, axis, keepDim]): OpCase => {
      const n = axis === undefined ? R.sizeOf(shape) : shape[shape.length - 1];
      return {
        name: `${name} ${fmt(shape)} axis ${axis ?? 'all'}${keepDim ? ' keepDim' : ''}`,
        args: [{ shape, fdShape, gen: U(-1, 1) }],
        gpu: ([x]) => gpuOp(x, axis, { keepDim }),
        ref: ([x]) => ref(x, axis, { keepDim }),
        back: (g, [x]) => back(g, x, axis, { keepDim }),
        // max is exact (it only compares); sums and means round once per addition.
        tol: name === 'max' ? EXACT : sumTol(n),
        // Every backward is a broadcast (times 1/n for mean) or a select: one rounding at most.
        gradTol: F32,
      };
    }),
  ),
);

// ---------------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------------

/**
 * A dot product of K terms a b with a, b uniform in [-1, 1]: partial sums ~sqrt(K)/3, K roundings
 * of <= eps |partial| adding like a random walk, so ~K eps / 3 = 2e-8 K; near-zero outputs make
 * rtol useless, so atol = 4e-7 K (1.8e-5 for K = 45, 4e-4 for K = 1000), a 20x margin. `K` here is
 * the longest reduction of the forward (K) and the backward (N for dA, batch * M for a shared B).
 */
const dotTol = (K: number): Tol => ({ rtol: 1e-4, atol: Math.max(1e-5, 4e-7 * K) });

interface MatmulSpec {
  a: number[];
  aFd: number[];
  b: number[];
  bFd: number[];
  tA?: boolean;
  tB?: boolean;
  /** Longest reduction in the forward and the backward (sets the tolerance). */
  K: number;
}

function matmulCase(s: MatmulSpec): OpCase {
  const options = { transposeA: s.tA ?? false, transposeB: s.tB ?? false };
  const flags = `${s.tA ? ' transposeA' : ''}${s.tB ? ' transposeB' : ''}`;
  return {
    name: `matmul ${fmt(s.a)} @ ${fmt(s.b)}${flags}`,
    args: [
      { shape: s.a, fdShape: s.aFd, gen: U(-1, 1) },
      { shape: s.b, fdShape: s.bFd, gen: U(-1, 1) },
    ],
    gpu: ([a, b]) => G.matmul(a, b, options),
    ref: ([a, b]) => R.matmul(a, b, options),
    back: (g, [a, b]) => R.matmulBackward(g, a, b, options),
    tol: dotTol(s.K),
  };
}

defineCases('matmul', [
  // M=67, K=45, N=33: partial 64x64 tiles in both directions and a partial 16-wide K slice.
  matmulCase({ a: [67, 45], aFd: [5, 4], b: [45, 33], bFd: [4, 3], K: 67 }),
  matmulCase({ a: [45, 67], aFd: [4, 5], b: [45, 33], bFd: [4, 3], tA: true, K: 67 }),
  matmulCase({ a: [67, 45], aFd: [5, 4], b: [33, 45], bFd: [3, 4], tB: true, K: 67 }),
  matmulCase({ a: [45, 67], aFd: [4, 5], b: [33, 45], bFd: [3, 4], tA: true, tB: true, K: 67 }),
  matmulCase({ a: [1, 45], aFd: [1, 4], b: [45, 130], bFd: [4, 3], K: 130 }),
  matmulCase({ a: [3, 67, 45], aFd: [2, 5, 4], b: [3, 45, 33], bFd: [2, 4, 3], K: 67 }),
  matmulCase({ a: [2, 45, 67], aFd: [2, 4, 5], b: [2, 33, 45], bFd: [2, 3, 4], tA: true, tB: true, K: 67 }),
  matmulCase({ a: [2, 2, 9, 7], aFd: [2, 2, 3, 2], b: [2, 2, 7, 5], bFd: [2, 2, 2, 3], K: 9 }),
  // A 2-D right operand shared by the batch: its gradient sums over batch * M = 60 rows.
  matmulCase({ a: [3, 20, 45], aFd: [2, 3, 4], b: [45, 33], bFd: [4, 5], K: 60 }),
  matmulCase({ a: [3, 45, 20], aFd: [2, 4, 3], b: [45, 33], bFd: [4, 5], tA: true, K: 60 }),
  matmulCase({ a: [3, 20, 45], aFd: [2, 3, 4], b: [33, 45], bFd: [5, 4], tB: true, K: 60 }),
  matmulCase({ a: [3, 45, 20], aFd: [2, 4, 3], b: [33, 45], bFd: [5, 4], tA: true, tB: true, K: 60 }),
  // A 2-D left operand shared by the batch.
  matmulCase({ a: [20, 45], aFd: [3, 4], b: [3, 45, 33], bFd: [2, 4, 5], K: 99 }),
  matmulCase({ a: [45, 20], aFd: [4, 3], b: [3, 33, 45], bFd: [2, 5, 4], tA: true, tB: true, K: 99 }),
  // K = 1000: the long reduction, so the looser dotTol(1000) (see above).
  matmulCase({ a: [5, 1000], aFd: [2, 30], b: [1000, 7], bFd: [30, 3], K: 1000 }),
]);

// ---------------------------------------------------------------------------------------------
// softmax, logSoftmax
// ---------------------------------------------------------------------------------------------

const SOFTMAX_SHAPES: [number[], number[]][] = [
  [
    [3, 1000],
    [2, 6],
  ],
  [
    [600, 3],
    [4, 3],
  ], // more rows than the 512-workgroup grid
  [
    [2, 3, 37],
    [2, 2, 5],
  ],
  [
    [4, 1],
    [4, 1],
  ], // one-element rows: softmax 1, log-softmax 0, zero gradients
  [[19], [7]],
];

defineCases(
  'softmax',
  SOFTMAX_SHAPES.flatMap(([shape, fdShape]): OpCase[] => [
    {
      name: `softmax ${fmt(shape)}`,
      args: [{ shape, fdShape, gen: N(3) }],
      gpu: ([x]) => G.softmax(x),
      ref: ([x]) => R.softmax(x),
      back: (g, [x]) => R.softmaxBackward(g, x),
    },
    {
      name: `logSoftmax ${fmt(shape)}`,
      args: [{ shape, fdShape, gen: N(3) }],
      gpu: ([x]) => G.logSoftmax(x),
      ref: ([x]) => R.logSoftmax(x),
      back: (g, [x]) => R.logSoftmaxBackward(g, x),
      // The backward subtracts softmax * sum(g) over 1000 columns: sum(g) ~ 18 rounds at ~1e-6.
      gradTol: { rtol: 1e-4, atol: 2e-5 },
    },
  ]),
);

// ---------------------------------------------------------------------------------------------
// gather
// ---------------------------------------------------------------------------------------------

function gatherCase(name: string, table: number[], tableFd: number[], ids: ArgSpec): OpCase {
  return {
    name,
    args: [{ shape: table, fdShape: tableFd, gen: U(-2, 2) }, ids],
    gpu: ([t, i]) => G.gather(t, i),
    ref: ([t, i]) => R.gather(t, i),
    back: (g, [t, i]) => [...R.gatherBackward(g, t, i), null],
  };
}

defineCases('gather', [
  // Ids from -2 to 12 on 11 rows: repeats, and out-of-range ids (-2, -1, 11, 12) give zero rows.
  gatherCase('gather [11,37] at i32 ids [4,6] with repeats and out-of-range ids', [11, 37], [11, 3], {
    shape: [4, 6],
    fdShape: [2, 4],
    gen: INTS(-2, 13),
    dtype: 'i32',
  }),
  gatherCase('gather [11,37] at u32 ids [9]', [11, 37], [11, 3], { shape: [9], fdShape: [6], gen: INTS(0, 14), dtype: 'u32' }),
  gatherCase('gather [300,5] at i32 ids [2,50]', [300, 5], [300, 2], { shape: [2, 50], fdShape: [9], gen: INTS(0, 300), dtype: 'i32' }),
  gatherCase('gather [11,37] at a scalar id', [11, 37], [11, 3], { shape: [], gen: INTS(0, 11), dtype: 'i32' }),
]);
