/**
 * Scopes and grad mode belong to the code that opened them, also when tasks interleave at their
 * `await`s: a tensor made by one task is never disposed by another task's scope, and one task's
 * `noGrad` never switches off gradient recording for another (issue 12, class 2).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { enableGrad, isGradEnabled, keep, liveBufferCount, mul, noGrad, readAll, scope, sum, tensor, type Tensor } from '../../src/index';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { packSequences, seededRandom, type PackedSequence } from '../../src/text/data';
import { Trainer, type TrainerOptions } from '../../src/train/trainer';

/** A promise and the function that resolves it: lets a test decide the order tasks resume in. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open = () => {};
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { opened, open };
}

let model: CausalLM;
let train: PackedSequence[];

beforeAll(async () => {
  await gpu();
  const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
  const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
  model = await loadCausalLM({ config, weights });
  const random = seededRandom(7);
  const docs = Array.from({ length: 16 }, () => Array.from({ length: 6 + Math.floor(random() * 8) }, () => 3 + Math.floor(random() * 90)));
  train = packSequences(docs, { seqLen: 8, padId: 0, bos: 1, eos: 2 });
});

afterAll(() => model.dispose());

const options: TrainerOptions = {
  factory: 'crossEntropyDistillation',
  factoryOptions: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 0.5, medianNormPenaltyWeight: 0.1 },
  cloak: { numLayers: 1, seed: 3 },
  batchSize: 2,
  learningRate: 3e-3,
  seed: 11,
};

/** The cloak's parameters, read back. */
async function parameters(trainer: Trainer): Promise<number[][]> {
  const values = await readAll([...trainer.transform.namedParameters()].map(([, t]) => t));
  return values.map((v) => [...v]);
}

describe('scopes across interleaved tasks', () => {
  it('two async scopes awaiting alternately each free only their own tensors', async () => {
    const before = liveBufferCount();
    const first = gate();
    const second = gate();
    let a1: Tensor | null = null;
    let b1: Tensor | null = null;
    const a = scope(async () => {
      a1 = tensor([1]);
      await first.opened; // b runs here: it makes b1 while this scope is open
      const a2 = tensor([2]);
      second.open();
      return a2; // this scope ends while b's is still open
    });
    const b = scope(async () => {
      b1 = tensor([10]);
      first.open();
      await second.opened; // a resumes here, makes a2 and ends
      expect(b1!.disposed).toBe(false);
      const b2 = tensor([20]);
      await Promise.resolve();
      return b2;
    });
    const [a2, b2] = await Promise.all([a, b]);
    expect(a1!.disposed).toBe(true);
    expect(b1!.disposed).toBe(true);
    expect(a2.disposed).toBe(false);
    expect(b2.disposed).toBe(false);
    expect([...(await a2.toArray())]).toEqual([2]);
    expect([...(await b2.toArray())]).toEqual([20]);
    a2.dispose();
    b2.dispose();
    expect(liveBufferCount()).toBe(before);
  });

  it('a tensor made outside any scope while an async scope awaits is not freed by it', async () => {
    const before = liveBufferCount();
    const g = gate();
    const pending = scope(async () => {
      tensor([1]);
      await g.opened;
      tensor([2]);
    });
    const outside = tensor([5, 6]);
    // A sync scope of the other task returns a tensor: it goes to that task (no scope), not to
    // the async scope that happens to be open.
    const returned = scope(() => mul(tensor([3]), tensor([4])));
    g.open();
    await pending;
    expect(outside.disposed).toBe(false);
    expect(returned.disposed).toBe(false);
    expect([...(await outside.toArray())]).toEqual([5, 6]);
    expect([...(await returned.toArray())]).toEqual([12]);
    outside.dispose();
    returned.dispose();
    expect(liveBufferCount()).toBe(before);
  });

  it('a tensor returned from an async scope goes to the scope that opened it, even if that scope is not the innermost', async () => {
    const before = liveBufferCount();
    const g = gate();
    let kept: Tensor | null = null;
    const outer = scope(async () => {
      const inner = scope(async () => {
        await g.opened;
        return tensor([7]);
      });
      const other = scope(async () => {
        g.open();
        await inner;
        return null;
      });
      kept = await inner;
      await other;
      expect(kept.disposed).toBe(false);
      return keep(mul(kept, kept));
    });
    const squared = await outer;
    // `kept` belonged to the outer scope, which ended: freed; the kept product is the caller's.
    expect(kept!.disposed).toBe(true);
    expect([...(await squared.toArray())]).toEqual([49]);
    squared.dispose();
    expect(liveBufferCount()).toBe(before);
  });
});

describe('grad mode across interleaved tasks', () => {
  it('noGrad(async) turns recording off for its own task only, across its awaits', async () => {
    const g = gate();
    const x = tensor([1, 2], [2], { requiresGrad: true });
    const pending = noGrad(async () => {
      const inside = mul(x, x);
      await g.opened;
      const after = mul(x, x);
      const result = [isGradEnabled(), inside.requiresGrad, after.requiresGrad];
      inside.dispose();
      after.dispose();
      return result;
    });
    // The other task records the graph while the noGrad task awaits.
    expect(isGradEnabled()).toBe(true);
    const y = sum(mul(x, x));
    expect(y.requiresGrad).toBe(true);
    g.open();
    expect(await pending).toEqual([false, false, false]);
    y.backward();
    expect([...(await x.grad!.toArray())]).toEqual([2, 4]);
    y.dispose();
    x.dispose();
  });

  it('enableGrad inside noGrad records, and each restores what its caller had', async () => {
    const x = tensor([3], [1], { requiresGrad: true });
    const seen = await noGrad(async () => {
      const off = isGradEnabled();
      const on = await enableGrad(async () => {
        await Promise.resolve();
        const y = mul(x, x);
        const recorded = y.requiresGrad;
        y.dispose();
        return recorded && isGradEnabled();
      });
      await Promise.resolve();
      return [off, on, isGradEnabled()];
    });
    expect(seen).toEqual([false, true, false]);
    expect(isGradEnabled()).toBe(true);
    x.dispose();
  });
});

describe('the trainer beside other tasks', () => {
  it('a training step is the same when noGrad(async) or cloak.transform run during it, and frees nothing of theirs', async () => {
    const alone = new Trainer(model, { train }, options);
    const interleaved = new Trainer(model, { train }, options);
    // A first step each (it allocates AdamW's state), then the same second step alone and interleaved.
    await alone.step();
    await interleaved.step();
    const prompt = [1, 5, 9, 13];
    // The interleaved transform starts before the step: it sees the weights before the update.
    const transformAlone = await alone.transform.transform(prompt, { model, seed: 4 });
    const reference = await alone.step();
    const referenceParams = await parameters(alone);
    const before = liveBufferCount();

    // A noGrad task that is still awaiting when the step starts and ends after it.
    const g = gate();
    const x = tensor([2], [1], { requiresGrad: true });
    const holding = noGrad(async () => {
      await g.opened;
      const y = mul(x, x);
      const recorded = y.requiresGrad;
      y.dispose();
      return recorded;
    });
    // A transform that starts first (its noGrad open while it awaits its readback), the step,
    // and a tensor the app makes while the step awaits its own readback.
    const transformed = interleaved.transform.transform(prompt, { model, seed: 4 });
    const step = interleaved.step();
    const madeDuringStep = tensor([1, 2, 3]);
    const [report, t] = await Promise.all([step, transformed]);
    g.open();
    expect(await holding).toBe(false);

    expect(report.loss).toBe(reference.loss);
    expect(report.components).toEqual(reference.components);
    expect(await parameters(interleaved)).toEqual(referenceParams);
    expect([...t.embeddings]).toEqual([...transformAlone.embeddings]);
    expect(madeDuringStep.disposed).toBe(false);
    expect([...(await madeDuringStep.toArray())]).toEqual([1, 2, 3]);
    madeDuringStep.dispose();
    x.dispose();
    expect(liveBufferCount()).toBe(before);
    alone.dispose();
    interleaved.dispose();
  });
});
