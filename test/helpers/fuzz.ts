/**
 * Property-based test runs (fast-check), seeded and bounded so that CI stays fast and a failure
 * replays: each property has a fixed seed (its name hashed) and a number of runs, and a time budget
 * that only stops a run far slower than planned (a loaded machine) — it must still make a quarter of
 * its runs. `SGT_FUZZ_RUNS=2000` (runs per property) and `SGT_FUZZ_SEED=n` explore further by hand.
 * A failure prints fast-check's report: the shrunk counterexample, its seed and its path.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { seedOf } from './random';

/** How long and how far one property runs. */
export interface FuzzBudget<T = unknown> {
  /** Runs in CI (default 40); `SGT_FUZZ_RUNS` replaces it. */
  runs?: number;
  /** Milliseconds after which no new run starts (default 20 s); `SGT_FUZZ_RUNS` lifts it. */
  timeMs?: number;
  /** Inputs always tried first (counterexamples found before, kept as regressions). */
  examples?: T[];
}

/** Checks `property` under its own seed and budget, and fails with fast-check's report if it fails. */
export async function fuzz<T>(name: string, property: fc.IRawProperty<T>, budget: FuzzBudget<T> = {}): Promise<void> {
  const manualRuns = Number(process.env.SGT_FUZZ_RUNS) || 0;
  const numRuns = manualRuns || (budget.runs ?? 40);
  const seed = Number(process.env.SGT_FUZZ_SEED) || seedOf(name) | 0;
  const timeMs = manualRuns ? 3_600_000 : (budget.timeMs ?? 20_000);
  const details = await fc.check(property, { seed, numRuns, examples: budget.examples, plugins: [fc.interruptAfterTimeLimit(timeMs)] });
  if (details.failed) {
    const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(`${name}: ${(await fc.asyncDefaultReportMessage(details)) ?? 'failed'}\nIts error: ${cause}`);
  }
  expect(details.numRuns, `${name}: only ${details.numRuns} of ${numRuns} runs within ${timeMs} ms`).toBeGreaterThanOrEqual(
    Math.ceil(numRuns / 4),
  );
}
