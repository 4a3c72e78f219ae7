#!/usr/bin/env node
// The peers in the bench: TF.js (WebGPU backend) and jax-js (jit) timed on the same workloads, on
// the same adapter, in the same run as this project's kernels, with the ratios.
//
//   node bench/peers.mjs run [--adapter lavapipe|swiftshader|default] [--icd FILE] [--size small|real]
//                            [--smoke] [--only ce,cos,...] [--out FILE] [--no-build] [--baseline DIST]
//   node bench/peers.mjs show FILE...      # the ratio table of earlier runs (peers-bench/1 JSON)
//   node bench/peers.mjs compare BEFORE.json AFTER.json   # sgt of two runs, each against its own run's peers
//   node bench/peers.mjs prepare           # only the harness copy and its npm ci (bench/gpu/pack.sh)
//
// `run` uses the shared harness (../shared/peers, see its README) as it is: it copies it into
// .cache/peers (ignored by git), installs its pinned packages there from its lockfile (`npm ci`,
// once; not devDependencies here, so the project's own `npm ci` stays lean), builds this project
// (`npm run build`, unless --no-build) and runs the harness's bench.mjs with the runners
// webgpu-raw (plain WGSL add/copy: the adapter's bandwidth), tfjs, jax-jit and runners/sgt.mjs
// (this project's dist/index.js, through SGT_DIST). Each runner is a child process on the adapter
// named; the harness checks every result against float64 and writes its JSON (--out).
// --baseline DIST adds a column `sgt-baseline`: another build of this project (an older commit's
// dist/index.js, bench/sgt-baseline.mjs), for a before/after table from one run.
// Lavapipe is the system ICD that scripts/setup.sh installs (Mesa 25): /usr/share/vulkan/icd.d/lvp_icd*.json.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SHARED_PEERS = resolve(ROOT, '../shared/peers');
const CACHE = join(ROOT, '.cache/peers');
const RUNNERS = 'webgpu-raw,tfjs,jax-jit,./runners/sgt.mjs';
const PEERS = ['tfjs', 'jax-jit'];

/** The system lavapipe ICD (scripts/setup.sh installs Mesa 25 over Debian's), if there is one. */
export function systemLavapipeIcd() {
  const dir = '/usr/share/vulkan/icd.d';
  if (!existsSync(dir)) return null;
  const f = readdirSync(dir).find((n) => /^lvp_icd.*\.json$/.test(n));
  return f ? join(dir, f) : null;
}

/** Copies the shared harness into .cache/peers when it changed, and installs its packages once. */
function prepareHarness() {
  if (!existsSync(join(SHARED_PEERS, 'bench.mjs')))
    throw new Error(`peers: no harness at ${SHARED_PEERS} (the shared/ folder beside this checkout)`);
  const stamp = (d) => (existsSync(join(d, 'package-lock.json')) ? readFileSync(join(d, 'package-lock.json'), 'utf8') : '');
  const fresh = !existsSync(join(CACHE, 'bench.mjs')) || stamp(CACHE) !== stamp(SHARED_PEERS);
  for (const f of ['bench.mjs', 'package.json', 'package-lock.json', 'lib', 'runners', 'device', 'README.md']) {
    rmSync(join(CACHE, f), { recursive: true, force: true });
    mkdirSync(CACHE, { recursive: true });
    cpSync(join(SHARED_PEERS, f), join(CACHE, f), { recursive: true });
  }
  spawnSync('chmod', ['-R', 'u+w', CACHE]);
  if (fresh || !existsSync(join(CACHE, 'node_modules/webgpu/dist/linux-x64/dawn.node'))) {
    console.error('peers: npm ci in .cache/peers (TF.js, jax-js, webgpu at the harness pins)');
    const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: CACHE, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('peers: npm ci in .cache/peers failed');
  }
}

function parse(argv) {
  const a = { adapter: null, icd: null, size: 'small', smoke: false, only: null, out: null, build: true, baseline: null, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--adapter') a.adapter = v();
    else if (k === '--icd') a.icd = resolve(v());
    else if (k === '--size') a.size = v();
    else if (k === '--smoke') a.smoke = true;
    else if (k === '--only') a.only = v();
    else if (k === '--out') a.out = resolve(v());
    else if (k === '--no-build') a.build = false;
    else if (k === '--baseline') a.baseline = resolve(v());
    else if (k.startsWith('--')) throw new Error(`peers: unknown option ${k}`);
    else a.files.push(k);
  }
  return a;
}

/** Runs the harness with the four columns; returns the results file. */
export function runPeers(options) {
  const adapter = options.adapter ?? 'lavapipe';
  let icd = options.icd;
  if (adapter === 'lavapipe' && !icd) {
    icd = systemLavapipeIcd();
    if (!icd) throw new Error('peers: no /usr/share/vulkan/icd.d/lvp_icd*.json (run scripts/setup.sh for Mesa 25 lavapipe)');
  }
  prepareHarness();
  if (options.build) {
    const b = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    if (b.status !== 0) throw new Error('peers: npm run build failed');
  }
  const out = options.out ?? join(CACHE, 'results', `peers-${adapter}${options.size === 'small' ? '' : `-${options.size}`}.json`);
  const runners = options.baseline
    ? RUNNERS.replace(',./runners/sgt.mjs', `,${join(ROOT, 'bench/sgt-baseline.mjs')},./runners/sgt.mjs`)
    : RUNNERS;
  const args = ['bench.mjs', '--adapter', adapter, '--size', options.size, '--runners', runners, '--out', out];
  if (icd) args.push('--icd', icd);
  if (options.smoke) args.push('--smoke');
  if (options.only) args.push('--only', options.only);
  const env = { ...process.env, SGT_DIST: process.env.SGT_DIST ?? join(ROOT, 'dist/index.js') };
  if (options.baseline) env.SGT_BASELINE_DIST = options.baseline;
  console.error(`peers: node ${args.join(' ')}  (in .cache/peers; SGT_DIST=${env.SGT_DIST})`);
  const r = spawnSync(process.execPath, args, { cwd: CACHE, env, stdio: 'inherit' });
  if (!existsSync(out) || statSync(out).size === 0) throw new Error(`peers: the harness wrote no results (exit ${r.status})`);
  return { out, status: r.status ?? 1 };
}

const fmt = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(2));
const shapeText = (shape) => (shape.length === 1 && shape[0] >= 2 ** 20 ? `${shape[0] / 2 ** 20}M` : shape.join('x'));
const LABEL = { fwd: 'fwd', fwdbwd: 'fwd+bwd' };

/** One peers-bench/1 report as a Markdown table: sgt vs each peer, and every column's rate as % of the plain WGSL copy. */
export function ratioTable(report) {
  const get = (runner, id) => report.runners.find((r) => r.runner === runner)?.results?.find((x) => x.id === id);
  const copy = report.runners.find((r) => r.runner === 'webgpu-raw')?.results?.find((x) => x.kind === 'copy' && x.status === 'ok');
  const copyGBs = copy?.rate?.value;
  const cell = (x) => (x?.status === 'ok' ? `${fmt(x.medianMs)} ms` : x?.status === 'unsupported' ? 'n/a' : (x?.status ?? ''));
  const ratio = (s, p) => (s?.status === 'ok' && p?.status === 'ok' ? `${fmt(p.medianMs / s.medianMs)}x` : '');
  const pct = (x) => (x?.status === 'ok' && x.rate?.unit === 'GB/s' && copyGBs ? `${((100 * x.rate.value) / copyGBs).toFixed(0)}%` : '');
  const a = report.adapter?.info ?? {};
  const lines = [
    `adapter \`${report.adapter?.name}\` (${a.description || a.device || '?'}), --size ${report.config?.size}, ${report.createdAt}` +
      `${report.config?.smoke ? ' (SMOKE: not a measurement)' : ''}; plain WGSL copy ${copyGBs ? `${fmt(copyGBs)} GB/s` : 'not measured'}`,
    '',
    '| workload | sgt | TF.js | jax-js jit | sgt vs TF.js | sgt vs jax-js | sgt % of copy | TF.js % of copy | jax-js % of copy |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const w of report.workloads ?? []) {
    if (w.kind === 'bufcopy') continue;
    const s = get('sgt', w.id);
    const [t, j] = PEERS.map((p) => get(p, w.id));
    if (!s && !t && !j) continue;
    lines.push(
      `| ${w.kind} ${shapeText(w.shape)} ${LABEL[w.mode] ?? w.mode} | ${cell(s)} | ${cell(t)} | ${cell(j)} | ${ratio(s, t)} | ${ratio(s, j)} | ` +
        `${pct(s)} | ${pct(t)} | ${pct(j)} |`,
    );
  }
  lines.push('');
  lines.push(
    'Median ms of one synchronised step (the harness: shared/peers/README.md). sgt vs X = X ms / sgt ms (above 1: sgt is faster). ' +
      '% of copy: the effective GB/s (losses: the bytes an ideal one-pass kernel moves; add/copy: bytes moved) over the plain WGSL copy kernel of the same run.',
  );
  return lines.join('\n');
}

/**
 * Before/after from one run with a `sgt-baseline` column (or from two runs: `before` and `after`
 * reports, each with a `sgt` column): each workload's sgt time before and after, the speed-up,
 * and each side against the peers and the plain copy of its own run.
 */
export function beforeAfterTable(after, before = after) {
  const pick = (report, runner, id) => report.runners.find((r) => r.runner === runner)?.results?.find((x) => x.id === id);
  const copyOf = (report) =>
    report.runners.find((r) => r.runner === 'webgpu-raw')?.results?.find((x) => x.kind === 'copy' && x.status === 'ok')?.rate?.value;
  const beforeRunner = before === after ? 'sgt-baseline' : 'sgt';
  const ok = (x) => x?.status === 'ok';
  const vs = (s, p) => (ok(s) && ok(p) ? `${fmt(p.medianMs / s.medianMs)}x` : '');
  const pct = (x, copy) => (ok(x) && x.rate?.unit === 'GB/s' && copy ? `${((100 * x.rate.value) / copy).toFixed(0)}%` : '');
  const lines = [
    '| workload | sgt before | sgt after | after / before speed | before vs TF.js | after vs TF.js | before vs jax-js | after vs jax-js | before % of copy | after % of copy |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const w of after.workloads ?? []) {
    if (w.kind === 'bufcopy') continue;
    const a = pick(after, 'sgt', w.id);
    const b = pick(before, beforeRunner, w.id);
    if (!a && !b) continue;
    const [ta, ja] = PEERS.map((p) => pick(after, p, w.id));
    const [tb, jb] = PEERS.map((p) => pick(before, p, w.id));
    lines.push(
      `| ${w.kind} ${shapeText(w.shape)} ${LABEL[w.mode] ?? w.mode} | ${ok(b) ? `${fmt(b.medianMs)} ms` : ''} | ${ok(a) ? `${fmt(a.medianMs)} ms` : ''} | ` +
        `${ok(a) && ok(b) ? `${fmt(b.medianMs / a.medianMs)}x` : ''} | ${vs(b, tb)} | ${vs(a, ta)} | ${vs(b, jb)} | ${vs(a, ja)} | ` +
        `${pct(b, copyOf(before))} | ${pct(a, copyOf(after))} |`,
    );
  }
  return lines.join('\n');
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  const a = parse(rest);
  if (cmd === 'show') {
    for (const f of a.files) {
      const report = JSON.parse(readFileSync(f, 'utf8'));
      console.log(`${ratioTable(report)}\n`);
      if (report.runners.some((r) => r.runner === 'sgt-baseline'))
        console.log(`Before (sgt-baseline) and after (sgt), same run:\n\n${beforeAfterTable(report)}\n`);
    }
    return 0;
  }
  if (cmd === 'compare') {
    if (a.files.length !== 2) throw new Error('usage: node bench/peers.mjs compare BEFORE.json AFTER.json');
    const [before, after] = a.files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
    console.log(beforeAfterTable(after, before));
    return 0;
  }
  if (cmd === 'prepare') {
    prepareHarness();
    return 0;
  }
  if (cmd !== 'run') {
    console.error(
      'usage: node bench/peers.mjs run [--adapter lavapipe|swiftshader|default] [--icd FILE] [--size small|real] [--smoke] [--only LIST] [--out FILE] [--no-build]\n       node bench/peers.mjs show FILE...',
    );
    return 2;
  }
  const { out, status } = runPeers(a);
  console.log(
    `\n## Peers: TF.js and jax-js on the same adapter, same run\n\n${ratioTable(JSON.parse(readFileSync(out, 'utf8')))}\n\nresults: ${out}`,
  );
  return status;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(2);
    },
  );
}
