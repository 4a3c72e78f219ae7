/** Softmax and log-softmax over the last axis, over `shaders/softmax.wgsl`. */
import source from '../../shaders/softmax.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { requireFloat } from '../tensor/validate';
import { SgtError } from '../gpu/errors';

function rowsOf(x: Tensor): [number, number] {
  const cols = x.shape[x.rank - 1];
  return [cols === 0 ? 0 : x.size / cols, cols];
}

/** Rows at most this long get one thread each instead of one workgroup each (see `softmaxKernel` for the other case). */
export const NARROW_ROW = 64;

function softmaxKernel(kernel: 'softmaxForward' | 'softmaxBackward', log: boolean, x: Tensor, grad?: Tensor): Tensor {
  const out = Tensor.empty(x.shape);
  const [rows, cols] = rowsOf(x);
  if (rows === 0) return out;
  const ctx = getContext();
  // A row per thread also when rows are at least as many as columns: then there are enough rows
  // to fill the grid, and a workgroup per row would spend its time in barriers (softmax of
  // [256, 256] took 75 ms on lavapipe that way). Few long rows keep a workgroup each.
  const narrow = cols <= NARROW_ROW || rows >= cols;
  const entryPoint = narrow ? `${kernel}Narrow` : kernel;
  const resources: Record<string, GPUBuffer> = { x: x.buffer, out: out.buffer };
  if (grad) resources.grad = grad.buffer;
  ctx.dispatch({
    shader: source,
    entryPoint,
    label: log ? 'logSoftmax' : 'softmax',
    constants: { LOG: log ? 1 : 0 },
    resources,
    params: new Uint32Array([rows, cols, 0, 0]),
    workgroups: [narrow ? ctx.gridSize(rows, 256) : ctx.gridSize(rows, 1)],
  });
  return out;
}

function defineSoftmax(name: 'softmax' | 'logSoftmax') {
  const log = name === 'logSoftmax';
  const apply = defineOp<null>({
    name,
    forward: ([x]) => softmaxKernel('softmaxForward', log, x),
    // Both backward rules need only the forward output y (see the WGSL for the formulas).
    backward: (g, { output }) => [softmaxKernel('softmaxBackward', log, output, g)],
  });
  return (x: Tensor): Tensor => {
    requireFloat(name, 'x', x);
    if (x.rank === 0) throw new SgtError('SHAPE_MISMATCH', `${name}: needs rank >= 1, got ${fmtShape(x.shape)}`);
    return apply([x], null);
  };
}

/** `exp(x - max) / sum(exp(x - max))` over the last axis. */
export const softmax = defineSoftmax('softmax');
/** `x - max - log(sum(exp(x - max)))` over the last axis. */
export const logSoftmax = defineSoftmax('logSoftmax');
