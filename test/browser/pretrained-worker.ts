/**
 * A module Web Worker that loads models with the one-call loaders, driven over comlink from
 * pretrained.test.ts: what it reports lets the page compare with what it loads itself.
 */
import * as Comlink from 'comlink';
import { liveBufferCount, loadDefaultModel, loadPretrained, scope, type PretrainedModel, type PretrainedProgress } from '../../src/index';
import { browserGpu } from './browser-gpu';
import tokenizerSample from '../fixtures/default-tokenizer-sample.json';

/** A text the default model's tokenizer was checked on in Python (scripts/pretrain-default.py). */
export const SAMPLE = tokenizerSample.cases[2];

/** What the worker saw of one load. */
export interface WorkerLoad {
  scope: 'worker' | 'page';
  source: string;
  layers: number;
  parameterCount: number;
  tokenizerKind: string;
  /** The tokenizer's ids of SAMPLE.text, when there is a tokenizer. */
  encoded: number[] | null;
  /** Logits of a fixed batch. */
  logits: Float32Array;
  /** The last progress event of each file. */
  files: PretrainedProgress[];
  /** Buffers alive after the model was freed, minus those before the load. */
  leftBuffers: number;
}

async function summarize(load: (onProgress: (p: PretrainedProgress) => void) => Promise<PretrainedModel>): Promise<WorkerLoad> {
  await browserGpu();
  const before = liveBufferCount();
  const last = new Map<string, PretrainedProgress>();
  const loaded = await load((p) => last.set(p.file, p));
  const ids = [1, 5, 17, 42, 3, 88, 60, 7];
  const logits = await scope(async () => {
    const out = loaded.model.forward({ ids: { data: ids, shape: [1, ids.length] } });
    return (await out.logits!.toArray()) as Float32Array;
  });
  loaded.model.dispose();
  const g = globalThis as { WorkerGlobalScope?: unknown; document?: unknown };
  return {
    scope: g.WorkerGlobalScope !== undefined && g.document === undefined ? 'worker' : 'page',
    source: loaded.source,
    layers: loaded.model.config.numLayers,
    parameterCount: loaded.parameterCount,
    tokenizerKind: loaded.tokenizerKind,
    encoded: loaded.tokenizer ? loaded.tokenizer.encode(SAMPLE.text) : null,
    logits,
    files: [...last.values()],
    leftBuffers: liveBufferCount() - before,
  };
}

const api = {
  defaultModel: (): Promise<WorkerLoad> => summarize((onProgress) => loadDefaultModel({ onProgress })),
  pretrained: (url: string, cache: string | false): Promise<WorkerLoad> =>
    summarize((onProgress) => loadPretrained(url, { onProgress, cache })),
};

export type PretrainedWorkerApi = typeof api;

Comlink.expose(api);
