/**
 * `mutualInformationLoss` (LOSSES.md section 3): a Monte Carlo estimate of the mutual information
 * between clean and transformed embeddings, with the micro-batch split into two halves that serve
 * as each other's Gaussian mixture. Kernels: `shaders/mutualInformation.wgsl`.
 */
import source from '../../shaders/mutualInformation.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkFloatTensor, checkSameShape, maskTensor, type MaskInput } from '../tensor/validate';
import { SgtError } from '../gpu/errors';

const FN = 'mutualInformation';
const WG_ITEMS = 64;
const WG_ELEMENTS = 256;
/** Columns per thread of miBackward (its WGSL `SEG`). */
const MI_SEG = 64;

/** Options of {@link mutualInformation}. */
export interface MutualInformationOptions {
  /**
   * `true` (the default, the reference's `combineNoiseMasksForMutualInformationSubBatches`): a
   * query `(i,t)` and a component `(k,t)` pair up only when both are transformed (`N = 1`).
   * `false`: the query must be transformed and the component must be a real token (`A = 1`).
   */
  combineNoiseMasks?: boolean;
  /**
   * The attention mask `A` ([B, T], 0/1), used for the components when `combineNoiseMasks` is
   * false. Without it every component counts.
   */
  attentionMask?: MaskInput;
}

interface MiAttrs {
  B: number;
  T: number;
  d: number;
  queryMask: Tensor;
  /** null: every component counts. */
  componentMask: Tensor | null;
}

function packParams({ B, T, d }: MiAttrs, allComponents: boolean, checkSlot = 0): Uint32Array {
  const half = B / 2;
  const termOffset = B * T * half;
  const flagOffset = termOffset + B * T;
  const statsOffset = flagOffset + B * T;
  const logDetOffset = statsOffset + 2 + B * T;
  return new Uint32Array([B, T, d, half, allComponents ? 1 : 0, termOffset, flagOffset, statsOffset, checkSlot, logDetOffset, 0, 0]);
}

/** Length of the forward's `saved` buffer (see the layout in the WGSL). */
function savedLength(B: number, T: number): number {
  return B * T * (B / 2) + 4 * B * T + 2;
}

/** The check of sigma <= 0 where it is read, reported at the next readback (see `GpuContext.dataCheck`). */
function sigmaCheck() {
  return getContext().dataCheck(
    'mutualInformation sigma',
    (count) =>
      `${FN}: ${count} value(s) of sigma <= 0 (or NaN) at selected positions, where log(sigma) and (y - c) / sigma are ` +
      'undefined: sigma must be positive wherever the masks select it (the cloak keeps it >= its sMin)',
  );
}

const mutualInformationOp = defineOp<MiAttrs>({
  name: 'mutualInformationLoss',
  forward: ([x, xt, mu, sigma], attrs) => {
    const { B, T, d } = attrs;
    const ctx = getContext();
    const params = packParams(attrs, attrs.componentMask === null);
    const centres = Tensor.empty([B, T, d]);
    const saved = Tensor.empty([savedLength(B, T)]);
    const loss = Tensor.empty([]);
    ctx.dispatch({
      shader: source,
      entryPoint: 'miRows',
      label: `${FN} (rows)`,
      resources: { x: x.buffer, mu: mu.buffer, sigma: sigma.buffer, centres: centres.buffer, saved: saved.buffer },
      params,
      workgroups: [ctx.gridSize(B * T, WG_ITEMS)],
    });
    ctx.dispatch({
      shader: source,
      entryPoint: 'miForward',
      label: `${FN} (forward)`,
      resources: {
        // x: read by miRows only, but the reflected layout counts a parameter named x in
        // common.wgsl (logSumExpAdd's) as a use, so the slot exists.
        x: x.buffer,
        xt: xt.buffer,
        sigma: sigma.buffer,
        queryMask: attrs.queryMask.buffer,
        // Bound but never read when every component counts (allComponents = 1).
        componentMask: (attrs.componentMask ?? attrs.queryMask).buffer,
        centres: centres.buffer,
        saved: saved.buffer,
      },
      params,
      workgroups: [ctx.gridSize(B * T, WG_ITEMS)],
    });
    const check = sigmaCheck();
    ctx.dispatch({
      shader: source,
      entryPoint: 'miReduce',
      label: `${FN} (mean)`,
      resources: { saved: saved.buffer, loss: loss.buffer, checks: check.buffer },
      params: packParams(attrs, attrs.componentMask === null, check.slot),
      workgroups: [1],
    });
    return { output: loss, saved: [centres, saved] };
  },
  // One kernel gives all three partials; d/dx equals d/dmu (both enter only through x + mu).
  backward: (g, { inputs: [, xt, , sigma], saved: [centres, saved], attrs }) => {
    const { B, T, d } = attrs;
    const ctx = getContext();
    const gradXt = Tensor.empty([B, T, d]);
    const gradCentre = Tensor.empty([B, T, d]);
    const gradSigma = Tensor.empty([B, T, d]);
    if (B * T * d > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: 'miBackward',
        label: `${FN} (backward)`,
        resources: {
          xt: xt.buffer,
          sigma: sigma.buffer,
          centresIn: centres.buffer,
          savedIn: saved.buffer,
          grad: g.buffer,
          gradXt: gradXt.buffer,
          gradMu: gradCentre.buffer,
          gradSigma: gradSigma.buffer,
        },
        params: packParams(attrs, attrs.componentMask === null),
        workgroups: [ctx.gridSize(B * T * Math.ceil(d / MI_SEG), WG_ELEMENTS)],
      });
    }
    return [gradCentre, gradXt, gradCentre, gradSigma];
  },
});

/**
 * The mutual-information loss of LOSSES.md section 3, as a 0-d tensor that supports `backward()`.
 *
 * The micro-batch is split into halves P (rows `0..B/2-1`) and Q (rows `B/2..B-1`). Every
 * transformed embedding `xt[i,t]` of one half is scored under the mixture of the other half's
 * Gaussians at the same position (centre `x[k,t] + mu[k,t]`, scale `sigma[k,t]`):
 * `term(i,t) = (-log q(xt[i,t]) - Hcond(i,t)) / d`, with `log q` a max-shifted log-sum-exp over
 * the included components minus `log K` and `Hcond(i,t) = sum_j log sigma[i,t,j] + d/2 log(2 pi e)`.
 * The result is one mean over every included `(i,t)` of both directions; a query with no
 * included component is dropped, and an empty set gives 0 with zero gradients.
 *
 * Gradients flow to `xt`, `mu`, `sigma` (taken as independent inputs) and to `x` when it
 * requires grad. All computation is on the GPU; the reduction order is fixed (deterministic).
 *
 * @param x clean embeddings `[B,T,d]` (f32)
 * @param xt transformed embeddings `[B,T,d]`
 * @param mu the transform's means `[B,T,d]`
 * @param sigma the transform's scales `[B,T,d]`, positive wherever the masks select them (a value
 *   <= 0 there makes the next readback throw a named error: the host cannot see it before)
 * @param noiseMask `N` `[B,T]`, 0/1: which positions were transformed
 * @param options `combineNoiseMasks` (default true) and the `attentionMask` used when it is false
 * @throws when a shape differs, a mask is not `[B,T]` 0/1, `d` is 0, or `B` is odd or below 2
 */
export function mutualInformation(
  x: Tensor,
  xt: Tensor,
  mu: Tensor,
  sigma: Tensor,
  noiseMask: MaskInput,
  options: MutualInformationOptions = {},
): Tensor {
  checkFloatTensor(FN, 'x', x, 3);
  checkFloatTensor(FN, 'xt', xt, 3);
  checkFloatTensor(FN, 'mu', mu, 3);
  checkFloatTensor(FN, 'sigma', sigma, 3);
  checkSameShape(FN, 'x', x, 'xt', xt);
  checkSameShape(FN, 'x', x, 'mu', mu);
  checkSameShape(FN, 'x', x, 'sigma', sigma);
  const [B, T, d] = x.shape;
  if (B < 2 || B % 2 !== 0) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${FN}: argument 'x' has batch size B=${B} (shape ${fmtShape(x.shape)}); the micro-batch is split into ` +
        "two equal halves that are each other's mixture, so B must be even and at least 2",
    );
  }
  if (d === 0)
    throw new SgtError('SHAPE_MISMATCH', `${FN}: argument 'x' has hidden size d=0 (shape ${fmtShape(x.shape)}); d must be at least 1`);
  const combine = options.combineNoiseMasks ?? true;
  if (typeof combine !== 'boolean')
    throw new SgtError('INVALID_OPTION', `${FN}: option 'combineNoiseMasks' must be a boolean, got ${String(combine)}`);
  const shape = [B, T] as const;
  const noise = maskTensor(FN, 'noiseMask', noiseMask, shape);
  let attention: { mask: Tensor; owned: boolean } | null = null;
  try {
    if (options.attentionMask !== undefined) attention = maskTensor(FN, 'attentionMask', options.attentionMask, shape);
    const componentMask = combine ? noise.mask : (attention?.mask ?? null);
    return mutualInformationOp([x, xt, mu, sigma], { B, T, d, queryMask: noise.mask, componentMask });
  } finally {
    // The kernels that read an uploaded mask are recorded already; the pool frees it after them.
    if (noise.owned) noise.mask.dispose();
    if (attention?.owned) attention.mask.dispose();
  }
}
