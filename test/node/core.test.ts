/** The foundation: context, tensors and their lifetimes, scopes, the autograd tape, readback. */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import {
  add,
  backward,
  exp,
  keep,
  liveBufferCount,
  matmul,
  mul,
  noGrad,
  readAll,
  reshape,
  scope,
  sum,
  tanh,
  tensor,
  type Tensor,
} from '../../src/index';
import { PipelineCache } from '../../src/gpu/pipelineCache';
import { composeWgsl } from '../../src/gpu/wgslCompose';
import { reflectEntryPoint } from '../../src/gpu/wgslReflect';

/** Run-time reflection of one entry point of WGSL (its includes resolved). */
const reflectBindings = (source: string, entryPoint: string) => reflectEntryPoint(composeWgsl(source).code, entryPoint);

describe('context', () => {
  it('is created once, with the adapter limits and the optional features it has', async () => {
    const ctx = await gpu();
    expect(await gpu()).toBe(ctx);
    expect(ctx.limits.maxStorageBufferBindingSize).toBe(ctx.adapter.limits.maxStorageBufferBindingSize);
    expect(ctx.limits.maxComputeInvocationsPerWorkgroup).toBe(ctx.adapter.limits.maxComputeInvocationsPerWorkgroup);
    for (const f of ctx.features) {
      expect(['shader-f16', 'subgroups', 'timestamp-query']).toContain(f);
      expect(ctx.device.features.has(f)).toBe(true);
    }
    for (const f of ['shader-f16', 'subgroups', 'timestamp-query']) {
      expect(ctx.features.has(f)).toBe(ctx.adapter.features.has(f));
    }
  });

  it('reads bind-group layouts from the WGSL, per entry point', () => {
    const wgsl = `
      struct P { n: u32 }
      @group(0) @binding(0) var<uniform> params: P;
      @group(0) @binding(1) var<storage, read> src: array<f32>;
      @group(0) @binding(2) var<storage, read_write> dst: array<f32>;
      @group(0) @binding(3) var<storage, read> unused: array<f32>;
      @compute @workgroup_size(1) fn copy() { dst[0] = src[params.n]; }
      @compute @workgroup_size(1) fn other() { dst[0] = unused[0]; }`;
    expect(reflectBindings(wgsl, 'copy')).toEqual([
      { name: 'params', binding: 0, kind: 'uniform' },
      { name: 'src', binding: 1, kind: 'read-only-storage' },
      { name: 'dst', binding: 2, kind: 'storage' },
    ]);
    expect(reflectBindings(wgsl, 'other').map((s) => s.name)).toEqual(['dst', 'unused']);
    expect(() => reflectBindings(wgsl, 'missing')).toThrow(/no compute entry point 'missing'.*copy, other/);
  });

  it('compiles a pipeline once per (source, entry point, constants)', async () => {
    const ctx = await gpu();
    const a = tensor([1, 2, 3]);
    exp(a).dispose();
    const before = ctx.pipelines.size;
    exp(a).dispose();
    tanh(a).dispose(); // same entry point, other OP constant: one more pipeline
    expect(ctx.pipelines.size).toBe(before + 1);
    a.dispose();
  });

  it('withShaderSource runs the library ops on an edited kernel family, only while it lasts', async () => {
    const ctx = await gpu();
    const original = (await import('../../shaders/elementwise.wgsl?raw')).default;
    const edited = original.replace('case 0u: { return x + y; }', 'case 0u: { return x - y; }');
    expect(edited).not.toBe(original);
    const a = tensor([5, 7]);
    const b = tensor([1, 2]);
    const inside = await ctx.withShaderSource(original, edited, () => add(a, b).toArray());
    expect([...inside]).toEqual([4, 5]);
    expect([...(await add(a, b).toArray())]).toEqual([6, 9]);
    await expect(ctx.withShaderSource(original, edited, () => ctx.withShaderSource(original, edited, () => 0))).rejects.toThrow(
      /already overridden/,
    );
    // The override ended with the rejected call.
    expect([...(await add(a, b).toArray())]).toEqual([6, 9]);
    a.dispose();
    b.dispose();
  });

  it("finds a shipped kernel's layouts without the WGSL parser, and reads other WGSL only after prepare()", async () => {
    const ctx = await gpu();
    const cache = new PipelineCache(ctx.device, (message) => {
      throw new Error(message);
    });
    const custom = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
      @compute @workgroup_size(1) fn main() { out[0] = 1.0; }`;
    // Named, and before any GPU work: nothing was compiled.
    expect(() => cache.get(custom, 'main')).toThrow(/kernel 'main': its WGSL is not one the package ships.*prepareShader/);
    expect(cache.size).toBe(0);
    // A shipped kernel needs no parser: its layouts came with its source (the build's shader plugin).
    const elementwise = (await import('../../shaders/elementwise.wgsl?raw')).default;
    expect(cache.get(elementwise, 'binary').slots.map((s) => s.name)).toEqual(['params', 'a', 'b', 'out']);
    expect(() => cache.get(elementwise, 'nope')).toThrow(/no compute entry point 'nope' \(it has: .*binary/);
    await cache.prepare(custom);
    expect(cache.get(custom, 'main').slots).toEqual([{ name: 'out', binding: 0, kind: 'storage' }]);
    expect(cache.size).toBe(2);
    await ctx.sync();
  });

  it('turns a WGSL compile error into a thrown error, not a silent NaN', async () => {
    const ctx = await gpu();
    const out = tensor([0]);
    const broken = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
      @compute @workgroup_size(1) fn main() { out[0] = undefinedThing; }`;
    await ctx.prepareShader(broken);
    let caught: unknown = null;
    try {
      ctx.dispatch({ shader: broken, entryPoint: 'main', resources: { out: out.buffer }, workgroups: [1] });
      await ctx.sync();
    } catch (e) {
      caught = e;
    }
    expect(String(caught)).toMatch(/WebGPU error.*undefinedThing/s);
    out.dispose();
  });
});

describe('tensor', () => {
  it('round-trips f32, i32 and u32 data and infers the dtype', async () => {
    await gpu();
    const f = tensor([1.5, -2, 3], [3]);
    const i = tensor(new Int32Array([-7, 0, 9]), [3]);
    const u = tensor([4000000000, 1], [2], { dtype: 'u32' });
    const s = tensor(2.5);
    expect([f.dtype, i.dtype, u.dtype]).toEqual(['f32', 'i32', 'u32']);
    expect(s.shape).toEqual([]);
    const [fa, ia, ua, sa] = await readAll([f, i, u, s]);
    expect([...fa]).toEqual([1.5, -2, 3]);
    expect([...ia]).toEqual([-7, 0, 9]);
    expect([...ua]).toEqual([4000000000, 1]);
    expect(sa[0]).toBe(2.5);
    expect(await s.item()).toBe(2.5);
    for (const t of [f, i, u, s]) t.dispose();
  });

  it('rejects data of the wrong length, bad shapes and requiresGrad on integers', async () => {
    await gpu();
    expect(() => tensor([1, 2, 3, 4, 5], [2, 3])).toThrow(/tensor: data has 5 elements but shape \[2,3\] needs 6/);
    expect(() => tensor([1, 2], [2.5])).toThrow(/tensor: shape \[2.5\]/);
    expect(() => tensor([1], [1], { dtype: 'i32', requiresGrad: true })).toThrow(/requiresGrad needs dtype f32/);
    const two = tensor([1, 2]);
    await expect(two.item()).rejects.toThrow(/item: tensor has shape \[2\]/);
    two.dispose();
  });

  it('throws on any use after dispose, naming the op', async () => {
    await gpu();
    const a = tensor([1, 2, 3]);
    const b = tensor([1, 2, 3]);
    a.dispose();
    a.dispose(); // idempotent
    expect(a.disposed).toBe(true);
    expect(() => add(a, b)).toThrow(/add \(input 0\): tensor of shape \[3\] was used after dispose/);
    expect(() => exp(a)).toThrow(/exp.*used after dispose/);
    await expect(a.toArray()).rejects.toThrow(/toArray: tensor of shape \[3\] was used after dispose/);
    b.dispose();
  });

  it('shares storage between a reshape view and its source', async () => {
    await gpu();
    const start = liveBufferCount();
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = reshape(a, [3, -1]);
    expect(v.shape).toEqual([3, 2]);
    expect(liveBufferCount()).toBe(start + 1);
    a.dispose();
    expect([...(await v.toArray())]).toEqual([1, 2, 3, 4, 5, 6]);
    v.dispose();
    expect(liveBufferCount()).toBe(start);
  });
});

describe('scope', () => {
  it('frees everything made inside except what it returns, which joins the outer scope', async () => {
    await gpu();
    const start = liveBufferCount();
    const outer = scope(() => {
      const kept = scope(() => {
        const a = tensor([1, 2]);
        const b = tensor([3, 4]);
        const c = add(a, b);
        mul(c, c);
        return { result: c, other: [a] };
      });
      expect(liveBufferCount()).toBe(start + 2);
      expect(kept.result.disposed).toBe(false);
      return kept.result;
    });
    expect(liveBufferCount()).toBe(start + 1);
    expect([...(await outer.toArray())]).toEqual([4, 6]);
    outer.dispose();
    expect(liveBufferCount()).toBe(start);
  });

  it('frees on throw, and works with async functions', async () => {
    await gpu();
    const start = liveBufferCount();
    expect(() =>
      scope(() => {
        tensor([1]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(liveBufferCount()).toBe(start);
    const value = await scope(async () => {
      const a = tensor([2, 3]);
      const s = sum(mul(a, a));
      return s.item();
    });
    expect(value).toBe(13);
    expect(liveBufferCount()).toBe(start);
    const kept = scope(() => keep(tensor([1])));
    expect(liveBufferCount()).toBe(start + 1);
    kept.dispose();
  });
});

describe('autograd', () => {
  it('fills .grad of leaves, accumulating across backward calls', async () => {
    await gpu();
    const x = tensor([1, -2, 3], [3], { requiresGrad: true });
    const y = tensor([4, 5, 6], [3]);
    const loss = () => sum(mul(mul(x, x), y)); // d/dx = 2 x y
    scope(() => loss().backward());
    expect([...(await x.grad!.toArray())]).toEqual([8, -20, 36]);
    expect(y.grad).toBeNull();
    scope(() => loss().backward());
    expect([...(await x.grad!.toArray())]).toEqual([16, -40, 72]);
    x.dispose();
    y.dispose();
  });

  it('gives each leaf its own gradient tensor even when a rule shares one', async () => {
    await gpu();
    const a = tensor([1, 2], [2], { requiresGrad: true });
    const b = tensor([3, 4], [2], { requiresGrad: true });
    scope(() => sum(add(a, b)).backward());
    expect(a.grad).not.toBe(b.grad);
    a.grad!.dispose();
    expect([...(await b.grad!.toArray())]).toEqual([1, 1]);
    a.dispose();
    b.dispose();
  });

  it('needs a seed for non-scalar outputs and checks its shape', async () => {
    await gpu();
    const x = tensor([1, 2, 3, 4], [2, 2], { requiresGrad: true });
    scope(() => {
      const y = mul(x, x);
      expect(() => y.backward()).toThrow(/backward: output has shape \[2,2\]; without a seed gradient/);
      expect(() => backward(y, tensor([1, 1]))).toThrow(/seed shape \[2\] must equal the output shape \[2,2\]/);
      backward(y, tensor([1, 0, 0, 1], [2, 2]));
    });
    expect([...(await x.grad!.toArray())]).toEqual([2, 0, 0, 8]);
    x.dispose();
  });

  it('records nothing under noGrad, and refuses backward on a graph without grads', async () => {
    await gpu();
    const x = tensor([1, 2], [2], { requiresGrad: true });
    scope(() => {
      const y = noGrad(() => sum(mul(x, x)));
      expect(y.requiresGrad).toBe(false);
      expect(y.gradFn).toBeNull();
      expect(() => y.backward()).toThrow(/does not require grad/);
    });
    x.dispose();
  });

  it('frees the graph after backward unless retainGraph is set', async () => {
    await gpu();
    const x = tensor([0.5, -0.5], [2], { requiresGrad: true });
    scope(() => {
      const y = sum(tanh(x));
      backward(y, undefined, { retainGraph: true });
      expect(y.gradFn).not.toBeNull();
      backward(y);
      expect(y.gradFn).toBeNull();
    });
    const g = await x.grad!.toArray();
    const expected = 2 * (1 - Math.tanh(0.5) ** 2);
    expect(g[0]).toBeCloseTo(expected, 5);
    x.dispose();
  });

  it('leaves the live-buffer count unchanged across training steps', async () => {
    await gpu();
    const w = tensor(
      Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)),
      [4, 3],
      { requiresGrad: true },
    );
    const input = tensor(
      Float32Array.from({ length: 8 }, (_, i) => Math.cos(i)),
      [2, 4],
    );
    const step = () =>
      scope(() => {
        const loss = sum(tanh(matmul(input, w)));
        loss.backward();
      });
    step(); // the first step creates w.grad
    const after1 = liveBufferCount();
    for (let i = 0; i < 5; i++) step();
    expect(liveBufferCount()).toBe(after1);
    w.grad!.dispose();
    w.grad = null;
    const start = liveBufferCount();
    step();
    expect(liveBufferCount()).toBe(start + 1); // only the new .grad survives the scope
    w.dispose(); // a leaf owns its .grad: both are freed
    expect(liveBufferCount()).toBe(start - 1);
    input.dispose();
  });

  it('handles a deep graph without recursion limits', async () => {
    await gpu();
    const x = tensor([0.1], [1], { requiresGrad: true });
    scope(() => {
      let y: Tensor = x;
      for (let i = 0; i < 3000; i++) y = add(y, x);
      sum(y).backward();
    });
    expect((await x.grad!.toArray())[0]).toBe(3001);
    x.dispose();
  });
});
