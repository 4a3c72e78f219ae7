/**
 * What `TrainerService.init` and `TrainerService.loadModel` do, apart from the service's state:
 * describing the WebGPU adapter, and loading the frozen base model with its tokenizer (the
 * model's own, the byte-level fallback, or none).
 */
import type { GpuContext } from '../gpu/context';
import { SAFETENSORS_INDEX_NAME, isShardedWeights, readWeights } from '../models/shards';
import { loadCausalLM, type CausalLM } from '../models/causalLM';
import { byteTokenizer, loadHuggingFaceTokenizer, type Tokenizer } from '../text/tokenizer';
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
  if (args === null || typeof args !== 'object') fail(method, 'expected { config, weights, tokenizerJson?, tokenizerConfig? }');
  const { weights } = args;
  const isBytes = (w: unknown) => w instanceof ArrayBuffer || w instanceof Uint8Array;
  const ok = isBytes(weights) || (Array.isArray(weights) && weights.every(isBytes)) || isShardedWeights(weights);
  if (!ok) {
    fail(
      method,
      `'weights' must be the bytes of model.safetensors (an ArrayBuffer or Uint8Array), a list of shards' bytes, or ` +
        `{ index, shards } with ${SAFETENSORS_INDEX_NAME} and the shards' bytes by file name; got ${weights === null ? 'null' : typeof weights}`,
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
 * work) and uploads the model; falls back to the byte-level tokenizer when the model ships none
 * and its vocabulary has room for it. Nothing is left on the GPU when it throws.
 */
export async function loadModelAndTokenizer(method: string, args: LoadModelArgs): Promise<LoadedModel> {
  // One file, or the shards merged (a missing shard or a tensor in two is named here, before GPU work).
  const file = await readWeights(args.weights);
  // Counted from the file: tied embeddings are stored once, which is the usual convention.
  let parameterCount = 0;
  for (const entry of file.tensors.values()) parameterCount += entry.shape.reduce((a, b) => a * b, 1);
  let hfTokenizer: Tokenizer | null = null;
  if (args.tokenizerJson !== undefined && args.tokenizerJson !== null) {
    hfTokenizer = await loadHuggingFaceTokenizer(args.tokenizerJson, args.tokenizerConfig);
  }
  const model = await loadCausalLM({ config: args.config, weights: file });
  const c = model.config;
  if (hfTokenizer && hfTokenizer.vocabSize > c.vocabSize) {
    model.dispose();
    fail(method, `the tokenizer produces ids up to ${hfTokenizer.vocabSize - 1}, but the model's vocabulary has only ${c.vocabSize} rows`);
  }
  let tokenizer = hfTokenizer;
  let kind: ModelSummary['tokenizer'] = hfTokenizer ? 'huggingface' : 'none';
  if (!tokenizer && c.vocabSize >= 259) {
    tokenizer = byteTokenizer({ vocabSize: c.vocabSize });
    kind = 'byte';
  }
  return {
    model,
    tokenizer,
    rawConfig: typeof args.config === 'string' ? JSON.parse(args.config) : args.config,
    summary: {
      type: c.modelType,
      layers: c.numLayers,
      hiddenSize: c.hiddenSize,
      vocabSize: c.vocabSize,
      heads: c.numHeads,
      maxPositions: c.maxPositions,
      parameterCount,
      tokenizer: kind,
    },
  };
}
