/**
 * Numeric checks of the playground: a GPU result against its float64 twin (the tests' closeness
 * rule). The twin's backward is checked against the op case table's `centralDifference`.
 */
import type { NDArray } from '../../src/reference/index';
import type { Tol } from '../../test/cases/ops';

/** The outcome of comparing one array with its reference. */
export interface Comparison {
  /** What was compared, e.g. `"forward"` or `"d/d x"`. */
  label: string;
  /** Element count. */
  n: number;
  /** Largest `|got - want|`. */
  maxAbs: number;
  /** Largest `|got - want| / |want|` over elements with `want != 0`. */
  maxRel: number;
  /** Largest `|got - want| / (atol + rtol |want|)`: at most 1 passes. */
  worst: number;
  /** Index of the element that gave `worst` (-1 when there is none). */
  worstIndex: number;
  /** The tolerance applied (with `atolOfMax` resolved into `atol`). */
  tol: Tol;
  /** Whether every element passed (and the shapes agreed). */
  pass: boolean;
  /** Why the comparison failed before looking at values (a shape or length mismatch), if it did. */
  problem?: string;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/** Formats a shape as `[2,3]`, like the library's messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/**
 * Compares `got` (shape `gotShape`) with `want` elementwise at `tol`. Two NaNs, or two equal
 * infinities, count as equal; a NaN on one side only fails.
 */
export function compare(label: string, got: ArrayLike<number>, gotShape: readonly number[], want: NDArray, tol: Tol): Comparison {
  let maxWant = 0;
  for (let i = 0; i < want.data.length; i++) if (Number.isFinite(want.data[i])) maxWant = Math.max(maxWant, Math.abs(want.data[i]));
  const atol = Math.max(tol.atol, (tol.atolOfMax ?? 0) * maxWant);
  const applied: Tol = { rtol: tol.rtol, atol };
  const base = { label, n: want.data.length, maxAbs: 0, maxRel: 0, worst: 0, worstIndex: -1, tol: applied };
  if (!sameShape(gotShape, want.shape)) {
    return { ...base, worst: Infinity, pass: false, problem: `shape ${fmtShape(gotShape)}, twin ${fmtShape(want.shape)}` };
  }
  if (got.length !== want.data.length) {
    return { ...base, worst: Infinity, pass: false, problem: `${got.length} values, twin ${want.data.length}` };
  }
  let { maxAbs, maxRel, worst, worstIndex } = base;
  for (let i = 0; i < got.length; i++) {
    const a = got[i];
    const b = want.data[i];
    if (Number.isNaN(a) && Number.isNaN(b)) continue;
    if (!Number.isFinite(b) && a === b) continue;
    const diff = Math.abs(a - b);
    const denominator = atol + tol.rtol * Math.abs(b);
    // A NaN on one side makes diff NaN: an infinite error, never "close". A zero tolerance
    // (atol 0 at want 0) accepts only an exact match.
    const err = Number.isNaN(diff) ? Infinity : denominator > 0 ? diff / denominator : diff === 0 ? 0 : Infinity;
    if (!Number.isNaN(diff)) {
      maxAbs = Math.max(maxAbs, diff);
      if (b !== 0) maxRel = Math.max(maxRel, diff / Math.abs(b));
    } else {
      maxAbs = Infinity;
    }
    if (err > worst || worstIndex < 0) {
      worst = err;
      worstIndex = i;
    }
  }
  return { ...base, maxAbs, maxRel, worst, worstIndex, pass: worst <= 1 };
}

/** One element of a finite-difference check. */
export interface FdPoint {
  /** Which input (its index in the case's inputs). */
  input: number;
  /** Flat index of the element within that input. */
  index: number;
  /** Central difference of `sum(w * twin(x))` with respect to the element. */
  numeric: number;
  /** The twin's backward at the element. */
  analytic: number;
  /** The GPU's gradient at the element (null when the GPU run produced none). */
  gpu: number | null;
  /** `|analytic - numeric| / (atol + rtol |numeric|)`: at most 1 passes. */
  ratio: number;
}
