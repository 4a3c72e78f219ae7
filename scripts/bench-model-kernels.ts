/**
 * `node scripts/run.mjs scripts/bench-model-kernels.ts [--shape step|big] [--runs n]`
 *
 * The memory-bound kernels of a model step (elementwise, SwiGLU, RMSNorm / LayerNorm, RoPE,
 * gather, AdamW, softmax) against the adapter's own copy bandwidth, in one run (issue 10, point 3).
 * A plain WGSL copy (vec4, grid-stride, the peers harness's kernel; the best of a few workgroup
 * counts) gives the adapter's GB/s; each kernel gets an effective GB/s: the bytes an ideal
 * single-pass kernel moves (every input read once, every output written once) divided by its
 * time, and its share of the copy's. Attention is compute-bound and is listed in ms only.
 *
 * Times are the fastest of `--runs` batches of R calls closed by one `ctx.sync()` (recording
 * included, as in real use), for the copy and the kernels alike. Shapes: `step` is the SGT step of a small Llama at B 4 x T 64 (rows 256, d 192, MLP
 * 512, 6 heads / 2 KV heads of 32); `big` is the SmolLM2-135M step's shapes at B 8 x T 256 (rows
 * 2048, d 576, MLP 1536, 9 / 3 heads of 64).
 */
import { init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { keep, scope, tensor, type Tensor } from '../src/tensor/tensor';
import { add, gather, rmsNorm, layerNorm, softmax, swiglu, rope, attention } from '../src/ops/index';
import { AdamW } from '../src/optim/adamw';

const argv = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const big = arg('--shape', 'step') === 'big';
const runs = Number(arg('--runs', '7'));
const [rows, d, inner, H, Hkv, Dh, B, T] = big ? [2048, 576, 1536, 9, 3, 64, 8, 256] : [256, 192, 512, 6, 2, 32, 4, 64];
const V = big ? 49152 : 4096;

const ctx = await init();

const COPY_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> a : array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> c : array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>) {
  let n = arrayLength(&c);
  for (var i = gid.x; i < n; i += nwg.x * 256u) { c[i] = a[i]; }
}`;

function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/**
 * Fastest ms of one call of `record` over batches of calls closed by one sync: on a machine
 * shared with other work the minimum estimates what the kernel costs, the median what the load was.
 */
async function time(record: () => void): Promise<number> {
  record();
  await ctx.sync();
  let t0 = performance.now();
  record();
  await ctx.sync();
  const repeat = Math.max(1, Math.min(50, Math.round(50 / Math.max(performance.now() - t0, 0.01))));
  const per: number[] = [];
  for (let r = 0; r < runs; r++) {
    t0 = performance.now();
    for (let i = 0; i < repeat; i++) record();
    await ctx.sync();
    per.push((performance.now() - t0) / repeat);
  }
  return Math.min(...per);
}

/** GB/s of the plain copy of `floats` f32 values, the best of a few workgroup counts. */
async function copyGbPerS(floats: number): Promise<number> {
  await ctx.prepareShader(COPY_WGSL);
  const a = tensor(values(floats, 9), [floats]);
  const c = tensor(new Float32Array(floats), [floats]);
  let best = Number.POSITIVE_INFINITY;
  for (const groups of [4, 16, 64, 256]) {
    const g = Math.max(1, Math.min(groups, Math.ceil(floats / 1024)));
    const ms = await time(() =>
      ctx.dispatch({ shader: COPY_WGSL, entryPoint: 'main', resources: { a: a.buffer, c: c.buffer }, workgroups: [g] }),
    );
    best = Math.min(best, ms);
  }
  a.dispose();
  c.dispose();
  return (8 * floats) / best / 1e6;
}

const t = (n: number[], seed: number, requiresGrad = false) =>
  tensor(
    values(
      n.reduce((a, b) => a * b, 1),
      seed,
    ),
    n,
    { requiresGrad },
  );

/** A forward (no tape) or forward + backward (`sum(out * seed)` back to the inputs) call. */
function call(fn: (inputs: Tensor[]) => Tensor, inputs: Tensor[], backward: boolean): () => void {
  if (!backward) return () => scope(() => void noGrad(() => fn(inputs)));
  let seed: Tensor | null = null;
  return () =>
    scope(() => {
      const out = fn(inputs);
      seed ??= keep(t(out.shape as number[], 5));
      out.backward(seed);
      for (const x of inputs) {
        x.grad?.dispose();
        x.grad = null;
      }
    });
}

interface Row {
  name: string;
  /** Floats an ideal kernel moves. */
  floats: number;
  record: () => void;
}

function rowsOfBench(): Row[] {
  const x = t([rows, d], 1, true);
  const y = t([rows, d], 2, true);
  const w = t([d], 3, true);
  const bias = t([d], 4, true);
  const gate = t([rows, inner], 6, true);
  const up = t([rows, inner], 7, true);
  const q = t([B, T, H, Dh], 8, true);
  const k = t([B, T, Hkv, Dh], 9, true);
  const v = t([B, T, Hkv, Dh], 10, true);
  const table = t([V, d], 11);
  const ids = tensor(
    Int32Array.from({ length: rows }, (_, i) => (i * 7919) % V),
    [rows],
  );
  const logits = t([rows, 256], 12, true);
  const rs = d + 2; // a row of stats is two floats
  return [
    { name: `add [${rows},${d}]`, floats: 3 * rows * d, record: call(([a, b]) => add(a, b), [x, y], false) },
    { name: `swiglu [${rows},${inner}]`, floats: 3 * rows * inner, record: call(([a, b]) => swiglu(a, b), [gate, up], false) },
    {
      name: `swiglu fwd+bwd [${rows},${inner}]`,
      floats: 3 * rows * inner + 5 * rows * inner,
      record: call(([a, b]) => swiglu(a, b), [gate, up], true),
    },
    { name: `rmsNorm [${rows},${d}]`, floats: rows * (2 * d + 2) + d, record: call(([a, b]) => rmsNorm(a, b, 1e-5), [x, w], false) },
    {
      name: `rmsNorm fwd+bwd [${rows},${d}]`,
      floats: rows * (2 * d + 2) + rows * (3 * d + 2) + rows * 2 * d,
      record: call(([a, b]) => rmsNorm(a, b, 1e-5), [x, w], true),
    },
    {
      name: `layerNorm [${rows},${d}]`,
      floats: rows * (2 * d + 2) + 2 * d,
      record: call(([a, b, c]) => layerNorm(a, b, c), [x, w, bias], false),
    },
    {
      name: `layerNorm fwd+bwd [${rows},${d}]`,
      floats: rows * rs * 2 + rows * (3 * d + 2) + rows * 4 * d,
      record: call(([a, b, c]) => layerNorm(a, b, c), [x, w, bias], true),
    },
    { name: `rope [${B},${T},${H},${Dh}]`, floats: 2 * q.size, record: call(([a]) => rope(a, { theta: 10000 }), [q], false) },
    {
      name: `gather ${rows} rows of [${V},${d}]`,
      floats: 2 * rows * d + rows,
      record: call(([a, b]) => gather(a, b), [table, ids], false),
    },
    { name: `softmax [${rows},256]`, floats: 2 * logits.size, record: call(([a]) => softmax(a), [logits], false) },
    {
      name: `attention [${B},${T},${H}/${Hkv},${Dh}] (compute-bound)`,
      floats: 0,
      record: call(([a, b, c]) => attention(a, b, c, { causal: true }), [q, k, v], false),
    },
    {
      name: `attention fwd+bwd (compute-bound)`,
      floats: 0,
      record: call(([a, b, c]) => attention(a, b, c, { causal: true }), [q, k, v], true),
    },
  ];
}

/** AdamW over a cloak-like parameter set: 24 tensors, step + zeroGrad each time. */
function adamwRow(): Row {
  const shapes = [[d, d], [d], [4 * d, d], [4 * d], [d, 4 * d], [d], [d, d], [d]];
  const params = Array.from({ length: 24 }, (_, i) => t(shapes[i % shapes.length], 20 + i, true));
  for (const p of params) p.grad = t(p.shape as number[], 50);
  const opt = new AdamW(params, { lr: 1e-3 });
  const n = params.reduce((a, p) => a + p.size, 0);
  // p, g, m, v read; p, m, v written.
  return { name: `AdamW ${params.length} tensors, ${n} floats`, floats: 7 * n, record: () => opt.step() };
}

const copy = await copyGbPerS(big ? 16 * 2 ** 20 : 4 * 2 ** 20);
const adapter = (ctx.adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
console.log(`adapter: ${adapter?.description || adapter?.device || adapter?.vendor || 'unknown'}; shapes: ${big ? 'big' : 'step'}`);
console.log(`| kernel | ms | GB/s | % of copy |\n| --- | ---: | ---: | ---: |`);
console.log(`| plain WGSL copy (vec4, grid-stride) | | ${copy.toFixed(2)} | 100% |`);
for (const row of [...rowsOfBench(), adamwRow()]) {
  const ms = await time(row.record);
  const gb = row.floats ? (4 * row.floats) / ms / 1e6 : 0;
  console.log(
    `| ${row.name} | ${ms.toFixed(3)} | ${row.floats ? gb.toFixed(2) : ''} | ${row.floats ? `${((100 * gb) / copy).toFixed(0)}%` : ''} |`,
  );
}
