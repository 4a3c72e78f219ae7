#!/usr/bin/env node
/**
 * Prepares the npm-consumer end-to-end test (test/e2e/consumer.spec.ts): the package as a user
 * gets it.
 *
 *   1. `npm run build` and `npm pack` this repository (the tarball goes to a temporary folder);
 *   2. copies the fixture app test/consumer/ next to it, with tiny-llama's config.json and
 *      model.safetensors (from ../shared/fixtures) in its public/ folder;
 *   3. `npm install`s the tarball there (plus the app's own vite and comlink: from the npm cache
 *      when they are in it), outside this repository, so that nothing resolves from its node_modules;
 *   4. type-checks the app against the packed type declarations, skipLibCheck false, with
 *      TypeScript 5 (the app's) and with this repository's TypeScript;
 *   5. `vite build`s the app;
 *   6. builds size.ts (`import { init, losses } from 'sgt-webgpu'`) alone and measures what a
 *      page loads of it, gzipped.
 *
 * Prints the result as the last line of stdout (`{"app", "tarball", "typecheck": [versions],
 * "bundle": {bytes, gzipBytes, chunks, lazy}}`); serve the app's dist/ with
 * `node_modules/.bin/vite preview` from there. Usage: node scripts/e2e-consumer.mjs [work-folder]
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fixture = join(repo, 'test/consumer');
const model = resolve(repo, '../shared/fixtures/tiny-llama');
const work = process.argv[2] ? resolve(process.argv[2]) : mkdtempSync(join(tmpdir(), 'sgt-consumer-'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Runs a command, its output going to stderr (stdout carries only the result line). */
function run(cmd, args, cwd) {
  const started = Date.now();
  process.stderr.write(`e2e-consumer: ${cmd} ${args.join(' ')}  (in ${cwd})\n`);
  try {
    execFileSync(cmd, args, {
      cwd,
      stdio: ['ignore', process.stderr, process.stderr],
      env: { ...process.env, npm_config_update_notifier: 'false' },
    });
  } catch (e) {
    throw new Error(`e2e-consumer: '${cmd} ${args.join(' ')}' failed in ${cwd} (exit ${e.status ?? e.signal})`);
  }
  process.stderr.write(`e2e-consumer:   done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

/**
 * What a page loads of the Vite build in `outDir` before its first call: the chunk of `entry` and
 * its static imports (from the build's manifest), raw and gzipped (level 9), and apart from them
 * the lazy chunks (dynamic imports), each with the module it was built from (`source`).
 */
function bundleSize(outDir, entry) {
  const manifest = JSON.parse(readFileSync(join(outDir, '.vite/manifest.json'), 'utf8'));
  const loaded = new Set();
  const visit = (key) => {
    if (loaded.has(key)) return;
    loaded.add(key);
    for (const k of manifest[key].imports ?? []) visit(k);
  };
  if (!manifest[entry]) throw new Error(`e2e-consumer: ${entry} is not in ${outDir}'s manifest`);
  visit(entry);
  const sizes = (keys) =>
    [...keys].map((key) => {
      const bytes = readFileSync(join(outDir, manifest[key].file));
      return { source: key, file: manifest[key].file, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length };
    });
  const initial = sizes(loaded);
  const lazyKeys = new Set([...loaded].flatMap((key) => manifest[key].dynamicImports ?? []).filter((k) => !loaded.has(k)));
  return {
    bytes: initial.reduce((n, c) => n + c.bytes, 0),
    gzipBytes: initial.reduce((n, c) => n + c.gzipBytes, 0),
    chunks: initial,
    lazy: sizes(lazyKeys),
  };
}

for (const f of ['config.json', 'model.safetensors']) {
  if (!existsSync(join(model, f))) {
    throw new Error(`e2e-consumer: ${join(model, f)} is missing: the shared/ fixtures folder must sit beside the repository`);
  }
}

// 1. The package, as `npm publish` would upload it.
run(npm, ['run', 'build'], repo);
mkdirSync(work, { recursive: true });
const before = new Set(readdirSync(work));
run(npm, ['pack', '--pack-destination', work], repo);
const tarballs = readdirSync(work).filter((f) => f.endsWith('.tgz') && !before.has(f));
if (tarballs.length !== 1) throw new Error(`e2e-consumer: expected one new tarball in ${work}, found ${tarballs.join(', ') || 'none'}`);
const tarball = join(work, tarballs[0]);

// 2. The app, outside the repository.
const app = join(work, 'app');
cpSync(fixture, app, {
  recursive: true,
  filter: (src) => !/[/\\](node_modules|dist|public)([/\\]|$)/.test(src.slice(fixture.length)),
});
mkdirSync(join(app, 'public/tiny-llama'), { recursive: true });
for (const f of ['config.json', 'model.safetensors']) cpSync(join(model, f), join(app, 'public/tiny-llama', f));

// 3. Install the tarball (and the app's dependencies) as a user would.
run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball], app);

// 4. The packed declarations must serve the app's imports (sgt-webgpu, sgt-webgpu/worker) with
//    skipLibCheck false, on TypeScript 5 (the app's: WebGPU types from @webgpu/types) and on this
//    repository's (WebGPU types from its DOM library).
const typecheck = [];
for (const tsc of [join(app, 'node_modules/typescript/bin/tsc'), join(repo, 'node_modules/typescript/bin/tsc')]) {
  const version = JSON.parse(readFileSync(join(dirname(dirname(tsc)), 'package.json'), 'utf8')).version;
  run(process.execPath, [tsc, '-p', join(app, 'tsconfig.json')], app);
  typecheck.push(version);
}
if (!typecheck[0].startsWith('5.')) throw new Error(`e2e-consumer: the app's TypeScript is ${typecheck[0]}, expected 5.x`);

// 5. Build it.
run(join(app, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], app);
if (!existsSync(join(app, 'dist/index.html'))) throw new Error(`e2e-consumer: vite build left no ${join(app, 'dist/index.html')}`);

// 6. The bundle of `import { init, losses } from 'sgt-webgpu'` (size.ts), as a page loads it.
run(join(app, 'node_modules/.bin/vite'), ['build', '--config', 'vite.size.config.js'], app);
const bundle = bundleSize(join(app, 'dist-size'), 'size.ts');

const result = { app, tarball, typecheck, bundle };
writeFileSync(join(work, 'consumer.json'), JSON.stringify(result, null, 2));
process.stdout.write(`${JSON.stringify(result)}\n`);
