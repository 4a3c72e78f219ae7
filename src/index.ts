/**
 * sgt-webgpu: train a Stained Glass Transform on WebGPU. This file is the only public entry point.
 * @packageDocumentation
 */
export { init, getContext, GpuContext, type InitOptions, type Dispatch, type BoundResource } from './gpu/context';
export {
  Tensor, tensor, scope, keep, readAll, liveBufferCount, numel,
  type DType, type TensorData, type TensorOptions, type GradNode, type TypedArrayFor,
} from './tensor/tensor';
export { backward, noGrad, isGradEnabled, defineOp, opRegistry, type OpDefinition, type BackwardContext, type BackwardOptions } from './autograd/engine';
export * from './ops/index';
