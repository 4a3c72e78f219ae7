/**
 * float64 CPU twins of the training metrics (`src/eval/metrics.ts`): the nearest-neighbour
 * inversion by cosine and the teacher/student top-1 agreement and KL. Plain loops, no WebGPU.
 */
import { isSelected } from './mask';

/**
 * For each row of `queries` (`[P, d]`), the index of the row of `table` (`[V, d]`) with the
 * largest cosine similarity. Ties go to the smaller index; a zero-norm row never wins unless every
 * row is zero (then row 0 does). `|q|` is common to every candidate, so rows are ranked by
 * `q . E_v / |E_v|`, which keeps a zero query well defined (every nonzero row ties at 0).
 */
export function nearestRowsByCosineReference(queries: ArrayLike<number>, table: ArrayLike<number>, d: number, V: number): Int32Array {
  const P = d === 0 ? queries.length : queries.length / d;
  const norms = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let sq = 0;
    for (let j = 0; j < d; j++) sq += table[v * d + j] ** 2;
    norms[v] = Math.sqrt(sq);
  }
  const out = new Int32Array(P);
  for (let p = 0; p < P; p++) {
    let best = -Infinity;
    let bestI = -1;
    for (let v = 0; v < V; v++) {
      let score = -Infinity;
      if (norms[v] > 0) {
        let dot = 0;
        for (let j = 0; j < d; j++) dot += queries[p * d + j] * table[v * d + j];
        score = dot / norms[v];
      }
      if (bestI < 0 || score > best) {
        best = score;
        bestI = v;
      }
    }
    out[p] = bestI;
  }
  return out;
}

/** What {@link nearestNeighbourInversionReference} returns. */
export interface InversionReference {
  /** Selected positions whose nearest row is not the true token. */
  failures: number;
  /** Selected positions. */
  count: number;
  /** Nearest row of every position, `[positions]`. */
  nearest: Int32Array;
}

/**
 * NN-FR's counts: over positions the noise mask selects (non-zero), how many have a nearest vocabulary row
 * (by cosine, {@link nearestRowsByCosineReference}) other than `ids`. `xt` is row-major
 * `[positions, d]`, `table` `[V, d]`.
 */
export function nearestNeighbourInversionReference(
  xt: ArrayLike<number>,
  table: ArrayLike<number>,
  ids: ArrayLike<number>,
  noiseMask: ArrayLike<number>,
  d: number,
  V: number,
): InversionReference {
  const nearest = nearestRowsByCosineReference(xt, table, d, V);
  let failures = 0;
  let count = 0;
  for (let p = 0; p < noiseMask.length; p++) {
    if (!isSelected(noiseMask[p])) continue;
    count++;
    if (nearest[p] !== ids[p]) failures++;
  }
  return { failures, count, nearest };
}

/** What {@link agreementAndKLReference} returns. */
export interface AgreementReference {
  /** Selected positions whose teacher and student argmax agree. */
  agree: number;
  /** Sum over selected positions of KL(softmax(teacher) || softmax(student)). */
  kl: number;
  /** Selected positions. */
  count: number;
  /** Per-position KL (0 where not selected). */
  rowKL: Float64Array;
}

/**
 * Top-1 agreement (first index on ties) and the summed KL(teacher || student) over the rows with
 * a non-zero `mask`; `teacher` and `student` are row-major `[rows, V]`. Rows outside the mask are not read.
 */
export function agreementAndKLReference(
  teacher: ArrayLike<number>,
  student: ArrayLike<number>,
  mask: ArrayLike<number>,
  V: number,
): AgreementReference {
  const rows = mask.length;
  const rowKL = new Float64Array(rows);
  let agree = 0;
  let kl = 0;
  let count = 0;
  for (let r = 0; r < rows; r++) {
    if (!isSelected(mask[r])) continue;
    count++;
    const base = r * V;
    let mz = -Infinity;
    let ms = -Infinity;
    let iz = -1;
    let is = -1;
    for (let v = 0; v < V; v++) {
      if (teacher[base + v] > mz) {
        mz = teacher[base + v];
        iz = v;
      }
      if (student[base + v] > ms) {
        ms = student[base + v];
        is = v;
      }
    }
    let sz = 0;
    let ss = 0;
    for (let v = 0; v < V; v++) {
      sz += Math.exp(teacher[base + v] - mz);
      ss += Math.exp(student[base + v] - ms);
    }
    const lz = mz + Math.log(sz);
    const ls = ms + Math.log(ss);
    let row = 0;
    for (let v = 0; v < V; v++) {
      const logP = teacher[base + v] - lz;
      const p = Math.exp(logP);
      // p = 0 contributes 0 (the limit of p log p), even against a -inf student log-probability.
      if (p > 0) row += p * (logP - (student[base + v] - ls));
    }
    rowKL[r] = row;
    kl += row;
    if (iz === is) agree++;
  }
  return { agree, kl, count, rowKL };
}
