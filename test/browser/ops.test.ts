/**
 * Every core op against its float64 twin in a real page (Vitest browser mode, headless Chromium,
 * WebGPU on SwiftShader): the cases of the op case table (`test/cases/ops.ts`), GPU forward and
 * backward each against the twin (`test/cases/check.ts`). The twins' own check against finite
 * differences needs no GPU and runs in Node (test/node/ops.test.ts).
 */
import { defineOpCases } from '../cases/check';
import { OP_CASES } from '../cases/ops';
import { browserGpu } from './browser-gpu';

defineOpCases(OP_CASES, { gpu: browserGpu, finiteDifferences: false });
