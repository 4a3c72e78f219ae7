/**
 * Argument checks shared by every layer above the tensor (ops, losses, models, metrics). They run
 * on the host, before any GPU work, and name the function and the argument in their message.
 */
import { getContext } from '../gpu/context';
import { Tensor, fmtShape, isPackedDType, tensor, type DType } from './tensor';
import { SgtError } from '../gpu/errors';

/**
 * A 0/1 mask: a tensor (shape and dtype are checked) or host data (values are checked too). Every
 * loss and metric selects a position iff its mask value is not 0 (a tensor's 2 or 0.5 selects
 * like 1; a mask never weights).
 */
export type MaskInput = Tensor | ArrayLike<number>;

/**
 * Throws naming `fn` unless `t` has dtype f32. The cheap check of an op's forward, where the
 * tensor's liveness is checked when its buffer is bound; use {@link checkFloatTensor} for the
 * full check of a public argument.
 */
export function requireFloat(fn: string, arg: string, t: Tensor): void {
  if (t.dtype !== 'f32') throw new SgtError('DTYPE_MISMATCH', dtypeMessage(fn, arg, t.dtype, 'f32'));
}

/** The message of a wrong dtype; a packed weight's says which kernels read packed weights. */
function dtypeMessage(fn: string, arg: string, dtype: DType, expected: string): string {
  const packed = isPackedDType(dtype)
    ? ` (${dtype} is a packed read-only weight type: only matmul's 'b' and 'bias', gather's table and the norms' weight and bias read it)`
    : '';
  return `${fn}: argument '${arg}' has dtype ${dtype}; expected ${expected}${packed}`;
}

/**
 * Throws naming `fn` unless `t` is f32 or a packed weight (`bf16` / `f16`): the operands that the
 * weight-reading kernels unpack as they load.
 */
export function requireWeight(fn: string, arg: string, t: Tensor): void {
  if (t.dtype !== 'f32' && !isPackedDType(t.dtype))
    throw new SgtError('DTYPE_MISMATCH', dtypeMessage(fn, arg, t.dtype, 'f32, bf16 or f16'));
}

/** The WGSL `override` value of a weight operand's dtype: 0 f32, 1 bf16, 2 f16 (see the weight-reading kernels). */
export function weightDtypeCode(t: Tensor): number {
  return t.dtype === 'bf16' ? 1 : t.dtype === 'f16' ? 2 : 0;
}

/** Throws unless `t` is a live f32 tensor of rank `rank` (when given). */
export function checkFloatTensor(fn: string, arg: string, t: Tensor, rank?: number): void {
  if (!(t instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${fn}: argument '${arg}' must be a Tensor`);
  t.bufferFor(`${fn} (argument '${arg}')`);
  if (t.dtype !== 'f32') throw new SgtError('DTYPE_MISMATCH', dtypeMessage(fn, arg, t.dtype, 'f32'));
  if (rank !== undefined && t.rank !== rank) {
    throw new SgtError('SHAPE_MISMATCH', `${fn}: argument '${arg}' has shape ${fmtShape(t.shape)}; expected rank ${rank}`);
  }
}

/** Throws unless `t` fits in one storage binding (the context's `bindingLimit`). */
export function checkBindingSize(fn: string, arg: string, t: Tensor): void {
  checkBindingBytes(fn, `'${arg}' of shape ${fmtShape(t.shape)}`, t.byteLength, 'split the batch into smaller micro-batches');
}

/**
 * Throws unless `bytes` fit in one storage binding (the context's `bindingLimit`: the device's
 * `maxStorageBufferBindingSize` and `maxBufferSize`, or a lowered test limit). `what` names the
 * tensor; `advice` says what to lower.
 */
export function checkBindingBytes(fn: string, what: string, bytes: number, advice: string): void {
  const limit = getContext().bindingLimit;
  if (bytes > limit) {
    throw new SgtError(
      'LIMIT_EXCEEDED',
      `${fn}: ${what} needs ${bytes} bytes, more than the storage binding limit (${limit} bytes); ${advice}`,
    );
  }
}

/**
 * Checks a teacher/student pair of `[B, T, V]` logits (live f32, same shape, a non-empty
 * vocabulary, each within one storage binding) and returns `[B, T, V]`. `vocabArg` names the
 * argument the empty-vocabulary message points at.
 */
export function checkLogitsPair(
  fn: string,
  teacherLogits: Tensor,
  studentLogits: Tensor,
  vocabArg: 'teacherLogits' | 'studentLogits',
): [number, number, number] {
  checkFloatTensor(fn, 'teacherLogits', teacherLogits, 3);
  checkFloatTensor(fn, 'studentLogits', studentLogits, 3);
  checkSameShape(fn, 'studentLogits', studentLogits, 'teacherLogits', teacherLogits);
  const [B, T, V] = teacherLogits.shape;
  if (V === 0) {
    const shape = fmtShape((vocabArg === 'teacherLogits' ? teacherLogits : studentLogits).shape);
    throw new SgtError('SHAPE_MISMATCH', `${fn}: '${vocabArg}' has shape ${shape}; the vocabulary axis must not be empty`);
  }
  checkBindingSize(fn, 'teacherLogits', teacherLogits);
  checkBindingSize(fn, 'studentLogits', studentLogits);
  return [B, T, V];
}

/** Throws unless `a` and `b` have the same shape. */
export function checkSameShape(fn: string, argA: string, a: Tensor, argB: string, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((s, i) => s !== b.shape[i])) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${fn}: '${argA}' has shape ${fmtShape(a.shape)} but '${argB}' has shape ${fmtShape(b.shape)}; they must match`,
    );
  }
}

/**
 * Checks a `[B, T]` mask and returns it as a GPU tensor (uploading host data). A host mask must
 * hold only 0 and 1; a tensor mask must be f32 of that shape (its values are not read back: the
 * kernels select where it is non-zero, `maskSelects` in `shaders/common.wgsl`).
 * The returned flag says whether the caller owns (and must dispose) the tensor.
 */
export function maskTensor(fn: string, arg: string, mask: MaskInput, shape: readonly [number, number]): { mask: Tensor; owned: boolean } {
  const want = fmtShape(shape);
  if (mask instanceof Tensor) {
    mask.bufferFor(`${fn} (argument '${arg}')`);
    if (mask.rank !== 2 || mask.shape[0] !== shape[0] || mask.shape[1] !== shape[1]) {
      throw new SgtError('SHAPE_MISMATCH', `${fn}: mask '${arg}' has shape ${fmtShape(mask.shape)}; expected ${want}`);
    }
    if (mask.dtype !== 'f32')
      throw new SgtError('DTYPE_MISMATCH', `${fn}: mask '${arg}' has dtype ${mask.dtype}; expected f32 (0.0 / 1.0)`);
    return { mask, owned: false };
  }
  if (mask.length !== shape[0] * shape[1]) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${fn}: mask '${arg}' has ${mask.length} values; expected ${shape[0] * shape[1]} for shape ${want}`,
    );
  }
  const values = new Float32Array(mask.length);
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i];
    if (v !== 0 && v !== 1) throw new SgtError('INVALID_ARGUMENT', `${fn}: mask '${arg}' must hold only 0 and 1; found ${v} at index ${i}`);
    values[i] = v;
  }
  return { mask: tensor(values, shape), owned: true };
}

/** Throws unless `value` is a finite number (and positive when asked). */
export function checkNumber(fn: string, arg: string, value: number, { positive = false } = {}): void {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new SgtError('INVALID_ARGUMENT', `${fn}: '${arg}' must be a finite number, got ${value}`);
  if (positive && !(value > 0)) throw new SgtError('INVALID_ARGUMENT', `${fn}: '${arg}' must be positive, got ${value}`);
}
