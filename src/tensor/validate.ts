/**
 * Argument checks shared by every layer above the tensor (ops, losses, models, metrics). They run
 * on the host, before any GPU work, and name the function and the argument in their message.
 */
import { getContext } from '../gpu/context';
import { Tensor, fmtShape, tensor } from './tensor';

/** A 0/1 mask: a tensor (shape and dtype are checked) or host data (values are checked too). */
export type MaskInput = Tensor | ArrayLike<number>;

/**
 * Throws naming `fn` unless `t` has dtype f32. The cheap check of an op's forward, where the
 * tensor's liveness is checked when its buffer is bound; use {@link checkFloatTensor} for the
 * full check of a public argument.
 */
export function requireFloat(fn: string, arg: string, t: Tensor): void {
  if (t.dtype !== 'f32') throw new Error(`${fn}: argument '${arg}' has dtype ${t.dtype}; expected f32`);
}

/** Throws unless `t` is a live f32 tensor of rank `rank` (when given). */
export function checkFloatTensor(fn: string, arg: string, t: Tensor, rank?: number): void {
  if (!(t instanceof Tensor)) throw new Error(`${fn}: argument '${arg}' must be a Tensor`);
  t.bufferFor(`${fn} (argument '${arg}')`);
  if (t.dtype !== 'f32') throw new Error(`${fn}: argument '${arg}' has dtype ${t.dtype}; expected f32`);
  if (rank !== undefined && t.rank !== rank) {
    throw new Error(`${fn}: argument '${arg}' has shape ${fmtShape(t.shape)}; expected rank ${rank}`);
  }
}

/** Throws unless `t` fits in one storage binding of this device (4 bytes per element). */
export function checkBindingSize(fn: string, arg: string, t: Tensor): void {
  const limit = getContext().limits.maxStorageBufferBindingSize;
  if (t.size * 4 > limit) {
    throw new Error(
      `${fn}: '${arg}' of shape ${fmtShape(t.shape)} needs ${t.size * 4} bytes, more than this device's ` +
        `maxStorageBufferBindingSize (${limit}); split the batch into smaller micro-batches`,
    );
  }
}

/** Throws unless `a` and `b` have the same shape. */
export function checkSameShape(fn: string, argA: string, a: Tensor, argB: string, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((s, i) => s !== b.shape[i])) {
    throw new Error(`${fn}: '${argA}' has shape ${fmtShape(a.shape)} but '${argB}' has shape ${fmtShape(b.shape)}; they must match`);
  }
}

/**
 * Checks a `[B, T]` mask and returns it as a GPU tensor (uploading host data). A host mask must
 * hold only 0 and 1; a tensor mask must be f32 of that shape (its values are not read back).
 * The returned flag says whether the caller owns (and must dispose) the tensor.
 */
export function maskTensor(fn: string, arg: string, mask: MaskInput, shape: readonly [number, number]): { mask: Tensor; owned: boolean } {
  const want = fmtShape(shape);
  if (mask instanceof Tensor) {
    mask.bufferFor(`${fn} (argument '${arg}')`);
    if (mask.rank !== 2 || mask.shape[0] !== shape[0] || mask.shape[1] !== shape[1]) {
      throw new Error(`${fn}: mask '${arg}' has shape ${fmtShape(mask.shape)}; expected ${want}`);
    }
    if (mask.dtype !== 'f32') throw new Error(`${fn}: mask '${arg}' has dtype ${mask.dtype}; expected f32 (0.0 / 1.0)`);
    return { mask, owned: false };
  }
  if (mask.length !== shape[0] * shape[1]) {
    throw new Error(`${fn}: mask '${arg}' has ${mask.length} values; expected ${shape[0] * shape[1]} for shape ${want}`);
  }
  const values = new Float32Array(mask.length);
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i];
    if (v !== 0 && v !== 1) throw new Error(`${fn}: mask '${arg}' must hold only 0 and 1; found ${v} at index ${i}`);
    values[i] = v;
  }
  return { mask: tensor(values, shape), owned: true };
}

/** Throws unless `value` is a finite number (and positive when asked). */
export function checkNumber(fn: string, arg: string, value: number, { positive = false } = {}): void {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`${fn}: '${arg}' must be a finite number, got ${value}`);
  if (positive && !(value > 0)) throw new Error(`${fn}: '${arg}' must be positive, got ${value}`);
}
