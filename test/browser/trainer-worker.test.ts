/**
 * The trainer's module Web Worker (src/worker/worker.ts) driven from the page over comlink, as an
 * app would: tiny-llama's weights transferred in, a tiny pre-tokenized run started with a
 * progress proxy, paused, resumed and stopped between steps, errors arriving with their original
 * messages and SgtError codes (a plain Error with the code before the page installs the transfer
 * handler, an SgtError after), the cloak and checkpoint bytes transferred back, then dispose and terminate.
 * Batch 2 of 8 tokens keeps the steps short on SwiftShader.
 */
import * as Comlink from 'comlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelFixture } from './fixtures';
import { parseSafetensors } from '../../src/models/safetensors';
import { SgtError, installErrorTransfer, isSgtError } from '../../src/gpu/errors';
import type { ProgressEvent, RunSummary, StepEvent, TrainerWorkerApi } from '../../src/worker/worker';

let worker: Worker | null = null;
let api: Comlink.Remote<TrainerWorkerApi> | null = null;
const workerErrors: string[] = [];
let loadError: Promise<never>;

function remote(): Comlink.Remote<TrainerWorkerApi> {
  if (!api) throw new Error('the worker proxy was already released');
  return api;
}

/** Seeded documents of ids 3..92, inside tiny-llama's 96-token vocabulary (no tokenizer needed). */
function documents(count: number): number[][] {
  let s = 12345;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  return Array.from({ length: count }, () => Array.from({ length: 5 + Math.floor(next() * 10) }, () => 3 + Math.floor(next() * 90)));
}

/** Resolves once `cond()` holds, checking every 20 ms; fails after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A rejection's error, or null when the promise resolved. */
async function rejection(p: Promise<unknown>): Promise<Error | null> {
  return p.then(
    () => null,
    (e: unknown) => e as Error,
  );
}

beforeAll(() => {
  worker = new Worker(new URL('../../src/worker/worker.ts', import.meta.url), { type: 'module' });
  // A worker that fails to load reports it here, not as a rejection: surface it.
  loadError = new Promise<never>((_, reject) => {
    worker!.addEventListener('error', (e) => {
      const msg = `trainer worker failed: ${e.message || 'module load error (see the browser console)'}`;
      workerErrors.push(msg);
      reject(new Error(msg));
    });
  });
  loadError.catch(() => {});
  api = Comlink.wrap<TrainerWorkerApi>(worker);
});

afterAll(() => {
  // Normally done by the last test; this only cleans up after an earlier failure.
  api?.[Comlink.releaseProxy]();
  api = null;
  worker?.terminate();
  worker = null;
});

describe('the trainer worker over comlink', () => {
  it('init() reports a WebGPU adapter inside the worker, and loadModel() takes transferred weights', async () => {
    const adapter = await Promise.race([remote().init(), loadError]);
    expect(adapter.scope).toBe('worker');
    expect(adapter.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);

    // Out of order: no model yet.
    const early = await rejection(
      remote().configure({ factory: 'crossEntropyDistillation', batchSize: 2, seqLen: 8, tokens: documents(4) }),
    );
    expect(early?.message).toBe('TrainerService.configure: no model is loaded: call loadModel() first');
    // The worker sends the code; this page has not installed the handler yet: comlink's plain Error with it.
    expect(early).not.toBeInstanceOf(SgtError);
    expect(early).toMatchObject({ name: 'SgtError', code: 'INVALID_STATE' });
    expect(isSgtError(early, 'INVALID_STATE')).toBe(true);

    const { config, weights: bytes } = await loadModelFixture('tiny-llama');
    const weights = (bytes as Uint8Array).buffer as ArrayBuffer;
    const size = weights.byteLength;
    const model = await remote().loadModel(Comlink.transfer({ config, weights }, [weights]));
    // Moved, not copied: detached on this side.
    expect(weights.byteLength).toBe(0);
    expect(size).toBeGreaterThan(0);
    expect(model).toMatchObject({ type: 'llama', layers: 2, hiddenSize: 32, vocabSize: 96, heads: 4, maxPositions: 64, tokenizer: 'none' });
    expect(model.parameterCount).toBe(2 * 96 * 32 + 2 * (2 * 32 + 2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32) + 32);
  });

  it('errors thrown in the worker arrive with their original messages and codes, and the worker keeps working', async () => {
    // With the handler on the page too, every rejection is an SgtError again.
    installErrorTransfer(Comlink.transferHandlers);
    const alpha = await rejection(
      remote().configure({
        factory: 'distillation',
        factoryOptions: { alpha: 2 },
        batchSize: 2,
        seqLen: 8,
        tokens: documents(24),
      }),
    );
    expect(alpha).toBeInstanceOf(Error);
    expect(alpha!.message).toBe("distillationLossFactory: option 'alpha' must be in [0, 1], got 2");
    expect(alpha).toBeInstanceOf(SgtError);
    expect((alpha as SgtError).code).toBe('INVALID_OPTION');
    const text = await rejection(remote().configure({ factory: 'crossEntropyDistillation', batchSize: 2, seqLen: 8, text: 'hello' }));
    expect(text?.message).toMatch(/vocabulary \(96 ids\) is too small for the byte-level fallback/);
    expect(isSgtError(text, 'INVALID_OPTION')).toBe(true);
    const start = await rejection(remote().start());
    expect(start?.message).toBe('TrainerService.start: call configure() first');
    expect(start).toBeInstanceOf(SgtError);
    expect((start as SgtError).code).toBe('INVALID_STATE');
    expect(await remote().getState()).toMatchObject({ state: 'modelLoaded', step: 0 });
  });

  it('runs with a progress proxy, pauses, resumes and stops between steps', async () => {
    const summary = await remote().configure({
      factory: 'crossEntropyDistillation',
      cloak: { numLayers: 1, seed: 1 },
      batchSize: 2,
      seqLen: 8,
      learningRate: 3e-3,
      seed: 3,
      tokens: documents(24),
      heldOutFraction: 0.2,
      evaluateEvery: 2,
      evaluateBatches: 1,
    });
    expect(summary).toMatchObject({ tokenizer: 'pretokenized', seqLen: 8, maxSteps: null });
    expect(summary.heldOutSequences).toBeGreaterThanOrEqual(2);

    const events: ProgressEvent[] = [];
    const steps = () => events.filter((e): e is StepEvent => e.type === 'step');
    const onProgress = Comlink.proxy((e: ProgressEvent) => void events.push(e));
    let done: RunSummary | Error | null = null;
    const running = remote()
      .start(onProgress)
      .then(
        (r) => (done = r),
        (e: Error) => (done = e),
      );

    await until(() => steps().length >= 2, 60_000, 'two step events');
    expect((await rejection(remote().start()))?.message).toBe('TrainerService.start: a run is already running: stop() it first');
    expect(await remote().pause()).toBe('paused');
    const atPause = steps().length;
    await new Promise((r) => setTimeout(r, 1500));
    expect(steps().length).toBe(atPause);
    expect(events.at(-1)).toMatchObject({ type: 'state', state: 'paused', step: atPause });
    expect(done).toBeNull();

    expect(await remote().resume()).toBe('running');
    await until(() => steps().length >= atPause + 1, 60_000, 'a step after resume');
    expect(await remote().stop()).toBe('stopped');
    await running;
    expect(done).toMatchObject({ state: 'stopped' });
    const run = done as unknown as RunSummary;
    expect(run.step).toBe(steps().length);
    expect(events.at(-1)).toMatchObject({ type: 'state', state: 'stopped', step: run.step });
    expect(events[0]).toMatchObject({ type: 'state', state: 'running', step: 0 });
    expect(events.map((e) => (e.type === 'state' ? e.state : null)).filter(Boolean)).toEqual(['running', 'paused', 'running', 'stopped']);

    steps().forEach((e, i) => {
      expect(e.step).toBe(i + 1);
      expect(Number.isFinite(e.loss)).toBe(true);
      expect(e.loss).toBeGreaterThan(0);
      expect(Object.keys(e.components).sort()).toEqual([
        'absoluteCosineSimilarityPenalty',
        'distillationCrossEntropyLoss',
        'loss',
        'medianNormPenalty',
      ]);
      expect(e.learningRate).toBeCloseTo(3e-3, 9);
      expect(Number.isFinite(e.gradNorm!)).toBe(true);
      expect(e.tokensPerSecond).toBeGreaterThan(0);
    });
    const metrics = events.find((e) => e.type === 'metrics');
    expect(metrics).toMatchObject({ type: 'metrics', step: 2 });
    if (metrics?.type === 'metrics') {
      expect(metrics.top1Agreement).toBeGreaterThanOrEqual(0);
      expect(metrics.top1Agreement).toBeLessThanOrEqual(1);
      expect(metrics.meanKL).toBeGreaterThanOrEqual(0);
    }
  });

  it('sends the cloak and the checkpoint back as transferred bytes, then disposes', async () => {
    const state = await remote().getState();
    // The worker's state records the model's weight bytes and the pool's peak since the model was loaded.
    expect(state.memory?.weightBytes).toBeGreaterThan(0);
    expect(state.memory!.peakBytes).toBeGreaterThan(state.memory!.weightBytes);
    const cloak = await remote().cloakSafetensors();
    expect(cloak).toBeInstanceOf(Uint8Array);
    const file = parseSafetensors(cloak);
    expect(file.tensors.get('input_projection.weight')?.shape).toEqual([32, 32]);
    expect(file.tensors.has('encoder.layers.0.self_attn.q_proj.weight')).toBe(true);
    expect(file.tensors.has('encoder.layers.1.norm1.weight')).toBe(false);
    expect(file.metadata.sgt_step).toBe(String(state.step));
    const checkpoint = await remote().checkpoint();
    expect(parseSafetensors(checkpoint).tensors.has('cloak.mu_head.weight')).toBe(true);

    const p = remote();
    await p.dispose();
    const after = await rejection(p.step());
    expect(after?.message).toBe('TrainerService.step: the service was disposed');
    p[Comlink.releaseProxy]();
    api = null;
    expect(() => p.getState()).toThrow(/released/);
    worker!.terminate();
    worker = null;
    expect(workerErrors).toEqual([]);
  });
});
