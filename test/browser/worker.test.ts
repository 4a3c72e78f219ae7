/**
 * The library in a module Web Worker, driven from the page over comlink: results computed there
 * match float64 computations written out here, typed arrays travel both ways (transferred),
 * errors arrive as rejections with their message, and progress callbacks cross over as proxies.
 */
import { matmul64, transpose64 } from './float64';
import * as Comlink from 'comlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectClose } from '../helpers/compare';
import { randomF32 } from './browser-gpu';
import type { KernelWorkerApi, WorkerAdapterInfo } from './kernel-worker';

let worker: Worker | null = null;
let api: Comlink.Remote<KernelWorkerApi> | null = null;
let info: WorkerAdapterInfo;
const workerErrors: string[] = [];

function remote(): Comlink.Remote<KernelWorkerApi> {
  if (!api) throw new Error('the worker proxy was already released');
  return api;
}

beforeAll(async () => {
  worker = new Worker(new URL('./kernel-worker.ts', import.meta.url), { type: 'module' });
  // A worker that fails to load reports it here, not as a rejection: surface it.
  const loadError = new Promise<never>((_, reject) => {
    worker!.addEventListener('error', (e) => {
      const msg = `kernel-worker failed: ${e.message || 'module load error (see the browser console)'}`;
      workerErrors.push(msg);
      reject(new Error(msg));
    });
  });
  loadError.catch(() => {});
  api = Comlink.wrap<KernelWorkerApi>(worker);
  info = await Promise.race([api.init(), loadError]);
});

afterAll(() => {
  // Normally done by the last test; this only cleans up after an earlier failure.
  api?.[Comlink.releaseProxy]();
  api = null;
  worker?.terminate();
  worker = null;
});

describe('WebGPU in a module Web Worker over comlink', () => {
  it('init() runs in the worker scope and reports the adapter', () => {
    expect(info.scope).toBe('worker');
    expect(typeof info.vendor).toBe('string');
    expect(typeof info.architecture).toBe('string');
    expect(Array.isArray(info.features)).toBe(true);
    expect(info.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(info.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
  });

  it('matmul in the worker matches float64; inputs are transferred in and the result comes back as a Float32Array', async () => {
    const [M, K, N] = [5, 7, 3];
    const a = randomF32(101, M * K);
    const b = randomF32(102, K * N);
    const expected = matmul64(a, b, M, K, N);
    const before = await remote().liveBuffers();
    const c = await remote().matmul(Comlink.transfer(a, [a.buffer]), [M, K], Comlink.transfer(b, [b.buffer]), [K, N]);
    // The inputs' buffers moved to the worker: detached here.
    expect(a.byteLength).toBe(0);
    expect(b.byteLength).toBe(0);
    expect(c).toBeInstanceOf(Float32Array);
    expect(c.length).toBe(M * N);
    expectClose(c, expected, 1e-5, 1e-6, 'worker matmul');
    expect(await remote().liveBuffers()).toBe(before);
  });

  it('gradients of sum(tanh(a @ b) ⊙ w) computed in the worker match float64', async () => {
    const [M, K, N] = [4, 5, 3];
    const a = randomF32(103, M * K);
    const b = randomF32(104, K * N);
    const w = randomF32(105, M * N);
    const Z = matmul64(a, b, M, K, N);
    const T = Z.map(Math.tanh);
    const f = T.reduce((s, t, i) => s + t * w[i], 0);
    const dZ = T.map((t, i) => w[i] * (1 - t * t));
    const da = matmul64(dZ, transpose64(b, K, N), M, N, K);
    const db = matmul64(transpose64(a, M, K), dZ, K, M, N);

    const before = await remote().liveBuffers();
    const r = await remote().gradTanhMatmul(a, [M, K], b, [K, N], w);
    // Sent without transfer: copied, still usable here.
    expect(a.length).toBe(M * K);
    expect(r.gradA).toBeInstanceOf(Float32Array);
    expect(r.gradB).toBeInstanceOf(Float32Array);
    expectClose([r.loss], [f], 1e-4, 1e-5, 'loss');
    expectClose(r.gradA, da, 1e-4, 1e-5, 'a.grad');
    expectClose(r.gradB, db, 1e-4, 1e-5, 'b.grad');
    expect(await remote().liveBuffers()).toBe(before);
  });

  it('a training loop in the worker reports progress through a comlink.proxy callback', async () => {
    const [n, k, steps, lr] = [8, 3, 6, 0.1];
    const x = randomF32(106, n * k);
    const noise = randomF32(107, n, -0.05, 0.05);
    const wTrue = [0.5, -1, 2];
    const y = Float32Array.from(matmul64(x, wTrue, n, k, 1), (v, i) => v + noise[i]);
    const w0 = new Float32Array(k);

    // float64 gradient descent on mean((x w - y)²): grad = (2/n) xᵀ (x w - y).
    const expectedLosses: number[] = [];
    let w64 = Float64Array.from(w0);
    for (let s = 0; s < steps; s++) {
      const diff = matmul64(x, w64, n, k, 1).map((v, i) => v - y[i]);
      expectedLosses.push(diff.reduce((acc, d) => acc + d * d, 0) / n);
      const grad = matmul64(transpose64(x, n, k), diff, k, n, 1);
      w64 = w64.map((v, i) => v - (lr * 2 * grad[i]) / n);
    }

    const calls: [number, number][] = [];
    const onProgress = Comlink.proxy((step: number, loss: number) => {
      calls.push([step, loss]);
    });
    const before = await remote().liveBuffers();
    const w = await remote().train(x, [n, k], y, w0, steps, lr, onProgress);
    expect(calls.map(([s]) => s)).toEqual([...Array(steps).keys()]);
    expectClose(
      calls.map(([, l]) => l),
      expectedLosses,
      1e-4,
      1e-6,
      'losses',
    );
    for (let s = 1; s < steps; s++) expect(calls[s][1]).toBeLessThan(calls[s - 1][1]);
    expect(w).toBeInstanceOf(Float32Array);
    expectClose(w, w64, 1e-4, 1e-6, 'trained w');
    expect(await remote().liveBuffers()).toBe(before);
  });

  it('an error thrown in the worker arrives as a rejected promise with its original message', async () => {
    const message = `deliberate failure ${Math.random().toString(36).slice(2)} from the worker`;
    // Comlink types a Promise<never> result as never; it is a promise at run time.
    const pending: Promise<unknown> = remote().fail(message);
    const err = await pending.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(message);
    expect((err as Error).name).toBe('RangeError');
    await expect(remote().fail('second failure')).rejects.toThrow('second failure');
  });

  it("the library's own errors cross over too, and the worker keeps working after them", async () => {
    const before = await remote().liveBuffers();
    await expect(remote().matmul(new Float32Array(6), [2, 3], new Float32Array(8), [4, 2])).rejects.toThrow(
      /matmul.*inner dimensions differ \(3 vs 4\)/,
    );
    expect(await remote().liveBuffers()).toBe(before);
    const c = await remote().matmul(Float32Array.from([1, 2]), [1, 2], Float32Array.from([3, 4]), [2, 1]);
    expect(Array.from(c)).toEqual([11]);
  });

  it('releases the proxy and terminates the worker', async () => {
    const p = remote();
    await p.dispose();
    p[Comlink.releaseProxy]();
    api = null;
    // A released proxy refuses further calls.
    expect(() => p.liveBuffers()).toThrow(/released/);
    worker!.terminate();
    worker = null;
    expect(workerErrors).toEqual([]);
  });
});
