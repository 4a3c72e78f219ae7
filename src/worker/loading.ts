/**
 * What `TrainerService.init` and `TrainerService.loadModel` do, apart from the service's state:
 * describing the WebGPU adapter, and loading the frozen base model with its tokenizer (the
 * model's own, the byte-level fallback, or none).
 */
import type { GpuContext } from '../gpu/context';
import { SAFETENSORS_INDEX_NAME, isShardedWeights } from '../models/shards';
import type { CausalLM } from '../models/causalLM';
import { loadModelFromFiles } from '../models/pretrained';
import type { Tokenizer } from '../text/tokenizer';
import { type AdapterSummary, type LoadModelArgs, type ModelSummary, fail } from './api';

/** Where the service runs: a Web Worker, a page's main thread, or Node. */
function where(): AdapterSummary['scope'] {
  const g = globalThis as { WorkerGlobalScope?: unknown; document?: unknown; process?: { versions?: { node?: string } } };
  if (g.WorkerGlobalScope !== undefined && g.document === undefined) return 'worker';
  if (g.document !== undefined) return 'page';
  return g.process?.versions?.node ? 'node' : 'worker';
}

/** What `init()` reports about the context's adapter and device. */
export function adapterSummary(ctx: GpuContext): AdapterSummary {
  const info = (ctx.adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  return {
    scope: where(),
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    description: info?.description ?? '',
    features: [...ctx.features].sort(),
    maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
    maxBufferSize: ctx.limits.maxBufferSize,
  };
}

/** The checks `loadModel()` makes on its arguments before taking the service's lock. */
export function checkLoadModelArgs(method: string, args: LoadModelArgs): void {
  if (args === null || typeof args !== 'object')
    fail(method, 'expected { config, weights, tokenizerJson?, tokenizerConfig? }', 'INVALID_ARGUMENT');
  const { weights } = args;
  const isBytes = (w: unknown) => w instanceof ArrayBuffer || w instanceof Uint8Array;
  const ok = isBytes(weights) || (Array.isArray(weights) && weights.every(isBytes)) || isShardedWeights(weights);
  if (!ok) {
    fail(
      method,
      `'weights' must be the bytes of model.safetensors (an ArrayBuffer or Uint8Array), a list of shards' bytes, or ` +
        `{ index, shards } with ${SAFETENSORS_INDEX_NAME} and the shards' bytes by file name; got ${weights === null ? 'null' : typeof weights}`,
      'INVALID_ARGUMENT',
    );
  }
}

/** A base model on the GPU with what `configure()` needs beside it. */
export interface LoadedModel {
  model: CausalLM;
  /** The tokenizer `configure({ text })` uses (null: pre-tokenized data only). */
  tokenizer: Tokenizer | null;
  /** The `config.json` as given, parsed (its pad/EOS ids pad pre-tokenized data). */
  rawConfig: unknown;
  summary: ModelSummary;
}

/**
 * Parses the weights, the tokenizer (before the upload, so that a bad tokenizer.json costs no GPU
 * work) and uploads the model, as `loadPretrained` does (the byte-level tokenizer when the model
 * ships none and its vocabulary has room for it). Nothing is left on the GPU when it throws.
 */
export async function loadModelAndTokenizer(method: string, args: LoadModelArgs): Promise<LoadedModel> {
  const loaded = await loadModelFromFiles(`TrainerService.${method}`, args);
  const c = loaded.model.config;
  return {
    model: loaded.model,
    tokenizer: loaded.tokenizer,
    rawConfig: loaded.config,
    summary: {
      type: c.modelType,
      layers: c.numLayers,
      hiddenSize: c.hiddenSize,
      vocabSize: c.vocabSize,
      heads: c.numHeads,
      maxPositions: c.maxPositions,
      parameterCount: loaded.parameterCount,
      tokenizer: loaded.tokenizerKind,
    },
  };
}
