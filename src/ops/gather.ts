/** Row gather (embedding lookup) with a scatter-add backward, over `shaders/gather.wgsl`. */
import source from '../../shaders/gather.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { requireFloat } from '../tensor/validate';

function params(count: number, width: number, rows: number): Uint32Array {
  return new Uint32Array([count, width, rows, 0]);
}

const gatherOp = defineOp<null>({
  name: 'gather',
  forward: ([table, ids]) => {
    const [rows, width] = table.shape;
    const out = Tensor.empty([...ids.shape, width]);
    if (out.size === 0) return out;
    const ctx = getContext();
    ctx.dispatch({
      shader: source,
      entryPoint: 'gatherRows',
      resources: { table: table.buffer, ids: ids.buffer, out: out.buffer },
      params: params(ids.size, width, rows),
      workgroups: [ctx.gridSize(out.size, 256)],
    });
    return out;
  },
  // d table[v] = sum of the output gradients of every position that looked up v.
  backward: (g, { inputs: [table, ids] }) => {
    const [rows, width] = table.shape;
    const out = Tensor.empty(table.shape);
    const ctx = getContext();
    if (out.size > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: 'scatterAddRows',
        resources: { grad: g.buffer, ids: ids.buffer, out: out.buffer },
        params: params(ids.size, width, rows),
        workgroups: [ctx.gridSize(width, 256)],
      });
    }
    return [out, null];
  },
});

/**
 * Looks up rows of `table` ([V, d]) at integer `ids` (any shape, i32 or u32): the output has
 * shape `[...ids.shape, d]`. Ids outside `[0, V)` give zero rows; check them on the host first.
 */
export function gather(table: Tensor, ids: Tensor): Tensor {
  requireFloat('gather', 'table', table);
  if (table.rank !== 2) throw new Error(`gather: argument 'table' must be 2-D [V, d], got ${fmtShape(table.shape)}`);
  if (ids.dtype === 'f32') throw new Error(`gather: argument 'ids' has dtype f32; expected i32 or u32`);
  return gatherOp([table, ids], null);
}
