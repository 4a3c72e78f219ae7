/**
 * Kernels in a real page (Vitest browser mode, headless Chromium, WebGPU on SwiftShader), checked
 * against float64 computations written out here. Inputs are tiny: SwiftShader is slow.
 */
import { matmul64, transpose64 } from './float64';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/index';
import { gather, liveBufferCount, logSoftmax, matmul, mul, readAll, scope, softmax, sum, tanh, tensor } from '../../src/index';
import { expectClose } from '../helpers/compare';
import { browserGpu, randomF32 } from './browser-gpu';

let ctx: GpuContext;

beforeAll(async () => {
  ctx = await browserGpu();
});

describe('WebGPU in the page', () => {
  it('runs in a browser page with navigator.gpu, and the adapter reports features and limits', () => {
    expect(typeof (globalThis as { document?: unknown }).document).toBe('object');
    expect(navigator.gpu).toBeDefined();
    const info = ctx.adapter.info;
    expect(typeof info.vendor).toBe('string');
    expect(typeof info.architecture).toBe('string');
    // Every feature the context enabled is one the adapter offers and the device got.
    const adapterFeatures = [...ctx.adapter.features];
    for (const f of ctx.features) {
      expect(adapterFeatures).toContain(f);
      expect(ctx.device.features.has(f)).toBe(true);
    }
    // And every wanted one the adapter offers was enabled.
    for (const f of ['shader-f16', 'subgroups', 'timestamp-query']) {
      expect(ctx.features.has(f)).toBe(ctx.adapter.features.has(f));
    }
    // init() asks for the adapter's real limits, which are at least WebGPU's defaults.
    const L = ctx.limits;
    expect(L.maxStorageBufferBindingSize).toBe(ctx.adapter.limits.maxStorageBufferBindingSize);
    expect(L.maxComputeInvocationsPerWorkgroup).toBe(ctx.adapter.limits.maxComputeInvocationsPerWorkgroup);
    expect(L.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(L.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(L.maxComputeWorkgroupsPerDimension).toBeGreaterThanOrEqual(65535);
    expect(L.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
  });

  it('matmul [5,7] @ [7,3] matches float64', async () => {
    const [M, K, N] = [5, 7, 3];
    const a = randomF32(1, M * K);
    const b = randomF32(2, K * N);
    const got = await scope(() => matmul(tensor(a, [M, K]), tensor(b, [K, N]))).toArray();
    expectClose(got, matmul64(a, b, M, K, N), 1e-5, 1e-6, 'matmul');
  });

  it('matmul with transposed operands matches float64', async () => {
    const [M, K, N] = [3, 4, 6];
    const aT = randomF32(3, K * M); // stored [K, M]
    const bT = randomF32(4, N * K); // stored [N, K]
    const c = scope(() => matmul(tensor(aT, [K, M]), tensor(bT, [N, K]), { transposeA: true, transposeB: true }));
    expect(c.shape).toEqual([M, N]);
    const expected = matmul64(transpose64(aT, K, M), transpose64(bT, N, K), M, K, N);
    expectClose(await c.toArray(), expected, 1e-5, 1e-6, 'matmul aᵀbᵀ');
    c.dispose();
  });

  it('softmax and logSoftmax of a 300-wide row with logits of magnitude 1e4 match float64', async () => {
    const cols = 300;
    const r = randomF32(5, 2 * cols, 0, 1);
    const x = new Float32Array(2 * cols);
    for (let j = 0; j < cols; j++) {
      // Row 0: mostly within 12 of 1e4 (so several entries matter), some at -1e4 and 5e3 (exp
      // underflows to 0 after the max is subtracted; without it every exp overflows).
      x[j] = j % 17 === 3 ? -1e4 : j % 23 === 5 ? 5e3 : Math.fround(1e4 - 12 * r[j]);
      // Row 1: ordinary logits.
      x[cols + j] = Math.fround(6 * r[cols + j] - 3);
    }
    x[42] = 1e4; // the max, exactly
    const expectedSoft = new Float64Array(2 * cols);
    const expectedLog = new Float64Array(2 * cols);
    for (let row = 0; row < 2; row++) {
      const xs = Array.from(x.subarray(row * cols, (row + 1) * cols));
      const m = Math.max(...xs);
      const z = xs.reduce((s, v) => s + Math.exp(v - m), 0);
      xs.forEach((v, j) => {
        expectedSoft[row * cols + j] = Math.exp(v - m) / z;
        expectedLog[row * cols + j] = v - m - Math.log(z);
      });
    }
    const [soft, logSoft] = await scope(async () => {
      const t = tensor(x, [2, cols]);
      return readAll([softmax(t), logSoftmax(t)]);
    });
    for (const v of soft) expect(Number.isFinite(v)).toBe(true);
    expectClose(soft, expectedSoft, 1e-4, 1e-8, 'softmax');
    expectClose(logSoft, expectedLog, 1e-5, 1e-4, 'logSoftmax');
    // The entries 2e4 below the max vanish; the row sums to one.
    expect(soft[3]).toBe(0);
    expect(Array.from(soft.subarray(0, cols)).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
  });

  it('sum over the last axis, with and without keepDim, and over all elements', async () => {
    const [rows, cols] = [3, 37];
    const x = randomF32(6, rows * cols, -2, 2);
    const expectedRows = new Float64Array(rows);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) expectedRows[i] += x[i * cols + j];
    const expectedAll = expectedRows.reduce((s, v) => s + v, 0);
    const [rowSums, kept, all] = await scope(async () => {
      const t = tensor(x, [rows, cols]);
      const a = sum(t, -1);
      const b = sum(t, -1, { keepDim: true });
      const c = sum(t);
      expect(a.shape).toEqual([rows]);
      expect(b.shape).toEqual([rows, 1]);
      expect(c.size).toBe(1);
      return readAll([a, b, c]);
    });
    expectClose(rowSums, expectedRows, 1e-5, 1e-5, 'row sums');
    expectClose(kept, expectedRows, 1e-5, 1e-5, 'row sums (keepDim)');
    expectClose(all, [expectedAll], 1e-5, 1e-5, 'total');
  });

  it('gather rows, and its scatter-add gradient with repeated ids', async () => {
    const [V, d] = [6, 4];
    const table = randomF32(7, V * d);
    const ids = Int32Array.from([5, 0, 2, 2, 3, 2]);
    const g = randomF32(8, ids.length * d);
    const expectedRows = new Float64Array(ids.length * d);
    const expectedGrad = new Float64Array(V * d);
    ids.forEach((id, i) => {
      for (let j = 0; j < d; j++) {
        expectedRows[i * d + j] = table[id * d + j];
        expectedGrad[id * d + j] += g[i * d + j];
      }
    });
    const [rows, grad] = await scope(async () => {
      const t = tensor(table, [V, d], { requiresGrad: true });
      const out = gather(t, tensor(ids, [ids.length]));
      expect(out.shape).toEqual([ids.length, d]);
      sum(mul(out, tensor(g, [ids.length, d]))).backward();
      return readAll([out, t.grad!]);
    });
    expect(Array.from(rows)).toEqual(Array.from(expectedRows)); // a copy: exact
    expectClose(grad, expectedGrad, 1e-5, 1e-6, 'gather grad');
  });

  it('backward of sum(mul(tanh(matmul(a, b)), w)) matches the float64 gradient', async () => {
    const [M, K, N] = [4, 5, 3];
    const a = randomF32(9, M * K);
    const b = randomF32(10, K * N);
    const w = randomF32(11, M * N);
    // f = sum(w ⊙ tanh(a b)); dZ = w ⊙ (1 - tanh²(Z)); da = dZ bᵀ; db = aᵀ dZ.
    const Z = matmul64(a, b, M, K, N);
    const T = Z.map(Math.tanh);
    const f = T.reduce((s, t, i) => s + t * w[i], 0);
    const dZ = T.map((t, i) => w[i] * (1 - t * t));
    const da = matmul64(dZ, transpose64(b, K, N), M, N, K);
    const db = matmul64(transpose64(a, M, K), dZ, K, M, N);

    const before = liveBufferCount();
    let during = -1;
    const [loss, gradA, gradB] = await scope(async () => {
      const ta = tensor(a, [M, K], { requiresGrad: true });
      const tb = tensor(b, [K, N], { requiresGrad: true });
      const tw = tensor(w, [M, N]);
      const out = sum(mul(tanh(matmul(ta, tb)), tw));
      expect(out.requiresGrad).toBe(true);
      out.backward();
      expect(ta.grad?.shape).toEqual([M, K]);
      expect(tb.grad?.shape).toEqual([K, N]);
      during = liveBufferCount();
      return readAll([out, ta.grad!, tb.grad!]);
    });
    // The scope freed everything it made (leaves, intermediates, gradients).
    expect(during).toBeGreaterThan(before);
    expect(liveBufferCount()).toBe(before);

    expectClose(loss, [f], 1e-4, 1e-5, 'loss');
    expectClose(gradA, da, 1e-4, 1e-5, 'a.grad');
    expectClose(gradB, db, 1e-4, 1e-5, 'b.grad');
  });

  it('liveBufferCount() returns to its start after a scope around forward + backward, several times', async () => {
    const start = liveBufferCount();
    for (let step = 0; step < 3; step++) {
      await scope(async () => {
        const x = tensor(randomF32(20 + step, 8 * 6), [8, 6], { requiresGrad: true });
        const y = softmax(matmul(x, tensor(randomF32(30 + step, 6 * 5), [6, 5])));
        const loss = sum(mul(y, y));
        loss.backward();
        expect(liveBufferCount()).toBeGreaterThan(start);
        await loss.item();
      });
      expect(liveBufferCount()).toBe(start);
    }
    // A tensor returned by the scope survives it, and disposing it brings the count back.
    const kept = scope(() => tanh(tensor([0.5, -0.5], [2])));
    expect(liveBufferCount()).toBe(start + 1);
    expectClose(await kept.toArray(), [Math.tanh(0.5), Math.tanh(-0.5)], 1e-5, 1e-6, 'tanh');
    kept.dispose();
    expect(liveBufferCount()).toBe(start);
    await ctx.sync();
  });
});
