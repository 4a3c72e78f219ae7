/**
 * Top-1 agreement and KL from final hidden states and an LM head (issue 9, point 3: the metrics
 * never make the logits): `lmHeadAgreementAndKL` against its float64 twin, against
 * `agreementAndKL` on materialised logits, with the head in row blocks (of unequal sizes, bf16,
 * and under a forced binding limit), ties, identical rows and unselected NaN rows; the twin against
 * the logit metrics' twin; named errors before any GPU work; live buffers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import { type Tensor, getContext, liveBufferCount, matmulRowBlocks, readAll, reshape, scope, tensor } from '../../src/index';
import { hasContext } from '../../src/gpu/context';
import { agreementAndKL, lmHeadAgreementAndKL } from '../../src/eval/metrics';
import { lmHeadAgreementAndKLReference } from '../../src/reference/index';
import { agreementAndKLReference } from '../../src/reference/metrics';

afterEach(() => {
  if (hasContext()) getContext().setBindingLimit(null);
});

interface Problem {
  B: number;
  T: number;
  d: number;
  blockRows: number[];
  teacher: Float32Array;
  student: Float32Array;
  head: Float32Array[];
  mask: number[];
}

/**
 * Random hidden states and head blocks. The student is the teacher plus `noise` times a normal
 * draw, so that both agreeing and disagreeing rows occur; logits spread about `spread`.
 */
function problem(
  seed: string,
  o: { B: number; T: number; d: number; blockRows: number[]; noise?: number; unselected?: number[] },
): Problem {
  const rng = new Rng(seed);
  const rows = o.B * o.T;
  const teacher = Float32Array.from(rng.normals(rows * o.d));
  const noise = o.noise ?? 0.7;
  const student = teacher.map((v) => v + noise * rng.normal());
  const w = 4 / Math.sqrt(o.d);
  return {
    ...o,
    teacher,
    student,
    head: o.blockRows.map((v) => Float32Array.from(rng.normals(v * o.d, w))),
    mask: Array.from({ length: rows }, (_, r) => (o.unselected?.includes(r) ? 0 : 1)),
  };
}

function twin(p: Problem) {
  return lmHeadAgreementAndKLReference({
    teacherHidden: p.teacher,
    studentHidden: p.student,
    headBlocks: p.head,
    mask: p.mask,
    rows: p.B * p.T,
    hidden: p.d,
  });
}

/** The GPU metrics from hidden states and the head blocks (f32, or rounded to `dtype`); the head values the GPU read. */
async function onGpu(p: Problem, dtype: 'f32' | 'bf16' = 'f32', maskAsTensor = false) {
  return scope(async () => {
    const h = tensor(p.teacher, [p.B, p.T, p.d]);
    const hs = tensor(p.student, [p.B, p.T, p.d]);
    const blocks = p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d], { dtype }));
    const mask = maskAsTensor ? tensor(Float32Array.from(p.mask), [p.B, p.T]) : p.mask;
    const r = lmHeadAgreementAndKL(h, hs, blocks, mask);
    const [agree, kl, count] = await readAll([r.agree, r.kl, r.count]);
    const head = (await readAll(blocks)) as Float32Array[];
    return { agree: agree[0], kl: kl[0], count: count[0], head };
  });
}

function expectMatches(
  got: { agree: number; kl: number; count: number },
  want: { agree: number; kl: number; count: number },
  what: string,
) {
  expect(got.count, `${what}: count`).toBe(want.count);
  expect(got.agree, `${what}: agree`).toBe(want.agree);
  expectClose([got.kl], [want.kl], 2e-4, 1e-6, `${what}: KL`);
}

describe('the float64 twin', () => {
  it('is agreementAndKLReference on the full logits h W^T', () => {
    const p = problem('twin', { B: 2, T: 3, d: 5, blockRows: [4, 7, 2], unselected: [1] });
    const V = 13;
    const W = p.head.flatMap((b) => Array.from(b));
    const logits = (x: Float32Array) => {
      const z = new Float64Array(6 * V);
      for (let r = 0; r < 6; r++) for (let v = 0; v < V; v++) for (let k = 0; k < p.d; k++) z[r * V + v] += x[r * p.d + k] * W[v * p.d + k];
      return z;
    };
    const want = agreementAndKLReference(logits(p.teacher), logits(p.student), p.mask, V);
    const got = twin(p);
    expect(got.count).toBe(5);
    expect(got.agree).toBe(want.agree);
    expect(Math.abs(got.kl - want.kl)).toBeLessThan(1e-12);
    expect(got.kl).toBeGreaterThan(0.01);
  });
});

describe('lmHeadAgreementAndKL', () => {
  it('matches the twin: unequal blocks, V and d off the tile sizes, a partial mask with NaN rows', async () => {
    await gpu();
    const p = problem('blocks', { B: 3, T: 11, d: 37, blockRows: [300, 37, 1, 450], unselected: [0, 7, 8, 32] });
    const want = twin(p);
    expect(want.agree).toBeGreaterThan(0);
    expect(want.agree).toBeLessThan(want.count);
    expectMatches(await onGpu(p), want, 'host mask');
    expectMatches(await onGpu(p, 'f32', true), want, 'tensor mask');
    // Unselected rows are never read: NaN there changes nothing.
    const poisoned = { ...p, teacher: p.teacher.slice(), student: p.student.slice() };
    poisoned.teacher.fill(Number.NaN, 7 * p.d, 9 * p.d);
    poisoned.student.fill(Number.NaN, 0, p.d);
    expectMatches(await onGpu(poisoned), want, 'NaN on unselected rows');
  });

  it('equals agreementAndKL on materialised logits, with the head in blocks under a forced binding limit', async () => {
    const ctx = await gpu();
    const p = problem('vs logits', { B: 2, T: 9, d: 16, blockRows: [640], unselected: [3] });
    const expected = await scope(async () => {
      const W = tensor(p.head[0], [640, 16]);
      const z = reshape(matmulRowBlocks(tensor(p.teacher, [18, 16]), [W]), [2, 9, 640]);
      const zs = reshape(matmulRowBlocks(tensor(p.student, [18, 16]), [W]), [2, 9, 640]);
      const r = agreementAndKL(z, zs, p.mask);
      const [agree, kl, count] = await readAll([r.agree, r.kl, r.count]);
      return { agree: agree[0], kl: kl[0], count: count[0] };
    });
    expectMatches(await onGpu(p), expected, 'one block');
    // 4 KiB blocks: 64 rows of width 16 each, ten of them.
    ctx.setBindingLimit(4096);
    const split = {
      ...p,
      blockRows: new Array(10).fill(64),
      head: Array.from({ length: 10 }, (_, i) => p.head[0].slice(i * 1024, (i + 1) * 1024)),
    };
    expectMatches(await onGpu(split), expected, 'ten 4 KiB blocks');
    const whole = () =>
      scope(() => lmHeadAgreementAndKL(tensor(p.teacher, [2, 9, 16]), tensor(p.student, [2, 9, 16]), tensor(p.head[0], [640, 16]), p.mask));
    expect(whole).toThrow(
      /lmHeadAgreementAndKL: 'headWeight' of shape \[640,16\] needs 40960 bytes, more than the storage binding limit \(4096 bytes\); split the head into row blocks/,
    );
  });

  it('reads a bf16 head as the twin reads its bf16 values', async () => {
    await gpu();
    const p = problem('bf16', { B: 2, T: 8, d: 20, blockRows: [150, 90], unselected: [5] });
    const got = await onGpu(p, 'bf16');
    expect(got.head[0]).not.toEqual(p.head[0]);
    expectMatches(got, twin({ ...p, head: got.head }), 'bf16 head');
  });

  it('identical teacher and student rows: KL 0 and every row agrees; a tie goes to the first vocabulary index, across blocks', async () => {
    await gpu();
    const p = problem('same', { B: 1, T: 20, d: 8, blockRows: [200, 130] });
    expectMatches(await onGpu({ ...p, student: p.teacher }), { agree: 20, kl: 0, count: 20 }, 'identical rows');
    // Head rows 5 (block 0) and 250 (row 50 of block 1) give the teacher the same largest logit,
    // 10 exactly; the student's largest is row 250 alone (13). The first index wins the tie: the
    // teacher's argmax is 5, and the row disagrees (it would agree if the tie went to 250).
    const d = 8;
    const rng = new Rng('tie');
    const head = [Float32Array.from(rng.normals(200 * d, 0.1)), Float32Array.from(rng.normals(130 * d, 0.1))];
    head[0].set([10, 0, 0, 0, 0, 0, 0, 0], 5 * d);
    head[1].set([10, 3, 0, 0, 0, 0, 0, 0], 50 * d);
    const tie: Problem = {
      B: 1,
      T: 1,
      d,
      blockRows: [200, 130],
      teacher: Float32Array.from([1, 0, 0, 0, 0, 0, 0, 0]),
      student: Float32Array.from([1, 1, 0, 0, 0, 0, 0, 0]),
      head,
      mask: [1],
    };
    expect(twin(tie).agree).toBe(0);
    expectMatches(await onGpu(tie), twin(tie), 'tie');
    // And the other way round: the student ties (rows 5 and 250) and the teacher's maximum is row 5 alone.
    const reversed: Problem = { ...tie, teacher: tie.student, student: tie.teacher };
    head[1].set([10, -3, 0, 0, 0, 0, 0, 0], 50 * d);
    expect(twin(reversed).agree).toBe(1);
    expectMatches(await onGpu(reversed), twin(reversed), 'tie on the student side');
  });

  it('names bad arguments before any GPU work and leaves no buffer behind', async () => {
    const ctx = await gpu();
    const before = liveBufferCount();
    const h = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
    const W = tensor(new Float32Array(10 * 4), [10, 4]);
    const transposed = tensor(new Float32Array(24), [2, 4, 3]);
    const flat = tensor(new Float32Array(24), [6, 4]);
    const narrow = tensor(new Float32Array(30), [10, 3]);
    const pending = ctx.pending;
    const call = (a: Tensor, b: Tensor, head: Tensor | Tensor[], mask: ArrayLike<number> | Tensor) => () =>
      lmHeadAgreementAndKL(a, b, head, mask);
    const ok = new Array(6).fill(1);
    expect(call(h, transposed, W, ok)).toThrow(/lmHeadAgreementAndKL: .*'studentHidden'/);
    expect(call(flat, h, W, ok)).toThrow(/lmHeadAgreementAndKL: argument 'teacherHidden' has shape \[6,4\]; expected rank 3/);
    expect(call(h, h, narrow, ok)).toThrow(/'headWeight' has shape \[10,3\]; its rows must have the hidden size d = 4/);
    expect(call(h, h, [], ok)).toThrow(/'headWeight' must be a \[V, d\] tensor or a non-empty list/);
    expect(call(h, h, W, [1, 1, 1])).toThrow(/lmHeadAgreementAndKL: .*'mask'/);
    expect(call(h, h, W, [1, 1, 1, 1, 1, 7])).toThrow(/lmHeadAgreementAndKL: .*'mask'/);
    expect(ctx.pending).toBe(pending);
    for (const t of [h, W, transposed, flat, narrow]) t.dispose();
    expect(liveBufferCount()).toBe(before);
    // A real call frees everything but its three results.
    const p = problem('buffers', { B: 2, T: 3, d: 4, blockRows: [9, 9] });
    await onGpu(p);
    expect(liveBufferCount()).toBe(before);
  });
});
