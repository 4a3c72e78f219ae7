/**
 * The median-norm penalty `mean over N=1 of | ||x + mu||_2 - m |` (LOSSES.md section 2) over
 * `shaders/medianNorm.wgsl`, and the GPU row norms and median selection that give `m` for an
 * embedding table (used by `embeddingStats`).
 */
import source from '../../shaders/medianNorm.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import {
  checkFloatTensor,
  checkNumber,
  checkSameShape,
  maskTensor,
  requireWeight,
  weightDtypeCode,
  type MaskInput,
} from '../tensor/validate';
import { SgtError } from '../gpu/errors';
import { rowLayout, type RowLayout } from './rowLayout';

const WG = 256;
const NAME = 'medianNormPenalty';

/** The kernels' parameters; `layout` splits the penalty's rows into pieces (the other kernels: none). */
function params(rows: number, d: number, median: number | null, layout?: RowLayout): ArrayBuffer {
  const buf = new ArrayBuffer(32);
  const u = new Uint32Array(buf);
  u[0] = rows;
  u[1] = d;
  u[2] = median === null ? 1 : 0;
  new Float32Array(buf)[3] = median ?? 0;
  u[4] = layout?.segments ?? 0;
  u[5] = layout?.segChunks ?? 0;
  return buf;
}

interface MedianNormAttrs {
  /** The median as a number, or null when it is the op's 4th input (a 0-d tensor). */
  median: number | null;
  rows: number;
  d: number;
  /** The mask was uploaded by this call: keep it (as saved) until the backward, then free it. */
  ownsMask: boolean;
}

// Inputs: x, mu, mask[, median tensor]. Saved: per-position norms, the selected count, and the
// mask when this call uploaded it (so that it lives until the backward).
const medianNormOp = defineOp<MedianNormAttrs>({
  name: NAME,
  forward: ([x, mu, mask, medianTensor], { median, rows, d, ownsMask }) => {
    const ctx = getContext();
    const out = Tensor.empty([]);
    const layout = rowLayout(ctx, rows, d, WG);
    const pieces = Tensor.empty([rows * layout.segments]);
    const rowNorm = Tensor.empty([rows]);
    const count = Tensor.empty([1]);
    const p = params(rows, d, median, layout);
    // Without a median tensor the kernels still need a buffer in that slot; they never read it.
    const medianBuffer = (medianTensor ?? mask).buffer;
    if (rows > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: layout.vec4 ? 'medianNormPieces' : 'medianNormPiecesRagged',
        label: NAME,
        resources: { x: x.buffer, mu: mu.buffer, x4: x.buffer, mu4: mu.buffer, mask: mask.buffer, pieces: pieces.buffer },
        params: p,
        workgroups: [layout.workgroups],
      });
    }
    ctx.dispatch({
      shader: source,
      entryPoint: 'medianNormFinish',
      label: NAME,
      resources: { mask: mask.buffer, medianBuffer, pieces: pieces.buffer, rowNorm: rowNorm.buffer, out: out.buffer, count: count.buffer },
      params: p,
      workgroups: [1],
    });
    pieces.dispose();
    return { output: out, saved: ownsMask ? [rowNorm, count, mask] : [rowNorm, count] };
  },
  backward: (g, { inputs: [x, mu, mask, medianTensor], saved: [rowNorm, count], attrs: { median, rows, d } }) => {
    const ctx = getContext();
    const grad = Tensor.empty(x.shape);
    if (rows * d > 0) {
      const layout = rowLayout(ctx, rows, d, WG);
      ctx.dispatch({
        shader: source,
        entryPoint: layout.vec4 ? 'medianNormBackward' : 'medianNormBackwardRagged',
        label: `${NAME} backward`,
        resources: {
          x: x.buffer,
          mu: mu.buffer,
          x4: x.buffer,
          mu4: mu.buffer,
          mask: mask.buffer,
          medianBuffer: (medianTensor ?? mask).buffer,
          rowNorm: rowNorm.buffer,
          count: count.buffer,
          gradOut: g.buffer,
          out: grad.buffer,
          out4: grad.buffer,
        },
        params: params(rows, d, median, layout),
        workgroups: [layout.workgroups],
      });
    }
    // The loss reads only x + mu, so both receive the same gradient (the engine copies it for a
    // second leaf).
    return [x.requiresGrad ? grad : null, mu.requiresGrad ? grad : null, null, null];
  },
});

/**
 * `mean over positions with noiseMask = 1 of | ||x + mu||_2 - medianNorm |`, a 0-d tensor.
 *
 * `x` (the clean embeddings) and `mu` (the cloak's means) are `[B, T, d]`; the gradient flows to
 * `mu`, and to `x` when it requires grad. `medianNorm` is the median row norm of the embedding
 * table (`embeddingStats(E).medianNorm`), a number or a 0-d tensor (which receives no gradient).
 * `noiseMask` is `[B, T]` (a 0/1 f32 tensor or host array). No selected position gives 0 and zero
 * gradients.
 */
export function medianNormPenalty(x: Tensor, mu: Tensor, medianNorm: number | Tensor, noiseMask: MaskInput): Tensor {
  checkFloatTensor(NAME, 'x', x, 3);
  checkFloatTensor(NAME, 'mu', mu);
  checkSameShape(NAME, 'x', x, 'mu', mu);
  let medianTensor: Tensor | null = null;
  if (medianNorm instanceof Tensor) {
    checkFloatTensor(NAME, 'medianNorm', medianNorm);
    if (medianNorm.rank !== 0)
      throw new SgtError(
        'SHAPE_MISMATCH',
        `${NAME}: argument 'medianNorm' has shape ${fmtShape(medianNorm.shape)}; expected a 0-d tensor or a number`,
      );
    medianTensor = medianNorm;
  } else {
    checkNumber(NAME, 'medianNorm', medianNorm);
  }
  const [B, T, d] = x.shape;
  const { mask, owned } = maskTensor(NAME, 'noiseMask', noiseMask, [B, T]);
  const inputs = medianTensor ? [x, mu, mask, medianTensor] : [x, mu, mask];
  return medianNormOp(inputs, { median: medianTensor ? null : (medianNorm as number), rows: B * T, d, ownsMask: owned });
}

/**
 * `||E_v||_2` (or `||E_v||_2^2` with `squared`) of every row of a `[V, d]` table, as a `[V]` f32
 * tensor. The table may be a packed `bf16` / `f16` weight (widened as it loads). Not
 * differentiable (statistics of a frozen table).
 */
export function embeddingRowNorms(table: Tensor, squared = false): Tensor {
  if (!(table instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', "embeddingRowNorms: argument 'table' must be a Tensor");
  table.bufferFor("embeddingRowNorms (argument 'table')");
  requireWeight('embeddingRowNorms', 'table', table);
  if (table.rank !== 2)
    throw new SgtError('SHAPE_MISMATCH', `embeddingRowNorms: argument 'table' has shape ${fmtShape(table.shape)}; expected rank 2`);
  const [V, d] = table.shape;
  const out = Tensor.empty([V]);
  if (V === 0) return out;
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'rowNorms',
    label: 'embeddingRowNorms',
    constants: { SQUARED: squared ? 1 : 0, TABLE_DTYPE: weightDtypeCode(table) },
    resources: { table: table.buffer, out: out.buffer },
    params: params(V, d, 0),
    workgroups: [ctx.gridSize(V, WG)],
  });
  return out;
}

/**
 * The median of the values of a 1-D tensor, all `>= 0` (the mean of the two middle values for an
 * even count), selected on the GPU by a radix select over the f32 bit patterns; a 0-d tensor.
 */
export function medianOfNonNegative(values: Tensor): Tensor {
  checkFloatTensor('medianOfNonNegative', 'values', values, 1);
  const n = values.shape[0];
  if (n === 0) throw new SgtError('INVALID_ARGUMENT', 'medianOfNonNegative: the tensor has no values; a median needs at least one');
  const out = Tensor.empty([]);
  getContext().dispatch({
    shader: source,
    entryPoint: 'medianSelect',
    label: 'medianOfNonNegative',
    resources: { values: values.buffer, out: out.buffer },
    params: params(n, 0, 0),
    workgroups: [1],
  });
  return out;
}
