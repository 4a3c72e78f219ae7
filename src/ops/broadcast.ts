/**
 * The gradient of broadcasting over `shaders/broadcast.wgsl`: `sumToShape`. Backward rules of
 * every broadcasting op (elementwise, matmul, norms) use it, so it sits below them all.
 */
import source from '../../shaders/broadcast.wgsl?raw';
import { getContext } from '../gpu/context';
import { Tensor, fmtShape, numel } from '../tensor/tensor';
import { MAX_RANK, contiguousStrides, sameShape } from './shape';
import { SgtError } from '../gpu/errors';

const WG = 256;

/**
 * Sums `x` over the axes where `shape` (right-aligned, a broadcast source of `x.shape`) is 1 or
 * missing: the gradient of broadcasting. Not recorded by autograd (used inside backward rules).
 */
export function sumToShape(x: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(x.shape, shape)) return x;
  const rank = x.rank;
  if (rank > MAX_RANK) throw new SgtError('UNSUPPORTED', `sumToShape: rank ${rank} exceeds ${MAX_RANK}`);
  const padded = [...new Array<number>(rank - shape.length).fill(1), ...shape];
  if (padded.some((s, i) => s !== x.shape[i] && s !== 1)) {
    throw new SgtError('SHAPE_MISMATCH', `sumToShape: ${fmtShape(x.shape)} does not reduce to ${fmtShape(shape)}`);
  }
  const reduced = x.shape.map((s, i) => (padded[i] === 1 ? s : 1));
  const out = Tensor.empty(shape);
  const n = numel(shape);
  if (n === 0) return out;
  const buf = new ArrayBuffer(16 + 3 * 32);
  const u = new Uint32Array(buf);
  u[0] = n;
  u[1] = rank;
  u[2] = numel(reduced);
  const strides = contiguousStrides(x.shape);
  for (let i = 0; i < rank; i++) {
    u[4 + i] = padded[i];
    u[12 + i] = strides[i];
    u[20 + i] = reduced[i];
  }
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'sumToShape',
    resources: { x: x.buffer, out: out.buffer },
    params: buf,
    workgroups: [ctx.gridSize(n, WG)],
  });
  return out;
}
