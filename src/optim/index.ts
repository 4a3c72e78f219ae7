/**
 * The optimizer: fused AdamW, global-norm gradient clipping, learning-rate schedules, and
 * gradient accumulation over micro-batches.
 *
 * Gradient accumulation needs no optimizer support: `backward()` adds into the `.grad` a leaf
 * already has, so k backward passes of `loss_i / k` leave in `.grad` the gradient of the mean of
 * the k losses: for equal-sized micro-batches of a mean loss, the gradient of the whole batch.
 * {@link accumulateGradients} does exactly that; step and zero the gradients after it.
 */
import { noGrad } from '../autograd/engine';
import { add, clone, scale } from '../ops/index';
import { Tensor, fmtShape, scope } from '../tensor/tensor';

export { AdamW, type AdamWOptions, type AdamWState, type AdamWParamState, type ParamGroup } from './adamw';
export { clipGradNorm } from './clip';
export { warmupCosine, type WarmupCosineOptions } from './schedule';

/**
 * Runs forward and backward on each micro-batch with its loss scaled by `1 / k` (k =
 * `microBatches.length`), so the parameters' `.grad` accumulate the gradient of the mean loss.
 * Everything `lossFn` creates is freed after its backward. Returns the mean loss as a detached
 * 0-d tensor (nothing is read back). Gradients already present are added to, not replaced: call
 * `zeroGrad()` before starting a new accumulation.
 *
 * ```ts
 * const loss = accumulateGradients(chunks, (c) => model.loss(c));
 * clipGradNorm(params, 1).dispose(); opt.step(); opt.zeroGrad();
 * ```
 */
export function accumulateGradients<B>(microBatches: readonly B[], lossFn: (batch: B, index: number) => Tensor): Tensor {
  if (!Array.isArray(microBatches) || microBatches.length === 0) {
    throw new Error('accumulateGradients: microBatches must be a non-empty array');
  }
  const k = microBatches.length;
  let total: Tensor | null = null;
  try {
    for (let i = 0; i < k; i++) {
      const previous: Tensor | null = total;
      total = scope(() => {
        const loss = lossFn(microBatches[i], i);
        if (!(loss instanceof Tensor) || loss.size !== 1) {
          throw new Error(
            `accumulateGradients: lossFn must return a one-element tensor, got ${loss instanceof Tensor ? fmtShape(loss.shape) : String(loss)}`,
          );
        }
        const scaled = scale(loss, 1 / k);
        scaled.backward();
        // The running mean is bookkeeping, not part of any graph.
        return noGrad(() => (previous ? add(previous, scaled) : clone(scaled)).view([]));
      });
      previous?.dispose();
    }
  } catch (e) {
    (total as Tensor | null)?.dispose();
    throw e;
  }
  return total!;
}
