/** Learning-rate schedules: plain functions from the step index to a learning rate. */

/** Options of {@link warmupCosine}. */
export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of the warm-up (>= 0). */
  baseLr: number;
  /** Steps of linear warm-up from 0 to `baseLr` (integer >= 0; 0: start at `baseLr`). */
  warmupSteps: number;
  /** Step at which the cosine reaches `minLr` (integer >= `warmupSteps`, > 0). */
  totalSteps: number;
  /** Floor of the decay, held after `totalSteps` (in [0, baseLr], default 0). */
  minLr?: number;
}

function finiteAtLeast(name: string, value: unknown, min: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new Error(`warmupCosine: '${name}' must be a finite ${integer ? 'integer' : 'number'} >= ${min}, got ${String(value)}`);
  }
  return value;
}

/**
 * Linear warm-up then cosine decay: `lr(step)` rises from 0 at step 0 to `baseLr` at
 * `warmupSteps`, follows half a cosine down to `minLr` at `totalSteps`, and stays at `minLr`
 * after. Pass the index of the step about to run (0 for the first), e.g.
 * `opt.setLearningRate('all', lr(step))` before `opt.step()`.
 */
export function warmupCosine(options: WarmupCosineOptions): (step: number) => number {
  if (!options || typeof options !== 'object') throw new Error('warmupCosine: expected { baseLr, warmupSteps, totalSteps, minLr? }');
  const baseLr = finiteAtLeast('baseLr', options.baseLr, 0, false);
  const warmupSteps = finiteAtLeast('warmupSteps', options.warmupSteps, 0, true);
  const totalSteps = finiteAtLeast('totalSteps', options.totalSteps, Math.max(1, warmupSteps), true);
  const minLr = finiteAtLeast('minLr', options.minLr ?? 0, 0, false);
  if (minLr > baseLr) throw new Error(`warmupCosine: 'minLr' (${minLr}) must not exceed 'baseLr' (${baseLr})`);
  const decaySteps = totalSteps - warmupSteps;
  return (step: number): number => {
    if (typeof step !== 'number' || Number.isNaN(step) || step < 0) {
      throw new Error(`warmupCosine: step must be a number >= 0, got ${String(step)}`);
    }
    if (step < warmupSteps) return (baseLr * step) / warmupSteps;
    if (step >= totalSteps) return minLr;
    const progress = (step - warmupSteps) / decaySteps;
    return minLr + (baseLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}
