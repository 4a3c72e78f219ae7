/**
 * The playground's kernel cases: one row per kernel, everything the page needs to run it.
 *
 * A case names its inputs (shapes per size, how random values are drawn, dtype, whether they are
 * differentiated), the library call that runs it on the GPU, its float64 twin from
 * `src/reference/` (forward and backward), its tolerances and the WGSL file it runs (its edited
 * text runs through the library itself: `GpuContext.withShaderSource`). The page (`./main.ts`) is
 * generic over this table.
 *
 * The core ops' cases are the op case table's (`test/cases/ops.ts`, which the Node and browser
 * tests run): the same ops, twins, value ranges and tolerances, shown at this page's size presets.
 * The model ops' and the losses' cases are written here, with the tolerances of their Node tests.
 */
import * as G from '../../src/index';
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
import type { Rng } from '../../test/helpers/random';
import { F32, N, PLAYGROUND_OP_CASES, U, type Dims, type OpCase, type OpInput, type PlaygroundView, type Tol } from '../../test/cases/ops';
import type { ShaderFile } from './shaders';

export { forwardTol, gradientTol, isGrad, type Dims } from '../../test/cases/ops';

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

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

/** One input of a kernel case. */
export interface InputSpec extends Pick<OpInput, 'name' | 'gen' | 'grad'> {
  /** Its shape at each size. */
  shape: (d: Dims) => number[];
  /** Element type (default f32). */
  dtype?: 'f32' | 'i32';
  /**
   * A 0/1 mask. Pasted values are checked: the kernels and twins disagree on other values (some
   * select `== 1`, some `> 0.5`), and the losses take only 0 and 1.
   */
  mask?: boolean;
}

/** A kernel of the playground: how it is shown, its inputs, the library call, its twin and tolerances. */
export interface KernelCase
  extends Omit<PlaygroundView, 'shapes' | 'wgsl' | 'alsoRuns'>,
    Pick<OpCase, 'gpu' | 'ref' | 'refBackward' | 'tol' | 'gradTol'> {
  /** The WGSL file it runs (`shaders/`). */
  wgsl: ShaderFile;
  /** Other kernel files its forward or backward also runs, if any. */
  alsoRuns?: ShaderFile[];
  inputs: InputSpec[];
  /** Draws all inputs together when they depend on each other (overrides the per-input `gen`). */
  generate?: (rng: Rng, shapes: number[][]) => number[][];
}

// ---------------------------------------------------------------------------------------------
// The core ops: the op case table's cases that have a playground view
// ---------------------------------------------------------------------------------------------

function fromOpCase(c: OpCase & { playground: PlaygroundView }): KernelCase {
  const { shapes, ...view } = c.playground;
  return {
    ...view,
    inputs: c.inputs.map((spec, k) => {
      if (spec.dtype === 'u32')
        throw new Error(`playground case '${view.id}': input '${spec.name}' is u32, which the page does not upload`);
      return { name: spec.name, gen: spec.gen, dtype: spec.dtype, grad: spec.grad, shape: (d: Dims) => shapes(d)[k] };
    }),
    gpu: c.gpu,
    ref: c.ref,
    refBackward: c.refBackward,
    tol: c.tol,
    gradTol: c.gradTol,
  };
}

const OP_CASES: KernelCase[] = PLAYGROUND_OP_CASES.map(fromOpCase);

// ---------------------------------------------------------------------------------------------
// Generators and tolerances of the model ops and the losses (as in test/node/*.test.ts)
// ---------------------------------------------------------------------------------------------

/** A 0/1 mask, about 80% ones, the first position always selected (so a loss is never empty). */
const MASK = (r: Rng, n: number): number[] => r.uniforms(n, 0, 1).map((v, i) => (i === 0 || v < 0.8 ? 1 : 0));

/** The loss tests: value and gradients. */
const LOSS_VALUE: Tol = { rtol: 1e-4, atol: 1e-6 };
const LOSS_GRAD: Tol = { rtol: 1e-3, atol: 1e-6 };

const scalar = (v: number): NDArray => ({ shape: [], data: Float64Array.of(v) });
const nd = (data: ArrayLike<number>, shape: readonly number[]): NDArray => R.ndarray(data, shape);
const rowsCols = (d: Dims) => [d.rows, d.cols];

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
export const CASES: readonly KernelCase[] = [...OP_CASES, ...MODEL_CASES, ...LOSS_CASES];

/** The case with id `id`, if any. */
export function findCase(id: string): KernelCase | undefined {
  return CASES.find((c) => c.id === id);
}
