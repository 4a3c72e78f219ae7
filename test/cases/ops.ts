/**
 * The core ops' case table: every op of `src/ops` (elementwise, broadcast, reduce, matmul, softmax,
 * gather) with its float64 twin (`src/reference`), the inputs it is checked at (shapes, value
 * ranges, dtypes) and the tolerances of the comparison. One table, three users:
 *  - `test/node/ops.test.ts` runs every case on Dawn: GPU forward and backward against the twin,
 *    and the twin's backward against central finite differences (`./check.ts`);
 *  - `test/browser/ops.test.ts` runs every case's GPU forward and backward in Chromium (WebGPU on
 *    SwiftShader) against the twin (`./check.ts`);
 *  - the kernel playground (`demo/playground/cases.ts`) shows the cases that have a `playground`
 *    view, at its size presets, with the same value ranges, twins and tolerances.
 *
 * Why here, under test/: the table says what each op must match and how closely, and its
 * tolerances are derived for the tests' shapes (the comments below), so it belongs with the tests;
 * the tests must not depend on a demo page. It imports no test runner and no DOM (the library, the
 * twins and the tests' seeded generator only), so the playground, which Vite builds from anywhere
 * in the repository, imports it as plain data. `src/` could not hold it: it is not part of the
 * library, and `src/reference` may not import the GPU ops.
 */
import * as G from '../../src/index';
import type { Tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import type { NDArray } from '../../src/reference/index';
import type { Rng } from '../helpers/random';

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/** Element type of an input. */
export type DType = 'f32' | 'i32' | 'u32';

/**
 * A tolerance: an element passes when `|got - want| <= atol + rtol * |want|`. `atolOfMax` raises
 * `atol` to that fraction of the largest `|want|` (the playground's mutual-information case).
 */
export interface Tol {
  rtol: number;
  atol: number;
  atolOfMax?: number;
}

/**
 * Draws `n` values for an input from a seeded generator. `shapes` are the shapes of all the
 * case's inputs in this run (ids drawn over the rows of a table need the table's).
 */
export type Gen = (rng: Rng, n: number, shapes: readonly (readonly number[])[]) => number[];

/** One input of an op case. */
export interface OpInput {
  /** The argument name of the library call (the playground's label and pasted-JSON key). */
  name: string;
  /** Shape in the GPU tests. */
  shape: number[];
  /** Smaller shape for the finite-difference check, whose cost is quadratic (default: `shape`). */
  fdShape?: number[];
  /** How its values are drawn. */
  gen: Gen;
  /** Element type (default f32). */
  dtype?: DType;
  /** Whether it is differentiated (default: f32 inputs are). */
  grad?: boolean;
}

/** The dimensions the playground's size presets give (`SIZES` in demo/playground/cases.ts). */
export interface Dims {
  /** Rows and columns of the 2-D cases (columns are the reduced / normalised axis). */
  rows: number;
  cols: number;
  /** Batch, sequence length and feature size of the [B, T, d] cases (B stays even for mutual information). */
  B: number;
  T: number;
  d: number;
  /** Vocabulary (rows of a table, logits per position). */
  V: number;
  /** Query heads, key/value heads and head dimension of RoPE and attention. */
  H: number;
  Hkv: number;
  Dh: number;
}

/** The WGSL files of the core ops (a subset of the playground's `ShaderFile`). */
export type OpShaderFile = 'elementwise.wgsl' | 'reduce.wgsl' | 'matmul.wgsl' | 'softmax.wgsl' | 'gather.wgsl';

/** How the kernel playground shows a case. */
export interface PlaygroundView {
  /** Stable id (the URL hash and the picker's option value). */
  id: string;
  /** Name shown in the picker. */
  label: string;
  /** Picker group. */
  group: string;
  /** What it computes, in one line. */
  formula: string;
  /** The library call, as text. */
  call: string;
  /** The float64 twin, as text. */
  twin: string;
  /** The WGSL file it runs (`shaders/`). */
  wgsl: OpShaderFile;
  /** Other kernel files its forward or backward also runs, if any. */
  alsoRuns?: OpShaderFile[];
  /** The inputs' shapes at a size preset, aligned with `inputs`. */
  shapes(d: Dims): number[][];
}

/** One op with fixed arguments, its twin, its inputs and its tolerances. */
export interface OpCase {
  /** Test name (unique). */
  name: string;
  /** The test group it belongs to. */
  group: string;
  inputs: OpInput[];
  /** Runs the library op on the GPU. */
  gpu(t: Tensor[]): Tensor;
  /** The twin's forward. */
  ref(x: NDArray[]): NDArray;
  /** The twin's backward: gradients aligned with `inputs` (null where not differentiated). */
  refBackward(g: NDArray, x: NDArray[]): (NDArray | null)[];
  /** Forward tolerance; may depend on the inputs. */
  tol: Tol | ((x: NDArray[]) => Tol);
  /** Gradient tolerance per input (default: `tol`). */
  gradTol?: Tol | ((x: NDArray[], input: number) => Tol);
  /** Why the GPU backward is not tested through autograd (the op is not recorded), if so. */
  noAutograd?: string;
  /** Set when the kernel playground shows this case. */
  playground?: PlaygroundView;
}

/** Whether an input is differentiated. */
export function isGrad(spec: { dtype?: DType; grad?: boolean }): boolean {
  return spec.grad ?? (spec.dtype ?? 'f32') === 'f32';
}

/** The forward tolerance of `c` for inputs `x`. */
export function forwardTol(c: Pick<OpCase, 'tol'>, x: NDArray[]): Tol {
  return typeof c.tol === 'function' ? c.tol(x) : c.tol;
}

/** The gradient tolerance of `c` for input `input`. */
export function gradientTol(c: Pick<OpCase, 'tol' | 'gradTol'>, x: NDArray[], input: number): Tol {
  if (c.gradTol === undefined) return forwardTol(c, x);
  return typeof c.gradTol === 'function' ? c.gradTol(x, input) : c.gradTol;
}

// ---------------------------------------------------------------------------------------------
// Finite differences (the tests' and the playground's)
// ---------------------------------------------------------------------------------------------

/** The finite-difference tolerance: float64 on both sides. */
export const FD_TOL: Tol = { rtol: 1e-6, atol: 1e-8 };

/**
 * Central difference of `L(x) = sum(w * f(x))` with respect to `xs[input].data[index]`, in float64,
 * with the step `h = 1e-5 max(1, |x|)`. Only the difference `f(x+h) - f(x-h)` is weighted and
 * summed, so outputs that do not depend on the element cancel exactly and the rounding error stays
 * ~eps * |f| / h (about 1e-11 relative), far below {@link FD_TOL}.
 */
export function centralDifference(f: (xs: NDArray[]) => NDArray, xs: NDArray[], w: NDArray, input: number, index: number): number {
  const x = xs[input];
  const v = x.data[index];
  const h = 1e-5 * Math.max(1, Math.abs(v));
  const up = v + h;
  const down = v - h;
  try {
    x.data[index] = up;
    const fUp = f(xs).data;
    x.data[index] = down;
    const fDown = f(xs).data;
    let s = 0;
    for (let j = 0; j < fUp.length; j++) s += w.data[j] * (fUp[j] - fDown[j]);
    return s / (up - down);
  } finally {
    x.data[index] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Value generators
// ---------------------------------------------------------------------------------------------

/** Uniform in [lo, hi). */
export const U =
  (lo: number, hi: number): Gen =>
  (rng, n) =>
    rng.uniforms(n, lo, hi);
/** Magnitudes in [lo, hi) with random signs: keeps clear of kinks (abs, relu) and poles (div, pow < 0). */
export const S =
  (lo: number, hi: number): Gen =>
  (rng, n) =>
    rng.signed(n, lo, hi);
/** Normal, times `std`. */
export const N =
  (std: number): Gen =>
  (rng, n) =>
    rng.normals(n, std);
/** Integers in [lo, hi). */
export const INTS =
  (lo: number, hi: number): Gen =>
  (rng, n) =>
    rng.ints(n, lo, hi);
/** Values picked from `values`. */
export const PICK =
  (values: number[]): Gen =>
  (rng, n) =>
    rng.ints(n, 0, values.length).map((i) => values[i]);
/** Row ids of the table that is input 0: integers in [0, rows). */
const TABLE_ROWS: Gen = (rng, n, shapes) => rng.ints(n, 0, shapes[0][0]);

// ---------------------------------------------------------------------------------------------
// Tolerances
// ---------------------------------------------------------------------------------------------

/** The tolerance of a single f32 rounding chain of a few operations (the default). */
export const F32: Tol = { rtol: 1e-4, atol: 1e-5 };

/** max only compares and copies: bit-exact (a zero atol would make a relative error divide 0 by 0). */
export const EXACT: Tol = { rtol: 0, atol: 1e-30 };

/**
 * f32 sums: each of the n roundings errs by <= eps |partial sum|, partial sums of n values in
 * [-1, 1] are ~sqrt(n), and the errors add like a random walk: ~sqrt(n) eps sqrt(n) = n eps =
 * 6e-8 n. Near-zero sums make rtol useless, so atol = 1e-7 n (1e-4 for a row of 1000, 4e-3 for
 * the 40200 elements of [200,201], whose sum is ~100). Up to 100 terms this is {@link F32}.
 */
export const sumTol = (n: number): Tol => ({ rtol: 1e-4, atol: Math.max(1e-5, 1e-7 * n) });

/**
 * A dot product of K terms a b with a, b uniform in [-1, 1]: partial sums ~sqrt(K)/3, K roundings
 * of <= eps |partial| adding like a random walk, so ~K eps / 3 = 2e-8 K; near-zero outputs make
 * rtol useless, so atol = 4e-7 K (1.8e-5 for K = 45, 4e-4 for K = 1000), a 20x margin. `K` is the
 * longest reduction of the forward (K) and the backward (N for dA, batch * M for a shared B).
 */
export const dotTol = (K: number): Tol => ({ rtol: 1e-4, atol: Math.max(1e-5, 4e-7 * K) });

/**
 * The most output gradients summed into one element of input `k`'s gradient, for a broadcasting
 * op whose twin backward is linear in `g`: its backward at `g = 1` counts them (for `where`, only
 * the elements that selected that input count).
 */
function mostTermsSummed(back: (g: NDArray) => (NDArray | null)[], outShape: readonly number[], k: number): number {
  const grad = back(R.ndarray(new Float64Array(R.sizeOf(outShape)).fill(1), outShape))[k];
  return grad ? grad.data.reduce((m, v) => Math.max(m, v), 0) : 0;
}

// ---------------------------------------------------------------------------------------------
// Unary maps: [7, 131] = 917 elements (not a multiple of 256); [3, 7] for finite differences.
// ---------------------------------------------------------------------------------------------

const fmt = (s: readonly number[]): string => `[${s.join(',')}]`;
const rowsCols = (d: Dims) => [d.rows, d.cols];

/** Playground view of a unary map of `elementwise.wgsl` on x [rows, cols]. */
function unaryView(id: string, call: string, formula: string, twin: string): PlaygroundView {
  return { id, label: call, group: 'Elementwise: unary', formula, call, twin, wgsl: 'elementwise.wgsl', shapes: (d) => [rowsCols(d)] };
}

function unaryCase(
  name: string,
  gen: Gen,
  gpuOp: (x: Tensor) => Tensor,
  ref: (x: NDArray) => NDArray,
  back: (g: NDArray, x: NDArray) => [NDArray],
  playground?: PlaygroundView,
): OpCase {
  return {
    name,
    group: 'unary ops',
    inputs: [{ name: 'x', shape: [7, 131], fdShape: [3, 7], gen }],
    gpu: ([x]) => gpuOp(x),
    ref: ([x]) => ref(x),
    refBackward: (g, [x]) => back(g, x),
    tol: F32,
    playground,
  };
}

/** `pow(x, p)`: its GPU op, twin and backward at a fixed exponent. */
const powOf = (p: number) =>
  [(x: Tensor) => G.pow(x, p), (x: NDArray) => R.pow(x, p), (g: NDArray, x: NDArray) => R.powBackward(g, x, p)] as const;

const UNARY: OpCase[] = [
  unaryCase('neg', U(-3, 3), G.neg, R.neg, R.negBackward, unaryView('neg', 'neg(x)', '-x', 'neg / negBackward')),
  unaryCase('exp', U(-4, 4), G.exp, R.exp, R.expBackward, unaryView('exp', 'exp(x)', 'e^x', 'exp / expBackward')),
  unaryCase('log', U(0.05, 5), G.log, R.log, R.logBackward, unaryView('log', 'log(x)', 'ln x, for x in [0.05, 5)', 'log / logBackward')),
  unaryCase(
    'sqrt',
    U(0.05, 5),
    G.sqrt,
    R.sqrt,
    R.sqrtBackward,
    unaryView('sqrt', 'sqrt(x)', 'sqrt x, for x in [0.05, 5)', 'sqrt / sqrtBackward'),
  ),
  unaryCase('tanh', U(-4, 4), G.tanh, R.tanh, R.tanhBackward, unaryView('tanh', 'tanh(x)', 'tanh x', 'tanh / tanhBackward')),
  unaryCase(
    'abs',
    S(0.01, 3),
    G.abs,
    R.abs,
    R.absBackward,
    unaryView('abs', 'abs(x)', '|x| (inputs kept clear of the kink at 0)', 'abs / absBackward'),
  ),
  unaryCase(
    'pow(x, 3) with negative bases',
    S(0.1, 2),
    ...powOf(3),
    unaryView('pow3', 'pow(x, 3)', 'x^3, negative bases included', 'pow / powBackward (p = 3)'),
  ),
  unaryCase('pow(x, 2) with negative bases', S(0.1, 2), ...powOf(2)),
  unaryCase('pow(x, -1) with negative bases', S(0.25, 2), ...powOf(-1)),
  unaryCase('pow(x, -2) with negative bases', S(0.25, 2), ...powOf(-2)),
  unaryCase(
    'pow(x, 0.5)',
    U(0.05, 4),
    ...powOf(0.5),
    unaryView('pow0.5', 'pow(x, 0.5)', 'x^0.5, for x in [0.05, 4)', 'pow / powBackward (p = 0.5)'),
  ),
  unaryCase('pow(x, 2.5)', U(0.05, 3), ...powOf(2.5)),
  unaryCase('pow(x, 0)', S(0.1, 2), ...powOf(0)),
  unaryCase('silu', U(-6, 6), G.silu, R.silu, R.siluBackward, unaryView('silu', 'silu(x)', 'x sigmoid(x)', 'silu / siluBackward')),
  unaryCase(
    'geluTanh',
    U(-5, 5),
    G.geluTanh,
    R.geluTanh,
    R.geluTanhBackward,
    unaryView('geluTanh', 'geluTanh(x)', 'GELU, tanh approximation', 'geluTanh / geluTanhBackward'),
  ),
  unaryCase(
    'relu',
    S(0.01, 3),
    G.relu,
    R.relu,
    R.reluBackward,
    unaryView('relu', 'relu(x)', 'max(x, 0) (inputs kept clear of 0)', 'relu / reluBackward'),
  ),
  unaryCase(
    'scale(x, -0.75, 0.5)',
    U(-3, 3),
    (x) => G.scale(x, -0.75, 0.5),
    (x) => R.scale(x, -0.75, 0.5),
    (g, x) => R.scaleBackward(g, x, -0.75, 0.5),
    unaryView('scale', 'scale(x, -0.75, 0.5)', '-0.75 x + 0.5', 'scale / scaleBackward'),
  ),
  unaryCase('clone', U(-3, 3), G.clone, R.clone, R.cloneBackward),
  unaryCase(
    'sigmoidRange(x, 1e-4, 2)',
    U(-8, 8),
    (x) => G.sigmoidRange(x, 1e-4, 2),
    (x) => R.sigmoidRange(x, 1e-4, 2),
    (g, x) => R.sigmoidRangeBackward(g, x, 1e-4, 2),
    unaryView('sigmoidRange', 'sigmoidRange(x, 1e-4, 2)', '1e-4 + (2 - 1e-4) sigmoid(x)', 'sigmoidRange / sigmoidRangeBackward'),
  ),
];

// ---------------------------------------------------------------------------------------------
// Binary arithmetic with broadcasting, and where
// ---------------------------------------------------------------------------------------------

type BinaryName = 'add' | 'sub' | 'mul' | 'div';
type GpuBinary = (a: Tensor, b: Tensor) => Tensor;
type RefBinary = (a: NDArray, b: NDArray) => NDArray;
type RefBinaryBack = (g: NDArray, a: NDArray, b: NDArray) => [NDArray, NDArray];

const BINARY: [BinaryName, string, GpuBinary, RefBinary, RefBinaryBack][] = [
  ['add', '+', G.add, R.add, R.addBackward],
  ['sub', '-', G.sub, R.sub, R.subBackward],
  ['mul', '*', G.mul, R.mul, R.mulBackward],
  ['div', '/', G.div, R.div, R.divBackward],
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

/** The shapes the playground shows a binary op at (a row vector b broadcast over a's rows). */
const BINARY_PLAYGROUND_SHAPES = BINARY_SHAPES[2];

function binaryCases([name, symbol, gpuOp, ref, back]: (typeof BINARY)[number]): OpCase[] {
  return BINARY_SHAPES.map(([as, afd, bs, bfd]) => ({
    name: `${name} ${fmt(as)} with ${fmt(bs)}`,
    group: 'binary ops (broadcasting)',
    inputs: [
      { name: 'a', shape: as, fdShape: afd, gen: U(-2, 2) },
      // Divisors stay away from 0, where a / b and its gradient blow up.
      { name: 'b', shape: bs, fdShape: bfd, gen: name === 'div' ? S(0.5, 2) : U(-2, 2) },
    ],
    gpu: ([a, b]) => gpuOp(a, b),
    ref: ([a, b]) => ref(a, b),
    refBackward: (g, [a, b]) => back(g, a, b),
    tol: F32,
    // b's gradient sums the output gradients over the axes b is broadcast along (every row of a,
    // in the playground): sumTol of that count, which the tests' b shapes keep within F32 (at most
    // 12 terms). a's gradient stays at F32: the tests' broadcast a ([] with [17,13]) meets it.
    gradTol: (x, input) => (input === 1 ? sumTol(mostTermsSummed((g) => R.addBackward(g, x[0], x[1]), R.add(x[0], x[1]).shape, 1)) : F32),
    playground:
      as === BINARY_PLAYGROUND_SHAPES[0]
        ? {
            id: name,
            label: `${name}(a, b)`,
            group: 'Elementwise: binary',
            formula: `a ${symbol} b, b [cols] broadcast over the rows of a [rows, cols]`,
            call: `${name}(a, b)`,
            twin: `${name} / ${name}Backward`,
            wgsl: 'elementwise.wgsl',
            alsoRuns: ['reduce.wgsl'],
            shapes: (d) => [rowsCols(d), [d.cols]],
          }
        : undefined,
  }));
}

/** Conditions mixing zero, one, other nonzero values and a negative zero (false, as 0 == -0). */
const COND_F32 = PICK([0, 1, -2.5, -0, 0.001]);

function whereCase(name: string, inputs: OpInput[], playground?: PlaygroundView): OpCase {
  return {
    name,
    group: 'where',
    inputs,
    gpu: ([c, a, b]) => G.where(c, a, b),
    ref: ([c, a, b]) => R.where(c, a, b),
    refBackward: (g, [c, a, b]) => [null, ...R.whereBackward(g, c, a, b)],
    tol: F32,
    // Each branch's gradient sums the output gradients of the elements that selected it: sumTol
    // of the largest such count (the tests' shapes keep it within F32).
    gradTol: ([c, a, b], input) =>
      input === 0 ? F32 : sumTol(mostTermsSummed((g) => [null, ...R.whereBackward(g, c, a, b)], R.where(c, a, b).shape, input)),
    playground,
  };
}

const WHERE: OpCase[] = [
  whereCase(
    'where f32 cond [2,1,5], a [3,1], b [5]',
    [
      { name: 'cond', shape: [2, 1, 5], gen: COND_F32, grad: false },
      { name: 'a', shape: [3, 1], gen: U(-2, 2) },
      { name: 'b', shape: [5], gen: U(-2, 2) },
    ],
    {
      id: 'where',
      label: 'where(cond, a, b)',
      group: 'Elementwise: binary',
      formula: 'cond ? a : b, with cond [rows, cols] (f32, nonzero = true), a [rows, cols], b [cols] broadcast',
      call: 'where(cond, a, b)',
      twin: 'where / whereBackward',
      wgsl: 'elementwise.wgsl',
      alsoRuns: ['reduce.wgsl'],
      shapes: (d) => [rowsCols(d), rowsCols(d), [d.cols]],
    },
  ),
  whereCase('where i32 cond, all [33,31]', [
    { name: 'cond', shape: [33, 31], fdShape: [3, 4], gen: PICK([0, 1, -7]), dtype: 'i32' },
    { name: 'a', shape: [33, 31], fdShape: [3, 4], gen: U(-2, 2) },
    { name: 'b', shape: [33, 31], fdShape: [3, 4], gen: U(-2, 2) },
  ]),
  whereCase('where u32 cond [37], a [4,37], b []', [
    { name: 'cond', shape: [37], fdShape: [5], gen: PICK([0, 1, 0xffffffff]), dtype: 'u32' },
    { name: 'a', shape: [4, 37], fdShape: [2, 5], gen: U(-2, 2) },
    { name: 'b', shape: [], gen: U(-2, 2) },
  ]),
];

// ---------------------------------------------------------------------------------------------
// Layout: expand, permute, transpose, reshape; and sumToShape
// ---------------------------------------------------------------------------------------------

/** A one-input case drawn from U(-2, 2); `fdShape` defaults to `shape`. */
function layoutCase(
  name: string,
  shape: number[],
  fdShape: number[] | undefined,
  ops: { gpu: (x: Tensor) => Tensor; ref: (x: NDArray) => NDArray; back: (g: NDArray, x: NDArray) => [NDArray] },
): OpCase {
  return {
    name,
    group: 'layout ops',
    inputs: [{ name: 'x', shape, fdShape, gen: U(-2, 2) }],
    gpu: ([x]) => ops.gpu(x),
    ref: ([x]) => ops.ref(x),
    refBackward: (g, [x]) => ops.back(g, x),
    tol: F32,
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

/** The fused SwiGLU gate of a Llama MLP, against the composition of its twins. */
const FUSED: OpCase[] = [
  {
    name: 'swiglu gate [3,5,37], up [3,5,37]',
    group: 'fused elementwise',
    inputs: [
      // The gate spans silu's curved middle and both tails; odd sizes leave a partial workgroup.
      { name: 'gate', shape: [3, 5, 37], fdShape: [2, 5], gen: U(-6, 6) },
      { name: 'up', shape: [3, 5, 37], fdShape: [2, 5], gen: U(-2, 2) },
    ],
    gpu: ([gate, up]) => G.swiglu(gate, up),
    ref: ([gate, up]) => R.swiglu(gate, up),
    refBackward: (g, [gate, up]) => R.swigluBackward(g, gate, up),
    tol: F32,
  },
];

const LAYOUT: OpCase[] = [
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
];

// sumToShape is not recorded by autograd (it is the building block of backward rules), so only
// its forward runs on the GPU; the twin's backward (an expand) is still checked numerically.
function sumToShapeCase(from: number[], fdFrom: number[], to: number[]): OpCase {
  return {
    name: `sumToShape ${fmt(from)} to ${fmt(to)}`,
    group: 'sumToShape',
    inputs: [{ name: 'x', shape: from, fdShape: fdFrom, gen: U(-2, 2) }],
    gpu: ([x]) => G.sumToShape(x, to),
    ref: ([x]) => R.sumToShape(x, to),
    refBackward: (g, [x]) => R.sumToShapeBackward(g, x, to),
    tol: F32,
    noAutograd: 'sumToShape is not recorded by autograd',
  };
}

const SUM_TO_SHAPE: OpCase[] = [
  sumToShapeCase([2, 3, 5], [2, 3, 5], [3, 1]),
  sumToShapeCase([4, 5, 67], [2, 5, 3], [5, 1]),
  sumToShapeCase([4, 5, 6], [2, 5, 6], [1, 5, 6]),
  sumToShapeCase([9, 37], [3, 4], []),
  sumToShapeCase([9, 37], [3, 4], [1, 1]),
  sumToShapeCase([7, 9], [7, 9], [7, 9]),
];

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

type ReduceName = 'sum' | 'mean' | 'max';
type GpuReduce = (x: Tensor, axis?: number, options?: { keepDim?: boolean }) => Tensor;
type RefReduce = (x: NDArray, axis?: number, options?: R.ReduceOptions) => NDArray;
type RefReduceBack = (g: NDArray, x: NDArray, axis?: number, options?: R.ReduceOptions) => [NDArray];

const REDUCE: [ReduceName, GpuReduce, RefReduce, RefReduceBack][] = [
  ['sum', G.sum, R.sum, R.sumBackward],
  ['mean', G.mean, R.mean, R.meanBackward],
  ['max', G.max, R.max, R.maxBackward],
];

/** [shape, fd shape, axis, keepDim, the playground view's id suffix] */
const REDUCE_SHAPES: [number[], number[], number | undefined, boolean, ('Rows' | 'All')?][] = [
  [[3, 1000], [3, 7], -1, false, 'Rows'],
  [[5, 257], [2, 5], -1, true],
  [[600, 3], [4, 3], -1, false], // more rows than the 512-workgroup grid: the row loop strides
  [[1000], [9], -1, false],
  [[2, 3, 77], [2, 3, 4], 2, true],
  [[37, 29], [3, 4], undefined, false, 'All'],
  [[200, 201], [2, 3], undefined, true], // 40200 elements: several partial workgroups
  [[], [], undefined, false],
];

function reduceView(name: ReduceName, rows: boolean): PlaygroundView {
  const call = rows ? `${name}(x, -1)` : `${name}(x)`;
  return {
    id: `${name}${rows ? 'Rows' : 'All'}`,
    label: `${call}${rows ? ' (last axis)' : ' (all elements)'}`,
    group: 'Reductions',
    formula: `${name} over ${rows ? 'the last axis of x [rows, cols]' : 'every element of x [rows, cols]'}`,
    call,
    twin: `${name} / ${name}Backward`,
    wgsl: 'reduce.wgsl',
    alsoRuns: name === 'max' ? undefined : ['elementwise.wgsl'],
    shapes: (d) => [rowsCols(d)],
  };
}

// Shape-major (each shape: sum, mean, max), so that the playground's views come in its order.
const REDUCTIONS: OpCase[] = REDUCE_SHAPES.flatMap(([shape, fdShape, axis, keepDim, view]) =>
  REDUCE.map(
    ([name, gpuOp, ref, back]): OpCase => ({
      name: `${name} ${fmt(shape)} axis ${axis ?? 'all'}${keepDim ? ' keepDim' : ''}`,
      group: 'reductions',
      inputs: [{ name: 'x', shape, fdShape, gen: U(-1, 1) }],
      gpu: ([x]) => gpuOp(x, axis, { keepDim }),
      ref: ([x]) => ref(x, axis, { keepDim }),
      refBackward: (g, [x]) => back(g, x, axis, { keepDim }),
      // max is exact (it only compares); sums and means round once per addition.
      tol: ([x]) => (name === 'max' ? EXACT : sumTol(axis === undefined ? x.data.length : (x.shape[x.shape.length - 1] ?? 1))),
      // Every backward is a broadcast (times 1/n for mean) or a select: one rounding at most.
      gradTol: F32,
      playground: view ? reduceView(name, view === 'Rows') : undefined,
    }),
  ),
);

// ---------------------------------------------------------------------------------------------
// matmul
// ---------------------------------------------------------------------------------------------

/**
 * The longest reduction of `matmul(a, b, options)`, forward or backward: K (the output), N (dA),
 * M (dB), times the batch for a 2-D operand shared by a batch (its gradient sums over it).
 */
function longestReduction(a: readonly number[], b: readonly number[], options: R.MatmulOptions): number {
  const [ar, ac] = a.slice(-2);
  const [br, bc] = b.slice(-2);
  const [M, K] = options.transposeA ? [ac, ar] : [ar, ac];
  const N = options.transposeB ? br : bc;
  const batch = R.sizeOf(a.length > 2 ? a.slice(0, -2) : b.slice(0, -2));
  return Math.max(K, a.length === 2 && b.length > 2 ? batch * N : N, b.length === 2 && a.length > 2 ? batch * M : M);
}

interface MatmulSpec {
  a: number[];
  aFd: number[];
  b: number[];
  bFd: number[];
  tA?: boolean;
  tB?: boolean;
  playground?: PlaygroundView;
}

function matmulCase(s: MatmulSpec): OpCase {
  const options = { transposeA: s.tA ?? false, transposeB: s.tB ?? false };
  const flags = `${s.tA ? ' transposeA' : ''}${s.tB ? ' transposeB' : ''}`;
  return {
    name: `matmul ${fmt(s.a)} @ ${fmt(s.b)}${flags}`,
    group: 'matmul',
    inputs: [
      { name: 'a', shape: s.a, fdShape: s.aFd, gen: U(-1, 1) },
      { name: 'b', shape: s.b, fdShape: s.bFd, gen: U(-1, 1) },
    ],
    gpu: ([a, b]) => G.matmul(a, b, options),
    ref: ([a, b]) => R.matmul(a, b, options),
    refBackward: (g, [a, b]) => R.matmulBackward(g, a, b, options),
    tol: ([a, b]) => dotTol(longestReduction(a.shape, b.shape, options)),
    playground: s.playground,
  };
}

function matmulView(transposeB: boolean): PlaygroundView {
  return {
    id: transposeB ? 'matmulTransposeB' : 'matmul',
    label: transposeB ? 'matmul(a, b, { transposeB })' : 'matmul(a, b)',
    group: 'Linear algebra',
    formula: transposeB ? 'a [rows, cols] @ bᵀ, b stored [V, cols]' : 'a [rows, cols] @ b [cols, V]',
    call: transposeB ? 'matmul(a, b, { transposeB: true })' : 'matmul(a, b)',
    twin: 'matmul / matmulBackward',
    wgsl: 'matmul.wgsl',
    shapes: (d) => [rowsCols(d), transposeB ? [d.V, d.cols] : [d.cols, d.V]],
  };
}

const MATMUL: OpCase[] = [
  // M=67, K=45, N=33: partial 64x64 tiles in both directions and a partial 16-wide K slice.
  matmulCase({ a: [67, 45], aFd: [5, 4], b: [45, 33], bFd: [4, 3], playground: matmulView(false) }),
  matmulCase({ a: [45, 67], aFd: [4, 5], b: [45, 33], bFd: [4, 3], tA: true }),
  matmulCase({ a: [67, 45], aFd: [5, 4], b: [33, 45], bFd: [3, 4], tB: true, playground: matmulView(true) }),
  matmulCase({ a: [45, 67], aFd: [4, 5], b: [33, 45], bFd: [3, 4], tA: true, tB: true }),
  matmulCase({ a: [1, 45], aFd: [1, 4], b: [45, 130], bFd: [4, 3] }),
  matmulCase({ a: [3, 67, 45], aFd: [2, 5, 4], b: [3, 45, 33], bFd: [2, 4, 3] }),
  matmulCase({ a: [2, 45, 67], aFd: [2, 4, 5], b: [2, 33, 45], bFd: [2, 3, 4], tA: true, tB: true }),
  matmulCase({ a: [2, 2, 9, 7], aFd: [2, 2, 3, 2], b: [2, 2, 7, 5], bFd: [2, 2, 2, 3] }),
  // A 2-D right operand shared by the batch: its gradient sums over batch * M = 60 rows.
  matmulCase({ a: [3, 20, 45], aFd: [2, 3, 4], b: [45, 33], bFd: [4, 5] }),
  matmulCase({ a: [3, 45, 20], aFd: [2, 4, 3], b: [45, 33], bFd: [4, 5], tA: true }),
  matmulCase({ a: [3, 20, 45], aFd: [2, 3, 4], b: [33, 45], bFd: [5, 4], tB: true }),
  matmulCase({ a: [3, 45, 20], aFd: [2, 4, 3], b: [33, 45], bFd: [5, 4], tA: true, tB: true }),
  // A 2-D left operand shared by the batch: its gradient sums over batch * N = 99 columns.
  matmulCase({ a: [20, 45], aFd: [3, 4], b: [3, 45, 33], bFd: [2, 4, 5] }),
  matmulCase({ a: [45, 20], aFd: [4, 3], b: [3, 33, 45], bFd: [2, 5, 4], tA: true, tB: true }),
  // K = 1000: the long reduction, so the looser dotTol(1000) (see above).
  matmulCase({ a: [5, 1000], aFd: [2, 30], b: [1000, 7], bFd: [30, 3] }),
  // The kernel's edges (shaders/matmul.wgsl): a workgroup covers 8 rows (1 for a one-row
  // product) and 4 x (4, 8 or more) columns, K runs in steps of 4, and A and B are read as vec4s when K (A, or B
  // transposed) or N (B) and the batch strides are multiples of 4. Aligned shapes with ragged
  // rows and columns (36 rows, 40 = 32 + 8 columns), one column short of and past a multiple of
  // 32 (31, 33), rows 9 = 8 + 1, each transpose.
  matmulCase({ a: [36, 64], aFd: [3, 5], b: [64, 40], bFd: [5, 3] }),
  matmulCase({ a: [33, 48], aFd: [3, 4], b: [31, 48], bFd: [3, 4], tB: true }),
  matmulCase({ a: [48, 9], aFd: [4, 3], b: [48, 33], bFd: [4, 3], tA: true }),
  matmulCase({ a: [16, 9], aFd: [4, 3], b: [31, 16], bFd: [3, 4], tA: true, tB: true }),
  // Skinny products (1 row: a row block of 1; 2 and 3 rows: a mostly padded block), aligned and not.
  matmulCase({ a: [1, 64], aFd: [1, 5], b: [64, 32], bFd: [5, 3] }),
  matmulCase({ a: [1, 32], aFd: [1, 4], b: [36, 32], bFd: [3, 4], tB: true }),
  matmulCase({ a: [2, 20], aFd: [2, 3], b: [20, 17], bFd: [3, 3] }),
  matmulCase({ a: [3, 28], aFd: [2, 3], b: [28, 12], bFd: [3, 3] }),
  // K = 1, K = 6 (one step of 4 and a tail of 2), K = 8 (no tail) with N aligned or not.
  matmulCase({ a: [7, 1], aFd: [3, 1], b: [1, 9], bFd: [1, 3] }),
  matmulCase({ a: [10, 6], aFd: [3, 3], b: [6, 8], bFd: [3, 3] }),
  matmulCase({ a: [10, 8], aFd: [3, 3], b: [8, 6], bFd: [3, 3] }),
  // Batched with vec4 loads: batch strides multiples of 4, and a shared aligned operand.
  matmulCase({ a: [2, 12, 8], aFd: [2, 3, 3], b: [2, 8, 16], bFd: [2, 3, 3] }),
  matmulCase({ a: [3, 5, 16], aFd: [2, 3, 3], b: [12, 16], bFd: [3, 3], tB: true }),
];

// ---------------------------------------------------------------------------------------------
// softmax, logSoftmax
// ---------------------------------------------------------------------------------------------

/** [shape, fd shape] */
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
  [
    [130, 100],
    [3, 4],
  ], // rows longer than NARROW_ROW but at least as many rows as columns: a row per thread
];

function softmaxCase(log: boolean, shape: number[], fdShape: number[], withView: boolean): OpCase {
  const name = log ? 'logSoftmax' : 'softmax';
  return {
    name: `${name} ${fmt(shape)}`,
    group: 'softmax',
    inputs: [{ name: 'x', shape, fdShape, gen: N(3) }],
    gpu: ([x]) => (log ? G.logSoftmax(x) : G.softmax(x)),
    ref: ([x]) => (log ? R.logSoftmax(x) : R.softmax(x)),
    refBackward: (g, [x]) => (log ? R.logSoftmaxBackward(g, x) : R.softmaxBackward(g, x)),
    tol: F32,
    // The log-softmax backward subtracts softmax * sum(g) over a whole row: over 1000 columns,
    // sum(g) ~ 18 rounds at ~1e-6.
    gradTol: log ? { rtol: 1e-4, atol: 2e-5 } : F32,
    playground: withView
      ? {
          id: name,
          label: `${name}(x)`,
          group: 'Softmax',
          formula: log ? 'x - max - log(sum(exp(x - max))) over the last axis' : 'exp(x - max) / sum(exp(x - max)) over the last axis',
          call: `${name}(x)`,
          twin: `${name} / ${name}Backward`,
          wgsl: 'softmax.wgsl',
          shapes: (d) => [rowsCols(d)],
        }
      : undefined,
  };
}

const SOFTMAX: OpCase[] = SOFTMAX_SHAPES.flatMap(([shape, fdShape], i) => [
  softmaxCase(false, shape, fdShape, i === 0),
  softmaxCase(true, shape, fdShape, i === 0),
]);

// ---------------------------------------------------------------------------------------------
// gather
// ---------------------------------------------------------------------------------------------

function gatherCase(name: string, table: number[], tableFd: number[], ids: Omit<OpInput, 'name'>, playground?: PlaygroundView): OpCase {
  return {
    name,
    group: 'gather',
    inputs: [
      { name: 'table', shape: table, fdShape: tableFd, gen: U(-2, 2) },
      { name: 'ids', ...ids },
    ],
    gpu: ([t, i]) => G.gather(t, i),
    ref: ([t, i]) => R.gather(t, i),
    refBackward: (g, [t, i]) => [...R.gatherBackward(g, t, i), null],
    tol: F32,
    playground,
  };
}

const GATHER: OpCase[] = [
  // Ids 0 to 10 on 11 rows: repeats. (An id out of range fails the next readback: ops-edge and edge-values tests.)
  gatherCase('gather [11,37] at i32 ids [4,6] with repeats', [11, 37], [11, 3], {
    shape: [4, 6],
    fdShape: [2, 4],
    gen: INTS(0, 11),
    dtype: 'i32',
  }),
  gatherCase('gather [11,37] at u32 ids [9]', [11, 37], [11, 3], { shape: [9], fdShape: [6], gen: INTS(0, 11), dtype: 'u32' }),
  gatherCase(
    'gather [300,5] at i32 ids [2,50]',
    [300, 5],
    [300, 2],
    { shape: [2, 50], fdShape: [9], gen: TABLE_ROWS, dtype: 'i32' },
    {
      id: 'gather',
      label: 'gather(table, ids)',
      group: 'Gather',
      formula: 'rows of table [V, cols] at i32 ids [rows] (an id outside [0, V) fails the next readback); scatter-add backward',
      call: 'gather(table, ids)',
      twin: 'gather / gatherBackward',
      wgsl: 'gather.wgsl',
      shapes: (d) => [[d.V, d.cols], [d.rows]],
    },
  ),
  gatherCase('gather [11,37] at a scalar id', [11, 37], [11, 3], { shape: [], gen: INTS(0, 11), dtype: 'i32' }),
];

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/** Every op case, in test order (grouped by `group`; the playground's views in its picker order). */
export const OP_CASES: readonly OpCase[] = [
  ...UNARY,
  ...BINARY.flatMap(binaryCases),
  ...WHERE,
  ...FUSED,
  ...LAYOUT,
  ...SUM_TO_SHAPE,
  ...REDUCTIONS,
  ...MATMUL,
  ...SOFTMAX,
  ...GATHER,
];

/** The cases the kernel playground shows, in table order (its picker order). */
export const PLAYGROUND_OP_CASES: readonly (OpCase & { playground: PlaygroundView })[] = OP_CASES.filter(
  (c): c is OpCase & { playground: PlaygroundView } => c.playground !== undefined,
);
