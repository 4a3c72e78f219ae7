/**
 * Runs the op case table (`./ops.ts`) as Vitest tests, in Node (Dawn) and in the browser
 * (Chromium), three ways per case:
 *  1. GPU forward vs the twin's forward on the same (f32-rounded) inputs;
 *  2. GPU backward (autograd, through `sum(mul(out, w))` with random weights w) vs the twin's
 *     backward given w, which is exactly the gradient of that loss with respect to `out`;
 *  3. the twin's backward vs central finite differences of the twin's forward, in float64.
 * (3) makes the twin trustworthy on its own, so (1) and (2) test the GPU against a known-good
 * answer; it needs no GPU, so the browser run leaves it to Node.
 */
import { describe, expect, it } from 'vitest';
import * as G from '../../src/index';
import { liveBufferCount, readAll, scope, tensor, type Tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import type { NDArray } from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import { FD_TOL, centralDifference, forwardTol, gradientTol, isGrad, type DType, type OpCase, type OpInput } from './ops';

interface Input {
  shape: number[];
  values: Float32Array | Int32Array | Uint32Array | Float64Array;
  dtype: DType;
}

/** The inputs of a case drawn from `rng` in input order, at the GPU shapes or the finite-difference ones. */
function makeInputs(specs: OpInput[], rng: Rng, forFd: boolean): Input[] {
  const shapes = specs.map((spec) => (forFd ? (spec.fdShape ?? spec.shape) : spec.shape));
  return specs.map((spec, k) => {
    const raw = spec.gen(rng, R.sizeOf(shapes[k]), shapes);
    const dtype = spec.dtype ?? 'f32';
    let values: Input['values'];
    if (dtype === 'i32') values = Int32Array.from(raw);
    else if (dtype === 'u32') values = Uint32Array.from(raw);
    // The GPU tests feed the twin the f32-rounded values the GPU really holds.
    else values = forFd ? Float64Array.from(raw) : Float32Array.from(raw);
    return { shape: shapes[k], values, dtype };
  });
}

const toNd = (inputs: Input[]): NDArray[] => inputs.map((i) => R.ndarray(i.values, i.shape));

function upload(inputs: Input[], specs: OpInput[], withGrad: boolean): Tensor[] {
  return inputs.map((i, k) => {
    const data = i.values instanceof Float64Array ? Float32Array.from(i.values) : i.values;
    return tensor(data, i.shape, { dtype: i.dtype, requiresGrad: withGrad && isGrad(specs[k]) });
  });
}

/** Runs `body` in a scope and asserts that every GPU buffer it made was freed. */
async function leakFree(body: () => Promise<void>): Promise<void> {
  const before = liveBufferCount();
  await scope(body);
  expect(liveBufferCount(), 'GPU buffers still live after the scope').toBe(before);
}

async function checkForward(c: OpCase): Promise<void> {
  const inputs = makeInputs(c.inputs, new Rng(`${c.name}/gpu`), false);
  const xs = toNd(inputs);
  const expected = c.ref(xs);
  await leakFree(async () => {
    const out = c.gpu(upload(inputs, c.inputs, false));
    expect(out.shape).toEqual(expected.shape);
    const tol = forwardTol(c, xs);
    expectClose(await out.toArray(), expected.data, tol.rtol, tol.atol, `${c.name} forward`);
  });
}

async function checkBackward(c: OpCase): Promise<void> {
  const rng = new Rng(`${c.name}/gpu`);
  const inputs = makeInputs(c.inputs, rng, false);
  const xs = toNd(inputs);
  const outShape = c.ref(xs).shape;
  const w = Float32Array.from(rng.uniforms(R.sizeOf(outShape), -1, 1));
  const expected = c.refBackward(R.ndarray(w, outShape), xs);
  await leakFree(async () => {
    const ts = upload(inputs, c.inputs, true);
    const out = c.gpu(ts);
    G.sum(G.mul(out, tensor(w, outShape))).backward();
    const wanted = ts.filter((_, k) => isGrad(c.inputs[k]));
    for (const [k, t] of ts.entries()) {
      if (isGrad(c.inputs[k])) expect(t.grad, `input ${k} has a gradient`).not.toBeNull();
      else expect(t.grad, `input ${k} (not differentiable) has no gradient`).toBeNull();
    }
    const got = await readAll(wanted.map((t) => t.grad!));
    let j = 0;
    for (const [k, t] of ts.entries()) {
      if (!isGrad(c.inputs[k])) continue;
      expect(t.grad!.shape).toEqual(t.shape);
      const tol = gradientTol(c, xs, k);
      expectClose(got[j++], expected[k]!.data, tol.rtol, tol.atol, `${c.name} d/d(input ${k})`);
    }
  });
}

/** The twin's backward against central differences ({@link centralDifference}) at every element, in float64. */
function checkFiniteDifferences(c: OpCase): void {
  const rng = new Rng(`${c.name}/fd`);
  const xs = toNd(makeInputs(c.inputs, rng, true));
  const out = c.ref(xs);
  const w = R.ndarray(rng.uniforms(out.data.length, -1, 1), out.shape);
  const grads = c.refBackward(w, xs);
  expect(grads.length).toBe(xs.length);
  xs.forEach((x, k) => {
    if (!isGrad(c.inputs[k])) {
      expect(grads[k]).toBeNull();
      return;
    }
    const gk = grads[k];
    expect(gk).not.toBeNull();
    expect(gk!.shape).toEqual(x.shape);
    const numeric = Float64Array.from(x.data, (_, i) => centralDifference(c.ref, xs, w, k, i));
    expectClose(gk!.data, numeric, FD_TOL.rtol, FD_TOL.atol, `${c.name} d/d(input ${k}) vs finite differences`);
  });
}

/** How to run the table. */
export interface CheckOptions {
  /** Makes the GPU context ready (awaited before every GPU check). */
  gpu: () => Promise<unknown>;
  /** Whether to check the twins' backward against finite differences too (CPU only). */
  finiteDifferences: boolean;
}

/** Defines the tests of `cases`: one `describe` per group, one per case. */
export function defineOpCases(cases: readonly OpCase[], options: CheckOptions): void {
  const groups = [...new Set(cases.map((c) => c.group))];
  for (const group of groups) {
    describe(group, () => {
      for (const c of cases.filter((k) => k.group === group)) {
        describe(c.name, () => {
          it('GPU forward matches the float64 twin', async () => {
            await options.gpu();
            await checkForward(c);
          });
          if (!c.noAutograd) {
            it('GPU backward matches the twin backward', async () => {
              await options.gpu();
              await checkBackward(c);
            });
          }
          if (options.finiteDifferences) it('twin backward matches central finite differences', () => checkFiniteDifferences(c));
        });
      }
    });
  }
}
