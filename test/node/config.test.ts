/** Hugging Face config.json normalisation, the expected weight list, its check, and the upload to the GPU. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { getContext, liveBufferCount, scope, type Tensor } from '../../src/index';
import { parseModelConfig, type ModelConfig } from '../../src/models/config';
import { parseSafetensors, toFloat32, type SafetensorsEntry, type SafetensorsFile } from '../../src/models/safetensors';
import { checkWeights, expectedWeights, uploadWeights } from '../../src/models/weights';
import { FIXTURES_DIR, readFixtureJson } from '../helpers/fixtures';

type Json = Record<string, unknown>;

const llamaJson = (): Json => readFixtureJson<Json>('tiny-llama/config.json');
const gpt2Json = (): Json => readFixtureJson<Json>('tiny-gpt2/config.json');

function loadFile(model: string): { bytes: Uint8Array; file: SafetensorsFile } {
  const bytes = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, model, 'model.safetensors')));
  return { bytes, file: parseSafetensors(bytes) };
}

/** A file whose tensors are renamed / dropped / replaced, sharing the original entries. */
function edit(file: SafetensorsFile, f: (tensors: Map<string, SafetensorsEntry>) => void): SafetensorsFile {
  const tensors = new Map(file.tensors);
  f(tensors);
  return { metadata: file.metadata, tensors };
}

/** Independent read of one f32 element: header via DataView and JSON.parse. */
function rawF32(bytes: Uint8Array, name: string, index: number): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'));
  return dv.getFloat32(8 + n + header[name].data_offsets[0] + 4 * index, true);
}

describe('parseModelConfig', () => {
  it('normalises the tiny llama config', () => {
    expect(parseModelConfig(llamaJson())).toEqual({
      modelType: 'llama',
      family: 'llama',
      vocabSize: 96,
      hiddenSize: 32,
      intermediateSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 8,
      normEps: 1e-5,
      ropeTheta: 10000,
      maxPositions: 64,
      tieWordEmbeddings: false,
      attentionBias: false,
      mlpBias: false,
      activation: 'silu',
    } satisfies ModelConfig);
  });

  it('normalises the tiny gpt2 config (n_inner null -> 4d, tied head, biases, tanh GELU)', () => {
    expect(parseModelConfig(gpt2Json())).toEqual({
      modelType: 'gpt2',
      family: 'gpt2',
      vocabSize: 80,
      hiddenSize: 32,
      intermediateSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 8,
      normEps: 1e-5,
      ropeTheta: null,
      maxPositions: 32,
      tieWordEmbeddings: true,
      attentionBias: true,
      mlpBias: true,
      activation: 'gelu_tanh',
    } satisfies ModelConfig);
    const c = parseModelConfig({ ...gpt2Json(), n_inner: 50, activation_function: 'gelu_pytorch_tanh', tie_word_embeddings: undefined });
    expect([c.intermediateSize, c.activation, c.tieWordEmbeddings]).toEqual([50, 'gelu_tanh', true]);
  });

  it('applies the HF defaults and the per-type differences', () => {
    const base = llamaJson();
    delete base.num_key_value_heads;
    delete base.tie_word_embeddings;
    delete base.rms_norm_eps;
    delete base.rope_theta;
    const c = parseModelConfig(base);
    expect([c.numKvHeads, c.tieWordEmbeddings, c.normEps, c.ropeTheta]).toEqual([4, false, 1e-6, 10000]);
    // head_dim given: it wins over hidden/heads, and heads need not divide hidden.
    const hd = parseModelConfig({
      ...llamaJson(),
      model_type: 'mistral',
      num_attention_heads: 3,
      num_key_value_heads: 1,
      head_dim: 16,
      sliding_window: 4096,
    });
    expect([hd.modelType, hd.headDim, hd.numHeads, hd.slidingWindow]).toEqual(['mistral', 16, 3, 4096]);
    expect(parseModelConfig({ ...llamaJson(), model_type: 'mistral', sliding_window: null }).slidingWindow).toBeUndefined();
    const q = parseModelConfig({
      ...llamaJson(),
      model_type: 'qwen2',
      tie_word_embeddings: true,
      sliding_window: 4096,
      use_sliding_window: false,
    });
    expect([q.attentionBias, q.mlpBias, q.tieWordEmbeddings, q.slidingWindow]).toEqual([true, false, true, undefined]);
    // SmolLM is a llama with tied embeddings.
    expect(parseModelConfig({ ...llamaJson(), tie_word_embeddings: true, rope_theta: 100000 })).toMatchObject({
      family: 'llama',
      tieWordEmbeddings: true,
      ropeTheta: 100000,
    });
    // transformers v5 nests rope_theta in rope_parameters.
    const v5: Json = { ...llamaJson(), rope_parameters: { rope_type: 'default', rope_theta: 500000 } };
    delete v5.rope_theta;
    expect(parseModelConfig(v5).ropeTheta).toBe(500000);
    expect(parseModelConfig({ ...llamaJson(), mlp_bias: true }).mlpBias).toBe(true);
  });

  it('rejects an unsupported model_type, listing the supported ones', () => {
    expect(() => parseModelConfig({ ...llamaJson(), model_type: 'phi3' })).toThrow(
      "config.json: model_type 'phi3' is not supported (supported: llama, mistral, qwen2, gpt2)",
    );
    expect(() => parseModelConfig({ hidden_size: 4 })).toThrow(/missing 'model_type' \(supported: llama, mistral, qwen2, gpt2\)/);
    expect(() => parseModelConfig([1])).toThrow(/config.json: must be a JSON object, got an array/);
  });

  it('names a missing or invalid field', () => {
    const noLayers = llamaJson();
    delete noLayers.num_hidden_layers;
    expect(() => parseModelConfig(noLayers)).toThrow("config.json: missing required field 'num_hidden_layers'");
    const noEmbd = gpt2Json();
    delete noEmbd.n_embd;
    expect(() => parseModelConfig(noEmbd)).toThrow("config.json: missing required field 'n_embd'");
    expect(() => parseModelConfig({ ...llamaJson(), vocab_size: '96' })).toThrow(`field 'vocab_size' must be a positive integer, got "96"`);
    expect(() => parseModelConfig({ ...llamaJson(), hidden_size: 32.5 })).toThrow(
      /field 'hidden_size' must be a positive integer, got 32.5/,
    );
    expect(() => parseModelConfig({ ...llamaJson(), rms_norm_eps: -1 })).toThrow(/field 'rms_norm_eps' must be a positive number, got -1/);
    expect(() => parseModelConfig({ ...llamaJson(), tie_word_embeddings: 'yes' })).toThrow(
      /field 'tie_word_embeddings' must be true or false/,
    );
  });

  it('checks that heads divide', () => {
    expect(() => parseModelConfig({ ...llamaJson(), num_key_value_heads: 3 })).toThrow(
      "config.json: 'num_key_value_heads' (3) must divide 'num_attention_heads' (4)",
    );
    expect(() => parseModelConfig({ ...llamaJson(), num_attention_heads: 5, num_key_value_heads: 5 })).toThrow(
      "config.json: 'num_attention_heads' (5) must divide 'hidden_size' (32)",
    );
    expect(() => parseModelConfig({ ...gpt2Json(), n_head: 5 })).toThrow("'n_head' (5) must divide 'n_embd' (32)");
  });

  it('reads llama3 and linear RoPE scaling (rope_scaling, legacy type, v5 rope_parameters)', () => {
    const llama3 = { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const want = { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    expect(parseModelConfig({ ...llamaJson(), rope_scaling: llama3 }).ropeScaling).toEqual(want);
    const v5: Json = { ...llamaJson(), rope_parameters: { ...llama3, rope_theta: 500000 } };
    delete v5.rope_theta;
    expect(parseModelConfig(v5)).toMatchObject({ ropeTheta: 500000, ropeScaling: want });
    // Both spellings at once (a v4 file re-saved by v5) agree.
    expect(parseModelConfig({ ...llamaJson(), rope_scaling: llama3, rope_parameters: { ...llama3, rope_theta: 1e4 } }).ropeScaling).toEqual(
      want,
    );
    expect(parseModelConfig({ ...llamaJson(), rope_scaling: { type: 'linear', factor: 2 } }).ropeScaling).toEqual({
      type: 'linear',
      factor: 2,
    });
    expect(parseModelConfig({ ...llamaJson(), model_type: 'qwen2', rope_scaling: { rope_type: 'linear', factor: 4 } }).ropeScaling).toEqual(
      {
        type: 'linear',
        factor: 4,
      },
    );
    expect(parseModelConfig({ ...llamaJson(), rope_scaling: { rope_type: 'default' } }).ropeScaling).toBeUndefined();
    expect(parseModelConfig(readFixtureJson<Json>('tiny-llama3/config.json'))).toMatchObject({
      hiddenSize: 48,
      numHeads: 4,
      headDim: 16,
      ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
    });
  });

  it('rejects other rope types by name, listing the supported ones, and incomplete scalings', () => {
    for (const type of ['dynamic', 'yarn', 'longrope']) {
      expect(() => parseModelConfig({ ...llamaJson(), rope_scaling: { rope_type: type, factor: 4 } })).toThrow(
        `config.json: 'rope_scaling' asks for RoPE type '${type}', which is not supported (supported: default, linear, llama3)`,
      );
    }
    expect(() => parseModelConfig({ ...llamaJson(), rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e6 } })).toThrow(
      /'rope_parameters' asks for RoPE type 'yarn', which is not supported \(supported: default, linear, llama3\)/,
    );
    expect(() => parseModelConfig({ ...llamaJson(), rope_scaling: { type: 'dynamic', factor: 2 } })).toThrow(/RoPE type 'dynamic'/);
    expect(() => parseModelConfig({ ...llamaJson(), rope_scaling: { rope_type: 'llama3', factor: 32 } })).toThrow(
      "config.json: 'rope_scaling' of type 'llama3' needs 'low_freq_factor'",
    );
    expect(() => parseModelConfig({ ...llamaJson(), rope_scaling: { rope_type: 'linear', factor: -1 } })).toThrow(
      "field 'rope_scaling.factor' must be a positive number, got -1",
    );
    const inverted = { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 };
    expect(() => parseModelConfig({ ...llamaJson(), rope_scaling: inverted })).toThrow(
      /'rope_scaling.high_freq_factor' \(1\) must be greater than 'low_freq_factor' \(4\)/,
    );
    expect(() =>
      parseModelConfig({
        ...llamaJson(),
        rope_scaling: { rope_type: 'linear', factor: 2 },
        rope_parameters: { rope_type: 'linear', factor: 4 },
      }),
    ).toThrow(/'rope_scaling' and 'rope_parameters' ask for different RoPE scalings/);
    expect(() => parseModelConfig({ ...llamaJson(), partial_rotary_factor: 0.5 })).toThrow(/'partial_rotary_factor' 0.5 is not supported/);
  });

  it('rejects settings that would change the computation and are not implemented', () => {
    expect(() => parseModelConfig({ ...llamaJson(), hidden_act: 'gelu' })).toThrow(/'hidden_act' is "gelu"; only 'silu'/);
    expect(() => parseModelConfig({ ...gpt2Json(), activation_function: 'relu' })).toThrow(
      /'activation_function' is "relu"; supported for gpt2: 'gelu_new', 'gelu_pytorch_tanh'/,
    );
    expect(() => parseModelConfig({ ...llamaJson(), attention_bias: true })).toThrow(/'attention_bias: true'.*not supported for llama/);
  });
});

describe('expectedWeights and checkWeights', () => {
  it('lists the llama family names and shapes (GQA, qwen2 biases, untied head)', () => {
    const w = expectedWeights(parseModelConfig(llamaJson()));
    expect(w.size).toBe(1 + 2 * 9 + 2);
    expect(w.get('model.embed_tokens.weight')).toEqual([96, 32]);
    expect(w.get('model.layers.1.self_attn.k_proj.weight')).toEqual([16, 32]);
    expect(w.get('model.layers.1.self_attn.o_proj.weight')).toEqual([32, 32]);
    expect(w.get('model.layers.0.mlp.down_proj.weight')).toEqual([32, 64]);
    expect(w.get('lm_head.weight')).toEqual([96, 32]);
    const q = expectedWeights(parseModelConfig({ ...llamaJson(), model_type: 'qwen2', tie_word_embeddings: true }));
    expect(q.get('model.layers.0.self_attn.q_proj.bias')).toEqual([32]);
    expect(q.get('model.layers.0.self_attn.v_proj.bias')).toEqual([16]);
    expect(q.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    expect(q.has('lm_head.weight')).toBe(false);
  });

  it('lists the gpt2 names in the Conv1D [in, out] layout', () => {
    const w = expectedWeights(parseModelConfig(gpt2Json()));
    expect(w.size).toBe(2 + 2 * 12 + 2);
    expect(w.get('h.0.attn.c_attn.weight')).toEqual([32, 96]);
    expect(w.get('h.1.mlp.c_fc.weight')).toEqual([32, 128]);
    expect(w.get('h.1.mlp.c_proj.weight')).toEqual([128, 32]);
    expect(w.get('wpe.weight')).toEqual([32, 32]);
    expect(w.has('lm_head.weight')).toBe(false);
  });

  it('passes both fixture models', () => {
    expect(() => checkWeights(parseModelConfig(llamaJson()), loadFile('tiny-llama').file)).not.toThrow();
    expect(() => checkWeights(parseModelConfig(gpt2Json()), loadFile('tiny-gpt2').file)).not.toThrow();
    // A tied llama (SmolLM) whose file still carries lm_head.weight is fine.
    expect(() => checkWeights(parseModelConfig({ ...llamaJson(), tie_word_embeddings: true }), loadFile('tiny-llama').file)).not.toThrow();
  });

  it('accepts a transformer. prefix, an extra lm_head.weight and unused buffers for gpt2', () => {
    const { file } = loadFile('tiny-gpt2');
    const prefixed = edit(file, (t) => {
      t.clear();
      for (const [k, v] of file.tensors) t.set(`transformer.${k}`, v);
      t.set('lm_head.weight', file.tensors.get('wte.weight')!);
      t.set('transformer.h.0.attn.bias', file.tensors.get('ln_f.bias')!);
    });
    expect(() => checkWeights(parseModelConfig(gpt2Json()), prefixed)).not.toThrow();
  });

  it('lists every missing and every mis-shaped tensor in one error', () => {
    const { file } = loadFile('tiny-llama');
    const broken = edit(file, (t) => {
      t.delete('model.norm.weight');
      t.delete('model.layers.1.mlp.up_proj.weight');
      t.set('model.layers.0.self_attn.k_proj.weight', file.tensors.get('model.layers.0.self_attn.q_proj.weight')!);
    });
    const err = (() => {
      try {
        checkWeights(parseModelConfig(llamaJson()), broken);
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(err).toMatch(/weights do not match the llama config/);
    expect(err).toMatch(/missing 2 tensor\(s\): model.layers.1.mlp.up_proj.weight, model.norm.weight/);
    expect(err).toMatch(/wrong shape for 1 tensor\(s\): model.layers.0.self_attn.k_proj.weight: expected \[16, 32\], found \[32, 32\]/);
    // The wrong architecture altogether says so.
    expect(() => checkWeights(parseModelConfig(gpt2Json()), file)).toThrow(
      /missing 28 tensor\(s\)[\s\S]*none of the expected tensors is in the file \(it has 21, e.g. lm_head.weight/,
    );
  });
});

describe('uploadWeights', () => {
  it('uploads every expected weight as f32 with the file values', async () => {
    await gpu();
    const { bytes, file } = loadFile('tiny-llama');
    const config = parseModelConfig(llamaJson());
    const before = liveBufferCount();
    const progress: number[] = [];
    const w = uploadWeights(config, file, { onProgress: (done) => progress.push(done) });
    try {
      const expected = expectedWeights(config);
      expect([...w.keys()]).toEqual([...expected.keys()]);
      expect(liveBufferCount()).toBe(before + expected.size);
      expect(progress).toEqual(Array.from({ length: expected.size }, (_, i) => i + 1));
      for (const name of ['model.embed_tokens.weight', 'model.layers.1.self_attn.v_proj.weight', 'lm_head.weight']) {
        const t = w.get(name)!;
        expect(t.shape).toEqual(expected.get(name));
        expect(t.dtype).toBe('f32');
        expect(t.requiresGrad).toBe(false);
        const got = await t.toArray();
        for (const i of [0, 5, t.size - 1]) expect(got[i]).toBe(rawF32(bytes, name, i));
      }
    } finally {
      for (const t of w.values()) t.dispose();
    }
    expect(liveBufferCount()).toBe(before);
  });

  it('strips the gpt2 transformer. prefix from the keys', async () => {
    await gpu();
    const { file } = loadFile('tiny-gpt2');
    const prefixed = edit(file, (t) => {
      t.clear();
      for (const [k, v] of file.tensors) t.set(`transformer.${k}`, v);
    });
    const w = uploadWeights(parseModelConfig(gpt2Json()), prefixed);
    try {
      expect(w.has('wte.weight')).toBe(true);
      expect(w.get('h.0.attn.c_attn.weight')!.shape).toEqual([32, 96]);
      expect([...(await w.get('ln_f.weight')!.toArray())]).toEqual([...toFloat32(file.tensors.get('ln_f.weight')!)]);
    } finally {
      for (const t of w.values()) t.dispose();
    }
  });

  it('frees what it made when it fails midway', async () => {
    await gpu();
    const { file } = loadFile('tiny-llama');
    const config = parseModelConfig(llamaJson());
    const before = liveBufferCount();
    // Right shape, too few bytes: passes checkWeights, then the size check rejects it before any upload.
    const name = 'model.layers.1.mlp.gate_proj.weight';
    const e = file.tensors.get(name)!;
    const short = edit(file, (t) => t.set(name, { ...e, bytes: e.bytes.subarray(0, e.bytes.length - 4) }));
    expect(() => uploadWeights(config, short)).toThrow(
      /'model.layers.1.mlp.gate_proj.weight' has 8188 bytes but shape \[64, 32\] in F32 needs 8192/,
    );
    expect(liveBufferCount()).toBe(before);
    // A throwing progress callback is another midway failure.
    expect(() =>
      uploadWeights(config, file, {
        onProgress: (done) => {
          if (done === 5) throw new Error('stop');
        },
      }),
    ).toThrow('stop');
    expect(liveBufferCount()).toBe(before);
  });

  it('fails before any GPU work on a bad file or a tensor beyond the binding limit', async () => {
    await gpu();
    const before = liveBufferCount();
    const { file } = loadFile('tiny-llama');
    expect(() => uploadWeights(parseModelConfig(gpt2Json()), file)).toThrow(/weights do not match the gpt2 config/);
    expect(liveBufferCount()).toBe(before);
    // A fake file with the right shapes whose MLP weights are over the limit; its bytes are never read.
    // (An embedding over the limit is stored as row blocks: see weight-layout.test.ts.)
    const limit = getContext().bindingLimit;
    const config = parseModelConfig({ ...llamaJson(), intermediate_size: Math.floor(limit / (32 * 4)) + 1 });
    const fake: SafetensorsFile = { metadata: {}, tensors: new Map() };
    for (const [n, shape] of expectedWeights(config)) fake.tensors.set(n, { dtype: 'F32', shape, bytes: new Uint8Array(0) });
    expect(() => uploadWeights(config, fake)).toThrow(
      new RegExp(
        `'model.layers.0.mlp.gate_proj.weight' \\[${config.intermediateSize}, 32\\] needs \\d+ bytes as f32, more than the storage binding limit \\(${limit} bytes\\); only the token embedding and the LM head are stored as row blocks`,
      ),
    );
    expect(liveBufferCount()).toBe(before);
  });

  it('keeps the tensors out of an enclosing scope', async () => {
    await gpu();
    const { file } = loadFile('tiny-gpt2');
    let w: Map<string, Tensor> | undefined;
    scope(() => {
      w = uploadWeights(parseModelConfig(gpt2Json()), file);
    });
    try {
      expect([...w!.values()].every((t) => !t.disposed)).toBe(true);
    } finally {
      for (const t of w!.values()) t.dispose();
    }
  });
});
