/**
 * Float64 CPU twin of `src/losses/lmHeadCrossEntropy.ts`: the distillation cross-entropy of the
 * logits `z = h W^T` (teacher) and `zs = hs W^T` (student) of an LM head given as row blocks, and
 * its gradient with respect to the student's hidden states. Written straight from the formula
 * (full logit rows, a max-shifted log-sum-exp), not from the kernels' chunked online form: the
 * tests' oracle. No WebGPU.
 */
import { isSelected, selectedCount } from './mask';
import { agreementAndKLReference, type AgreementReference } from './metrics';

/** Arguments of the fused LM-head cross-entropy twin (row-major data). */
export interface LmHeadCrossEntropyReferenceInput {
  /** Teacher final hidden states `h`, `rows * hidden` values. */
  teacherHidden: ArrayLike<number>;
  /** Student final hidden states `hs`, `rows * hidden` values. */
  studentHidden: ArrayLike<number>;
  /** The head `W` as row blocks `[V_i, hidden]` in vocabulary order, each `V_i * hidden` values. */
  headBlocks: ReadonlyArray<ArrayLike<number>>;
  /** Loss mask `L`, `rows` values: non-zero selects (`./mask`). */
  mask: ArrayLike<number>;
  /** `N`, the number of hidden rows. */
  rows: number;
  /** `d`, the hidden size. */
  hidden: number;
}

const FN = 'lmHeadDistillationCrossEntropyReference';

function check({ teacherHidden, studentHidden, headBlocks, mask, rows, hidden }: LmHeadCrossEntropyReferenceInput): number {
  if (teacherHidden.length !== rows * hidden || studentHidden.length !== rows * hidden || mask.length !== rows) {
    throw new Error(
      `${FN}: lengths ${teacherHidden.length}, ${studentHidden.length}, ${mask.length} do not fit ${rows} rows of hidden size ${hidden}`,
    );
  }
  let vocab = 0;
  headBlocks.forEach((block, i) => {
    if (block.length % hidden !== 0) throw new Error(`${FN}: head block ${i} has ${block.length} values, not a multiple of ${hidden}`);
    vocab += block.length / hidden;
  });
  if (vocab === 0) throw new Error(`${FN}: the head has no rows`);
  return vocab;
}

/** The logits `x[row] W^T` of one hidden row over every head block, in vocabulary order. */
function logitsOf(x: ArrayLike<number>, row: number, input: LmHeadCrossEntropyReferenceInput, vocab: number): Float64Array {
  const d = input.hidden;
  const out = new Float64Array(vocab);
  let v = 0;
  for (const block of input.headBlocks) {
    for (let i = 0; i < block.length / d; i++, v++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += x[row * d + k] * block[i * d + k];
      out[v] = dot;
    }
  }
  return out;
}

/** `log_softmax` of a row, max-shifted. */
function logSoftmax(z: Float64Array): Float64Array {
  let m = -Infinity;
  for (const v of z) m = Math.max(m, v);
  let s = 0;
  for (const v of z) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return z.map((v) => v - lse);
}

/**
 * `mean over L = 1 of -sum_v softmax(z)_v * log_softmax(zs)_v` with `z = h W^T`, `zs = hs W^T`, in
 * float64 (0 for an empty mask).
 */
export function lmHeadDistillationCrossEntropyReference(input: LmHeadCrossEntropyReferenceInput): number {
  const vocab = check(input);
  const count = selectedCount(input.mask);
  if (count === 0) return 0;
  let total = 0;
  for (let r = 0; r < input.rows; r++) {
    if (!isSelected(input.mask[r])) continue;
    const logP = logSoftmax(logitsOf(input.teacherHidden, r, input, vocab));
    const logQ = logSoftmax(logitsOf(input.studentHidden, r, input, vocab));
    for (let v = 0; v < vocab; v++) total -= Math.exp(logP[v]) * logQ[v];
  }
  return total / count;
}

/**
 * Gradient of {@link lmHeadDistillationCrossEntropyReference} with respect to the student's
 * hidden states, `sum_v (softmax(zs)_v - softmax(z)_v) W_v * gradOutput / |L|` on selected rows
 * and 0 elsewhere (`rows * hidden` values).
 */
export function lmHeadDistillationCrossEntropyReferenceBackward(input: LmHeadCrossEntropyReferenceInput, gradOutput = 1): Float64Array {
  const vocab = check(input);
  const d = input.hidden;
  const grad = new Float64Array(input.rows * d);
  const count = selectedCount(input.mask);
  if (count === 0) return grad;
  const scale = gradOutput / count;
  for (let r = 0; r < input.rows; r++) {
    if (!isSelected(input.mask[r])) continue;
    const logP = logSoftmax(logitsOf(input.teacherHidden, r, input, vocab));
    const logQ = logSoftmax(logitsOf(input.studentHidden, r, input, vocab));
    let v = 0;
    for (const block of input.headBlocks) {
      for (let i = 0; i < block.length / d; i++, v++) {
        const c = (Math.exp(logQ[v]) - Math.exp(logP[v])) * scale;
        for (let k = 0; k < d; k++) grad[r * d + k] += c * block[i * d + k];
      }
    }
  }
  return grad;
}

/**
 * Twin of `lmHeadAgreementAndKLRows` and the metrics built on it: the top-1 agreement (first index
 * on ties) and KL(softmax(z) || softmax(zs)) of the head's logits `z = h W^T`, `zs = hs W^T`, over
 * the selected rows, from the full logit rows in float64 (`agreementAndKLReference` on them).
 */
export function lmHeadAgreementAndKLReference(input: LmHeadCrossEntropyReferenceInput): AgreementReference {
  const vocab = check(input);
  const teacher = new Float64Array(input.rows * vocab);
  const student = new Float64Array(input.rows * vocab);
  for (let r = 0; r < input.rows; r++) {
    // Unselected rows stay 0: the metrics never read them.
    if (!isSelected(input.mask[r])) continue;
    teacher.set(logitsOf(input.teacherHidden, r, input, vocab), r * vocab);
    student.set(logitsOf(input.studentHidden, r, input, vocab), r * vocab);
  }
  return agreementAndKLReference(teacher, student, input.mask, vocab);
}

/** Log-sum-exp (max-shifted) and the first index of the maximum of one logit row. */
function lseAndArgmax(z: Float64Array): { lse: number; arg: number } {
  let arg = 0;
  for (let v = 1; v < z.length; v++) if (z[v] > z[arg]) arg = v;
  let s = 0;
  for (const v of z) s += Math.exp(v - z[arg]);
  return { lse: z[arg] + Math.log(s), arg };
}

/**
 * Twin of `lmHeadMetricRows`: per selected row, `[KL, agree, LSE(z), LSE(zs), argmax z, argmax zs]`
 * of the head's logits in float64 (KL and agreement from `agreementAndKLReference` on the row).
 * Unselected rows are NaN (the kernel leaves them unwritten).
 */
export function lmHeadMetricRowsReference(input: LmHeadCrossEntropyReferenceInput): Float64Array {
  const vocab = check(input);
  const out = new Float64Array(input.rows * 6).fill(Number.NaN);
  for (let r = 0; r < input.rows; r++) {
    if (!isSelected(input.mask[r])) continue;
    const z = logitsOf(input.teacherHidden, r, input, vocab);
    const zs = logitsOf(input.studentHidden, r, input, vocab);
    const { agree, kl } = agreementAndKLReference(z, zs, [1], vocab);
    const t = lseAndArgmax(z);
    const s = lseAndArgmax(zs);
    out.set([kl, agree, t.lse, s.lse, t.arg, s.arg], r * 6);
  }
  return out;
}
