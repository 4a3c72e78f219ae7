/**
 * The float64 PyTorch reference cases of ../shared/fixtures (beside the repository, as in CI),
 * loaded in the page: JSON through Vite's module graph, `model.safetensors` through its `?url`
 * and fetch. The browser project's `server.fs.allow` in vite.config.ts lets the page read that
 * folder. A missing fixture fails with the path and what to do, never a skip.
 */
import type { FixtureArray, LossFixture } from '../helpers/fixtures';

export type { FixtureArray, LossFixture } from '../helpers/fixtures';

/** Names of the loss fixture files (as in test/helpers/fixtures.ts, which is Node-only). */
export const LOSS_FIXTURES = ['losses-small', 'losses-small-sigma', 'losses-uncombined'] as const;
export type LossFixtureName = (typeof LOSS_FIXTURES)[number];

/** The fixture models (tiny-llama3 is sharded: an index and two BF16 shards). */
export const MODEL_FIXTURES = ['tiny-llama', 'tiny-gpt2', 'tiny-llama3', 'tiny-qwen2'] as const;
export type ModelFixtureName = (typeof MODEL_FIXTURES)[number];

/** The fixtures folder, as the globs below spell it (relative to this file). */
const DIR = '../../../shared/fixtures';

// Lazy globs: a missing file is a missing key (a clear error below), not a failed import of the
// whole test module. The patterns must be literals.
const jsonFiles = import.meta.glob<unknown>(['../../../shared/fixtures/*.json', '../../../shared/fixtures/*/*.json'], {
  import: 'default',
});
const safetensorsUrls = import.meta.glob<string>('../../../shared/fixtures/*/*.safetensors', {
  query: '?url',
  import: 'default',
});

function missing(relativePath: string, available: string[]): Error {
  return new Error(
    `fixture ${relativePath} is missing: expected ${DIR}/${relativePath} relative to test/browser ` +
      `(the shared/ folder must sit beside the repository, and the browser project's server.fs.allow in ` +
      `vite.config.ts must include it). Found: ${available.length ? available.map((k) => k.slice(DIR.length + 1)).join(', ') : 'nothing'}`,
  );
}

/** Parses a JSON file under the fixtures folder, failing with the path when it is missing. */
export async function readFixtureJson<T>(relativePath: string): Promise<T> {
  const load = jsonFiles[`${DIR}/${relativePath}`];
  if (!load) throw missing(relativePath, Object.keys(jsonFiles));
  try {
    return (await load()) as T;
  } catch (e) {
    throw new Error(`cannot load fixture ${DIR}/${relativePath}: ${(e as Error).message}`);
  }
}

/** Loads `losses-*.json` by name. */
export function loadLossFixture(name: LossFixtureName): Promise<LossFixture> {
  return readFixtureJson<LossFixture>(`${name}.json`);
}

/** The bytes of a binary fixture reached by its Vite `?url`. */
async function fetchBytes(relativePath: string, url: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`cannot fetch fixture ${DIR}/${relativePath} from ${url}: ${(e as Error).message}`);
  }
  if (!response.ok) {
    throw new Error(
      `cannot fetch fixture ${DIR}/${relativePath} from ${url}: HTTP ${response.status} ${response.statusText} ` +
        "(a 403 means the browser project's server.fs.allow in vite.config.ts does not include the fixtures folder)",
    );
  }
  return new Uint8Array(await response.arrayBuffer());
}

/** One fixture model's PyTorch reference (see test/node/models.test.ts). */
export interface ModelReference {
  ids: FixtureArray;
  attentionMask: FixtureArray;
  R: FixtureArray;
  blockOutputs: FixtureArray[];
  logits: FixtureArray;
  gradInputsEmbedsOfSumLogitsTimesR: FixtureArray;
}

/** The bytes of `<name>/<file>.safetensors`. */
async function loadSafetensorsFixture(weightsPath: string): Promise<Uint8Array> {
  const loadUrl = safetensorsUrls[`${DIR}/${weightsPath}`];
  if (!loadUrl) throw missing(weightsPath, Object.keys(safetensorsUrls));
  const bytes = await loadUrl().then((url) => fetchBytes(weightsPath, url));
  if (bytes.byteLength < 8) throw new Error(`fixture ${DIR}/${weightsPath} has only ${bytes.byteLength} bytes`);
  return bytes;
}

/** The weights of a fixture model as `loadCausalLM` takes them. */
export type FixtureWeights = Uint8Array | { index: unknown; shards: Record<string, Uint8Array> };

/**
 * A fixture model's `config.json` (parsed), weights and `reference.json`. The weights are the
 * bytes of `model.safetensors`, or, for a sharded fixture (one with `model.safetensors.index.json`),
 * the index with every shard it names.
 */
export async function loadModelFixture(name: ModelFixtureName): Promise<{ config: unknown; weights: FixtureWeights; ref: ModelReference }> {
  const indexPath = `${name}/model.safetensors.index.json`;
  const [config, ref] = await Promise.all([
    readFixtureJson<unknown>(`${name}/config.json`),
    readFixtureJson<ModelReference>(`${name}/reference.json`),
  ]);
  if (!jsonFiles[`${DIR}/${indexPath}`]) return { config, weights: await loadSafetensorsFixture(`${name}/model.safetensors`), ref };
  const index = await readFixtureJson<{ weight_map: Record<string, string> }>(indexPath);
  const names = [...new Set(Object.values(index.weight_map))];
  const shards: Record<string, Uint8Array> = {};
  await Promise.all(
    names.map(async (shard) => {
      shards[shard] = await loadSafetensorsFixture(`${name}/${shard}`);
    }),
  );
  return { config, weights: { index, shards }, ref };
}

/**
 * The URL under which the test server serves a fixture model's folder (e.g. `/@fs/.../tiny-llama3/`,
 * absolute), for loaders that take a base URL and fetch `config.json`, the shards, ... from it.
 */
export async function fixtureFolderUrl(name: ModelFixtureName): Promise<string> {
  const key = Object.keys(safetensorsUrls).find((k) => k.startsWith(`${DIR}/${name}/`));
  if (!key) throw missing(`${name}/*.safetensors`, Object.keys(safetensorsUrls));
  const fileUrl = new URL(await safetensorsUrls[key](), location.href);
  return new URL('./', fileUrl).href;
}
