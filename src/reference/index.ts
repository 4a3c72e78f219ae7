/**
 * Float64 CPU twins of the core ops (`src/ops`), forward and backward, used as the reference of the
 * GPU op tests. Not part of the public entry point (`src/index.ts`): it exists for verification
 * only. One file per family, as in `src/ops`: `./shape` (shape arithmetic), `./ndarray` (the twins'
 * tensor), `./elementwise`, `./broadcast` (sumToShape), `./reduce`, `./matmul`, `./softmax`,
 * `./gather`; the model ops' twins are `./norm`, `./rope`, `./attention`.
 *
 * Each op `foo(...)` has a `fooBackward(g, ...sameArguments)` that returns the vector-Jacobian
 * product: the gradients of the op's differentiable inputs given `g`, the gradient of its output,
 * in input order (broadcast operands get their gradient summed back to their own shape).
 *
 * The twins deliberately share no code with `src/ops` (shapes, broadcasting and strides are
 * re-derived here): a test comparing the two then catches a bug in either, not just in the
 * kernels. Everything is plain loops in float64 so that a twin is an accurate and obviously
 * correct reference, not a fast one; keep inputs small. No WebGPU is used in this folder.
 */
export { ndarray, zeros, type NDArray } from './ndarray';
export { broadcastShapes, sizeOf } from './shape';
export {
  abs,
  absBackward,
  add,
  addBackward,
  clone,
  cloneBackward,
  div,
  divBackward,
  exp,
  expBackward,
  expand,
  expandBackward,
  geluTanh,
  geluTanhBackward,
  log,
  logBackward,
  mul,
  mulBackward,
  neg,
  negBackward,
  permute,
  permuteBackward,
  pow,
  powBackward,
  powScalar,
  relu,
  reluBackward,
  reshape,
  reshapeBackward,
  scale,
  scaleBackward,
  sigmoidRange,
  sigmoidRangeBackward,
  silu,
  siluBackward,
  sqrt,
  sqrtBackward,
  sub,
  subBackward,
  swiglu,
  swigluBackward,
  tanh,
  tanhBackward,
  transpose,
  transposeBackward,
  where,
  whereBackward,
} from './elementwise';
export { sumToShape, sumToShapeBackward } from './broadcast';
export { max, maxBackward, mean, meanBackward, sum, sumBackward, type ReduceOptions } from './reduce';
export { matmul, matmulBackward, type MatmulOptions } from './matmul';
export { logSoftmax, logSoftmaxBackward, softmax, softmaxBackward } from './softmax';
export { gather, gatherBackward } from './gather';
export { bits16Value, unpackBits16 } from './packed';
export {
  lmHeadDistillationCrossEntropyReference,
  lmHeadDistillationCrossEntropyReferenceBackward,
  lmHeadAgreementAndKLReference,
  lmHeadMetricRowsReference,
  type LmHeadCrossEntropyReferenceInput,
} from './lmHeadCrossEntropy';
