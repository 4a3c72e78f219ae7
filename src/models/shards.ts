/**
 * Checkpoints split over several safetensors files (`model-00001-of-00002.safetensors`, ...) with
 * `model.safetensors.index.json`, Hugging Face's layout for large models, read into one
 * {@link SafetensorsFile} view. The bad cases are named errors, found before any GPU work: a shard
 * the index names that was not given, a tensor held by two shards, a tensor the index places in a
 * shard that does not hold it (and {@link checkWeights} names a tensor absent from every shard).
 */
import { readSafetensors, type ReadSafetensorsOptions, type SafetensorsFile, type SafetensorsSource } from './safetensors';
import { SgtError } from '../gpu/errors';

/** The name of the index file of a sharded checkpoint. */
export const SAFETENSORS_INDEX_NAME = 'model.safetensors.index.json';

/** One safetensors file: its bytes, a Blob/File, a URL, or an already parsed file. */
export type WeightsSource = SafetensorsSource | SafetensorsFile;

/** A sharded checkpoint: its index (parsed or text) and the shards by their file names. */
export interface ShardedWeights {
  /** `model.safetensors.index.json`, parsed or as text. */
  index: unknown;
  /** Every shard the index names, by file name (extra entries are not read). */
  shards: Record<string, WeightsSource> | Map<string, WeightsSource>;
}

/**
 * Weights as {@link readWeights} and `loadCausalLM` take them: one file, a list of shards (one
 * source per shard, in any order), or an index with its shards.
 */
export type WeightsInput = WeightsSource | readonly WeightsSource[] | ShardedWeights;

/** A parsed `model.safetensors.index.json`. */
export interface SafetensorsIndex {
  /** Tensor name to the shard file that holds it. */
  weightMap: Map<string, string>;
  /** The shard files the index names, in order of first appearance. */
  shards: string[];
  /** The index's `metadata` (e.g. `total_size`), empty when absent. */
  metadata: Record<string, unknown>;
}

function fail(message: string): never {
  throw new SgtError('MODEL_INVALID', `weights: ${message}`);
}

/** The error for shards the index names that were not given. */
function missingShards(index: SafetensorsIndex, missing: string[], given: string[]): never {
  const counts = missing.map((m) => `'${m}' (${[...index.weightMap.values()].filter((f) => f === m).length} tensors)`);
  fail(
    `missing shard${missing.length > 1 ? 's' : ''} ${counts.join(', ')} named by ${SAFETENSORS_INDEX_NAME}; ` +
      `given: ${given.length ? given.map((n) => `'${n}'`).join(', ') : 'none'}`,
  );
}

/** Whether `w` is an already parsed safetensors file. */
export function isSafetensorsFile(w: unknown): w is SafetensorsFile {
  return typeof w === 'object' && w !== null && 'tensors' in w && (w as SafetensorsFile).tensors instanceof Map;
}

/** Whether `w` is an index with its shards (not bytes, a Blob, a URL or a parsed file). */
export function isShardedWeights(w: unknown): w is ShardedWeights {
  return (
    typeof w === 'object' &&
    w !== null &&
    !Array.isArray(w) &&
    !ArrayBuffer.isView(w) &&
    !(w instanceof ArrayBuffer) &&
    'index' in w &&
    'shards' in w
  );
}

/**
 * Parses `model.safetensors.index.json` (an object or its text). Throws naming the problem when it
 * is not JSON, has no `weight_map` object, or maps a tensor to something other than a file name.
 */
export function parseSafetensorsIndex(json: unknown): SafetensorsIndex {
  let raw = json;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (e) {
      fail(`${SAFETENSORS_INDEX_NAME} is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`${SAFETENSORS_INDEX_NAME} must be a JSON object`);
  const { weight_map: map, metadata } = raw as Record<string, unknown>;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    fail(`${SAFETENSORS_INDEX_NAME} has no 'weight_map' object (tensor name -> shard file)`);
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '') {
      fail(`${SAFETENSORS_INDEX_NAME} maps '${name}' to ${JSON.stringify(file)}; expected a shard file name`);
    }
    weightMap.set(name, file);
  }
  if (weightMap.size === 0) fail(`${SAFETENSORS_INDEX_NAME} has an empty 'weight_map'`);
  const meta = metadata !== null && typeof metadata === 'object' && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : {};
  return { weightMap, shards: [...new Set(weightMap.values())], metadata: meta };
}

/**
 * One {@link SafetensorsFile} over several shards (each named, for the errors). Throws a named
 * error when a tensor is held by two shards, when the index names a shard that is not among them,
 * or when the index places a tensor in a shard that does not hold it. The result's `shards` lists
 * the shard names (so that {@link checkWeights} can say a missing tensor is absent from every one).
 */
export function mergeSafetensorsShards(
  shards: readonly { name: string; file: SafetensorsFile }[],
  index?: SafetensorsIndex,
): SafetensorsFile {
  if (shards.length === 0) fail('no shards were given');
  const names = shards.map((s) => s.name);
  if (index) {
    const missing = index.shards.filter((s) => !names.includes(s));
    if (missing.length) missingShards(index, missing, names);
  }
  const tensors: SafetensorsFile['tensors'] = new Map();
  const owner = new Map<string, string>();
  const metadata: Record<string, string> = {};
  for (const { name, file } of shards) {
    // Defined one by one: Object.assign would turn a key '__proto__' into a prototype.
    for (const [k, v] of Object.entries(file.metadata)) {
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
    for (const [tensorName, entry] of file.tensors) {
      const first = owner.get(tensorName);
      if (first !== undefined) fail(`tensor '${tensorName}' is in two shards: '${first}' and '${name}'`);
      owner.set(tensorName, name);
      tensors.set(tensorName, entry);
    }
  }
  if (index) {
    for (const [tensorName, shard] of index.weightMap) {
      const holder = owner.get(tensorName);
      if (holder !== shard) {
        fail(
          `${SAFETENSORS_INDEX_NAME} places '${tensorName}' in '${shard}', which does not hold it ` +
            `(${holder === undefined ? 'no shard holds it' : `it is in '${holder}'`})`,
        );
      }
    }
  }
  return { metadata, tensors, shards: names };
}

/** A name for an unnamed shard: a File's name, a URL's last path segment, else its place in the list. */
function shardName(source: WeightsSource, i: number, n: number): string {
  if (typeof Blob !== 'undefined' && source instanceof Blob && 'name' in source && typeof source.name === 'string' && source.name) {
    return source.name;
  }
  if (typeof source === 'string' || source instanceof URL) {
    const path = String(source).split(/[?#]/)[0];
    const last = path.slice(path.lastIndexOf('/') + 1);
    if (last) return decodeURIComponent(last);
  }
  return `shard ${i + 1} of ${n}`;
}

/** Bytes of a source when known before reading it (null for a URL). */
function knownSize(source: WeightsSource): number | null {
  if (source instanceof ArrayBuffer || source instanceof Uint8Array) return source.byteLength;
  if (typeof Blob !== 'undefined' && source instanceof Blob) return source.size;
  if (isSafetensorsFile(source)) return 0;
  return null;
}

/**
 * Reads weights in any {@link WeightsInput} form into one {@link SafetensorsFile}: a single file as
 * {@link readSafetensors} does; a list of shards, or an index with its shards, read one after the
 * other and merged by {@link mergeSafetensorsShards} (a missing shard fails before any is read).
 * `onProgress` counts the bytes over all shards, with a total when every size is known up front.
 */
export async function readWeights(input: WeightsInput, options: ReadSafetensorsOptions = {}): Promise<SafetensorsFile> {
  if (isSafetensorsFile(input)) return input;
  let named: { name: string; source: WeightsSource }[];
  let index: SafetensorsIndex | undefined;
  if (Array.isArray(input)) {
    const list = input as readonly WeightsSource[];
    named = list.map((source, i) => ({ name: shardName(source, i, list.length), source }));
    const seen = new Set<string>();
    for (const { name } of named) {
      if (seen.has(name)) fail(`two shards are named '${name}'`);
      seen.add(name);
    }
  } else if (isShardedWeights(input)) {
    index = parseSafetensorsIndex(input.index);
    const given = input.shards instanceof Map ? input.shards : new Map(Object.entries(input.shards ?? {}));
    const missing = index.shards.filter((s) => !given.has(s));
    // Checked before any shard is read.
    if (missing.length) missingShards(index, missing, [...given.keys()]);
    named = index.shards.map((name) => ({ name, source: given.get(name)! }));
  } else {
    return readSafetensors(input as SafetensorsSource, options);
  }
  const sizes = named.map(({ source }) => knownSize(source));
  const total = sizes.every((s) => s !== null) ? sizes.reduce((a: number, b) => a + (b ?? 0), 0) : null;
  const files: { name: string; file: SafetensorsFile }[] = [];
  let done = 0;
  for (const { name, source } of named) {
    if (isSafetensorsFile(source)) {
      files.push({ name, file: source });
      continue;
    }
    let last = 0;
    try {
      const file = await readSafetensors(source, {
        signal: options.signal,
        onProgress: (loaded) => {
          last = loaded;
          options.onProgress?.(done + loaded, total);
        },
      });
      files.push({ name, file });
    } catch (e) {
      const err = e as Error;
      if (err instanceof Error && err.message.startsWith('safetensors:') && !err.message.includes(name)) {
        throw new SgtError('MODEL_INVALID', `${err.message} (in shard '${name}')`, { cause: err });
      }
      throw err;
    }
    done += last;
  }
  return mergeSafetensorsShards(files, index);
}
