/** Seeded, counter-based standard normals on the GPU (Philox4x32-10 + Box-Muller). */
import source from '../../shaders/random.wgsl?raw';
import { getContext } from '../gpu/context';
import { Tensor, fmtShape, numel } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

/** Options of {@link randn}. */
export interface RandnOptions {
  /** Generator seed: an integer in [0, 2^53). */
  seed: number;
  /**
   * First counter block (4 values per block). Draw `n` values at offset `o`, and the next draw
   * at `o + randnBlocks(n)` to continue the same stream without overlap.
   */
  offset?: number;
}

/** Counter blocks consumed by a draw of `n` values (the offset to add for the next draw). */
export function randnBlocks(n: number): number {
  return Math.ceil(n / 4);
}

/**
 * A tensor of i.i.d. N(0, 1) samples. The same `(seed, offset)` gives the same values, bit for
 * bit, on the same device; element `i` depends only on `(seed, offset, i)`. Not differentiable
 * (it has no inputs).
 */
export function randn(shape: readonly number[], options: RandnOptions): Tensor {
  const { seed, offset = 0 } = options;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new SgtError('INVALID_ARGUMENT', `randn: 'seed' must be an integer in [0, 2^53), got ${seed}`);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + randnBlocks(numel(shape)) > 2 ** 32) {
    throw new SgtError(
      'INVALID_ARGUMENT',
      `randn: 'offset' must be an integer with offset + blocks <= 2^32, got ${offset} for shape ${fmtShape(shape)}`,
    );
  }
  const out = Tensor.empty(shape, 'f32', 'randn');
  if (out.size === 0) return out;
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint: 'normal',
    label: 'randn',
    resources: { out: out.buffer },
    params: new Uint32Array([out.size, seed % 2 ** 32, Math.floor(seed / 2 ** 32), offset]),
    workgroups: [ctx.gridSize(randnBlocks(out.size), 256)],
  });
  return out;
}
