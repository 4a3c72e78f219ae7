/**
 * A module Web Worker that runs kernels with the library and is driven over comlink from
 * worker.test.ts. Results go back as transferred typed arrays.
 */
import * as Comlink from 'comlink';
import {
  getContext,
  liveBufferCount,
  matmul,
  mean,
  mul,
  noGrad,
  readAll,
  scale,
  scope,
  sub,
  sum,
  tanh,
  tensor,
  type Tensor,
} from '../../src/index';
import { browserGpu } from './browser-gpu';

/** What {@link KernelWorkerApi.init} reports about the adapter the worker got. */
export interface WorkerAdapterInfo {
  /** `'worker'` when the code ran in a WorkerGlobalScope without a document. */
  scope: 'worker' | 'page';
  vendor: string;
  architecture: string;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxComputeInvocationsPerWorkgroup: number;
}

/** Loss and gradients of `sum(tanh(a @ b) ⊙ w)` with respect to `a` and `b`. */
export interface TanhMatmulGrads {
  loss: number;
  gradA: Float32Array;
  gradB: Float32Array;
}

function f32(t: Float32Array | Int32Array | Uint32Array): Float32Array {
  if (!(t instanceof Float32Array)) throw new Error(`kernel-worker: expected f32 data, got ${t.constructor.name}`);
  return t;
}

const api = {
  /** Creates the worker's GPU context and reports its adapter. */
  async init(): Promise<WorkerAdapterInfo> {
    const ctx = await browserGpu();
    const g = globalThis as { WorkerGlobalScope?: unknown; document?: unknown };
    return {
      scope: g.WorkerGlobalScope !== undefined && g.document === undefined ? 'worker' : 'page',
      vendor: ctx.adapter.info.vendor,
      architecture: ctx.adapter.info.architecture,
      features: [...ctx.adapter.features].sort(),
      maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
      maxComputeInvocationsPerWorkgroup: ctx.limits.maxComputeInvocationsPerWorkgroup,
    };
  },

  /** `a @ b` on the worker's device. */
  async matmul(a: Float32Array, aShape: number[], b: Float32Array, bShape: number[]): Promise<Float32Array> {
    const out = await scope(async () => {
      const [c] = await readAll([matmul(tensor(a, aShape), tensor(b, bShape))]);
      return f32(c);
    });
    return Comlink.transfer(out, [out.buffer]);
  },

  /** Loss and gradients of `sum(tanh(a @ b) ⊙ w)`. */
  async gradTanhMatmul(
    a: Float32Array,
    aShape: [number, number],
    b: Float32Array,
    bShape: [number, number],
    w: Float32Array,
  ): Promise<TanhMatmulGrads> {
    const [loss, gradA, gradB] = await scope(async () => {
      const ta = tensor(a, aShape, { requiresGrad: true });
      const tb = tensor(b, bShape, { requiresGrad: true });
      const out = sum(mul(tanh(matmul(ta, tb)), tensor(w, [aShape[0], bShape[1]])));
      out.backward();
      return readAll([out, ta.grad!, tb.grad!]);
    });
    const result = { loss: loss[0], gradA: f32(gradA), gradB: f32(gradB) };
    return Comlink.transfer(result, [result.gradA.buffer, result.gradB.buffer]);
  },

  /**
   * Gradient descent on `mean((x @ w - y)²)` from `w0` for `steps` steps with rate `lr`, calling
   * `onProgress(step, loss)` after each step (loss before that step's update). Returns the final w.
   */
  async train(
    x: Float32Array,
    xShape: [number, number],
    y: Float32Array,
    w0: Float32Array,
    steps: number,
    lr: number,
    onProgress: (step: number, loss: number) => void | Promise<void>,
  ): Promise<Float32Array> {
    const [n, k] = xShape;
    let w: Tensor = tensor(w0, [k, 1], { requiresGrad: true });
    const xt = tensor(x, [n, k]);
    const yt = tensor(y, [n, 1]);
    try {
      for (let step = 0; step < steps; step++) {
        const { next, loss } = scope(() => {
          const diff = sub(matmul(xt, w), yt);
          const l = mean(mul(diff, diff));
          l.backward();
          const updated = noGrad(() => sub(w, scale(w.grad!, lr)));
          return { next: updated, loss: l };
        });
        const lossValue = await loss.item();
        loss.dispose();
        w.dispose();
        w = next;
        w.requiresGrad = true;
        await onProgress(step, lossValue);
      }
      const out = f32(await w.toArray());
      return Comlink.transfer(out, [out.buffer]);
    } finally {
      // The callback is a comlink proxy when called from the page: release its port.
      (onProgress as Partial<Comlink.ProxyMethods>)[Comlink.releaseProxy]?.();
      w.dispose();
      xt.dispose();
      yt.dispose();
    }
  },

  /** Always rejects: throws a `RangeError` with `message` after an await (a real async failure). */
  async fail(message: string): Promise<never> {
    await getContext().sync();
    throw new RangeError(message);
  },

  /** Buffers the worker's pool has handed out and not freed. */
  liveBuffers(): number {
    return liveBufferCount();
  },

  /** Destroys the worker's device. */
  dispose(): void {
    getContext().dispose();
  },
};

/** The API the worker exposes (use with `Comlink.wrap<KernelWorkerApi>`). */
export type KernelWorkerApi = typeof api;

Comlink.expose(api);
