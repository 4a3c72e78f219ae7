/**
 * Float64 CPU twins of the core ops, forward and backward, used as the reference of the GPU op
 * tests. Not part of the public entry point (`src/index.ts`): it exists for verification only.
 */
export * from './ops';
