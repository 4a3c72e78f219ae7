/**
 * The playground's kernel cases: one row per kernel, everything the page needs to run it.
 *
 * A case names its inputs (shapes per size, how random values are drawn, dtype, whether they are
 * differentiated), the library call that runs it on the GPU, its float64 twin from
 * `src/reference/` (forward and backward), the tolerances the Node tests use for it, the WGSL file
 * it runs (its edited text runs through the library itself: `GpuContext.withShaderSource`). The page
 * (`./main.ts`) is generic over this table.
 */
import * as G from '../../src/index';
import type { Tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import type { NDArray } from '../../src/reference/index';
import * as RNorm from '../../src/reference/norm';
import * as RRope from '../../src/reference/rope';
import * as RAttention from '../../src/reference/attention';
import { distillationCrossEntropyReference, distillationCrossEntropyReferenceBackward } from '../../src/reference/crossEntropy';
import { rowPairLossReference, type RowPairLossName } from '../../src/reference/cosine';
import { stdLogRatioReference } from '../../src/reference/stdLogRatio';
import { medianNormPenaltyReference } from '../../src/reference/medianNorm';
import { inverseL2PowerLawCatalystReference } from '../../src/reference/catalyst';
import { mutualInformationReference, mutualInformationReferenceBackward } from '../../src/reference/mutualInformation';
import type { Tol } from './compare';
import type { Rng } from './random';
import type { ShaderFile } from './shaders';

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/** The dimensions a case's shapes are built from. */
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

/** A size preset of the size selector. */
export type Size = 'tiny' | 'small' | 'medium';

/**
 * The size presets, kept small: the float64 twins are plain loops, and software adapters
 * (SwiftShader, lavapipe) are slow. `small` and `medium` use odd sizes (not multiples of the
 * 256-thread workgroups or 64-wide tiles), and `medium` has rows longer than 64, which take the
 * one-workgroup-per-row kernels instead of the one-thread-per-row ones.
 */
export const SIZES: Record<Size, { label: string; dims: Dims }> = {
  tiny: { label: 'tiny', dims: { rows: 3, cols: 5, B: 2, T: 3, d: 4, V: 6, H: 2, Hkv: 1, Dh: 4 } },
  small: { label: 'small', dims: { rows: 7, cols: 33, B: 2, T: 5, d: 8, V: 11, H: 4, Hkv: 2, Dh: 8 } },
  medium: { label: 'medium', dims: { rows: 33, cols: 131, B: 4, T: 9, d: 16, V: 37, H: 4, Hkv: 2, Dh: 16 } },
};

// ---------------------------------------------------------------------------------------------
// Case types
// ---------------------------------------------------------------------------------------------

/** Draws `n` values for an input from a seeded generator. */
export type Gen = (rng: Rng, n: number) => number[];

/** One input of a kernel case. */
export interface InputSpec {
  /** Its name: the argument name of the library call (also the key in pasted JSON). */
  name: string;
  /** Its shape at each size. */
  shape: (d: Dims) => number[];
  /** How its random values are drawn. */
  gen: Gen;
  /** Element type (default f32). */
  dtype?: 'f32' | 'i32';
  /** Whether it is differentiated (default: f32 inputs are). */
  grad?: boolean;
  /**
   * A 0/1 mask. Pasted values are checked: the kernels and twins disagree on other values (some
   * select `== 1`, some `> 0.5`), and the losses take only 0 and 1.
   */
  mask?: boolean;
}

/** A kernel of the playground. */
export interface KernelCase {
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
  wgsl: ShaderFile;
  /** Other kernel files its forward or backward also runs, if any. */
  alsoRuns?: ShaderFile[];
  inputs: InputSpec[];
  /** Draws all inputs together when they depend on each other (overrides the per-input `gen`). */
  generate?: (rng: Rng, shapes: number[][]) => number[][];
  /** Runs the library on the GPU. */
  gpu(t: Tensor[]): Tensor;
  /** The twin's forward. */
  ref(x: NDArray[]): NDArray;
  /** The twin's backward: gradients aligned with `inputs` (null where not differentiated). */
  refBackward(g: NDArray, x: NDArray[]): (NDArray | null)[];
  /** Forward tolerance (from the case's Node test); may depend on the input shapes. */
  tol: Tol | ((x: NDArray[]) => Tol);
  /** Gradient tolerance per input (default: `tol`). */
  gradTol?: Tol | ((x: NDArray[], input: number) => Tol);
}

/** Whether input `spec` is differentiated. */
export function isGrad(spec: InputSpec): boolean {
  return spec.grad ?? (spec.dtype ?? 'f32') === 'f32';
}

/** The forward tolerance of `c` for inputs `x`. */
export function forwardTol(c: KernelCase, x: NDArray[]): Tol {
  return typeof c.tol === 'function' ? c.tol(x) : c.tol;
}

/** The gradient tolerance of `c` for input `input`. */
export function gradientTol(c: KernelCase, x: NDArray[], input: number): Tol {
  if (c.gradTol === undefined) return forwardTol(c, x);
  return typeof c.gradTol === 'function' ? c.gradTol(x, input) : c.gradTol;
}

// ---------------------------------------------------------------------------------------------
// Generators and tolerances (as in test/node/*.test.ts)
// ---------------------------------------------------------------------------------------------

const U =
  (lo: number, hi: number): Gen =>
  (r, n) =>
    r.uniforms(n, lo, hi);
/** Magnitudes in [lo, hi) with random signs: clear of kinks (abs, relu) and poles (div, pow < 0). */
const S =
  (lo: number, hi: number): Gen =>
  (r, n) =>
    r.signed(n, lo, hi);
const N =
  (std: number): Gen =>
  (r, n) =>
    r.normals(n, std);
const INTS =
  (lo: number, hi: number): Gen =>
  (r, n) =>
    r.ints(n, lo, hi);
const PICK =
  (values: number[]): Gen =>
  (r, n) =>
    r.ints(n, 0, values.length).map((i) => values[i]);
/** A 0/1 mask, about 80% ones, the first position always selected (so a loss is never empty). */
const MASK: Gen = (r, n) => r.uniforms(n, 0, 1).map((v, i) => (i === 0 || v < 0.8 ? 1 : 0));

/** One f32 rounding chain of a few operations (the tests' default). */
const F32: Tol = { rtol: 1e-4, atol: 1e-5 };
/** max only compares and copies: bit-exact. */
const EXACT: Tol = { rtol: 0, atol: 1e-30 };
/** f32 sums of n terms of size ~1: the error grows like n eps (`sumTol` in ops.test.ts). */
const sumTol = (n: number): Tol => ({ rtol: 1e-4, atol: Math.max(1e-5, 1e-7 * n) });
/** Dot products of K terms (`dotTol` in ops.test.ts); K is the longest reduction, forward or backward. */
const dotTol = (K: number): Tol => ({ rtol: 1e-4, atol: Math.max(1e-5, 4e-7 * K) });
/** The loss tests: value and gradients. */
const LOSS_VALUE: Tol = { rtol: 1e-4, atol: 1e-6 };
const LOSS_GRAD: Tol = { rtol: 1e-3, atol: 1e-6 };

const scalar = (v: number): NDArray => ({ shape: [], data: Float64Array.of(v) });
const nd = (data: ArrayLike<number>, shape: readonly number[]): NDArray => R.ndarray(data, shape);
const rowsCols = (d: Dims) => [d.rows, d.cols];
const lastDim = (x: NDArray) => x.shape[x.shape.length - 1] ?? 1;

// ---------------------------------------------------------------------------------------------
// Elementwise: unary maps
// ---------------------------------------------------------------------------------------------

type RefUnary = (x: NDArray) => NDArray;
type RefUnaryBack = (g: NDArray, x: NDArray) => [NDArray];

function unaryCase(
  id: string,
  call: string,
  formula: string,
  gen: Gen,
  gpu: (x: Tensor) => Tensor,
  ref: RefUnary,
  back: RefUnaryBack,
  twin: string,
): KernelCase {
  return {
    id,
    label: call,
    group: 'Elementwise: unary',
    formula,
    call,
    twin,
    wgsl: 'elementwise.wgsl',
    inputs: [{ name: 'x', shape: rowsCols, gen }],
    gpu: ([x]) => gpu(x),
    ref: ([x]) => ref(x),
    refBackward: (g, [x]) => back(g, x),
    tol: F32,
  };
}

const UNARY_CASES: KernelCase[] = [
  unaryCase('neg', 'neg(x)', '-x', U(-3, 3), G.neg, R.neg, R.negBackward, 'neg / negBackward'),
  unaryCase('exp', 'exp(x)', 'e^x', U(-4, 4), G.exp, R.exp, R.expBackward, 'exp / expBackward'),
  unaryCase('log', 'log(x)', 'ln x, for x in [0.05, 5)', U(0.05, 5), G.log, R.log, R.logBackward, 'log / logBackward'),
  unaryCase('sqrt', 'sqrt(x)', 'sqrt x, for x in [0.05, 5)', U(0.05, 5), G.sqrt, R.sqrt, R.sqrtBackward, 'sqrt / sqrtBackward'),
  unaryCase('tanh', 'tanh(x)', 'tanh x', U(-4, 4), G.tanh, R.tanh, R.tanhBackward, 'tanh / tanhBackward'),
  unaryCase('abs', 'abs(x)', '|x| (inputs kept clear of the kink at 0)', S(0.01, 3), G.abs, R.abs, R.absBackward, 'abs / absBackward'),
  unaryCase(
    'pow3',
    'pow(x, 3)',
    'x^3, negative bases included',
    S(0.1, 2),
    (x) => G.pow(x, 3),
    (x) => R.pow(x, 3),
    (g, x) => R.powBackward(g, x, 3),
    'pow / powBackward (p = 3)',
  ),
  unaryCase(
    'pow0.5',
    'pow(x, 0.5)',
    'x^0.5, for x in [0.05, 4)',
    U(0.05, 4),
    (x) => G.pow(x, 0.5),
    (x) => R.pow(x, 0.5),
    (g, x) => R.powBackward(g, x, 0.5),
    'pow / powBackward (p = 0.5)',
  ),
  unaryCase('silu', 'silu(x)', 'x sigmoid(x)', U(-6, 6), G.silu, R.silu, R.siluBackward, 'silu / siluBackward'),
  unaryCase(
    'geluTanh',
    'geluTanh(x)',
    'GELU, tanh approximation',
    U(-5, 5),
    G.geluTanh,
    R.geluTanh,
    R.geluTanhBackward,
    'geluTanh / geluTanhBackward',
  ),
  unaryCase('relu', 'relu(x)', 'max(x, 0) (inputs kept clear of 0)', S(0.01, 3), G.relu, R.relu, R.reluBackward, 'relu / reluBackward'),
  unaryCase(
    'scale',
    'scale(x, -0.75, 0.5)',
    '-0.75 x + 0.5',
    U(-3, 3),
    (x) => G.scale(x, -0.75, 0.5),
    (x) => R.scale(x, -0.75, 0.5),
    (g, x) => R.scaleBackward(g, x, -0.75, 0.5),
    'scale / scaleBackward',
  ),
  unaryCase(
    'sigmoidRange',
    'sigmoidRange(x, 1e-4, 2)',
    '1e-4 + (2 - 1e-4) sigmoid(x)',
    U(-8, 8),
    (x) => G.sigmoidRange(x, 1e-4, 2),
    (x) => R.sigmoidRange(x, 1e-4, 2),
    (g, x) => R.sigmoidRangeBackward(g, x, 1e-4, 2),
    'sigmoidRange / sigmoidRangeBackward',
  ),
];

// ---------------------------------------------------------------------------------------------
// Elementwise: binary arithmetic (broadcasting) and where
// ---------------------------------------------------------------------------------------------

type RefBinary = (a: NDArray, b: NDArray) => NDArray;
type RefBinaryBack = (g: NDArray, a: NDArray, b: NDArray) => [NDArray, NDArray];

function binaryCase(
  name: 'add' | 'sub' | 'mul' | 'div',
  symbol: string,
  gpu: (a: Tensor, b: Tensor) => Tensor,
  ref: RefBinary,
  back: RefBinaryBack,
): KernelCase {
  return {
    id: name,
    label: `${name}(a, b)`,
    group: 'Elementwise: binary',
    formula: `a ${symbol} b, b [cols] broadcast over the rows of a [rows, cols]`,
    call: `${name}(a, b)`,
    twin: `${name} / ${name}Backward`,
    wgsl: 'elementwise.wgsl',
    alsoRuns: ['reduce.wgsl'],
    inputs: [
      { name: 'a', shape: rowsCols, gen: U(-2, 2) },
      // Divisors stay away from 0, where a / b and its gradient blow up.
      { name: 'b', shape: (d) => [d.cols], gen: name === 'div' ? S(0.5, 2) : U(-2, 2) },
    ],
    gpu: ([a, b]) => gpu(a, b),
    ref: ([a, b]) => ref(a, b),
    refBackward: (g, [a, b]) => back(g, a, b),
    // The broadcast operand's gradient sums a column of `rows` values.
    tol: F32,
    gradTol: (x, input) => (input === 1 ? sumTol(x[0].shape[0] ?? 1) : F32),
  };
}

const BINARY_CASES: KernelCase[] = [
  binaryCase('add', '+', G.add, R.add, R.addBackward),
  binaryCase('sub', '-', G.sub, R.sub, R.subBackward),
  binaryCase('mul', '*', G.mul, R.mul, R.mulBackward),
  binaryCase('div', '/', G.div, R.div, R.divBackward),
  {
    id: 'where',
    label: 'where(cond, a, b)',
    group: 'Elementwise: binary',
    formula: 'cond ? a : b, with cond [rows, cols] (f32, nonzero = true), a [rows, cols], b [cols] broadcast',
    call: 'where(cond, a, b)',
    twin: 'where / whereBackward',
    wgsl: 'elementwise.wgsl',
    alsoRuns: ['reduce.wgsl'],
    inputs: [
      { name: 'cond', shape: rowsCols, gen: PICK([0, 1, -2.5, 0.001]), grad: false },
      { name: 'a', shape: rowsCols, gen: U(-2, 2) },
      { name: 'b', shape: (d) => [d.cols], gen: U(-2, 2) },
    ],
    gpu: ([c, a, b]) => G.where(c, a, b),
    ref: ([c, a, b]) => R.where(c, a, b),
    refBackward: (g, [c, a, b]) => [null, ...R.whereBackward(g, c, a, b)],
    tol: F32,
    gradTol: (x, input) => (input === 2 ? sumTol(x[0].shape[0] ?? 1) : F32),
  },
];

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

type RefReduce = (x: NDArray, axis?: number) => NDArray;
type RefReduceBack = (g: NDArray, x: NDArray, axis?: number) => [NDArray];

function reduceCase(
  name: 'sum' | 'mean' | 'max',
  lastAxis: boolean,
  gpu: (x: Tensor, axis?: number) => Tensor,
  ref: RefReduce,
  back: RefReduceBack,
): KernelCase {
  const axis = lastAxis ? -1 : undefined;
  const call = lastAxis ? `${name}(x, -1)` : `${name}(x)`;
  return {
    id: `${name}${lastAxis ? 'Rows' : 'All'}`,
    label: `${call}${lastAxis ? ' (last axis)' : ' (all elements)'}`,
    group: 'Reductions',
    formula: `${name} over ${lastAxis ? 'the last axis of x [rows, cols]' : 'every element of x [rows, cols]'}`,
    call,
    twin: `${name} / ${name}Backward`,
    wgsl: 'reduce.wgsl',
    alsoRuns: name === 'max' ? undefined : ['elementwise.wgsl'],
    inputs: [{ name: 'x', shape: rowsCols, gen: U(-1, 1) }],
    gpu: ([x]) => gpu(x, axis),
    ref: ([x]) => ref(x, axis),
    refBackward: (g, [x]) => back(g, x, axis),
    // max is exact (it only compares); sums and means round once per addition.
    tol: (x) => (name === 'max' ? EXACT : sumTol(lastAxis ? lastDim(x[0]) : x[0].data.length)),
    // Every backward is a broadcast (times 1/n for mean) or a select: one rounding at most.
    gradTol: F32,
  };
}

const REDUCE_CASES: KernelCase[] = [
  reduceCase('sum', true, G.sum, R.sum, R.sumBackward),
  reduceCase('mean', true, G.mean, R.mean, R.meanBackward),
  reduceCase('max', true, G.max, R.max, R.maxBackward),
  reduceCase('sum', false, G.sum, R.sum, R.sumBackward),
  reduceCase('mean', false, G.mean, R.mean, R.meanBackward),
  reduceCase('max', false, G.max, R.max, R.maxBackward),
];

// ---------------------------------------------------------------------------------------------
// matmul, softmax, gather
// ---------------------------------------------------------------------------------------------

function matmulCase(transposeB: boolean): KernelCase {
  const options = { transposeB };
  return {
    id: transposeB ? 'matmulTransposeB' : 'matmul',
    label: transposeB ? 'matmul(a, b, { transposeB })' : 'matmul(a, b)',
    group: 'Linear algebra',
    formula: transposeB ? 'a [rows, cols] @ bᵀ, b stored [V, cols]' : 'a [rows, cols] @ b [cols, V]',
    call: transposeB ? 'matmul(a, b, { transposeB: true })' : 'matmul(a, b)',
    twin: 'matmul / matmulBackward',
    wgsl: 'matmul.wgsl',
    inputs: [
      { name: 'a', shape: rowsCols, gen: U(-1, 1) },
      { name: 'b', shape: (d) => (transposeB ? [d.V, d.cols] : [d.cols, d.V]), gen: U(-1, 1) },
    ],
    gpu: ([a, b]) => G.matmul(a, b, options),
    ref: ([a, b]) => R.matmul(a, b, options),
    refBackward: (g, [a, b]) => R.matmulBackward(g, a, b, options),
    // The longest reduction: K forward, N for dA, M for dB.
    tol: ([a, b]) => dotTol(Math.max(...a.shape, ...b.shape)),
  };
}

function softmaxCase(log: boolean): KernelCase {
  const name = log ? 'logSoftmax' : 'softmax';
  return {
    id: name,
    label: `${name}(x)`,
    group: 'Softmax',
    formula: log ? 'x - max - log(sum(exp(x - max))) over the last axis' : 'exp(x - max) / sum(exp(x - max)) over the last axis',
    call: `${name}(x)`,
    twin: `${name} / ${name}Backward`,
    wgsl: 'softmax.wgsl',
    inputs: [{ name: 'x', shape: rowsCols, gen: N(3) }],
    gpu: ([x]) => (log ? G.logSoftmax(x) : G.softmax(x)),
    ref: ([x]) => (log ? R.logSoftmax(x) : R.softmax(x)),
    refBackward: (g, [x]) => (log ? R.logSoftmaxBackward(g, x) : R.softmaxBackward(g, x)),
    tol: F32,
    // The log-softmax backward subtracts softmax * sum(g) over a whole row.
    gradTol: log ? { rtol: 1e-4, atol: 2e-5 } : F32,
  };
}

const LINALG_CASES: KernelCase[] = [
  matmulCase(false),
  matmulCase(true),
  softmaxCase(false),
  softmaxCase(true),
  {
    id: 'gather',
    label: 'gather(table, ids)',
    group: 'Gather',
    formula: 'rows of table [V, cols] at i32 ids [rows] (an id outside [0, V) gives a zero row); scatter-add backward',
    call: 'gather(table, ids)',
    twin: 'gather / gatherBackward',
    wgsl: 'gather.wgsl',
    inputs: [
      { name: 'table', shape: (d) => [d.V, d.cols], gen: U(-2, 2) },
      { name: 'ids', shape: (d) => [d.rows], gen: INTS(0, 6), dtype: 'i32' },
    ],
    // Ids drawn over the whole table (the per-input generator does not know V).
    generate: (rng, [tableShape, idsShape]) => [
      U(-2, 2)(rng, tableShape[0] * tableShape[1]),
      INTS(0, tableShape[0])(
        rng,
        idsShape.reduce((p, s) => p * s, 1),
      ),
    ],
    gpu: ([t, i]) => G.gather(t, i),
    ref: ([t, i]) => R.gather(t, i),
    refBackward: (g, [t, i]) => [...R.gatherBackward(g, t, i), null],
    tol: F32,
  },
];

// ---------------------------------------------------------------------------------------------
// Model ops: norms, RoPE, attention
// ---------------------------------------------------------------------------------------------

const EPS = 1e-5;
const ROPE = { theta: 10000, positionOffset: 3 };

const MODEL_CASES: KernelCase[] = [
  {
    id: 'rmsNorm',
    label: 'rmsNorm(x, weight)',
    group: 'Normalisation',
    formula: 'x weight / sqrt(mean(x²) + 1e-5) over the last axis',
    call: 'rmsNorm(x, weight, 1e-5)',
    twin: 'rmsNorm / rmsNormBackward (src/reference/norm.ts)',
    wgsl: 'norm.wgsl',
    alsoRuns: ['reduce.wgsl'],
    inputs: [
      { name: 'x', shape: rowsCols, gen: U(-2, 2) },
      { name: 'weight', shape: (d) => [d.cols], gen: U(0.5, 1.5) },
    ],
    gpu: ([x, w]) => G.rmsNorm(x, w, EPS),
    ref: ([x, w]) => RNorm.rmsNorm(x, w, EPS),
    refBackward: (g, [x, w]) => RNorm.rmsNormBackward(g, x, w, EPS),
    tol: F32,
    gradTol: { rtol: 2e-4, atol: 2e-5 },
  },
  {
    id: 'layerNorm',
    label: 'layerNorm(x, weight, bias)',
    group: 'Normalisation',
    formula: '(x - mean) / sqrt(var + 1e-5) weight + bias over the last axis (x offset from 0, as in the tests)',
    call: 'layerNorm(x, weight, bias, 1e-5)',
    twin: 'layerNorm / layerNormBackward (src/reference/norm.ts)',
    wgsl: 'norm.wgsl',
    alsoRuns: ['reduce.wgsl'],
    inputs: [
      { name: 'x', shape: rowsCols, gen: U(1, 5) },
      { name: 'weight', shape: (d) => [d.cols], gen: U(0.5, 1.5) },
      { name: 'bias', shape: (d) => [d.cols], gen: U(-0.5, 0.5) },
    ],
    gpu: ([x, w, b]) => G.layerNorm(x, w, b, EPS),
    ref: ([x, w, b]) => RNorm.layerNorm(x, w, b, EPS),
    refBackward: (g, [x, w, b]) => RNorm.layerNormBackward(g, x, w, b, EPS),
    tol: { rtol: 1e-3, atol: 1e-4 },
    gradTol: (_x, input) =>
      [
        { rtol: 2e-3, atol: 2e-4 },
        { rtol: 1e-3, atol: 1e-4 },
        { rtol: 1e-4, atol: 1e-5 },
      ][input],
  },
  {
    id: 'rope',
    label: 'rope(x, { theta: 10000, positionOffset: 3 })',
    group: 'Position & attention',
    formula: 'rotate_half RoPE of x [B, T, H, Dh] by (t + 3) theta^(-2i/Dh)',
    call: 'rope(x, { theta: 10000, positionOffset: 3 })',
    twin: 'rope / ropeBackward (src/reference/rope.ts)',
    wgsl: 'rope.wgsl',
    inputs: [{ name: 'x', shape: (d) => [d.B, d.T, d.H, d.Dh], gen: N(1) }],
    gpu: ([x]) => G.rope(x, ROPE),
    ref: ([x]) => RRope.rope(x, ROPE),
    refBackward: (g, [x]) => RRope.ropeBackward(g, x, ROPE),
    tol: { rtol: 1e-5, atol: 1e-5 },
  },
  {
    id: 'attention',
    label: 'attention(q, k, v, { causal: true })',
    group: 'Position & attention',
    formula: 'softmax(q kᵀ / sqrt(Dh)) v, causal, grouped-query heads (q [B, T, H, Dh], k and v [B, T, Hkv, Dh])',
    call: 'attention(q, k, v, { causal: true })',
    twin: 'attention / attentionBackward (src/reference/attention.ts)',
    wgsl: 'attention.wgsl',
    inputs: [
      { name: 'q', shape: (d) => [d.B, d.T, d.H, d.Dh], gen: N(1) },
      { name: 'k', shape: (d) => [d.B, d.T, d.Hkv, d.Dh], gen: N(1) },
      { name: 'v', shape: (d) => [d.B, d.T, d.Hkv, d.Dh], gen: N(1) },
    ],
    gpu: ([q, k, v]) => G.attention(q, k, v, { causal: true }),
    ref: ([q, k, v]) => RAttention.attention(q, k, v, { causal: true }),
    refBackward: (g, [q, k, v]) => RAttention.attentionBackward(g, q, k, v, { causal: true }),
    tol: F32,
    gradTol: { rtol: 5e-4, atol: 5e-5 },
  },
];

// ---------------------------------------------------------------------------------------------
// Losses (losses.*): 0-d outputs
// ---------------------------------------------------------------------------------------------

const btd = (d: Dims) => [d.B, d.T, d.d];
const bt = (d: Dims) => [d.B, d.T];
const dims3 = (x: NDArray): [number, number, number] => [x.shape[0], x.shape[1], x.shape[2]];

function rowPairCase(name: RowPairLossName, label: string, formula: string, uName: string, vName: string, maskName: string): KernelCase {
  const gpu = G.losses[name];
  return {
    id: name,
    label,
    group: 'Losses',
    formula,
    call: `losses.${name}(${uName}, ${vName}, ${maskName})`,
    twin: `rowPairLossReference('${name}', ...) (src/reference/cosine.ts)`,
    wgsl: 'cosine.wgsl',
    inputs: [
      { name: uName, shape: btd, gen: N(1) },
      { name: vName, shape: btd, gen: N(1) },
      { name: maskName, shape: bt, gen: MASK, grad: false, mask: true },
    ],
    gpu: ([u, v, m]) => gpu(u, v, m),
    ref: ([u, v, m]) => scalar(rowPairLossReference(name, { u: u.data, v: v.data, mask: m.data, shape: dims3(u) }).value),
    refBackward: (g, [u, v, m]) => {
      const r = rowPairLossReference(name, { u: u.data, v: v.data, mask: m.data, shape: dims3(u) }, g.data[0]);
      return [nd(r.gradU, u.shape), nd(r.gradV, v.shape), null];
    },
    tol: LOSS_VALUE,
    gradTol: LOSS_GRAD,
  };
}

/** The median-norm case's `m`: about the median of ||x + mu|| for its generators (E|x + mu|² = 5d/12). */
const medianFor = (d: number): number => Math.sqrt((5 * d) / 12);
const CATALYST = { characteristicLength: 1, exponentOfDecay: 2 };

function miInput(x: NDArray[]) {
  const [B, T, d] = dims3(x[0]);
  return { B, T, d, x: x[0].data, xt: x[1].data, mu: x[2].data, sigma: x[3].data, noiseMask: x[4].data };
}

const LOSS_CASES: KernelCase[] = [
  {
    id: 'distillationCrossEntropy',
    label: 'losses.distillationCrossEntropy',
    group: 'Losses',
    formula: 'mean over L = 1 of -sum_v softmax(z)_v log_softmax(zt)_v; teacher z [B, T, V], student zt, mask L [B, T]',
    call: 'losses.distillationCrossEntropy(teacherLogits, studentLogits, lossMask)',
    twin: 'distillationCrossEntropyReference / ...Backward (src/reference/crossEntropy.ts)',
    wgsl: 'crossEntropy.wgsl',
    inputs: [
      { name: 'teacherLogits', shape: (d) => [d.B, d.T, d.V], gen: N(2), grad: false },
      { name: 'studentLogits', shape: (d) => [d.B, d.T, d.V], gen: N(2) },
      { name: 'lossMask', shape: bt, gen: MASK, grad: false, mask: true },
    ],
    gpu: ([z, zt, m]) => G.losses.distillationCrossEntropy(z, zt, m),
    ref: ([z, zt, m]) => scalar(distillationCrossEntropyReference({ teacher: z.data, student: zt.data, mask: m.data, shape: dims3(zt) })),
    refBackward: (g, [z, zt, m]) => [
      null,
      nd(
        distillationCrossEntropyReferenceBackward({ teacher: z.data, student: zt.data, mask: m.data, shape: dims3(zt) }, g.data[0]),
        zt.shape,
      ),
      null,
    ],
    tol: LOSS_VALUE,
    gradTol: LOSS_GRAD,
  },
  rowPairCase(
    'distillationLayerCosineDistance',
    'losses.distillationLayerCosineDistance',
    'mean over L = 1 of 1 - cos(h, ht), h and ht [B, T, d]',
    'h',
    'ht',
    'lossMask',
  ),
  rowPairCase(
    'distillationLayerL2Distance',
    'losses.distillationLayerL2Distance',
    'mean over L = 1 of ||h - ht||₂, h and ht [B, T, d]',
    'h',
    'ht',
    'lossMask',
  ),
  rowPairCase(
    'inputEmbeddingSimilarity',
    'losses.inputEmbeddingSimilarity',
    'mean over N = 1 of cos(x, xt), x and xt [B, T, d]',
    'x',
    'xt',
    'noiseMask',
  ),
  rowPairCase(
    'absoluteCosineSimilarity',
    'losses.absoluteCosineSimilarity',
    'mean over N = 1 of |cos(x, xt)|, x and xt [B, T, d]',
    'x',
    'xt',
    'noiseMask',
  ),
  {
    id: 'stdLogRatio',
    label: 'losses.stdLogRatio',
    group: 'Losses',
    formula: '-mean over (N = 1, all j) of log(sigma_j / columnStd_j); sigma [B, T, d] > 0, columnStd [d]',
    call: 'losses.stdLogRatio(sigma, columnStd, noiseMask)',
    twin: 'stdLogRatioReference (src/reference/stdLogRatio.ts)',
    wgsl: 'stdLogRatio.wgsl',
    inputs: [
      { name: 'sigma', shape: btd, gen: U(0.2, 2) },
      { name: 'columnStd', shape: (d) => [d.d], gen: U(0.5, 1.5), grad: false },
      { name: 'noiseMask', shape: bt, gen: MASK, grad: false, mask: true },
    ],
    gpu: ([s, c, m]) => G.losses.stdLogRatio(s, c, m),
    ref: ([s, c, m]) => scalar(stdLogRatioReference(s.data, c.data, m.data).value),
    refBackward: (g, [s, c, m]) => [
      nd(
        stdLogRatioReference(s.data, c.data, m.data).gradSigma.map((v) => v * g.data[0]),
        s.shape,
      ),
      null,
      null,
    ],
    tol: LOSS_VALUE,
    gradTol: LOSS_GRAD,
  },
  {
    id: 'medianNormPenalty',
    label: 'losses.medianNormPenalty',
    group: 'Losses',
    formula: 'mean over N = 1 of | ||x + mu||₂ - m |, x and mu [B, T, d], m = sqrt(5d/12)',
    call: 'losses.medianNormPenalty(x, mu, sqrt(5d/12), noiseMask)',
    twin: 'medianNormPenaltyReference (src/reference/medianNorm.ts)',
    wgsl: 'medianNorm.wgsl',
    inputs: [
      { name: 'x', shape: btd, gen: U(-1, 1) },
      { name: 'mu', shape: btd, gen: U(-0.5, 0.5) },
      { name: 'noiseMask', shape: bt, gen: MASK, grad: false, mask: true },
    ],
    gpu: ([x, mu, m]) => G.losses.medianNormPenalty(x, mu, medianFor(x.shape[2]), m),
    ref: ([x, mu, m]) => scalar(medianNormPenaltyReference(x.data, mu.data, medianFor(x.shape[2]), m.data, x.shape[2]).value),
    refBackward: (g, [x, mu, m]) => {
      const r = medianNormPenaltyReference(x.data, mu.data, medianFor(x.shape[2]), m.data, x.shape[2]);
      return [
        nd(
          r.gradX.map((v) => v * g.data[0]),
          x.shape,
        ),
        nd(
          r.gradMu.map((v) => v * g.data[0]),
          mu.shape,
        ),
        null,
      ];
    },
    tol: LOSS_VALUE,
    gradTol: LOSS_GRAD,
  },
  {
    id: 'inverseL2PowerLawCatalyst',
    label: 'losses.inverseL2PowerLawCatalyst',
    group: 'Losses',
    formula: 'mean over N = 1 of (l / max(dmin, 1e-8))^p, dmin = min_v ||xt - E_v||; l = 1, p = 2; xt [B, T, d], E [V, d]',
    call: 'losses.inverseL2PowerLawCatalyst(xt, embeddingTable, noiseMask, { characteristicLength: 1, exponentOfDecay: 2 })',
    twin: 'inverseL2PowerLawCatalystReference (src/reference/catalyst.ts)',
    wgsl: 'catalyst.wgsl',
    alsoRuns: ['medianNorm.wgsl'],
    inputs: [
      { name: 'xt', shape: btd, gen: N(1) },
      { name: 'embeddingTable', shape: (d) => [d.V, d.d], gen: N(1), grad: false },
      { name: 'noiseMask', shape: bt, gen: MASK, grad: false, mask: true },
    ],
    gpu: ([xt, t, m]) => G.losses.inverseL2PowerLawCatalyst(xt, t, m, CATALYST),
    ref: ([xt, t, m]) =>
      scalar(
        inverseL2PowerLawCatalystReference(xt.data, t.data, m.data, xt.shape[2], CATALYST.characteristicLength, CATALYST.exponentOfDecay)
          .value,
      ),
    refBackward: (g, [xt, t, m]) => {
      const r = inverseL2PowerLawCatalystReference(
        xt.data,
        t.data,
        m.data,
        xt.shape[2],
        CATALYST.characteristicLength,
        CATALYST.exponentOfDecay,
      );
      return [
        nd(
          r.gradXt.map((v) => v * g.data[0]),
          xt.shape,
        ),
        null,
        null,
      ];
    },
    tol: LOSS_VALUE,
    gradTol: LOSS_GRAD,
  },
  {
    id: 'mutualInformation',
    label: 'losses.mutualInformation',
    group: 'Losses',
    formula:
      "Monte Carlo mutual information of x and xt = x + N (mu + sigma eps): each half of the batch is the other half's " +
      'Gaussian mixture; x, xt, mu, sigma [B, T, d] (B even), noiseMask N [B, T]',
    call: 'losses.mutualInformation(x, xt, mu, sigma, noiseMask)',
    twin: 'mutualInformationReference / ...Backward (src/reference/mutualInformation.ts)',
    wgsl: 'mutualInformation.wgsl',
    inputs: [
      { name: 'x', shape: btd, gen: N(1) },
      { name: 'xt', shape: btd, gen: N(1) },
      { name: 'mu', shape: btd, gen: N(0.3) },
      { name: 'sigma', shape: btd, gen: U(0.3, 1.2) },
      { name: 'noiseMask', shape: bt, gen: MASK, grad: false, mask: true },
    ],
    // As the cloak makes them (and as the tests draw them): xt = x + N (mu + sigma eps).
    generate: (rng, [shape, , , , maskShape]) => {
      const n = shape.reduce((p, s) => p * s, 1);
      const d = shape[2] ?? 1;
      const x = rng.normals(n);
      const mu = rng.normals(n, 0.3);
      const sigma = rng.uniforms(n, 0.3, 1.2);
      const mask = MASK(
        rng,
        maskShape.reduce((p, s) => p * s, 1),
      );
      const eps = rng.normals(n);
      const xt = x.map((v, e) => v + mask[Math.floor(e / d)] * (mu[e] + sigma[e] * eps[e]));
      return [x, xt, mu, sigma, mask];
    },
    gpu: ([x, xt, mu, sigma, m]) => G.losses.mutualInformation(x, xt, mu, sigma, m),
    ref: (xs) => scalar(mutualInformationReference(miInput(xs))),
    refBackward: (g, xs) => {
      const r = mutualInformationReferenceBackward(miInput(xs), g.data[0]);
      return [nd(r.x, xs[0].shape), nd(r.xt, xs[1].shape), nd(r.mu, xs[2].shape), nd(r.sigma, xs[3].shape), null];
    },
    // As loss-mutualInformation.test.ts: gradients relative to their largest element.
    tol: { rtol: 1e-4, atol: 0 },
    gradTol: { rtol: 1e-3, atol: 0, atolOfMax: 1e-5 },
  },
];

/** Every kernel case, in picker order. */
export const CASES: readonly KernelCase[] = [
  ...UNARY_CASES,
  ...BINARY_CASES,
  ...REDUCE_CASES,
  ...LINALG_CASES,
  ...MODEL_CASES,
  ...LOSS_CASES,
];

/** The case with id `id`, if any. */
export function findCase(id: string): KernelCase | undefined {
  return CASES.find((c) => c.id === id);
}
