// The declarations of `sgt-webgpu/worker` for TypeScript 5.x: see ./index.d.ts.
/// <reference types="@webgpu/types" />
export * from '../../dist/types/worker/worker.js';
