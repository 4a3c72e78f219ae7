/**
 * `Tensor`: a shape, a dtype and a GPU buffer with an explicit lifetime. Storage is reference
 * counted so that views (reshape) share one buffer; disposing the last user returns the buffer
 * to the pool. Every tensor made inside a {@link scope} is freed when the scope ends unless the
 * scope returns it.
 */
import { getContext, type GpuContext } from '../gpu/context';
import { bits16ToFloats, floatsToBits16 } from './half';
import { TaskLocal } from './taskLocal';
import { SgtError } from '../gpu/errors';

/**
 * Element types a tensor can hold. `f32`, `i32` and `u32` are 4 bytes wide. `bf16` and `f16` are
 * packed, read-only weights: 2 bytes per element, two elements per 32-bit word (element `2i` in
 * the low half of word `i`, as in a little-endian file), an odd count padded to a whole word. Only
 * the kernels that read weights take them (matmul's `b` and bias, gather's table, the norms'
 * weight and bias), which widen them to f32 as they load; they never require gradients.
 */
export type DType = 'f32' | 'i32' | 'u32' | 'bf16' | 'f16';

/** The packed 16-bit weight dtypes (see {@link DType}). */
export type PackedDType = 'bf16' | 'f16';

/** Whether `dtype` is a packed 16-bit weight type. */
export function isPackedDType(dtype: DType): dtype is PackedDType {
  return dtype === 'bf16' || dtype === 'f16';
}

/** Bytes a tensor of `count` elements of `dtype` occupies on the GPU (packed: whole 32-bit words). */
export function storageBytes(dtype: DType, count: number): number {
  return isPackedDType(dtype) ? Math.ceil(count / 2) * 4 : count * 4;
}

/** Typed array matching a {@link DType} (packed dtypes read back widened to f32). */
export type TypedArrayFor<D extends DType> = D extends 'i32' ? Int32Array : D extends 'u32' ? Uint32Array : Float32Array;

/**
 * Data accepted by {@link tensor}. A `Uint16Array` given with dtype `bf16` / `f16` holds the
 * 16-bit patterns themselves; numbers are rounded to the dtype (nearest, ties to even).
 */
export type TensorData = number[] | Float32Array | Int32Array | Uint32Array | Float64Array | Uint16Array;

/** Options of {@link tensor}. */
export interface TensorOptions {
  /** Element type; inferred from a typed array, else `f32` (`Uint16Array` data needs `bf16` or `f16`). */
  dtype?: DType;
  /** Whether `backward()` should fill this tensor's `.grad`. */
  requiresGrad?: boolean;
}

/** The autograd record of the op that produced a tensor. */
export interface GradNode {
  /** Op name, for error messages. */
  op: string;
  /** The op's tensor inputs. */
  inputs: Tensor[];
  /** Gradients of the inputs given the output's gradient (null where an input needs none). */
  backward: (gradOutput: Tensor) => (Tensor | null)[];
  /** Extra tensors kept for the backward (freed with the output or after backward). */
  saved: Tensor[];
}

class Storage {
  refs = 1;
  constructor(
    readonly ctx: GpuContext,
    readonly buffer: GPUBuffer,
  ) {}
  release(): void {
    if (--this.refs === 0) this.ctx.pool.release(this.buffer);
  }
}

/** One {@link scope}: the tensors made in it that it still owns, and the scope it was opened in. */
class Scope {
  readonly made = new Set<Tensor>();
  ended = false;
  constructor(readonly parent: Scope | null) {}
}

/** The scope of the running task (a scope that ended passes what it keeps to its parent). */
const currentScope = new TaskLocal<Scope | null>(null);
/** The scope that owns each tensor, if one does. */
const ownerOf = new WeakMap<Tensor, Scope>();

/** Gives `t` to the innermost still-open scope of `into`'s chain (none: the caller owns it). */
function adopt(t: Tensor, into: Scope | null): void {
  let s = into;
  while (s?.ended) s = s.parent;
  if (s) {
    s.made.add(t);
    ownerOf.set(t, s);
  } else {
    ownerOf.delete(t);
  }
}

function disown(t: Tensor): void {
  ownerOf.get(t)?.made.delete(t);
  ownerOf.delete(t);
}

/** Product of a shape's dimensions. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/** Formats a shape as `[2,3]` for error messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function checkShape(shape: readonly number[], where: string): void {
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0)
      throw new SgtError('INVALID_ARGUMENT', `${where}: shape ${fmtShape(shape)} must hold non-negative integers`);
  }
}

/** A multi-dimensional array living in a GPU buffer. */
export class Tensor {
  /** Dimensions, outermost first (row-major, contiguous). */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** Accumulated gradient, filled by `backward()` on leaves that require grad. */
  grad: Tensor | null = null;
  /** The op that produced this tensor (null for leaves and in no-grad mode). */
  gradFn: GradNode | null = null;
  private storage: Storage | null;
  private gradWanted = false;

  /** @internal Use {@link tensor} or an op. */
  constructor(storage: Storage, shape: readonly number[], dtype: DType, requiresGrad = false) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    this.requiresGrad = requiresGrad;
    adopt(this, currentScope.get());
  }

  /** Whether gradients flow to this tensor (never for a packed `bf16` / `f16` weight). */
  get requiresGrad(): boolean {
    return this.gradWanted;
  }

  set requiresGrad(value: boolean) {
    if (value && isPackedDType(this.dtype)) {
      throw new SgtError(
        'DTYPE_MISMATCH',
        `Tensor ${fmtShape(this.shape)} has dtype ${this.dtype}, a packed read-only weight, and cannot require gradients; ` +
          `load the model with weightDtype 'f32' to train its weights`,
      );
    }
    this.gradWanted = value;
  }

  /**
   * Allocates an uninitialised tensor of `shape` on the current context. `exact` allocates exactly
   * the tensor's bytes instead of the pool's size class (weights: no rounding up, not pooled).
   */
  static empty(shape: readonly number[], dtype: DType = 'f32', where = 'empty', exact = false): Tensor {
    checkShape(shape, where);
    const ctx = getContext();
    const dead = ctx.deadError(`${where}: a new tensor of shape ${fmtShape(shape)}`);
    if (dead) throw dead;
    const bytes = Math.max(4, storageBytes(dtype, numel(shape)));
    const buffer = exact ? ctx.pool.acquireExact(bytes) : ctx.pool.acquire(bytes);
    return new Tensor(new Storage(ctx, buffer), shape, dtype);
  }

  /** Bytes of the elements on the GPU (4 per element; packed dtypes 2, in whole words). */
  get byteLength(): number {
    return storageBytes(this.dtype, this.size);
  }

  /** Whether `dispose()` was called. */
  get disposed(): boolean {
    return this.storage === null;
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** The GPU buffer (throws if disposed). `where` names the op for the error. */
  bufferFor(where: string): GPUBuffer {
    if (!this.storage)
      throw new SgtError('USE_AFTER_DISPOSE', `${where}: tensor of shape ${fmtShape(this.shape)} was used after dispose()`);
    const dead = this.storage.ctx.deadError(`${where}: tensor of shape ${fmtShape(this.shape)}`);
    if (dead) throw dead;
    return this.storage.buffer;
  }

  /** The GPU buffer holding the elements (row-major, {@link byteLength} bytes used). */
  get buffer(): GPUBuffer {
    return this.bufferFor('buffer');
  }

  /** @internal A tensor sharing this one's storage with another shape (same element count). */
  view(shape: readonly number[]): Tensor {
    const s = this.storage;
    if (!s) throw new SgtError('USE_AFTER_DISPOSE', `reshape: tensor of shape ${fmtShape(this.shape)} was used after dispose()`);
    s.refs++;
    return new Tensor(s, shape, this.dtype);
  }

  /** Frees the GPU buffer (when no view shares it) and the autograd record. Idempotent. */
  dispose(): void {
    if (!this.storage) return;
    this.storage.release();
    this.storage = null;
    if (this.gradFn) {
      for (const t of this.gradFn.saved) t.dispose();
      this.gradFn = null;
    }
    this.grad?.dispose();
    this.grad = null;
    disown(this);
  }

  /** Copies the elements back to the host (one `mapAsync`). */
  async toArray(): Promise<TypedArrayFor<DType>> {
    const [arr] = await readAll([this]);
    return arr;
  }

  /** The single element of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new SgtError('SHAPE_MISMATCH', `item: tensor has shape ${fmtShape(this.shape)}; expected one element`);
    return (await this.toArray())[0];
  }

  /** Reverse-mode autodiff from this tensor (see `backward` in the autograd module). */
  backward(seed?: Tensor): void {
    if (!backwardImpl) throw new SgtError('INTERNAL', 'backward: autograd module not loaded');
    backwardImpl(this, seed);
  }

  /** A readable description (shape and dtype). */
  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.disposed ? ', disposed' : ''})`;
  }
}

let backwardImpl: ((t: Tensor, seed?: Tensor) => void) | null = null;
/** @internal Wires `Tensor.backward` to the autograd engine without an import cycle. */
export function setBackwardImpl(f: (t: Tensor, seed?: Tensor) => void): void {
  backwardImpl = f;
}

const DTYPES: readonly DType[] = ['f32', 'i32', 'u32', 'bf16', 'f16'];

function inferDType(data: TensorData): DType {
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint32Array) return 'u32';
  if (data instanceof Uint16Array)
    throw new SgtError('DTYPE_MISMATCH', "tensor: Uint16Array data holds 16-bit patterns: give dtype 'bf16' or 'f16'");
  return 'f32';
}

/** The range of each integer dtype. */
const INTEGER_RANGE: Partial<Record<DType, readonly [number, number]>> = { i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1] };

/**
 * Throws naming the first element of `data` that `dtype` cannot hold as given: anything but a
 * number in a plain array (a string would become NaN), and for i32/u32 a non-integer (1.7 would
 * become 1) or a value outside the range (it would wrap). A typed array of the dtype itself is
 * valid by construction and not scanned.
 */
function checkHostValues(data: TensorData, dtype: DType): void {
  const range = INTEGER_RANGE[dtype];
  const plain = Array.isArray(data);
  if (!plain && (!range || (dtype === 'i32' && data instanceof Int32Array) || (dtype === 'u32' && data instanceof Uint32Array))) return;
  const values = data as ArrayLike<unknown>;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number') {
      const shown = typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v));
      throw new SgtError('INVALID_ARGUMENT', `tensor: data[${i}] is ${shown} (a ${v === null ? 'null' : typeof v}); expected a number`);
    }
    if (!range) continue;
    if (!Number.isInteger(v))
      throw new SgtError('INVALID_ARGUMENT', `tensor: data[${i}] = ${v} is not an integer; dtype ${dtype} holds integers`);
    if (v < range[0] || v > range[1])
      throw new SgtError('INVALID_ARGUMENT', `tensor: data[${i}] = ${v} is outside ${dtype}'s range [${range[0]}, ${range[1]}]`);
  }
}

function toTyped(data: TensorData, dtype: DType): Float32Array | Int32Array | Uint32Array | Uint16Array {
  checkHostValues(data, dtype);
  if (isPackedDType(dtype)) return data instanceof Uint16Array ? data : floatsToBits16(data as ArrayLike<number>, dtype);
  if (data instanceof Uint16Array)
    throw new SgtError('DTYPE_MISMATCH', `tensor: Uint16Array data needs dtype 'bf16' or 'f16', not ${dtype}`);
  if (dtype === 'f32') return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  if (dtype === 'i32') return data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
  return data instanceof Uint32Array ? data : Uint32Array.from(data as ArrayLike<number>);
}

/**
 * Creates a tensor from host data: `tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true })`.
 * `shape` defaults to `[data.length]`; `[]` makes a scalar.
 */
export function tensor(data: TensorData | number, shape?: readonly number[], options: TensorOptions = {}): Tensor {
  const arr = typeof data === 'number' ? [data] : data;
  if (!Array.isArray(arr) && !ArrayBuffer.isView(arr)) {
    throw new SgtError('INVALID_ARGUMENT', 'tensor: data must be a number, an array of numbers or a typed array');
  }
  const s = shape ?? (typeof data === 'number' ? [] : [arr.length]);
  checkShape(s, 'tensor');
  if (numel(s) !== arr.length) {
    throw new SgtError('SHAPE_MISMATCH', `tensor: data has ${arr.length} elements but shape ${fmtShape(s)} needs ${numel(s)}`);
  }
  const dtype = options.dtype ?? inferDType(arr);
  if (!DTYPES.includes(dtype))
    throw new SgtError('INVALID_ARGUMENT', `tensor: unknown dtype '${dtype as string}'; expected ${DTYPES.join(', ')}`);
  if (options.requiresGrad && dtype !== 'f32') throw new SgtError('DTYPE_MISMATCH', `tensor: requiresGrad needs dtype f32, got ${dtype}`);
  const typed = toTyped(arr, dtype);
  const t = Tensor.empty(s, dtype, 'tensor');
  if (typed.length > 0) getContext().write(t.buffer, typed);
  t.requiresGrad = options.requiresGrad ?? false;
  return t;
}

/** Reads many tensors back with one staging buffer and one `mapAsync` (packed dtypes widened to f32). */
export async function readAll(tensors: Tensor[]): Promise<TypedArrayFor<DType>[]> {
  const ctx = getContext();
  const buffers = await ctx.read(tensors.map((t) => ({ buffer: t.bufferFor('toArray'), bytes: t.byteLength })));
  return buffers.map((b, i) => {
    const t = tensors[i];
    const d = t.dtype;
    if (isPackedDType(d)) return bits16ToFloats(new Uint16Array(b, 0, t.size), d);
    return d === 'f32' ? new Float32Array(b) : d === 'i32' ? new Int32Array(b) : new Uint32Array(b);
  });
}

/** Buffers handed out by the pool and not yet freed: a step that frees what it makes leaves it unchanged. */
export function liveBufferCount(): number {
  return getContext().pool.live;
}

function collect(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value instanceof Tensor) into.add(value);
  else if (depth < 4 && value && typeof value === 'object') {
    for (const v of Array.isArray(value) ? value : Object.values(value)) collect(v, into, depth + 1);
  }
}

function endScope(s: Scope, result: unknown): void {
  const kept = new Set<Tensor>();
  collect(result, kept);
  s.ended = true;
  for (const t of s.made) {
    if (kept.has(t)) adopt(t, s.parent);
    else t.dispose();
  }
  s.made.clear();
}

/**
 * Runs `fn` and disposes every tensor created inside it except those it returns (found in the
 * returned value, arrays and plain objects included), which move to the scope `scope` was called
 * in (or to the caller, outside any scope). Works with async functions too: the scope ends when
 * the promise settles.
 *
 * A scope belongs to the task that opened it. Where the platform tracks async context (Node), an
 * async `fn` owns exactly the tensors its own code makes, before and after its `await`s, and
 * nothing another task makes while it awaits. Browsers cannot tell tasks apart after an `await`:
 * there an async scope also takes the tensors that other code makes outside any scope while it
 * awaits. The library's own async calls (`Trainer.step`, `TransformerCloak.transform`, ...) hold
 * no scope across an `await`, so they are safe beside other tasks everywhere.
 */
export function scope<R>(fn: () => R): R {
  const s = new Scope(currentScope.get());
  let result: R;
  try {
    result = currentScope.run(s, fn);
  } catch (e) {
    endScope(s, undefined);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => {
        endScope(s, r);
        return r;
      },
      (e) => {
        endScope(s, undefined);
        throw e;
      },
    ) as R;
  }
  endScope(s, result);
  return result;
}

/** Takes `t` out of the scope that owns it so that no scope end frees it (the caller owns it). */
export function keep<T extends Tensor>(t: T): T {
  disown(t);
  return t;
}
