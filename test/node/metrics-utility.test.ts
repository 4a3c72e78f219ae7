/**
 * Utility against the true next token (issue 14, point 2): `lmHeadMetricRows` (the fused head's
 * metric walk with each side's log-sum-exp and argmax) against its float64 twin, and the whole
 * utility (accuracy of teacher and student, perplexities, agreement, KL) against a direct float64
 * computation from the full logits `h W^T`; live buffers.
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import { liveBufferCount, noGrad, readAll, scope, tensor } from '../../src/index';
import { lmHeadMetricRows } from '../../src/losses/lmHeadCrossEntropy';
import { lmHeadMetricRowsReference } from '../../src/reference/index';
import { addUtility, emptyUtilitySums, nextTokenTargets, utilityReport, utilityTensors } from '../../src/eval/utility';
import { nearestNeighbourInversion } from '../../src/eval/metrics';

function problem(seed: string, B: number, T: number, d: number, blockRows: number[]) {
  const rng = new Rng(seed);
  const rows = B * T;
  const teacher = Float32Array.from(rng.normals(rows * d));
  // Close enough to the teacher that some rows agree, far enough that some do not.
  const student = teacher.map((v) => v + 0.8 * rng.normal());
  const head = blockRows.map((v) => Float32Array.from(rng.normals(v * d, 3 / Math.sqrt(d))));
  const V = blockRows.reduce((a, b) => a + b, 0);
  const ids = Int32Array.from({ length: rows }, () => Math.floor(rng.uniform() * V));
  return { B, T, d, V, blockRows, teacher, student, head, ids };
}

/** Full logit rows in float64. */
function logits(x: Float32Array, head: Float32Array[], d: number, V: number): Float64Array[] {
  const W = head.flatMap((b) => Array.from(b));
  const rows = x.length / d;
  return Array.from({ length: rows }, (_, r) => {
    const z = new Float64Array(V);
    for (let v = 0; v < V; v++) for (let k = 0; k < d; k++) z[v] += x[r * d + k] * W[v * d + k];
    return z;
  });
}

function nllAndArgmax(z: Float64Array, target: number): { nll: number; arg: number } {
  let arg = 0;
  for (let v = 1; v < z.length; v++) if (z[v] > z[arg]) arg = v;
  let s = 0;
  for (const v of z) s += Math.exp(v - z[arg]);
  return { nll: z[arg] + Math.log(s) - z[target], arg };
}

describe('lmHeadMetricRows', () => {
  it('matches its float64 twin: KL, agreement, both log-sum-exps and argmaxes, head in unequal blocks', async () => {
    await gpu();
    const before = liveBufferCount();
    const p = problem('rows', 2, 9, 19, [150, 37, 300]);
    const mask = Array.from({ length: 18 }, (_, i) => (i === 4 || i === 11 ? 0 : 1));
    const want = lmHeadMetricRowsReference({
      teacherHidden: p.teacher,
      studentHidden: p.student,
      headBlocks: p.head,
      mask,
      rows: 18,
      hidden: p.d,
    });
    const got = await scope(async () => {
      const blocks = p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d]));
      const r = lmHeadMetricRows(tensor(p.teacher, [2, 9, p.d]), tensor(p.student, [2, 9, p.d]), blocks, mask);
      if (r.owned) r.mask.dispose();
      return (await readAll([r.rowStats]))[0] as Float32Array;
    });
    expect(liveBufferCount()).toBe(before);
    let agreeing = 0;
    for (let r = 0; r < 18; r++) {
      if (!mask[r]) continue;
      const g = got.slice(6 * r, 6 * r + 6);
      const w = want.slice(6 * r, 6 * r + 6);
      expectClose([g[0]], [w[0]], 2e-4, 1e-5, `row ${r} KL`);
      expect(g[1], `row ${r} agree`).toBe(w[1]);
      expectClose([g[2], g[3]], [w[2], w[3]], 1e-5, 1e-5, `row ${r} LSE`);
      expect([g[4], g[5]], `row ${r} argmaxes`).toEqual([w[4], w[5]]);
      agreeing += w[1];
    }
    // Both kinds of row occur, so the agreement field is tested both ways.
    expect(agreeing).toBeGreaterThan(0);
    expect(agreeing).toBeLessThan(16);
  });
});

describe('utility against the true next token', () => {
  it('equals accuracy, perplexity, agreement and KL computed from the full logits in float64', async () => {
    await gpu();
    const before = liveBufferCount();
    const p = problem('utility', 3, 8, 16, [40, 25]);
    // Teacher's argmax made right on some rows: the accuracy is not near 0 by construction.
    const batch = {
      ids: p.ids,
      attentionMask: Float32Array.from({ length: 24 }, (_, i) => (i === 23 || i === 22 ? 0 : 1)),
      lossMask: Float32Array.from({ length: 24 }, (_, i) => (i === 3 || i === 22 || i === 23 ? 0 : 1)),
      batchSize: 3,
      seqLen: 8,
    };
    const zt = logits(p.teacher, p.head, p.d, p.V);
    const zs = logits(p.student, p.head, p.d, p.V);
    // Make the true next token the teacher's argmax at every other position.
    for (let i = 0; i + 1 < 24; i += 2) if ((i + 1) % 8 !== 0) p.ids[i + 1] = nllAndArgmax(zt[i], 0).arg;
    const targets = nextTokenTargets(batch);
    // Row ends, the padded last positions and a loss-masked position have no target.
    expect([targets[7], targets[15], targets[21], targets[3], targets[22]]).toEqual([-1, -1, -1, -1, -1]);
    const sums = emptyUtilitySums();
    const values = await scope(async () => {
      const tensors = noGrad(() =>
        utilityTensors(
          tensor(p.teacher, [3, 8, p.d]),
          tensor(p.student, [3, 8, p.d]),
          p.head.map((b, i) => tensor(b, [p.blockRows[i], p.d])),
          batch,
          targets,
        ),
      );
      return readAll(tensors);
    });
    expect(liveBufferCount()).toBe(before);
    addUtility(sums, values, batch, targets);
    const got = utilityReport(sums);
    const want = { tc: 0, sc: 0, tn: 0, sn: 0, n: 0 };
    for (let i = 0; i < 24; i++) {
      if (targets[i] < 0) continue;
      const t = nllAndArgmax(zt[i], targets[i]);
      const s = nllAndArgmax(zs[i], targets[i]);
      want.n++;
      want.tc += Number(t.arg === targets[i]);
      want.sc += Number(s.arg === targets[i]);
      want.tn += t.nll;
      want.sn += s.nll;
    }
    expect(got.targetPositions).toBe(want.n);
    expect(got.lossPositions).toBe(21);
    expect(got.teacherAccuracy).toBeCloseTo(want.tc / want.n, 12);
    expect(got.studentAccuracy).toBeCloseTo(want.sc / want.n, 12);
    expect(got.teacherAccuracy).toBeGreaterThan(got.studentAccuracy);
    expect(got.accuracyDropPoints).toBeCloseTo((100 * (want.tc - want.sc)) / want.n, 9);
    expectClose(
      [Math.log(got.teacherPerplexity), Math.log(got.studentPerplexity)],
      [want.tn / want.n, want.sn / want.n],
      1e-5,
      1e-5,
      'mean NLL',
    );
    expectClose([got.perplexityRatio], [Math.exp((want.sn - want.tn) / want.n)], 1e-4, 0, 'perplexity ratio');
    expect(got.top1Agreement).toBeGreaterThan(0);
    expect(got.meanKL).toBeGreaterThan(0);
  });
});

describe('NN-FR by L2 distance', () => {
  it('finds the nearest row by Euclidean distance, which differs from cosine when norms differ', async () => {
    await gpu();
    const before = liveBufferCount();
    const rng = new Rng('l2');
    const V = 40;
    const d = 6;
    // Rows of very different norms: the nearest by angle and by distance disagree on some queries.
    const table = Float32Array.from({ length: V * d }, (_, i) => rng.normal() * (1 + (Math.floor(i / d) % 5) * 2));
    const xt = Float32Array.from(rng.normals(2 * 10 * d, 3));
    const ids = Int32Array.from({ length: 20 }, (_, i) => i % V);
    const nearest = (q: number, metric: 'l2' | 'cos') => {
      let best = -1;
      let bestValue = Number.POSITIVE_INFINITY;
      for (let v = 0; v < V; v++) {
        let dot = 0;
        let nq = 0;
        let nv = 0;
        let dist = 0;
        for (let k = 0; k < d; k++) {
          const a = xt[q * d + k];
          const b = table[v * d + k];
          dot += a * b;
          nq += a * a;
          nv += b * b;
          dist += (a - b) * (a - b);
        }
        const value = metric === 'l2' ? dist : -dot / Math.sqrt(nq * nv);
        if (value < bestValue) [best, bestValue] = [v, value];
      }
      return best;
    };
    const wantL2 = Array.from({ length: 20 }, (_, q) => nearest(q, 'l2'));
    const wantCos = Array.from({ length: 20 }, (_, q) => nearest(q, 'cos'));
    expect(wantL2).not.toEqual(wantCos);
    // Make some positions recoverable by L2 only.
    for (let q = 0; q < 20; q += 3) ids[q] = wantL2[q];
    const [l2, cos] = await scope(async () => {
      const x = tensor(xt, [2, 10, d]);
      const t = tensor(table, [V, d]);
      const idt = tensor(ids, [2, 10], { dtype: 'i32' });
      const a = nearestNeighbourInversion(x, t, idt, new Array(20).fill(1), { metric: 'euclidean' });
      const b = nearestNeighbourInversion(x, t, idt, new Array(20).fill(1));
      return readAll([a.nearest, a.failures, b.nearest, b.failures]).then((r) => [r.slice(0, 2), r.slice(2)]);
    });
    expect(liveBufferCount()).toBe(before);
    expect(Array.from(l2[0])).toEqual(wantL2);
    expect(Array.from(cos[0])).toEqual(wantCos);
    const failures = (want: number[]) => want.filter((v, q) => v !== ids[q]).length;
    expect(l2[1][0]).toBe(failures(wantL2));
    expect(cos[1][0]).toBe(failures(wantCos));
    expect(() =>
      nearestNeighbourInversion(tensor(xt, [2, 10, d]), tensor(table, [V, d]), tensor(ids, [2, 10], { dtype: 'i32' }), [], {
        metric: 'manhattan' as never,
      }),
    ).toThrow(/nearestNeighbourInversion: option 'metric' must be 'cosine' or 'euclidean', got manhattan/);
  });
});
