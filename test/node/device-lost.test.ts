/**
 * A lost or disposed device surfaces as an error, never as a hang or a silent NaN. This file
 * destroys devices, so it runs in its own process (Vitest's forks pool isolates files).
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import {
  type DeviceLostEvent,
  type DeviceRestoredEvent,
  exp,
  init,
  isSgtError,
  onDeviceLost,
  onDeviceRestored,
  tensor,
} from '../../src/index';

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

  it('init() after a lost device gives a fresh working context, says so in events, and old tensors fail with DEVICE_LOST', async () => {
    const ctx = await gpu();
    const lost: DeviceLostEvent[] = [];
    const restored: DeviceRestoredEvent[] = [];
    const stopLost = onDeviceLost((e) => lost.push(e));
    const stopRestored = onDeviceRestored((e) => restored.push(e));
    const old = tensor([1, 2]);
    ctx.device.destroy();
    await ctx.device.lost;
    expect(lost).toHaveLength(1);
    expect(lost[0].context).toBe(ctx);
    expect(lost[0].reason).toBe('destroyed');
    expect(lost[0].message).toMatch(/^WebGPU device lost \(destroyed\)/);

    const fresh = await init();
    expect(fresh).not.toBe(ctx);
    expect(fresh.deadReason).toBeNull();
    expect(restored).toHaveLength(1);
    expect(restored[0].context).toBe(fresh);
    expect(restored[0].previous).toBe(ctx);
    expect(await init()).toBe(fresh);
    expect(restored).toHaveLength(1);

    // A tensor of the lost device fails by name and code; new tensors work.
    let error: unknown;
    try {
      exp(old);
    } catch (e) {
      error = e;
    }
    expect((error as Error).message).toMatch(
      /exp \(input 0\): tensor of shape \[2\] is unusable: WebGPU device lost \(destroyed\).*call init\(\)/,
    );
    expect(isSgtError(error, 'DEVICE_LOST')).toBe(true);
    await expect(old.toArray()).rejects.toMatchObject({ name: 'SgtError', code: 'DEVICE_LOST' });
    old.dispose();
    expect([...(await exp(tensor([0])).toArray())]).toEqual([1]);

    // A deliberate dispose() is not a loss: no event, and init() makes a fresh context.
    fresh.dispose();
    await fresh.device.lost;
    expect(lost).toHaveLength(1);
    const third = await init();
    expect(restored).toHaveLength(1);
    stopLost();
    stopRestored();
    third.device.destroy();
    await third.device.lost;
    expect(lost).toHaveLength(1);
  });
});
