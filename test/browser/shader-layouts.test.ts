/**
 * In Chromium: a shipped kernel runs with the bind-group layouts the build reflected (no WGSL
 * parser), and WGSL supplied at run time (the playground's edits) runs once `withShaderSource` has
 * loaded the parser, wgsl_reflect, through its dynamic import.
 */
import { describe, expect, it } from 'vitest';
import elementwise from '../../shaders/elementwise.wgsl?raw';
import { PipelineCache } from '../../src/gpu/pipelineCache';
import { shippedLayouts } from '../../src/gpu/shaderLayouts';
import { add, liveBufferCount, tensor } from '../../src/index';
import { browserGpu } from './browser-gpu';

describe('shader layouts in the browser', () => {
  it('a shipped kernel needs no parser; edited WGSL runs after its lazy import', async () => {
    const ctx = await browserGpu();
    const before = liveBufferCount();
    expect(Object.keys(shippedLayouts(elementwise) ?? {})).toContain('binary');
    // A cache that never loaded the parser compiles the shipped kernel and names what other WGSL needs.
    const fresh = new PipelineCache(ctx.device, (message) => {
      throw new Error(message);
    });
    expect(fresh.get(elementwise, 'binary').slots.map((s) => s.name)).toEqual(['params', 'a', 'b', 'out']);
    const edited = elementwise.replace('case 0u: { return x + y; }', 'case 0u: { return x * 10.0 + y; }');
    expect(edited).not.toBe(elementwise);
    expect(() => fresh.get(edited, 'binary')).toThrow(/prepareShader/);

    const a = tensor([1, 2]);
    const b = tensor([3, 4]);
    const sum = async () => {
      const out = add(a, b);
      const values = [...(await out.toArray())];
      out.dispose();
      return values;
    };
    expect(await ctx.withShaderSource(elementwise, edited, sum)).toEqual([13, 24]);
    expect(await sum()).toEqual([4, 6]);
    a.dispose();
    b.dispose();
    await ctx.sync();
    expect(liveBufferCount()).toBe(before);
  });
});
