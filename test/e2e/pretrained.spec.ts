/**
 * The one-call loaders from the built package on a plain static server, as a page gets them from
 * a CDN or an app's own server without a bundler: the library is built (`vite build`, the
 * package's dist/) into a temporary package folder beside a copy of models/default, and a
 * node:http server started here serves that folder, the dependencies the page's import map names,
 * the fixture models, and a page that imports `dist/index.js`. In Chromium:
 *
 * - loadDefaultModel() finds models/default next to the built modules (import.meta.url) and gives
 *   the model that loadCausalLM gives for the same files;
 * - loadPretrained(baseUrl) loads tiny-llama3 (the index and two shards) over HTTP with progress;
 *   after a reload, a second load reads every file from the Cache Storage API, and the server
 *   sees no request for them.
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, test, type Page } from '@playwright/test';
import { collectPageErrors, forbidExternalRequests, screenshot } from './helpers';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const fixtures = resolve(repo, '../shared/fixtures');
const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
const CACHE = 'sgt-webgpu-models';
/** A text and the ids scripts/pretrain-default.py's Python encoder gave it (the default model's tokenizer). */
const sample = (
  JSON.parse(readFileSync(join(repo, 'test/fixtures/default-tokenizer-sample.json'), 'utf8')) as {
    cases: { text: string; ids: number[] }[];
  }
).cases[2];

/** URL prefix -> folder served under it. */
let mounts: [string, string][] = [];
let server: Server | null = null;
let origin = '';
let work = '';
/** Every path the server was asked for, in order. */
const requests: string[] = [];

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><link rel="icon" href="data:,"><title>sgt-webgpu from a static server</title>
<script type="importmap">${JSON.stringify({
  imports: {
    'wgsl_reflect/wgsl_reflect.module.js': '/node_modules/wgsl_reflect/wgsl_reflect.module.js',
    '@huggingface/tokenizers': '/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs',
    comlink: '/node_modules/comlink/dist/esm/comlink.mjs',
  },
})}</script>
</head>
<body>
<h1>sgt-webgpu: the one-call loaders</h1>
<pre id="log"></pre>
<script type="module">
  window.sgt = await import('/pkg/dist/index.js');
  await window.sgt.init();
  document.body.dataset.ready = 'yes';
</script>
</body>
</html>`;

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.json': 'application/json',
  '.html': 'text/html',
  '.map': 'application/json',
};

function startServer(): Promise<void> {
  server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      return;
    }
    for (const [prefix, dir] of mounts) {
      if (!path.startsWith(prefix)) continue;
      const file = normalize(join(dir, path.slice(prefix.length)));
      if (!file.startsWith(dir) || !existsSync(file) || !statSync(file).isFile()) break;
      const body = readFileSync(file);
      const type = TYPES[extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'content-length': String(body.length) }).end(body);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Entry not found');
  });
  return new Promise((done) =>
    server!.listen(0, '127.0.0.1', () => {
      origin = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
      done();
    }),
  );
}

async function openPage(page: Page): Promise<void> {
  await page.goto(`${origin}/`);
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'yes', { timeout: 60_000 });
}

test.describe('the one-call loaders from the built package on a static server', () => {
  test.describe.configure({ mode: 'serial' });

  test.beforeAll(async () => {
    test.setTimeout(180_000);
    work = mkdtempSync(join(tmpdir(), 'sgt-static-'));
    const pkg = join(work, 'sgt-webgpu');
    // The library as the package ships it: dist/ beside models/default/.
    await promisify(execFile)(
      process.execPath,
      [join(repo, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', join(pkg, 'dist'), '--emptyOutDir', '--logLevel', 'warn'],
      { cwd: repo, maxBuffer: 16 * 1024 * 1024 },
    ).catch((e: Error & { stderr?: string }) => {
      throw new Error(`vite build failed: ${e.message}\n${e.stderr ?? ''}`);
    });
    cpSync(join(repo, 'models/default'), join(pkg, 'models/default'), { recursive: true });
    mounts = [
      ['/pkg/', pkg],
      ['/node_modules/', join(repo, 'node_modules')],
      ['/fixtures/', fixtures],
    ];
    await startServer();
  });

  test.afterAll(() => {
    server?.close();
    server = null;
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('loadDefaultModel() finds models/default beside the built modules and gives the loadCausalLM model', async ({ page }, testInfo) => {
    const errors = collectPageErrors(page);
    const external = forbidExternalRequests(page, origin);
    await openPage(page);
    requests.length = 0;
    const result = await page.evaluate(async (sampleText) => {
      const sgt = (window as unknown as { sgt: typeof import('../../src/index') }).sgt;
      const ids = { data: [4093, 818, 262, 1020, 1219, 262], shape: [1, 6] as [number, number] };
      const logitsOf = (model: import('../../src/index').CausalLM) =>
        sgt.scope(async () => Array.from((await model.forward({ ids }).logits!.toArray()) as Float32Array));
      const start = sgt.liveBufferCount();
      const files: string[] = [];
      const loaded = await sgt.loadDefaultModel({ onProgress: (p) => p.done && files.push(`${p.file} ${p.loadedBytes}`) });
      const logits = await logitsOf(loaded.model);
      loaded.model.dispose();
      const base = new URL('/pkg/models/default/', location.href);
      const reference = await sgt.loadCausalLM({
        config: await (await fetch(new URL('config.json', base))).json(),
        weights: new URL('model.safetensors', base),
      });
      const referenceLogits = await logitsOf(reference);
      reference.dispose();
      return {
        source: loaded.source,
        tokenizerKind: loaded.tokenizerKind,
        encoded: loaded.tokenizer?.encode(sampleText),
        parameterCount: loaded.parameterCount,
        files,
        same: logits.length === referenceLogits.length && logits.every((v, i) => Object.is(v, referenceLogits[i])),
        finite: logits.every(Number.isFinite),
        leftBuffers: sgt.liveBufferCount() - start,
      };
    }, sample.text);
    await screenshot(page, testInfo, 'default-model');
    const defaultSize = (f: string) => statSync(join(repo, 'models/default', f)).size;
    expect(result).toMatchObject({
      tokenizerKind: 'huggingface',
      encoded: sample.ids,
      parameterCount: JSON.parse(readFileSync(join(repo, 'models/default/training.json'), 'utf8')).parameters,
      same: true,
      finite: true,
      leftBuffers: 0,
    });
    expect(result.files).toEqual(
      ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'].map((f) => `${f} ${defaultSize(f)}`),
    );
    // Resolved from the built module's URL: dist/models/... -> the package's models/default/.
    expect(requests.filter((r) => r.startsWith('/pkg/models/'))).toEqual([
      '/pkg/models/default/config.json',
      '/pkg/models/default/tokenizer.json',
      '/pkg/models/default/tokenizer_config.json',
      '/pkg/models/default/model.safetensors',
      '/pkg/models/default/config.json',
      '/pkg/models/default/model.safetensors',
    ]);
    expect(errors).toEqual([]);
    expect(external).toEqual([]);
  });

  test('loadPretrained(baseUrl) loads a sharded Hub-layout folder, then from the Cache Storage API after a reload', async ({
    page,
  }, testInfo) => {
    const errors = collectPageErrors(page);
    await openPage(page);
    const load = () =>
      page.evaluate(async (cache) => {
        const sgt = (window as unknown as { sgt: typeof import('../../src/index') }).sgt;
        const last: Record<string, { loadedBytes: number; totalBytes: number | null; fromCache: boolean }> = {};
        const loaded = await sgt.loadPretrained('/fixtures/tiny-llama3/', {
          onProgress: ({ file, loadedBytes, totalBytes, fromCache }) => {
            last[file] = { loadedBytes, totalBytes, fromCache };
          },
        });
        const layers = loaded.model.config.numLayers;
        loaded.model.dispose();
        return {
          source: loaded.source,
          layers,
          last,
          cached: (await (await caches.open(cache)).keys()).map((r) => new URL(r.url).pathname),
        };
      }, CACHE);

    await page.evaluate((cache) => caches.delete(cache), CACHE);
    requests.length = 0;
    const first = await load();
    expect(first.source).toBe(`${origin}/fixtures/tiny-llama3/`);
    const sizes = (f: string) => statSync(join(fixtures, 'tiny-llama3', f)).size;
    for (const f of ['config.json', 'model.safetensors.index.json', ...SHARDS]) {
      expect(first.last[f], f).toEqual({ loadedBytes: sizes(f), totalBytes: sizes(f), fromCache: false });
    }
    expect(requests.filter((r) => r.startsWith('/fixtures/'))).toEqual(
      ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'model.safetensors.index.json', ...SHARDS].map(
        (f) => `/fixtures/tiny-llama3/${f}`,
      ),
    );
    expect(first.cached.sort()).toEqual(
      ['config.json', 'model.safetensors.index.json', ...SHARDS].map((f) => `/fixtures/tiny-llama3/${f}`).sort(),
    );

    await page.reload();
    await expect(page.locator('body')).toHaveAttribute('data-ready', 'yes', { timeout: 60_000 });
    requests.length = 0;
    const second = await load();
    await screenshot(page, testInfo, 'pretrained-from-cache');
    for (const f of ['config.json', 'model.safetensors.index.json', ...SHARDS]) {
      expect(second.last[f], f).toEqual({ loadedBytes: sizes(f), totalBytes: sizes(f), fromCache: true });
    }
    // Only the files the folder does not have are asked for again.
    expect(requests.filter((r) => r.startsWith('/fixtures/'))).toEqual(
      ['tokenizer.json', 'tokenizer_config.json', 'model.safetensors'].map((f) => `/fixtures/tiny-llama3/${f}`),
    );
    await page.evaluate((cache) => caches.delete(cache), CACHE);
    // Chromium logs each 404 (the optional files the folder lacks, asked for on both loads).
    const notFound = 'console.error: Failed to load resource: the server responded with a status of 404 (Not Found)';
    expect(errors.filter((e) => e !== notFound)).toEqual([]);
    expect(errors.length).toBe(6);
  });
});
