/** Learning-rate schedules: plain functions from the step index to a learning rate. */
import { SgtError } from '../gpu/errors';

/** Options of {@link warmupCosine}. */
export interface WarmupCosineOptions {
  /** Peak learning rate, reached by the last warm-up step (>= 0). */
  baseLr: number;
  /** Steps of linear warm-up up to `baseLr` (integer >= 0; 0: start at `baseLr`). */
  warmupSteps: number;
  /**
   * Step at which the cosine reaches `minLr` (integer >= `warmupSteps`, > 0). Omitted: no decay,
   * `baseLr` from the end of the warm-up on.
   */
  totalSteps?: number;
  /** Floor of the decay, held after `totalSteps` (in [0, baseLr], default 0; unused without `totalSteps`). */
  minLr?: number;
}

function finiteAtLeast(name: string, value: unknown, min: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new SgtError(
      'INVALID_OPTION',
      `warmupCosine: '${name}' must be a finite ${integer ? 'integer' : 'number'} >= ${min}, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Linear warm-up then cosine decay. Pass the index of the step about to run (0 for the first),
 * e.g. `opt.setLearningRate('all', lr(step))` before `opt.step()`.
 *
 * - Warm-up: step `s < warmupSteps` runs at `baseLr * (s + 1) / warmupSteps`, so the first step
 *   already moves (at `baseLr / warmupSteps`, never at 0) and the last warm-up step runs at `baseLr`.
 * - Decay: from step `warmupSteps` (at `baseLr`) half a cosine down to `minLr` at `totalSteps`,
 *   and `minLr` after. Without `totalSteps`, `baseLr` from `warmupSteps` on.
 *
 * The `Trainer` uses this schedule (its `learningRate`, `warmupSteps`, `totalSteps` and
 * `minLearningRate` options are these).
 */
export function warmupCosine(options: WarmupCosineOptions): (step: number) => number {
  if (!options || typeof options !== 'object')
    throw new SgtError('INVALID_OPTION', 'warmupCosine: expected { baseLr, warmupSteps, totalSteps?, minLr? }');
  const baseLr = finiteAtLeast('baseLr', options.baseLr, 0, false);
  const warmupSteps = finiteAtLeast('warmupSteps', options.warmupSteps, 0, true);
  const totalSteps =
    options.totalSteps === undefined ? undefined : finiteAtLeast('totalSteps', options.totalSteps, Math.max(1, warmupSteps), true);
  const minLr = finiteAtLeast('minLr', options.minLr ?? 0, 0, false);
  if (totalSteps !== undefined && minLr > baseLr)
    throw new SgtError('INVALID_OPTION', `warmupCosine: 'minLr' (${minLr}) must not exceed 'baseLr' (${baseLr})`);
  return (step: number): number => {
    if (typeof step !== 'number' || Number.isNaN(step) || step < 0) {
      throw new SgtError('INVALID_ARGUMENT', `warmupCosine: step must be a number >= 0, got ${String(step)}`);
    }
    if (step < warmupSteps) return (baseLr * (step + 1)) / warmupSteps;
    if (totalSteps === undefined) return baseLr;
    if (step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / (totalSteps - warmupSteps);
    return minLr + (baseLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}
