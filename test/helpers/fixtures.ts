/**
 * Loads the float64 PyTorch reference cases from ../shared/fixtures (beside the repository, as in
 * CI). Arrays are stored as `{ shape, data }` in row-major order.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** Root of the shared fixtures. */
export const FIXTURES_DIR = resolve(import.meta.dirname, '../../../shared/fixtures');

/** A stored array. */
export interface FixtureArray {
  shape: number[];
  data: number[];
}

/** Names of the loss fixture files. */
export const LOSS_FIXTURES = ['losses-small', 'losses-small-sigma', 'losses-uncombined'] as const;

/** One loss fixture (see LOSSES.md section 6). */
export interface LossFixture {
  B: number;
  T: number;
  d: number;
  V: number;
  combine: boolean;
  ell: number;
  p: number;
  inputs: Record<'E' | 'ids' | 'A' | 'N' | 'L' | 'x' | 'mu' | 'rho' | 'sigma' | 'eps' | 'xt' | 'z' | 'zt' | 'h' | 'ht', FixtureArray>;
  stats: { s: FixtureArray; m: number; r: FixtureArray };
  components: Record<string, { value: number; grad: Record<string, FixtureArray> }>;
}

/** Parses a JSON file under the fixtures folder, failing with the path when it is missing. */
export function readFixtureJson<T>(relativePath: string): T {
  const path = resolve(FIXTURES_DIR, relativePath);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw new Error(`cannot read fixture ${path} (the shared/ folder must sit beside the repository): ${(e as Error).message}`);
  }
}

/** Loads `losses-*.json` by name. */
export function loadLossFixture(name: (typeof LOSS_FIXTURES)[number]): LossFixture {
  return readFixtureJson<LossFixture>(`${name}.json`);
}
