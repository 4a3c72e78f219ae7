/**
 * The std-log-ratio loss `-mean over (N=1 positions, all j) of log(sigma_j / s_j)` (LOSSES.md
 * section 2) over `shaders/stdLogRatio.wgsl`: a pass over the rows' pieces (src/losses/rowLayout.ts),
 * a one-workgroup mean, and a backward over the same pieces.
 */
import source from '../../shaders/stdLogRatio.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkFloatTensor, maskTensor, type MaskInput } from '../tensor/validate';
import { SgtError } from '../gpu/errors';
import { rowLayout, rowLayoutParams } from './rowLayout';

const WG = 256;
const NAME = 'stdLogRatio';

interface StdLogRatioAttrs {
  rows: number;
  d: number;
  /** The mask was uploaded by this call: keep it (as saved) until the backward, then free it. */
  ownsMask: boolean;
}

// Inputs: sigma, columnStd, mask. Saved: the selected count (and an uploaded mask).
const stdLogRatioOp = defineOp<StdLogRatioAttrs>({
  name: NAME,
  forward: ([sigma, columnStd, mask], { rows, d, ownsMask }) => {
    const ctx = getContext();
    const layout = rowLayout(ctx, rows, d, WG);
    const params = rowLayoutParams(rows, d, layout);
    const pieces = Tensor.empty([rows * layout.segments]);
    const out = Tensor.empty([]);
    const count = Tensor.empty([1]);
    if (rows > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: layout.vec4 ? 'stdLogRatioPieces' : 'stdLogRatioPiecesRagged',
        label: NAME,
        resources: {
          sigma: sigma.buffer,
          columnStd: columnStd.buffer,
          sigma4: sigma.buffer,
          columnStd4: columnStd.buffer,
          mask: mask.buffer,
          pieces: pieces.buffer,
        },
        params,
        workgroups: [layout.workgroups],
      });
    }
    ctx.dispatch({
      shader: source,
      entryPoint: 'stdLogRatioFinish',
      label: NAME,
      resources: { mask: mask.buffer, pieces: pieces.buffer, out: out.buffer, count: count.buffer },
      params,
      workgroups: [1],
    });
    pieces.dispose();
    return { output: out, saved: ownsMask ? [count, mask] : [count] };
  },
  // d(-mean log(sigma / s)) / dsigma = -1 / (sigma * count * d) on selected positions; columnStd is
  // a statistic of the frozen embedding table and receives none.
  backward: (g, { inputs: [sigma, , mask], saved: [count], attrs: { rows, d } }) => {
    const ctx = getContext();
    const grad = Tensor.empty(sigma.shape);
    if (rows * d > 0) {
      const layout = rowLayout(ctx, rows, d, WG);
      ctx.dispatch({
        shader: source,
        entryPoint: layout.vec4 ? 'stdLogRatioBackward' : 'stdLogRatioBackwardRagged',
        label: `${NAME} backward`,
        resources: {
          sigma: sigma.buffer,
          sigma4: sigma.buffer,
          mask: mask.buffer,
          count: count.buffer,
          gradOut: g.buffer,
          out: grad.buffer,
          out4: grad.buffer,
        },
        params: rowLayoutParams(rows, d, layout),
        workgroups: [layout.workgroups],
      });
    }
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
