/**
 * Scopes and grad mode beside other tasks in a real page (Chromium, no async context to track):
 * a training step while a transform runs, another task's `noGrad(async)` is pending and the app
 * makes a tensor gives the same numbers as the step alone, and frees nothing that is not its own
 * (issue 12, class 2; Node covers the other interleavings in test/node/concurrency.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { liveBufferCount, noGrad, tensor } from '../../src/index';
import { loadCausalLM } from '../../src/models/causalLM';
import { tracksAsyncContext } from '../../src/tensor/taskLocal';
import { packSequences, seededRandom } from '../../src/text/data';
import { Trainer } from '../../src/train/trainer';
import { browserGpu } from './browser-gpu';
import { loadModelFixture } from './fixtures';

describe('the trainer beside other tasks in Chromium', () => {
  it('a step beside a transform, a pending noGrad and an app tensor equals the step alone', async () => {
    await browserGpu();
    expect(tracksAsyncContext).toBe(false);
    const { config, weights } = await loadModelFixture('tiny-llama');
    const model = await loadCausalLM({ config, weights });
    const random = seededRandom(7);
    const docs = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => 3 + Math.floor(random() * 90)));
    const train = packSequences(docs, { seqLen: 8, padId: 0, bos: 1, eos: 2 });
    const options = {
      factory: 'crossEntropyDistillation' as const,
      factoryOptions: { distillationCrossEntropyLossWeight: 1, absoluteCosineSimilarityPenaltyWeight: 0.5, medianNormPenaltyWeight: 0.1 },
      cloak: { numLayers: 1, seed: 3 },
      batchSize: 2,
      seed: 11,
    };
    const alone = new Trainer(model, { train }, options);
    const interleaved = new Trainer(model, { train }, options);
    await alone.step();
    await interleaved.step();
    const prompt = [1, 5, 9, 13];
    const transformAlone = await alone.transform.transform(prompt, { model, seed: 4 });
    const reference = await alone.step();
    const before = liveBufferCount();

    let open = () => {};
    const opened = new Promise<void>((r) => {
      open = r;
    });
    const holding = noGrad(async () => {
      await opened;
    });
    const transformed = interleaved.transform.transform(prompt, { model, seed: 4 });
    const step = interleaved.step();
    const madeDuringStep = tensor([1, 2, 3]);
    const [report, t] = await Promise.all([step, transformed]);
    open();
    await holding;

    expect(report.loss).toBe(reference.loss);
    expect(report.components).toEqual(reference.components);
    expect([...t.embeddings]).toEqual([...transformAlone.embeddings]);
    expect([...(await madeDuringStep.toArray())]).toEqual([1, 2, 3]);
    madeDuringStep.dispose();
    expect(liveBufferCount()).toBe(before);
    alone.dispose();
    interleaved.dispose();
    model.dispose();
  });
});
