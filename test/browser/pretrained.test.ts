/**
 * Models in one call, in Chromium (WebGPU on SwiftShader): loadDefaultModel() in the page and in
 * a module Web Worker (its files found from the module's import.meta.url, served by the test
 * server), and loadPretrained() from a base URL served by the test server (tiny-llama3: the index
 * and two shards), whose downloads the Cache Storage API keeps: a second load reads every file
 * from the cache and makes no request. Picked files (File[]) and a folder handle (the origin
 * private file system) are sources too. Every model gives the logits of the same files loaded
 * here with loadCausalLM, bit for bit.
 */
import * as Comlink from 'comlink';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import defaultConfig from '../../models/default/config.json';
import defaultWeightsUrl from '../../models/default/model.safetensors?url';
import training from '../../models/default/training.json';
import tokenizerSample from '../fixtures/default-tokenizer-sample.json';
import {
  ModelFilesError,
  PRETRAINED_CACHE_NAME,
  liveBufferCount,
  loadCausalLM,
  loadDefaultModel,
  loadPretrained,
  scope,
  type CausalLM,
  type PretrainedProgress,
} from '../../src/index';
import { browserGpu } from './browser-gpu';
import { fixtureFolderUrl, loadModelFixture } from './fixtures';
import type { PretrainedWorkerApi } from './pretrained-worker';

const IDS = [1, 5, 17, 42, 3, 88, 60, 7];
const INDEX = 'model.safetensors.index.json';
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
/** A cache of this test's own, emptied before and after. */
const CACHE = 'sgt-webgpu-models-test';

async function logits(model: CausalLM): Promise<Float32Array> {
  return scope(async () => {
    const out = model.forward({ ids: { data: IDS, shape: [1, IDS.length] } });
    return (await out.logits!.toArray()) as Float32Array;
  });
}

async function referenceLogits(config: unknown, weights: Parameters<typeof loadCausalLM>[0]['weights']): Promise<Float32Array> {
  const model = await loadCausalLM({ config, weights });
  try {
    return await logits(model);
  } finally {
    model.dispose();
  }
}

function lastEvents(events: PretrainedProgress[]): PretrainedProgress[] {
  const last = new Map<string, PretrainedProgress>();
  for (const e of events) last.set(e.file, e);
  return [...last.values()];
}

/** The URLs fetched while `run` runs (the loaders call the global fetch). */
async function fetchedDuring<T>(run: () => Promise<T>): Promise<{ result: T; urls: string[] }> {
  const spy = vi.spyOn(globalThis, 'fetch');
  try {
    const result = await run();
    return { result, urls: spy.mock.calls.map(([input]) => (input instanceof Request ? input.url : String(input))) };
  } finally {
    spy.mockRestore();
  }
}

let llama3Url: string;
let llama3Reference: Float32Array;
let llama3Files: { config: unknown; weights: { index: unknown; shards: Record<string, Uint8Array> } };

beforeAll(async () => {
  await browserGpu();
  await caches.delete(CACHE);
  llama3Url = await fixtureFolderUrl('tiny-llama3');
  const { config, weights } = await loadModelFixture('tiny-llama3');
  llama3Files = { config, weights: weights as typeof llama3Files.weights };
  llama3Reference = await referenceLogits(config, weights);
});

afterAll(async () => {
  await caches.delete(CACHE);
});

describe('loadDefaultModel in Chromium', () => {
  it('in the page: models/default from the module URL, with its BPE tokenizer (tokenizer.json)', async () => {
    const start = liveBufferCount();
    const events: PretrainedProgress[] = [];
    const loaded = await loadDefaultModel({ onProgress: (e) => events.push(e) });
    try {
      expect(loaded.config).toEqual(defaultConfig);
      expect(loaded.parameterCount).toBe(training.parameters);
      expect(loaded.tokenizerKind).toBe('huggingface');
      // The ids of scripts/pretrain-default.py's Python encoder, in the page too.
      for (const { text, ids } of tokenizerSample.cases) expect(loaded.tokenizer!.encode(text)).toEqual(ids);
      expect(lastEvents(events).map((e) => [e.file, e.done, e.fromCache])).toEqual([
        ['config.json', true, false],
        ['tokenizer.json', true, false],
        ['tokenizer_config.json', true, false],
        ['model.safetensors', true, false],
      ]);
      const weights = new Uint8Array(await (await fetch(defaultWeightsUrl)).arrayBuffer());
      expect(lastEvents(events)[3].loadedBytes).toBe(weights.byteLength);
      expect(await logits(loaded.model)).toEqual(await referenceLogits(defaultConfig, weights));
    } finally {
      loaded.model.dispose();
    }
    expect(liveBufferCount()).toBe(start);
  });
});

describe('loadPretrained from a base URL in Chromium', () => {
  it('tiny-llama3 (index + two shards): progress per file, then every file from the Cache Storage cache with no request', async () => {
    const start = liveBufferCount();
    const first: PretrainedProgress[] = [];
    const a = await fetchedDuring(() => loadPretrained(llama3Url, { cache: CACHE, onProgress: (e) => first.push(e) }));
    try {
      expect(a.result.source).toBe(llama3Url);
      expect(lastEvents(first).map((e) => [e.file, e.done, e.fromCache])).toEqual([
        ['config.json', true, false],
        [INDEX, true, false],
        [SHARD1, true, false],
        [SHARD2, true, false],
      ]);
      expect(lastEvents(first)[2].loadedBytes).toBe(llama3Files.weights.shards[SHARD1].byteLength);
      expect(a.urls).toEqual(
        ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', INDEX, SHARD1, SHARD2].map((f) => llama3Url + f),
      );
      expect(await logits(a.result.model)).toEqual(llama3Reference);
    } finally {
      a.result.model.dispose();
    }
    // The files found (not the 404s) are in the cache, with their bytes.
    const cache = await caches.open(CACHE);
    const keys = (await cache.keys()).map((r) => r.url).sort();
    expect(keys).toEqual(['config.json', INDEX, SHARD1, SHARD2].map((f) => llama3Url + f).sort());
    const cachedShard = new Uint8Array(await (await cache.match(llama3Url + SHARD2))!.arrayBuffer());
    expect(cachedShard).toEqual(llama3Files.weights.shards[SHARD2]);

    const second: PretrainedProgress[] = [];
    const b = await fetchedDuring(() => loadPretrained(llama3Url, { cache: CACHE, onProgress: (e) => second.push(e) }));
    try {
      expect(lastEvents(second).map((e) => [e.file, e.done, e.fromCache])).toEqual([
        ['config.json', true, true],
        [INDEX, true, true],
        [SHARD1, true, true],
        [SHARD2, true, true],
      ]);
      // Only the files that were missing (404) are asked for again.
      expect(b.urls).toEqual(['tokenizer.json', 'tokenizer_config.json', 'model.safetensors'].map((f) => llama3Url + f));
      expect(await logits(b.result.model)).toEqual(llama3Reference);
    } finally {
      b.result.model.dispose();
    }

    // cache: false downloads again and reports no cache hit.
    const third: PretrainedProgress[] = [];
    const c = await fetchedDuring(() => loadPretrained(llama3Url, { cache: false, onProgress: (e) => third.push(e) }));
    c.result.model.dispose();
    expect(c.urls).toContain(llama3Url + SHARD2);
    expect(third.every((e) => !e.fromCache)).toBe(true);
    expect(liveBufferCount()).toBe(start);
  });

  it('a missing folder is a ModelFilesError naming config.json; nothing is cached or allocated', async () => {
    const start = liveBufferCount();
    const nowhere = new URL('./no-such-model/', llama3Url).href;
    const err = await loadPretrained(nowhere, { cache: CACHE }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFilesError);
    expect(err).toMatchObject({ file: 'config.json', source: nowhere });
    expect((await (await caches.open(CACHE)).keys()).some((r) => r.url.startsWith(nowhere))).toBe(false);
    expect(liveBufferCount()).toBe(start);
    expect(PRETRAINED_CACHE_NAME).toBe('sgt-webgpu-models');
  });
});

/** tiny-llama3's files as picked files. */
function pickedFiles(omit: string[] = []): File[] {
  const bytes: Record<string, Uint8Array> = {
    'config.json': new TextEncoder().encode(JSON.stringify(llama3Files.config)),
    [INDEX]: new TextEncoder().encode(JSON.stringify(llama3Files.weights.index)),
    ...llama3Files.weights.shards,
  };
  return Object.entries(bytes)
    .filter(([name]) => !omit.includes(name))
    .map(([name, b]) => new File([b as Uint8Array<ArrayBuffer>], name));
}

describe('loadPretrained from picked files and a folder handle', () => {
  it('File[]: the same model; a missing shard is named (with what was picked) before any shard is read', async () => {
    const loaded = await loadPretrained(pickedFiles());
    expect(loaded.source).toBe('the picked files');
    expect(await logits(loaded.model)).toEqual(llama3Reference);
    loaded.model.dispose();
    const start = liveBufferCount();
    const events: PretrainedProgress[] = [];
    await expect(loadPretrained(pickedFiles([SHARD1]), { onProgress: (e) => events.push(e) })).rejects.toMatchObject({
      name: 'ModelFilesError',
      file: SHARD1,
      message: `missing shard ${SHARD1} named by ${INDEX} in the picked files. Found: config.json, ${SHARD2}, ${INDEX}.`,
    });
    expect(events.some((e) => e.file === SHARD2)).toBe(false);
    expect(liveBufferCount()).toBe(start);
  });

  it('a FileSystemDirectoryHandle (origin private file system)', async () => {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle('tiny-llama3', { create: true });
    for (const file of pickedFiles()) {
      const writable = await (await dir.getFileHandle(file.name, { create: true })).createWritable();
      await writable.write(file);
      await writable.close();
    }
    try {
      const loaded = await loadPretrained(dir);
      expect(loaded.source).toBe('tiny-llama3/');
      expect(await logits(loaded.model)).toEqual(llama3Reference);
      loaded.model.dispose();
      await dir.removeEntry(SHARD2);
      await expect(loadPretrained(dir)).rejects.toMatchObject({ name: 'ModelFilesError', file: SHARD2 });
    } finally {
      await root.removeEntry('tiny-llama3', { recursive: true });
    }
  });
});

describe('the loaders in a module Web Worker', () => {
  let worker: Worker;
  let api: Comlink.Remote<PretrainedWorkerApi>;
  beforeAll(() => {
    worker = new Worker(new URL('./pretrained-worker.ts', import.meta.url), { type: 'module' });
    api = Comlink.wrap<PretrainedWorkerApi>(worker);
  });
  afterAll(() => {
    api[Comlink.releaseProxy]();
    worker.terminate();
  });

  it('loadDefaultModel() and loadPretrained(url) give the models the page loads', async () => {
    const weights = new Uint8Array(await (await fetch(defaultWeightsUrl)).arrayBuffer());
    const byDefault = await api.defaultModel();
    expect(byDefault).toMatchObject({
      scope: 'worker',
      layers: 4,
      parameterCount: training.parameters,
      tokenizerKind: 'huggingface',
      leftBuffers: 0,
    });
    expect(byDefault.encoded).toEqual(tokenizerSample.cases[2].ids);
    expect(byDefault.files.map((f) => [f.file, f.done])).toEqual([
      ['config.json', true],
      ['tokenizer.json', true],
      ['tokenizer_config.json', true],
      ['model.safetensors', true],
    ]);
    expect(byDefault.logits).toEqual(await referenceLogits(defaultConfig, weights));

    const fromUrl = await api.pretrained(llama3Url, false);
    expect(fromUrl).toMatchObject({ scope: 'worker', source: llama3Url, tokenizerKind: 'none', leftBuffers: 0 });
    expect(fromUrl.files.map((f) => f.file)).toEqual(['config.json', INDEX, SHARD1, SHARD2]);
    expect(fromUrl.logits).toEqual(llama3Reference);
  });
});
