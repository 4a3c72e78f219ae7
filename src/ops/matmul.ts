/** Batched matrix product with optional transposes, over `shaders/matmul.wgsl`. */
import source from '../../shaders/matmul.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape, numel } from '../tensor/tensor';
import { requireFloat } from '../tensor/validate';
import { sumToShape } from './broadcast';
import { sameShape } from './shape';

const TILE = 64;

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use `a`'s last two axes transposed (`a` stored `[..., K, M]`). */
  transposeA?: boolean;
  /** Use `b`'s last two axes transposed (`b` stored `[..., N, K]`). */
  transposeB?: boolean;
}

interface Dims {
  M: number;
  N: number;
  K: number;
  batchShape: number[];
}

function dims(a: readonly number[], b: readonly number[], tA: boolean, tB: boolean): Dims {
  const where = `matmul: a ${fmtShape(a)}${tA ? 'ᵀ' : ''} @ b ${fmtShape(b)}${tB ? 'ᵀ' : ''}`;
  if (a.length < 2 || b.length < 2) throw new Error(`${where}: both operands need rank >= 2`);
  const [ar, ac] = a.slice(-2);
  const [br, bc] = b.slice(-2);
  const [M, Ka] = tA ? [ac, ar] : [ar, ac];
  const [Kb, N] = tB ? [bc, br] : [br, bc];
  if (Ka !== Kb) throw new Error(`${where}: inner dimensions differ (${Ka} vs ${Kb})`);
  const batchA = a.slice(0, -2);
  const batchB = b.slice(0, -2);
  if (batchA.length && batchB.length && !sameShape(batchA, batchB)) {
    throw new Error(`${where}: batch shapes differ (${fmtShape(batchA)} vs ${fmtShape(batchB)}); they must be equal or one operand 2-D`);
  }
  return { M, N, K: Ka, batchShape: batchA.length ? batchA : batchB };
}

function matmulKernel(a: Tensor, b: Tensor, tA: boolean, tB: boolean): Tensor {
  const { M, N, K, batchShape } = dims(a.shape, b.shape, tA, tB);
  const batch = numel(batchShape);
  const out = Tensor.empty([...batchShape, M, N]);
  if (out.size === 0) return out;
  const ctx = getContext();
  if (K === 0) {
    ctx.write(out.buffer, new Float32Array(out.size));
    return out;
  }
  const params = new Uint32Array([M, N, K, batch, a.rank > 2 ? M * K : 0, b.rank > 2 ? K * N : 0, 0, 0]);
  ctx.dispatch({
    shader: source,
    entryPoint: 'matmul',
    label: 'matmul',
    constants: { TRANS_A: tA ? 1 : 0, TRANS_B: tB ? 1 : 0 },
    resources: { a: a.buffer, b: b.buffer, c: out.buffer },
    params,
    workgroups: [Math.ceil(N / TILE), Math.ceil(M / TILE), Math.min(batch, ctx.limits.maxComputeWorkgroupsPerDimension)],
  });
  return out;
}

interface MatmulAttrs {
  tA: boolean;
  tB: boolean;
}

const matmulOp = defineOp<MatmulAttrs>({
  name: 'matmul',
  forward: ([a, b], { tA, tB }) => matmulKernel(a, b, tA, tB),
  // C = op(A) op(B): dA = dC op(B)ᵀ and dB = op(A)ᵀ dC, written for each transpose combination
  // so that no transposed copy is materialised. A 2-D operand shared by a batch sums over it.
  backward: (g, { inputs: [a, b], attrs: { tA, tB } }) => {
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    if (a.requiresGrad) {
      ga = tA ? matmulKernel(b, g, tB, true) : matmulKernel(g, b, false, !tB);
      ga = sumToShape(ga, a.shape);
    }
    if (b.requiresGrad) {
      if (b.rank === 2 && a.rank > 2) {
        // Fold the batch into the rows: dB = sum over the batch of op(A)ᵀ dC, as one product.
        const rowsA = tA ? null : a.view([a.size / a.shape[a.rank - 1], a.shape[a.rank - 1]]);
        const flatG = g.view([g.size / g.shape[g.rank - 1], g.shape[g.rank - 1]]);
        if (rowsA) gb = tB ? matmulKernel(flatG, rowsA, true, false) : matmulKernel(rowsA, flatG, true, false);
        else gb = sumToShape(tB ? matmulKernel(g, a, true, true) : matmulKernel(a, g, false, false), b.shape);
        rowsA?.dispose();
        flatG.dispose();
      } else {
        gb = tB ? matmulKernel(g, a, true, tA) : matmulKernel(a, g, !tA, false);
        gb = sumToShape(gb, b.shape);
      }
    }
    return [ga, gb];
  },
});

/**
 * `op(a) @ op(b)` over the last two axes, `op` an optional transpose. Batch axes must match, or
 * one operand is 2-D and is shared by the whole batch.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  requireFloat('matmul', 'a', a);
  requireFloat('matmul', 'b', b);
  const tA = options.transposeA ?? false;
  const tB = options.transposeB ?? false;
  dims(a.shape, b.shape, tA, tB);
  return matmulOp([a, b], { tA, tB });
}
