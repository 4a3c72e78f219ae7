/**
 * Readers of the whole embedding table, block by block (issue 9, point 2): the nearest-row search
 * (Euclidean, cosine, excluding each row itself), the catalyst (value and gradient), NN-FR and the
 * row norms take the table as row blocks, f32 or packed bf16, and give what one whole table gives;
 * a model loaded under a forced small binding limit trains and evaluates with every factory term
 * that reads the table (catalyst, NN-FR) and the fused head, with no f32 copy of the table; the
 * demo's prompt inspection decodes and predicts on the blocks as on one table.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { Rng } from '../helpers/random';
import { hasContext } from '../../src/gpu/context';
import { embeddingRowNorms, getContext, liveBufferCount, readAll, scope, tensor } from '../../src/index';
import { inverseL2PowerLawCatalyst, nearestRows, type NearestRowsOptions } from '../../src/losses/catalyst';
import { nearestNeighbourInversion, nearestRowsByCosine } from '../../src/eval/metrics';
import { loadCausalLM } from '../../src/models/causalLM';
import { packSequences, seededRandom } from '../../src/text/data';
import { Trainer } from '../../src/train/trainer';

afterEach(() => {
  if (hasContext()) getContext().setBindingLimit(null);
});

/** Split a `[V, d]` table's data into blocks of the given row counts. */
function split(data: Float32Array, d: number, rows: number[]): Float32Array[] {
  let at = 0;
  return rows.map((r) => {
    const block = data.slice(at * d, (at + r) * d);
    at += r;
    return block;
  });
}

/** nearestRows on one table and on its blocks: every output, read back. */
async function searchBoth(
  queries: Float32Array,
  table: Float32Array,
  d: number,
  rows: number[],
  options: NearestRowsOptions & { dtype?: 'f32' | 'bf16'; queriesAreTable?: boolean } = {},
) {
  const V = rows.reduce((a, b) => a + b, 0);
  return scope(async () => {
    const dtype = options.dtype ?? 'f32';
    const whole = tensor(table, [V, d], { dtype });
    const blocks = split(table, d, rows).map((b, i) => tensor(b, [rows[i], d], { dtype }));
    // The queries of a Voronoi search are the table's own (rounded) values.
    const q = options.queriesAreTable ? tensor(await whole.toArray(), [V, d]) : tensor(queries, [queries.length / d, d]);
    const one = nearestRows(q, whole, options);
    const many = nearestRows(q, blocks, options);
    const [i1, d1, i2, d2] = await readAll([one.index, one.distance, many.index, many.distance]);
    return { one: { index: Array.from(i1), distance: Array.from(d1) }, blocks: { index: Array.from(i2), distance: Array.from(d2) } };
  });
}

describe('nearestRows over row blocks', () => {
  const d = 19;
  const rows = [70, 1, 0, 130, 64];
  const V = 265;
  const rng = new Rng('nearest blocks');
  const table = Float32Array.from(rng.normals(V * d));
  // Queries near rows spread over every block, and a few unrelated ones.
  const near = [0, 69, 70, 71, 150, 200, 201, 264];
  const queries = Float32Array.from([
    ...near.flatMap((v) => Array.from(table.subarray(v * d, (v + 1) * d), (x) => x + 0.05 * rng.normal())),
    ...rng.normals(40 * d),
  ]);

  // Each kernel variant (metric, dtype, excluding self) compiles once, slowly on a software adapter.
  const COMPILE_MS = 180_000;

  it('Euclidean: the indices and distances of one table, bit for bit', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const r = await searchBoth(queries, table, d, rows);
    expect(r.blocks).toEqual(r.one);
    expect(r.one.index.slice(0, near.length)).toEqual(near);
  });

  it('cosine, with and without the whole table`s norms', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const r = await searchBoth(queries, table, d, rows, { metric: 'cosine', indexDtype: 'i32' });
    expect(r.blocks.index).toEqual(r.one.index);
    const withNorms = await scope(async () => {
      const norms = embeddingRowNorms(tensor(table, [V, d]));
      const blocks = split(table, d, rows).map((b, i) => tensor(b, [rows[i], d]));
      const q = tensor(queries, [queries.length / d, d]);
      return Array.from(await nearestRows(q, blocks, { metric: 'cosine', indexDtype: 'i32', tableNorms: norms }).index.toArray());
    });
    expect(withNorms).toEqual(r.one.index);
  });

  it('excluding each row itself (Voronoi distances)', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const voronoi = await searchBoth(queries, table, d, rows, { excludeSelf: true, queriesAreTable: true });
    expect(voronoi.blocks).toEqual(voronoi.one);
    expect(voronoi.one.index.every((v, p) => v !== p)).toBe(true);
  });

  it('a bf16 table, read as the f32 table of its values', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const bf16 = await searchBoth(queries, table, d, rows, { dtype: 'bf16' });
    expect(bf16.blocks).toEqual(bf16.one);
    const f32OfRounded = await scope(async () => {
      const rounded = await tensor(table, [V, d], { dtype: 'bf16' }).toArray();
      return Array.from(await nearestRows(tensor(queries, [queries.length / d, d]), tensor(rounded, [V, d])).index.toArray());
    });
    expect(bf16.one.index).toEqual(f32OfRounded);
  });

  it('the row norms of a bf16 table are those of its values', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const [packed, widened] = await scope(async () => {
      const t = tensor(table, [V, d], { dtype: 'bf16' });
      const f = tensor(await t.toArray(), [V, d]);
      return readAll([embeddingRowNorms(t, true), embeddingRowNorms(f, true)]);
    });
    expect(Array.from(packed)).toEqual(Array.from(widened));
  });

  it('the catalyst: value and gradient of one table', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const [B, T] = [3, 16];
    const xtData = Float32Array.from({ length: B * T * d }, (_, i) => queries[i % queries.length] * 0.9);
    const mask = Array.from({ length: B * T }, (_, i) => (i % 7 === 3 ? 0 : 1));
    const run = (blocked: boolean) =>
      scope(async () => {
        const xt = tensor(xtData, [B, T, d], { requiresGrad: true });
        const E = blocked ? split(table, d, rows).map((b, i) => tensor(b, [rows[i], d])) : tensor(table, [V, d]);
        const loss = inverseL2PowerLawCatalyst(xt, E, mask, { characteristicLength: 0.7, exponentOfDecay: 1.5 });
        loss.backward();
        const [value, grad] = await readAll([loss, xt.grad!]);
        return { value: value[0], grad: Array.from(grad) };
      });
    const one = await run(false);
    const blocks = await run(true);
    expect(one.value).toBeGreaterThan(0);
    expect(blocks).toEqual(one);
  });

  it('NN-FR and nearestRowsByCosine over blocks', { timeout: COMPILE_MS }, async () => {
    await gpu();
    const [B, T] = [2, 24];
    const ids = Array.from({ length: B * T }, (_, i) => near[i % near.length]);
    const mask = Array.from({ length: B * T }, (_, i) => (i % 5 === 0 ? 0 : 1));
    const xtData = Float32Array.from({ length: B * T * d }, (_, i) => queries[i % (near.length * d)]);
    const run = (blocked: boolean) =>
      scope(async () => {
        const E = blocked ? split(table, d, rows).map((b, i) => tensor(b, [rows[i], d])) : tensor(table, [V, d]);
        const r = nearestNeighbourInversion(tensor(xtData, [B, T, d]), E, tensor(Int32Array.from(ids), [B, T]), mask);
        const cos = nearestRowsByCosine(tensor(xtData, [B * T, d]), E);
        const [f, c, n, cn] = await readAll([r.failures, r.count, r.nearest, cos]);
        return { failures: f[0], count: c[0], nearest: Array.from(n), cosine: Array.from(cn) };
      });
    const one = await run(false);
    expect(await run(true)).toEqual(one);
    expect(one.count).toBe(38);
  });

  it('names a block of another width or over the binding limit, before any GPU work', async () => {
    const ctx = await gpu();
    const before = liveBufferCount();
    const q = tensor(new Float32Array(2 * 4), [2, 4]);
    const a = tensor(new Float32Array(8 * 4), [8, 4]);
    const b = tensor(new Float32Array(8 * 3), [8, 3]);
    const big = tensor(new Float32Array(128 * 4), [128, 4]);
    const ints = tensor(new Int32Array(4), [1, 4]);
    const xt = tensor(new Float32Array(8), [1, 2, 4]);
    const ids = tensor(new Int32Array(2), [1, 2]);
    const pending = ctx.pending;
    expect(() => nearestRows(q, [a, b])).toThrow(/nearestRows: 'table\[1\]' has shape \[8,3\]; every block needs the width 4 of block 0/);
    expect(() => nearestRows(q, [])).toThrow(/nearestRows: 'table' must be a \[V, d\] tensor or a non-empty list/);
    expect(() => nearestRowsByCosine(q, [a, ints])).toThrow(/'table\[1\]' has dtype i32/);
    ctx.setBindingLimit(1024);
    expect(() => nearestNeighbourInversion(xt, [a, big], ids, [1, 1])).toThrow(
      /nearestNeighbourInversion: 'embeddingTable\[1\]' of shape \[128,4\] needs 2048 bytes, more than the storage binding limit \(1024 bytes\)/,
    );
    expect(ctx.pending).toBe(pending);
    ctx.setBindingLimit(null);
    for (const t of [q, a, b, big, ints, xt, ids]) t.dispose();
    expect(liveBufferCount()).toBe(before);
  });
});

describe('a model whose table and head are row blocks', () => {
  it('trains and evaluates under a forced small binding limit as with one table, without an f32 copy of the table', {
    timeout: 600_000,
  }, async () => {
    const ctx = await gpu();
    const dir = resolve(FIXTURES_DIR, 'tiny-qwen2');
    const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(dir, 'model.safetensors')));
    const random = seededRandom(7);
    const docs = Array.from({ length: 20 }, () =>
      Array.from({ length: 6 + Math.floor(random() * 8) }, () => 3 + Math.floor(random() * 140)),
    );
    const packed = packSequences(docs, { seqLen: 8, padId: 0, bos: 1, eos: 2 });
    const data = { train: packed.slice(0, -4), heldOut: packed.slice(-4) };
    const crossEntropy = {
      factory: 'crossEntropyDistillation' as const,
      factoryOptions: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 0.5, medianNormPenaltyWeight: 0.1 },
    };
    // The catalyst reads the whole table every step.
    const catalyst = {
      factory: 'distillation' as const,
      factoryOptions: {
        distillationLayerIndex: 0,
        alpha: 0.5,
        stdLogRatioLossWeight: 0.1,
        inputEmbeddingSimilarityLossWeight: 0.5,
        distillationLayerCosineDistanceLossWeight: 1,
        inverseL2PowerLawCatalystLossWeight: 0.2,
      },
    };
    const run = async (limit: number | null, factory: typeof crossEntropy | typeof catalyst) => {
      ctx.setBindingLimit(limit);
      const model = await loadCausalLM({ config, weights });
      const before = liveBufferCount();
      // One sequence of 8 per batch: the fused backward's one-chunk scratch (8 x 256 f32) fits the limit.
      const trainer = new Trainer(model, data, {
        ...factory,
        batchSize: 1,
        learningRate: 1e-3,
        seed: 3,
        cloak: { encoderWidth: 16, numHeads: 2, rhoInit: -1 },
      });
      const losses: number[] = [];
      for (let i = 0; i < 3; i++) losses.push((await trainer.step()).loss);
      const evaluation = await trainer.evaluate();
      trainer.dispose();
      // The trainer's buffers are freed; the model's cached statistics stay with the model.
      expect(liveBufferCount()).toBeLessThanOrEqual(before + 2);
      const blocks = model.embeddingBlocks().length;
      // Nothing used an f32 copy of the table: under the limit, making one is refused.
      if (limit !== null) expect(() => model.embeddingTable).toThrow(/CausalLM.embeddingTable: an f32 copy/);
      model.dispose();
      ctx.setBindingLimit(null);
      return { losses, evaluation, blocks };
    };
    for (const factory of [crossEntropy, catalyst]) {
      const whole = await run(null, factory);
      const small = await run(8192, factory);
      expect(whole.blocks).toBe(1);
      expect(small.blocks).toBe(2);
      for (let i = 0; i < 3; i++) expect(small.losses[i], `${factory.factory}: step ${i + 1}`).toBeCloseTo(whole.losses[i], 4);
      expect(small.evaluation.transformedPositions).toBe(whole.evaluation.transformedPositions);
      expect(small.evaluation.nearestNeighbourFailureRate).toBe(whole.evaluation.nearestNeighbourFailureRate);
      expect(small.evaluation.top1Agreement).toBe(whole.evaluation.top1Agreement);
      expect(small.evaluation.meanKL).toBeCloseTo(whole.evaluation.meanKL, 4);
    }
  });
});

describe("the demo's inspectPrompt on row blocks", () => {
  it('decodes and predicts under a forced small binding limit as with one table', { timeout: 600_000 }, async () => {
    const ctx = await gpu();
    const { inspectPrompt } = await import('../../demo/inspect');
    const { TransformerCloak } = await import('../../src/models/cloak');
    const dir = resolve(FIXTURES_DIR, 'tiny-qwen2');
    const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(dir, 'model.safetensors')));
    const tokenizer = { vocabSize: 151, encode: () => [5, 17, 33, 90, 140], decode: (ids: number[]) => ids.join(' '), bosId: 1, padId: 0 };
    const run = async (limit: number | null) => {
      ctx.setBindingLimit(limit);
      const model = await loadCausalLM({ config, weights });
      const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, encoderWidth: 16, numHeads: 2, rhoInit: 0, seed: 2 });
      const before = liveBufferCount();
      const result = await inspectPrompt(model, cloak, tokenizer, 'p', {
        seed: 4,
        topK: 3,
        maxNewTokens: 3,
        noiseMask: [0, 1, 1, 1, 1, 1],
      });
      expect(liveBufferCount()).toBe(before);
      const blocks = model.headBlocks().length;
      cloak.dispose();
      model.dispose();
      ctx.setBindingLimit(null);
      return { result, blocks };
    };
    const whole = await run(null);
    const split = await run(4096);
    expect(whole.blocks).toBe(1);
    expect(split.blocks).toBe(3);
    expect(split.result.tokens).toEqual(whole.result.tokens);
    expect(whole.result.tokens.some((t) => t.hidden)).toBe(true);
    for (const side of ['teacher', 'student'] as const) {
      expect(split.result[side].continuationIds).toEqual(whole.result[side].continuationIds);
      expect(split.result[side].top.map((c) => c.id)).toEqual(whole.result[side].top.map((c) => c.id));
      for (const [i, c] of split.result[side].top.entries()) expect(c.probability).toBeCloseTo(whole.result[side].top[i].probability, 6);
    }
  });
});
