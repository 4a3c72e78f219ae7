/**
 * The LM head fused with the distillation cross-entropy: GPU kernels against the float64 twin, the
 * twin against the unfused twin and finite differences, the GPU against the unfused GPU path
 * (matmul to logits + distillationCrossEntropy), the PyTorch fixtures where they apply, memory,
 * lifetimes and argument checks.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { FIXTURES_DIR, LOSS_FIXTURES, loadLossFixture, readFixtureJson, type FixtureArray } from '../helpers/fixtures';
import { Rng } from '../helpers/random';
import { getContext, liveBufferCount, losses, matmul, noGrad, reshape, scale, scope, tensor } from '../../src/index';
import { distillationCrossEntropy } from '../../src/losses/crossEntropy';
import { lmHeadChunkColumns, lmHeadDistillationCrossEntropy, type LmHeadCrossEntropyOptions } from '../../src/losses/lmHeadCrossEntropy';
import { parseSafetensors, toFloat32 } from '../../src/models/safetensors';
import {
  lmHeadDistillationCrossEntropyReference,
  lmHeadDistillationCrossEntropyReferenceBackward,
  type LmHeadCrossEntropyReferenceInput,
} from '../../src/reference/index';
import { distillationCrossEntropyReference, distillationCrossEntropyReferenceBackward } from '../../src/reference/crossEntropy';

/** A test problem: hidden states `[B, T, d]` (or `[N, d]`), the head as row blocks, a mask. */
interface Problem {
  /** `[B, T]`, or null for rank-2 hidden states `[N, d]`. */
  batch: [number, number] | null;
  rows: number;
  d: number;
  blockRows: number[];
  teacher: Float32Array;
  student: Float32Array;
  head: Float32Array[];
  mask: number[];
}

/**
 * Random hidden states and head rows (f32 values, so that the twin sees what the GPU sees). The
 * logits' spread is about `spread` (hidden ~ N(0,1), head rows scaled by spread / sqrt(d)).
 */
function problem(
  seed: string,
  o: { batch?: [number, number]; rows?: number; d: number; blockRows: number[]; spread?: number; unselected?: number[] },
): Problem {
  const rng = new Rng(seed);
  const rows = o.batch ? o.batch[0] * o.batch[1] : o.rows!;
  const w = (o.spread ?? 3) / Math.sqrt(o.d);
  const mask = Array.from({ length: rows }, (_, r) => (o.unselected?.includes(r) ? 0 : 1));
  return {
    batch: o.batch ?? null,
    rows,
    d: o.d,
    blockRows: o.blockRows,
    teacher: Float32Array.from(rng.normals(rows * o.d)),
    student: Float32Array.from(rng.normals(rows * o.d)),
    head: o.blockRows.map((v) => Float32Array.from(rng.normals(v * o.d, w))),
    mask,
  };
}

function twinInput(p: Problem): LmHeadCrossEntropyReferenceInput {
  return { teacherHidden: p.teacher, studentHidden: p.student, headBlocks: p.head, mask: p.mask, rows: p.rows, hidden: p.d };
}

function hiddenShape(p: Problem): number[] {
  return p.batch ? [...p.batch, p.d] : [p.rows, p.d];
}

/** The head rows of every block, concatenated: `[V, d]`. */
function concatHead(p: Problem): Float32Array {
  const out = new Float32Array(p.blockRows.reduce((a, b) => a + b, 0) * p.d);
  let at = 0;
  for (const b of p.head) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

interface RunOptions {
  options?: LmHeadCrossEntropyOptions;
  maskAsTensor?: boolean;
  /** Pass a one-block head as a tensor rather than a list. */
  headAsTensor?: boolean;
  outerGradient?: number;
}

/** The fused loss on the GPU with a student that requires grad: the value and d/d(student). */
async function fused(p: Problem, run: RunOptions = {}): Promise<{ value: number; grad: Float32Array }> {
  return scope(async () => {
    const shape = hiddenShape(p);
    const h = tensor(p.teacher, shape);
    const hs = tensor(p.student, shape, { requiresGrad: true });
    const blocks = p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d]));
    const mask = run.maskAsTensor ? tensor(Float32Array.from(p.mask), p.batch ?? [p.rows]) : p.mask;
    const loss = lmHeadDistillationCrossEntropy(h, hs, run.headAsTensor ? blocks[0] : blocks, mask, run.options);
    expect(loss.shape).toEqual([]);
    (run.outerGradient === undefined ? loss : scale(loss, run.outerGradient)).backward();
    const value = await loss.item();
    const grad = (await hs.grad!.toArray()) as Float32Array;
    return { value, grad };
  });
}

/** The unfused GPU path: logits by matmul with the whole head, then distillationCrossEntropy. */
async function unfused(p: Problem): Promise<{ value: number; grad: Float32Array }> {
  return scope(async () => {
    const [B, T] = p.batch ?? [1, p.rows];
    const V = p.blockRows.reduce((a, b) => a + b, 0);
    const h = tensor(p.teacher, [p.rows, p.d]);
    const hs = tensor(p.student, [p.rows, p.d], { requiresGrad: true });
    const W = tensor(concatHead(p), [V, p.d]);
    const z = noGrad(() => reshape(matmul(h, W, { transposeB: true }), [B, T, V]));
    const zs = reshape(matmul(hs, W, { transposeB: true }), [B, T, V]);
    const loss = distillationCrossEntropy(z, zs, p.mask);
    loss.backward();
    return { value: await loss.item(), grad: (await hs.grad!.toArray()) as Float32Array };
  });
}

function expectTwin(p: Problem, got: { value: number; grad: Float32Array }, what: string, outerGradient = 1): void {
  const input = twinInput(p);
  expectClose([got.value], [lmHeadDistillationCrossEntropyReference(input)], 1e-4, 1e-6, `${what}: value`);
  expectClose(got.grad, lmHeadDistillationCrossEntropyReferenceBackward(input, outerGradient), 1e-3, 1e-6, `${what}: grad of the student`);
}

describe('the float64 twin', () => {
  it('equals the unfused twin on materialised logits (value and the gradient through the head)', () => {
    const p = problem('twin vs unfused', { batch: [2, 3], d: 5, blockRows: [4, 7, 2], unselected: [1, 4] });
    const input = twinInput(p);
    const V = 13;
    const W = concatHead(p);
    const logits = (x: Float32Array) => {
      const z = new Float64Array(p.rows * V);
      for (let r = 0; r < p.rows; r++)
        for (let v = 0; v < V; v++) for (let k = 0; k < p.d; k++) z[r * V + v] += x[r * p.d + k] * W[v * p.d + k];
      return z;
    };
    const ce = { teacher: logits(p.teacher), student: logits(p.student), mask: p.mask, shape: [2, 3, V] as const };
    expect(Math.abs(lmHeadDistillationCrossEntropyReference(input) - distillationCrossEntropyReference(ce))).toBeLessThan(1e-12);
    const gLogits = distillationCrossEntropyReferenceBackward(ce, 0.7);
    const want = new Float64Array(p.rows * p.d);
    for (let r = 0; r < p.rows; r++)
      for (let v = 0; v < V; v++) for (let k = 0; k < p.d; k++) want[r * p.d + k] += gLogits[r * V + v] * W[v * p.d + k];
    expectClose(lmHeadDistillationCrossEntropyReferenceBackward(input, 0.7), want, 1e-12, 1e-14, 'gradient');
  });

  it('has the gradient of its own value (central finite differences), and 0 on unselected rows', () => {
    const p = problem('twin fd', { rows: 4, d: 3, blockRows: [5, 2], unselected: [2] });
    const input = twinInput(p);
    const grad = lmHeadDistillationCrossEntropyReferenceBackward(input);
    const student = Array.from(p.student);
    const h = 1e-6;
    for (let i = 0; i < student.length; i++) {
      const plus = student.slice();
      const minus = student.slice();
      plus[i] += h;
      minus[i] -= h;
      const fd =
        (lmHeadDistillationCrossEntropyReference({ ...input, studentHidden: plus }) -
          lmHeadDistillationCrossEntropyReference({ ...input, studentHidden: minus })) /
        (2 * h);
      expect(Math.abs(fd - grad[i]), `element ${i}: finite difference ${fd}, analytic ${grad[i]}`).toBeLessThan(1e-8);
    }
    for (let k = 0; k < p.d; k++) expect(grad[2 * p.d + k]).toBe(0);
  });

  it('gives 0 and a zero gradient for an empty mask, and rejects bad input', () => {
    const p = problem('twin empty', { rows: 3, d: 2, blockRows: [3], unselected: [0, 1, 2] });
    expect(lmHeadDistillationCrossEntropyReference(twinInput(p))).toBe(0);
    expect(lmHeadDistillationCrossEntropyReferenceBackward(twinInput(p)).every((g) => g === 0)).toBe(true);
    // The one mask rule: a non-zero value selects, and does not weight.
    expect(lmHeadDistillationCrossEntropyReference({ ...twinInput(p), mask: [1, 2, 0] })).toBe(
      lmHeadDistillationCrossEntropyReference({ ...twinInput(p), mask: [1, 1, 0] }),
    );
    expect(() => lmHeadDistillationCrossEntropyReference({ ...twinInput(p), headBlocks: [[1, 2, 3]] })).toThrow(/not a multiple of 2/);
  });
});

describe('lmHeadDistillationCrossEntropy against the float64 twin', () => {
  it('several blocks of unequal size, V not a multiple of the chunk, d not a multiple of 16, a partial mask', async () => {
    await gpu();
    const p = problem('blocks', { batch: [3, 7], d: 37, blockRows: [100, 37, 300], unselected: [0, 5, 6, 20] });
    expectTwin(p, await fused(p), 'default options');
    expectTwin(p, await fused(p, { maskAsTensor: true }), 'mask as a tensor');
  });

  for (const chunkColumns of [128, 256] as const) {
    it(`chunk ${chunkColumns}, windows of one chunk (several backward windows per block)`, async () => {
      const ctx = await gpu();
      const p = problem(`windows ${chunkColumns}`, { batch: [2, 20], d: 24, blockRows: [700, 129, 1], unselected: [3, 17, 39] });
      if (chunkColumns > lmHeadChunkColumns(ctx.limits)) {
        // This device cannot hold the wide variant's tiles: the option is refused by name.
        await expect(fused(p, { options: { chunkColumns } })).rejects.toThrow(/'chunkColumns' 256 needs .* maxComputeWorkgroupStorageSize/);
        return;
      }
      expectTwin(p, await fused(p, { options: { chunkColumns, maxScratchBytes: 1 } }), `chunk ${chunkColumns}, one-chunk windows`);
      expectTwin(
        p,
        await fused(p, { options: { chunkColumns, maxScratchBytes: 40 * 4 * 300 } }),
        `chunk ${chunkColumns}, ~300-row windows`,
      );
    });
  }

  it('rank-2 hidden states [N, d] with a [N] mask tensor, and a head given as one tensor', async () => {
    await gpu();
    const p = problem('rank 2', { rows: 33, d: 16, blockRows: [517], unselected: [0, 32] });
    expectTwin(p, await fused(p, { maskAsTensor: true, headAsTensor: true }), 'rank 2');
  });

  it('stays finite and accurate with logits spread over hundreds (online rescaling)', async () => {
    await gpu();
    const p = problem('large logits', { rows: 20, d: 32, blockRows: [600, 411], spread: 300 });
    const got = await fused(p);
    expect(Number.isFinite(got.value)).toBe(true);
    expect(lmHeadDistillationCrossEntropyReference(twinInput(p))).toBeGreaterThan(50);
    expectTwin(p, got, 'large logits');
  });

  it('a bf16 head (widened as it loads) against the twin on the bf16 values', async () => {
    await gpu();
    const p = problem('bf16 head', { batch: [2, 9], d: 20, blockRows: [150, 90], unselected: [4] });
    const got = await scope(async () => {
      const h = tensor(p.teacher, [2, 9, 20]);
      const hs = tensor(p.student, [2, 9, 20], { requiresGrad: true });
      const blocks = p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d], { dtype: 'bf16' }));
      const rounded = (await Promise.all(blocks.map((b) => b.toArray()))) as Float32Array[];
      const loss = lmHeadDistillationCrossEntropy(h, hs, blocks, p.mask);
      loss.backward();
      return { value: await loss.item(), grad: (await hs.grad!.toArray()) as Float32Array, rounded };
    });
    expect(got.rounded[0]).not.toEqual(p.head[0]); // the values really were rounded
    expectTwin({ ...p, head: got.rounded }, got, 'bf16 head');
  });

  it('passes an outer gradient through and gives the teacher none', async () => {
    await gpu();
    const p = problem('outer', { batch: [2, 5], d: 8, blockRows: [60, 70], unselected: [1] });
    await scope(async () => {
      const h = tensor(p.teacher, [2, 5, 8], { requiresGrad: true });
      const hs = tensor(p.student, [2, 5, 8], { requiresGrad: true });
      const blocks = p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d]));
      scale(lmHeadDistillationCrossEntropy(h, hs, blocks, p.mask), 2.5).backward();
      expect(h.grad).toBeNull();
      const want = lmHeadDistillationCrossEntropyReferenceBackward(twinInput(p), 2.5);
      expectClose((await hs.grad!.toArray()) as Float32Array, want, 1e-3, 1e-6, 'grad (outer gradient 2.5)');
    });
  });

  it('selects rows out: NaN and Inf hidden states at unselected rows change nothing', async () => {
    await gpu();
    const p = problem('nan rows', { batch: [2, 10], d: 12, blockRows: [200, 50], unselected: [2, 3, 19] });
    const dirty: Problem = { ...p, teacher: p.teacher.slice(), student: p.student.slice() };
    for (const r of [2, 3, 19]) {
      dirty.teacher[r * p.d + 1] = NaN;
      dirty.student[r * p.d + 2] = Infinity;
      dirty.student[r * p.d + 3] = NaN;
    }
    const got = await fused(dirty);
    expectTwin(p, got, 'NaN at unselected rows');
    for (const r of [2, 3, 19]) expect(got.grad.subarray(r * p.d, (r + 1) * p.d).every((g) => g === 0)).toBe(true);
  });

  it('gives 0 and an all-zero gradient for an empty mask, as distillationCrossEntropy does', async () => {
    await gpu();
    const p = problem('empty mask', { batch: [2, 3], d: 10, blockRows: [40, 41], unselected: [0, 1, 2, 3, 4, 5] });
    const got = await fused(p);
    expect(got.value).toBe(0);
    expect(got.grad.length).toBe(60);
    expect(got.grad.every((g) => g === 0)).toBe(true);
    expect((await unfused(p)).value).toBe(0);
  });

  it('handles an empty batch (B = 0): value 0, an empty gradient', async () => {
    await gpu();
    const p = problem('empty batch', { batch: [0, 4], d: 6, blockRows: [10] });
    const got = await fused(p);
    expect(got.value).toBe(0);
    expect(got.grad.length).toBe(0);
  });
});

describe('lmHeadDistillationCrossEntropy against the unfused GPU path (matmul + distillationCrossEntropy)', () => {
  it('the same value and gradient of the student, on several blocks', async () => {
    await gpu();
    const p = problem('fused vs unfused', { batch: [3, 11], d: 48, blockRows: [513, 250, 64], unselected: [0, 10, 11, 32] });
    const a = await fused(p, { options: { maxScratchBytes: 33 * 4 * 256 } });
    const b = await unfused(p);
    expectClose([a.value], [b.value], 1e-5, 1e-6, 'value');
    expectClose(a.grad, b.grad, 1e-3, 1e-6, 'grad of the student');
  });

  it('peaks far below the unfused path: no [N, V] tensor', async () => {
    const ctx = await gpu();
    const p = problem('peak', { rows: 64, d: 16, blockRows: [6000, 2192] });
    const logitsBytes = p.rows * 8192 * 4;
    const peakOf = async (run: () => Promise<unknown>) => {
      const before = ctx.pool.liveBytes;
      ctx.pool.resetPeak();
      await run();
      return ctx.pool.peakLiveBytes - before;
    };
    const fusedPeak = await peakOf(() => fused(p, { options: { maxScratchBytes: 64 * 1024 } }));
    const unfusedPeak = await peakOf(() => unfused(p));
    expect(unfusedPeak).toBeGreaterThan(2 * logitsBytes);
    // Inputs, head, gradient, statistics and one 64 KiB window: under half of one logits tensor.
    expect(fusedPeak).toBeLessThan(logitsBytes / 2);
  });
});

describe('lmHeadDistillationCrossEntropy on the PyTorch loss fixtures', () => {
  // The loss fixtures give the logits z, zt but no final hidden states of them (their h, ht are
  // another layer's states, and z is not h E^T), so the head cannot be checked on them. What can
  // be checked is the cross-entropy and its gradient through the fused path: with the identity as
  // the head (hidden = logits, d = V, W = I split in unequal blocks), the fused value is the
  // fixture's distillationCrossEntropyLoss and the student's gradient its grad.zt.
  for (const name of LOSS_FIXTURES) {
    it(`${name}: identity head in three blocks reproduces the value and grad.zt`, async () => {
      await gpu();
      const f = loadLossFixture(name);
      const expected = f.components.distillationCrossEntropyLoss;
      const V = f.V;
      const sizes = [V - 18, 11, 7];
      const { value, grad } = await scope(async () => {
        const z = tensor(Float32Array.from(f.inputs.z.data), [f.B, f.T, V]);
        const zt = tensor(Float32Array.from(f.inputs.zt.data), [f.B, f.T, V], { requiresGrad: true });
        let start = 0;
        const blocks = sizes.map((n) => {
          const eye = new Float32Array(n * V);
          for (let i = 0; i < n; i++) eye[i * V + start + i] = 1;
          start += n;
          return tensor(eye, [n, V]);
        });
        const loss = lmHeadDistillationCrossEntropy(z, zt, blocks, f.inputs.L.data);
        loss.backward();
        return { value: await loss.item(), grad: (await zt.grad!.toArray()) as Float32Array };
      });
      expectClose([value], [expected.value], 1e-4, 1e-6, `${name} value`);
      expectClose(grad, expected.grad.zt.data, 1e-3, 1e-6, `${name} grad zt`);
    });
  }
});

describe('lmHeadDistillationCrossEntropy on the tiny-llama fixture (a real head)', () => {
  // The model fixture gives the last block's output, the final norm's weight, lm_head.weight and
  // PyTorch's logits. The test applies the final RMSNorm in float64 to get the final hidden states;
  // the student's hidden state of position r is the teacher's of another real position, so the
  // expected loss and gradient follow from PyTorch's logits and the head alone.
  it("matches the cross-entropy of PyTorch's logits and the gradient (q - p) W / |L|", async () => {
    await gpu();
    const dir = resolve(FIXTURES_DIR, 'tiny-llama');
    const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as { rms_norm_eps: number };
    const file = parseSafetensors(new Uint8Array(readFileSync(resolve(dir, 'model.safetensors'))));
    const ref = readFixtureJson<{ attentionMask: FixtureArray; blockOutputs: FixtureArray[]; logits: FixtureArray }>(
      'tiny-llama/reference.json',
    );
    const last = ref.blockOutputs[ref.blockOutputs.length - 1];
    const [B, T, d] = last.shape;
    const V = ref.logits.shape[2];
    const norm = toFloat32(file.tensors.get('model.norm.weight')!);
    const W = toFloat32(file.tensors.get('lm_head.weight')!);
    const rows = B * T;
    const hidden = new Float32Array(rows * d);
    for (let r = 0; r < rows; r++) {
      let ms = 0;
      for (let k = 0; k < d; k++) ms += last.data[r * d + k] ** 2;
      const inv = 1 / Math.sqrt(ms / d + config.rms_norm_eps);
      for (let k = 0; k < d; k++) hidden[r * d + k] = last.data[r * d + k] * inv * norm[k];
    }
    const real = ref.attentionMask.data.flatMap((m, r) => (m === 1 ? [r] : []));
    const partner = new Map(real.map((r, i) => [r, real[(i + 3) % real.length]]));
    const student = new Float32Array(rows * d);
    const studentLogits = new Float64Array(rows * V);
    for (let r = 0; r < rows; r++) {
      const src = partner.get(r) ?? r;
      student.set(hidden.subarray(src * d, (src + 1) * d), r * d);
      studentLogits.set(ref.logits.data.slice(src * V, (src + 1) * V), r * V);
    }
    const mask = ref.attentionMask.data;
    const ce = { teacher: ref.logits.data, student: studentLogits, mask, shape: [B, T, V] as const };
    const gLogits = distillationCrossEntropyReferenceBackward(ce);
    const wantGrad = new Float64Array(rows * d);
    for (let r = 0; r < rows; r++)
      for (let v = 0; v < V; v++) for (let k = 0; k < d; k++) wantGrad[r * d + k] += gLogits[r * V + v] * W[v * d + k];

    const { value, grad } = await scope(async () => {
      const h = tensor(hidden, [B, T, d]);
      const hs = tensor(student, [B, T, d], { requiresGrad: true });
      const blocks = [tensor(W.subarray(0, 50 * d), [50, d]), tensor(W.subarray(50 * d), [V - 50, d])];
      const loss = losses.lmHeadDistillationCrossEntropy(h, hs, blocks, mask);
      loss.backward();
      return { value: await loss.item(), grad: (await hs.grad!.toArray()) as Float32Array };
    });
    expectClose([value], [distillationCrossEntropyReference(ce)], 1e-4, 1e-6, 'value');
    expectClose(grad, wantGrad, 1e-3, 1e-6, 'grad of the student hidden states');
  });
});

describe('lmHeadDistillationCrossEntropy under a small storage binding limit', () => {
  it('takes a head split into blocks that each fit, and names a block that does not', async () => {
    const ctx = await gpu();
    const p = problem('binding limit', { rows: 4, d: 8, blockRows: [128, 128, 44], unselected: [2] });
    ctx.setBindingLimit(4096); // 128 head rows of width 8
    try {
      expectTwin(p, await fused(p), 'blocks of 4 KiB under a 4 KiB limit');
      const whole: Problem = { ...p, blockRows: [300], head: [concatHead(p)] };
      await expect(fused(whole)).rejects.toThrow(
        "lmHeadDistillationCrossEntropy: 'headWeight[0]' of shape [300,8] needs 9600 bytes, more than the storage binding limit " +
          '(4096 bytes); split the head into row blocks that each fit',
      );
      const tall = problem('binding limit rows', { rows: 9, d: 8, blockRows: [128] });
      const chunkBytes = 9 * lmHeadChunkColumns(ctx.limits) * 4; // over 4096 for either chunk
      await expect(fused(tall)).rejects.toThrow(
        `9 rows need a scratch of ${chunkBytes} bytes for one vocabulary chunk, more than the storage binding limit`,
      );
    } finally {
      ctx.setBindingLimit(null);
    }
  });
});

describe('lmHeadDistillationCrossEntropy buffer lifetimes', () => {
  it('leaves the live-buffer count unchanged after forward + backward in a scope', async () => {
    await gpu();
    const p = problem('lifetimes', { batch: [2, 9], d: 20, blockRows: [300, 77], unselected: [3] });
    const before = liveBufferCount();
    await fused(p, { options: { maxScratchBytes: 1 } });
    await fused(p, { maskAsTensor: true });
    expect(liveBufferCount()).toBe(before);
  });

  it('frees its scratch and an uploaded mask with no graph, after backward, and when the loss is dropped unused', async () => {
    await gpu();
    const p = problem('lifetimes 2', { batch: [2, 4], d: 8, blockRows: [90, 10], unselected: [1] });
    const want = lmHeadDistillationCrossEntropyReference(twinInput(p));
    const h = tensor(p.teacher, [2, 4, 8]);
    const hs = tensor(p.student, [2, 4, 8], { requiresGrad: true });
    const blocks = p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d]));
    const before = liveBufferCount();
    const plain = noGrad(() => lmHeadDistillationCrossEntropy(h, hs, blocks, p.mask));
    expect(liveBufferCount()).toBe(before + 1);
    expectClose([await plain.item()], [want], 1e-4, 1e-6, 'value without grad');
    plain.dispose();
    lmHeadDistillationCrossEntropy(h, hs, blocks, p.mask).dispose();
    expect(liveBufferCount()).toBe(before);
    const loss = lmHeadDistillationCrossEntropy(h, hs, blocks, p.mask);
    loss.backward();
    loss.dispose();
    expect(liveBufferCount()).toBe(before + 1);
    hs.grad!.dispose();
    hs.grad = null;
    expect(liveBufferCount()).toBe(before);
    for (const t of [h, hs, ...blocks]) t.dispose();
  });
});

describe('lmHeadDistillationCrossEntropy argument checks', () => {
  it('rejects bad inputs on the host, naming the function and the argument', async () => {
    await gpu();
    const fn = 'lmHeadDistillationCrossEntropy';
    const live = liveBufferCount();
    scope(() => {
      const h = tensor(new Float32Array(2 * 3 * 4), [2, 3, 4]);
      const other = tensor(new Float32Array(2 * 3 * 5), [2, 3, 5]);
      const W = tensor(new Float32Array(10 * 4), [10, 4]);
      const W5 = tensor(new Float32Array(10 * 5), [10, 5]);
      const ok = [1, 0, 1, 1, 1, 0];
      const call =
        (...args: Parameters<typeof lmHeadDistillationCrossEntropy>) =>
        () =>
          lmHeadDistillationCrossEntropy(...args);
      expect(call(h, other, W, ok)).toThrow(
        `${fn}: 'teacherHidden' has shape [2,3,4] but 'studentHidden' has shape [2,3,5]; they must match`,
      );
      const flat = tensor(new Float32Array(24), [24]);
      expect(call(flat, flat, W, ok)).toThrow(`${fn}: argument 'studentHidden' has shape [24]; expected [B, T, d] or [N, d]`);
      const ints = tensor(new Int32Array(24), [2, 3, 4]);
      expect(call(h, ints, W, ok)).toThrow(/lmHeadDistillationCrossEntropy: argument 'studentHidden' has dtype i32; expected f32/);
      expect(call(h, h, [W, W5], ok)).toThrow(
        `${fn}: 'headWeight[1]' has shape [10,5]; its rows must have the hidden size d = 4 of 'studentHidden'`,
      );
      expect(call(h, h, W5, ok)).toThrow(`${fn}: 'headWeight' has shape [10,5]; its rows must have the hidden size d = 4`);
      expect(call(h, h, [], ok)).toThrow(/'headWeight' must be a \[V, d\] tensor or a non-empty list/);
      expect(call(h, h, [tensor(new Float32Array(0), [0, 4])], ok)).toThrow(/the vocabulary must not be empty/);
      expect(call(h, h, [tensor(new Int32Array(40), [10, 4])], ok)).toThrow(/'headWeight\[0\]' has dtype i32; expected f32, bf16 or f16/);
      expect(call(h, h, tensor(new Float32Array(40), [40]), ok)).toThrow(/'headWeight' has shape \[40\]; expected rank 2/);
      const trainable = tensor(new Float32Array(40), [10, 4], { requiresGrad: true });
      expect(call(h, h, trainable, ok)).toThrow(/'headWeight' requires grad, but the fused head is frozen/);
      const empty = tensor(new Float32Array(0), [2, 3, 0]);
      expect(call(empty, empty, tensor(new Float32Array(0), [3, 0]), ok)).toThrow(/the hidden size must not be 0/);
      expect(call(h, h, W, [1, 0, 1])).toThrow(`${fn}: mask 'lossMask' has 3 values; expected 6 for shape [2,3]`);
      expect(call(h, h, W, [1, 0, 2, 1, 1, 0])).toThrow(/mask 'lossMask' must hold only 0 and 1; found 2 at index 2/);
      expect(call(h, h, W, tensor(new Float32Array(6), [6]))).toThrow(/mask 'lossMask' has shape \[6\]; expected \[2,3\]/);
      const h2 = tensor(new Float32Array(6 * 4), [6, 4]);
      expect(call(h2, h2, W, [1, 0])).toThrow(`${fn}: mask 'lossMask' has 2 values; expected 6 (one per hidden row)`);
      expect(call(h2, h2, W, tensor(new Float32Array(6), [2, 3]))).toThrow(/mask 'lossMask' has shape \[2,3\]; expected \[6\]/);
      expect(call(h2, h2, W, [1, 1, 1, 1, 1, 3])).toThrow(/mask 'lossMask' must hold only 0 and 1; found 3 at index 5/);
      expect(call(h, h, W, ok, { maxScratchBytes: 0 })).toThrow(`${fn}: 'maxScratchBytes' must be positive, got 0`);
      expect(call(h, h, W, ok, { chunkColumns: 64 as 128 })).toThrow(`${fn}: option 'chunkColumns' must be 128 or 256, got 64`);
      const disposed = tensor(new Float32Array(40), [10, 4]);
      disposed.dispose();
      expect(call(h, h, [W, disposed], ok)).toThrow(/argument 'headWeight\[1\]'\): tensor of shape \[10,4\] was used after dispose/);
    });
    expect(liveBufferCount()).toBe(live);
    expect(getContext().pending).toBe(0);
  });

  it('picks the chunk from the workgroup memory limit', () => {
    expect(lmHeadChunkColumns({ maxComputeWorkgroupStorageSize: 16384 })).toBe(128);
    expect(lmHeadChunkColumns({ maxComputeWorkgroupStorageSize: 32768 })).toBe(256);
    expect(() => lmHeadChunkColumns({ maxComputeWorkgroupStorageSize: 8192 })).toThrow(/below the 10244 bytes the kernels need/);
  });
});
