import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { Rng, f32 } from '../helpers/random';
import { type Tensor, embeddingRowNorms, liveBufferCount, readAll, scope, tensor } from '../../src/index';
import { agreementAndKL, nearestNeighbourInversion, nearestRowsByCosine } from '../../src/eval/metrics';
import { agreementAndKLReference, nearestNeighbourInversionReference, nearestRowsByCosineReference } from '../../src/reference/metrics';

/** Runs the GPU inversion and reads every result with one readback. */
async function inversion(xt: Tensor, E: Tensor, ids: Tensor, mask: Tensor | ArrayLike<number>, tableNorms?: Tensor) {
  const r = nearestNeighbourInversion(xt, E, ids, mask, { tableNorms });
  expect(r.failures.shape).toEqual([]);
  expect(r.count.shape).toEqual([]);
  expect(r.nearest.shape).toEqual(ids.shape);
  expect(r.nearest.dtype).toBe('i32');
  const [failures, count, nearest] = await readAll([r.failures, r.count, r.nearest]);
  r.failures.dispose();
  r.count.dispose();
  r.nearest.dispose();
  return { failures: failures[0], count: count[0], nearest: Array.from(nearest) };
}

/** Runs the GPU agreement / KL and reads every result with one readback. */
async function agreement(teacher: Tensor, student: Tensor, mask: Tensor | ArrayLike<number>) {
  const r = agreementAndKL(teacher, student, mask);
  for (const t of [r.agree, r.kl, r.count]) expect(t.shape).toEqual([]);
  const [agree, kl, count] = await readAll([r.agree, r.kl, r.count]);
  r.agree.dispose();
  r.kl.dispose();
  r.count.dispose();
  return { agree: agree[0], kl: kl[0], count: count[0] };
}

/**
 * A random inversion case: half the positions sit near their token's row (recovered), the rest
 * are unrelated vectors (mostly failures), so both outcomes occur.
 */
function inversionCase(seed: string, B: number, T: number, d: number, V: number) {
  const rng = new Rng(seed);
  const E = f32(rng.normals(V * d));
  const ids = Int32Array.from(rng.ints(B * T, 0, V));
  const xt = new Float32Array(B * T * d);
  for (let p = 0; p < B * T; p++) {
    const near = rng.next() < 0.5;
    for (let j = 0; j < d; j++) xt[p * d + j] = near ? 2.5 * E[ids[p] * d + j] + 0.3 * rng.normal() : rng.normal();
  }
  const mask = Float32Array.from({ length: B * T }, () => (rng.next() < 0.7 ? 1 : 0));
  return { E, ids, xt, mask };
}

describe('nearestNeighbourInversion', () => {
  // Sizes cover 1, 2 and 4 query rows per thread, several query tiles, partial feature and
  // vocabulary tiles, and a vocabulary split across many workgroups.
  for (const [B, T, d, V] of [
    [2, 5, 24, 70],
    [3, 9, 16, 300],
    [3, 25, 7, 129],
    [5, 30, 33, 1000],
  ]) {
    it(`matches the float64 twin, B=${B} T=${T} d=${d} V=${V}`, async () => {
      await gpu();
      const c = inversionCase(`nn ${B} ${T} ${d} ${V}`, B, T, d, V);
      const want = nearestNeighbourInversionReference(c.xt, c.E, c.ids, c.mask, d, V);
      // The case must exercise both outcomes, or the count check proves little.
      expect(want.failures).toBeGreaterThan(0);
      expect(want.failures).toBeLessThan(want.count);
      await scope(async () => {
        const xt = tensor(c.xt, [B, T, d]);
        const E = tensor(c.E, [V, d]);
        const ids = tensor(c.ids, [B, T]);
        const got = await inversion(xt, E, ids, tensor(c.mask, [B, T]));
        expect(got.nearest).toEqual(Array.from(want.nearest));
        expect(got.failures).toBe(want.failures);
        expect(got.count).toBe(want.count);
        // Host mask and precomputed norms give the same answer.
        const norms = embeddingRowNorms(E);
        const again = await inversion(xt, E, ids, Array.from(c.mask), norms);
        expect(again).toEqual(got);
      });
    });
  }

  it("a scaled copy of the true row is recovered; another token's row or its negation is a failure", async () => {
    await gpu();
    const rng = new Rng('nn hand');
    const [V, d] = [40, 12];
    const E = f32(rng.normals(V * d));
    const row = (v: number, s: number) => Array.from(E.subarray(v * d, (v + 1) * d), (x) => s * x);
    // Positions: 3 * E_7 (id 7), 0.01 * E_39 (id 39), E_12 (id 5), -E_20 (id 20).
    const xt = [...row(7, 3), ...row(39, 0.01), ...row(12, 1), ...row(20, -1)];
    await scope(async () => {
      const got = await inversion(tensor(xt, [1, 4, d]), tensor(E, [V, d]), tensor(Int32Array.from([7, 39, 5, 20]), [1, 4]), [1, 1, 1, 1]);
      expect(got.nearest.slice(0, 3)).toEqual([7, 39, 12]);
      expect(got.nearest[3]).not.toBe(20);
      expect(got.failures).toBe(2);
      expect(got.count).toBe(4);
    });
  });

  it('ties go to the smaller index; zero rows never win unless all rows are zero', async () => {
    await gpu();
    // Row 5 = 2 * row 2 (the same direction, bit-exact equal scores); row 0 is zero.
    const E = [0, 0, 1, 0, 1, 1, 0, 1, -1, 0, 2, 2];
    await scope(async () => {
      const table = tensor(E, [6, 2]);
      // [1,1]: rows 2 and 5 tie (cos 1) -> 2. [0,-1]: the best nonzero rows, 1 and 4, tie at cos 0;
      // the zero row would tie there too with a smaller index, but must not win -> 1. [0,0]: a
      // zero query ties all nonzero rows at 0 -> 1. [-1,0]: row 4 exactly.
      const xt = tensor([1, 1, 0, -1, 0, 0, -1, 0], [1, 4, 2]);
      const ids = tensor(Int32Array.from([5, 1, 0, 4]), [1, 4]);
      const got = await inversion(xt, table, ids, [1, 1, 1, 1]);
      expect(got.nearest).toEqual([2, 1, 1, 4]);
      expect(got.failures).toBe(2);
      expect(Array.from(nearestRowsByCosineReference([1, 1, 0, -1, 0, 0, -1, 0], E, 2, 6))).toEqual([2, 1, 1, 4]);
      // An all-zero table: every row scores -inf, the first one wins.
      const zeros = await inversion(
        tensor([1, 2, -3, 0.5], [1, 2, 2]),
        tensor(new Float32Array(10), [5, 2]),
        tensor(Int32Array.from([0, 3]), [1, 2]),
        [1, 1],
      );
      expect(zeros.nearest).toEqual([0, 0]);
      expect(zeros.failures).toBe(1);
    });
  });

  it('positions outside the mask are never counted', async () => {
    await gpu();
    const c = inversionCase('nn masked', 2, 8, 10, 50);
    await scope(async () => {
      const xt = tensor(c.xt, [2, 8, 10]);
      const E = tensor(c.E, [50, 10]);
      // Every id is wrong, so every selected position fails and only the mask decides the count.
      const wrong = tensor(
        Int32Array.from({ length: 16 }, () => -1),
        [2, 8],
      );
      const mask = Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? 1 : 0));
      const got = await inversion(xt, E, wrong, mask);
      expect(got.count).toBe(6);
      expect(got.failures).toBe(6);
      const none = await inversion(xt, E, wrong, new Array(16).fill(0));
      expect(none).toEqual({ failures: 0, count: 0, nearest: got.nearest });
    });
  });

  it('an empty mask and an empty batch give zero counts', async () => {
    await gpu();
    await scope(async () => {
      const E = tensor([1, 0, 0, 1], [2, 2]);
      const got = await inversion(tensor([1, 0, 0, 1], [1, 2, 2]), E, tensor(Int32Array.from([1, 1]), [1, 2]), [0, 0]);
      expect(got).toEqual({ failures: 0, count: 0, nearest: [0, 1] });
      const empty = await inversion(tensor([], [0, 3, 2]), E, tensor(new Int32Array(0), [0, 3]), []);
      expect(empty).toEqual({ failures: 0, count: 0, nearest: [] });
    });
  });

  it('V = 50,001 on a tiny batch', async () => {
    await gpu();
    const [V, d] = [50001, 8];
    const rng = new Rng('nn big vocab');
    const E = f32(rng.normals(V * d));
    // Row 40000 = 2 * row 3: an exact tie for a query along row 3, found in another table split.
    for (let j = 0; j < d; j++) E[40000 * d + j] = 2 * E[3 * d + j];
    const pick = [50000, 49999, 3, 31337];
    const xt = new Float32Array(6 * d);
    pick.forEach((v, p) => {
      for (let j = 0; j < d; j++) xt[p * d + j] = 1.5 * E[v * d + j];
    });
    for (let j = 4 * d; j < 6 * d; j++) xt[j] = rng.normal();
    const ids = Int32Array.from([...pick, 1, 2]);
    const mask = [1, 1, 1, 1, 1, 0];
    const want = nearestNeighbourInversionReference(xt, E, ids, mask, d, V);
    expect(Array.from(want.nearest.slice(0, 4))).toEqual(pick);
    await scope(async () => {
      const got = await inversion(tensor(xt, [2, 3, d]), tensor(E, [V, d]), tensor(ids, [2, 3]), mask);
      expect(got.nearest).toEqual(Array.from(want.nearest));
      expect(got.failures).toBe(want.failures);
      expect(got.count).toBe(5);
    });
  });

  it('frees everything it makes (live-buffer count unchanged)', async () => {
    await gpu();
    const c = inversionCase('nn leaks', 2, 4, 6, 20);
    await scope(async () => {
      const xt = tensor(c.xt, [2, 4, 6]);
      const E = tensor(c.E, [20, 6]);
      const ids = tensor(c.ids, [2, 4]);
      const mask = tensor(c.mask, [2, 4]);
      const norms = embeddingRowNorms(E);
      await inversion(xt, E, ids, mask); // warm the pipelines
      const before = liveBufferCount();
      await inversion(xt, E, ids, mask);
      await inversion(xt, E, ids, Array.from(c.mask), norms);
      const n = nearestRowsByCosine(xt.view([8, 6]), E);
      n.dispose();
      expect(liveBufferCount()).toBe(before);
    });
  });

  it('bad inputs throw, naming the function and the argument', async () => {
    await gpu();
    await scope(() => {
      const xt = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      const E = tensor(new Float32Array(5 * 4), [5, 4]);
      const ids = tensor(new Int32Array(6), [2, 3]);
      const mask = [1, 1, 1, 1, 1, 1];
      const call =
        (a: Tensor, b: Tensor, c: Tensor, m: Tensor | number[] = mask, norms?: Tensor) =>
        () =>
          nearestNeighbourInversion(a, b, c, m, { tableNorms: norms });
      expect(call(tensor(new Float32Array(12), [6, 2]), E, ids)).toThrow(
        /nearestNeighbourInversion: argument 'xt' has shape \[6,2\]; expected rank 3/,
      );
      expect(call(tensor(new Int32Array(24), [2, 3, 4]), E, ids)).toThrow(/nearestNeighbourInversion: argument 'xt' has dtype i32/);
      expect(call(xt, tensor(new Float32Array(15), [5, 3]), ids)).toThrow(
        /nearestNeighbourInversion: 'xt' .*'embeddingTable' .*feature sizes/,
      );
      expect(call(xt, tensor(new Float32Array(0), [0, 4]), ids)).toThrow(/nearestNeighbourInversion: 'embeddingTable' has no rows/);
      expect(call(xt, E, tensor(new Float32Array(6), [2, 3]))).toThrow(/nearestNeighbourInversion: argument 'ids' has dtype f32/);
      expect(call(xt, E, tensor(new Int32Array(6), [3, 2]))).toThrow(/nearestNeighbourInversion: argument 'ids' has shape \[3,2\]/);
      expect(call(xt, E, ids, [1, 1])).toThrow(/nearestNeighbourInversion: mask 'noiseMask' has 2 values/);
      expect(call(xt, E, ids, [1, 1, 1, 1, 1, 0.5])).toThrow(/nearestNeighbourInversion: mask 'noiseMask' must hold only 0 and 1/);
      expect(call(xt, E, ids, tensor(new Float32Array(6), [6, 1]))).toThrow(
        /nearestNeighbourInversion: mask 'noiseMask' has shape \[6,1\]/,
      );
      expect(call(xt, E, ids, mask, tensor(new Float32Array(4), [4]))).toThrow(
        /nearestNeighbourInversion: 'tableNorms' has shape \[4\]; expected \[5\]/,
      );
      const gone = tensor([1, 2, 3, 4, 5, 6], [2, 3], { dtype: 'i32' });
      gone.dispose();
      expect(call(xt, E, gone)).toThrow(/nearestNeighbourInversion.*'ids'.*after dispose/);
      expect(() => nearestRowsByCosine(tensor(new Float32Array(6), [2, 3]), E)).toThrow(/nearestRowsByCosine: 'queries' .*'table'/);
    });
  });
});

/** Random logits, the student a noisy copy of the teacher so that agreement is partial. */
function logitsCase(seed: string, rows: number, V: number, scale = 3, noise = 0.6) {
  const rng = new Rng(seed);
  const teacher = f32(rng.normals(rows * V, scale));
  const student = f32(Array.from(teacher, (z) => z + rng.normal() * noise * scale));
  const mask = Float32Array.from({ length: rows }, () => (rng.next() < 0.75 ? 1 : 0));
  mask[0] = 1;
  return { teacher, student, mask };
}

describe('agreementAndKL', () => {
  // V below, at and above the workgroup width (some threads empty, several columns per thread).
  for (const [B, T, V] of [
    [2, 7, 37],
    [3, 5, 256],
    [2, 9, 1000],
    [1, 40, 5],
  ]) {
    it(`matches the float64 twin, B=${B} T=${T} V=${V}`, async () => {
      await gpu();
      const c = logitsCase(`kl ${B} ${T} ${V}`, B * T, V, V > 100 ? 3 : 1, V > 100 ? 0.3 : 0.6);
      const want = agreementAndKLReference(c.teacher, c.student, c.mask, V);
      expect(want.agree).toBeGreaterThan(0);
      expect(want.agree).toBeLessThan(want.count);
      await scope(async () => {
        const teacher = tensor(c.teacher, [B, T, V]);
        const student = tensor(c.student, [B, T, V]);
        const got = await agreement(teacher, student, tensor(c.mask, [B, T]));
        expect(got.agree).toBe(want.agree);
        expect(got.count).toBe(want.count);
        expectClose([got.kl], [want.kl], 1e-4, 0, 'KL sum');
        // Deterministic: the same inputs give the same bits.
        expect(await agreement(teacher, student, Array.from(c.mask))).toEqual(got);
      });
    });
  }

  it('large logits (magnitude 1e4) keep their precision', async () => {
    await gpu();
    const c = logitsCase('kl large', 6, 300, 1, 1);
    const teacher = f32(Array.from(c.teacher, (z) => z + 1e4));
    const student = f32(Array.from(c.student, (z) => z - 1e4));
    const want = agreementAndKLReference(teacher, student, c.mask, 300);
    await scope(async () => {
      const got = await agreement(tensor(teacher, [2, 3, 300]), tensor(student, [2, 3, 300]), Array.from(c.mask));
      expect(got.agree).toBe(want.agree);
      expectClose([got.kl], [want.kl], 1e-4, 0, 'KL sum');
    });
  });

  it('identical logits agree everywhere with KL exactly 0', async () => {
    await gpu();
    const c = logitsCase('kl identical', 12, 700, 4);
    await scope(async () => {
      const t = tensor(c.teacher, [3, 4, 700]);
      const s = tensor(c.teacher, [3, 4, 700]);
      const got = await agreement(t, s, new Array(12).fill(1));
      expect(got).toEqual({ agree: 12, kl: 0, count: 12 });
    });
  });

  it('one-hot-ish pairs give the hand-computed KL', async () => {
    await gpu();
    // Row 0: teacher peaks at 0, student at 1: KL = 10 (e^10 - 1) / (e^10 + 3), disagree.
    // Row 1: both peak at 2 with different heights: KL = sum p log(p/q) by hand, agree.
    const e10 = Math.exp(10);
    const row0 = (10 * (e10 - 1)) / (e10 + 3);
    const pz = [1, 1, Math.exp(4), 1].map((x, _, a) => x / (a[0] + a[1] + a[2] + a[3]));
    const qz = [1, 1, Math.exp(2), 1].map((x, _, a) => x / (a[0] + a[1] + a[2] + a[3]));
    const row1 = pz.reduce((s, p, v) => s + p * Math.log(p / qz[v]), 0);
    await scope(async () => {
      const teacher = tensor([10, 0, 0, 0, 0, 0, 4, 0], [1, 2, 4]);
      const student = tensor([0, 10, 0, 0, 0, 0, 2, 0], [1, 2, 4]);
      const got = await agreement(teacher, student, [1, 1]);
      expect(got.agree).toBe(1);
      expect(got.count).toBe(2);
      expectClose([got.kl], [row0 + row1], 1e-5, 0, 'KL');
      const twin = agreementAndKLReference([10, 0, 0, 0, 0, 0, 4, 0], [0, 10, 0, 0, 0, 0, 2, 0], [1, 1], 4);
      expectClose(twin.rowKL, [row0, row1], 1e-12, 0, 'twin KL');
    });
  });

  it('ties take the first index, across threads too', async () => {
    await gpu();
    const V = 600;
    const t = new Float32Array(4 * V);
    const s = new Float32Array(4 * V);
    // Row 0: teacher maxima at 400 (thread 144) and 356 (thread 100): the first is 356; student
    // peaks only at 356: agree. Row 1: teacher ties at 10 and 599 (threads 10 and 87), student
    // peaks at 10 only: agree. Row 2: every logit equal in both: argmax 0 for each: agree.
    // Row 3: student ties at 7 and 300 (threads 7 and 44), teacher peaks at 300 only: disagree.
    t[400] = t[356] = 5;
    s[356] = 5;
    t[V + 10] = t[V + 599] = 2;
    s[V + 10] = 2;
    s[3 * V + 7] = s[3 * V + 300] = 3;
    t[3 * V + 300] = 1;
    const want = agreementAndKLReference(t, s, [1, 1, 1, 1], V);
    expect(want.agree).toBe(3);
    await scope(async () => {
      const got = await agreement(tensor(t, [2, 2, V]), tensor(s, [2, 2, V]), [1, 1, 1, 1]);
      expect(got.agree).toBe(3);
      expect(got.count).toBe(4);
      expectClose([got.kl], [want.kl], 1e-4, 1e-6, 'KL');
    });
  });

  it('an empty mask gives zeros, never NaN, and masked-out rows are never read', async () => {
    await gpu();
    const c = logitsCase('kl empty', 4, 50);
    // Poison the rows the mask leaves out: reading them would make NaN.
    const teacher = Float32Array.from(c.teacher);
    teacher.fill(NaN, 50, 100);
    teacher.fill(NaN, 150, 200);
    await scope(async () => {
      const t = tensor(teacher, [2, 2, 50]);
      const s = tensor(c.student, [2, 2, 50]);
      expect(await agreement(t, s, [0, 0, 0, 0])).toEqual({ agree: 0, kl: 0, count: 0 });
      const some = await agreement(t, s, [1, 0, 1, 0]);
      const want = agreementAndKLReference(teacher, c.student, [1, 0, 1, 0], 50);
      expect(Number.isNaN(want.kl)).toBe(false);
      expect(some.count).toBe(2);
      expect(some.agree).toBe(want.agree);
      expectClose([some.kl], [want.kl], 1e-4, 0, 'KL sum');
      // An empty batch.
      expect(await agreement(tensor([], [0, 2, 50]), tensor([], [0, 2, 50]), [])).toEqual({ agree: 0, kl: 0, count: 0 });
    });
  });

  it('V = 50,001 on a tiny batch', async () => {
    await gpu();
    const V = 50001;
    const c = logitsCase('kl big vocab', 3, V, 2, 0.3);
    // Put the maxima at the far end of the vocabulary, in different threads' slices.
    c.teacher[V - 1] = 20;
    c.student[V - 1] = 19;
    c.teacher[2 * V - 2] = 20;
    c.student[V + 7] = 21;
    const mask = [1, 1, 1];
    const want = agreementAndKLReference(c.teacher, c.student, mask, V);
    await scope(async () => {
      const got = await agreement(tensor(c.teacher, [1, 3, V]), tensor(c.student, [1, 3, V]), mask);
      expect(got.agree).toBe(want.agree);
      expect(got.count).toBe(3);
      expectClose([got.kl], [want.kl], 1e-4, 0, 'KL sum');
    });
  });

  it('frees everything it makes (live-buffer count unchanged)', async () => {
    await gpu();
    const c = logitsCase('kl leaks', 6, 40);
    await scope(async () => {
      const t = tensor(c.teacher, [2, 3, 40]);
      const s = tensor(c.student, [2, 3, 40]);
      const m = tensor(c.mask, [2, 3]);
      await agreement(t, s, m);
      const before = liveBufferCount();
      await agreement(t, s, m);
      await agreement(t, s, Array.from(c.mask));
      expect(liveBufferCount()).toBe(before);
    });
  });

  it('bad inputs throw, naming the function and the argument', async () => {
    await gpu();
    await scope(() => {
      const t = tensor(new Float32Array(24), [2, 3, 4]);
      const s = tensor(new Float32Array(24), [2, 3, 4]);
      const m = [1, 1, 1, 1, 1, 1];
      expect(() => agreementAndKL(tensor(new Float32Array(24), [6, 4]), s, m)).toThrow(
        /agreementAndKL: argument 'teacherLogits' has shape \[6,4\]; expected rank 3/,
      );
      expect(() => agreementAndKL(t, tensor(new Int32Array(24), [2, 3, 4]), m)).toThrow(
        /agreementAndKL: argument 'studentLogits' has dtype i32/,
      );
      expect(() => agreementAndKL(t, tensor(new Float32Array(30), [2, 3, 5]), m)).toThrow(
        /agreementAndKL: 'studentLogits' has shape \[2,3,5\] but 'teacherLogits' has shape \[2,3,4\]/,
      );
      expect(() => agreementAndKL(tensor([], [2, 3, 0]), tensor([], [2, 3, 0]), m)).toThrow(
        /agreementAndKL: 'teacherLogits' .*vocabulary axis must not be empty/,
      );
      expect(() => agreementAndKL(t, s, [1, 1, 1])).toThrow(/agreementAndKL: mask 'mask' has 3 values/);
      expect(() => agreementAndKL(t, s, tensor(new Float32Array(6), [3, 2]))).toThrow(
        /agreementAndKL: mask 'mask' has shape \[3,2\]; expected \[2,3\]/,
      );
      expect(() => agreementAndKL(t, s, tensor(new Int32Array(6), [2, 3]))).toThrow(/agreementAndKL: mask 'mask' has dtype i32/);
    });
  });
});
