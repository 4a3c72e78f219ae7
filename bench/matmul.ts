/**
 * Matmul benchmark: GFLOP/s of `matmul` (shaders/matmul.wgsl) against the kernel it replaced
 * (bench/matmul-baseline.wgsl: 16x16 threads on a 64x64 workgroup tile in workgroup memory, with
 * barriers), both dispatched in the same run on the same adapter, on
 *
 * - 512^3 (the peers' row),
 * - the default model's shapes at B*T = 256 tokens (d 128, MLP 352, V 4096; torch Linear weights,
 *   so `x Wᵀ`), the [B*T x d] x [d x 4d] product, and their backward products (dx = dy W,
 *   dW = dyᵀ x),
 * - its LM head with a bf16 weight, and
 * - skinny products (M = 1, 8, 64 rows: inference and B = 1 training).
 *
 * The two kernels alternate (one batch of R dispatches each, closed by one sync, per round), and
 * each column is the median over rounds, so a change in machine load hits both alike: read the
 * ratio. Every row checks the new result against the baseline's once.
 *
 * `node scripts/run.mjs bench/matmul.ts [--rounds n] [--quick] [--match text]` (`--quick`: the
 * shapes of at most 2^24 multiply-adds; `--match`: the shapes whose name has the text); with
 * `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json` it runs on SwiftShader.
 */
import { loadavg } from 'node:os';
import baseline from './matmul-baseline.wgsl?raw';
import { init, matmul, readAll, tensor, Tensor, type GpuContext } from '../src/index';
import { seededRandom } from '../src/text/data';
import { median } from './timing';

/** One benchmarked product: `a [M, K]` (or `[K, M]` with tA) times `b [K, N]` (or `[N, K]` with tB). */
interface MatmulShape {
  name: string;
  M: number;
  K: number;
  N: number;
  tA?: boolean;
  tB?: boolean;
  dtype?: 'f32' | 'bf16';
}

/** One result row. */
export interface MatmulBenchRow {
  name: string;
  shape: string;
  /** GFLOP/s of the replaced kernel and of `matmul`, medians over the same rounds. */
  baseline: number;
  current: number;
  /** Max |current - baseline| / max |baseline|. */
  diff: number;
}

const SHAPES: MatmulShape[] = [
  { name: 'square', M: 512, K: 512, N: 512 },
  { name: 'model MLP up [B*T x d] x [d x 4d]', M: 256, K: 128, N: 512 },
  { name: 'model gate/up x Wᵀ', M: 256, K: 128, N: 352, tB: true },
  { name: 'model down x Wᵀ', M: 256, K: 352, N: 128, tB: true },
  { name: 'model q/k/v/o x Wᵀ', M: 256, K: 128, N: 128, tB: true },
  { name: 'model down backward dx = dy W', M: 256, K: 128, N: 352 },
  { name: 'model down backward dW = dyᵀ x', M: 128, K: 256, N: 352, tA: true },
  { name: 'model gate/up x Wᵀ (bf16 W)', M: 256, K: 128, N: 352, tB: true, dtype: 'bf16' },
  { name: 'model LM head x Wᵀ (bf16 W)', M: 256, K: 128, N: 4096, tB: true, dtype: 'bf16' },
  { name: 'skinny', M: 1, K: 512, N: 512 },
  { name: 'skinny', M: 8, K: 512, N: 512 },
  { name: 'skinny x Wᵀ', M: 64, K: 128, N: 352, tB: true },
];

function bf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (v) => v >>> 16);
}

/** The replaced kernel on the same operands (its own params and workgroup grid). */
function runBaseline(ctx: GpuContext, s: MatmulShape, a: Tensor, b: Tensor): Tensor {
  const out = Tensor.empty([s.M, s.N]);
  const lda = s.tA ? s.M : s.K;
  ctx.dispatch({
    shader: baseline,
    entryPoint: 'matmul',
    constants: { TRANS_A: s.tA ? 1 : 0, TRANS_B: s.tB ? 1 : 0, B_DTYPE: s.dtype === 'bf16' ? 1 : 0, HAS_BIAS: 0, BIAS_DTYPE: 0 },
    resources: { a: a.buffer, b: b.buffer, c: out.buffer, bias: b.buffer },
    params: new Uint32Array([s.M, s.N, s.K, 1, 0, 0, lda, s.N, 0, 0, 0, 0]),
    workgroups: [Math.ceil(s.N / 64), Math.ceil(s.M / 64), 1],
  });
  return out;
}

async function timeBatch(ctx: GpuContext, run: () => Tensor, repeat: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < repeat; i++) run().dispose();
  await ctx.sync();
  return (performance.now() - t0) / repeat;
}

async function benchShape(ctx: GpuContext, s: MatmulShape, rounds: number): Promise<MatmulBenchRow> {
  const rand = seededRandom(7);
  const aData = Float32Array.from({ length: s.M * s.K }, () => rand() * 2 - 1);
  const bData = Float32Array.from({ length: s.K * s.N }, () => rand() * 2 - 1);
  const a = tensor(aData, s.tA ? [s.K, s.M] : [s.M, s.K]);
  const bShape = s.tB ? [s.N, s.K] : [s.K, s.N];
  const b = s.dtype === 'bf16' ? tensor(bf16Bits(bData), bShape, { dtype: 'bf16' }) : tensor(bData, bShape);
  const old = () => runBaseline(ctx, s, a, b);
  const cur = () => matmul(a, b, { transposeA: s.tA, transposeB: s.tB });
  const [want, got] = await readAll([old(), cur()]);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  // Batches of about 200 ms of the faster kernel (at most 2 s of the slower), so that the
  // submit and sync round trip is amortised.
  const once = [await timeBatch(ctx, old, 3), await timeBatch(ctx, cur, 3)];
  const repeats = once.map((ms) => Math.max(1, Math.min(200, Math.round(200 / Math.min(...once)), Math.round(2000 / ms))));
  const times: [number[], number[]] = [[], []];
  for (let r = 0; r < rounds; r++) {
    times[0].push(await timeBatch(ctx, old, repeats[0]));
    times[1].push(await timeBatch(ctx, cur, repeats[1]));
  }
  a.dispose();
  b.dispose();
  const gflops = (ms: number) => (2 * s.M * s.N * s.K) / ms / 1e6;
  const shape = `${s.tA ? `[${s.K}x${s.M}]ᵀ` : `[${s.M}x${s.K}]`} x ${s.tB ? `[${s.N}x${s.K}]ᵀ` : `[${s.K}x${s.N}]`}${s.dtype === 'bf16' ? ' bf16' : ''}`;
  return { name: s.name, shape, baseline: gflops(median(times[0])), current: gflops(median(times[1])), diff: diff / (scale || 1) };
}

/** Runs every shape (with `quick`, those of at most 2^24 multiply-adds; with `match`, those whose name has it). */
export async function matmulBenchmarks(options: { rounds?: number; quick?: boolean; match?: string } = {}): Promise<MatmulBenchRow[]> {
  const ctx = await init();
  await ctx.prepareShader(baseline);
  const rows: MatmulBenchRow[] = [];
  const picked = SHAPES.filter((x) => (!options.quick || x.M * x.N * x.K <= 2 ** 24) && (!options.match || x.name.includes(options.match)));
  for (const s of picked) {
    rows.push(await benchShape(ctx, s, options.rounds ?? 7));
    process.stderr.write(`  done: matmul ${s.name}\n`);
  }
  return rows;
}

/** The rows as a Markdown table. */
export function matmulTable(rows: readonly MatmulBenchRow[]): string {
  const lines = [
    '| product | shape | replaced kernel GFLOP/s | matmul GFLOP/s | speed-up | max rel. diff |',
    '| --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const ratio = r.current / r.baseline;
    lines.push(
      `| ${r.name} | ${r.shape} | ${r.baseline.toFixed(2)} | ${r.current.toFixed(2)} | ${ratio.toFixed(1)}x | ${r.diff.toExponential(1)} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('bench/matmul.ts')) {
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--rounds');
  const rounds = at >= 0 ? Number(argv[at + 1]) : undefined;
  const matchAt = argv.indexOf('--match');
  const match = matchAt >= 0 ? argv[matchAt + 1] : undefined;
  const ctx = await init();
  console.log(
    `# matmul: ${ctx.adapter.info.description || ctx.adapter.info.vendor}, load ${loadavg()[0].toFixed(1)} (1 min), ${new Date().toISOString()}\n`,
  );
  console.log(matmulTable(await matmulBenchmarks({ rounds, match, quick: argv.includes('--quick') })));
  console.log(`\nload after: ${loadavg()[0].toFixed(1)}`);
}
