/**
 * The learned inversion attack (issue 14, point 3) on tiny-llama (96 random embeddings in 32
 * dimensions: the tokens are linearly separable): the linear and the window-MLP classifiers read
 * almost every held-out token back from clean embeddings, and stay near chance when the "transform"
 * replaces the embeddings with pure noise; a seed repeats a run exactly; fresh noise per batch;
 * named errors before any GPU work; no buffer left live.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { liveBufferCount, randn, readAll, scope } from '../../src/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { TransformerCloak } from '../../src/models/cloak';
import { batches, packSequences, seededRandom, type PackedSequence } from '../../src/text/data';
import { cleanEmbeddings, type EmbeddingSource, inversionAttack, transformedEmbeddings } from '../../src/eval/inversionAttack';
import { evaluatePrivacyUtility } from '../../src/eval/privacyUtility';

let model: CausalLM;
let train: PackedSequence[];
let heldOut: PackedSequence[];

beforeAll(async () => {
  await gpu();
  const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
  const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
  model = await loadCausalLM({ config, weights });
  const random = seededRandom(11);
  const docs = Array.from({ length: 120 }, () =>
    Array.from({ length: 6 + Math.floor(random() * 20) }, () => 3 + Math.floor(random() * 93)),
  );
  const packed = packSequences(docs, { seqLen: 16, padId: 0, bos: 1, eos: 2 });
  train = packed.slice(0, packed.length - 12);
  heldOut = packed.slice(-12);
});

afterAll(() => model.dispose());

/** Pure noise of the embeddings' shape, a fresh draw per batch: nothing of the token is left. */
function noiseSource(): EmbeddingSource {
  let offset = 0;
  return (batch) => {
    offset += 1 << 16;
    return randn([batch.batchSize, batch.seqLen, 32], { seed: 3, offset });
  };
}

describe('inversionAttack', () => {
  it('the linear probe recovers nearly every held-out token from clean embeddings, and a seed repeats the run', async () => {
    const before = liveBufferCount();
    const options = { kind: 'linear' as const, steps: 150, learningRate: 1e-2, seed: 4 };
    const a = await inversionAttack(cleanEmbeddings(model), { train, heldOut }, 96, options);
    expect(liveBufferCount()).toBe(before);
    expect(a.positions).toBeGreaterThan(150);
    expect(a.recoveryRate).toBeGreaterThan(0.97);
    const b = await inversionAttack(cleanEmbeddings(model), { train, heldOut }, 96, options);
    expect([b.recovered, b.finalLoss]).toEqual([a.recovered, a.finalLoss]);
    expect(liveBufferCount()).toBe(before);
  }, 180_000);

  it('the window MLP recovers nearly every token from clean embeddings', async () => {
    const before = liveBufferCount();
    const r = await inversionAttack(cleanEmbeddings(model), { train, heldOut }, 96, {
      kind: 'mlp',
      radius: 2,
      hiddenSize: 64,
      steps: 150,
      learningRate: 1e-2,
      seed: 4,
    });
    expect(liveBufferCount()).toBe(before);
    expect(r.recoveryRate).toBeGreaterThan(0.95);
  }, 180_000);

  it('stays near chance on pure noise, linear and MLP', async () => {
    const before = liveBufferCount();
    for (const kind of ['linear', 'mlp'] as const) {
      const r = await inversionAttack(noiseSource(), { train, heldOut }, 96, { kind, hiddenSize: 64, steps: 150, learningRate: 1e-2 });
      // 93 tokens drawn uniformly plus a BOS and an EOS per document (about 6% each): chance is
      // guessing the most frequent token; the probe may learn that prior and nothing more.
      expect(r.majorityRate).toBeLessThan(0.08);
      expect(r.recoveryRate, kind).toBeLessThan(r.majorityRate + 0.03);
      expect(r.finalLoss, kind).toBeGreaterThan(3);
    }
    expect(liveBufferCount()).toBe(before);
  }, 180_000);

  it('transformedEmbeddings draws fresh noise on every call and leaves unselected positions clean', async () => {
    const before = liveBufferCount();
    const cloak = new TransformerCloak({ hiddenSize: 32, seed: 1 });
    const batch = [...batches(heldOut, 2)][0];
    batch.noiseMask[3] = 0;
    const source = transformedEmbeddings(model, cloak, 9);
    const [first, second, clean] = await scope(() => readAll([source(batch), source(batch), cleanEmbeddings(model)(batch)]));
    cloak.dispose();
    expect(liveBufferCount()).toBe(before);
    const row = (x: ArrayLike<number>, i: number) => Array.from(x).slice(32 * i, 32 * (i + 1));
    expect(row(first, 3)).toEqual(row(clean, 3));
    expect(row(first, 4)).not.toEqual(row(clean, 4));
    expect(row(first, 4)).not.toEqual(row(second, 4));
  });

  it('names bad options and data before any GPU work', async () => {
    const before = liveBufferCount();
    const run = (o: object, data = { train, heldOut }, V = 96) => inversionAttack(cleanEmbeddings(model), data, V, o as never);
    await expect(run({ kind: 'svm' })).rejects.toThrow(/inversionAttack: option 'kind' must be 'linear' or 'mlp', got svm/);
    await expect(run({ kind: 'linear', steps: 0 })).rejects.toThrow(/option 'steps' must be an integer >= 1, got 0/);
    await expect(run({ kind: 'linear', learningRate: -1 })).rejects.toThrow(/option 'learningRate' must be a positive number/);
    await expect(run({ kind: 'linear' }, { train, heldOut: [] })).rejects.toThrow(/'data.heldOut' must be a non-empty list/);
    await expect(run({ kind: 'linear' }, { train, heldOut }, 50)).rejects.toThrow(
      /'data.train\[\d+\]' holds token id \d+, outside \[0, 50\)/,
    );
    expect(liveBufferCount()).toBe(before);
  });
});

describe('evaluatePrivacyUtility', () => {
  it('reports utility, NN-FR by cosine and L2 and the four attacks, freeing everything', async () => {
    const before = liveBufferCount();
    const cloaks = [new TransformerCloak({ hiddenSize: 32, seed: 1 }), new TransformerCloak({ hiddenSize: 32, seed: 2 })];
    const attack = { steps: 40, learningRate: 2e-2, hiddenSize: 32, seed: 4 };
    const a = await evaluatePrivacyUtility(model, cloaks[0], { train, heldOut }, { attack });
    const b = await evaluatePrivacyUtility(model, cloaks[1], { train, heldOut }, { attack: false });
    for (const c of cloaks) c.dispose();
    expect(liveBufferCount()).toBe(before);
    // The teacher never sees the transform: its accuracy and perplexity do not depend on the cloak.
    expect(b.utility.teacherAccuracy).toBe(a.utility.teacherAccuracy);
    expect(b.utility.teacherPerplexity).toBe(a.utility.teacherPerplexity);
    expect(a.utility.targetPositions).toBeGreaterThan(100);
    expect(a.privacy.transformedPositions).toBeGreaterThan(100);
    for (const r of [a, b]) {
      for (const v of [r.privacy.nnfrCosine, r.privacy.nnfrL2, r.utility.top1Agreement, r.utility.studentAccuracy]) {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
    }
    expect(b.privacy.attack).toBeNull();
    const attacks = a.privacy.attack!;
    // A short attack (the long ones are above): on clean embeddings it already reads far more than the majority guess.
    expect(attacks.linearClean.recoveryRate).toBeGreaterThan(attacks.linearClean.majorityRate + 0.2);
    expect(attacks.mlpClean.recoveryRate).toBeGreaterThan(attacks.mlpClean.majorityRate + 0.2);
    for (const r of Object.values(attacks)) expect(r.positions).toBe(attacks.linearClean.positions);
  }, 180_000);
});
