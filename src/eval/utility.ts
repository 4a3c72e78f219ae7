/**
 * Utility as the paper measures it (issue 14, point 2): on held-out text, per position, the
 * teacher's and the student's next-token accuracy against the TRUE next token, the student's
 * perplexity over the teacher's, and the top-1 agreement and mean KL between them. Computed from
 * the final hidden states and the LM head without `[N, V]` logits: the fused head's metric walk
 * (`lmHeadMetricRows`: each side's log-sum-exp and argmax, KL, agreement) and, for the target's
 * logit, one gathered head row per position (`z_t = h . W_t`), so `NLL = LSE - z_t`. The per-row
 * results are read back and summed in float64 on the host (a few floats per position).
 */
import { type Tensor, tensor } from '../tensor/tensor';
import { gatherRowBlocks, mul, reshape, sum } from '../ops/index';
import { lmHeadMetricRows } from '../losses/lmHeadCrossEntropy';

/** The mask rule of every metric: a non-zero value selects (`maskSelects` in the kernels). */
const isSelected = (v: number): boolean => v !== 0;

/** The masks and ids of one batch, host arrays row-major `[B, T]` (a `HostBatch` fits). */
export interface UtilityBatch {
  ids: ArrayLike<number>;
  attentionMask: ArrayLike<number>;
  lossMask: ArrayLike<number>;
  batchSize: number;
  seqLen: number;
}

/** Running sums of {@link utilityOfBatch}; start from {@link emptyUtilitySums}. */
export interface UtilitySums {
  /** Loss-mask positions (agreement and KL). */
  lossPositions: number;
  agree: number;
  kl: number;
  /** Positions with a true next token (loss mask, not the last of its row, next token real). */
  targetPositions: number;
  teacherCorrect: number;
  studentCorrect: number;
  teacherNll: number;
  studentNll: number;
}

/** Utility on held-out text (see the file comment); every rate is in [0, 1]. */
export interface UtilityReport {
  /** Share of target positions where the teacher's argmax is the true next token. */
  teacherAccuracy: number;
  /** The same for the student (the model on transformed embeddings). */
  studentAccuracy: number;
  /** `100 * (teacherAccuracy - studentAccuracy)`: the accuracy lost to the transform, in points. */
  accuracyDropPoints: number;
  /** `exp(mean NLL)` of the true next tokens under the teacher, and under the student. */
  teacherPerplexity: number;
  studentPerplexity: number;
  /** `studentPerplexity / teacherPerplexity` (1: no loss). */
  perplexityRatio: number;
  /** Share of loss positions where the student's top-1 next token equals the teacher's. */
  top1Agreement: number;
  /** Mean KL(teacher || student) per loss position, in nats. */
  meanKL: number;
  /** Loss positions (agreement, KL) and target positions (accuracy, perplexity) counted. */
  lossPositions: number;
  targetPositions: number;
}

/** Zeroed {@link UtilitySums}. */
export function emptyUtilitySums(): UtilitySums {
  return {
    lossPositions: 0,
    agree: 0,
    kl: 0,
    targetPositions: 0,
    teacherCorrect: 0,
    studentCorrect: 0,
    teacherNll: 0,
    studentNll: 0,
  };
}

/** The true next token of each position (`-1` where there is none to score: see {@link UtilitySums}). */
export function nextTokenTargets(batch: UtilityBatch): Int32Array {
  const { batchSize: B, seqLen: T } = batch;
  const targets = new Int32Array(B * T).fill(-1);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const i = b * T + t;
      if (isSelected(batch.lossMask[i]) && isSelected(batch.attentionMask[i + 1])) targets[i] = batch.ids[i + 1];
    }
  }
  return targets;
}

/**
 * The GPU part of one batch's utility: `[N, 6]` metric rows (`lmHeadMetricRows` over the loss
 * mask) and the teacher's and the student's logit of each true next token (`[N]` each; 0 where
 * there is none). Records no graph; the tensors belong to the current scope.
 *
 * @param teacherHidden - `[B, T, d]` f32: the teacher's final hidden states.
 * @param studentHidden - `[B, T, d]` f32: the student's.
 * @param head - the LM head `[V, d]` or its row blocks (`CausalLM.headBlocks()`).
 * @param batch - the batch's ids and masks.
 * @param targets - {@link nextTokenTargets} of the batch.
 */
export function utilityTensors(
  teacherHidden: Tensor,
  studentHidden: Tensor,
  head: Tensor | readonly Tensor[],
  batch: UtilityBatch,
  targets: Int32Array,
): Tensor[] {
  const rows = lmHeadMetricRows(teacherHidden, studentHidden, head, Float32Array.from(batch.lossMask), { fn: 'utilityTensors' });
  if (rows.owned) rows.mask.dispose();
  const n = batch.batchSize * batch.seqLen;
  const d = teacherHidden.shape[2];
  const headRows = gatherRowBlocks(
    Array.isArray(head) ? head : [head as Tensor],
    tensor(
      targets.map((t) => Math.max(t, 0)),
      [n],
      { dtype: 'i32' },
    ),
  );
  const targetLogit = (h: Tensor) => sum(mul(reshape(h, [n, d]), headRows), -1);
  return [rows.rowStats, targetLogit(teacherHidden), targetLogit(studentHidden)];
}

/** Adds one batch's read-back {@link utilityTensors} (`[rowStats, teacherTarget, studentTarget]`) to `sums`. */
export function addUtility(sums: UtilitySums, values: ArrayLike<number>[], batch: UtilityBatch, targets: Int32Array): void {
  const [stats, zt, zs] = values;
  for (let i = 0; i < targets.length; i++) {
    if (!isSelected(batch.lossMask[i])) continue;
    sums.lossPositions++;
    sums.kl += stats[6 * i];
    sums.agree += stats[6 * i + 1];
    const target = targets[i];
    if (target < 0) continue;
    sums.targetPositions++;
    sums.teacherNll += stats[6 * i + 2] - zt[i];
    sums.studentNll += stats[6 * i + 3] - zs[i];
    if (stats[6 * i + 4] === target) sums.teacherCorrect++;
    if (stats[6 * i + 5] === target) sums.studentCorrect++;
  }
}

/** The {@link UtilityReport} of accumulated sums (rates 0 when nothing was counted). */
export function utilityReport(s: UtilitySums): UtilityReport {
  const rate = (a: number, n: number) => (n ? a / n : 0);
  const teacherAccuracy = rate(s.teacherCorrect, s.targetPositions);
  const studentAccuracy = rate(s.studentCorrect, s.targetPositions);
  const teacherNll = rate(s.teacherNll, s.targetPositions);
  const studentNll = rate(s.studentNll, s.targetPositions);
  return {
    teacherAccuracy,
    studentAccuracy,
    accuracyDropPoints: 100 * (teacherAccuracy - studentAccuracy),
    teacherPerplexity: Math.exp(teacherNll),
    studentPerplexity: Math.exp(studentNll),
    perplexityRatio: Math.exp(studentNll - teacherNll),
    top1Agreement: rate(s.agree, s.lossPositions),
    meanKL: rate(s.kl, s.lossPositions),
    lossPositions: s.lossPositions,
    targetPositions: s.targetPositions,
  };
}
