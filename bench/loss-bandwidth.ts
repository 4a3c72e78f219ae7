/**
 * The memory-bound losses against the adapter's own copy bandwidth, measured in one run (issue 10,
 * point 3): a plain WGSL copy (the peers harness's vec4 grid-stride kernel, its workgroup count
 * swept like the harness does) gives the adapter's GB/s, and each loss at the peers' shapes gives
 * an *effective* GB/s: the bytes an ideal single-pass kernel moves (both inputs read once, plus
 * the gradient written once for fwd+bwd) divided by its time. A step is synchronised as the
 * peers harness's sgt runner does (the loss read back; fwd+bwd also awaits the queue), one step
 * per sync, so the figures are comparable with its table. Rows are returned, not printed.
 */
import { getContext, init, type GpuContext } from '../src/gpu/context';
import '../src/ops/index'; // registers the ops autograd needs (ones for the seed)
import { scope, tensor, type Tensor } from '../src/tensor/tensor';
import { distillationCrossEntropy } from '../src/losses/crossEntropy';
import { distillationLayerCosineDistance } from '../src/losses/cosine';
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
 * Median ms of `step` and of `reference`, their runs interleaved (reference, step, reference, ...)
 * so that a change in machine load hits both alike: at least `runs` pairs, more (up to 25) until
 * a second of steps.
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

async function lossVsCopy(
  loss: LossFn,
  R: number,
  C: number,
  backward: boolean,
  spread: number,
  copy: CopyKernel,
  runs: number,
): Promise<[number, number]> {
  const ctx = getContext();
  const z = noise(R * C, 1, spread);
  const zt = noise(R * C, 2, spread * 0.25);
  for (let i = 0; i < zt.length; i++) zt[i] += z[i];
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
  const times = await timeInterleaved(step, copy.step, runs);
  for (const t of [u, v, mask]) t.dispose();
  return times;
}

/**
 * CE and the layer cosine distance at the peers' small shapes, fwd and fwd+bwd, each timed
 * interleaved with the plain copy of 16M floats; the first row is the copy itself.
 */
export async function bandwidthRows(runs = 7): Promise<BandwidthRow[]> {
  await init();
  const ctx = getContext();
  const copy = await copyKernel(ctx, 16 * 2 ** 20);
  const rows: BandwidthRow[] = [];
  const copyMs: number[] = [];
  const cases: Array<[string, LossFn, number, number, number]> = [
    ['distillationCrossEntropy', distillationCrossEntropy, 256, 8192, 4],
    ['distillationCrossEntropy', distillationCrossEntropy, 64, 32768, 4],
    ['distillationLayerCosineDistance', distillationLayerCosineDistance, 2048, 512, 1],
  ];
  for (const [name, fn, R, C, spread] of cases) {
    for (const backward of [false, true]) {
      const [ms, refMs] = await lossVsCopy(fn, R, C, backward, spread, copy, runs);
      copyMs.push(refMs);
      const gbPerS = (4 * R * C * (backward ? 3 : 2)) / ms / 1e6;
      rows.push({ name: `${name} ${backward ? 'fwd+bwd' : 'fwd'} ${R}x${C}`, ms, gbPerS, ofCopy: gbPerS / (copy.bytes / refMs / 1e6) });
    }
  }
  copy.dispose();
  const ms = median(copyMs);
  return [{ name: 'plain WGSL copy 16M f32 (vec4, grid-stride)', ms, gbPerS: copy.bytes / ms / 1e6, ofCopy: 1 }, ...rows];
}
