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
import { add, scale } from '../ops/index';
import { Tensor, fmtShape, scope } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

export { AdamW, type AdamWOptions, type AdamWState, type AdamWParamState, type ParamGroup } from './adamw';
export { clipGradNorm } from './clip';
export { warmupCosine, type WarmupCosineOptions } from './schedule';

/** A micro-batch's loss with named one-element tensors (its components, say) to average alongside it. */
export interface LossWithComponents {
  loss: Tensor;
  components: Readonly<Record<string, Tensor>>;
}

/** What {@link accumulateGradients} returns for a {@link LossWithComponents} loss: detached 0-d means over the micro-batches. */
export interface AccumulatedLoss {
  loss: Tensor;
  components: Record<string, Tensor>;
}

/**
 * Runs forward and backward on each micro-batch with its loss scaled by `1 / k` (k =
 * `microBatches.length`; no scaling when k is 1), so the parameters' `.grad` accumulate the
 * gradient of the mean loss. Everything `lossFn` creates is freed after its backward. Returns the
 * mean loss as a detached 0-d tensor (nothing is read back); when `lossFn` returns
 * `{ loss, components }`, returns `{ loss, components }` with the mean of each component too
 * (each micro-batch's value scaled by `1 / k`, summed in micro-batch order). Gradients already
 * present are added to, not replaced: call `zeroGrad()` before starting a new accumulation.
 *
 * ```ts
 * const loss = accumulateGradients(chunks, (c) => model.loss(c));
 * clipGradNorm(params, 1).dispose(); opt.step(); opt.zeroGrad();
 * ```
 */
export function accumulateGradients<B>(microBatches: readonly B[], lossFn: (batch: B, index: number) => Tensor): Tensor;
export function accumulateGradients<B>(
  microBatches: readonly B[],
  lossFn: (batch: B, index: number) => LossWithComponents,
): AccumulatedLoss;
export function accumulateGradients<B>(
  microBatches: readonly B[],
  lossFn: (batch: B, index: number) => Tensor | LossWithComponents,
): Tensor | AccumulatedLoss {
  if (!Array.isArray(microBatches) || microBatches.length === 0) {
    throw new SgtError('INVALID_ARGUMENT', 'accumulateGradients: microBatches must be a non-empty array');
  }
  const k = microBatches.length;
  let total: AccumulatedLoss | null = null;
  let withComponents = false;
  try {
    for (let i = 0; i < k; i++) {
      const previous: AccumulatedLoss | null = total;
      total = scope(() => {
        const result = lossFn(microBatches[i], i);
        withComponents = !(result instanceof Tensor);
        const { loss, components } = result instanceof Tensor ? { loss: result, components: {} } : (result ?? {});
        for (const [name, t] of [['loss', loss] as const, ...Object.entries(components ?? {})]) {
          if (!(t instanceof Tensor) || t.size !== 1) {
            throw new SgtError(
              'INVALID_ARGUMENT',
              `accumulateGradients: lossFn must return a one-element tensor (or { loss, components } of them); '${name}' is ${t instanceof Tensor ? fmtShape(t.shape) : String(t)}`,
            );
          }
        }
        const part = (t: Tensor) => (k === 1 ? t : scale(t, 1 / k));
        const scaled = part(loss);
        scaled.backward();
        // The running means are bookkeeping, not part of any graph: a view shares the storage
        // without the autograd record, and outlives the scope's disposal of the tensor it views.
        return noGrad(() => {
          const mean = (t: Tensor, prev: Tensor | undefined) => (prev ? add(prev, t) : t).view([]);
          const next: AccumulatedLoss = { loss: mean(scaled, previous?.loss), components: {} };
          for (const [name, t] of Object.entries(components)) next.components[name] = mean(part(t), previous?.components[name]);
          return next;
        });
      });
      disposeAccumulated(previous);
    }
  } catch (e) {
    disposeAccumulated(total as AccumulatedLoss | null);
    throw e;
  }
  const done = total as unknown as AccumulatedLoss;
  return withComponents ? done : done.loss;
}

function disposeAccumulated(a: AccumulatedLoss | null): void {
  a?.loss.dispose();
  for (const t of Object.values(a?.components ?? {})) t.dispose();
}
