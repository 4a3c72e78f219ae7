/**
 * Privacy-weight schedules: the factories' privacy terms (the ones that push the transform away
 * from the clean embeddings) are multiplied by a scale that starts at `startScale` and ramps to 1
 * over `rampSteps` optimizer steps, so that a run starts at the utility end (the cloak starts near
 * the identity, which the utility terms already like) and raises the privacy pressure while the
 * utility terms can still follow. The utility terms (the distillation distances and the
 * cross-entropy) keep their weights.
 *
 * Like `./options`, this module imports nothing but the error type, so that a page can read it.
 */
import { SgtError } from '../gpu/errors';

/** How the scale goes from `startScale` to 1: at once, along a line, or along a half cosine. */
export type PrivacyScheduleShape = 'constant' | 'linear' | 'cosine';

/** The shapes, in the order the CLI's help and the demo list them. */
export const PRIVACY_SCHEDULE_SHAPES: readonly PrivacyScheduleShape[] = Object.freeze(['constant', 'linear', 'cosine']);

/** A privacy-weight schedule (the trainer's `privacySchedule` option). */
export interface PrivacyWeightSchedule {
  /** `constant`: the scale is 1 from the first step (the factory's weights as given). */
  shape: PrivacyScheduleShape;
  /** Steps over which the scale ramps from `startScale` to 1 (ignored by `constant`; 0: no ramp). */
  rampSteps: number;
  /** The scale at step 0, in [0, 1] (default 0: the first step trains utility only). */
  startScale?: number;
}

/**
 * The privacy terms' weight multiplier at optimizer step `step` (0-based, the step about to run):
 * `startScale + (1 - startScale) * r(step / rampSteps)`, with `r(u) = u` (linear) or
 * `(1 - cos(pi u)) / 2` (cosine) for `u < 1`, and 1 from `step >= rampSteps` on (and always for
 * `constant`). Without a schedule the scale is 1.
 */
export function privacyWeightScale(schedule: PrivacyWeightSchedule | null | undefined, step: number): number {
  if (!schedule || schedule.shape === 'constant' || step >= schedule.rampSteps) return 1;
  const start = schedule.startScale ?? 0;
  const u = Math.max(0, step) / schedule.rampSteps;
  const r = schedule.shape === 'linear' ? u : (1 - Math.cos(Math.PI * u)) / 2;
  return start + (1 - start) * r;
}

/**
 * Checks a `privacySchedule` value and returns it with its defaults filled in; throws an
 * `INVALID_OPTION` error naming `where` and the field otherwise.
 */
export function checkPrivacySchedule(value: unknown, where: string): Required<PrivacyWeightSchedule> {
  const fail = (m: string): never => {
    throw new SgtError('INVALID_OPTION', `${where}: ${m}`);
  };
  if (!value || typeof value !== 'object') fail(`'privacySchedule' must be an object { shape, rampSteps, startScale? }`);
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!['shape', 'rampSteps', 'startScale'].includes(key))
      fail(`unknown 'privacySchedule' field '${key}' (known: shape, rampSteps, startScale)`);
  }
  if (!(PRIVACY_SCHEDULE_SHAPES as readonly unknown[]).includes(o.shape))
    fail(`'privacySchedule.shape' must be one of ${PRIVACY_SCHEDULE_SHAPES.join(', ')}, got ${String(o.shape)}`);
  const ramp = o.rampSteps;
  if (typeof ramp !== 'number' || !Number.isInteger(ramp) || ramp < 0)
    fail(`'privacySchedule.rampSteps' must be an integer >= 0, got ${String(ramp)}`);
  const start = o.startScale ?? 0;
  if (typeof start !== 'number' || !(start >= 0 && start <= 1))
    fail(`'privacySchedule.startScale' must be a number in [0, 1], got ${String(start)}`);
  return { shape: o.shape as PrivacyScheduleShape, rampSteps: ramp as number, startScale: start as number };
}

/**
 * A schedule whose ramp is a share of a run: `rampFraction` of `steps` (rounded), the form the
 * CLI (`--privacy-ramp`), the demo and the recommended settings give it in.
 */
export function scheduleForRun(
  shape: PrivacyScheduleShape,
  rampFraction: number,
  steps: number,
  startScale = 0,
): Required<PrivacyWeightSchedule> {
  return { shape, rampSteps: shape === 'constant' ? 0 : Math.round(rampFraction * steps), startScale };
}
