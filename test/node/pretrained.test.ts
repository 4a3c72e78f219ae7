/**
 * Models in one call, in Node: loadDefaultModel() (models/default, found from the module's
 * import.meta.url), loadPretrained() from a folder path, a file: URL and an http base URL served
 * by a local node:http server (one file, and tiny-llama3's two shards with their index), the
 * progress it reports, and the named errors (no config.json, a missing shard, an HTTP failure, a
 * tokenizer too large for the model) that leave nothing allocated. Each loaded model is compared
 * with the same files read here with node:fs and given to loadCausalLM: equal logits, bit for bit.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import {
  ModelFilesError,
  liveBufferCount,
  loadCausalLM,
  loadDefaultModel,
  loadPretrained,
  readPretrainedFiles,
  scope,
  type CausalLM,
  type PretrainedProgress,
} from '../../src/index';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { TrainerService } from '../../src/worker/workerApi';

const REPO = resolve(import.meta.dirname, '../..');
const DEFAULT_DIR = join(REPO, 'models/default');
const TINY_LLAMA = join(FIXTURES_DIR, 'tiny-llama');
const TINY_LLAMA3 = join(FIXTURES_DIR, 'tiny-llama3');
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors';
const INDEX = 'model.safetensors.index.json';

/** Logits of a fixed batch of ids (all below 96, the smallest vocabulary here). */
async function logits(model: CausalLM): Promise<Float32Array> {
  const ids = [1, 5, 17, 42, 3, 88, 60, 7];
  return scope(async () => {
    const out = model.forward({ ids: { data: ids, shape: [1, ids.length] } });
    return (await out.logits!.toArray()) as Float32Array;
  });
}

/** The logits of the same folder loaded here, from bytes read with node:fs. */
async function referenceLogits(dir: string): Promise<Float32Array> {
  const config = readFileSync(join(dir, 'config.json'), 'utf8');
  let weights: Parameters<typeof loadCausalLM>[0]['weights'];
  try {
    weights = new Uint8Array(readFileSync(join(dir, 'model.safetensors')));
  } catch {
    weights = {
      index: readFileSync(join(dir, INDEX), 'utf8'),
      shards: { [SHARD1]: new Uint8Array(readFileSync(join(dir, SHARD1))), [SHARD2]: new Uint8Array(readFileSync(join(dir, SHARD2))) },
    };
  }
  const model = await loadCausalLM({ config, weights });
  try {
    return await logits(model);
  } finally {
    model.dispose();
  }
}

/** The last progress event of each file, in the order the files were first reported. */
function lastEvents(events: PretrainedProgress[]): PretrainedProgress[] {
  const last = new Map<string, PretrainedProgress>();
  for (const e of events) last.set(e.file, e);
  return [...last.values()];
}

/** Checks the events of every file: byte counts never go back, and the last one is `done` with the file's size on disk. */
function expectProgressMatchesDisk(events: PretrainedProgress[], dir: string, files: string[], known: boolean): void {
  expect(lastEvents(events).map((e) => e.file)).toEqual(files);
  for (const file of files) {
    const own = events.filter((e) => e.file === file);
    const size = statSync(join(dir, file)).size;
    for (let i = 1; i < own.length; i++) expect(own[i].loadedBytes).toBeGreaterThanOrEqual(own[i - 1].loadedBytes);
    expect(own.at(-1)).toEqual({ file, loadedBytes: size, totalBytes: size, fromCache: false, done: true });
    expect(own.slice(0, -1).every((e) => !e.done)).toBe(true);
    if (known) expect(own.every((e) => e.totalBytes === size)).toBe(true);
  }
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'sgt-pretrained-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('loadDefaultModel', () => {
  it('loads models/default with its BPE tokenizer (tokenizer.json, specials from tokenizer_config.json)', async () => {
    await gpu();
    const start = liveBufferCount();
    const events: PretrainedProgress[] = [];
    const loaded = await loadDefaultModel({ onProgress: (e) => events.push(e) });
    try {
      const config = JSON.parse(readFileSync(join(DEFAULT_DIR, 'config.json'), 'utf8'));
      const training = JSON.parse(readFileSync(join(DEFAULT_DIR, 'training.json'), 'utf8'));
      expect(loaded.config).toEqual(config);
      expect(loaded.model.config.numLayers).toBe(config.num_hidden_layers);
      expect(loaded.model.config.vocabSize).toBe(4096);
      expect(loaded.parameterCount).toBe(training.parameters);
      expect(loaded.tokenizerKind).toBe('huggingface');
      const tok = loaded.tokenizer!;
      expect([tok.bosId, tok.eosId, tok.padId, tok.vocabSize]).toEqual([4093, 4094, 4095, 4096]);
      // (test/node/default-model.test.ts checks the ids against the Python encoder that trained it.)
      expect(tok.decode(tok.encode('In the beginning'))).toBe('In the beginning');
      expectProgressMatchesDisk(events, DEFAULT_DIR, ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'], true);
      expect(await logits(loaded.model)).toEqual(await referenceLogits(DEFAULT_DIR));
    } finally {
      loaded.model.dispose();
    }
    expect(liveBufferCount()).toBe(start);
  });
});

describe('readPretrainedFiles', () => {
  it("reads a folder without the GPU into what the trainer service's loadModel takes", async () => {
    const files = await readPretrainedFiles(DEFAULT_DIR);
    expect(files.config).toEqual(JSON.parse(readFileSync(join(DEFAULT_DIR, 'config.json'), 'utf8')));
    expect(files.tokenizerConfig).toEqual(JSON.parse(readFileSync(join(DEFAULT_DIR, 'tokenizer_config.json'), 'utf8')));
    expect(files.tokenizerJson).toEqual(JSON.parse(readFileSync(join(DEFAULT_DIR, 'tokenizer.json'), 'utf8')));
    // Whole buffers: ready to transfer to a worker.
    const weights = files.weights as Uint8Array;
    expect(weights.byteOffset).toBe(0);
    expect(weights.buffer.byteLength).toBe(statSync(join(DEFAULT_DIR, 'model.safetensors')).size);
    const service = new TrainerService();
    await service.init();
    try {
      expect(await service.loadModel(files)).toMatchObject({
        type: 'llama',
        layers: 4,
        vocabSize: 4096,
        parameterCount: JSON.parse(readFileSync(join(DEFAULT_DIR, 'training.json'), 'utf8')).parameters,
        tokenizer: 'huggingface',
      });
      const sharded = await readPretrainedFiles(TINY_LLAMA3);
      expect(Object.keys((sharded.weights as { shards: Record<string, Uint8Array> }).shards)).toEqual([SHARD1, SHARD2]);
      expect(await service.loadModel(sharded)).toMatchObject({ type: 'llama', layers: 2, hiddenSize: 48, tokenizer: 'none' });
    } finally {
      await service.dispose();
    }
  });
});

describe('loadPretrained from a Node folder', () => {
  it('a path to a one-file folder (tiny-llama): the model of loadCausalLM, progress per file, no tokenizer for 96 ids', async () => {
    await gpu();
    const events: PretrainedProgress[] = [];
    const loaded = await loadPretrained(TINY_LLAMA, { onProgress: (e) => events.push(e) });
    try {
      expect(loaded.source).toBe(TINY_LLAMA);
      expect(loaded.tokenizer).toBeNull();
      expect(loaded.tokenizerKind).toBe('none');
      expectProgressMatchesDisk(events, TINY_LLAMA, ['config.json', 'model.safetensors'], true);
      expect(await logits(loaded.model)).toEqual(await referenceLogits(TINY_LLAMA));
    } finally {
      loaded.model.dispose();
    }
  });

  it('a file: URL to a sharded folder (tiny-llama3): the index, then both shards', async () => {
    await gpu();
    const events: PretrainedProgress[] = [];
    const loaded = await loadPretrained(pathToFileURL(TINY_LLAMA3), { onProgress: (e) => events.push(e) });
    try {
      expect(loaded.source).toBe(`${pathToFileURL(TINY_LLAMA3).href}`);
      expectProgressMatchesDisk(events, TINY_LLAMA3, ['config.json', INDEX, SHARD1, SHARD2], true);
      expect(await logits(loaded.model)).toEqual(await referenceLogits(TINY_LLAMA3));
    } finally {
      loaded.model.dispose();
    }
  });

  it('loadCausalLM reads a file: URL with node:fs (fetch cannot)', async () => {
    await gpu();
    const config = readFileSync(join(TINY_LLAMA, 'config.json'), 'utf8');
    const seen: [number, number | null][] = [];
    const model = await loadCausalLM({
      config,
      weights: pathToFileURL(join(TINY_LLAMA, 'model.safetensors')),
      onProgress: (l, t) => seen.push([l, t]),
    });
    try {
      const size = statSync(join(TINY_LLAMA, 'model.safetensors')).size;
      expect(seen.at(-1)).toEqual([size, size]);
      expect(await logits(model)).toEqual(await referenceLogits(TINY_LLAMA));
    } finally {
      model.dispose();
    }
    await expect(loadCausalLM({ config, weights: pathToFileURL(join(work, 'nothing.safetensors')) })).rejects.toThrow(
      `safetensors: no such file: ${pathToFileURL(join(work, 'nothing.safetensors')).href}`,
    );
  });

  it('a tokenizer.json beside the weights is the tokenizer; one with more ids than the model has rows is refused before any GPU work', async () => {
    await gpu();
    const dir = join(work, 'with-tokenizer');
    cpSync(TINY_LLAMA, dir, { recursive: true });
    const words = ['<unk>', 'in', 'the', 'beginning'];
    const tokenizerJson = (n: number) => ({
      model: {
        type: 'WordLevel',
        unk_token: '<unk>',
        vocab: Object.fromEntries(Array.from({ length: n }, (_, i) => [words[i] ?? `w${i}`, i])),
      },
      pre_tokenizer: { type: 'Whitespace' },
    });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(96)));
    const loaded = await loadPretrained(dir);
    expect(loaded.tokenizerKind).toBe('huggingface');
    expect(loaded.tokenizer!.encode('in the beginning')).toEqual([1, 2, 3]);
    loaded.model.dispose();

    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(97)));
    const start = liveBufferCount();
    await expect(loadPretrained(dir)).rejects.toThrow(
      "loadPretrained: the tokenizer produces ids up to 96, but the model's vocabulary has only 96 rows",
    );
    expect(liveBufferCount()).toBe(start);
  });

  it("tokenizer_config.json's sgt_byte_tokenizer sets the byte-level tokenizer's special ids", async () => {
    await gpu();
    const dir = join(work, 'byte-ids');
    cpSync(DEFAULT_DIR, dir, { recursive: true });
    rmSync(join(dir, 'tokenizer.json')); // a tokenizer.json would come first
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({ tokenizer_class: 'ByteTokenizer', sgt_byte_tokenizer: { vocabSize: 259, bosId: null, eosId: 258, padId: 257 } }),
    );
    const loaded = await loadPretrained(dir);
    loaded.model.dispose();
    expect(loaded.tokenizerKind).toBe('byte');
    expect([loaded.tokenizer!.bosId, loaded.tokenizer!.eosId, loaded.tokenizer!.padId]).toEqual([undefined, 258, 257]);
  });

  it('named errors: no such folder, no config.json, no weights, a missing shard (found before any shard is read)', async () => {
    await gpu();
    const start = liveBufferCount();
    const nowhere = join(work, 'nowhere');
    await expect(loadPretrained(nowhere)).rejects.toThrow(new ModelFilesError(`no such folder: ${nowhere}`, { source: nowhere }));

    const noConfig = join(work, 'no-config');
    cpSync(TINY_LLAMA, noConfig, { recursive: true });
    rmSync(join(noConfig, 'config.json'));
    const err = await loadPretrained(noConfig).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFilesError);
    expect(err).toMatchObject({ name: 'ModelFilesError', file: 'config.json', source: noConfig });
    expect((err as Error).message).toMatch(new RegExp(`^${noConfig.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} has no config\\.json`));

    const noWeights = join(work, 'no-weights');
    cpSync(TINY_LLAMA, noWeights, { recursive: true });
    rmSync(join(noWeights, 'model.safetensors'));
    await expect(loadPretrained(noWeights)).rejects.toMatchObject({
      file: 'model.safetensors',
      message: `${noWeights} has no model.safetensors (nor ${INDEX} and its shards).`,
    });

    const oneShard = join(work, 'one-shard');
    cpSync(TINY_LLAMA3, oneShard, { recursive: true });
    rmSync(join(oneShard, SHARD2));
    const events: PretrainedProgress[] = [];
    await expect(loadPretrained(oneShard, { onProgress: (e) => events.push(e) })).rejects.toMatchObject({
      name: 'ModelFilesError',
      file: SHARD2,
      message: `missing shard ${SHARD2} named by ${INDEX} in ${oneShard}.`,
    });
    expect(new Set(events.map((e) => e.file))).toEqual(new Set(['config.json', INDEX]));
    expect(liveBufferCount()).toBe(start);
  });

  it('bad arguments name the argument; an unsupported config is named before the weights are read', async () => {
    await expect(loadPretrained(42 as never)).rejects.toThrow(
      "loadPretrained: argument 'source' must be a base URL (string or URL), a folder path or file: URL (Node), a FileList or File[] (picked files), or a FileSystemDirectoryHandle; got number",
    );
    const dir = join(work, 'bad-config');
    cpSync(TINY_LLAMA, dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    const events: PretrainedProgress[] = [];
    await expect(readPretrainedFiles(dir, { onProgress: (e) => events.push(e) })).rejects.toMatchObject({
      name: 'ModelFilesError',
      file: 'config.json',
      message: expect.stringMatching(/^config\.json in .*bad-config: .*bert/),
    });
    expect(events.map((e) => e.file).every((f) => f === 'config.json')).toBe(true);
  });
});

/** A static server for folders, logging the paths asked for; `chunked` drops Content-Length. */
function serve(
  root: string,
  opts: { chunked?: boolean; failWith?: Record<string, number> } = {},
): Promise<{ base: string; log: string[]; server: Server }> {
  const log: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    log.push(path);
    const status = opts.failWith?.[path];
    if (status) {
      res.writeHead(status).end('no');
      return;
    }
    let body: Buffer;
    try {
      body = readFileSync(join(root, path));
    } catch {
      res.writeHead(404).end('Entry not found');
      return;
    }
    if (opts.chunked) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      // Two writes, so that the client sees the body arrive in parts with no total.
      res.write(body.subarray(0, body.length >> 1));
      res.end(body.subarray(body.length >> 1));
    } else {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
      res.end(body);
    }
  });
  return new Promise((done) =>
    server.listen(0, '127.0.0.1', () => done({ base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, log, server })),
  );
}

describe('loadPretrained from an http base URL (the Hub layout)', () => {
  let fixtures: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    fixtures = await serve(FIXTURES_DIR, { failWith: { '/broken/config.json': 500 } });
  });
  afterAll(() => fixtures.server.close());

  it('one file (tiny-llama): the optional files asked for and missing (404), the weights with their Content-Length', async () => {
    await gpu();
    fixtures.log.length = 0;
    const events: PretrainedProgress[] = [];
    const loaded = await loadPretrained(`${fixtures.base}/tiny-llama`, { onProgress: (e) => events.push(e) });
    try {
      expect(loaded.source).toBe(`${fixtures.base}/tiny-llama/`);
      expect(fixtures.log).toEqual([
        '/tiny-llama/config.json',
        '/tiny-llama/tokenizer.json',
        '/tiny-llama/tokenizer_config.json',
        '/tiny-llama/model.safetensors',
      ]);
      expectProgressMatchesDisk(events, TINY_LLAMA, ['config.json', 'model.safetensors'], true);
      expect(await logits(loaded.model)).toEqual(await referenceLogits(TINY_LLAMA));
    } finally {
      loaded.model.dispose();
    }
  });

  it('sharded (tiny-llama3): model.safetensors is missing, so the index and its shards are fetched', async () => {
    await gpu();
    fixtures.log.length = 0;
    const events: PretrainedProgress[] = [];
    const loaded = await loadPretrained(new URL(`${fixtures.base}/tiny-llama3/`), { onProgress: (e) => events.push(e) });
    try {
      expect(fixtures.log.slice(3)).toEqual([
        '/tiny-llama3/model.safetensors',
        `/tiny-llama3/${INDEX}`,
        `/tiny-llama3/${SHARD1}`,
        `/tiny-llama3/${SHARD2}`,
      ]);
      expectProgressMatchesDisk(events, TINY_LLAMA3, ['config.json', INDEX, SHARD1, SHARD2], true);
      expect(await logits(loaded.model)).toEqual(await referenceLogits(TINY_LLAMA3));
    } finally {
      loaded.model.dispose();
    }
  });

  it('without Content-Length the totals are unknown until each file is done', async () => {
    await gpu();
    const chunked = await serve(FIXTURES_DIR, { chunked: true });
    try {
      const events: PretrainedProgress[] = [];
      const loaded = await loadPretrained(`${chunked.base}/tiny-llama/`, { onProgress: (e) => events.push(e) });
      loaded.model.dispose();
      expectProgressMatchesDisk(events, TINY_LLAMA, ['config.json', 'model.safetensors'], false);
      expect(events.filter((e) => !e.done).every((e) => e.totalBytes === null)).toBe(true);
    } finally {
      chunked.server.close();
    }
  });

  it('named errors: a missing config, a missing shard (after the shards before it), an HTTP failure; nothing allocated', async () => {
    await gpu();
    const start = liveBufferCount();
    fixtures.log.length = 0;
    await expect(loadPretrained(`${fixtures.base}/nothing-here/`)).rejects.toMatchObject({
      name: 'ModelFilesError',
      file: 'config.json',
      source: `${fixtures.base}/nothing-here/`,
    });
    // Nothing but config.json was asked for.
    expect(fixtures.log).toEqual(['/nothing-here/config.json']);

    const dir = join(work, 'served');
    cpSync(TINY_LLAMA3, join(dir, 'one-shard'), { recursive: true });
    rmSync(join(dir, 'one-shard', SHARD2));
    const served = await serve(dir);
    try {
      await expect(loadPretrained(`${served.base}/one-shard/`)).rejects.toMatchObject({
        name: 'ModelFilesError',
        file: SHARD2,
        message: `missing shard ${SHARD2} named by ${INDEX} in ${served.base}/one-shard/.`,
      });
    } finally {
      served.server.close();
    }

    await expect(loadPretrained(`${fixtures.base}/broken/`)).rejects.toMatchObject({
      name: 'ModelFilesError',
      file: 'config.json',
      message: `fetching ${fixtures.base}/broken/config.json failed: HTTP 500 Internal Server Error`,
    });
    expect(liveBufferCount()).toBe(start);
  });
});
