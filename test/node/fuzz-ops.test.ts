/**
 * Property-based tests of the core ops against their float64 twins on random shapes: zero-size
 * axes, rank 0, broadcasting (dropped leading axes and axes of 1 on either side), transposes and
 * batches. Each run draws shapes with fast-check and values with the op case table's generators
 * (test/cases/ops.ts), runs the op and its backward on the GPU and the twin's forward and backward
 * on the same f32 inputs, and asserts: the same shape, values within the table's tolerance (NaN
 * where the twin gives NaN), and no GPU buffer left live. Where the twin refuses the inputs, the GPU
 * op must refuse them too, with a typed error and before allocating. Seeded and bounded
 * (test/helpers/fuzz.ts): a failure prints the shrunk shapes and the seed that replays it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as G from '../../src/index';
import { SgtError, liveBufferCount, readAll, scope, tensor, type Tensor } from '../../src/index';
import * as R from '../../src/reference/index';
import type { NDArray } from '../../src/reference/index';
import {
  OP_CASES,
  EXACT,
  F32,
  dotTol,
  gradientTol,
  forwardTol,
  isGrad,
  sumTol,
  type DType,
  type Gen,
  type OpCase,
  type Tol,
} from '../cases/ops';
import { fuzz } from '../helpers/fuzz';
import { Rng } from '../helpers/random';
import { gpu } from '../gpu';

/** One op at drawn shapes: what the GPU runs, what the twin computes, and how close they must be. */
interface Trial {
  inputs: { shape: number[]; dtype: DType; gen: Gen; grad: boolean }[];
  gpu(t: Tensor[]): Tensor;
  ref(x: NDArray[]): NDArray;
  refBackward(g: NDArray, x: NDArray[]): (NDArray | null)[];
  tol(x: NDArray[]): Tol;
  gradTol(x: NDArray[], input: number): Tol;
}

/** Every element within `tol` of the twin's; NaN where and only where the twin gives NaN, infinities equal. */
function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tol, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    const ok = Number.isNaN(w) ? Number.isNaN(g) : Number.isFinite(w) ? Math.abs(g - w) <= tol.atol + tol.rtol * Math.abs(w) : g === w;
    if (!ok) expect.fail(`${what}: element ${i} of ${want.length} is ${g}, the twin gives ${w} (rtol ${tol.rtol}, atol ${tol.atol})`);
  }
}

/** Runs `trial` with values drawn from `seed`: GPU vs twin, forward and backward, leak-free. */
async function check(trial: Trial, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const shapes = trial.inputs.map((i) => i.shape);
  const values = trial.inputs.map((spec) => {
    const raw = spec.gen(rng, R.sizeOf(spec.shape), shapes);
    return spec.dtype === 'i32' ? Int32Array.from(raw) : spec.dtype === 'u32' ? Uint32Array.from(raw) : Float32Array.from(raw);
  });
  const xs = values.map((v, k) => R.ndarray(v, shapes[k]));
  let expected: NDArray | null = null;
  try {
    expected = trial.ref(xs);
  } catch {
    // The twin refuses these inputs: so must the GPU op, before any GPU work.
  }
  const before = liveBufferCount();
  await scope(async () => {
    const ts = values.map((v, k) => tensor(v, shapes[k], { dtype: trial.inputs[k].dtype, requiresGrad: trial.inputs[k].grad }));
    const afterUpload = liveBufferCount();
    if (!expected) {
      expect(() => trial.gpu(ts), 'the twin refuses these inputs').toThrow(SgtError);
      expect(liveBufferCount(), 'buffers allocated before the refusal').toBe(afterUpload);
      return;
    }
    const out = trial.gpu(ts);
    expect(out.shape).toEqual(expected.shape);
    const w = Float32Array.from(rng.uniforms(R.sizeOf(out.shape), -1, 1));
    G.sum(G.mul(out, tensor(w, out.shape))).backward();
    const wanted = ts.filter((_, k) => trial.inputs[k].grad);
    const [got, ...grads] = await readAll([out, ...wanted.map((t) => t.grad!)]);
    expectNear(got, expected.data, trial.tol(xs), 'forward');
    const refGrads = trial.refBackward(R.ndarray(w, out.shape), xs);
    let j = 0;
    for (const [k, spec] of trial.inputs.entries()) {
      if (!spec.grad) continue;
      expect(ts[k].grad!.shape).toEqual(shapes[k]);
      expectNear(grads[j++], refGrads[k]!.data, trial.gradTol(xs, k), `d/d(input ${k})`);
    }
  });
  expect(liveBufferCount(), 'GPU buffers still live after the scope').toBe(before);
}

/** A trial from a case of the table, its inputs at `shapes` (the case's gpu / ref closures take any shape). */
function fromCase(c: OpCase, shapes: number[][]): Trial {
  return {
    inputs: c.inputs.map((spec, k) => ({ shape: shapes[k], dtype: spec.dtype ?? 'f32', gen: spec.gen, grad: isGrad(spec) })),
    gpu: c.gpu,
    ref: c.ref,
    refBackward: c.refBackward,
    tol: (x) => forwardTol(c, x),
    gradTol: (x, k) => gradientTol(c, x, k),
  };
}

const caseNamed = (name: string): OpCase => {
  const c = OP_CASES.find((k) => k.name === name || k.name.startsWith(`${name} `));
  if (!c) throw new Error(`no op case '${name}' in test/cases/ops.ts`);
  return c;
};

// ---------------------------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------------------------

/** An axis length: 0 (an empty tensor) one time in eight, else 1 to 6. */
const dim = fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 7, arbitrary: fc.integer({ min: 1, max: 6 }) });
const shapeOf = (minRank: number, maxRank: number) => fc.array(dim, { minLength: minRank, maxLength: maxRank });

/** A shape that broadcasts to `out`: some leading axes dropped, some axes set to 1. */
const broadcastTo = (out: number[]) =>
  fc
    .tuple(fc.integer({ min: 0, max: out.length }), fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }))
    .map(([drop, ones]) => out.slice(drop).map((d, i) => (ones[drop + i] ? 1 : d)));

const seedArb = fc.integer({ min: 0, max: 2 ** 31 - 1 });

const UNARY = OP_CASES.filter((c) => c.group === 'unary ops');
const BINARY = ['add', 'sub', 'mul', 'div'].map(caseNamed);
const WHERE = OP_CASES.filter((c) => c.group === 'where');
const SOFTMAX = [caseNamed('softmax'), caseNamed('logSoftmax')];

describe('ops against their float64 twins on random shapes (fast-check)', () => {
  it('unary maps: any rank 0-4, empty axes included', async () => {
    await gpu();
    const arb = fc.record({ op: fc.constantFrom(...UNARY), shape: shapeOf(0, 4), seed: seedArb });
    await fuzz(
      'unary ops',
      fc.asyncProperty(arb, ({ op, shape, seed }) => check(fromCase(op, [shape]), seed)),
      { runs: 150 },
    );
  });

  it('binary ops broadcast both ways (dropped leading axes, axes of 1, empty axes)', async () => {
    await gpu();
    const arb = fc.record({
      op: fc.constantFrom(...BINARY),
      shapes: shapeOf(0, 4).chain((out) => fc.tuple(broadcastTo(out), broadcastTo(out))),
      seed: seedArb,
    });
    await fuzz(
      'binary ops',
      fc.asyncProperty(arb, ({ op, shapes, seed }) => check(fromCase(op, shapes), seed)),
      { runs: 150 },
    );
  });

  it('where broadcasts a condition of each dtype against both branches', async () => {
    await gpu();
    const arb = fc.record({
      op: fc.constantFrom(...WHERE),
      shapes: shapeOf(0, 3).chain((out) => fc.tuple(broadcastTo(out), broadcastTo(out), broadcastTo(out))),
      seed: seedArb,
    });
    await fuzz(
      'where',
      fc.asyncProperty(arb, ({ op, shapes, seed }) => check(fromCase(op, shapes), seed)),
      { runs: 80 },
    );
  });

  it('shapes that do not broadcast are refused by the GPU op as by the twin', async () => {
    await gpu();
    // Last axes of 2 to 5 that differ: [..., p] with [q] or [..., q].
    const clash = fc
      .tuple(shapeOf(0, 3), fc.integer({ min: 2, max: 5 }), fc.integer({ min: 2, max: 5 }), fc.boolean())
      .filter(([, p, q]) => p !== q)
      .map(([s, p, q, full]) => [[...s, p], full ? [...s, q] : [q]]);
    const arb = fc.record({ op: fc.constantFrom(...BINARY), shapes: clash, seed: seedArb });
    await fuzz(
      'binary ops, clashing shapes',
      fc.asyncProperty(arb, ({ op, shapes, seed }) => check(fromCase(op, shapes), seed)),
      { runs: 30 },
    );
  });

  it('sum, mean and max over the last axis or everything, keepDim or not, empty axes included', async () => {
    await gpu();
    const arb = fc.record({
      name: fc.constantFrom('sum', 'mean', 'max'),
      shape: shapeOf(0, 4),
      lastAxis: fc.boolean(),
      keepDim: fc.boolean(),
      seed: seedArb,
    });
    const ops = { sum: [G.sum, R.sum, R.sumBackward], mean: [G.mean, R.mean, R.meanBackward], max: [G.max, R.max, R.maxBackward] } as const;
    const trial = (name: keyof typeof ops, shape: number[], lastAxis: boolean, keepDim: boolean): Trial => {
      const [gpuOp, ref, back] = ops[name];
      const axis = lastAxis && shape.length > 0 ? -1 : undefined;
      const n = axis === undefined ? R.sizeOf(shape) : shape[shape.length - 1];
      return {
        inputs: [{ shape, dtype: 'f32', gen: (rng, k) => rng.uniforms(k, -1, 1), grad: true }],
        gpu: ([x]) => gpuOp(x, axis, { keepDim }),
        ref: ([x]) => ref(x, axis, { keepDim }),
        refBackward: (g, [x]) => back(g, x, axis, { keepDim }),
        tol: () => (name === 'max' ? EXACT : sumTol(n)),
        gradTol: () => F32,
      };
    };
    await fuzz(
      'reductions',
      fc.asyncProperty(arb, ({ name, shape, lastAxis, keepDim, seed }) => check(trial(name, shape, lastAxis, keepDim), seed)),
      { runs: 120 },
    );
  });

  it('matmul: 2-D, batched, a 2-D operand shared by a batch, transposes, empty M, K or N', async () => {
    await gpu();
    const size = fc.integer({ min: 0, max: 9 });
    const arb = fc.record({
      M: size,
      K: size,
      N: size,
      batch: fc.constantFrom<number[]>([], [2], [3, 2], [1]),
      layout: fc.constantFrom('both', 'aOnly', 'bOnly'),
      transposeA: fc.boolean(),
      transposeB: fc.boolean(),
      seed: seedArb,
    });
    await fuzz(
      'matmul',
      fc.asyncProperty(arb, ({ M, K, N, batch, layout, transposeA, transposeB, seed }) => {
        const options = { transposeA, transposeB };
        const a = [...(layout === 'bOnly' ? [] : batch), ...(transposeA ? [K, M] : [M, K])];
        const b = [...(layout === 'aOnly' ? [] : batch), ...(transposeB ? [N, K] : [K, N])];
        // The longest reduction, forward or backward: K, or M / N times the batch for a shared operand.
        const longest = Math.max(K, M, N) * Math.max(1, R.sizeOf(batch));
        const gen: Gen = (rng, n) => rng.uniforms(n, -1, 1);
        return check(
          {
            inputs: [
              { shape: a, dtype: 'f32', gen, grad: true },
              { shape: b, dtype: 'f32', gen, grad: true },
            ],
            gpu: ([x, y]) => G.matmul(x, y, options),
            ref: ([x, y]) => R.matmul(x, y, options),
            refBackward: (g, [x, y]) => R.matmulBackward(g, x, y, options),
            tol: () => dotTol(longest),
            gradTol: () => dotTol(longest),
          },
          seed,
        );
      }),
      { runs: 120 },
    );
  });

  it('softmax and logSoftmax over rows of any length, empty batches included', async () => {
    await gpu();
    const arb = fc.record({
      op: fc.constantFrom(...SOFTMAX),
      shape: fc.tuple(shapeOf(0, 2), fc.integer({ min: 1, max: 40 })),
      seed: seedArb,
    });
    await fuzz(
      'softmax',
      fc.asyncProperty(arb, ({ op, shape: [lead, cols], seed }) => check(fromCase(op, [[...lead, cols]]), seed)),
      { runs: 60 },
    );
  });

  it('layout ops: permute, transpose, reshape (with -1), expand and sumToShape', async () => {
    await gpu();
    const gen: Gen = (rng, n) => rng.uniforms(n, -2, 2);
    const layout = (
      shape: number[],
      gpuOp: (x: Tensor) => Tensor,
      ref: (x: NDArray) => NDArray,
      back: (g: NDArray, x: NDArray) => [NDArray],
    ): Trial => ({
      inputs: [{ shape, dtype: 'f32', gen, grad: true }],
      gpu: ([x]) => gpuOp(x),
      ref: ([x]) => ref(x),
      refBackward: (g, [x]) => back(g, x),
      tol: () => F32,
      gradTol: (x) => sumTol(R.sizeOf(x[0].shape)),
    });
    const permuted = shapeOf(0, 4).chain((s) =>
      fc.tuple(fc.constant(s), fc.shuffledSubarray([...s.keys()], { minLength: s.length, maxLength: s.length })),
    );
    const reshaped = shapeOf(0, 4).chain((s) =>
      fc.tuple(
        fc.constant(s),
        fc.shuffledSubarray(s, { minLength: s.length, maxLength: s.length }),
        fc.integer({ min: -1, max: s.length - 1 }),
      ),
    );
    const expanded = shapeOf(0, 4).chain((out) => fc.tuple(broadcastTo(out), fc.constant(out)));
    const arb = fc.oneof(
      permuted.map(([s, perm]) =>
        layout(
          s,
          (x) => G.permute(x, perm),
          (x) => R.permute(x, perm),
          (g, x) => R.permuteBackward(g, x, perm),
        ),
      ),
      permuted
        .filter(([s]) => s.length >= 2)
        .map(([s, perm]) => {
          const [d0, d1] = [perm[0] - s.length, perm[1]];
          return layout(
            s,
            (x) => G.transpose(x, d0, d1),
            (x) => R.transpose(x, d0, d1),
            (g, x) => R.transposeBackward(g, x, d0, d1),
          );
        }),
      reshaped.map(([s, to, free]) => {
        // The same axis lengths in another order, one of them -1 (when that is unambiguous).
        const target = to.map((d, i) => (i === free && !to.includes(0) ? -1 : d));
        return layout(
          s,
          (x) => G.reshape(x, target),
          (x) => R.reshape(x, target),
          (g, x) => R.reshapeBackward(g, x, target),
        );
      }),
      expanded.map(([s, out]) =>
        layout(
          s,
          (x) => G.expand(x, out),
          (x) => R.expand(x, out),
          (g, x) => R.expandBackward(g, x, out),
        ),
      ),
    );
    await fuzz(
      'layout ops',
      fc.asyncProperty(arb, seedArb, (trial, seed) => check(trial, seed)),
      { runs: 120 },
    );
    const sums = fc.record({ shapes: shapeOf(0, 4).chain((out) => fc.tuple(fc.constant(out), broadcastTo(out))), seed: seedArb });
    await fuzz(
      'sumToShape',
      fc.asyncProperty(sums, async ({ shapes: [from, to], seed }) => {
        const x = R.ndarray(Float32Array.from(new Rng(seed).uniforms(R.sizeOf(from), -2, 2)), from);
        const want = R.sumToShape(x, to);
        const before = liveBufferCount();
        const [got] = await scope(() => readAll([G.sumToShape(tensor(Float32Array.from(x.data), from), to)]));
        expectNear(got, want.data, sumTol(R.sizeOf(from)), `sumToShape ${from} -> ${to}`);
        expect(liveBufferCount()).toBe(before);
      }),
      { runs: 60 },
    );
  });

  it('gather: tables of any width, ids of rank 0-2 (i32 and u32), empty tables and id lists', async () => {
    await gpu();
    const byTable = caseNamed('gather [300,5] at i32 ids');
    const arb = fc.record({
      rows: fc.integer({ min: 1, max: 12 }),
      cols: fc.integer({ min: 0, max: 7 }),
      ids: shapeOf(0, 2),
      dtype: fc.constantFrom<DType>('i32', 'u32'),
      seed: seedArb,
    });
    await fuzz(
      'gather',
      fc.asyncProperty(arb, ({ rows, cols, ids, dtype, seed }) => {
        const trial = fromCase(byTable, [[rows, cols], ids]);
        trial.inputs[1].dtype = dtype;
        return check(trial, seed);
      }),
      { runs: 80 },
    );
  });
});
