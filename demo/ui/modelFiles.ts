/**
 * Getting a model's files into the page: the default model shipped with the demo (fetched from
 * the site itself, so it works offline), or a Hugging Face model folder picked from disk. The
 * JSON files are parsed here so that a broken one is reported by name; the weights are checked
 * by the worker's safetensors reader, whose errors say what is wrong (truncated, bad header, ...).
 */
import defaultConfigUrl from '../../models/default/config.json?url';
import defaultWeightsUrl from '../../models/default/model.safetensors?url';
import defaultTokenizerConfigUrl from '../../models/default/tokenizer_config.json?url';
import defaultTokenizerUrl from '../../models/default/tokenizer.json?url';
import { SAFETENSORS_INDEX_NAME, parseSafetensorsIndex } from '../../src/models/shards';

/** The weights as the worker's `loadModel` takes them: `model.safetensors`, or the index and its shards. */
export type ModelWeights = ArrayBuffer | { index: unknown; shards: Record<string, ArrayBuffer> };

/** A model's files, read and parsed, ready for the worker's `loadModel`. */
export interface ModelFiles {
  /** Where they came from, for the status line. */
  source: string;
  config: unknown;
  weights: ModelWeights;
  tokenizerJson?: unknown;
  tokenizerConfig?: unknown;
}

/** Progress of a download or a file read: bytes so far, and the total when known. */
export type LoadProgress = (loaded: number, total: number | null) => void;

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

async function fetchOk(url: string, file: string): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`could not fetch the default model's ${file}: ${(e as Error).message}`);
  }
  if (!response.ok) throw new Error(`could not fetch the default model's ${file}: HTTP ${response.status}`);
  return response;
}

/** Reads a response body, reporting progress (a 13 MB model takes a moment on a slow disk or link). */
async function readBody(response: Response, onProgress?: LoadProgress): Promise<ArrayBuffer> {
  const total = Number(response.headers.get('content-length')) || null;
  if (!response.body || !onProgress) return response.arrayBuffer();
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    onProgress(loaded, total);
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out.buffer;
}

/** The default model: a small Llama with a BPE tokenizer, pretrained on the King James Bible (models/default). */
export async function fetchDefaultModel(onProgress?: LoadProgress): Promise<ModelFiles> {
  const [config, tokenizerJson, tokenizerConfig] = await Promise.all([
    fetchOk(defaultConfigUrl, 'config.json').then(async (r) => parseJson(await r.text(), 'config.json')),
    fetchOk(defaultTokenizerUrl, 'tokenizer.json').then(async (r) => parseJson(await r.text(), 'tokenizer.json')),
    fetchOk(defaultTokenizerConfigUrl, 'tokenizer_config.json').then(async (r) => parseJson(await r.text(), 'tokenizer_config.json')),
  ]);
  const weights = await readBody(await fetchOk(defaultWeightsUrl, 'model.safetensors'), onProgress);
  return { source: 'default model', config, weights, tokenizerJson, tokenizerConfig };
}

/**
 * Finds and reads `config.json`, `model.safetensors` (or `model.safetensors.index.json` and the
 * shards it names) and (when present) `tokenizer.json` and `tokenizer_config.json` among picked
 * files (a folder's contents, or files picked together).
 *
 * @throws an Error naming the missing or broken file.
 */
export async function readPickedFiles(files: FileList | File[]): Promise<ModelFiles> {
  const byName = new Map<string, File>();
  for (const file of Array.from(files)) {
    // In a picked folder, webkitRelativePath is "folder/sub/name": only top-level files count.
    const parts = (file.webkitRelativePath || file.name).split('/');
    if (parts.length > 2) continue;
    byName.set(file.name, file);
  }
  const configFile = byName.get('config.json');
  const weightsFile = byName.get('model.safetensors');
  const indexFile = byName.get(SAFETENSORS_INDEX_NAME);
  const seen = byName.size ? ` Found: ${[...byName.keys()].sort().join(', ')}.` : '';
  if (!configFile || (!weightsFile && !indexFile)) {
    const missing = [!configFile && 'config.json', !weightsFile && !indexFile && 'model.safetensors'].filter(Boolean).join(' and ');
    const shards = [...byName.keys()].some((n) => /^model-\d+-of-\d+\.safetensors$/.test(n));
    const hint = shards
      ? ` This model is split into several safetensors shards: pick ${SAFETENSORS_INDEX_NAME} with them.`
      : ' Pick a Hugging Face model folder (or its files) holding config.json, model.safetensors (or its shards and their index) and, for text, tokenizer.json.';
    throw new Error(`missing ${missing}.${hint}${seen}`);
  }
  const config = parseJson(await configFile.text(), 'config.json');
  const tokenizerFile = byName.get('tokenizer.json');
  const tokenizerConfigFile = byName.get('tokenizer_config.json');
  const tokenizerJson = tokenizerFile ? parseJson(await tokenizerFile.text(), 'tokenizer.json') : undefined;
  const tokenizerConfig = tokenizerConfigFile ? parseJson(await tokenizerConfigFile.text(), 'tokenizer_config.json') : undefined;
  const weights = weightsFile ? await weightsFile.arrayBuffer() : await readShards(indexFile!, byName, seen);
  const folder = configFile.webkitRelativePath.split('/')[0];
  return { source: folder && folder !== 'config.json' ? `${folder}/` : 'picked files', config, weights, tokenizerJson, tokenizerConfig };
}

/** The shards a picked `model.safetensors.index.json` names, every one checked to be there before any is read. */
async function readShards(indexFile: File, byName: Map<string, File>, seen: string): Promise<ModelWeights> {
  const index = parseSafetensorsIndex(parseJson(await indexFile.text(), SAFETENSORS_INDEX_NAME));
  const missing = index.shards.filter((shard) => !byName.has(shard));
  if (missing.length) {
    throw new Error(`missing shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')} named by ${SAFETENSORS_INDEX_NAME}.${seen}`);
  }
  const shards: Record<string, ArrayBuffer> = {};
  for (const shard of index.shards) shards[shard] = await byName.get(shard)!.arrayBuffer();
  return { index: await indexFile.text(), shards };
}

/** The buffers of the weights (what to transfer to the worker). */
export function weightBuffers(weights: ModelWeights): ArrayBuffer[] {
  return weights instanceof ArrayBuffer ? [weights] : Object.values(weights.shards);
}

/** "12.3 MB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['kB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
