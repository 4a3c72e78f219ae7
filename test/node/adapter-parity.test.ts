/**
 * The same results on every adapter. CI runs the Node suite twice: on lavapipe (project `node`)
 * and on SwiftShader (project `node-swiftshader`, what Chrome falls back to without a usable GPU).
 * The WGSL built-ins may be loose (WGSL allows it) and the two adapters use that room differently,
 * so the kernels use the toolkit's own functions where it matters (`sinCos`, `logAccurate`,
 * `tanhAccurate` in shaders/common.wgsl); these tests hold them to a few ulp of float64 on
 * whichever adapter runs them, at the values where the built-ins were off.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as G from '../../src/index';
import { liveBufferCount, readAll, scope, tensor, type Tensor } from '../../src/index';
import { gpu } from '../gpu';

/** Spacing of f32 values at `v` (the gap to the next f32 away from 0). */
function f32Ulp(v: number): number {
  const a = Math.abs(Math.fround(v));
  if (a === 0) return 2 ** -149;
  if (!Number.isFinite(a)) return Infinity;
  const bits = new Uint32Array(new Float32Array([a]).buffer)[0];
  const next = new Float32Array(new Uint32Array([bits + 1]).buffer)[0];
  return next - a;
}

/** `op` and its derivative (`backward` of sum(op(x))) at the f32 values `xs`. */
async function valueAndSlope(op: (t: Tensor) => Tensor, xs: number[]): Promise<{ value: number[]; slope: number[] }> {
  const before = liveBufferCount();
  const result = await scope(async () => {
    const x = tensor(Float32Array.from(xs), [xs.length], { requiresGrad: true });
    const y = op(x);
    G.sum(y).backward();
    const [value, slope] = await readAll([y, x.grad!]);
    return { value: Array.from(value), slope: Array.from(slope) };
  });
  expect(liveBufferCount(), 'GPU buffers still live').toBe(before);
  return result;
}

/** Asserts |got - want| <= ulps * (f32 spacing at want) for every element; names the worst. */
function expectUlps(got: number[], want: number[], ulps: number, what: string): void {
  got.forEach((g, i) => {
    const w = want[i];
    const err = Math.abs(g - w) / f32Ulp(w);
    expect(err, `${what}[${i}]: got ${g}, float64 gives ${w} (${err.toFixed(1)} ulp)`).toBeLessThanOrEqual(ulps);
  });
}

const f32 = (xs: number[]): number[] => xs.map(Math.fround);

describe('the adapter', () => {
  it('is reported, and is the one the test project asked for', async () => {
    const ctx = await gpu();
    const info = ctx.adapter.info;
    const name = `${info.description || info.device} (vendor ${info.vendor}, architecture ${info.architecture})`;
    // One line per run in the test output: which adapter these results are from.
    console.log(`WebGPU adapter: ${name}; features: ${[...ctx.features].join(', ') || 'none'}`);
    const wanted = process.env.SGT_TEST_ADAPTER;
    if (wanted) expect(name, `SGT_TEST_ADAPTER=${wanted}`).toMatch(new RegExp(wanted, 'i'));
  });

  it('no test of any suite can skip: no skip, todo, only, skipIf or runIf anywhere under test/', () => {
    const root = join(import.meta.dirname, '..');
    const files = (readdirSync(root, { recursive: true }) as string[]).filter(
      (f) => /\.(ts|mjs|js)$/.test(f) && !f.includes('node_modules') && statSync(join(root, f)).isFile(),
    );
    expect(files.length).toBeGreaterThan(40);
    const pattern = /\b(?:it|test|describe|bench|suite)\s*\.\s*(?:skip|todo|only|skipIf|runIf)\b|\.skip\s*\(\s*\)|\bcontext\.skip\b/;
    const self = join('node', 'adapter-parity.test.ts');
    const offenders = files.filter((f) => f !== self && pattern.test(readFileSync(join(root, f), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

describe('transcendental ops agree with float64 to a few ulp on every adapter', () => {
  it('tanh: the polynomial near 0, 1 - 2 / (e^2x + 1) beyond, exactly +-1 past 9.01, never NaN', async () => {
    await gpu();
    const xs = f32([1e-30, 1e-6, -3e-6, 1e-3, -0.2, 0.5, 0.6249, 0.6251, -0.7146, 1, -2.5, 5, 9, 9.02, 20, -50, 100, -1e4, 3e38, -3e38]);
    const { value, slope } = await valueAndSlope(G.tanh, xs);
    // Built-ins were 1e-2 relative off at 1e-6 (both adapters) and NaN from |x| = 50 (SwiftShader).
    expectUlps(value, xs.map(Math.tanh), 2, 'tanh');
    // 1 - t^2 in f32: an absolute error of about one ulp of 1 (t near 1 cancels).
    slope.forEach((s, i) => {
      const want = 1 - Math.tanh(xs[i]) ** 2;
      expect(Math.abs(s - want), `tanh'(${xs[i]}) = ${s}, float64 ${want}`).toBeLessThanOrEqual(2.5e-7);
    });
  });

  it('log: within 2 ulp near 1 and over the normal positive range; 0, negatives and inf as IEEE says', async () => {
    await gpu();
    const xs = f32([2e-38, 1e-30, 1e-6, 0.1, 0.5, Math.SQRT1_2, 0.9999, 0.99999994, 1, 1.0000001, 1.0001, Math.SQRT2, 2, 1000, 8e37]);
    const { value, slope } = await valueAndSlope(G.log, xs);
    // The built-in's 2^-21 absolute error near 1 was 5000 ulp there on both adapters.
    expectUlps(value, xs.map(Math.log), 2, 'log');
    expectUlps(
      slope,
      xs.map((x) => 1 / x),
      1,
      "log'",
    );
    // Special values as IEEE says (SwiftShader's built-in gave -88 for log 0), and a subnormal
    // (which an adapter may flush to 0 in arithmetic) from its bits.
    const special = [0, -0, -1, Number.POSITIVE_INFINITY, Number.NaN, 1e-40];
    const [got] = await scope(() => readAll([G.log(tensor(special, [special.length]))]));
    expect(Array.from(got.subarray(0, 5))).toEqual([
      Number.NEGATIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NaN,
    ]);
    expectUlps([got[5]], [Math.log(Math.fround(1e-40))], 2, 'log(1e-40)');
  });

  it('geluTanh and its derivative stay finite out to the largest f32 (0 * inf in the derivative)', async () => {
    await gpu();
    const xs = f32([-3e38, -1e20, -1e4, -60, 60, 1e4, 1e20, 3e38]);
    const { value, slope } = await valueAndSlope(G.geluTanh, xs);
    // gelu(x) = 0.5 x (1 + tanh(u)): -0 for very negative x, x itself for very positive x.
    expect(value.map((v) => v + 0)).toEqual(xs.map((x) => Math.max(x, 0)));
    expect(slope).toEqual(xs.map((x) => (x < 0 ? 0 : 1)));
  });
});
