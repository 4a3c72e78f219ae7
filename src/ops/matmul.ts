/**
 * Batched matrix product with optional transposes and bias, and the product with a weight stored as
 * row blocks (the LM head of a large vocabulary), over `shaders/matmul.wgsl`. The weight operand
 * `b` and the bias may be packed `bf16` / `f16` weights, widened to f32 as the kernel loads them.
 */
import source from '../../shaders/matmul.wgsl?raw';
import { getContext, type GpuContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape, isPackedDType, numel } from '../tensor/tensor';
import { requireFloat, requireWeight, weightDtypeCode } from '../tensor/validate';
import { sumToShape } from './broadcast';
import { sameShape } from './shape';
import { SgtError } from '../gpu/errors';

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use `a`'s last two axes transposed (`a` stored `[..., K, M]`). */
  transposeA?: boolean;
  /** Use `b`'s last two axes transposed (`b` stored `[..., N, K]`). */
  transposeB?: boolean;
  /** `[N]`, added to every row of the product (f32, or a packed weight like `b`). */
  bias?: Tensor;
}

interface Dims {
  M: number;
  N: number;
  K: number;
  batchShape: number[];
}

function dims(a: readonly number[], b: readonly number[], tA: boolean, tB: boolean): Dims {
  const where = `matmul: a ${fmtShape(a)}${tA ? 'ᵀ' : ''} @ b ${fmtShape(b)}${tB ? 'ᵀ' : ''}`;
  if (a.length < 2 || b.length < 2) throw new SgtError('SHAPE_MISMATCH', `${where}: both operands need rank >= 2`);
  const [ar, ac] = a.slice(-2);
  const [br, bc] = b.slice(-2);
  const [M, Ka] = tA ? [ac, ar] : [ar, ac];
  const [Kb, N] = tB ? [bc, br] : [br, bc];
  if (Ka !== Kb) throw new SgtError('SHAPE_MISMATCH', `${where}: inner dimensions differ (${Ka} vs ${Kb})`);
  const batchA = a.slice(0, -2);
  const batchB = b.slice(0, -2);
  if (batchA.length && batchB.length && !sameShape(batchA, batchB)) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${where}: batch shapes differ (${fmtShape(batchA)} vs ${fmtShape(batchB)}); they must be equal or one operand 2-D`,
    );
  }
  return { M, N, K: Ka, batchShape: batchA.length ? batchA : batchB };
}

/** One dispatch of the kernel: `c[window] (+)= op(a[window]) op(b) (+ bias)`. */
interface KernelCall {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  M: number;
  N: number;
  K: number;
  tA: boolean;
  tB: boolean;
  batch?: number;
  aBatchStride?: number;
  bBatchStride?: number;
  /** Row stride of `a` as stored (default: its last axis, K or M). */
  lda?: number;
  /** Row stride of `c` (default N). */
  ldc?: number;
  aOffset?: number;
  cOffset?: number;
  /** Add to `c` instead of overwriting it. */
  accumulate?: boolean;
  bias?: Tensor;
}

/**
 * Threads per workgroup: one subgroup (the adapter's smallest, 8 if it does not say), so that the
 * lanes share the loads of A, within the workgroup limits and at most 64.
 */
const workgroupWidths = new WeakMap<GpuContext, number>();

function workgroupWidth(ctx: GpuContext): number {
  let wg = workgroupWidths.get(ctx);
  if (wg === undefined) {
    const info = ctx.adapter.info as GPUAdapterInfo & { subgroupMinSize?: number };
    const lanes = info.subgroupMinSize && info.subgroupMinSize > 0 ? info.subgroupMinSize : 8;
    const limit = Math.min(64, ctx.limits.maxComputeWorkgroupSizeX, ctx.limits.maxComputeInvocationsPerWorkgroup);
    wg = Math.max(1, Math.min(limit, Math.max(4, lanes)));
    workgroupWidths.set(ctx, wg);
  }
  return wg;
}

/**
 * Rows of C per workgroup: 8 (each thread holds 8 x 4 sums; 8 ran faster than 4 on lavapipe and
 * on SwiftShader, bench/matmul.ts), 1 for a one-row product (inference), where 7 of 8 would be
 * padding. Any other M takes 8: every variant is a pipeline to compile.
 */
function rowsPerWorkgroup(M: number): number {
  return M <= 1 ? 1 : 8;
}

/** Whether a buffer of `bytes` can be seen as vec4s and every index (strides, offsets) is a multiple of 4. */
function aligned4(bytes: number, ...indices: number[]): boolean {
  return bytes >= 16 && indices.every((i) => i % 4 === 0);
}

function runKernel(k: KernelCall): void {
  const ctx = getContext();
  const batch = k.batch ?? 1;
  const lda = k.lda ?? (k.tA ? k.M : k.K);
  const [aStride, bStride, aOffset] = [k.aBatchStride ?? 0, k.bBatchStride ?? 0, k.aOffset ?? 0];
  // vec4 loads where every 4-step of k starts on a multiple of 4 (A along its rows; B along its
  // rows, or along K when transposed: a vec4 of f32, or two words of a packed weight).
  const vecA = !k.tA && aligned4(k.a.buffer.size, lda, aOffset, aStride);
  const vecB = aligned4(k.b.buffer.size, k.tB ? k.K : k.N, bStride);
  const wg = workgroupWidth(ctx);
  const rows = rowsPerWorkgroup(k.M);
  // a4 / b4 must be bound even when unread; a buffer under 16 bytes cannot be (a temporary stands in).
  const spare = k.a.buffer.size < 16 || k.b.buffer.size < 16 ? Tensor.empty([4]) : null;
  const view = (t: Tensor) => (t.buffer.size >= 16 ? t.buffer : spare!.buffer);
  const constants = {
    TRANS_A: k.tA ? 1 : 0,
    TRANS_B: k.tB ? 1 : 0,
    B_DTYPE: weightDtypeCode(k.b),
    HAS_BIAS: k.bias ? 1 : 0,
    BIAS_DTYPE: k.bias ? weightDtypeCode(k.bias) : 0,
    VEC_A: vecA ? 1 : 0,
    VEC_B: vecB ? 1 : 0,
    WG: wg,
    ROWS: rows,
  };
  // Without a bias the kernel never reads it; `b` stands in (read-only bindings may alias).
  const resources = { a: k.a.buffer, b: k.b.buffer, c: k.c.buffer, bias: (k.bias ?? k.b).buffer, a4: view(k.a), b4: view(k.b) };
  const head = [k.M, k.N, k.K, batch, aStride, bStride, lda, k.ldc ?? k.N, aOffset, k.cOffset ?? 0, k.accumulate ? 1 : 0];
  // One workgroup per (row block, batch entry): a grid over the per-dimension limit is split.
  const maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
  const rowBlocks = Math.ceil(k.M / rows);
  for (let b0 = 0; b0 < batch; b0 += maxDim) {
    for (let r0 = 0; r0 < rowBlocks; r0 += maxDim) {
      ctx.dispatch({
        shader: source,
        entryPoint: 'matmul',
        label: 'matmul',
        constants,
        resources,
        params: new Uint32Array([...head, r0, b0, 0, 0]),
        workgroups: [Math.ceil(k.N / (4 * wg)), Math.min(rowBlocks - r0, maxDim), Math.min(batch - b0, maxDim)],
      });
    }
  }
  spare?.dispose();
}

function matmulKernel(a: Tensor, b: Tensor, tA: boolean, tB: boolean, bias?: Tensor): Tensor {
  const { M, N, K, batchShape } = dims(a.shape, b.shape, tA, tB);
  const batch = numel(batchShape);
  const out = Tensor.empty([...batchShape, M, N]);
  if (out.size === 0) return out;
  if (K === 0 && !bias) {
    getContext().write(out.buffer, new Float32Array(out.size));
    return out;
  }
  runKernel({ a, b, c: out, M, N, K, tA, tB, batch, aBatchStride: a.rank > 2 ? M * K : 0, bBatchStride: b.rank > 2 ? K * N : 0, bias });
  return out;
}

interface MatmulAttrs {
  tA: boolean;
  tB: boolean;
}

const matmulOp = defineOp<MatmulAttrs>({
  name: 'matmul',
  forward: ([a, b, bias], { tA, tB }) => matmulKernel(a, b, tA, tB, bias),
  // C = op(A) op(B) (+ bias): dA = dC op(B)ᵀ and dB = op(A)ᵀ dC, written for each transpose
  // combination so that no transposed copy is materialised. A 2-D operand shared by a batch sums
  // over it; the bias gradient sums dC over every row.
  backward: (g, { inputs: [a, b, bias], attrs: { tA, tB } }) => {
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    if (a.requiresGrad) {
      ga = tA ? matmulKernel(b, g, tB, true) : matmulKernel(g, b, false, !tB);
      ga = sumToShape(ga, a.shape);
    }
    if (b.requiresGrad) {
      if (b.rank === 2 && a.rank > 2) {
        // Fold the batch into the rows: dB = sum over the batch of op(A)ᵀ dC, as one product.
        // Rows as the product of the leading axes (size / last axis is 0 / 0 when K or N is 0).
        const rowsA = tA ? null : a.view([numel(a.shape.slice(0, -1)), a.shape[a.rank - 1]]);
        const flatG = g.view([numel(g.shape.slice(0, -1)), g.shape[g.rank - 1]]);
        if (rowsA) gb = tB ? matmulKernel(flatG, rowsA, true, false) : matmulKernel(rowsA, flatG, true, false);
        else gb = sumToShape(tB ? matmulKernel(g, a, true, true) : matmulKernel(a, g, false, false), b.shape);
        rowsA?.dispose();
        flatG.dispose();
      } else {
        gb = tB ? matmulKernel(g, a, true, tA) : matmulKernel(a, g, !tA, false);
        gb = sumToShape(gb, b.shape);
      }
    }
    const gBias = bias?.requiresGrad ? sumToShape(g, bias.shape) : null;
    return bias ? [ga, gb, gBias] : [ga, gb];
  },
});

/**
 * `op(a) @ op(b) (+ bias)` over the last two axes, `op` an optional transpose. Batch axes must
 * match, or one operand is 2-D and is shared by the whole batch. `b` and `bias` may be packed
 * `bf16` / `f16` weights (read-only: no gradient reaches them), widened to f32 as they load;
 * the accumulation is f32.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  requireFloat('matmul', 'a', a);
  requireWeight('matmul', 'b', b);
  const tA = options.transposeA ?? false;
  const tB = options.transposeB ?? false;
  const { N } = dims(a.shape, b.shape, tA, tB);
  if (tA && isPackedDType(b.dtype)) {
    throw new SgtError('UNSUPPORTED', `matmul: a packed ${b.dtype} 'b' needs transposeA false (the backward would read it as 'a')`);
  }
  const bias = options.bias;
  if (bias) {
    if (!(bias instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', "matmul: 'bias' must be a Tensor");
    requireWeight('matmul', 'bias', bias);
    if (bias.rank !== 1 || bias.shape[0] !== N)
      throw new SgtError('SHAPE_MISMATCH', `matmul: 'bias' has shape ${fmtShape(bias.shape)}; expected [${N}]`);
  }
  return matmulOp(bias ? [a, b, bias] : [a, b], { tA, tB });
}

interface RowBlockAttrs {
  /** First row of each block in the whole weight. */
  starts: number[];
  /** Rows of the whole weight. */
  rows: number;
}

const matmulRowBlocksOp = defineOp<RowBlockAttrs>({
  name: 'matmulRowBlocks',
  // y[:, start_i : start_i + rows_i] = x W_iᵀ, each block writing its columns of the output.
  forward: ([x, ...blocks], { starts, rows: V }) => {
    const K = x.shape[x.rank - 1];
    const M = x.size / K;
    const out = Tensor.empty([...x.shape.slice(0, -1), V]);
    if (out.size === 0) return out;
    if (K === 0) {
      getContext().write(out.buffer, new Float32Array(out.size));
      return out;
    }
    blocks.forEach((w, i) => {
      if (w.shape[0] > 0) runKernel({ a: x, b: w, c: out, M, N: w.shape[0], K, tA: false, tB: true, ldc: V, cOffset: starts[i] });
    });
    return out;
  },
  // dx = sum_i dy[:, block i] W_i, accumulated block after block (a K split: with blocks of a
  // multiple of 4 rows, as the loader's multiples of 16 are, the sum runs in the order of one
  // product); dW_i = dy[:, block i]ᵀ x.
  backward: (g, { inputs: [x, ...blocks], attrs: { starts, rows: V } }) => {
    const K = x.shape[x.rank - 1];
    const M = x.size / K;
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape);
      if (dx.size > 0) {
        let first = true;
        blocks.forEach((w, i) => {
          if (w.shape[0] === 0) return;
          runKernel({ a: g, b: w, c: dx!, M, N: K, K: w.shape[0], tA: false, tB: false, lda: V, aOffset: starts[i], accumulate: !first });
          first = false;
        });
        if (first) getContext().write(dx.buffer, new Float32Array(dx.size));
      }
    }
    const dW = blocks.map((w, i) => {
      if (!w.requiresGrad) return null;
      const gw = Tensor.empty(w.shape);
      if (gw.size === 0) return gw;
      if (M === 0) getContext().write(gw.buffer, new Float32Array(gw.size));
      else runKernel({ a: g, b: x, c: gw, M: w.shape[0], N: K, K: M, tA: true, tB: false, lda: V, aOffset: starts[i] });
      return gw;
    });
    return [dx, ...dW];
  },
});

/**
 * `x @ Wᵀ` with `W` (`[V, K]`, a torch Linear weight such as an LM head) given as row blocks
 * `[V_i, K]`, each in its own buffer (a weight larger than one storage binding): the output is
 * `[..., V]`, block `i` giving columns `start_i .. start_i + V_i`. The blocks may be packed
 * `bf16` / `f16` weights. Differentiable in `x` (accumulated over the blocks) and in f32 blocks
 * that require gradients. One block is {@link matmul} with `transposeB`.
 */
export function matmulRowBlocks(x: Tensor, blocks: readonly Tensor[]): Tensor {
  requireFloat('matmulRowBlocks', 'x', x);
  if (x.rank < 2)
    throw new SgtError('SHAPE_MISMATCH', `matmulRowBlocks: 'x' has shape ${fmtShape(x.shape)}; expected [..., M, K] (rank >= 2)`);
  if (!Array.isArray(blocks) || blocks.length === 0)
    throw new SgtError('INVALID_ARGUMENT', "matmulRowBlocks: 'blocks' must be a non-empty list of [rows, K] tensors");
  const K = x.shape[x.rank - 1];
  const starts: number[] = [];
  let rows = 0;
  blocks.forEach((w, i) => {
    if (!(w instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `matmulRowBlocks: block ${i} must be a Tensor`);
    requireWeight('matmulRowBlocks', `blocks[${i}]`, w);
    if (w.rank !== 2 || w.shape[1] !== K) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `matmulRowBlocks: block ${i} has shape ${fmtShape(w.shape)}; expected [rows, ${K}] (the last axis of x ${fmtShape(x.shape)})`,
      );
    }
    starts.push(rows);
    rows += w.shape[0];
  });
  if (blocks.length === 1) return matmul(x, blocks[0], { transposeB: true });
  return matmulRowBlocksOp([x, ...blocks], { starts, rows });
}
