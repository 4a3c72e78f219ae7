/** Float64 twin of `src/ops/gather.ts`: row lookup, and its scatter-add backward. */
import { checkGrad, zeros, type NDArray } from './ndarray';
import { fmt } from './shape';

function checkGather(table: NDArray, ids: NDArray): [number, number] {
  if (table.shape.length !== 2) throw new Error(`gather: argument 'table' must be 2-D [V, d], got ${fmt(table.shape)}`);
  for (const id of ids.data) {
    if (!Number.isInteger(id)) throw new Error(`gather: ids must be integers, got ${id}`);
  }
  return [table.shape[0], table.shape[1]];
}

/**
 * Row lookup: `out[...i, :] = table[ids[...i], :]`, shape `[...ids.shape, d]`. An id outside
 * `[0, V)` (negative included) gives a zero row, as on the GPU, which reads ids as unsigned.
 */
export function gather(table: NDArray, ids: NDArray): NDArray {
  const [V, d] = checkGather(table, ids);
  const out = zeros([...ids.shape, d]);
  ids.data.forEach((id, n) => {
    // The GPU kernel writes a zero row and fails the next readback; PyTorch raises an IndexError.
    if (!(id >= 0 && id < V)) throw new Error(`gather: id ${id} at flat index ${n} is outside the table [0, ${V})`);
    out.data.set(table.data.subarray(id * d, (id + 1) * d), n * d);
  });
  return out;
}
/**
 * Backward of {@link gather}: `[gTable]`, a scatter-add of the output rows' gradients into the
 * rows they were read from. Repeated ids accumulate; out-of-range ids contribute nothing.
 * (The ids get no gradient.)
 */
export function gatherBackward(g: NDArray, table: NDArray, ids: NDArray): [NDArray] {
  const [V, d] = checkGather(table, ids);
  checkGrad('gather', g, [...ids.shape, d]);
  const out = zeros(table.shape);
  ids.data.forEach((id, n) => {
    if (id < 0 || id >= V) return;
    for (let j = 0; j < d; j++) out.data[id * d + j] += g.data[n * d + j];
  });
  return [out];
}
