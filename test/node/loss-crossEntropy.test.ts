/** The distillation cross-entropy: GPU kernel and float64 twin against the PyTorch fixtures and each other. */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { LOSS_FIXTURES, loadLossFixture, type FixtureArray } from '../helpers/fixtures';
import { liveBufferCount, noGrad, scale, scope, tensor, type Tensor } from '../../src/index';
import { distillationCrossEntropy } from '../../src/losses/crossEntropy';
import {
  distillationCrossEntropyReference,
  distillationCrossEntropyReferenceBackward,
  type CrossEntropyReferenceInput,
} from '../../src/reference/crossEntropy';

const KEY = 'distillationCrossEntropyLoss';

function fromFixture(a: FixtureArray, requiresGrad = false): Tensor {
  return tensor(Float32Array.from(a.data), a.shape, { requiresGrad });
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomLogits(n: number, magnitude: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * r() - 1) * magnitude;
  return out;
}

/** Runs the GPU loss with a student that requires grad; returns the value and d/d(student). */
async function gpuLossAndGrad(input: CrossEntropyReferenceInput, maskAsTensor = false) {
  return scope(async () => {
    const z = tensor(Float32Array.from(input.teacher), input.shape);
    const zt = tensor(Float32Array.from(input.student), input.shape, { requiresGrad: true });
    const mask = maskAsTensor ? tensor(Float32Array.from(input.mask), input.shape.slice(0, 2)) : input.mask;
    const loss = distillationCrossEntropy(z, zt, mask);
    expect(loss.shape).toEqual([]);
    loss.backward();
    const value = await loss.item();
    const grad = (await zt.grad!.toArray()) as Float32Array;
    return { value, grad };
  });
}

describe('distillationCrossEntropy against the PyTorch fixtures', () => {
  for (const name of LOSS_FIXTURES) {
    const f = loadLossFixture(name);
    const expected = f.components[KEY];
    const input: CrossEntropyReferenceInput = {
      teacher: f.inputs.z.data,
      student: f.inputs.zt.data,
      mask: f.inputs.L.data,
      shape: [f.B, f.T, f.V],
    };

    it(`${name}: the float64 twin matches value and gradient to ~1e-9`, () => {
      expectClose([distillationCrossEntropyReference(input)], [expected.value], 1e-9, 1e-12, `${name} twin value`);
      expectClose(distillationCrossEntropyReferenceBackward(input), expected.grad.zt.data, 1e-9, 1e-12, `${name} twin grad zt`);
    });

    for (const maskAsTensor of [false, true]) {
      it(`${name}: the GPU kernel matches value and gradient (mask as ${maskAsTensor ? 'a tensor' : 'host data'})`, async () => {
        await gpu();
        const { value, grad } = await gpuLossAndGrad(input, maskAsTensor);
        expectClose([value], [expected.value], 1e-4, 1e-6, `${name} value`);
        expectClose(grad, expected.grad.zt.data, 1e-3, 1e-6, `${name} grad zt`);
      });
    }

    it(`${name}: no gradient reaches the teacher, and the outer gradient scales the student's`, async () => {
      await gpu();
      await scope(async () => {
        const z = fromFixture(f.inputs.z, true);
        const zt = fromFixture(f.inputs.zt, true);
        scale(distillationCrossEntropy(z, zt, f.inputs.L.data), 2.5).backward();
        expect(z.grad).toBeNull();
        const want = distillationCrossEntropyReferenceBackward(input, 2.5);
        expectClose((await zt.grad!.toArray()) as Float32Array, want, 1e-3, 1e-6, `${name} grad zt (outer gradient 2.5)`);
      });
    });
  }
});

describe('the float64 twin', () => {
  it('has the gradient of its own value (central finite differences)', () => {
    const shape = [2, 3, 7] as const;
    const n = shape[0] * shape[1] * shape[2];
    const teacher = Array.from(randomLogits(n, 3, 1));
    const student = Array.from(randomLogits(n, 3, 2));
    const mask = [1, 0, 1, 1, 1, 0];
    const grad = distillationCrossEntropyReferenceBackward({ teacher, student, mask, shape });
    const h = 1e-6;
    for (let i = 0; i < n; i++) {
      const plus = student.slice();
      const minus = student.slice();
      plus[i] += h;
      minus[i] -= h;
      const fd =
        (distillationCrossEntropyReference({ teacher, student: plus, mask, shape }) -
          distillationCrossEntropyReference({ teacher, student: minus, mask, shape })) /
        (2 * h);
      expect(Math.abs(fd - grad[i]), `element ${i}: finite difference ${fd}, analytic ${grad[i]}`).toBeLessThan(1e-8);
    }
    // Unselected rows (1 and 5) get exactly zero.
    for (const r of [1, 5]) for (let v = 0; v < shape[2]; v++) expect(grad[r * shape[2] + v]).toBe(0);
  });

  it('equals the cross-entropy of a hand-computed case', () => {
    // One row, V = 2: p = softmax([0, ln 3]) = [1/4, 3/4], log_softmax([0, 0]) = [-ln 2, -ln 2].
    const value = distillationCrossEntropyReference({ teacher: [0, Math.log(3)], student: [0, 0], mask: [1], shape: [1, 1, 2] });
    expect(value).toBeCloseTo(Math.log(2), 14);
    const grad = distillationCrossEntropyReferenceBackward({ teacher: [0, Math.log(3)], student: [0, 0], mask: [1], shape: [1, 1, 2] });
    expect(grad[0]).toBeCloseTo(0.5 - 0.25, 14);
    expect(grad[1]).toBeCloseTo(0.5 - 0.75, 14);
  });
});

describe('distillationCrossEntropy on large vocabularies', () => {
  it('handles V = 50,001 (not a multiple of 256) on B = 1, T = 2 like the float64 twin', async () => {
    await gpu();
    const shape = [1, 2, 50_001] as const;
    const n = 2 * shape[2];
    const input = { teacher: randomLogits(n, 4, 11), student: randomLogits(n, 4, 12), mask: [1, 1], shape };
    const { value, grad } = await gpuLossAndGrad(input);
    expectClose([value], [distillationCrossEntropyReference(input)], 1e-4, 1e-6, 'value');
    expectClose(grad, distillationCrossEntropyReferenceBackward(input), 1e-3, 1e-9, 'grad zt');
  });

  it('stays finite and accurate with logits of magnitude 1e4', async () => {
    await gpu();
    const shape = [1, 2, 65_537] as const;
    const n = 2 * shape[2];
    const input = { teacher: randomLogits(n, 1e4, 21), student: randomLogits(n, 1e4, 22), mask: [1, 1], shape };
    const { value, grad } = await gpuLossAndGrad(input);
    expect(Number.isFinite(value)).toBe(true);
    expect(grad.every(Number.isFinite)).toBe(true);
    const want = distillationCrossEntropyReference(input);
    expect(want).toBeGreaterThan(100); // the case really is far from the softmax's comfortable range
    expectClose([value], [want], 1e-5, 1e-3, 'value');
    expectClose(grad, distillationCrossEntropyReferenceBackward(input), 1e-3, 1e-6, 'grad zt');
  });

  it('reads rows of a multiple of 4 as vec4s in several uneven pieces, unselected rows included, like the twin', async () => {
    await gpu();
    // V = 1028: 257 chunks of 4, cut into pieces of 52 and a last one of 49 (src/losses/rowLayout.ts).
    const shape = [2, 3, 1028] as const;
    const n = 6 * shape[2];
    const input = { teacher: randomLogits(n, 30, 31), student: randomLogits(n, 30, 32), mask: [1, 0, 1, 1, 1, 0], shape };
    const { value, grad } = await gpuLossAndGrad(input);
    expectClose([value], [distillationCrossEntropyReference(input)], 1e-4, 1e-6, 'value');
    expectClose(grad, distillationCrossEntropyReferenceBackward(input), 1e-3, 1e-9, 'grad zt');
    for (const r of [1, 5]) expect(grad.subarray(r * shape[2], (r + 1) * shape[2]).every((g) => g === 0)).toBe(true);
  });

  it('selects rows out: NaN and Inf logits at unselected positions change nothing', async () => {
    await gpu();
    const shape = [2, 2, 300] as const;
    const V = shape[2];
    const teacher = randomLogits(4 * V, 5, 31);
    const student = randomLogits(4 * V, 5, 32);
    const mask = [1, 0, 0, 1];
    const clean = { teacher: Float32Array.from(teacher), student: Float32Array.from(student), mask, shape };
    for (const r of [1, 2]) {
      teacher[r * V + 3] = NaN;
      student[r * V + 7] = Infinity;
      student[r * V + 8] = -Infinity;
    }
    const { value, grad } = await gpuLossAndGrad({ teacher, student, mask, shape });
    expectClose([value], [distillationCrossEntropyReference(clean)], 1e-4, 1e-6, 'value');
    expectClose(grad, distillationCrossEntropyReferenceBackward(clean), 1e-3, 1e-8, 'grad zt');
    for (const r of [1, 2]) expect(grad.subarray(r * V, (r + 1) * V).every((g) => g === 0)).toBe(true);
  });

  it('gives 0 and an all-zero gradient for an empty mask', async () => {
    await gpu();
    const shape = [2, 3, 1000] as const;
    const n = 6 * shape[2];
    const { value, grad } = await gpuLossAndGrad({
      teacher: randomLogits(n, 3, 41),
      student: randomLogits(n, 3, 42),
      mask: [0, 0, 0, 0, 0, 0],
      shape,
    });
    expect(value).toBe(0);
    expect(grad.length).toBe(n);
    expect(grad.every((g) => g === 0)).toBe(true);
  });

  it('handles V = 1 (the loss is 0 and so is its gradient) and frees what it makes', async () => {
    await gpu();
    const before = liveBufferCount();
    const { value, grad } = await gpuLossAndGrad({ teacher: [3, -2], student: [5, 1e4], mask: [1, 1], shape: [1, 2, 1] });
    expect(value).toBe(0);
    expect(Array.from(grad)).toEqual([0, 0]);
    expect(liveBufferCount()).toBe(before);
  });
});

describe('distillationCrossEntropy buffer lifetimes', () => {
  it('frees its scratch and an uploaded mask with no graph, after backward, and when the loss is dropped unused', async () => {
    await gpu();
    const shape = [2, 2, 37] as const;
    const n = 4 * 37;
    const input = { teacher: randomLogits(n, 2, 51), student: randomLogits(n, 2, 52), mask: [1, 1, 0, 1], shape };
    const want = distillationCrossEntropyReference(input);
    const z = tensor(input.teacher, shape);
    const zt = tensor(input.student, shape, { requiresGrad: true });
    const before = liveBufferCount();
    // No graph recorded: only the scalar survives.
    const plain = noGrad(() => distillationCrossEntropy(z, zt, input.mask));
    expect(liveBufferCount()).toBe(before + 1);
    expectClose([await plain.item()], [want], 1e-4, 1e-6, 'value without grad');
    plain.dispose();
    // Recorded but never differentiated: disposing the loss frees what it saved.
    distillationCrossEntropy(z, zt, input.mask).dispose();
    expect(liveBufferCount()).toBe(before);
    // Differentiated: only the gradient remains.
    const loss = distillationCrossEntropy(z, zt, input.mask);
    loss.backward();
    loss.dispose();
    expect(liveBufferCount()).toBe(before + 1);
    zt.grad!.dispose();
    zt.grad = null;
    expect(liveBufferCount()).toBe(before);
    z.dispose();
    zt.dispose();
  });

  it('handles an empty batch (B = 0): value 0, an empty gradient', async () => {
    await gpu();
    const { value, grad } = await gpuLossAndGrad({ teacher: [], student: [], mask: [], shape: [0, 3, 5] });
    expect(value).toBe(0);
    expect(grad.length).toBe(0);
  });
});

describe('distillationCrossEntropy argument checks', () => {
  it('rejects bad inputs on the host, naming the function and the argument', async () => {
    await gpu();
    scope(() => {
      const a = tensor(new Float32Array(2 * 3 * 5), [2, 3, 5]);
      const b = tensor(new Float32Array(2 * 3 * 6), [2, 3, 6]);
      const flat = tensor(new Float32Array(30), [6, 5]);
      const ints = tensor(new Int32Array(30), [2, 3, 5]);
      const ok = [1, 0, 1, 1, 1, 0];
      expect(() => distillationCrossEntropy(a, b, ok)).toThrow(
        "distillationCrossEntropy: 'studentLogits' has shape [2,3,6] but 'teacherLogits' has shape [2,3,5]; they must match",
      );
      expect(() => distillationCrossEntropy(flat, flat, ok)).toThrow(
        /distillationCrossEntropy: argument 'teacherLogits' has shape \[6,5\]; expected rank 3/,
      );
      expect(() => distillationCrossEntropy(a, ints, ok)).toThrow(/distillationCrossEntropy: argument 'studentLogits' has dtype i32/);
      expect(() => distillationCrossEntropy(a, a, [1, 0, 1])).toThrow(/distillationCrossEntropy: mask 'lossMask' has 3 values; expected 6/);
      expect(() => distillationCrossEntropy(a, a, [1, 0, 2, 1, 1, 0])).toThrow(
        /distillationCrossEntropy: mask 'lossMask' must hold only 0 and 1; found 2 at index 2/,
      );
      expect(() => distillationCrossEntropy(a, a, tensor(new Float32Array(6), [3, 2]))).toThrow(
        /distillationCrossEntropy: mask 'lossMask' has shape \[3,2\]; expected \[2,3\]/,
      );
      const empty = tensor(new Float32Array(0), [2, 3, 0]);
      expect(() => distillationCrossEntropy(empty, empty, ok)).toThrow(/distillationCrossEntropy: .*vocabulary axis must not be empty/);
    });
  });

  it('the twin selects where the mask is non-zero (the one mask rule): 2 and 0.5 select like 1', () => {
    const at = (mask: number[]) =>
      distillationCrossEntropyReference({ teacher: [0, 1, 2, 0], student: [1, 0, 0, 3], mask, shape: [1, 2, 2] });
    expect(at([2, 0.5])).toBe(at([1, 1]));
    expect(at([0, 0.5])).toBe(at([0, 1]));
    expect(at([0, 1])).not.toBe(at([1, 1]));
  });
});
