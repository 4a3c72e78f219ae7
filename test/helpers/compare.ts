/** Numeric comparison helpers for GPU-vs-reference tests. */
import { expect } from 'vitest';

/** Largest |a - b| / (atol + rtol * |b|) over all elements; <= 1 means "close". */
export function closeness(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const b = expected[i];
    if (Number.isNaN(a) !== Number.isNaN(b)) return Infinity;
    if (!Number.isFinite(b) && a === b) continue;
    worst = Math.max(worst, Math.abs(a - b) / (atol + rtol * Math.abs(b)));
  }
  return worst;
}

/** Asserts elementwise closeness, reporting the worst element on failure. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-4, atol = 1e-5, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let worstIndex = -1;
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / (atol + rtol * Math.abs(expected[i]));
    if (Number.isNaN(err)) {
      worst = NaN;
      worstIndex = i;
      break;
    }
    if (err > worst) {
      worst = err;
      worstIndex = i;
    }
  }
  if (!(worst <= 1)) {
    throw new Error(
      `${what}: element ${worstIndex} is ${actual[worstIndex]}, expected ${expected[worstIndex]} ` +
        `(error ${worst.toFixed(2)}x the tolerance rtol=${rtol}, atol=${atol})`,
    );
  }
}
