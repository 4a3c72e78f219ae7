/** The shared last pass of the masked-mean losses, over `shaders/maskedMean.wgsl`. */
import source from '../../shaders/maskedMean.wgsl?raw';
import { getContext } from '../gpu/context';
import { Tensor } from '../tensor/tensor';

/**
 * Mean of `rowLoss` `[rows]` over the rows `mask` selects (non-zero), as a 0-d tensor, and
 * `1/|selected|` (`[1]`, 0 for an empty selection) for the backward. Not differentiable itself:
 * the losses use it inside their own forward and apply the scale in their backward kernel.
 */
export function maskedRowMean(rowLoss: Tensor, mask: Tensor, label: string): { loss: Tensor; lossScale: Tensor } {
  const loss = Tensor.empty([]);
  const lossScale = Tensor.empty([1]);
  getContext().dispatch({
    shader: source,
    entryPoint: 'maskedRowMean',
    label,
    resources: { mask: mask.buffer, rowLoss: rowLoss.buffer, loss: loss.buffer, lossScale: lossScale.buffer },
    params: new Uint32Array([rowLoss.size, 0, 0, 0]),
    workgroups: [1],
  });
  return { loss, lossScale };
}
