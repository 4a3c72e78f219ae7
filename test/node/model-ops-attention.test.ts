/**
 * Fused attention: the float64 twin against finite differences and a closed form, the GPU
 * forward and backward (dq, dk, dv) against the twin over causal / bidirectional, grouped-query,
 * padded and fully masked cases.
 */
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { liveBufferCount, mul, readAll, scope, sum, tensor, type Tensor } from '../../src/index';
import { attention } from '../../src/ops/attention';
import * as ref from '../../src/reference/attention';
import type { NDArray } from '../../src/reference/index';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';

function nd(data: ArrayLike<number>, shape: number[]): NDArray {
  return { shape: [...shape], data: Float64Array.from(data) };
}

interface Case {
  name: string;
  b: number;
  t: number;
  h: number;
  hkv: number;
  dh: number;
  causal: boolean;
  /** Valid length of each sequence (right padding); no key mask when absent. */
  lengths?: number[];
  /** An explicit [B, T] key mask (overrides lengths). */
  mask?: number[];
  scale?: number;
}

interface Data {
  q: number[];
  k: number[];
  v: number[];
  w: number[];
  mask?: number[];
}

function makeData(c: Case): Data {
  const rng = new Rng(c.name);
  const f32 = (n: number) => Array.from(Float32Array.from(rng.normals(n)));
  const nq = c.b * c.t * c.h * c.dh;
  const nkv = c.b * c.t * c.hkv * c.dh;
  let mask = c.mask;
  if (!mask && c.lengths) mask = c.lengths.flatMap((len) => Array.from({ length: c.t }, (_, j) => (j < len ? 1 : 0)));
  return { q: f32(nq), k: f32(nkv), v: f32(nkv), w: f32(nq), mask };
}

function refOptions(c: Case, d: Data): ref.AttentionReferenceOptions {
  return { causal: c.causal, keyMask: d.mask ? nd(d.mask, [c.b, c.t]) : undefined, scale: c.scale };
}

/** Runs the GPU op with grad on q, k, v and backpropagates sum(out * w); frees every tensor it made. */
function gpuRun(c: Case, d: Data) {
  return scope(async () => {
    const q = tensor(d.q, [c.b, c.t, c.h, c.dh], { requiresGrad: true });
    const k = tensor(d.k, [c.b, c.t, c.hkv, c.dh], { requiresGrad: true });
    const v = tensor(d.v, [c.b, c.t, c.hkv, c.dh], { requiresGrad: true });
    const keyMask = d.mask ? tensor(d.mask, [c.b, c.t]) : undefined;
    const out = attention(q, k, v, { causal: c.causal, keyMask, scale: c.scale });
    const w = tensor(d.w, out.shape);
    const loss = sum(mul(out, w));
    loss.backward();
    const [o, dq, dk, dv] = await readAll([out, q.grad!, k.grad!, v.grad!]);
    return { o, dq, dk, dv };
  });
}

describe('float64 twin of attention', () => {
  it('attentionBackward matches central differences (causal, grouped-query, padded, one row fully masked)', () => {
    // Batch 0 masks key 0, so its causal query row 0 sees nothing; batch 1 pads the last key.
    const c: Case = { name: 'twin fd', b: 2, t: 4, h: 4, hkv: 2, dh: 3, causal: true, mask: [0, 1, 1, 1, 1, 1, 1, 0] };
    const d = makeData(c);
    const options = refOptions(c, d);
    const inputs = [nd(d.q, [2, 4, 4, 3]), nd(d.k, [2, 4, 2, 3]), nd(d.v, [2, 4, 2, 3])];
    const w = nd(d.w, [2, 4, 4, 3]);
    const analytic = ref.attentionBackward(w, inputs[0], inputs[1], inputs[2], options);
    const h = 1e-6;
    inputs.forEach((input, which) => {
      const numeric = new Float64Array(input.data.length);
      for (let i = 0; i < input.data.length; i++) {
        const at = (delta: number) => {
          const moved = inputs.map((x, m) => (m === which ? nd(x.data, x.shape) : x));
          moved[which].data[i] += delta;
          return ref.attention(moved[0], moved[1], moved[2], options).data.reduce((s, y, n) => s + y * w.data[n], 0);
        };
        numeric[i] = (at(h) - at(-h)) / (2 * h);
      }
      expectClose(analytic[which].data, numeric, 1e-6, 1e-8, ['dq', 'dk', 'dv'][which]);
    });
  });

  it('averages the visible values when all scores are equal (q = 0)', () => {
    const c: Case = { name: 'twin mean', b: 1, t: 4, h: 2, hkv: 1, dh: 2, causal: true, lengths: [3] };
    const d = makeData(c);
    const out = ref.attention(nd(new Array(16).fill(0), [1, 4, 2, 2]), nd(d.k, [1, 4, 1, 2]), nd(d.v, [1, 4, 1, 2]), refOptions(c, d));
    for (let i = 0; i < 4; i++) {
      const seen = Math.min(i + 1, 3); // causal, and key 3 is padding
      for (let ch = 0; ch < 2; ch++) {
        let mean = 0;
        for (let j = 0; j < seen; j++) mean += d.v[j * 2 + ch] / seen;
        for (let hi = 0; hi < 2; hi++) expect(out.data[(i * 2 + hi) * 2 + ch]).toBeCloseTo(mean, 12);
      }
    }
  });
});

const cases: Case[] = [
  { name: 'causal MHA', b: 2, t: 5, h: 4, hkv: 4, dh: 8, causal: true },
  { name: 'bidirectional GQA 4/2', b: 2, t: 6, h: 4, hkv: 2, dh: 8, causal: false },
  { name: 'causal GQA 4/1, T=37', b: 1, t: 37, h: 4, hkv: 1, dh: 8, causal: true },
  // Dh = 64 streams keys in tiles of 32 rows: T = 37 ends on a partial tile.
  { name: 'causal GQA 4/2, Dh=64, right padding', b: 2, t: 37, h: 4, hkv: 2, dh: 64, causal: true, lengths: [37, 30] },
  { name: 'bidirectional, Dh=64, T=37', b: 1, t: 37, h: 2, hkv: 1, dh: 64, causal: false },
  { name: 'bidirectional encoder with right padding', b: 3, t: 9, h: 4, hkv: 4, dh: 8, causal: false, lengths: [9, 5, 1] },
  // T > 64: several query and key blocks per head, where the causal block bounds matter.
  { name: 'causal, T=70 (two row blocks), padding', b: 1, t: 70, h: 2, hkv: 1, dh: 8, causal: true, lengths: [66] },
  { name: 'bidirectional, T=70', b: 1, t: 70, h: 2, hkv: 2, dh: 16, causal: false },
  // Batch 0: key 0 is padding, so causal row 0 sees no key at all; batch 1 is entirely padding.
  { name: 'fully masked rows (causal)', b: 2, t: 5, h: 2, hkv: 1, dh: 8, causal: true, mask: [0, 1, 1, 0, 0, 0, 0, 0, 0, 0] },
  { name: 'fully masked rows (bidirectional)', b: 2, t: 4, h: 4, hkv: 2, dh: 8, causal: false, lengths: [0, 3] },
  { name: 'T=1 causal', b: 2, t: 1, h: 4, hkv: 2, dh: 8, causal: true },
  { name: 'T=1 bidirectional, Dh=64', b: 1, t: 1, h: 2, hkv: 2, dh: 64, causal: false },
  { name: 'Dh=128, explicit scale', b: 1, t: 11, h: 2, hkv: 1, dh: 128, causal: true, scale: 0.05 },
];

describe('attention on the GPU', () => {
  for (const c of cases) {
    it(`forward, dq, dk and dv match the twin: ${c.name}`, async () => {
      await gpu();
      const d = makeData(c);
      const got = await gpuRun(c, d);
      const options = refOptions(c, d);
      const q = nd(d.q, [c.b, c.t, c.h, c.dh]);
      const k = nd(d.k, [c.b, c.t, c.hkv, c.dh]);
      const v = nd(d.v, [c.b, c.t, c.hkv, c.dh]);
      // Every element, padded query rows included, must be finite and close to the twin.
      for (const arr of Object.values(got)) expect(arr.every(Number.isFinite)).toBe(true);
      expectClose(got.o, ref.attention(q, k, v, options).data, 1e-4, 1e-5, 'out');
      const [dq, dk, dv] = ref.attentionBackward(nd(d.w, [c.b, c.t, c.h, c.dh]), q, k, v, options);
      expectClose(got.dq, dq.data, 5e-4, 5e-5, 'dq');
      expectClose(got.dk, dk.data, 5e-4, 5e-5, 'dk');
      expectClose(got.dv, dv.data, 5e-4, 5e-5, 'dv');
    });
  }

  it('gives a fully masked query row output 0 and no gradient', async () => {
    await gpu();
    const c = cases.find((x) => x.name === 'fully masked rows (causal)')!;
    const got = await gpuRun(c, makeData(c));
    // Batch 1 has no visible key anywhere: every output and every gradient of it is exactly 0.
    const half = (a: ArrayLike<number>) => Array.from(a).slice(a.length / 2);
    for (const arr of [got.o, got.dq, got.dk, got.dv]) expect(half(arr).every((x) => x === 0)).toBe(true);
    // Batch 0, row 0 (both heads) sees no key either.
    expect(Array.from(got.o.slice(0, 16)).every((x) => x === 0)).toBe(true);
    expect(Array.from(got.dq.slice(0, 16)).every((x) => x === 0)).toBe(true);
  });

  it('is deterministic and frees everything it makes', async () => {
    await gpu();
    const c: Case = { name: 'determinism', b: 1, t: 70, h: 4, hkv: 2, dh: 8, causal: true, lengths: [60] };
    const d = makeData(c);
    const start = liveBufferCount();
    const a = await gpuRun(c, d);
    const b = await gpuRun(c, d);
    expect(liveBufferCount()).toBe(start);
    for (const key of ['o', 'dq', 'dk', 'dv'] as const) expect(Array.from(a[key])).toEqual(Array.from(b[key]));
  });

  it('gives gradients only to the inputs that require them', async () => {
    await gpu();
    const c: Case = { name: 'partial grads', b: 1, t: 4, h: 2, hkv: 1, dh: 8, causal: false };
    const d = makeData(c);
    await scope(async () => {
      const q = tensor(d.q, [1, 4, 2, 8]);
      const k = tensor(d.k, [1, 4, 1, 8]);
      const v = tensor(d.v, [1, 4, 1, 8], { requiresGrad: true });
      const out = attention(q, k, v, { causal: false });
      const loss = sum(mul(out, tensor(d.w, out.shape)));
      loss.backward();
      expect(q.grad).toBeNull();
      expect(k.grad).toBeNull();
      const [, , dv] = ref.attentionBackward(nd(d.w, [1, 4, 2, 8]), nd(d.q, [1, 4, 2, 8]), nd(d.k, [1, 4, 1, 8]), nd(d.v, [1, 4, 1, 8]), {
        causal: false,
      });
      expectClose(await v.grad!.toArray(), dv.data, 5e-4, 5e-5, 'dv');
    });
  });
});

describe('attention argument checks', () => {
  it('rejects bad input, naming the op and the argument', async () => {
    await gpu();
    const made: Tensor[] = [];
    const t = (shape: number[], dtype: 'f32' | 'i32' = 'f32') => {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = tensor(dtype === 'f32' ? new Float32Array(n) : new Int32Array(n), shape);
      made.push(x);
      return x;
    };
    const q = t([2, 5, 4, 8]);
    const kv = t([2, 5, 2, 8]);
    const causal = true;
    expect(() => attention(q, t([2, 6, 2, 8]), kv, { causal })).toThrow(/attention: argument 'k' has shape \[2,6,2,8\]/);
    expect(() => attention(q, t([2, 5, 2, 4]), kv, { causal })).toThrow(/attention: argument 'k' has shape \[2,5,2,4\]/);
    expect(() => attention(q, kv, t([2, 5, 1, 8]), { causal })).toThrow(/attention: argument 'v' has shape \[2,5,1,8\]/);
    expect(() => attention(q, t([2, 5, 3, 8]), t([2, 5, 3, 8]), { causal })).toThrow(
      /attention: q has H = 4 heads, not a multiple of the Hkv = 3/,
    );
    expect(() => attention(t([2, 5, 8]), kv, kv, { causal })).toThrow(/attention: argument 'q' has shape \[2,5,8\]/);
    expect(() => attention(t([2, 5, 4, 8], 'i32'), kv, kv, { causal })).toThrow(/attention: argument 'q' has dtype i32/);
    expect(() => attention(q, kv, kv, { causal, keyMask: t([2, 4]) })).toThrow(
      /attention: argument 'keyMask' has shape \[2,4\]; expected \[2, 5\]/,
    );
    expect(() => attention(q, kv, kv, { causal, keyMask: t([10]) })).toThrow(/attention: argument 'keyMask' has shape \[10\]/);
    expect(() => attention(q, kv, kv, { causal, keyMask: t([2, 5], 'i32') })).toThrow(/attention: argument 'keyMask' has dtype i32/);
    expect(() => attention(t([1, 2, 1, 130]), t([1, 2, 1, 130]), t([1, 2, 1, 130]), { causal })).toThrow(
      /attention: head dimension Dh = 130/,
    );
    expect(() => attention(q, kv, kv, {} as { causal: boolean })).toThrow(/attention: option 'causal'/);
    expect(() => attention(q, kv, kv, { causal, scale: NaN })).toThrow(/attention: option 'scale'/);
    expect(() => ref.attention(nd([0], [1, 1, 3, 1]), nd([0, 0], [1, 1, 2, 1]), nd([0, 0], [1, 1, 2, 1]), { causal })).toThrow(
      /attention: H = 3/,
    );
    for (const x of made) x.dispose();
  });
});
