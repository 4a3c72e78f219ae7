/** Float64 twin of `src/ops/matmul.ts`: batched matrix product with optional transposes. */
import { checkGrad, zeros, type NDArray } from './ndarray';
import { fmt, sameShape, sizeOf } from './shape';

/** Options of {@link matmul} (as in `src/ops/matmul.ts`). */
export interface MatmulOptions {
  /** Use `a`'s last two axes transposed (`a` stored `[..., K, M]`). */
  transposeA?: boolean;
  /** Use `b`'s last two axes transposed (`b` stored `[..., N, K]`). */
  transposeB?: boolean;
}

interface MatmulGeometry {
  M: number;
  N: number;
  K: number;
  batchShape: number[];
  batch: number;
  /** Elements per batch entry of each operand, 0 for a 2-D operand shared by the whole batch. */
  aStep: number;
  bStep: number;
  tA: boolean;
  tB: boolean;
}

function matmulGeometry(a: NDArray, b: NDArray, options: MatmulOptions): MatmulGeometry {
  const tA = options.transposeA ?? false;
  const tB = options.transposeB ?? false;
  const where = `matmul: a ${fmt(a.shape)}${tA ? 'ᵀ' : ''} @ b ${fmt(b.shape)}${tB ? 'ᵀ' : ''}`;
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error(`${where}: both operands need rank >= 2`);
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const [M, Ka] = tA ? [ac, ar] : [ar, ac];
  const [Kb, N] = tB ? [bc, br] : [br, bc];
  if (Ka !== Kb) throw new Error(`${where}: inner dimensions differ (${Ka} vs ${Kb})`);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  // No general batch broadcasting: equal batch shapes, or one 2-D operand shared by the batch.
  if (batchA.length && batchB.length && !sameShape(batchA, batchB)) {
    throw new Error(`${where}: batch shapes differ (${fmt(batchA)} vs ${fmt(batchB)})`);
  }
  const batchShape = batchA.length ? batchA : batchB;
  return {
    M,
    N,
    K: Ka,
    batchShape,
    batch: sizeOf(batchShape),
    aStep: batchA.length ? M * Ka : 0,
    bStep: batchB.length ? Ka * N : 0,
    tA,
    tB,
  };
}

/** Flat index in `a` of op(A)[m, k] of batch entry `base`. */
function aAt(geo: MatmulGeometry, base: number, m: number, k: number): number {
  return base + (geo.tA ? k * geo.M + m : m * geo.K + k);
}
/** Flat index in `b` of op(B)[k, n] of batch entry `base`. */
function bAt(geo: MatmulGeometry, base: number, k: number, n: number): number {
  return base + (geo.tB ? n * geo.K + k : k * geo.N + n);
}

/**
 * `op(a) @ op(b)` over the last two axes, `op` an optional transpose. Batch axes must be equal,
 * or one operand is 2-D and shared by every batch entry of the other. Output `[...batch, M, N]`.
 */
export function matmul(a: NDArray, b: NDArray, options: MatmulOptions = {}): NDArray {
  const geo = matmulGeometry(a, b, options);
  const { M, N, K, batch } = geo;
  const out = zeros([...geo.batchShape, M, N]);
  for (let z = 0; z < batch; z++) {
    const ab = z * geo.aStep;
    const bb = z * geo.bStep;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a.data[aAt(geo, ab, m, k)] * b.data[bAt(geo, bb, k, n)];
        out.data[(z * M + m) * N + n] = s;
      }
    }
  }
  return out;
}
/**
 * Backward of {@link matmul}: `[ga, gb]` in the operands' stored layouts. With C = op(A) op(B),
 * d op(A) = dC op(B)ᵀ and d op(B) = op(A)ᵀ dC; a shared 2-D operand accumulates over the batch.
 */
export function matmulBackward(g: NDArray, a: NDArray, b: NDArray, options: MatmulOptions = {}): [NDArray, NDArray] {
  const geo = matmulGeometry(a, b, options);
  const { M, N, K, batch } = geo;
  checkGrad('matmul', g, [...geo.batchShape, M, N]);
  const ga = zeros(a.shape);
  const gb = zeros(b.shape);
  // Scatter each product term's contribution to the element it came from: the same index
  // functions as the forward, so the transposes and the shared operand need no special cases.
  for (let z = 0; z < batch; z++) {
    const ab = z * geo.aStep;
    const bb = z * geo.bStep;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const gi = g.data[(z * M + m) * N + n];
        for (let k = 0; k < K; k++) {
          const ia = aAt(geo, ab, m, k);
          const ib = bAt(geo, bb, k, n);
          ga.data[ia] += gi * b.data[ib];
          gb.data[ib] += gi * a.data[ia];
        }
      }
    }
  }
  return [ga, gb];
}
