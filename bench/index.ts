/**
 * `npm run bench [-- --quick] [-- --only <sections>] [-- --size <f>] [-- --runs <n>]`
 *
 * Sections (all by default, printed as one Markdown table each):
 *
 * - `core`: the kernels below against plain-JS baselines;
 * - `losses`: every `bench/loss-*.ts` (fused kernels vs the same loss composed from generic ops
 *   vs the float64 twin, forward + backward);
 * - `optim`: `bench/optim.ts` (fused AdamW step and global-norm clipping vs float64 twins);
 * - `models`: `bench/models.ts` (causal-LM forward and forward + backward per token, with the
 *   peak GPU bytes, vs the float64 twin).
 * - `step`: `bench/step-throughput.ts` (one `Trainer.step` in tokens/s for each of the four factories, on
 *   models/default and on a fixed synthetic config, B 4 x T 64).
 * - `peers`: `bench/peers.mjs` (TF.js and jax-js on the same workloads and adapter, in the same run,
 *   through the shared peers harness in .cache/peers; the ratios, and each rate as % of the plain WGSL copy).
 *
 * `core`: times a few kernels on the WebGPU adapter this process gets and, in the same run, a plain-JS
 * (Float32Array) baseline for each, then prints a Markdown table. GPU times are the median over
 * runs of (batch time / R), a batch being R recorded ops closed by one `await ctx.sync()`, so the
 * submit and readiness round trip are amortised; the time includes recording the commands on the
 * CPU (bind groups, uniforms), as it does in real use. Every row also checks the GPU result
 * against the JS one once. On a software adapter absolute numbers say nothing about a GPU: read
 * the ratios (see shared/design/WEBGPU-HERE.md).
 *
 * --quick          core: 3 runs, short batches, size 0.25 unless --size is given; models: shorter
 *                  sequences, one timed pass; losses and optim are skipped unless --only names them
 *                  (their modules have fixed sizes and repeats: about 40 s on lavapipe)
 * --only a,b       runs only these sections (core, losses, optim, models); repeatable
 * --size f         core: scales every case's data size by f (vectors: 4M f32 at f = 1; matmul edges by sqrt(f))
 * --runs n         core: timed batches per case (default 5)
 * --peers          adds the peers section (with --quick or --only)
 * --peers-adapter a  peers: lavapipe | swiftshader | default (default: the adapter this process got)
 */
import { spawnSync } from 'node:child_process';
import { seededRandom } from '../src/text/data';
import { clone, init, logSoftmax, matmul, readAll, softmax, sum, tensor, type GpuContext, type Tensor } from '../src/index';
import { copyLoop, matmulIKJ, softmaxRows, sumAll, sumRows } from './js-baselines';
import { gpuMlp, jsMlp, makeMlpProblem } from './mlp';
import { timePair, type Timing, type TimingOptions } from './timing';
import { lossBenchmarks, type LossBenchRow } from './losses';
import { bandwidthRows } from './loss-bandwidth';
import { benchmarks as optimBenchmarks } from './optim';
import { benchmarks as modelBenchmarks, type ModelBenchRow } from './models';
import { realModelBenchmarks } from './models-real';
import { defaultStepPlans, formatStepRows, stepBenchmarks } from './step-throughput';

const SECTIONS = ['core', 'losses', 'optim', 'models', 'step', 'peers'] as const;
type Section = (typeof SECTIONS)[number];
/** What `--quick` runs when `--only` is not given. */
const QUICK_SECTIONS: readonly Section[] = ['core', 'models'];

interface Args {
  quick: boolean;
  size: number;
  runs: number;
  sections: Set<Section>;
  peersAdapter?: string;
}

const USAGE =
  'usage: npm run bench [-- --quick] [-- --only core,losses,optim,models,step,peers] [-- --peers] [-- --peers-adapter lavapipe|swiftshader|default] [-- --size <factor>] [-- --runs <n>]';

function parseArgs(argv: string[]): Args {
  let quick = false;
  let size: number | undefined;
  let runs: number | undefined;
  let only: Set<Section> | undefined;
  let peers = false;
  let peersAdapter: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--peers') peers = true;
    else if (a === '--peers-adapter') {
      peersAdapter = argv[++i];
      if (!['lavapipe', 'swiftshader', 'default'].includes(peersAdapter ?? ''))
        throw new Error('--peers-adapter needs lavapipe, swiftshader or default');
      peers = true;
    } else if (a === '--only' || a.startsWith('--only=')) {
      const value = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!value) throw new Error(`--only needs a section: ${SECTIONS.join(', ')}`);
      only ??= new Set();
      for (const name of value
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean)) {
        if (!(SECTIONS as readonly string[]).includes(name))
          throw new Error(`--only: unknown section '${name}' (sections: ${SECTIONS.join(', ')})`);
        only.add(name as Section);
      }
    } else if (a === '--size' || a === '--runs') {
      const v = Number(argv[++i]);
      if (!(v > 0)) throw new Error(`${a} needs a positive number`);
      if (a === '--size') size = v;
      else runs = Math.round(v);
    } else if (a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown option ${a} (try --help)`);
  }
  const sections = only ?? new Set<Section>(quick ? QUICK_SECTIONS : SECTIONS);
  if (peers) sections.add('peers');
  return { quick, size: size ?? (quick ? 0.25 : 1), runs: runs ?? (quick ? 3 : 5), sections, peersAdapter };
}

const rand = seededRandom(42);
function randomArray(n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rand();
  return a;
}

/** One line of the table. */
interface Row {
  name: string;
  size: string;
  unit: string;
  /** Work per op in the unit's numerator (FLOP, bytes or steps), divided by 1e9 for G-units. */
  work: number;
  gpu: Timing;
  jsLabel: string;
  js: Timing;
  /** Max |gpu - js| / max |js| over the result, or a note. */
  check: string;
}

/** Relative max error of `got` against `want` (scaled by the largest |want|). */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / (scale || 1);
}

function checkText(e: number, tol: number): string {
  const s = e.toExponential(1);
  return e <= tol ? `ok (${s})` : `**MISMATCH** (${s})`;
}

async function gpuResult(make: () => Tensor): Promise<Float32Array> {
  const t = make();
  const [a] = await readAll([t]);
  t.dispose();
  return a as Float32Array;
}

function roundTo(x: number, m: number): number {
  return Math.max(m, Math.round(x / m) * m);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const ctx: GpuContext = await init();
  const info = ctx.adapter.info;
  const adapterFeatures = [...ctx.adapter.features].sort();
  console.log(`# sgt-webgpu bench\n`);
  console.log(
    `- adapter: vendor \`${info.vendor || '?'}\`, architecture \`${info.architecture || '?'}\`, ` +
      `device \`${info.device || '?'}\`, description \`${info.description || '?'}\``,
  );
  console.log(`- features enabled on the device: ${[...ctx.features].sort().join(', ') || '(none)'}`);
  console.log(`- adapter features: ${adapterFeatures.join(', ') || '(none)'}`);
  console.log(
    `- limits: maxStorageBufferBindingSize ${(ctx.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, ` +
      `maxComputeInvocationsPerWorkgroup ${ctx.limits.maxComputeInvocationsPerWorkgroup}, grid-stride cap ${ctx.maxGridWorkgroups} workgroups`,
  );
  console.log(
    `- node ${process.version}, ${new Date().toISOString().slice(0, 10)}, sections: ${SECTIONS.filter((x) => args.sections.has(x)).join(', ')}` +
      `${args.quick ? ' (quick)' : ''}; core: size ${args.size}, ${args.runs} timed batches per case`,
  );
  if (args.quick && !args.sections.has('losses') && !args.sections.has('optim')) {
    console.log('- --quick skips the losses and optim sections (fixed sizes, about 40 s here): `--quick --only losses,optim` runs them');
  }

  const progress = (what: string) => process.stderr.write(`  done: ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  if (args.sections.has('core')) await runCore(ctx, args, t0);
  if (args.sections.has('losses')) await runLosses(progress);
  if (args.sections.has('optim')) await runOptim(progress);
  if (args.sections.has('models')) await runModels(args.quick, progress);
  if (args.sections.has('step')) await runStep(args.quick, progress);
  if (args.sections.has('peers')) runPeersSection(ctx, args.peersAdapter);
  console.log('');
  console.log(`Total bench time: ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
}

const fmtMs = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const fmtRate = (work: number, ms: number, unit: string): string => {
  const v = work / 1e9 / (ms / 1000);
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit}`;
};

/** `a / b` as a speed-up factor. */
const fmtRatio = (a: number, b: number): string => {
  const r = a / b;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
};

/** The kernels of `src/ops` against plain-JS baselines, with a correctness check per row. */
async function runCore(ctx: GpuContext, args: Args, t0: number): Promise<void> {
  const timing: TimingOptions = { runs: args.runs, batchMs: args.quick ? 60 : 250, maxRepeat: 200 };
  const maxElems = Math.floor(Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize) / 4);
  const rows: Row[] = [];

  /** Times one case (GPU and JS interleaved), checks the GPU result once, adds the row. */
  const measure = async (spec: {
    name: string;
    size: string;
    unit: string;
    work: number;
    record: () => void;
    jsLabel: string;
    js: () => void;
    check: () => Promise<number>;
    tol: number;
    jsRuns?: number;
  }): Promise<void> => {
    const { gpu, js } = await timePair(ctx, spec.record, spec.js, timing, spec.jsRuns);
    const check = checkText(await spec.check(), spec.tol);
    rows.push({ name: spec.name, size: spec.size, unit: spec.unit, work: spec.work, gpu, jsLabel: spec.jsLabel, js, check });
    process.stderr.write(`  done: ${spec.name}, ${spec.size}, vs ${spec.jsLabel} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  };

  // Matmuls: square, edge 256 and 512 at size 1 (the data, 3 n^2 floats, scales with --size).
  for (const base of [256, 512]) {
    const n = roundTo(base * Math.sqrt(args.size), 32);
    const a = randomArray(n * n);
    const b = randomArray(n * n);
    const c = new Float32Array(n * n);
    const ta = tensor(a, [n, n]);
    const tb = tensor(b, [n, n]);
    await measure({
      name: 'matmul',
      size: `${n}x${n}x${n}`,
      unit: 'GFLOP/s',
      work: 2 * n ** 3,
      record: () => matmul(ta, tb).dispose(),
      jsLabel: 'naive i-k-j loop',
      js: () => matmulIKJ(a, b, c, n, n, n),
      jsRuns: Math.min(timing.runs, 3),
      check: async () => {
        const got = await gpuResult(() => matmul(ta, tb));
        matmulIKJ(a, b, c, n, n, n);
        return relErr(got, c);
      },
      tol: 1e-4,
    });
    ta.dispose();
    tb.dispose();
  }

  // Vectors: 4M f32 at size 1.
  const n = Math.min(maxElems, roundTo(4 * 2 ** 20 * args.size, 1024));
  const x = randomArray(n, 0, 1);
  const tx = tensor(x, [n]);
  const sizeLabel = n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(n % 2 ** 20 ? 2 : 0)}M f32` : `${n / 1024}K f32`;
  const sink = new Float64Array(1); // keeps the JS sum observable
  await measure({
    name: 'sum (all elements)',
    size: sizeLabel,
    unit: 'GB/s',
    work: 4 * n,
    record: () => sum(tx).dispose(),
    jsLabel: 'for loop',
    js: () => {
      sink[0] += sumAll(x);
    },
    check: async () => relErr(await gpuResult(() => sum(tx)), [sumAll(x)]),
    tol: 1e-4,
  });

  // Row-wise: the same data viewed as [rows, 1024].
  const cols = 1024;
  const rowCount = n / cols;
  const t2 = tensor(x, [rowCount, cols]);
  const rowSums = new Float32Array(rowCount);
  await measure({
    name: 'sum over rows (last axis)',
    size: `${rowCount}x${cols}`,
    unit: 'GB/s',
    work: 4 * (n + rowCount),
    record: () => sum(t2, -1).dispose(),
    jsLabel: 'loop per row',
    js: () => sumRows(x, rowSums, rowCount, cols),
    check: async () => {
      sumRows(x, rowSums, rowCount, cols);
      return relErr(await gpuResult(() => sum(t2, -1)), rowSums);
    },
    tol: 1e-5,
  });
  const sm = new Float32Array(n);
  await measure({
    name: 'softmax over rows',
    size: `${rowCount}x${cols}`,
    unit: 'GB/s',
    work: 8 * n,
    record: () => softmax(t2).dispose(),
    jsLabel: '3 loops per row, Math.exp',
    js: () => softmaxRows(x, sm, rowCount, cols),
    check: async () => {
      softmaxRows(x, sm, rowCount, cols);
      return relErr(await gpuResult(() => softmax(t2)), sm);
    },
    tol: 1e-4,
  });
  const logSm = () => {
    softmaxRows(x, sm, rowCount, cols);
    for (let i = 0; i < n; i++) sm[i] = Math.log(sm[i]);
  };
  await measure({
    name: 'logSoftmax over rows',
    size: `${rowCount}x${cols}`,
    unit: 'GB/s',
    work: 8 * n,
    record: () => logSoftmax(t2).dispose(),
    jsLabel: 'softmax loops + Math.log',
    js: logSm,
    check: async () => {
      logSm();
      return relErr(await gpuResult(() => logSoftmax(t2)), sm);
    },
    tol: 1e-4,
  });
  t2.dispose();

  // Copy: `clone` (the elementwise kernel with the identity map) against set() and a loop.
  const dst = new Float32Array(n);
  for (const [jsLabel, js] of [
    ['Float32Array.prototype.set', () => dst.set(x)],
    ['copy loop', () => copyLoop(x, dst)],
  ] as const) {
    await measure({
      name: 'copy (clone)',
      size: sizeLabel,
      unit: 'GB/s',
      work: 8 * n,
      record: () => clone(tx).dispose(),
      jsLabel,
      js,
      check: async () => relErr(await gpuResult(() => clone(tx)), x),
      tol: 0,
    });
  }
  tx.dispose();

  // Autograd: forward + backward of the 2-layer MLP step of demo/train-mlp.ts (no update).
  {
    const points = roundTo(512 * args.size, 64);
    const hidden = 64;
    const problem = makeMlpProblem(points, hidden, rand);
    const g = gpuMlp(problem);
    const j = jsMlp(problem);
    await measure({
      name: 'MLP step, forward+backward (autograd)',
      size: `${points} pts, 2-${hidden}-${hidden}-2`,
      unit: 'steps/s',
      work: 1e9, // so that the rate column reads steps/s
      record: g.step,
      jsLabel: 'hand-written backward, naive loops',
      js: () => void j.step(),
      check: async () => {
        const grads = g.grads();
        const got = await readAll(grads);
        const want = j.step();
        return Math.max(...want.map((w, i) => relErr(got[i], w)));
      },
      tol: 1e-3,
    });
    g.dispose(); // also frees the leaves' .grad left by the check
  }

  console.log('\n## Core kernels vs plain JS\n');
  console.log('| case | size | GPU ms/op | GPU rate | R x runs | JS baseline | JS ms/op | JS rate | GPU/JS time | check (max rel err) |');
  console.log('| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |');
  for (const r of rows) {
    const ratio = r.gpu.ms / r.js.ms;
    console.log(
      `| ${r.name} | ${r.size} | ${fmtMs(r.gpu.ms)} | ${fmtRate(r.work, r.gpu.ms, r.unit)} | ${r.gpu.repeat} x ${r.gpu.runs} | ${r.jsLabel} | ` +
        `${fmtMs(r.js.ms)} | ${fmtRate(r.work, r.js.ms, r.unit)} | ${ratio.toFixed(2)} | ${r.check} |`,
    );
  }
  console.log('');
  console.log('GPU/JS time < 1: the GPU kernel is faster. GPU times include recording the commands on the CPU.');
}

/** Every loss family: fused vs composed from generic ops vs the float64 twin, forward + backward. */
async function runLosses(progress: (what: string) => void): Promise<void> {
  const rows = await lossBenchmarks((family) => progress(family));
  console.log('\n## Losses: fused kernels vs composed ops vs float64 twin (forward + backward)\n');
  console.log('| loss | fused ms | composed ms | float64 ms | fused speed-up vs composed | vs float64 |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  const errors: string[] = [];
  for (const r of rows) {
    if ('error' in r) {
      console.log(`| ${r.family}: **FAILED** (see below) | | | | | |`);
      errors.push(`- ${r.family}: ${r.error}`);
      continue;
    }
    console.log(
      `| ${r.name} | ${fmtMs(r.fusedMs)} | ${fmtMs(r.composedMs)} | ${fmtMs(r.float64Ms)} | ` +
        `${fmtRatio(r.composedMs, r.fusedMs)} | ${fmtRatio(r.float64Ms, r.fusedMs)} |`,
    );
  }
  console.log('');
  console.log('Median ms of one forward + backward. Speed-up > 1: the fused GPU kernels are faster.');
  const peaks = rows.filter((r): r is LossBenchRow & Required<Pick<LossBenchRow, 'peakBytes'>> => !('error' in r) && !!r.peakBytes);
  if (peaks.length) {
    const mib = (b: number) => (b / 2 ** 20).toFixed(2);
    console.log('\n| loss | fused peak MiB | composed peak MiB | composed / fused |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const r of peaks) {
      console.log(
        `| ${r.name} | ${mib(r.peakBytes.fused)} | ${mib(r.peakBytes.composed)} | ${fmtRatio(r.peakBytes.composed, r.peakBytes.fused)} |`,
      );
    }
    console.log('');
    console.log(
      'Peak: most bytes the buffer pool handed out during one forward + backward (resetPeak before, peakLiveBytes after), ' +
        'minus what was live before it (inputs and weights). For the LM head rows "composed" is matmul to [N, V] logits + ' +
        'distillationCrossEntropy, "fused" never makes an [N, V] tensor.',
    );
  }
  if (errors.length) console.log(`\nFailed families:\n${errors.join('\n')}`);
  await printLossBandwidth(progress);
}

/** The CE and cosine kernels at the peers harness's shapes as a share of the plain copy's GB/s. */
async function printLossBandwidth(progress: (what: string) => void): Promise<void> {
  const rows = await bandwidthRows();
  progress('loss-bandwidth');
  console.log('\n## Losses against the plain copy (effective GB/s: inputs read once, the gradient written once)\n');
  const pct = (x?: number) => (x === undefined ? '' : `${(100 * x).toFixed(0)}%`);
  console.log('| case | ms per step | effective GB/s | % of copy | ms per step, batched | % of copy, batched |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const batched = r.batchedMs === undefined ? '' : fmtMs(r.batchedMs);
    console.log(`| ${r.name} | ${fmtMs(r.ms)} | ${r.gbPerS.toFixed(2)} | ${pct(r.ofCopy)} | ${batched} | ${pct(r.batchedOfCopy)} |`);
  }
  console.log('');
  console.log(
    'One step per sync as the peers harness times it (the loss read back; fwd+bwd also awaits the queue), each case ' +
      "interleaved with the copy (the peers harness's vec4 grid-stride kernel, 16M floats) so that load changes hit both. " +
      "Batched: as many steps as move the copy's bytes recorded before one sync (the kernels' pace without the round trips).",
  );
}

/** The fused AdamW step and gradient clipping against their float64 twins. */
async function runOptim(progress: (what: string) => void): Promise<void> {
  const rows = await optimBenchmarks();
  progress('optim');
  console.log('\n## Optimizer: fused GPU kernels vs float64 twin\n');
  console.log('| op | GPU ms | float64 ms | GPU speed-up vs float64 | GPU GB/s (minimum bytes moved) |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(`| ${r.name} | ${fmtMs(r.gpuMs)} | ${fmtMs(r.float64Ms)} | ${fmtRatio(r.float64Ms, r.gpuMs)} | ${r.gbPerS.toFixed(2)} |`);
  }
}

/** Causal LMs per token, forward and forward + backward, with the peak GPU bytes, vs the float64 twin. */
async function runModels(quick: boolean, progress: (what: string) => void): Promise<void> {
  const rows: ModelBenchRow[] = await modelBenchmarks({ quick, onProgress: (m) => progress(`model ${m}`) });
  const mib = (b: number) => (b / 2 ** 20).toFixed(b >= 10 * 2 ** 20 ? 1 : 2);
  const runs = (n: number) => `${n} run${n === 1 ? '' : 's'}`;
  const params = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(1)}K`);
  console.log('\n## Causal LMs: time per token, GPU vs float64 twin\n');
  console.log(
    "| model | params | pass | GPU ms/token (B x T) | GPU ms/token at the twin's T | float64 ms/token (B x T) | GPU speed-up vs float64 (same T) | " +
      'peak GPU MiB (weights included) | of which the pass | check vs twin (max rel err) |',
  );
  console.log('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of rows) {
    const check = r.relErr <= 1e-4 ? `ok (${r.relErr.toExponential(1)})` : `**MISMATCH** (${r.relErr.toExponential(1)})`;
    console.log(
      `| ${r.model} | ${params(r.params)} | ${r.pass} | ${fmtMs(r.gpuMsPerToken)} (1 x ${r.gpuT}, ${runs(r.gpuRuns)}) | ` +
        `${r.gpuShortRuns ? `${fmtMs(r.gpuMsPerTokenAtFloat64T)} (1 x ${r.float64T}, ${runs(r.gpuShortRuns)})` : 'same'} | ${fmtMs(r.float64MsPerToken)} (1 x ${r.float64T}, ${runs(r.float64Runs)}) | ` +
        `${fmtRatio(r.float64MsPerToken, r.gpuMsPerTokenAtFloat64T)} | ${mib(r.peakBytes)} | ${mib(r.passPeakBytes)} | ${check} |`,
    );
  }
  console.log('');
  console.log(
    'forward: inference under noGrad, from token ids. forward+backward: embeddings -> logits -> sum(logits * R) -> ' +
      'gradient of the input embeddings, weights frozen. Per token = pass time / (B*T). Peak: most bytes the buffer pool handed ' +
      'out during one pass (resetPeak before, peakLiveBytes after); "of which the pass" excludes what was live before it.',
  );
  await runRealModels(quick, progress);
}

/** One Trainer.step per factory, in tokens/s, on models/default and the fixed synthetic config. */
async function runStep(quick: boolean, progress: (what: string) => void): Promise<void> {
  const rows = await stepBenchmarks(defaultStepPlans(quick), (r) => progress(`step ${r.factory} on ${r.model}`));
  console.log('\n## Training step throughput (one Trainer.step per factory, default options)\n');
  console.log(formatStepRows(rows));
  console.log('');
  console.log(
    'A step: teacher forward, cloak, student forward, the loss, backward, clipping, AdamW on the cloak, one readback; random ids, ' +
      'every position real and in the loss. Median of the timed steps after one untimed step; tokens/s = B * T / step time. ' +
      'The synthetic config (the default model of 2026-11-28, seeded weights) stays the same when models/default changes.',
  );
}

/**
 * TF.js and jax-js on the same workloads, on the adapter this process got (or `adapter`), in a child
 * (bench/peers.mjs: the shared harness in .cache/peers, this project built to dist/ for its column).
 */
function runPeersSection(ctx: GpuContext, adapter: string | undefined): void {
  const desc = `${ctx.adapter.info.vendor} ${ctx.adapter.info.architecture} ${ctx.adapter.info.description}`.toLowerCase();
  const which = adapter ?? (desc.includes('swiftshader') ? 'swiftshader' : desc.includes('llvmpipe') ? 'lavapipe' : 'default');
  const icd = which === 'default' ? (process.env.VK_ICD_FILENAMES ?? '') : '';
  const args = ['bench/peers.mjs', 'run', '--adapter', which, ...(icd ? ['--icd', icd] : [])];
  const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0)
    console.log(`\n**The peers section failed** (node ${args.join(' ')} exited with ${r.status}); see the messages above.`);
}

/** Training steps on the real configs of SmolLM2-135M, Qwen2.5-0.5B and Llama-3.2-1B (generated BF16 weights), and the fused vs unfused head. */
async function runRealModels(quick: boolean, progress: (what: string) => void): Promise<void> {
  const { steps, heads } = await realModelBenchmarks({ quick, onProgress: (m) => progress(`real config ${m}`) });
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  console.log('\n## Training steps on real model configs (generated BF16 weights, reduced to the first blocks)\n');
  console.log(
    '| model (V, d) | reduced to | step ms (median) | peak GPU MiB | estimate MiB (est / peak) | weights MiB (= file) | peak / weights | embedding blocks |',
  );
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of steps) {
    console.log(
      `| ${r.model} (${r.vocab}, ${r.hidden}) | ${r.blocks} of ${r.totalBlocks} blocks, B ${r.B} x T ${r.T} | ${r.stepMs.toFixed(0)} (${r.steps}) | ` +
        `${mib(r.peakBytes)} | ${mib(r.estimateBytes)} (${(r.estimateBytes / r.peakBytes).toFixed(3)}) | ${mib(r.weightBytes)} | ` +
        `${(r.peakBytes / r.weightBytes).toFixed(2)} | ${r.embeddingBlocks} |`,
    );
  }
  console.log('');
  console.log(
    'One Trainer.step: crossEntropyDistillation with the fused LM head, the default cloak, AdamW. Peak: the buffer pool from the ' +
      "model's load through every step (weights included). Estimate: estimateMemory from the config and the sizes alone.",
  );
  console.log(
    '\n| fused vs unfused cross-entropy | B x T | fused peak MiB | unfused peak MiB | unfused / fused | fused ms | unfused ms | cloak gradients (max rel diff) | loss (rel diff) |',
  );
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const h of heads) {
    const ok = (e: number) => `${e <= 1e-4 ? 'ok' : '**MISMATCH**'} (${e.toExponential(1)})`;
    console.log(
      `| ${h.model}, V ${h.vocab} | ${h.B} x ${h.T} | ${mib(h.fusedPeakBytes)} | ${mib(h.unfusedPeakBytes)} | ` +
        `${fmtRatio(h.unfusedPeakBytes, h.fusedPeakBytes)} | ${fmtMs(h.fusedMs)} | ${fmtMs(h.unfusedMs)} | ${ok(h.gradRelErr)} | ${ok(h.lossRelErr)} |`,
    );
  }
  console.log('');
  console.log(
    'One forward + backward of the noisy model (teacher, cloak, student, loss; no optimizer). Peak: most bytes the pool handed out ' +
      "during it minus what was live before (the weights). Unfused: the teacher's and the student's [B*T, V] logits and their gradient.",
  );
}

await main();
