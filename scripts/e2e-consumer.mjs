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
 *   4. type-checks the app against the packed type declarations (this repository's tsc);
 *   5. `vite build`s the app.
 *
 * Prints the app's folder as the last line of stdout (`{"app": "..."}`); serve its dist/ with
 * `node_modules/.bin/vite preview` from there. Usage: node scripts/e2e-consumer.mjs [work-folder]
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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

// 4. The packed declarations must serve the app's imports (sgt-webgpu, sgt-webgpu/worker).
run(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(app, 'tsconfig.json')], app);

// 5. Build it.
run(join(app, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], app);
if (!existsSync(join(app, 'dist/index.html'))) throw new Error(`e2e-consumer: vite build left no ${join(app, 'dist/index.html')}`);

writeFileSync(join(work, 'consumer.json'), JSON.stringify({ app, tarball }, null, 2));
process.stdout.write(`${JSON.stringify({ app, tarball })}\n`);
