/**
 * The import direction of src/ (docs/ARCHITECTURE.md): the repository follows it, and the check
 * catches each kind of violation it exists for.
 */
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without declarations
import { checkLayers, violationsIn } from '../../scripts/check-layers.mjs';

describe('layer check', () => {
  it('finds no import against the layer order in src/', () => {
    expect(checkLayers(resolve(import.meta.dirname, '../../src'))).toEqual([]);
  });

  it('flags an import from a later layer, and allows earlier and same-layer ones', () => {
    expect(violationsIn('models/causalLM.ts', "import { x } from '../factories/distillation';")).toHaveLength(1);
    expect(violationsIn('ops/matmul.ts', "export { y } from '../losses/cosine';")).toHaveLength(1);
    expect(violationsIn('losses/cosine.ts', "import { add } from '../ops/index';\nimport { z } from './maskedMean';")).toEqual([]);
  });

  it('lets a float64 twin import only types from outside src/reference', () => {
    expect(violationsIn('reference/cloak.ts', "import type { TransformerCloak } from '../models/cloak';")).toEqual([]);
    expect(violationsIn('reference/cloak.ts', "import { TransformerCloak } from '../models/cloak';")).toHaveLength(1);
  });

  it('flags a folder missing from the table', () => {
    expect(violationsIn('misc/thing.ts', "import { a } from '../ops/index';")[0].why).toMatch(/not in the layer table/);
  });
});
