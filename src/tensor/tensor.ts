/**
 * `Tensor`: a shape, a dtype and a GPU buffer with an explicit lifetime. Storage is reference
 * counted so that views (reshape) share one buffer; disposing the last user returns the buffer
 * to the pool. Every tensor made inside a {@link scope} is freed when the scope ends unless the
 * scope returns it.
 */
import { getContext, type GpuContext } from '../gpu/context';

/** Element types a tensor can hold (all 4 bytes wide). */
export type DType = 'f32' | 'i32' | 'u32';

/** Typed array matching a {@link DType}. */
export type TypedArrayFor<D extends DType> = D extends 'f32' ? Float32Array : D extends 'i32' ? Int32Array : Uint32Array;

/** Data accepted by {@link tensor}. */
export type TensorData = number[] | Float32Array | Int32Array | Uint32Array | Float64Array;

/** Options of {@link tensor}. */
export interface TensorOptions {
  /** Element type; inferred from a typed array, else `f32`. */
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

const scopeStack: Set<Tensor>[] = [];

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
    if (!Number.isInteger(s) || s < 0) throw new Error(`${where}: shape ${fmtShape(shape)} must hold non-negative integers`);
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
  /** Whether gradients flow to this tensor. */
  requiresGrad: boolean;
  /** Accumulated gradient, filled by `backward()` on leaves that require grad. */
  grad: Tensor | null = null;
  /** The op that produced this tensor (null for leaves and in no-grad mode). */
  gradFn: GradNode | null = null;
  private storage: Storage | null;

  /** @internal Use {@link tensor} or an op. */
  constructor(storage: Storage, shape: readonly number[], dtype: DType, requiresGrad = false) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    this.requiresGrad = requiresGrad;
    scopeStack[scopeStack.length - 1]?.add(this);
  }

  /** Allocates an uninitialised tensor of `shape` on the current context. */
  static empty(shape: readonly number[], dtype: DType = 'f32', where = 'empty'): Tensor {
    checkShape(shape, where);
    const ctx = getContext();
    const buffer = ctx.pool.acquire(Math.max(4, numel(shape) * 4));
    return new Tensor(new Storage(ctx, buffer), shape, dtype);
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
    if (!this.storage) throw new Error(`${where}: tensor of shape ${fmtShape(this.shape)} was used after dispose()`);
    const dead = this.storage.ctx.deadReason;
    if (dead) throw new Error(`${where}: tensor of shape ${fmtShape(this.shape)} is unusable: ${dead}`);
    return this.storage.buffer;
  }

  /** The GPU buffer holding the elements (row-major, 4 bytes each). */
  get buffer(): GPUBuffer {
    return this.bufferFor('buffer');
  }

  /** @internal A tensor sharing this one's storage with another shape (same element count). */
  view(shape: readonly number[]): Tensor {
    const s = this.storage;
    if (!s) throw new Error(`reshape: tensor of shape ${fmtShape(this.shape)} was used after dispose()`);
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
    for (const s of scopeStack) s.delete(this);
  }

  /** Copies the elements back to the host (one `mapAsync`). */
  async toArray(): Promise<TypedArrayFor<DType>> {
    const [arr] = await readAll([this]);
    return arr;
  }

  /** The single element of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: tensor has shape ${fmtShape(this.shape)}; expected one element`);
    return (await this.toArray())[0];
  }

  /** Reverse-mode autodiff from this tensor (see `backward` in the autograd module). */
  backward(seed?: Tensor): void {
    if (!backwardImpl) throw new Error('backward: autograd module not loaded');
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

function inferDType(data: TensorData): DType {
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint32Array) return 'u32';
  return 'f32';
}

function toTyped(data: TensorData, dtype: DType): Float32Array | Int32Array | Uint32Array {
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
    throw new Error('tensor: data must be a number, an array of numbers or a typed array');
  }
  const s = shape ?? (typeof data === 'number' ? [] : [arr.length]);
  checkShape(s, 'tensor');
  if (numel(s) !== arr.length) {
    throw new Error(`tensor: data has ${arr.length} elements but shape ${fmtShape(s)} needs ${numel(s)}`);
  }
  const dtype = options.dtype ?? inferDType(arr);
  if (dtype !== 'f32' && dtype !== 'i32' && dtype !== 'u32')
    throw new Error(`tensor: unknown dtype '${dtype as string}'; expected f32, i32 or u32`);
  if (options.requiresGrad && dtype !== 'f32') throw new Error(`tensor: requiresGrad needs dtype f32, got ${dtype}`);
  const typed = toTyped(arr, dtype);
  const t = Tensor.empty(s, dtype, 'tensor');
  if (typed.length > 0) getContext().write(t.buffer, typed);
  t.requiresGrad = options.requiresGrad ?? false;
  return t;
}

/** Reads many tensors back with one staging buffer and one `mapAsync`. */
export async function readAll(tensors: Tensor[]): Promise<TypedArrayFor<DType>[]> {
  const ctx = getContext();
  const buffers = await ctx.read(tensors.map((t) => ({ buffer: t.bufferFor('toArray'), bytes: t.size * 4 })));
  return buffers.map((b, i) => {
    const d = tensors[i].dtype;
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

function endScope(made: Set<Tensor>, result: unknown): void {
  const kept = new Set<Tensor>();
  collect(result, kept);
  // Remove this scope itself (an async scope may not be on top when it ends).
  const at = scopeStack.lastIndexOf(made);
  scopeStack.splice(at, 1);
  const parent = scopeStack[at - 1];
  for (const t of made) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
}

/**
 * Runs `fn` and disposes every tensor created inside it except those it returns (found in the
 * returned value, arrays and plain objects included), which move to the enclosing scope.
 * Works with async functions too (the scope ends when the promise settles).
 */
export function scope<R>(fn: () => R): R {
  const made = new Set<Tensor>();
  scopeStack.push(made);
  let result: R;
  try {
    result = fn();
  } catch (e) {
    endScope(made, undefined);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => {
        endScope(made, r);
        return r;
      },
      (e) => {
        endScope(made, undefined);
        throw e;
      },
    ) as R;
  }
  endScope(made, result);
  return result;
}

/** Removes `t` from every open scope so that no scope end frees it (the caller owns it). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopeStack) s.delete(t);
  return t;
}
