/**
 * The LM head fused with the distillation cross-entropy, over `shaders/lmHeadCrossEntropy.wgsl`:
 * `distillationCrossEntropyLoss` of LOSSES.md on the logits `z = h W^T` of the teacher's and the
 * student's final hidden states, computed without ever making a `[N, V]` tensor. The forward walks
 * the vocabulary in chunks with an online max / log-sum-exp (one dispatch per head block, then a
 * small merge and the masked mean); the backward recomputes the logits window by window from the
 * saved log-sum-exps and adds `(q - p) W` to the student's gradient. Peak scratch: `O(N * window)`
 * bytes (bounded by {@link LmHeadCrossEntropyOptions.maxScratchBytes}), plus `O(N)` statistics.
 * `distillationCrossEntropy` on materialised logits stays the reference path.
 *
 * {@link lmHeadAgreementAndKLRows} walks the head the same way, forward only, for the training
 * metrics (top-1 agreement and KL of the same logits).
 */
import source from '../../shaders/lmHeadCrossEntropy.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import {
  checkBindingBytes,
  checkBindingSize,
  checkFloatTensor,
  checkNumber,
  checkSameShape,
  maskTensor,
  requireWeight,
  weightDtypeCode,
  type MaskInput,
} from '../tensor/validate';
import { maskedRowMean } from './maskedMean';
import { SgtError } from '../gpu/errors';

const FN = 'lmHeadDistillationCrossEntropy';
/** Rows per tile, threads per row, hidden-size step and floats per row summary: as in the WGSL. */
const TR = 16;
const LANES = 16;
const KT = 16;
const WG = TR * LANES;
const FIELDS = 5;
/** Floats per row summary of the metrics kernels (`Agreement` in the WGSL). */
const METRICS_FIELDS = 7;
/** Vocabulary indices are carried as f32 by the metrics kernels: exact below 2^24. */
const MAX_METRICS_VOCAB = 2 ** 24;
const GRAD_TILE = 64;
const DEFAULT_SCRATCH_BYTES = 16 * 2 ** 20;
/** Chunk widths the kernels are built for (LANES * CPT with CPT 16 or 8), widest first. */
const CHUNKS = [256, 128] as const;

/** Options of {@link lmHeadDistillationCrossEntropy}. */
export interface LmHeadCrossEntropyOptions {
  /**
   * Upper bound in bytes on the backward's scratch, a `[N, window]` f32 tensor of `(q - p)` values
   * (default 16 MiB). The window is the largest multiple of the chunk that fits, at least one chunk
   * and at most the largest head block; smaller means more, smaller dispatches.
   */
  maxScratchBytes?: number;
  /**
   * Vocabulary chunk of the kernels, 128 or 256 head rows. By default the widest whose head tile
   * fits the device's `maxComputeWorkgroupStorageSize` (256 needs about 18 KiB, 128 about 10 KiB).
   */
  chunkColumns?: 128 | 256;
}

/** Workgroup memory of the forward and backward-probability kernels for a chunk of `columns` head rows. */
function workgroupBytes(columns: number): number {
  return 4 * (2 * TR * KT + KT * columns) + 4;
}

/**
 * The vocabulary chunk (head rows per workgroup step) used on a device with these limits: the
 * widest of 256 and 128 whose tiles fit `maxComputeWorkgroupStorageSize`.
 */
export function lmHeadChunkColumns(limits: Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize'>): number {
  for (const c of CHUNKS) if (workgroupBytes(c) <= limits.maxComputeWorkgroupStorageSize) return c;
  throw new SgtError(
    'UNSUPPORTED',
    `${FN}: the device's maxComputeWorkgroupStorageSize (${limits.maxComputeWorkgroupStorageSize} bytes) is below the ` +
      `${workgroupBytes(CHUNKS[CHUNKS.length - 1])} bytes the kernels need`,
  );
}

/** How the op splits its work, fixed on the host before any dispatch. */
interface Plan {
  rows: number;
  d: number;
  /** Head rows per chunk and per thread and chunk (the WGSL override CPT). */
  columns: number;
  cpt: number;
  /** Forward: workgroups over row tiles, and sets of chunks (row summaries per row). */
  gridX: number;
  splits: number;
  /** Backward: head rows per window (the width of the `[N, window]` scratch). */
  window: number;
}

/** What a plan is for: the error messages' function, the floats per row summary, and whether a backward follows. */
interface PlanKind {
  fn: string;
  fields: number;
  backward: boolean;
}

const LOSS_PLAN: PlanKind = { fn: FN, fields: FIELDS, backward: true };

function makePlan(rows: number, d: number, blockRows: number[], options: LmHeadCrossEntropyOptions, kind: PlanKind = LOSS_PLAN): Plan {
  const ctx = getContext();
  const { fn, fields } = kind;
  const columns = chunkColumnsOf(fn, options);
  const chunksOfLargest = Math.ceil(Math.max(...blockRows) / columns);
  const rowTiles = Math.ceil(rows / TR);
  const gridX = Math.max(1, Math.min(ctx.maxGridWorkgroups, rowTiles));
  // The row summaries, [splits, rows, fields] f32, must fit one binding too.
  checkBindingBytes(fn, `the row summaries of ${rows} rows`, rows * fields * 4, 'split the batch into smaller micro-batches');
  const fitting = Math.floor(ctx.bindingLimit / (Math.max(rows, 1) * fields * 4));
  const splits = Math.max(1, Math.min(chunksOfLargest, Math.ceil(ctx.maxGridWorkgroups / gridX), fitting));
  const window = kind.backward ? backwardWindow(fn, rows, columns, chunksOfLargest, options) : columns;
  return { rows, d, columns, cpt: columns / LANES, gridX, splits, window };
}

/** The vocabulary chunk: the option, checked against the device, or the widest that fits it. */
function chunkColumnsOf(fn: string, options: LmHeadCrossEntropyOptions): number {
  const limits = getContext().limits;
  if (options.chunkColumns === undefined) return lmHeadChunkColumns(limits);
  if (!(CHUNKS as readonly number[]).includes(options.chunkColumns)) {
    throw new SgtError('INVALID_OPTION', `${fn}: option 'chunkColumns' must be 128 or 256, got ${options.chunkColumns}`);
  }
  const columns = options.chunkColumns;
  if (workgroupBytes(columns) > limits.maxComputeWorkgroupStorageSize) {
    throw new SgtError(
      'LIMIT_EXCEEDED',
      `${fn}: option 'chunkColumns' ${columns} needs ${workgroupBytes(columns)} bytes of workgroup memory, more than this ` +
        `device's maxComputeWorkgroupStorageSize (${limits.maxComputeWorkgroupStorageSize})`,
    );
  }
  return columns;
}

/** The backward's window (head rows per `[N, window]` scratch): within maxScratchBytes and one binding. */
function backwardWindow(fn: string, rows: number, columns: number, chunksOfLargest: number, options: LmHeadCrossEntropyOptions): number {
  const ctx = getContext();
  const scratch = options.maxScratchBytes ?? DEFAULT_SCRATCH_BYTES;
  checkNumber(fn, 'maxScratchBytes', scratch, { positive: true });
  const perRow = 4 * Math.max(rows, 1);
  const bindable = Math.floor(ctx.bindingLimit / perRow / columns);
  if (bindable < 1) {
    throw new SgtError(
      'LIMIT_EXCEEDED',
      `${fn}: ${rows} rows need a scratch of ${rows * columns * 4} bytes for one vocabulary chunk, more than the storage ` +
        `binding limit (${ctx.bindingLimit} bytes); split the batch into smaller micro-batches`,
    );
  }
  const wanted = Math.max(1, Math.floor(scratch / perRow / columns));
  return columns * Math.min(wanted, bindable, chunksOfLargest);
}

function params(
  p: Plan,
  vocab: number,
  extra: { splits?: number; first?: boolean; colStart?: number; width?: number; vocabStart?: number },
): Uint32Array {
  const { splits = 0, first = false, colStart = 0, width = 0, vocabStart = 0 } = extra;
  return new Uint32Array([p.rows, p.d, vocab, splits, first ? 1 : 0, colStart, width, vocabStart]);
}

const lmHeadOp = defineOp<{ plan: Plan; ownedMask: boolean }>({
  name: FN,
  forward: ([teacher, student, mask, ...blocks], { plan, ownedMask }) => {
    const ctx = getContext();
    const { rows } = plan;
    const rowStats = Tensor.empty([rows, 4]);
    const rowLoss = Tensor.empty([rows]);
    if (rows > 0) {
      const state = Tensor.empty([plan.splits, rows, FIELDS]);
      let first = true;
      for (const block of blocks) {
        const vocab = block.shape[0];
        if (vocab === 0) continue;
        ctx.dispatch({
          shader: source,
          entryPoint: 'lmHeadForward',
          label: FN,
          constants: { CPT: plan.cpt, W_DTYPE: weightDtypeCode(block) },
          resources: { teacher: teacher.buffer, student: student.buffer, weight: block.buffer, mask: mask.buffer, state: state.buffer },
          params: params(plan, vocab, { splits: plan.splits, first }),
          workgroups: [plan.gridX, plan.splits],
        });
        first = false;
      }
      ctx.dispatch({
        shader: source,
        entryPoint: 'lmHeadFinish',
        label: `${FN} (finish)`,
        resources: { mask: mask.buffer, state: state.buffer, rowStats: rowStats.buffer, rowLoss: rowLoss.buffer },
        params: params(plan, 0, { splits: plan.splits }),
        workgroups: [ctx.gridSize(rows, WG)],
      });
      state.dispose();
    }
    const { loss, lossScale } = maskedRowMean(rowLoss, mask, FN);
    rowLoss.dispose();
    // A mask uploaded from host data lives as long as the backward may need it.
    return { output: loss, saved: ownedMask ? [rowStats, lossScale, mask] : [rowStats, lossScale] };
  },
  // d(CE)/d(hs) = sum_v (q_v - p_v) W_v * g / |L| on selected rows; the teacher and the head are frozen.
  backward: (g, { inputs, saved: [rowStats, lossScale], attrs: { plan } }) => {
    const [teacher, student, mask, ...blocks] = inputs;
    const grads: (Tensor | null)[] = inputs.map(() => null);
    if (!student.requiresGrad) return grads;
    const ctx = getContext();
    const { rows, d } = plan;
    const gradStudent = Tensor.empty(student.shape);
    grads[1] = gradStudent;
    if (rows === 0) return grads;
    const diff = Tensor.empty([rows, plan.window]);
    const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
    const gradGrid: [number, number] = [Math.min(maxDim, Math.ceil(d / GRAD_TILE)), Math.min(maxDim, Math.ceil(rows / GRAD_TILE))];
    let first = true;
    for (const block of blocks) {
      const vocab = block.shape[0];
      for (let colStart = 0; colStart < vocab; colStart += plan.window) {
        const width = Math.min(plan.window, vocab - colStart);
        const chunks = Math.ceil(width / plan.columns);
        ctx.dispatch({
          shader: source,
          entryPoint: 'lmHeadBackwardProbs',
          label: `${FN} (backward)`,
          constants: { CPT: plan.cpt, W_DTYPE: weightDtypeCode(block) },
          resources: {
            teacher: teacher.buffer,
            student: student.buffer,
            weight: block.buffer,
            mask: mask.buffer,
            savedStats: rowStats.buffer,
            savedScale: lossScale.buffer,
            grad: g.buffer,
            diff: diff.buffer,
          },
          params: params(plan, vocab, { colStart, width }),
          workgroups: [plan.gridX, Math.max(1, Math.min(chunks, Math.ceil(ctx.maxGridWorkgroups / plan.gridX)))],
        });
        ctx.dispatch({
          shader: source,
          entryPoint: 'lmHeadBackwardGrad',
          label: `${FN} (backward)`,
          constants: { W_DTYPE: weightDtypeCode(block) },
          resources: { weight: block.buffer, diff: diff.buffer, gradStudent: gradStudent.buffer },
          params: params(plan, vocab, { first, colStart, width }),
          workgroups: gradGrid,
        });
        first = false;
      }
    }
    diff.dispose();
    return grads;
  },
});

/** The loss mask as a flat GPU tensor of the `rows` hidden rows: `[B, T]` for rank-3 hidden states, `[N]` for rank 2. */
function rowMask(mask: MaskInput, hiddenShape: readonly number[], fn = FN, arg = 'lossMask'): { mask: Tensor; owned: boolean } {
  if (hiddenShape.length === 3) return maskTensor(fn, arg, mask, [hiddenShape[0], hiddenShape[1]]);
  const rows = hiddenShape[0];
  if (mask instanceof Tensor) {
    mask.bufferFor(`${fn} (argument '${arg}')`);
    if (mask.rank !== 1 || mask.shape[0] !== rows) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `${fn}: mask '${arg}' has shape ${fmtShape(mask.shape)}; expected [${rows}] (one value per hidden row)`,
      );
    }
    if (mask.dtype !== 'f32')
      throw new SgtError('DTYPE_MISMATCH', `${fn}: mask '${arg}' has dtype ${mask.dtype}; expected f32 (0.0 / 1.0)`);
    return { mask, owned: false };
  }
  if (mask.length !== rows)
    throw new SgtError('SHAPE_MISMATCH', `${fn}: mask '${arg}' has ${mask.length} values; expected ${rows} (one per hidden row)`);
  return maskTensor(fn, arg, mask, [1, rows]);
}

/**
 * The distillation cross-entropy of LOSSES.md on the logits of an LM head, fused with the head:
 * `mean over L = 1 of LSE(zs) - sum_v p_v zs_v` with `z = teacherHidden W^T`,
 * `zs = studentHidden W^T`, `p = softmax(z)`, without ever materialising `[N, V]` logits (see the
 * file comment). Equal to `distillationCrossEntropy(matmul(h, W^T), matmul(hs, W^T), lossMask)`.
 *
 * @param teacherHidden - `h`, `[B, T, d]` or `[N, d]` f32: the teacher's final hidden states
 *   (after the final norm); a constant (no gradient flows to it, even if it requires grad).
 * @param studentHidden - `hs`, the same shape: the student's; receives the gradient
 *   `sum_v (q_v - p_v) W_v / |L|` (`q = softmax(zs)`) on selected rows and exactly 0 elsewhere.
 * @param headWeight - `W`, `[V, d]`, or its row blocks `[V_i, d]` in vocabulary order (for a head
 *   larger than one storage binding: each block must fit the binding limit; blocks may differ in
 *   size). f32, or a packed `bf16` / `f16` weight (widened as it loads, f32 accumulation). Frozen:
 *   a block that requires grad is refused.
 * @param lossMask - `L`: `[B, T]` for rank-3 hidden states, `[N]` for rank 2; an f32 tensor (a
 *   non-zero value selects a row) or host data of 0 and 1. Unselected rows take no part (their
 *   hidden states may even be NaN).
 * @param options - see {@link LmHeadCrossEntropyOptions}.
 * @returns A 0-d tensor that supports `backward()`; 0 (with zero gradients) when the mask selects
 *   nothing, as `distillationCrossEntropy` does.
 * @throws Before any GPU work, naming the argument: shapes that differ or have the wrong rank, a
 *   hidden size of 0, a head block whose width differs from `d`, an empty vocabulary, a wrong
 *   dtype (hidden states f32; the head f32, bf16 or f16), a head block that requires grad, a tensor over the storage binding limit, a bad mask
 *   or a bad option.
 */
export function lmHeadDistillationCrossEntropy(
  teacherHidden: Tensor,
  studentHidden: Tensor,
  headWeight: Tensor | readonly Tensor[],
  lossMask: MaskInput,
  options: LmHeadCrossEntropyOptions = {},
): Tensor {
  const { rows, d, blocks, blockRows } = checkHeadArguments(FN, teacherHidden, studentHidden, headWeight);
  const plan = makePlan(rows, d, blockRows, options);
  const { mask, owned } = rowMask(lossMask, studentHidden.shape);
  return lmHeadOp([teacherHidden, studentHidden, mask, ...blocks], { plan, ownedMask: owned });
}

/**
 * The hidden states and head of the fused LM-head functions, checked before any GPU work (the
 * messages name `fn` and the argument): returns the rows, the hidden size and the head's blocks.
 */
function checkHeadArguments(
  fn: string,
  teacherHidden: Tensor,
  studentHidden: Tensor,
  headWeight: Tensor | readonly Tensor[],
): { rows: number; d: number; blocks: readonly Tensor[]; blockRows: number[] } {
  checkFloatTensor(fn, 'teacherHidden', teacherHidden);
  checkFloatTensor(fn, 'studentHidden', studentHidden);
  if (studentHidden.rank !== 2 && studentHidden.rank !== 3) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${fn}: argument 'studentHidden' has shape ${fmtShape(studentHidden.shape)}; expected [B, T, d] or [N, d]`,
    );
  }
  checkSameShape(fn, 'teacherHidden', teacherHidden, 'studentHidden', studentHidden);
  const d = studentHidden.shape[studentHidden.rank - 1];
  if (d === 0)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${fn}: 'studentHidden' has shape ${fmtShape(studentHidden.shape)}; the hidden size must not be 0`,
    );
  const blocks = headWeight instanceof Tensor ? [headWeight] : headWeight;
  if (!Array.isArray(blocks) || blocks.length === 0) {
    throw new SgtError('INVALID_ARGUMENT', `${fn}: 'headWeight' must be a [V, d] tensor or a non-empty list of [V_i, d] row blocks`);
  }
  const whole = blocks.length === 1 && headWeight instanceof Tensor;
  for (const [i, block] of blocks.entries()) checkHeadBlock(fn, whole ? 'headWeight' : `headWeight[${i}]`, block, d);
  const blockRows = blocks.map((b) => b.shape[0]);
  if (blockRows.every((v) => v === 0))
    throw new SgtError('INVALID_ARGUMENT', `${fn}: 'headWeight' has no rows; the vocabulary must not be empty`);
  checkBindingSize(fn, 'teacherHidden', teacherHidden);
  checkBindingSize(fn, 'studentHidden', studentHidden);
  return { rows: studentHidden.size / d, d, blocks, blockRows };
}

/** One head block: a live frozen `[V_i, d]` weight (f32, bf16 or f16) that fits one binding. */
function checkHeadBlock(fn: string, arg: string, block: Tensor, d: number): void {
  if (!(block instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${fn}: argument '${arg}' must be a Tensor`);
  block.bufferFor(`${fn} (argument '${arg}')`);
  requireWeight(fn, arg, block);
  if (block.rank !== 2)
    throw new SgtError('SHAPE_MISMATCH', `${fn}: argument '${arg}' has shape ${fmtShape(block.shape)}; expected rank 2 ([V_i, d])`);
  if (block.shape[1] !== d) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${fn}: '${arg}' has shape ${fmtShape(block.shape)}; its rows must have the hidden size d = ${d} of 'studentHidden'`,
    );
  }
  if (block.requiresGrad) {
    throw new SgtError(
      'INVALID_ARGUMENT',
      `${fn}: '${arg}' requires grad, but the fused head is frozen (no gradient reaches it); ` +
        'use distillationCrossEntropy on materialised logits to train the head',
    );
  }
  checkBindingBytes(fn, `'${arg}' of shape ${fmtShape(block.shape)}`, block.byteLength, 'split the head into row blocks that each fit');
}

/**
 * Per-row top-1 agreement and KL(teacher || student) of the LM head's logits `z = h W^T`,
 * `zs = hs W^T`, forward only and without a graph, never making `[N, V]` logits: the kernels walk
 * the head as {@link lmHeadDistillationCrossEntropy} does, keeping per row the online maxima,
 * log-sum-exps, the KL numerator and each side's argmax (the first index on ties).
 *
 * @param teacherHidden - `h`, `[B, T, d]` or `[N, d]` f32.
 * @param studentHidden - `hs`, the same shape.
 * @param headWeight - `W`, `[V, d]` or its row blocks, as for {@link lmHeadDistillationCrossEntropy}
 *   (`V` below 2^24).
 * @param mask - `[B, T]` for rank-3 hidden states, `[N]` for rank 2: an f32 tensor (a non-zero
 *   value selects a row) or host data of 0 and 1. Unselected rows are not computed.
 * @param options - see {@link LmHeadCrossEntropyOptions} (`chunkColumns`); `fn`, the name the
 *   error messages start with (default `lmHeadAgreementAndKLRows`).
 * @returns `rowStats`, `[N, 2]` f32 written on selected rows only: `KL(softmax(z) || softmax(zs))`
 *   (clamped at 0 against rounding), and 1 where the argmaxes agree, else 0 (the layout of
 *   `shaders/metrics.wgsl`'s row statistics); and the mask as a tensor, `owned` when this call
 *   uploaded it (the caller frees it).
 * @throws Before any GPU work, as {@link lmHeadDistillationCrossEntropy} does, and for a
 *   vocabulary of 2^24 rows or more.
 */
export function lmHeadAgreementAndKLRows(
  teacherHidden: Tensor,
  studentHidden: Tensor,
  headWeight: Tensor | readonly Tensor[],
  mask: MaskInput,
  options: LmHeadCrossEntropyOptions & { fn?: string } = {},
): { rowStats: Tensor; mask: Tensor; owned: boolean } {
  return metricRows(teacherHidden, studentHidden, headWeight, mask, options, options.fn ?? 'lmHeadAgreementAndKLRows', false);
}

/**
 * {@link lmHeadAgreementAndKLRows} with each side's log-sum-exp and argmax besides, for utility
 * against the true next token (accuracy: argmax == target; NLL: `LSE - z_target`, the target's
 * logit from one head row). Forward only, without a graph, never making `[N, V]` logits.
 *
 * @param teacherHidden - `h`, `[B, T, d]` or `[N, d]` f32.
 * @param studentHidden - `hs`, the same shape.
 * @param headWeight - `W`, `[V, d]` or its row blocks (`V` below 2^24).
 * @param mask - `[B, T]` or `[N]`, as for {@link lmHeadAgreementAndKLRows}.
 * @param options - `chunkColumns`; `fn`, the name the error messages start with.
 * @returns `rowStats`, `[N, 6]` f32 written on selected rows only: KL(softmax(z) || softmax(zs)),
 *   agreement (1 / 0), `LSE(z)`, `LSE(zs)`, the teacher's argmax and the student's (first index on
 *   ties, as f32); the mask as a tensor, `owned` when this call uploaded it (the caller frees it).
 * @throws Before any GPU work, as {@link lmHeadAgreementAndKLRows} does.
 */
export function lmHeadMetricRows(
  teacherHidden: Tensor,
  studentHidden: Tensor,
  headWeight: Tensor | readonly Tensor[],
  mask: MaskInput,
  options: LmHeadCrossEntropyOptions & { fn?: string } = {},
): { rowStats: Tensor; mask: Tensor; owned: boolean } {
  return metricRows(teacherHidden, studentHidden, headWeight, mask, options, options.fn ?? 'lmHeadMetricRows', true);
}

/** The two metrics-rows functions: 2 fields per row (KL, agreement), or 6 with the LSEs and argmaxes. */
function metricRows(
  teacherHidden: Tensor,
  studentHidden: Tensor,
  headWeight: Tensor | readonly Tensor[],
  mask: MaskInput,
  options: LmHeadCrossEntropyOptions,
  fn: string,
  full: boolean,
): { rowStats: Tensor; mask: Tensor; owned: boolean } {
  const { rows, d, blocks, blockRows } = checkHeadArguments(fn, teacherHidden, studentHidden, headWeight);
  const vocab = blockRows.reduce((a, b) => a + b, 0);
  if (vocab >= MAX_METRICS_VOCAB)
    throw new SgtError('UNSUPPORTED', `${fn}: the head has ${vocab} rows; the metrics support vocabularies below 2^24`);
  const plan = makePlan(rows, d, blockRows, options, { fn, fields: METRICS_FIELDS, backward: false });
  const m = rowMask(mask, studentHidden.shape, fn, 'mask');
  const rowStats = Tensor.empty([rows, full ? 6 : 2]);
  if (rows > 0) dispatchMetrics(fn, plan, teacherHidden, studentHidden, blocks, m.mask, rowStats);
  return { rowStats, mask: m.mask, owned: m.owned };
}

/** The metrics kernels: one forward dispatch per head block, then the per-row finish into `rowStats` ([rows, 2] or [rows, 6]). */
function dispatchMetrics(
  fn: string,
  plan: Plan,
  teacherHidden: Tensor,
  studentHidden: Tensor,
  blocks: readonly Tensor[],
  mask: Tensor,
  rowStats: Tensor,
): void {
  const ctx = getContext();
  const { rows } = plan;
  const state = Tensor.empty([plan.splits, rows, METRICS_FIELDS]);
  let vocabStart = 0;
  for (const block of blocks) {
    const blockVocab = block.shape[0];
    if (blockVocab > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: 'lmHeadMetricsForward',
        label: fn,
        constants: { CPT: plan.cpt, W_DTYPE: weightDtypeCode(block) },
        resources: {
          teacher: teacherHidden.buffer,
          student: studentHidden.buffer,
          weight: block.buffer,
          mask: mask.buffer,
          state: state.buffer,
        },
        params: params(plan, blockVocab, { splits: plan.splits, first: vocabStart === 0, vocabStart }),
        workgroups: [plan.gridX, plan.splits],
      });
    }
    vocabStart += blockVocab;
  }
  ctx.dispatch({
    shader: source,
    entryPoint: rowStats.shape[1] === 6 ? 'lmHeadMetricsFinishRows' : 'lmHeadMetricsFinish',
    label: `${fn} (finish)`,
    resources: { mask: mask.buffer, state: state.buffer, rowStats: rowStats.buffer },
    params: params(plan, 0, { splits: plan.splits }),
    workgroups: [ctx.gridSize(rows, WG)],
  });
  state.dispose();
}
