/**
 * The npm module as a user gets it: scripts/e2e-consumer.mjs builds and packs this repository,
 * installs the tarball into a temporary copy of the fixture app test/consumer/ (outside the
 * repository, so nothing resolves from its node_modules), type-checks the app against the packed
 * declarations and `vite build`s it. Here the built app is served with `vite preview` and opened
 * in Chromium: its page parses tiny-llama's weights with `sgt-webgpu`, and its worker (`import
 * 'sgt-webgpu/worker'`) loads the model and takes one training step, whose loss must be finite.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, test } from '@playwright/test';
import { collectPageErrors, CONSUMER_PORT, forbidExternalRequests, screenshot } from './helpers';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const origin = `http://127.0.0.1:${CONSUMER_PORT}`;

let server: ChildProcess | null = null;
let work: string | null = null;
let serverLog = '';

/** One chunk of the size probe's bundle (scripts/e2e-consumer.mjs). */
interface Chunk {
  /** The module it was built from (the manifest's key). */
  source: string;
  file: string;
  bytes: number;
  gzipBytes: number;
}

/** What scripts/e2e-consumer.mjs reports. */
interface Prepared {
  app: string;
  tarball: string;
  /** TypeScript versions the app type-checked with (skipLibCheck false). */
  typecheck: string[];
  /** What a page loads of `import { init, losses } from 'sgt-webgpu'`, and its lazy chunks. */
  bundle: { bytes: number; gzipBytes: number; chunks: Chunk[]; lazy: Chunk[] };
}

let prepared: Prepared | null = null;

/** The size target of `import { init, losses }`, gzipped (README: Bundle size). */
const BUNDLE_LIMIT_GZIP = 40_000;

/** Resolves once `url` answers 200, or fails after `ms` (or when the server exits). */
async function waitForServer(url: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (server?.exitCode !== null) throw new Error(`vite preview exited (${server?.exitCode}) before serving ${url}:\n${serverLog}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`vite preview did not serve ${url} within ${ms} ms:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.describe('sgt-webgpu from its npm tarball in a Vite app', () => {
  test.describe.configure({ mode: 'serial' });

  test.beforeAll(async () => {
    test.setTimeout(300_000);
    const { stdout } = await promisify(execFile)(process.execPath, [join(repo, 'scripts/e2e-consumer.mjs')], {
      cwd: repo,
      maxBuffer: 16 * 1024 * 1024,
    }).catch((e: Error & { stderr?: string }) => {
      throw new Error(`scripts/e2e-consumer.mjs failed: ${e.message}\n${e.stderr ?? ''}`);
    });
    prepared = JSON.parse(stdout.trim().split('\n').pop()!) as Prepared;
    const { app } = prepared;
    work = dirname(app);
    server = spawn(
      join(app, 'node_modules/.bin/vite'),
      ['preview', '--host', '127.0.0.1', '--port', String(CONSUMER_PORT), '--strictPort'],
      {
        cwd: app,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    server.stdout!.on('data', (d: Buffer) => (serverLog += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (serverLog += d.toString()));
    await waitForServer(`${origin}/`, 30_000);
  });

  test.afterAll(() => {
    server?.kill();
    server = null;
    if (work && !process.env.SGT_KEEP_CONSUMER) rmSync(work, { recursive: true, force: true });
  });

  test('the packed declarations type-check on TypeScript 5 and the current one, skipLibCheck false', () => {
    // e2e-consumer.mjs fails (and so beforeAll) on any type error; here: which compilers ran.
    const versions = prepared!.typecheck;
    expect(versions).toHaveLength(2);
    expect(versions[0]).toMatch(/^5\./);
    expect(Number(versions[1].split('.')[0])).toBeGreaterThanOrEqual(6);
  });

  test(`import { init, losses } bundles to at most ${BUNDLE_LIMIT_GZIP / 1000} kB gzip, the WGSL parser in a lazy chunk`, () => {
    const { bundle } = prepared!;
    const kB = (n: number) => `${(n / 1000).toFixed(1)} kB`;
    const line = `import { init, losses } from 'sgt-webgpu': ${kB(bundle.bytes)} minified, ${kB(bundle.gzipBytes)} gzip; lazy: ${bundle.lazy.map((c) => `${c.file} ${kB(c.gzipBytes)} gzip`).join(', ') || 'none'}`;
    console.log(line);
    test.info().annotations.push({ type: 'bundle', description: line });
    // The probe bundled what it imports: the loss kernels (their entry points name their layouts)
    // and the device setup.
    const code = bundle.chunks.map((c) => readFileSync(join(prepared!.app, 'dist-size', c.file), 'utf8')).join('\n');
    for (const kernel of ['lmHeadForward', 'maskedRowMean', 'requestAdapter']) expect(code, kernel).toContain(kernel);
    expect(bundle.gzipBytes).toBeLessThanOrEqual(BUNDLE_LIMIT_GZIP);
    // The WGSL parser (wgsl_reflect, about as large again) is imported only for WGSL supplied at
    // run time: a lazy chunk, never part of what the page loads up front.
    expect(bundle.lazy.map((c) => c.source)).toEqual([expect.stringMatching(/sgt-webgpu\/dist\/gpu\/wgslReflect\.js$/)]);
    expect(bundle.chunks.map((c) => c.source)).toEqual(['size.ts']);
  });

  test('the worker entry trains one step on tiny-llama and the page shows a finite loss', async ({ page }, testInfo) => {
    const errors = collectPageErrors(page);
    const external = forbidExternalRequests(page, origin);
    await page.goto(`${origin}/`);

    const status = page.getByTestId('status');
    await expect(status).toHaveAttribute('data-status', /^(done|error)$/, { timeout: 120_000 });
    await screenshot(page, testInfo, 'consumer-after-one-step');
    const error = (await page.getByTestId('error').textContent()) ?? '';
    expect(await status.getAttribute('data-status'), `the app failed: ${error}`).toBe('done');

    // The trainer ran in the Web Worker that the package's worker entry set up.
    await expect(page.getByTestId('scope')).toHaveText('worker');
    // The main entry parsed the weights on the page: tiny-llama has 2 blocks of 9 tensors, the embedding, the final norm and lm_head.
    await expect(page.getByTestId('tensors')).toHaveText('21');
    await expect(page.getByTestId('model')).toHaveText('llama, 2 layers, width 32, vocabulary 96');
    await expect(page.getByTestId('step')).toHaveText('1');
    const loss = Number(await page.getByTestId('loss').textContent());
    expect(Number.isFinite(loss), `loss ${loss}`).toBe(true);
    // Cross entropy plus two non-negative penalties.
    expect(loss).toBeGreaterThan(0);

    expect(errors).toEqual([]);
    expect(external).toEqual([]);
  });
});
