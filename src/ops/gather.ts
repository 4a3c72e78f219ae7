/**
 * Row gather (embedding lookup) with a scatter-add backward, over `shaders/gather.wgsl`. The table
 * may be a packed `bf16` / `f16` weight (widened to f32 as it loads) and may be given as row
 * blocks, each in its own buffer (a table larger than one storage binding).
 */
import source from '../../shaders/gather.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { requireWeight, weightDtypeCode } from '../tensor/validate';
import { SgtError } from '../gpu/errors';

function params(count: number, width: number, rows: number, rowStart: number, first: boolean, tableRows = 0, checkSlot = 0): Uint32Array {
  return new Uint32Array([count, width, rows, rowStart, first ? 1 : 0, tableRows, checkSlot, 0]);
}

/** The check of ids outside the table in an ids tensor, reported at the next readback (see `GpuContext.dataCheck`). */
function idsCheck() {
  return getContext().dataCheck(
    'gather ids',
    (count, detail) =>
      `gather: ${count} id(s) of an ids tensor lay outside the table (the first at flat index ${0xffffffff - detail} of its ids); ` +
      'their rows were read as zeros. Ids in a GPU tensor are checked on the GPU and reported at the next readback; give ' +
      'host ids (CausalLM.embed/forward check them at the call) to fail before any GPU work',
  );
}

interface GatherAttrs {
  /** First row of each block in the whole table. */
  starts: number[];
}

// Inputs: the table's row blocks (one for a plain table), then the ids.
const gatherOp = defineOp<GatherAttrs>({
  name: 'gather',
  forward: (inputs, { starts }) => {
    const ids = inputs[inputs.length - 1];
    const blocks = inputs.slice(0, -1);
    const width = blocks[0].shape[1];
    const out = Tensor.empty([...ids.shape, width]);
    if (out.size === 0) return out;
    const ctx = getContext();
    const check = idsCheck();
    const tableRows = starts[starts.length - 1] + blocks[blocks.length - 1].shape[0];
    blocks.forEach((table, i) => {
      ctx.dispatch({
        shader: source,
        entryPoint: 'gatherRows',
        label: 'gather',
        constants: { TABLE_DTYPE: weightDtypeCode(table) },
        resources: { table: table.buffer, ids: ids.buffer, out: out.buffer, checks: check.buffer },
        params: params(ids.size, width, table.shape[0], starts[i], i === 0, tableRows, check.slot),
        workgroups: [ctx.gridSize(out.size, 256)],
      });
    });
    return out;
  },
  // d table[v] = sum of the output gradients of every position that looked up v (per block).
  backward: (g, { inputs }) => {
    const ids = inputs[inputs.length - 1];
    const blocks = inputs.slice(0, -1);
    const ctx = getContext();
    let start = 0;
    const grads = blocks.map((table) => {
      const rowStart = start;
      start += table.shape[0];
      if (!table.requiresGrad) return null;
      const [rows, width] = table.shape;
      const out = Tensor.empty(table.shape);
      if (out.size > 0) {
        ctx.dispatch({
          shader: source,
          entryPoint: 'scatterAddRows',
          label: 'gather (backward)',
          resources: { grad: g.buffer, ids: ids.buffer, out: out.buffer },
          params: params(ids.size, width, rows, rowStart, false),
          workgroups: [ctx.gridSize(width, 256)],
        });
      }
      return out;
    });
    return [...grads, null];
  },
});

function checkIds(fn: string, ids: Tensor): void {
  if (!(ids instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${fn}: argument 'ids' must be a Tensor`);
  if (ids.dtype !== 'i32' && ids.dtype !== 'u32')
    throw new SgtError('DTYPE_MISMATCH', `${fn}: argument 'ids' has dtype ${ids.dtype}; expected i32 or u32`);
}

/**
 * Looks up rows of `table` ([V, d]) at integer `ids` (any shape, i32 or u32): the output has
 * shape `[...ids.shape, d]`. An id outside `[0, V)` (which the host cannot see in a GPU tensor)
 * gives a zero row and makes the next readback throw a named error (`GpuContext.dataCheck`).
 * The table may be a packed `bf16` / `f16` weight (the output is f32).
 */
export function gather(table: Tensor, ids: Tensor): Tensor {
  return gatherRowBlocks([table], ids, 'gather');
}

/**
 * {@link gather} from a table given as row blocks `[V_i, d]` (stacked in order, each in its own
 * buffer: a table larger than one storage binding). Ids outside every block give zero rows and
 * are reported at the next readback, as in {@link gather}.
 * Gradients reach the f32 blocks that require them.
 */
export function gatherRowBlocks(blocks: readonly Tensor[], ids: Tensor, fn = 'gatherRowBlocks'): Tensor {
  if (!Array.isArray(blocks) || blocks.length === 0)
    throw new SgtError('INVALID_ARGUMENT', `${fn}: 'blocks' must be a non-empty list of [rows, d] tensors`);
  const one = blocks.length === 1;
  let width = -1;
  const starts: number[] = [];
  let rows = 0;
  blocks.forEach((t, i) => {
    const arg = one ? 'table' : `blocks[${i}]`;
    if (!(t instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${fn}: argument '${arg}' must be a Tensor`);
    requireWeight(fn, arg, t);
    if (t.rank !== 2) throw new SgtError('SHAPE_MISMATCH', `${fn}: argument '${arg}' must be 2-D [V, d], got ${fmtShape(t.shape)}`);
    if (width >= 0 && t.shape[1] !== width) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `${fn}: block ${i} has shape ${fmtShape(t.shape)}; every block needs the width ${width} of block 0`,
      );
    }
    width = t.shape[1];
    starts.push(rows);
    rows += t.shape[0];
  });
  checkIds(fn, ids);
  return gatherOp([...blocks, ids], { starts });
}
