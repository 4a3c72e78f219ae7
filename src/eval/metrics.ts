/**
 * The training metrics of LOSSES.md section 5, on the GPU over `shaders/metrics.wgsl`: the
 * nearest-neighbour inversion failure rate (privacy) and the teacher/student top-1 agreement and
 * KL divergence (utility). None is differentiable and none records a graph. Each returns a few
 * small tensors, so that a trainer reads every metric of a step with one `readAll`.
 */
import source from '../../shaders/metrics.wgsl?raw';
import { getContext } from '../gpu/context';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkBindingSize, checkFloatTensor, checkLogitsPair, maskTensor, type MaskInput } from '../tensor/validate';
import { nearestRows, tableBlocks, type TableBlocks } from '../losses/catalyst';
import { lmHeadAgreementAndKLRows, type LmHeadCrossEntropyOptions } from '../losses/lmHeadCrossEntropy';
import { SgtError } from '../gpu/errors';

const NN_FN = 'nearestNeighbourInversion';
const COS_FN = 'nearestRowsByCosine';
const KL_FN = 'agreementAndKL';
const HEAD_KL_FN = 'lmHeadAgreementAndKL';

/** Options of {@link nearestRowsByCosine} and {@link nearestNeighbourInversion}. */
export interface CosineSearchOptions {
  /**
   * `|E_v|` of the table's rows (`[V]` f32), e.g. from `embeddingRowNorms(table)`. The table is the
   * frozen base model's, so a trainer can compute this once instead of on every call.
   */
  tableNorms?: Tensor;
}

/** Options of {@link nearestNeighbourInversion}. */
export interface InversionOptions extends CosineSearchOptions {
  /**
   * How "nearest" is measured: `'cosine'` (default: the largest cosine similarity, LOSSES.md
   * section 5) or `'euclidean'` (the smallest L2 distance, which also sees a row's norm; ties to the
   * smaller index). `tableNorms` is used by the cosine search only.
   */
  metric?: 'cosine' | 'euclidean';
}

function checkTableNorms(fn: string, norms: Tensor | undefined, V: number): void {
  if (!norms) return;
  checkFloatTensor(fn, 'tableNorms', norms, 1);
  if (norms.shape[0] !== V) throw new SgtError('SHAPE_MISMATCH', `${fn}: 'tableNorms' has shape ${fmtShape(norms.shape)}; expected [${V}]`);
}

/**
 * The search itself, on checked arguments: the catalyst's tiled nearest-row kernel in its cosine
 * mode (one search kernel for the loss, the Voronoi distances and the metrics).
 */
function cosineSearch(
  queries: Tensor,
  table: readonly Tensor[],
  norms: Tensor | undefined,
  metric: 'cosine' | 'euclidean' = 'cosine',
): Tensor {
  const tableNorms = metric === 'cosine' ? norms : undefined;
  const { index, distance } = nearestRows(queries, table, { metric, tableNorms, indexDtype: 'i32' });
  distance.dispose();
  return index;
}

/**
 * For each row of `queries` (`[P, d]`), the index of the row of `table` (`[V, d]`) with the
 * largest cosine similarity `q . E_v / (|q| |E_v|)`, as a `[P]` i32 tensor. Ties go to the
 * smaller index; a zero-norm row never wins unless every row is zero (then row 0 does); a zero
 * query ties every nonzero row (the first one wins). Tiled over the vocabulary on the GPU: the
 * `P x V` similarity matrix is never stored. The table may be given as row blocks `[V_i, d]` in
 * order (`CausalLM.embeddingBlocks()`: an embedding larger than one storage binding) and may be a
 * packed bf16 / f16 weight: the blocks are searched one after the other and their winners merged
 * with the global row index, which gives the whole table's result. Not differentiable.
 *
 * @throws When a tensor is not f32 (queries) or f32 / bf16 / f16 (the table) of rank 2, the
 *   feature sizes differ, the table has no rows, `tableNorms` has the wrong shape, or a tensor
 *   (or block) exceeds the device's storage binding size.
 */
export function nearestRowsByCosine(queries: Tensor, table: Tensor | readonly Tensor[], options: CosineSearchOptions = {}): Tensor {
  checkFloatTensor(COS_FN, 'queries', queries, 2);
  const t = tableBlocks(COS_FN, 'table', table);
  const [, d] = queries.shape;
  if (d !== t.width)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${COS_FN}: 'queries' has shape ${fmtShape(queries.shape)} but ${t.described}; the rows must have the same length`,
    );
  if (t.rows === 0) throw new SgtError('INVALID_ARGUMENT', `${COS_FN}: 'table' has no rows; a nearest row needs at least one`);
  checkTableNorms(COS_FN, options.tableNorms, t.rows);
  checkBindingSize(COS_FN, 'queries', queries);
  return cosineSearch(queries, t.blocks, options.tableNorms);
}

/** What {@link nearestNeighbourInversion} returns; NN-FR = `failures / count`. */
export interface InversionMetrics {
  /** 0-d f32: selected positions whose nearest vocabulary row (by cosine) is not the true token. */
  failures: Tensor;
  /** 0-d f32: selected (transformed) positions. */
  count: Tensor;
  /** `[B, T]` i32: the nearest vocabulary row of every position, selected or not (the decoding of `xt`). */
  nearest: Tensor;
}

/**
 * The nearest-neighbour inversion attack on a transformed batch: for every position, the
 * vocabulary row nearest to `xt` by cosine similarity (see {@link nearestRowsByCosine}; or by L2
 * distance, option `metric`), and how
 * many of the positions `noiseMask` selects it fails to recover (the true token is not the
 * nearest row). NN-FR = `failures / count`; the higher, the more private. Runs on the GPU
 * without recording a graph.
 *
 * @param xt - `[B, T, d]` f32: the transformed embeddings.
 * @param embeddingTable - `[V, d]`: the base model's input-embedding table, `V >= 1`, or its row
 *   blocks in order (`CausalLM.embeddingBlocks()`); f32 or a packed bf16 / f16 weight (see
 *   {@link nearestRowsByCosine}).
 * @param ids - `[B, T]` i32 (or u32): the true token ids. An id outside `[0, V)` on a selected
 *   position counts as a failure (no row can match it).
 * @param noiseMask - `[B, T]`: an f32 tensor (a non-zero value selects) or host data of 0 and 1; the
 *   positions the transform changed. Unselected positions are never counted.
 * @param options - `metric`: `'cosine'` (default) or `'euclidean'` (NN-FR by L2 distance);
 *   `tableNorms`: precomputed `|E_v|` (`[V]`) to skip their pass (cosine only).
 * @returns `{ failures, count, nearest }`; `failures` and `count` are 0 when nothing is selected.
 * @throws When a shape or dtype is wrong (the message names the function and the argument).
 */
export function nearestNeighbourInversion(
  xt: Tensor,
  embeddingTable: Tensor | readonly Tensor[],
  ids: Tensor,
  noiseMask: MaskInput,
  options: InversionOptions = {},
): InversionMetrics {
  checkFloatTensor(NN_FN, 'xt', xt, 3);
  const table = tableBlocks(NN_FN, 'embeddingTable', embeddingTable);
  const [B, T, d] = xt.shape;
  checkInversionArguments(xt, table, ids);
  checkTableNorms(NN_FN, options.tableNorms, table.rows);
  checkBindingSize(NN_FN, 'xt', xt);
  const metric = options.metric ?? 'cosine';
  if (metric !== 'cosine' && metric !== 'euclidean')
    throw new SgtError('INVALID_OPTION', `${NN_FN}: option 'metric' must be 'cosine' or 'euclidean', got ${String(metric)}`);
  const { mask, owned } = maskTensor(NN_FN, 'noiseMask', noiseMask, [B, T]);
  const ctx = getContext();
  const queries = xt.view([B * T, d]);
  const flat = cosineSearch(queries, table.blocks, options.tableNorms, metric);
  queries.dispose();
  const failures = Tensor.empty([]);
  const count = Tensor.empty([]);
  // Runs even for an empty batch: it is what writes the zeros.
  ctx.dispatch({
    shader: source,
    entryPoint: 'inversionCount',
    label: NN_FN,
    resources: { mask: mask.buffer, nearestIn: flat.buffer, ids: ids.buffer, outFailures: failures.buffer, outCount: count.buffer },
    params: new Uint32Array([B * T, 0, 0, 0]),
    workgroups: [1],
  });
  const nearest = flat.view([B, T]);
  flat.dispose();
  if (owned) mask.dispose();
  return { failures, count, nearest };
}

/** The table's width and size and the ids against `xt` `[B, T, d]`, for {@link nearestNeighbourInversion}. */
function checkInversionArguments(xt: Tensor, table: TableBlocks, ids: Tensor): void {
  const [B, T, d] = xt.shape;
  if (table.width !== d)
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${NN_FN}: 'xt' has shape ${fmtShape(xt.shape)} but ${table.described}; the feature sizes must match`,
    );
  if (table.rows === 0)
    throw new SgtError('INVALID_ARGUMENT', `${NN_FN}: 'embeddingTable' has no rows; the inversion needs at least one vocabulary embedding`);
  if (!(ids instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${NN_FN}: argument 'ids' must be a Tensor`);
  ids.bufferFor(`${NN_FN} (argument 'ids')`);
  if (ids.dtype !== 'i32' && ids.dtype !== 'u32')
    throw new SgtError('DTYPE_MISMATCH', `${NN_FN}: argument 'ids' has dtype ${ids.dtype}; expected i32 (or u32) token ids`);
  if (ids.rank !== 2 || ids.shape[0] !== B || ids.shape[1] !== T) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${NN_FN}: argument 'ids' has shape ${fmtShape(ids.shape)}; expected [${B},${T}] to match 'xt' ${fmtShape(xt.shape)}`,
    );
  }
}

/** What {@link agreementAndKL} returns; agreement rate = `agree / count`, mean KL = `kl / count`. */
export interface AgreementMetrics {
  /** 0-d f32: selected positions where the teacher's and the student's argmax agree. */
  agree: Tensor;
  /** 0-d f32: the SUM over selected positions of KL(softmax(teacher) || softmax(student)), in nats. */
  kl: Tensor;
  /** 0-d f32: selected positions. */
  count: Tensor;
}

/**
 * Top-1 agreement and KL(teacher || student) of next-token predictions, in one fused GPU pass
 * that reads each selected row of both logit tensors once (online maxima, log-sum-exps and
 * argmaxes; no softmax is stored, so vocabularies of 150,000+ cost only their logits), then one
 * small deterministic reduction. Runs without recording a graph.
 *
 * @param teacherLogits - `[B, T, V]` f32, `V >= 1`: the teacher's logits.
 * @param studentLogits - `[B, T, V]` f32: the student's logits (the same shape).
 * @param mask - `[B, T]`: an f32 tensor (a non-zero value selects) or host data of 0 and 1. Unselected
 *   positions are never read (their logits may even be NaN). Selected rows need finite logits.
 * @returns `{ agree, kl, count }`; all 0 when nothing is selected. The argmax takes the first index
 *   on ties; each row's KL is clamped at 0 against rounding.
 * @throws When a shape or dtype is wrong (the message names the function and the argument), or a
 *   logits tensor exceeds the device's storage binding size.
 */
export function agreementAndKL(teacherLogits: Tensor, studentLogits: Tensor, mask: MaskInput): AgreementMetrics {
  const [B, T, V] = checkLogitsPair(KL_FN, teacherLogits, studentLogits, 'teacherLogits');
  const { mask: m, owned } = maskTensor(KL_FN, 'mask', mask, [B, T]);
  const ctx = getContext();
  const rows = B * T;
  const rowStats = Tensor.empty([rows, 2]);
  if (rows > 0) {
    ctx.dispatch({
      shader: source,
      entryPoint: 'agreementKLRows',
      label: KL_FN,
      resources: { teacher: teacherLogits.buffer, student: studentLogits.buffer, mask: m.buffer, rowStats: rowStats.buffer },
      params: new Uint32Array([rows, V, 0, 0]),
      workgroups: [ctx.gridSize(rows, 1)],
    });
  }
  const result = reduceAgreement(KL_FN, rowStats, m);
  if (owned) m.dispose();
  return result;
}

/** Agree, summed KL and count over the selected rows of `rowStats` (`[rows, 2]`: KL, agree); frees `rowStats`. */
function reduceAgreement(fn: string, rowStats: Tensor, mask: Tensor): AgreementMetrics {
  const agree = Tensor.empty([]);
  const kl = Tensor.empty([]);
  const count = Tensor.empty([]);
  // Runs even for an empty batch: it is what writes the zeros.
  getContext().dispatch({
    shader: source,
    entryPoint: 'agreementKLReduce',
    label: fn,
    resources: { mask: mask.buffer, rowStats: rowStats.buffer, outAgree: agree.buffer, outKL: kl.buffer, outCount: count.buffer },
    params: new Uint32Array([rowStats.shape[0], 0, 0, 0]),
    workgroups: [1],
  });
  rowStats.dispose();
  return { agree, kl, count };
}

/**
 * {@link agreementAndKL} of the logits of an LM head, from the teacher's and the student's final
 * hidden states and the head, without ever making the `[B, T, V]` logits: the fused LM head's
 * vocabulary walk (`lmHeadAgreementAndKLRows`, online maxima, log-sum-exps and argmaxes per row),
 * then the same reduction. What the trainer's evaluation uses, so that a vocabulary of 150,000+
 * costs no logits. Runs without recording a graph.
 *
 * @param teacherHidden - `[B, T, d]` f32: the teacher's final hidden states (after the final norm;
 *   `CausalLM.forward({ output: 'hidden' })`).
 * @param studentHidden - `[B, T, d]` f32: the student's.
 * @param head - `[V, d]`, or its row blocks in vocabulary order (`CausalLM.headBlocks()`), f32 or a
 *   packed bf16 / f16 weight; each block must fit one storage binding.
 * @param mask - `[B, T]`: an f32 tensor (a non-zero value selects) or host data of 0 and 1.
 * @param options - the kernels' vocabulary chunk (`chunkColumns`), as for the fused loss.
 * @returns `{ agree, kl, count }` as {@link agreementAndKL} returns them for `h W^T` and `hs W^T`.
 * @throws Before any GPU work, naming the argument: shapes, dtypes, a head block over the binding
 *   limit or that requires grad, an empty vocabulary, a bad mask.
 */
export function lmHeadAgreementAndKL(
  teacherHidden: Tensor,
  studentHidden: Tensor,
  head: Tensor | readonly Tensor[],
  mask: MaskInput,
  options: Pick<LmHeadCrossEntropyOptions, 'chunkColumns'> = {},
): AgreementMetrics {
  checkFloatTensor(HEAD_KL_FN, 'teacherHidden', teacherHidden, 3);
  checkFloatTensor(HEAD_KL_FN, 'studentHidden', studentHidden, 3);
  const rows = lmHeadAgreementAndKLRows(teacherHidden, studentHidden, head, mask, { ...options, fn: HEAD_KL_FN });
  const result = reduceAgreement(HEAD_KL_FN, rows.rowStats, rows.mask);
  if (rows.owned) rows.mask.dispose();
  return result;
}
