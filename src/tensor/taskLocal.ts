/**
 * Task-local values: state (the open scope, grad mode) that belongs to the code that set it, so
 * that two tasks interleaving at their `await`s do not see each other's.
 *
 * Where the platform tracks async context (Node's `AsyncLocalStorage`, reached through
 * `process.getBuiltinModule` so that no bundler sees a Node import), a value set by `run` follows
 * `fn` into every continuation after its `await`s, and nothing else sees it. Browsers have no such
 * primitive: there a value set by `run` holds during `fn`'s synchronous part and, for an async
 * `fn`, until its promise settles, for any code that runs meanwhile without a `run` of its own.
 * The library's own async calls therefore hold no task-local value across an `await` (they do
 * their GPU work in synchronous regions), which makes them safe beside other tasks everywhere.
 */

interface AsyncStorage<T> {
  getStore(): T | undefined;
  run<R>(store: T, fn: () => R): R;
}

type AsyncStorageClass = new <T>() => AsyncStorage<T>;

function findAsyncLocalStorage(): AsyncStorageClass | null {
  const process = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  try {
    const hooks = process?.getBuiltinModule?.('node:async_hooks') as { AsyncLocalStorage?: AsyncStorageClass } | undefined;
    return hooks?.AsyncLocalStorage ?? null;
  } catch {
    return null;
  }
}

const AsyncLocalStorageClass = findAsyncLocalStorage();

/** Whether task-local values follow async continuations here (Node), or only hold while set (browsers). */
export const tracksAsyncContext = AsyncLocalStorageClass !== null;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** A value with a default, set for the duration of a function (see the module comment). */
export class TaskLocal<T> {
  private readonly storage: AsyncStorage<{ value: T }> | null = AsyncLocalStorageClass ? new AsyncLocalStorageClass() : null;
  /** Without async context: the values set by `run`s still in progress, innermost last. */
  private readonly open: { value: T }[] = [];

  constructor(private readonly fallback: T) {}

  /** The value set by the innermost `run` of the current task, else the default. */
  get(): T {
    if (this.storage) return (this.storage.getStore() ?? { value: this.fallback }).value;
    return this.open.length ? this.open[this.open.length - 1].value : this.fallback;
  }

  /** Calls `fn` with the value set to `value`; for an async `fn`, until its promise settles. */
  run<R>(value: T, fn: () => R): R {
    const entry = { value };
    if (this.storage) return this.storage.run(entry, fn);
    this.open.push(entry);
    const remove = () => {
      const at = this.open.lastIndexOf(entry);
      if (at >= 0) this.open.splice(at, 1);
    };
    let result: R;
    try {
      result = fn();
    } catch (e) {
      remove();
      throw e;
    }
    if (isThenable(result)) result.then(remove, remove);
    else remove();
    return result;
  }
}
