/**
 * Every core op against its float64 twin (`src/reference/`) on Dawn: the cases of the op case table
 * (`test/cases/ops.ts`), each checked three ways (`test/cases/check.ts`): GPU forward vs the twin,
 * GPU backward vs the twin's backward, and the twin's backward vs central finite differences.
 * Sizes are small but odd (not multiples of the 256-thread workgroups or 64-wide tiles).
 */
import { gpu } from '../gpu';
import { defineOpCases } from '../cases/check';
import { OP_CASES } from '../cases/ops';

defineOpCases(OP_CASES, { gpu, finiteDifferences: true });
