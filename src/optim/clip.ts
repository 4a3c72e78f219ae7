/**
 * Global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`) entirely on the GPU: the norm
 * and the clip factor never leave the device, so clipping adds no stall to a training step.
 */
import source from '../../shaders/adamw.wgsl?raw';
import { getContext } from '../gpu/context';
import { Tensor, fmtShape } from '../tensor/tensor';
import { bindingChunks, elementRange } from './adamw';
import { SgtError } from '../gpu/errors';

const WG = 256;
// Elements per workgroup of the partial pass before its grid-stride wraps. Fat workgroups pay the
// tree reduction's barriers fewer times: on lavapipe WG * 16 clips 4M gradients in half the time
// of WG * 4, and a 1M-element tensor still gets 256 workgroups (65K threads) on a real GPU.
const PER_WORKGROUP = WG * 16;

function clipParams(n: number, offset: number, maxNorm: number): ArrayBuffer {
  const buf = new ArrayBuffer(16);
  const u = new Uint32Array(buf);
  u[0] = n;
  u[1] = offset;
  new Float32Array(buf)[2] = maxNorm;
  return buf;
}

/**
 * Scales the gradients of `params` in place so that their global L2 norm is at most `maxNorm`:
 * every `.grad` is multiplied by `min(1, maxNorm / (norm + 1e-6))`. Parameters without `.grad`
 * are ignored. Returns the norm before clipping as a 0-d tensor (the caller owns it; read it with
 * the step's other scalars). Nothing is read back and nothing is recorded on the autograd tape.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): Tensor {
  if (!Array.isArray(params)) throw new SgtError('INVALID_ARGUMENT', 'clipGradNorm: params must be an array of tensors');
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm) || maxNorm < 0) {
    throw new SgtError('INVALID_ARGUMENT', `clipGradNorm: 'maxNorm' must be a number >= 0, got ${String(maxNorm)}`);
  }
  const grads: Tensor[] = [];
  params.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `clipGradNorm: parameter ${i} is not a Tensor`);
    const g = p.grad;
    if (!g) return;
    g.bufferFor(`clipGradNorm (gradient of parameter ${i})`);
    if (g.dtype !== 'f32')
      throw new SgtError(
        'DTYPE_MISMATCH',
        `clipGradNorm: gradient of parameter ${i} ${fmtShape(g.shape)} has dtype ${g.dtype}; expected f32`,
      );
    // A parameter listed twice must not be scaled twice.
    if (g.size > 0 && !grads.includes(g)) grads.push(g);
  });

  const ctx = getContext();
  const norm = Tensor.empty([], 'f32', 'clipGradNorm');
  if (grads.length === 0) {
    ctx.write(norm.buffer, new Float32Array(1));
    return norm;
  }

  // Every (chunk of a) gradient gets its own run of partial slots in one shared buffer.
  const pieces = grads.flatMap((g) =>
    bindingChunks(ctx, g.size).map(({ start, count }) => ({ g, start, count, groups: ctx.gridSize(count, PER_WORKGROUP) })),
  );
  const partialCount = pieces.reduce((a, p) => a + p.groups, 0);
  const partials = Tensor.empty([partialCount], 'f32', 'clipGradNorm');
  const factor = Tensor.empty([1], 'f32', 'clipGradNorm');
  let offset = 0;
  for (const { g, start, count, groups } of pieces) {
    ctx.dispatch({
      shader: source,
      entryPoint: 'sumSquaresPartials',
      label: 'clipGradNorm',
      resources: { clipSource: elementRange(g, start, count, 'clipGradNorm'), partials: partials.buffer },
      params: clipParams(count, offset, maxNorm),
      workgroups: [groups],
    });
    offset += groups;
  }
  ctx.dispatch({
    shader: source,
    entryPoint: 'clipNormFinal',
    label: 'clipGradNorm',
    resources: { partials: partials.buffer, totalNorm: norm.buffer, clipFactor: factor.buffer },
    params: clipParams(partialCount, 0, maxNorm),
    workgroups: [1],
  });
  for (const { g, start, count } of pieces) {
    ctx.dispatch({
      shader: source,
      entryPoint: 'scaleByClipFactor',
      label: 'clipGradNorm',
      resources: { clipTarget: elementRange(g, start, count, 'clipGradNorm'), clipFactor: factor.buffer },
      params: clipParams(count, 0, maxNorm),
      workgroups: [ctx.gridSize(count, WG)],
    });
  }
  // Safe while the dispatches are pending: the pool hands the buffers out again only to work
  // recorded later in the same queue.
  partials.dispose();
  factor.dispose();
  return norm;
}
