/**
 * Models in one call. {@link loadPretrained} reads a Hugging Face model folder — from a base URL
 * laid out as the Hub serves a repository, a Node folder, picked files or a folder handle —
 * reporting each file's progress and keeping downloads in the Cache Storage API, and returns the
 * model on the GPU with its tokenizer. {@link loadDefaultModel} does the same for the package's
 * own `models/default`. {@link readPretrainedFiles} stops before the GPU: its result is what the
 * trainer worker's `loadModel` takes (and can be transferred to it).
 */
import { byteTokenizer, loadHuggingFaceTokenizer, type Tokenizer } from '../text/tokenizer';
import { loadCausalLM, type CausalLM } from './causalLM';
import { parseModelConfig, type ModelConfig } from './config';
import {
  modelFileSource,
  modelFileUrls,
  ModelFilesError,
  type ModelFileSource,
  type ModelSourceOptions,
  type PretrainedSource,
} from './modelSources';
import { parseSafetensors, readStream } from './safetensors';
import { SAFETENSORS_INDEX_NAME, parseSafetensorsIndex, readWeights, type WeightsInput } from './shards';
import type { WeightDtype } from './weights';
import { SgtError } from '../gpu/errors';

/** Progress of one file of a model folder. */
export interface PretrainedProgress {
  /** The file: `config.json`, `tokenizer.json`, `model.safetensors`, a shard, ... */
  file: string;
  /** Bytes of that file read so far. */
  loadedBytes: number;
  /** Bytes in that file; null while the server has not said. */
  totalBytes: number | null;
  /** Whether it is read from the Cache Storage cache rather than downloaded. */
  fromCache: boolean;
  /** True on the file's last event (read completely). */
  done: boolean;
}

/** Options of {@link readPretrainedFiles}. */
export interface ReadPretrainedOptions extends ModelSourceOptions {
  /** Called as each file's bytes arrive (files are read one after the other). */
  onProgress?: (progress: PretrainedProgress) => void;
}

/** Options of {@link loadPretrained} and {@link loadDefaultModel}. */
export interface LoadPretrainedOptions extends ReadPretrainedOptions {
  /** The weights' GPU dtype (see `loadCausalLM`): `'file'` by default for a frozen model. */
  weightDtype?: WeightDtype;
  /** Whether the weights receive gradients (default false: a frozen model). */
  trainable?: boolean;
}

/**
 * A model folder's files, read and checked but not on the GPU: the shape of the trainer worker's
 * `loadModel` arguments. The weight buffers are whole (`bytes.buffer` is exactly the file), ready
 * to transfer.
 */
export interface PretrainedFiles {
  /** The folder, base URL or picked files they were read from. */
  source: string;
  /** `config.json`, parsed. */
  config: Record<string, unknown>;
  /** `model.safetensors`, or `model.safetensors.index.json` (parsed) and its shards by file name. */
  weights: Uint8Array | { index: unknown; shards: Record<string, Uint8Array> };
  /** `tokenizer.json`, parsed, when the folder has one. */
  tokenizerJson?: unknown;
  /** `tokenizer_config.json`, parsed, when the folder has one. */
  tokenizerConfig?: unknown;
}

/** What the model's tokenizer is: its `tokenizer.json`, the byte-level tokenizer, or none. */
export type TokenizerKind = 'huggingface' | 'byte' | 'none';

/** A model on the GPU with its tokenizer: what training a transform or transforming prompts needs. */
export interface PretrainedModel {
  /** The frozen causal LM (free it with `model.dispose()`). */
  model: CausalLM;
  /**
   * Its `tokenizer.json`; else the byte-level tokenizer when `tokenizer_config.json` declares one
   * (`sgt_byte_tokenizer`) or the vocabulary has room for it (>= 259
   * ids); else null (pre-tokenized data only).
   */
  tokenizer: Tokenizer | null;
  /** Which of those `tokenizer` is. */
  tokenizerKind: TokenizerKind;
  /** `config.json` as read. */
  config: Record<string, unknown>;
  /** Elements of every tensor in the weights (tied embeddings counted once). */
  parameterCount: number;
  /** The folder, base URL or picked files it was read from. */
  source: string;
}

/** A model's files as `loadModelFromFiles` takes them (the worker's `loadModel` arguments). */
export interface ModelFilesInput {
  config: unknown;
  weights: WeightsInput;
  tokenizerJson?: unknown;
  tokenizerConfig?: unknown;
}

interface ReadFile {
  bytes: Uint8Array;
  /** Puts the bytes in the cache (once they have been checked). */
  keep(): Promise<void>;
}

/** Reads one file of the folder whole, reporting progress; null when the folder has no such file. */
async function readFile(src: ModelFileSource, name: string, options: ReadPretrainedOptions): Promise<ReadFile | null> {
  const opened = await src.open(name);
  if (!opened) return null;
  const report = (loadedBytes: number, totalBytes: number | null, done: boolean): void =>
    options.onProgress?.({ file: name, loadedBytes, totalBytes, fromCache: opened.fromCache, done });
  let bytes: Uint8Array;
  try {
    bytes = await readStream(opened.stream(), opened.size, { signal: options.signal, onProgress: (l, t) => report(l, t, false) }, name);
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason ?? e;
    throw new ModelFilesError(`cannot read ${name} from ${src.label}: ${(e as Error).message}`, {
      source: src.label,
      file: name,
      cause: e,
      code: 'IO_ERROR',
    });
  }
  // A buffer of its own, so that it can be transferred to a worker.
  if (bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength) bytes = bytes.slice();
  report(bytes.byteLength, bytes.byteLength, true);
  return { bytes, keep: () => opened.keep(bytes) };
}

/** Reads and parses a JSON file of the folder; undefined when absent. */
async function readJson(src: ModelFileSource, name: string, options: ReadPretrainedOptions): Promise<unknown> {
  const file = await readFile(src, name, options);
  if (!file) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(file.bytes));
  } catch (e) {
    throw new ModelFilesError(`${name} in ${src.label} is not valid JSON: ${(e as Error).message}`, {
      source: src.label,
      file: name,
      cause: e,
    });
  }
  await file.keep();
  return value;
}

/** Reads a safetensors file and checks its header before caching it. */
async function readSafetensorsFile(src: ModelFileSource, name: string, options: ReadPretrainedOptions): Promise<Uint8Array | null> {
  const file = await readFile(src, name, options);
  if (!file) return null;
  try {
    parseSafetensors(file.bytes);
  } catch (e) {
    throw new ModelFilesError(`${name} in ${src.label}: ${(e as Error).message}`, { source: src.label, file: name, cause: e });
  }
  await file.keep();
  return file.bytes;
}

function found(src: ModelFileSource): string {
  return src.names ? ` Found: ${src.names.join(', ') || 'nothing'}.` : '';
}

/** The shards an index names, all checked to exist first where that is cheap; then read one by one. */
async function readShards(src: ModelFileSource, options: ReadPretrainedOptions): Promise<PretrainedFiles['weights'] | null> {
  const index = await readJson(src, SAFETENSORS_INDEX_NAME, options);
  if (index === undefined) return null;
  let shardNames: string[];
  try {
    shardNames = parseSafetensorsIndex(index).shards;
  } catch (e) {
    throw new ModelFilesError(`${src.label}: ${(e as Error).message}`, { source: src.label, file: SAFETENSORS_INDEX_NAME, cause: e });
  }
  const missing = (names: string[]): ModelFilesError =>
    new ModelFilesError(
      `missing shard${names.length > 1 ? 's' : ''} ${names.join(', ')} named by ${SAFETENSORS_INDEX_NAME} in ${src.label}.${found(src)}`,
      { source: src.label, file: names[0] },
    );
  if (src.has) {
    const absent: string[] = [];
    for (const name of shardNames) if (!(await src.has(name))) absent.push(name);
    if (absent.length) throw missing(absent);
  }
  const shards: Record<string, Uint8Array> = {};
  for (const name of shardNames) {
    const bytes = await readSafetensorsFile(src, name, options);
    if (!bytes) throw missing([name]);
    shards[name] = bytes;
  }
  return { index, shards };
}

/** `config.json`, required, checked as `loadCausalLM` will check it (before any weight is read). */
async function readConfig(src: ModelFileSource, options: ReadPretrainedOptions): Promise<Record<string, unknown>> {
  const config = await readJson(src, 'config.json', options);
  if (config === undefined) {
    throw new ModelFilesError(
      `${src.label} has no config.json (expected a Hugging Face model folder: config.json, model.safetensors or ` +
        `${SAFETENSORS_INDEX_NAME} and its shards, and tokenizer.json when the model has one).${found(src)}`,
      { source: src.label, file: 'config.json' },
    );
  }
  try {
    parseModelConfig(config);
  } catch (e) {
    throw new ModelFilesError(`config.json in ${src.label}: ${(e as Error).message}`, { source: src.label, file: 'config.json', cause: e });
  }
  return config as Record<string, unknown>;
}

/** Reads a folder's files in order: config, tokenizer, then the weights (one file, or the index and its shards). */
async function readFolder(src: ModelFileSource, options: ReadPretrainedOptions): Promise<PretrainedFiles> {
  const config = await readConfig(src, options);
  const tokenizerJson = await readJson(src, 'tokenizer.json', options);
  const tokenizerConfig = await readJson(src, 'tokenizer_config.json', options);
  const weights = (await readSafetensorsFile(src, 'model.safetensors', options)) ?? (await readShards(src, options));
  if (!weights) {
    throw new ModelFilesError(`${src.label} has no model.safetensors (nor ${SAFETENSORS_INDEX_NAME} and its shards).${found(src)}`, {
      source: src.label,
      file: 'model.safetensors',
    });
  }
  const files: PretrainedFiles = { source: src.label, config, weights };
  if (tokenizerJson !== undefined) files.tokenizerJson = tokenizerJson;
  if (tokenizerConfig !== undefined) files.tokenizerConfig = tokenizerConfig;
  return files;
}

/**
 * Reads a Hugging Face model folder's files without touching the GPU: `config.json` (required,
 * checked first), `tokenizer.json` and `tokenizer_config.json` (when present), then
 * `model.safetensors`, or `model.safetensors.index.json` and the shards it names. Every file is
 * checked (JSON parsed, safetensors headers validated) before it is cached. The result is what
 * the trainer worker's `loadModel` takes.
 *
 * @param source a base URL (the Hub's `https://huggingface.co/<repo>/resolve/main/` layout), a
 *   Node folder path or `file:` URL, picked files (`FileList` / `File[]`) or a
 *   `FileSystemDirectoryHandle`.
 * @throws {ModelFilesError} naming the missing or broken file (config.json, the weights, a shard).
 */
export async function readPretrainedFiles(source: PretrainedSource, options: ReadPretrainedOptions = {}): Promise<PretrainedFiles> {
  return readFolder(await modelFileSource('readPretrainedFiles', source, options), options);
}

/** The tokenizer a model gets when it has no `tokenizer.json` (see {@link PretrainedModel.tokenizer}). */
function fallbackTokenizer(fn: string, config: ModelConfig, tokenizerConfig: unknown): Tokenizer | null {
  let declared: unknown;
  try {
    const parsed = typeof tokenizerConfig === 'string' ? JSON.parse(tokenizerConfig) : tokenizerConfig;
    declared = (parsed as { sgt_byte_tokenizer?: unknown } | null | undefined)?.sgt_byte_tokenizer;
  } catch {
    declared = undefined; // a broken tokenizer_config.json matters only with a tokenizer.json
  }
  if (declared !== null && typeof declared === 'object') {
    const { bosId, eosId, padId } = declared as { bosId?: number | null; eosId?: number | null; padId?: number };
    try {
      return byteTokenizer({ vocabSize: config.vocabSize, bosId, eosId, padId });
    } catch (e) {
      throw new SgtError(
        'MODEL_INVALID',
        `${fn}: tokenizer_config.json's sgt_byte_tokenizer does not fit the model: ${(e as Error).message}`,
      );
    }
  }
  return config.vocabSize >= 259 ? byteTokenizer({ vocabSize: config.vocabSize }) : null;
}

/**
 * Loads a model's files onto the GPU with its tokenizer: the weights parsed and the tokenizer
 * built and checked against the vocabulary before the upload, so that a bad file costs no GPU
 * work; nothing stays allocated when it throws. `fn` names the caller in messages.
 */
export async function loadModelFromFiles(
  fn: string,
  files: ModelFilesInput,
  options: Pick<LoadPretrainedOptions, 'weightDtype' | 'trainable'> = {},
): Promise<Omit<PretrainedModel, 'source'>> {
  let raw = files.config;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (e) {
      throw new SgtError('MODEL_INVALID', `${fn}: config.json is not valid JSON: ${(e as Error).message}`);
    }
  }
  const config = parseModelConfig(raw);
  const weights = await readWeights(files.weights);
  let parameterCount = 0;
  for (const entry of weights.tensors.values()) parameterCount += entry.shape.reduce((a, b) => a * b, 1);
  let tokenizer: Tokenizer | null = null;
  let tokenizerKind: TokenizerKind = 'none';
  if (files.tokenizerJson !== undefined && files.tokenizerJson !== null) {
    tokenizer = await loadHuggingFaceTokenizer(files.tokenizerJson, files.tokenizerConfig);
    tokenizerKind = 'huggingface';
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new SgtError(
        'MODEL_INVALID',
        `${fn}: the tokenizer produces ids up to ${tokenizer.vocabSize - 1}, but the model's vocabulary has only ${config.vocabSize} rows`,
      );
    }
  } else {
    tokenizer = fallbackTokenizer(fn, config, files.tokenizerConfig);
    if (tokenizer) tokenizerKind = 'byte';
  }
  const model = await loadCausalLM({ config: raw, weights, weightDtype: options.weightDtype, trainable: options.trainable });
  return { model, tokenizer, tokenizerKind, config: raw as Record<string, unknown>, parameterCount };
}

/**
 * `from_pretrained` for WebGPU: reads a Hugging Face model folder ({@link readPretrainedFiles}:
 * progress per file, downloads kept in the Cache Storage API unless `cache: false`) and loads it
 * onto the GPU with its tokenizer. Call `init()` first.
 *
 * ```ts
 * const { model, tokenizer } = await loadPretrained('https://huggingface.co/HuggingFaceTB/SmolLM2-135M/resolve/main/', {
 *   onProgress: ({ file, loadedBytes, totalBytes }) => console.log(file, loadedBytes, totalBytes),
 * });
 * ```
 *
 * @throws {ModelFilesError} for a missing or broken file; an Error naming the problem for an
 *   unsupported model or a tokenizer that does not fit it. Nothing stays on the GPU when it throws.
 */
export async function loadPretrained(source: PretrainedSource, options: LoadPretrainedOptions = {}): Promise<PretrainedModel> {
  const files = await readFolder(await modelFileSource('loadPretrained', source, options), options);
  return { ...(await loadModelFromFiles('loadPretrained', files, options)), source: files.source };
}

/**
 * The URLs of the package's default model's files (`models/default/`), relative to this module.
 * The literals let an app's bundler (Vite, webpack) emit them as assets; the package's own build
 * rewrites them for where its chunks sit (scripts/packageFileUrls.ts).
 */
export function defaultModelUrls(): Record<string, URL> {
  return {
    'config.json': new URL('../../models/default/config.json', import.meta.url),
    'model.safetensors': new URL('../../models/default/model.safetensors', import.meta.url),
    'tokenizer.json': new URL('../../models/default/tokenizer.json', import.meta.url),
    'tokenizer_config.json': new URL('../../models/default/tokenizer_config.json', import.meta.url),
  };
}

/**
 * Loads the package's default model (`models/default`: a 1.33M-parameter Llama with a 4096-id
 * byte-level BPE tokenizer, pretrained on the King James Bible; see the README) with its
 * `tokenizer.json`, in a page, a worker or Node.
 * Its files are found next to the package's modules (`import.meta.url`); `cache` is off by
 * default, since they come with the app.
 */
export async function loadDefaultModel(options: LoadPretrainedOptions = {}): Promise<PretrainedModel> {
  const opts = { ...options, cache: options.cache ?? false };
  const files = await readFolder(await modelFileUrls('the default model (models/default)', defaultModelUrls(), opts), opts);
  return { ...(await loadModelFromFiles('loadDefaultModel', files, opts)), source: files.source };
}
