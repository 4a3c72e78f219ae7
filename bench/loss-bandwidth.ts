/**
 * The memory-bound losses against the adapter's own copy bandwidth, measured in one run (issue 10,
 * point 3): a plain WGSL copy (the peers harness's vec4 grid-stride kernel, its workgroup count
 * swept like the harness does) gives the adapter's GB/s, and each loss gives an *effective* GB/s:
 * the bytes an ideal single-pass kernel moves (its inputs read once, plus the gradient written once
 * for fwd+bwd) divided by its time. CE and the layer cosine distance run at the peers' shapes, the
 * median-norm and std-log-ratio penalties at the cosine's. Two timings per case, each interleaved
 * with the copy: one step per sync as the peers harness's sgt runner syncs (the loss read back;
 * fwd+bwd also awaits the queue), and a batch of steps moving about the copy's bytes before one
 * sync (the kernels' own pace). Rows are returned, not printed.
 */
import { getContext, init, type GpuContext } from '../src/gpu/context';
import '../src/ops/index'; // registers the ops autograd needs (ones for the seed)
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { distillationCrossEntropy } from '../src/losses/crossEntropy';
import { distillationLayerCosineDistance } from '../src/losses/cosine';
import { medianNormPenalty } from '../src/losses/medianNorm';
import { stdLogRatio } from '../src/losses/stdLogRatio';
import { median } from './timing';

/** One row: a loss (or the copy itself) at one shape, as a share of the copy's bandwidth. */
export interface BandwidthRow {
  name: string;
  /** Median ms of one step. */
  ms: number;
  /** Ideal bytes / time, in GB/s. */
  gbPerS: number;
  /** gbPerS as a fraction of the copy's GB/s in the same run. */
  ofCopy: number;
  /** Median ms of one step when several are recorded before one sync (the kernels' own pace). */
  batchedMs?: number;
  /** The batched steps' effective GB/s as a fraction of the copy's. */
  batchedOfCopy?: number;
}

// The peers harness's copy kernel (runners/webgpu-raw.mjs), so that "% of copy" means the same.
const COPY_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> a : array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> c : array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>) {
  let n = arrayLength(&c);
  let stride = nwg.x * 256u;
  for (var i = gid.x; i < n; i += stride) {
    c[i] = a[i];
  }
}`;

function noise(n: number, seed: number, spread: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = ((state + 0.5) / 4294967296 - 0.5) * 2 * spread;
  }
  return out;
}

/**
 * Median ms of `step` and of `reference`, their runs interleaved so that a change in machine load
 * hits both alike: each round runs the reference, then `step` twice and times the second, so that
 * a step finds its inputs where the previous step left them (in the caches of a CPU adapter), as
 * in the peers harness, which runs a case's steps back to back. At least `runs` rounds, more (up
 * to 25) until a second of timed steps.
 */
async function timeInterleaved(step: () => Promise<void>, reference: () => Promise<void>, runs: number): Promise<[number, number]> {
  for (const f of [step, step, reference]) await f();
  const a: number[] = [];
  const b: number[] = [];
  let spent = 0;
  while (a.length < runs || (spent < 1000 && a.length < 25)) {
    let t0 = performance.now();
    await reference();
    b.push(performance.now() - t0);
    await step();
    t0 = performance.now();
    await step();
    const ms = performance.now() - t0;
    a.push(ms);
    spent += ms;
  }
  return [median(a), median(b)];
}

/** The plain copy of `floats` f32 values: a step, and its bytes moved. */
interface CopyKernel {
  step: () => Promise<void>;
  bytes: number;
  dispose: () => void;
}

/** The copy at the workgroup count (of the peers harness's set) that is fastest here. */
async function copyKernel(ctx: GpuContext, floats: number): Promise<CopyKernel> {
  await ctx.prepareShader(COPY_WGSL);
  const a = tensor(noise(floats, 9, 1), [floats]);
  const c = tensor(new Float32Array(floats), [floats]);
  const maxGroups = Math.min(Math.ceil(floats / 4 / 256), ctx.limits.maxComputeWorkgroupsPerDimension);
  const stepWith = (groups: number) => async () => {
    ctx.dispatch({ shader: COPY_WGSL, entryPoint: 'main', label: 'copy', resources: { a: a.buffer, c: c.buffer }, workgroups: [groups] });
    await ctx.sync();
  };
  let best = { groups: 1, ms: Number.POSITIVE_INFINITY };
  for (const groups of new Set([64, 256, 1024, 4096, maxGroups].map((g) => Math.min(g, maxGroups)))) {
    const step = stepWith(groups);
    await step();
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      await step();
      const ms = performance.now() - t0;
      if (ms < best.ms) best = { groups, ms };
    }
  }
  return {
    step: stepWith(best.groups),
    bytes: 8 * floats,
    dispose: () => {
      a.dispose();
      c.dispose();
    },
  };
}

type LossFn = (u: Tensor, v: Tensor, mask: Tensor) => Tensor;

/** A loss at one shape: its inputs u and v ([1, R, C], v the one with a gradient) are made with `spread`. */
interface LossCase {
  name: string;
  loss: LossFn;
  R: number;
  C: number;
  spread: number;
  /** How many [R, C] inputs the loss reads (stdLogRatio reads only sigma). */
  reads: number;
}

/** Median ms of one step (peers protocol) and of one step within a batch, each with the copy's interleaved ms. */
interface LossTimes {
  ms: number;
  copyMs: number;
  batchedMs: number;
  batchCopyMs: number;
}

async function lossVsCopy(c: LossCase, backward: boolean, copy: CopyKernel, runs: number): Promise<LossTimes> {
  const ctx = getContext();
  const { loss, R, C, spread } = c;
  const z = noise(R * C, 1, spread);
  const zt = noise(R * C, 2, spread * 0.25);
  for (let i = 0; i < zt.length; i++) zt[i] = Math.abs(zt[i] + z[i]) + 0.01; // positive: stdLogRatio's sigma
  const u = tensor(z, [1, R, C]);
  const v = tensor(zt, [1, R, C], { requiresGrad: backward });
  const mask = tensor(new Float32Array(R).fill(1), [1, R]);
  const step = async () => {
    await scope(async () => {
      const l = loss(u, v, mask);
      if (backward) l.backward();
      await l.item();
      if (backward) await ctx.sync();
    });
    v.grad?.dispose();
    v.grad = null;
  };
  // K steps recorded back to back and one sync, K chosen so that they move about the copy's bytes:
  // the kernels' own pace, without the per-step round trips a loaded machine makes slow.
  const K = Math.max(1, Math.round(copy.bytes / (4 * R * C * (c.reads + (backward ? 1 : 0)))));
  const batch = async () => {
    for (let k = 0; k < K; k++) {
      scope(() => {
        const l = loss(u, v, mask);
        if (backward) l.backward();
      });
      v.grad?.dispose();
      v.grad = null;
    }
    await ctx.sync();
  };
  const [ms, copyMs] = await timeInterleaved(step, copy.step, runs);
  const [batchMs, batchCopyMs] = await timeInterleaved(batch, copy.step, runs);
  for (const t of [u, v, mask]) t.dispose();
  return { ms, copyMs, batchedMs: batchMs / K, batchCopyMs };
}

/**
 * CE and the layer cosine distance at the peers' small shapes, and the median-norm and std-log-ratio
 * penalties at the cosine's, fwd and fwd+bwd, each timed interleaved with the plain copy of 16M
 * floats; the first row is the copy itself.
 */
export async function bandwidthRows(runs = 7): Promise<BandwidthRow[]> {
  await init();
  const ctx = getContext();
  const copy = await copyKernel(ctx, 16 * 2 ** 20);
  const rows: BandwidthRow[] = [];
  const copyMs: number[] = [];
  const columnStd = tensor(new Float32Array(512).fill(0.7), [512]);
  const cases: LossCase[] = [
    { name: 'distillationCrossEntropy', loss: distillationCrossEntropy, R: 256, C: 8192, spread: 4, reads: 2 },
    { name: 'distillationCrossEntropy', loss: distillationCrossEntropy, R: 64, C: 32768, spread: 4, reads: 2 },
    { name: 'distillationLayerCosineDistance', loss: distillationLayerCosineDistance, R: 2048, C: 512, spread: 1, reads: 2 },
    { name: 'medianNormPenalty', loss: (x, mu, mask) => medianNormPenalty(x, mu, 5, mask), R: 2048, C: 512, spread: 1, reads: 2 },
    { name: 'stdLogRatio', loss: (_, sigma, mask) => stdLogRatio(sigma, columnStd, mask), R: 2048, C: 512, spread: 1, reads: 1 },
  ];
  for (const c of cases) {
    for (const backward of [false, true]) {
      const t = await lossVsCopy(c, backward, copy, runs);
      copyMs.push(t.copyMs, t.batchCopyMs);
      const bytes = 4 * c.R * c.C * (c.reads + (backward ? 1 : 0));
      const copyGbPerS = (ms: number) => copy.bytes / ms / 1e6;
      rows.push({
        name: `${c.name} ${backward ? 'fwd+bwd' : 'fwd'} ${c.R}x${c.C}`,
        ms: t.ms,
        gbPerS: bytes / t.ms / 1e6,
        ofCopy: bytes / t.ms / 1e6 / copyGbPerS(t.copyMs),
        batchedMs: t.batchedMs,
        batchedOfCopy: bytes / t.batchedMs / 1e6 / copyGbPerS(t.batchCopyMs),
      });
    }
  }
  columnStd.dispose();
  copy.dispose();
  const ms = median(copyMs);
  return [{ name: 'plain WGSL copy 16M f32 (vec4, grid-stride)', ms, gbPerS: copy.bytes / ms / 1e6, ofCopy: 1 }, ...rows];
}
