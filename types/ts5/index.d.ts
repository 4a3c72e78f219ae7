// The declarations of `sgt-webgpu` for TypeScript 5.x (package.json: `types@<6` in `exports`):
// its DOM library has no WebGPU types, so they come from `@webgpu/types` (a dependency of the
// package). TypeScript 6 and later declare WebGPU in their DOM and WebWorker libraries, which
// `@webgpu/types` would conflict with, and read ../../dist/types directly.
/// <reference types="@webgpu/types" />
export * from '../../dist/types/index.js';
