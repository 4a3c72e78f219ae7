/**
 * Every component loss in a real page (headless Chromium, WebGPU on SwiftShader) against the
 * float64 PyTorch fixtures `../shared/fixtures/losses-*.json`: the value to 1e-4 relative and
 * every gradient the fixture lists to 1e-3 relative (with an absolute floor of 1e-5 of the
 * array's largest element), with the argument conventions of the Node tests (test/node/loss-*).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { embeddingStats, liveBufferCount, losses, matmul, noGrad, readAll, reshape, scope, tensor, type Tensor } from '../../src/index';
import {
  lmHeadDistillationCrossEntropyReference,
  lmHeadDistillationCrossEntropyReferenceBackward,
  type LmHeadCrossEntropyReferenceInput,
} from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import { browserGpu } from './browser-gpu';
import { LOSS_FIXTURES, loadLossFixture, type FixtureArray, type LossFixture } from './fixtures';

type InputName = keyof LossFixture['inputs'];

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Tolerance floor for gradient elements near zero: relative to the array's largest element. */
function gradAtol(expected: ArrayLike<number>): number {
  return Math.max(1e-5 * maxAbs(expected), 1e-30);
}

/** An input of the fixture as a tensor (float32), requiring grad when asked. */
function input(f: LossFixture, name: InputName, requiresGrad = false): Tensor {
  const a: FixtureArray = f.inputs[name];
  return tensor(Float32Array.from(a.data), a.shape, { requiresGrad });
}

interface LossCase {
  /** `losses.*` name. */
  fn: keyof typeof losses;
  /** Fixture component key. */
  key: string;
  /**
   * Builds the loss from the fixture; `leaf(name)` makes the input tensors, those whose names are in
   * the component's gradient list requiring grad.
   */
  build: (f: LossFixture, leaf: (name: InputName) => Tensor) => Tensor;
}

const CASES: LossCase[] = [
  {
    fn: 'distillationLayerCosineDistance',
    key: 'distillationLayerCosineDistanceLoss',
    build: (f, leaf) => losses.distillationLayerCosineDistance(leaf('h'), leaf('ht'), f.inputs.L.data),
  },
  {
    fn: 'distillationLayerL2Distance',
    key: 'distillationLayerL2DistanceLoss',
    build: (f, leaf) => losses.distillationLayerL2Distance(leaf('h'), leaf('ht'), f.inputs.L.data),
  },
  {
    fn: 'distillationCrossEntropy',
    key: 'distillationCrossEntropyLoss',
    build: (f, leaf) => losses.distillationCrossEntropy(leaf('z'), leaf('zt'), f.inputs.L.data),
  },
  {
    fn: 'stdLogRatio',
    key: 'stdLogRatioLoss',
    build: (f, leaf) => losses.stdLogRatio(leaf('sigma'), tensor(Float32Array.from(f.stats.s.data), f.stats.s.shape), f.inputs.N.data),
  },
  {
    fn: 'inputEmbeddingSimilarity',
    key: 'inputEmbeddingSimilarityLoss',
    build: (f, leaf) => losses.inputEmbeddingSimilarity(leaf('x'), leaf('xt'), f.inputs.N.data),
  },
  {
    fn: 'absoluteCosineSimilarity',
    key: 'absoluteCosineSimilarityPenalty',
    build: (f, leaf) => losses.absoluteCosineSimilarity(leaf('x'), leaf('xt'), f.inputs.N.data),
  },
  {
    fn: 'medianNormPenalty',
    key: 'medianNormPenalty',
    build: (f, leaf) => losses.medianNormPenalty(leaf('x'), leaf('mu'), f.stats.m, f.inputs.N.data),
  },
  {
    fn: 'inverseL2PowerLawCatalyst',
    key: 'inverseL2PowerLawCatalystLoss',
    build: (f, leaf) =>
      losses.inverseL2PowerLawCatalyst(leaf('xt'), leaf('E'), f.inputs.N.data, { characteristicLength: f.ell, exponentOfDecay: f.p }),
  },
  {
    fn: 'mutualInformation',
    key: 'mutualInformationLoss',
    build: (f, leaf) =>
      losses.mutualInformation(leaf('x'), leaf('xt'), leaf('mu'), leaf('sigma'), f.inputs.N.data, {
        combineNoiseMasks: f.combine,
        attentionMask: f.inputs.A.data,
      }),
  },
];

beforeAll(async () => {
  await browserGpu();
});

describe.each(LOSS_FIXTURES)('%s in Chromium', (fixtureName) => {
  let f: LossFixture;

  beforeAll(async () => {
    f = await loadLossFixture(fixtureName);
  });

  it('is the fixture it claims to be', () => {
    expect(f.inputs.E.shape).toEqual([f.V, f.d]);
    expect(f.inputs.x.shape).toEqual([f.B, f.T, f.d]);
    expect(Object.keys(f.components).sort()).toEqual(CASES.map((c) => c.key).sort());
  });

  for (const c of CASES) {
    it(`${c.fn} matches PyTorch: value and every listed gradient`, async () => {
      const expected = f.components[c.key];
      const gradNames = Object.keys(expected.grad) as InputName[];
      expect(gradNames.length, `${c.key} lists gradients`).toBeGreaterThan(0);
      const before = liveBufferCount();
      const { value, grads } = await scope(async () => {
        const leaves = new Map<InputName, Tensor>();
        const leaf = (name: InputName): Tensor => {
          const t = input(f, name, gradNames.includes(name));
          leaves.set(name, t);
          return t;
        };
        const loss = c.build(f, leaf);
        expect(loss.shape).toEqual([]);
        loss.backward();
        for (const g of gradNames) expect(leaves.get(g)?.grad, `${c.key}: d/d${g} exists`).toBeTruthy();
        const arrays = await readAll([loss, ...gradNames.map((g) => leaves.get(g)!.grad!)]);
        const [v, ...gs] = arrays.map((a) => Array.from(a));
        return { value: v[0], grads: gs };
      });
      expect(liveBufferCount(), `${c.key}: buffers left after the scope`).toBe(before);
      expectClose([value], [expected.value], 1e-4, 1e-6, `${fixtureName} ${c.key} value`);
      gradNames.forEach((g, i) => {
        const want = expected.grad[g];
        expect(grads[i].length, `${c.key} d/d${g} length`).toBe(want.data.length);
        expectClose(grads[i], want.data, 1e-3, gradAtol(want.data), `${fixtureName} ${c.key} grad ${g}`);
      });
    });
  }
});

describe('embeddingStats in Chromium', () => {
  it('losses-small: column std, median norm and Voronoi distances match PyTorch', async () => {
    const f = await loadLossFixture('losses-small');
    const before = liveBufferCount();
    await scope(async () => {
      const stats = await embeddingStats(input(f, 'E'));
      expect(stats.columnStd.shape).toEqual([f.d]);
      expect(stats.voronoiDistances.shape).toEqual([f.V]);
      const [s, r] = await readAll([stats.columnStd, stats.voronoiDistances]);
      expectClose(s, f.stats.s.data, 1e-4, 1e-6, 'column std');
      expectClose([stats.medianNorm], [f.stats.m], 1e-5, 1e-6, 'median norm');
      expectClose(r, f.stats.r.data, 1e-4, 1e-6, 'voronoi distances');
    });
    expect(liveBufferCount()).toBe(before);
  });
});

describe('lmHeadDistillationCrossEntropy (the LM head fused with the cross-entropy) in Chromium', () => {
  // The loss fixtures have logits but not the final hidden states they came from, so the head is
  // the identity here (hidden = logits, W = I in three unequal blocks): the fused path must give
  // the fixture's distillationCrossEntropyLoss and its grad.zt.
  for (const fixtureName of LOSS_FIXTURES) {
    it(`${fixtureName}: identity head in three blocks reproduces the cross-entropy and grad.zt`, async () => {
      const f = await loadLossFixture(fixtureName);
      const expected = f.components.distillationCrossEntropyLoss;
      const V = f.V;
      const before = liveBufferCount();
      const { value, grad } = await scope(async () => {
        const z = input(f, 'z');
        const zt = input(f, 'zt', true);
        let start = 0;
        const blocks = [V - 18, 11, 7].map((n) => {
          const eye = new Float32Array(n * V);
          for (let i = 0; i < n; i++) eye[i * V + start + i] = 1;
          start += n;
          return tensor(eye, [n, V]);
        });
        const loss = losses.lmHeadDistillationCrossEntropy(z, zt, blocks, f.inputs.L.data);
        loss.backward();
        const [v, g] = await readAll([loss, zt.grad!]);
        return { value: v[0], grad: g };
      });
      expect(liveBufferCount()).toBe(before);
      expectClose([value], [expected.value], 1e-4, 1e-6, `${fixtureName} value`);
      expectClose(grad, expected.grad.zt.data, 1e-3, gradAtol(expected.grad.zt.data), `${fixtureName} grad zt`);
    });
  }

  it('random hidden states and a head in unequal blocks: the float64 twin and the unfused path', async () => {
    const rng = new Rng('lmHead browser');
    const [B, T, d] = [3, 7, 24];
    const blockRows = [200, 37, 129];
    const V = blockRows.reduce((a, b) => a + b, 0);
    const rows = B * T;
    const teacher = Float32Array.from(rng.normals(rows * d));
    const student = Float32Array.from(rng.normals(rows * d));
    const head = blockRows.map((n) => Float32Array.from(rng.normals(n * d, 3 / Math.sqrt(d))));
    const mask = Array.from({ length: rows }, (_, r) => (r % 5 === 2 ? 0 : 1));
    const twin: LmHeadCrossEntropyReferenceInput = {
      teacherHidden: teacher,
      studentHidden: student,
      headBlocks: head,
      mask,
      rows,
      hidden: d,
    };
    const whole = new Float32Array(V * d);
    let at = 0;
    for (const b of head) {
      whole.set(b, at);
      at += b.length;
    }
    const before = liveBufferCount();
    const got = await scope(async () => {
      const h = tensor(teacher, [B, T, d]);
      const hs = tensor(student, [B, T, d], { requiresGrad: true });
      const blocks = head.map((b, i) => tensor(b, [blockRows[i], d]));
      // A scratch of one 128-row window per dispatch: several windows per block.
      const fused = losses.lmHeadDistillationCrossEntropy(h, hs, blocks, mask, { maxScratchBytes: 1 });
      fused.backward();
      const fusedGrad = hs.grad!;
      hs.grad = null;
      const W = tensor(whole, [V, d]);
      const z = noGrad(() => reshape(matmul(h, W, { transposeB: true }), [B, T, V]));
      const unfused = losses.distillationCrossEntropy(z, reshape(matmul(hs, W, { transposeB: true }), [B, T, V]), mask);
      unfused.backward();
      const [fv, fg, uv, ug] = await readAll([fused, fusedGrad, unfused, hs.grad!]);
      fusedGrad.dispose(); // a leaf's gradient belongs to no scope
      return { fusedValue: fv[0], fusedGrad: fg, unfusedValue: uv[0], unfusedGrad: ug };
    });
    expect(liveBufferCount()).toBe(before);
    expectClose([got.fusedValue], [lmHeadDistillationCrossEntropyReference(twin)], 1e-4, 1e-6, 'value vs twin');
    expectClose(got.fusedGrad, lmHeadDistillationCrossEntropyReferenceBackward(twin), 1e-3, 1e-6, 'grad vs twin');
    expectClose([got.fusedValue], [got.unfusedValue], 1e-5, 1e-6, 'value vs unfused');
    expectClose(got.fusedGrad, got.unfusedGrad, 1e-3, 1e-6, 'grad vs unfused');
  });
});
