/**
 * The std-log-ratio loss `-mean over (N=1 positions, all j) of log(sigma_j / s_j)` (LOSSES.md
 * section 2) over `shaders/stdLogRatio.wgsl`.
 */
import source from '../../shaders/stdLogRatio.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkFloatTensor, maskTensor, type MaskInput } from '../tensor/validate';
import { SgtError } from '../gpu/errors';

const WG = 256;
const NAME = 'stdLogRatio';

interface StdLogRatioAttrs {
  rows: number;
  d: number;
  /** The mask was uploaded by this call: keep it (as saved) until the backward, then free it. */
  ownsMask: boolean;
}

function params(rows: number, d: number, partials: number): Uint32Array {
  return new Uint32Array([rows, d, partials, 0]);
}

// Inputs: sigma, columnStd, mask. Saved: the selected count (and an uploaded mask).
const stdLogRatioOp = defineOp<StdLogRatioAttrs>({
  name: NAME,
  forward: ([sigma, columnStd, mask], { rows, d, ownsMask }) => {
    const ctx = getContext();
    const groups = ctx.gridSize(rows * d, WG * 16);
    const partialSum = Tensor.empty([groups]);
    const partialCount = Tensor.empty([groups]);
    const out = Tensor.empty([]);
    const count = Tensor.empty([1]);
    ctx.dispatch({
      shader: source,
      entryPoint: 'stdLogRatioPartials',
      label: NAME,
      resources: {
        sigma: sigma.buffer,
        columnStd: columnStd.buffer,
        mask: mask.buffer,
        partialSum: partialSum.buffer,
        partialCount: partialCount.buffer,
      },
      params: params(rows, d, groups),
      workgroups: [groups],
    });
    ctx.dispatch({
      shader: source,
      entryPoint: 'stdLogRatioFinalize',
      label: NAME,
      resources: { partialSum: partialSum.buffer, partialCount: partialCount.buffer, out: out.buffer, count: count.buffer },
      params: params(rows, d, groups),
      workgroups: [1],
    });
    partialSum.dispose();
    partialCount.dispose();
    return { output: out, saved: ownsMask ? [count, mask] : [count] };
  },
  // d(-mean log(sigma / s)) / dsigma = -1 / (sigma * count * d) on selected positions; columnStd is
  // a statistic of the frozen embedding table and receives none.
  backward: (g, { inputs: [sigma, , mask], saved: [count], attrs: { rows, d } }) => {
    const ctx = getContext();
    const grad = Tensor.empty(sigma.shape);
    ctx.dispatch({
      shader: source,
      entryPoint: 'stdLogRatioBackward',
      label: `${NAME} backward`,
      resources: { sigma: sigma.buffer, mask: mask.buffer, count: count.buffer, gradOut: g.buffer, out: grad.buffer },
      params: params(rows, d, 0),
      workgroups: [ctx.gridSize(rows * d, WG)],
    });
    return [grad, null, null];
  },
});

/**
 * `-mean over (positions with noiseMask = 1, all j) of log(sigma[b, t, j] / columnStd[j])`, a 0-d
 * tensor whose gradient flows to `sigma`.
 *
 * `sigma` is the cloak's `[B, T, d]` scale (positive), `columnStd` the `[d]` population standard
 * deviations of the embedding table's columns (`embeddingStats(E).columnStd`), `noiseMask` `[B, T]`.
 * No selected position gives 0 and a zero gradient.
 */
export function stdLogRatio(sigma: Tensor, columnStd: Tensor, noiseMask: MaskInput): Tensor {
  checkFloatTensor(NAME, 'sigma', sigma, 3);
  checkFloatTensor(NAME, 'columnStd', columnStd, 1);
  const [B, T, d] = sigma.shape;
  if (columnStd.shape[0] !== d) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${NAME}: 'columnStd' has shape ${fmtShape(columnStd.shape)} but 'sigma' has shape ${fmtShape(sigma.shape)}; columnStd needs one value per feature ([${d}])`,
    );
  }
  const { mask, owned } = maskTensor(NAME, 'noiseMask', noiseMask, [B, T]);
  return stdLogRatioOp([sigma, columnStd, mask], { rows: B * T, d, ownsMask: owned });
}
