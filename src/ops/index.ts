/** Every differentiable op, as plain functions. */
import { setAccumulators } from '../autograd/engine';
import { add, clone, fullLike } from './elementwise';

export {
  abs,
  add,
  clone,
  div,
  exp,
  expand,
  geluTanh,
  log,
  mul,
  neg,
  permute,
  pow,
  relu,
  reshape,
  scale,
  sigmoidRange,
  silu,
  sqrt,
  sub,
  swiglu,
  tanh,
  transpose,
  where,
} from './elementwise';
export { max, mean, sum, type ReduceOptions } from './reduce';
export { sumToShape } from './broadcast';
export { matmul, matmulRowBlocks, type MatmulOptions } from './matmul';
export { logSoftmax, softmax } from './softmax';
export { gather, gatherRowBlocks } from './gather';
export { rmsNorm, layerNorm } from './norm';
export { rope, ropeInverseFrequencies, ROPE_MAX_HEAD_DIM, SUPPORTED_ROPE_TYPES, type RopeOptions, type RopeScaling } from './rope';
export { attention, type AttentionOptions } from './attention';

// Gradient accumulation in backward() uses the same kernels as the ops.
setAccumulators(add, clone, (t) => fullLike(t, 1));
