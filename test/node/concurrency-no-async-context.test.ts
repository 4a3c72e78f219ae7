/**
 * The browsers' path of task-local state, in Node: with no async context to track (Node's
 * `process.getBuiltinModule` hidden before the library loads), the library's own async calls still
 * hold no scope or grad mode across an `await`. A training step beside a transform, a pending
 * `noGrad(async)` of another task and a tensor the app makes meanwhile gives the same numbers as
 * alone and frees nothing that is not its own (issue 12, class 2). Every import is dynamic so that
 * the library loads after the hiding.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES_DIR } from '../helpers/fixtures';

const hidden = process.getBuiltinModule;
(process as { getBuiltinModule?: unknown }).getBuiltinModule = undefined;
const lib = await import('../../src/index');
const { tracksAsyncContext } = await import('../../src/tensor/taskLocal');
const { loadCausalLM } = await import('../../src/models/causalLM');
const { packSequences, seededRandom } = await import('../../src/text/data');
const { Trainer } = await import('../../src/train/trainer');
(process as { getBuiltinModule?: unknown }).getBuiltinModule = hidden;

describe('without async context (the browsers path)', () => {
  it('is the fallback, and a step beside a transform, a pending noGrad and an app tensor is the same as alone', async () => {
    expect(tracksAsyncContext).toBe(false);
    await lib.init();
    const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
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
    const before = lib.liveBufferCount();

    let open = () => {};
    const opened = new Promise<void>((r) => {
      open = r;
    });
    const holding = lib.noGrad(async () => {
      await opened;
    });
    const transformed = interleaved.transform.transform(prompt, { model, seed: 4 });
    const step = interleaved.step();
    const madeDuringStep = lib.tensor([1, 2, 3]);
    const [report, t] = await Promise.all([step, transformed]);
    open();
    await holding;

    expect(report.loss).toBe(reference.loss);
    expect(report.components).toEqual(reference.components);
    expect([...t.embeddings]).toEqual([...transformAlone.embeddings]);
    expect([...(await madeDuringStep.toArray())]).toEqual([1, 2, 3]);
    madeDuringStep.dispose();
    expect(lib.liveBufferCount()).toBe(before);
    alone.dispose();
    interleaved.dispose();
    model.dispose();
  });
});
