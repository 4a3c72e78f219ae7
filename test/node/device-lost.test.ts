/**
 * A lost or disposed device surfaces as an error, never as a hang or a silent NaN. This file
 * destroys devices, so it runs in its own process (Vitest's forks pool isolates files).
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { exp, init, tensor } from '../../src/index';

describe('device loss', () => {
  it('dispose() makes the context unusable and init() makes a fresh one', async () => {
    const ctx = await gpu();
    const a = tensor([1, 2]);
    ctx.dispose();
    expect(() => ctx.checkHealthy()).toThrow(/used after dispose/);
    expect(() => exp(a)).toThrow(/exp \(input 0\): tensor of shape \[2\] is unusable: its GPU context was disposed/);
    const fresh = await init();
    expect(fresh).not.toBe(ctx);
    const b = tensor([0]);
    expect([...(await exp(b).toArray())]).toEqual([1]);
  });

  it('a device lost while a readback is in flight rejects instead of hanging', async () => {
    const ctx = await gpu();
    const a = tensor(new Float32Array(1024).fill(1));
    const pending = exp(a).toArray();
    ctx.device.destroy();
    await expect(pending).rejects.toThrow(/device|readback|lost|destroyed/i);
    await ctx.device.lost;
    expect(() => tensor([1])).toThrow(/WebGPU device lost/);
  });
});
