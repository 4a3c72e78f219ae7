/**
 * Memory you can see before you run (issue 9, point 6): `estimateMemory` against what the buffer
 * pool really hands out. Each case loads a model, makes a trainer and runs two steps (the first
 * computes the embedding statistics and AdamW's state), with the pool's peak measured from just
 * before the model is loaded; the estimate, made from the config and the sizes alone, must be
 * within {@link TOLERANCE} of it. The weights must match to the byte (`CausalLM.weightBytes`), the
 * optimizer state to the pool's size classes. `memoryProblems` / `checkMemory` are checked for
 * their advice: what they suggest fits, one more does not.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { liveBufferCount, tensor } from '../../src/index';
import { sizeClass } from '../../src/gpu/bufferPool';
import { loadCausalLM } from '../../src/models/causalLM';
import { parseSafetensors } from '../../src/models/safetensors';
import { DEFAULT_FACTORY_OPTIONS, type FactoryName } from '../../src/factories/options';
import { Trainer } from '../../src/train/trainer';
import { MODEL_PRESETS } from '../../scripts/make-test-model';
import { checkMemory, estimateMemory, memoryProblems, type MemoryEstimateOptions } from '../../src/train/memory';
import { makeTestModel } from '../../scripts/make-test-model';
import { isSgtError } from '../../src/gpu/errors';

/**
 * The largest relative error of the estimated peak allowed here. Measured on these cases it is
 * under 1% (each tensor is rounded to its pool size class as the pool does; what is left is the
 * rough count of 0-d scalars and the order of small frees): 3% leaves room for small changes in
 * the ops without hiding a missed activation, which costs 5-15% on these models.
 */
const TOLERANCE = 0.03;

interface Case {
  name: string;
  config: Record<string, unknown>;
  weights: Uint8Array | Uint8Array[];
  batchSize: number;
  seqLen: number;
  factory?: FactoryName;
  factoryOptions?: Record<string, unknown>;
  accumulationSteps?: number;
  bindingLimit?: number;
  fusedHead?: boolean;
}

function fixture(name: string): Pick<Case, 'config' | 'weights'> {
  const dir = resolve(FIXTURES_DIR, name);
  const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const index = resolve(dir, 'model.safetensors.index.json');
  try {
    const shards = Object.values((JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map);
    return { config, weights: [...new Set(shards)].map((f) => new Uint8Array(readFileSync(resolve(dir, f)))) };
  } catch {
    return { config, weights: new Uint8Array(readFileSync(resolve(dir, 'model.safetensors'))) };
  }
}

/** A small Llama-layout config (tied, GQA 2:1) with `over` applied. */
function generated(over: Record<string, unknown>, dtype: 'f32' | 'bf16'): Pick<Case, 'config' | 'weights'> {
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 1000,
    hidden_size: 64,
    intermediate_size: 160,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 256,
    tie_word_embeddings: true,
    ...over,
  };
  return { config, weights: makeTestModel(config, { dtype }).bytes };
}

/** The file's dtype of each tensor, by name without GPT-2's `transformer.` prefix. */
async function fileDtypes(weights: Case['weights']): Promise<(name: string) => 'f32' | 'bf16' | 'f16'> {
  const files = Array.isArray(weights) ? weights.map((w) => parseSafetensors(w)) : [parseSafetensors(weights)];
  const map = new Map<string, string>();
  for (const f of files) for (const [k, e] of f.tensors) map.set(k.replace(/^transformer\./, ''), e.dtype.toLowerCase());
  return (name) => map.get(name) as 'f32' | 'bf16' | 'f16';
}

/** Loads, trains two steps and returns the pool's peak above what was live before the load, with the model's and cloak's bytes. */
async function measure(c: Case) {
  const ctx = await gpu();
  ctx.setBindingLimit(c.bindingLimit ?? null);
  await ctx.sync();
  const base = ctx.pool.liveBytes;
  ctx.pool.resetPeak();
  const model = await loadCausalLM({ config: c.config, weights: c.weights });
  const V = model.config.vocabSize;
  const T = c.seqLen;
  const train = Array.from({ length: 4 * c.batchSize * (c.accumulationSteps ?? 1) }, (_, s) => ({
    ids: Int32Array.from({ length: T }, (_, i) => (s * 7 + i * 13 + 1) % V),
    attentionMask: new Uint8Array(T).fill(1),
    noiseMask: new Uint8Array(T).fill(1),
    lossMask: new Uint8Array(T).fill(1),
  }));
  const factory = c.factory ?? 'crossEntropyDistillation';
  const trainer = new Trainer(
    model,
    { train },
    {
      factory,
      factoryOptions: { ...DEFAULT_FACTORY_OPTIONS[factory], ...c.factoryOptions },
      batchSize: c.batchSize,
      accumulationSteps: c.accumulationSteps,
      fusedHead: c.fusedHead,
    },
  );
  expect(trainer.noisyModel.fusedHead).toBe(c.fusedHead ?? true);
  try {
    await trainer.step();
    await trainer.step();
    await ctx.sync();
    let cloakPool = 0;
    for (const p of trainer.transform.parameters()) cloakPool += sizeClass(p.byteLength);
    return {
      peak: ctx.pool.peakLiveBytes - base,
      weightBytes: model.weightBytes,
      cloakPool,
      blocks: model.embeddingBlocks().map((b) => b.shape[0]),
    };
  } finally {
    trainer.dispose();
    model.dispose();
    ctx.setBindingLimit(null);
  }
}

const CASES: (() => Case)[] = [
  () => ({ name: 'tiny-llama (F32), crossEntropyDistillation', ...fixture('tiny-llama'), batchSize: 2, seqLen: 16 }),
  () => ({ name: 'tiny-llama, B 4, T 32', ...fixture('tiny-llama'), batchSize: 4, seqLen: 32 }),
  () => ({ name: 'tiny-qwen2 (BF16, biases)', ...fixture('tiny-qwen2'), batchSize: 2, seqLen: 16 }),
  () => ({ name: 'tiny-llama3 (BF16 shards, llama3 RoPE)', ...fixture('tiny-llama3'), batchSize: 2, seqLen: 16 }),
  () => ({ name: 'tiny-gpt2', ...fixture('tiny-gpt2'), batchSize: 2, seqLen: 16 }),
  () => ({ name: 'tiny-llama, distillation on the logits', ...fixture('tiny-llama'), batchSize: 2, seqLen: 16, factory: 'distillation' }),
  () => ({
    name: 'tiny-llama, distillation at block 0 with L2 and catalyst',
    ...fixture('tiny-llama'),
    batchSize: 2,
    seqLen: 16,
    factory: 'distillation',
    factoryOptions: { distillationLayerIndex: 0, distillationLayerL2DistanceLossWeight: 0.3, inverseL2PowerLawCatalystLossWeight: 0.2 },
  }),
  () => ({
    name: 'tiny-gpt2, mutualInformationDistillation at block 1',
    ...fixture('tiny-gpt2'),
    batchSize: 4,
    seqLen: 16,
    factory: 'mutualInformationDistillation',
    factoryOptions: { distillationLayerIndex: 1 },
  }),
  () => ({
    name: 'tiny-llama, MI + cross-entropy',
    ...fixture('tiny-llama'),
    batchSize: 2,
    seqLen: 16,
    factory: 'mutualInformationCrossEntropyDistillation',
  }),
  () => ({
    name: 'tiny-llama, unfused cross-entropy (the logits made)',
    ...fixture('tiny-llama'),
    batchSize: 2,
    seqLen: 16,
    fusedHead: false,
  }),
  () => ({ name: 'tiny-qwen2, two micro-batches', ...fixture('tiny-qwen2'), batchSize: 2, seqLen: 16, accumulationSteps: 2 }),
  () => ({
    name: 'generated Llama V 4000, d 96, 3 blocks, F32, B 4, T 32',
    ...generated({ vocab_size: 4000, hidden_size: 96, intermediate_size: 256, num_hidden_layers: 3 }, 'f32'),
    batchSize: 4,
    seqLen: 32,
  }),
  () => ({
    name: 'generated Llama V 4000, d 96, unfused: [B*T, V] logits x3',
    ...generated({ vocab_size: 4000, hidden_size: 96, intermediate_size: 256, num_hidden_layers: 3 }, 'f32'),
    batchSize: 4,
    seqLen: 32,
    fusedHead: false,
  }),
  () => ({
    name: 'generated Qwen2 V 8000, d 128, BF16 (biases, GQA 4:1)',
    ...generated(
      {
        model_type: 'qwen2',
        architectures: ['Qwen2ForCausalLM'],
        vocab_size: 8000,
        hidden_size: 128,
        intermediate_size: 344,
        num_attention_heads: 8,
      },
      'bf16',
    ),
    batchSize: 2,
    seqLen: 32,
  }),
  () => ({
    name: 'generated Llama V 16000, BF16, B 1 x T 8, binding limit 1 MiB (the peak: the first step widening the table)',
    ...generated({ vocab_size: 16000, num_hidden_layers: 1 }, 'bf16'),
    batchSize: 1,
    seqLen: 8,
    bindingLimit: 2 ** 20,
  }),
  () => ({
    name: 'generated Llama V 4000, BF16, binding limit 128 KiB (table in 8 blocks)',
    ...generated({ vocab_size: 4000 }, 'bf16'),
    batchSize: 2,
    seqLen: 32,
    bindingLimit: 131072,
  }),
];

describe("the buffer pool's peaks", () => {
  it('the held peak counts the freed buffers kept for reuse, the live peak only what is handed out', async () => {
    const ctx = await gpu();
    await ctx.sync();
    ctx.pool.clear();
    ctx.pool.resetPeak();
    const live = ctx.pool.liveBytes;
    expect(ctx.pool.heldBytes).toBe(live);
    const KIB = 1024;
    const a = tensor(new Float32Array(64 * KIB)); // 256 KiB
    a.dispose(); // kept for reuse
    expect(ctx.pool.liveBytes).toBe(live);
    expect(ctx.pool.heldBytes).toBe(live + 256 * KIB);
    const b = tensor(new Float32Array(128 * KIB)); // 512 KiB, another size class
    expect(ctx.pool.peakLiveBytes).toBe(live + 512 * KIB);
    expect(ctx.pool.peakHeldBytes).toBe(live + 768 * KIB);
    b.dispose();
    const c = tensor(new Float32Array(64 * KIB)); // the kept 256 KiB buffer again: nothing new is held
    expect(ctx.pool.peakHeldBytes).toBe(live + 768 * KIB);
    c.dispose();
    ctx.pool.clear();
    expect(ctx.pool.heldBytes).toBe(live);
  });
});

describe('estimateMemory against the buffer pool', () => {
  it.each(CASES.map((make) => [make().name, make] as const))('%s', async (_name, make) => {
    const c = make();
    await gpu();
    const before = liveBufferCount();
    const measured = await measure(c);
    expect(liveBufferCount()).toBe(before);
    const options: MemoryEstimateOptions = {
      batchSize: c.batchSize,
      seqLen: c.seqLen,
      factory: c.factory,
      factoryOptions: c.factoryOptions,
      accumulationSteps: c.accumulationSteps,
      dtype: await fileDtypes(c.weights),
      bindingLimit: c.bindingLimit,
      fusedHead: c.fusedHead,
    };
    const e = estimateMemory(c.config, options);
    expect(e.weightBytes).toBe(measured.weightBytes);
    expect(e.optimizerBytes).toBe(4 * measured.cloakPool);
    expect(e.totalBytes).toBe(e.weightBytes + e.modelCacheBytes + e.optimizerBytes + e.activationBytes);
    expect(Math.abs(e.totalBytes / measured.peak - 1)).toBeLessThan(TOLERANCE);
    if (c.bindingLimit) {
      const rows = Object.values(e.rowBlocks)[0];
      expect(measured.blocks.length).toBeGreaterThan(1);
      expect(measured.blocks[0]).toBe(rows);
      expect(e.largestBinding.bytes).toBeLessThanOrEqual(c.bindingLimit);
    }
  });
});

describe('memoryProblems and checkMemory', () => {
  const smol = MODEL_PRESETS['smollm2-135m'];
  const base: MemoryEstimateOptions = { batchSize: 8, seqLen: 256, dtype: 'bf16' };
  const MIB = 2 ** 20;

  it('the fused head never makes the logits; the unfused path needs three [B*T, V] tensors more', () => {
    const fused = estimateMemory(smol, base);
    const unfused = estimateMemory(smol, { ...base, fusedHead: false });
    const logits = 8 * 256 * 49152 * 4;
    expect(fused.largestBinding.what).not.toMatch(/logits/);
    expect(unfused.largestBinding).toEqual({ bytes: logits, what: 'the logits [2048, 49152]' });
    expect(unfused.activationBytes - fused.activationBytes).toBeGreaterThan(2.5 * logits);
    expect(fused.weightBytes).toBe(unfused.weightBytes);
  });

  it('a budget too small names the peak, its parts and the largest batch size and sequence length that fit', () => {
    const e = estimateMemory(smol, base);
    const budget = Math.floor(e.weightBytes + e.optimizerBytes + e.modelCacheBytes + e.activationBytes / 3);
    const names = { batchSize: '--batch-size', seqLen: '--seq-len', budget: '--memory-budget' };
    const [problem, ...others] = memoryProblems(smol, base, { budget }, names);
    expect(others).toEqual([]);
    expect(problem).toMatch(/more than the budget of .* \(--memory-budget\)/);
    expect(problem).toContain(`weights ${(e.weightBytes / MIB).toFixed(1)} MiB`);
    const b = Number(/--batch-size (\d+)/.exec(problem)![1]);
    const t = Number(/--seq-len (\d+)/.exec(problem)![1]);
    expect(estimateMemory(smol, { ...base, batchSize: b }).totalBytes).toBeLessThanOrEqual(budget);
    expect(estimateMemory(smol, { ...base, batchSize: b + 1 }).totalBytes).toBeGreaterThan(budget);
    expect(estimateMemory(smol, { ...base, seqLen: t }).totalBytes).toBeLessThanOrEqual(budget);
    expect(estimateMemory(smol, { ...base, seqLen: t + 1 }).totalBytes).toBeGreaterThan(budget);
    expect(memoryProblems(smol, { ...base, batchSize: b }, { budget })).toEqual([]);
  });

  it('logits over the binding limit: the unfused path is named with what fits, the fused path fits', () => {
    const limit = 128 * MIB;
    const problems = memoryProblems(smol, { ...base, fusedHead: false }, { bindingLimit: limit });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/one storage binding may hold 128\.0 MiB .* the logits \[2048, 49152\] needs 384\.0 MiB/);
    expect(problems[0]).toMatch(/the fused LM-head cross-entropy \(fusedHead true\)/);
    expect(memoryProblems(smol, base, { bindingLimit: limit })).toEqual([]);
  });

  it('the weights alone over the budget: nothing to lower but the model', () => {
    const e = estimateMemory(smol, base);
    const problems = memoryProblems(smol, base, { budget: e.weightBytes - 1 });
    expect(problems[0]).toMatch(
      /no batch size or sequence length helps: even the smallest run \(1 sequence of 2 tokens\) needs about .* raise memoryBudget to at least that, or use a smaller model/,
    );
  });

  it('a weight that cannot be split over the binding limit is named', () => {
    const problems = memoryProblems(smol, base, { bindingLimit: 1 * MIB });
    expect(problems[0]).toMatch(/weight 'model\.layers\.0\.mlp\.gate_proj\.weight' \[1536, 576\] \(bf16\) needs 1\.69 MiB/);
    expect(problems[0]).toMatch(
      /no batch size or sequence length helps: even the smallest run .* needs weight 'model\.layers\.0\.mlp\.gate_proj\.weight'/,
    );
  });

  it('checkMemory throws LIMIT_EXCEEDED with every problem, and returns the estimate when it fits', () => {
    expect(checkMemory(smol, base, { budget: 8 * 2 ** 30, bindingLimit: 128 * MIB })).toEqual(
      estimateMemory(smol, { ...base, bindingLimit: 128 * MIB }),
    );
    let error: unknown;
    try {
      checkMemory(smol, { ...base, fusedHead: false }, { budget: 1 * 2 ** 30, bindingLimit: 128 * MIB });
    } catch (e) {
      error = e;
    }
    expect(isSgtError(error, 'LIMIT_EXCEEDED')).toBe(true);
    expect((error as Error).message).toMatch(/storage binding .*; and the run needs about/);
  });

  it('bad options are named before anything else', () => {
    expect(() => estimateMemory(smol, { ...base, batchSize: 0 })).toThrow(/'batchSize' must be a positive integer, got 0/);
    expect(() => estimateMemory(smol, { ...base, seqLen: 1.5 })).toThrow(/'seqLen' must be a positive integer/);
    expect(() => estimateMemory(smol, { ...base, factory: 'nope' as FactoryName })).toThrow(/'factory' must be one of/);
    expect(() => estimateMemory(smol, { ...base, dtype: 'f64' as 'f32' })).toThrow(/'dtype' must be 'f32', 'bf16' or 'f16'/);
    expect(() => estimateMemory({ ...smol, hidden_size: -1 }, base)).toThrow(/hidden_size/);
  });
});
