/**
 * The base causal LMs against PyTorch float64 (`../shared/fixtures/tiny-*`): every block output,
 * the logits and the input-embedding gradient, on the GPU and on the float64 twin.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR, readFixtureJson, type FixtureArray } from '../helpers/fixtures';
import { expectClose } from '../helpers/compare';
import { liveBufferCount, mul, readAll, scope, sum, tensor } from '../../src/index';
import { loadCausalLM } from '../../src/models/causalLM';
import { parseModelConfig } from '../../src/models/config';
import { parseSafetensors, toFloat32 } from '../../src/models/safetensors';
import { SAFETENSORS_INDEX_NAME, mergeSafetensorsShards, parseSafetensorsIndex, type WeightsInput } from '../../src/models/shards';
import { referenceCausalLM } from '../../src/reference/causalLM';
import { ndarray, type NDArray } from '../../src/reference/index';

interface ModelReference {
  ids: FixtureArray;
  attentionMask: FixtureArray;
  R: FixtureArray;
  blockOutputs: FixtureArray[];
  logits: FixtureArray;
  gradInputsEmbedsOfSumLogitsTimesR: FixtureArray;
}

const MODELS = ['tiny-llama', 'tiny-gpt2', 'tiny-llama3', 'tiny-qwen2'] as const;

/**
 * Tolerances (rtol, atol) of the GPU against PyTorch float64: the BF16 fixtures (issue 9) are
 * checked at rel. 2e-4 for values and 2e-3 for the input gradient.
 */
const TOLERANCE: Record<(typeof MODELS)[number], { values: number; gradient: number }> = {
  'tiny-llama': { values: 1e-4, gradient: 1e-3 },
  'tiny-gpt2': { values: 1e-4, gradient: 1e-3 },
  'tiny-llama3': { values: 2e-4, gradient: 2e-3 },
  'tiny-qwen2': { values: 2e-4, gradient: 2e-3 },
};

/**
 * A fixture's config, weights and reference. `weights` is what loadCausalLM takes: the bytes of
 * model.safetensors, or (tiny-llama3) the index with its two shards; `file` is the parsed (merged) file.
 */
function files(name: string) {
  const dir = resolve(FIXTURES_DIR, name);
  const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as unknown;
  const ref = readFixtureJson<ModelReference>(`${name}/reference.json`);
  if (!existsSync(resolve(dir, SAFETENSORS_INDEX_NAME))) {
    const bytes = new Uint8Array(readFileSync(resolve(dir, 'model.safetensors')));
    return { config, weights: bytes as WeightsInput, file: parseSafetensors(bytes), ref };
  }
  const index = readFileSync(resolve(dir, SAFETENSORS_INDEX_NAME), 'utf8');
  const shards: Record<string, Uint8Array> = {};
  for (const shard of parseSafetensorsIndex(index).shards) shards[shard] = new Uint8Array(readFileSync(resolve(dir, shard)));
  const file = mergeSafetensorsShards(Object.entries(shards).map(([n, bytes]) => ({ name: n, file: parseSafetensors(bytes) })));
  return { config, weights: { index, shards } as WeightsInput, file, ref };
}

/** Keeps the rows (positions) whose attention mask is 1; `width` values per position. */
function realPositions(values: ArrayLike<number>, mask: number[], width: number): number[] {
  const out: number[] = [];
  mask.forEach((m, p) => {
    if (m === 1) for (let j = 0; j < width; j++) out.push(values[p * width + j]);
  });
  return out;
}

/** R * attentionMask broadcast over the last axis: the seed of sum(logits * R * mask). */
function maskedSeed(ref: ModelReference): Float32Array {
  const V = ref.R.shape[2];
  return Float32Array.from(ref.R.data, (r, i) => r * ref.attentionMask.data[Math.floor(i / V)]);
}

describe.each(MODELS)('%s', (name) => {
  it('matches PyTorch on the GPU: block outputs, logits and the input-embedding gradient', async () => {
    await gpu();
    const { config, weights, ref } = files(name);
    const tol = TOLERANCE[name];
    const model = await loadCausalLM({ config, weights });
    const [B, T] = ref.ids.shape;
    const d = model.config.hiddenSize;
    const V = model.config.vocabSize;
    const mask = ref.attentionMask.data;
    const start = liveBufferCount();
    const result = await scope(async () => {
      const x = model.embed({ data: ref.ids.data, shape: [B, T] });
      x.requiresGrad = true;
      const out = model.forward({ inputsEmbeds: x, attentionMask: mask, captureBlocks: 'all' });
      sum(mul(out.logits!, tensor(maskedSeed(ref), [B, T, V]))).backward();
      const arrays = await readAll([...out.blocks, out.logits!, x.grad!]);
      return arrays.map((a) => Array.from(a));
    });
    expect(liveBufferCount()).toBe(start);
    const blocks = result.slice(0, -2);
    const [logits, grad] = result.slice(-2);
    expect(blocks.length).toBe(model.config.numLayers);
    blocks.forEach((b, k) => {
      expectClose(realPositions(b, mask, d), realPositions(ref.blockOutputs[k].data, mask, d), tol.values, 1e-4, `block ${k}`);
    });
    expectClose(realPositions(logits, mask, V), realPositions(ref.logits.data, mask, V), tol.values, 1e-4, 'logits');
    expectClose(
      realPositions(grad, mask, d),
      realPositions(ref.gradInputsEmbedsOfSumLogitsTimesR.data, mask, d),
      tol.gradient,
      1e-4,
      'input gradient',
    );
    model.dispose();
  });

  it('stopping after block k gives the full pass block output, and no logits', async () => {
    await gpu();
    const { config, weights, ref } = files(name);
    const model = await loadCausalLM({ config, weights });
    const [B, T] = ref.ids.shape;
    const ids = { data: ref.ids.data, shape: [B, T] as const };
    const [full, stopped, noLogits] = await scope(async () => {
      const a = model.forward({ ids, attentionMask: ref.attentionMask.data, captureBlocks: [0] });
      const b = model.forward({ ids, attentionMask: ref.attentionMask.data, captureBlocks: [0], stopAfterBlock: 0 });
      const [fa, fb] = await readAll([a.blocks[0], b.blocks[0]]);
      return [fa, fb, b.logits === undefined];
    });
    expect(Array.from(stopped as Float32Array)).toEqual(Array.from(full as Float32Array));
    expect(noLogits).toBe(true);
    model.dispose();
  });

  it('the float64 twin matches PyTorch', () => {
    const { config: raw, file, ref } = files(name);
    const config = parseModelConfig(raw);
    const weights = new Map<string, NDArray>();
    const prefix = config.family === 'gpt2' && file.tensors.has('transformer.wte.weight') ? 'transformer.' : '';
    for (const [k, entry] of file.tensors)
      weights.set(k.startsWith(prefix) ? k.slice(prefix.length) : k, ndarray(toFloat32(entry), entry.shape));
    const [B, T] = ref.ids.shape;
    const d = config.hiddenSize;
    const table = weights.get(config.family === 'llama' ? 'model.embed_tokens.weight' : 'wte.weight')!;
    const embeds = new Float64Array(B * T * d);
    ref.ids.data.forEach((id, p) => {
      embeds.set(table.data.subarray(id * d, (id + 1) * d), p * d);
    });
    const mask = ndarray(ref.attentionMask.data, [B, T]);
    const out = referenceCausalLM(config, weights, ndarray(embeds, [B, T, d]), mask);
    const m = ref.attentionMask.data;
    // The weights are float32 values; the twin computes in float64 like the fixture: tight tolerances.
    out.blocks.forEach((b, k) => {
      expectClose(realPositions(b.data, m, d), realPositions(ref.blockOutputs[k].data, m, d), 1e-9, 1e-10, `twin block ${k}`);
    });
    expectClose(
      realPositions(out.logits.data, m, config.vocabSize),
      realPositions(ref.logits.data, m, config.vocabSize),
      1e-9,
      1e-10,
      'twin logits',
    );
    const seed = ndarray(Float64Array.from(maskedSeed(ref)), ref.R.shape);
    const seedExact = ndarray(
      ref.R.data.map((r, i) => r * m[Math.floor(i / config.vocabSize)]),
      ref.R.shape,
    );
    void seed;
    const grad = out.inputGradient(seedExact);
    expectClose(
      realPositions(grad.data, m, d),
      realPositions(ref.gradInputsEmbedsOfSumLogitsTimesR.data, m, d),
      1e-8,
      1e-10,
      'twin input gradient',
    );
  });
});

describe('the issue-9 fixtures hold what they are meant to test', () => {
  it('tiny-llama3: llama3 scaling with T past the original context, head_dim 16 != 48 / 4, tied, BF16, two shards', () => {
    const { config: raw, file, ref } = files('tiny-llama3');
    const c = parseModelConfig(raw);
    expect([c.hiddenSize, c.numHeads, c.headDim, c.tieWordEmbeddings]).toEqual([48, 4, 16, true]);
    expect(c.numHeads * c.headDim).not.toBe(c.hiddenSize);
    expect(c.ropeScaling).toMatchObject({ type: 'llama3', originalMaxPositionEmbeddings: 16 });
    expect(ref.ids.shape[1]).toBeGreaterThan(16);
    expect(file.tensors.get('model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([64, 48]);
    expect(file.tensors.get('model.layers.0.self_attn.o_proj.weight')!.shape).toEqual([48, 64]);
    expect([...file.tensors.values()].every((e) => e.dtype === 'BF16')).toBe(true);
    expect(file.shards).toHaveLength(2);
  });

  it('tiny-qwen2: q/k/v biases (not zero), GQA 4:1, tied, BF16', () => {
    const { config: raw, file } = files('tiny-qwen2');
    const c = parseModelConfig(raw);
    expect([c.modelType, c.attentionBias, c.numHeads, c.numKvHeads, c.tieWordEmbeddings]).toEqual(['qwen2', true, 4, 1, true]);
    for (const p of ['q', 'k', 'v']) {
      const bias = file.tensors.get(`model.layers.1.self_attn.${p}_proj.bias`)!;
      expect(toFloat32(bias).some((v) => v !== 0)).toBe(true);
    }
    expect([...file.tensors.values()].every((e) => e.dtype === 'BF16')).toBe(true);
  });
});

describe('bad input', () => {
  it('rejects unsupported architectures, bad ids, long sequences and bad block indices, leaving nothing allocated', async () => {
    await gpu();
    const { config, weights } = files('tiny-llama');
    const bytes = weights as Uint8Array;
    const start = liveBufferCount();
    await expect(loadCausalLM({ config: { ...(config as object), model_type: 'bert' }, weights: bytes })).rejects.toThrow(/bert.*llama/s);
    await expect(loadCausalLM({ config, weights: bytes.slice(0, 100) })).rejects.toThrow(/safetensors/);
    expect(liveBufferCount()).toBe(start);
    const model = await loadCausalLM({ config, weights: bytes });
    const loaded = liveBufferCount();
    expect(() => model.embed({ data: [1, 2, 96], shape: [1, 3] })).toThrow(/token id 96 at index 2 is outside the vocabulary \[0, 96\)/);
    expect(() => model.forward({ ids: { data: new Array(65).fill(1), shape: [1, 65] } })).toThrow(
      /sequence length 65 exceeds the model's 64 positions/,
    );
    expect(() => model.forward({ ids: { data: [1, 2], shape: [1, 2] }, stopAfterBlock: 2 })).toThrow(
      /'stopAfterBlock' 2 is out of range: the model has blocks 0..1/,
    );
    expect(() => model.forward({ ids: { data: [1, 2], shape: [1, 2] }, captureBlocks: [5] })).toThrow(/block index 5/);
    expect(() => model.forward({ ids: { data: [1, 2], shape: [1, 2] }, attentionMask: [1, 2] })).toThrow(/only 0 and 1/);
    expect(liveBufferCount()).toBe(loaded);
    model.dispose();
    expect(liveBufferCount()).toBe(start);
    expect(() => model.forward({ ids: { data: [1], shape: [1, 1] } })).toThrow(/disposed/);
  });
});
