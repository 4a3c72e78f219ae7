/**
 * How the row-reduction losses (shaders/crossEntropy.wgsl, shaders/cosine.wgsl) split their work:
 * each row is cut into pieces of at most `segChunks` chunks of 4 columns, one thread per piece,
 * grid-stride over the pieces. A thread reads its piece front to back and needs no barrier: a CPU
 * adapter runs a workgroup's threads as a loop and pays microseconds for each barrier (measured on
 * lavapipe: a 6-level workgroup tree per row cost more than reading the row), and a short
 * contiguous stretch per thread is what its caches and prefetchers want. The pieces' partial
 * results are merged per row by a small second pass.
 */
import type { GpuContext } from '../gpu/context';

/** Threads per workgroup of the row-reduction kernels (their WGSL `WG`). */
export const ROW_WG = 64;
/** Chunks of 4 columns per piece (one thread's share of a row). */
export const PIECE_CHUNKS = 64;

/** The split of a `[rows, cols]` row reduction; see the module comment. */
export interface RowLayout {
  /** Pieces per row. */
  segments: number;
  /** Chunks of 4 columns per piece. */
  segChunks: number;
  /** Workgroups to dispatch (grid-stride over the pieces). */
  workgroups: number;
  /** Whether the rows can be read as vec4s (cols a multiple of 4). */
  vec4: boolean;
}

/**
 * The layout of a `[rows, cols]` row reduction on this device, for a kernel of `workgroupSize`
 * threads. Empty rows (cols = 0) get one empty piece each.
 */
export function rowLayout(ctx: GpuContext, rows: number, cols: number, workgroupSize = ROW_WG): RowLayout {
  const chunks = Math.ceil(cols / 4);
  const segments = Math.max(1, Math.ceil(chunks / PIECE_CHUNKS));
  const segChunks = Math.ceil(chunks / segments); // pieces of one row as even as possible
  const groups = Math.ceil((rows * segments) / workgroupSize);
  const workgroups = Math.max(1, Math.min(ctx.limits.maxComputeWorkgroupsPerDimension, groups));
  return { segments, segChunks, workgroups, vec4: cols % 4 === 0 };
}

/** The uniform parameters of a row-reduction kernel: rows, cols, segments, segChunks. */
export function rowLayoutParams(rows: number, cols: number, layout: RowLayout): Uint32Array {
  return new Uint32Array([rows, cols, layout.segments, layout.segChunks]);
}
