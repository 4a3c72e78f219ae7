/**
 * Float64 twins of the optimizer kernels (`shaders/adamw.wgsl`): one AdamW update and global-norm
 * gradient clipping, written the way PyTorch states them, for the tests and the benchmark.
 */

/** Hyperparameters of {@link adamwStepReference} (all required: the twin has no defaults to drift). */
export interface AdamWReferenceHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * One `torch.optim.AdamW` update of one parameter, in place on `param`, `m` and `v`. `step` is
 * the parameter's step count after this update (1 on its first), as PyTorch's `state['step']`.
 */
export function adamwStepReference(
  param: Float64Array,
  grad: ArrayLike<number>,
  m: Float64Array,
  v: Float64Array,
  step: number,
  hyper: AdamWReferenceHyper,
): void {
  const { lr, beta1, beta2, eps, weightDecay } = hyper;
  const n = param.length;
  if (grad.length !== n || m.length !== n || v.length !== n) throw new Error('adamwStepReference: length mismatch');
  if (!Number.isInteger(step) || step < 1) throw new Error(`adamwStepReference: step must be an integer >= 1, got ${step}`);
  const biasCorrection1 = 1 - beta1 ** step;
  const biasCorrection2 = 1 - beta2 ** step;
  const stepSize = lr / biasCorrection1;
  const bias2Sqrt = Math.sqrt(biasCorrection2);
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    // Decoupled weight decay acts on the parameter before the Adam update.
    param[i] *= 1 - lr * weightDecay;
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    const denom = Math.sqrt(v[i]) / bias2Sqrt + eps;
    param[i] -= (stepSize * m[i]) / denom;
  }
}

/** Result of {@link clipGradNormReference}. */
export interface ClipReferenceResult {
  /** Global L2 norm of all gradients before clipping. */
  totalNorm: number;
  /** The factor every gradient was multiplied by: min(1, maxNorm / (totalNorm + 1e-6)). */
  factor: number;
  /** The clipped gradients. */
  clipped: Float64Array[];
}

/** `torch.nn.utils.clip_grad_norm_` (L2) in float64, returning new arrays. */
export function clipGradNormReference(grads: ArrayLike<number>[], maxNorm: number): ClipReferenceResult {
  let sumSquares = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sumSquares += g[i] * g[i];
  const totalNorm = Math.sqrt(sumSquares);
  const factor = Math.min(1, maxNorm / (totalNorm + 1e-6));
  return { totalNorm, factor, clipped: grads.map((g) => Float64Array.from(g, (x) => x * factor)) };
}
