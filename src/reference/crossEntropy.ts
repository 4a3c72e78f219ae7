/**
 * Float64 CPU twin of `src/losses/crossEntropy.ts`: the distillation cross-entropy and its gradient
 * with respect to the student's logits, straight from LOSSES.md (the tests' oracle; no WebGPU).
 */
import { isSelected, selectedCount } from './mask';

/** Arguments of the distillation cross-entropy twin: row-major data of `[B, T, V]` logits. */
export interface CrossEntropyReferenceInput {
  /** Teacher logits `z`, `B * T * V` values. */
  teacher: ArrayLike<number>;
  /** Student logits `zt`, `B * T * V` values. */
  student: ArrayLike<number>;
  /** Loss mask `L`, `B * T` values: non-zero selects (`./mask`). */
  mask: ArrayLike<number>;
  /** `[B, T, V]`. */
  shape: readonly [number, number, number];
}

function check({ teacher, student, mask, shape }: CrossEntropyReferenceInput): [number, number] {
  const [B, T, V] = shape;
  const rows = B * T;
  if (teacher.length !== rows * V || student.length !== rows * V || mask.length !== rows) {
    throw new Error(
      `distillationCrossEntropyReference: lengths ${teacher.length}, ${student.length}, ${mask.length} do not fit shape [${shape.join(',')}]`,
    );
  }
  return [rows, V];
}

/** `m` and `log(sum exp(x - m))` of `x[base .. base + n)`, the max-shifted log-sum-exp parts. */
function logSumExpParts(x: ArrayLike<number>, base: number, n: number): [number, number] {
  let m = -Infinity;
  for (let v = 0; v < n; v++) m = Math.max(m, x[base + v]);
  let s = 0;
  for (let v = 0; v < n; v++) s += Math.exp(x[base + v] - m);
  return [m, Math.log(s)];
}

/** Number of selected rows and whether row `r` is selected (the mask rule, `./mask`). */
function selection(mask: ArrayLike<number>): { count: number; selected: (r: number) => boolean } {
  return { count: selectedCount(mask), selected: (r) => isSelected(mask[r]) };
}

/**
 * `mean over L = 1 of -sum_v softmax(z)_v * log_softmax(zt)_v` in float64 (0 for an empty mask).
 */
export function distillationCrossEntropyReference(input: CrossEntropyReferenceInput): number {
  const [rows, V] = check(input);
  const { teacher, student } = input;
  const { count, selected } = selection(input.mask);
  if (count === 0) return 0;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    if (!selected(r)) continue;
    const base = r * V;
    const [mz, lz] = logSumExpParts(teacher, base, V);
    const [mt, lt] = logSumExpParts(student, base, V);
    let row = 0;
    for (let v = 0; v < V; v++) {
      const p = Math.exp(teacher[base + v] - mz - lz);
      row -= p * (student[base + v] - mt - lt);
    }
    total += row;
  }
  return total / count;
}

/**
 * Gradient of {@link distillationCrossEntropyReference} with respect to the student logits,
 * `(softmax(zt) - softmax(z)) * gradOutput / |L|` on selected rows and 0 elsewhere.
 */
export function distillationCrossEntropyReferenceBackward(input: CrossEntropyReferenceInput, gradOutput = 1): Float64Array {
  const [rows, V] = check(input);
  const { teacher, student } = input;
  const { count, selected } = selection(input.mask);
  const grad = new Float64Array(rows * V);
  if (count === 0) return grad;
  const scale = gradOutput / count;
  for (let r = 0; r < rows; r++) {
    if (!selected(r)) continue;
    const base = r * V;
    const [mz, lz] = logSumExpParts(teacher, base, V);
    const [mt, lt] = logSumExpParts(student, base, V);
    for (let v = 0; v < V; v++) {
      const q = Math.exp(student[base + v] - mt - lt);
      const p = Math.exp(teacher[base + v] - mz - lz);
      grad[base + v] = (q - p) * scale;
    }
  }
  return grad;
}
