/**
 * Writes a Hugging Face model folder with random weights for a given architecture, so that the
 * toolkit can be run on real model sizes without downloading anything: `config.json`,
 * `model.safetensors` (written with the toolkit's own `writeSafetensors`) and `tokens.json`, a
 * `--tokens-file` of random token ids (the folder has no tokenizer).
 *
 *   node scripts/run.mjs scripts/make-test-model.ts --preset qwen2.5-0.5b --layers 2 --dtype bf16 --out runs/qwen-test
 *   node scripts/run.mjs scripts/make-test-model.ts --config my-config.json --dtype f32 --out DIR
 *
 * Presets are the real configs of SmolLM2-135M, Qwen2.5-0.5B and Llama-3.2-1B (`--layers` keeps
 * the first blocks only). Weights are uniform with standard deviation 0.02 from a seeded PRNG
 * (Hugging Face's initialiser range), norm weights 1, biases 0.02-scaled too: the model computes
 * nonsense, but every kernel sees real shapes and real values.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseModelConfig } from '../src/models/config';
import { expectedWeights } from '../src/models/weights';
import { writeSafetensors, type SafetensorsWriteTensor } from '../src/models/safetensorsWriter';
import { floatsToBits16 } from '../src/tensor/half';
import { seededRandom } from '../src/text/data';

/** The real configs (as in their `config.json`) of three models people train transforms for. */
export const MODEL_PRESETS: Readonly<Record<string, Record<string, unknown>>> = {
  'smollm2-135m': {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 49152,
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    max_position_embeddings: 8192,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    bos_token_id: 0,
    eos_token_id: 0,
  },
  'qwen2.5-0.5b': {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    vocab_size: 151936,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    max_position_embeddings: 32768,
    max_window_layers: 21,
    sliding_window: 32768,
    use_sliding_window: false,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    bos_token_id: 151643,
    eos_token_id: 151643,
  },
  'llama-3.2-1b': {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 128256,
    hidden_size: 2048,
    intermediate_size: 8192,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' },
    max_position_embeddings: 131072,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    bos_token_id: 128000,
    eos_token_id: 128001,
  },
};

/** Options of {@link makeTestModel}. */
export interface TestModelOptions {
  /** The weights' dtype in the file (default `'f32'`). */
  dtype?: 'f32' | 'bf16' | 'f16';
  /** Seed of the weights (default 0). */
  seed?: number;
}

/**
 * `config` (a `config.json` object) with random weights: the `model.safetensors` bytes and the
 * file's tensor bytes (what the weights take on the GPU when kept in the file's dtype).
 */
export function makeTestModel(config: Record<string, unknown>, options: TestModelOptions = {}): { bytes: Uint8Array; tensorBytes: number } {
  const cfg = parseModelConfig(config);
  const dtype = options.dtype ?? 'f32';
  const rand = seededRandom(options.seed ?? 0);
  const half = 0.02 * Math.sqrt(3);
  const tensors = new Map<string, SafetensorsWriteTensor>();
  let tensorBytes = 0;
  const prefix = cfg.family === 'gpt2' ? 'transformer.' : '';
  for (const [name, shape] of expectedWeights(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    if (/(norm|ln_\d|ln_f)\.weight$/.test(name)) values.fill(1);
    else for (let i = 0; i < n; i++) values[i] = (2 * rand() - 1) * half;
    const key = name === 'lm_head.weight' ? name : prefix + name;
    if (dtype === 'f32') tensors.set(key, { dtype: 'F32', shape, data: values });
    else tensors.set(key, { dtype: dtype === 'bf16' ? 'BF16' : 'F16', shape, data: floatsToBits16(values, dtype) });
    tensorBytes += n * (dtype === 'f32' ? 4 : 2);
  }
  return { bytes: writeSafetensors(tensors, { format: 'pt' }), tensorBytes };
}

/** `count` documents of `length` random token ids below `vocabSize` (a `--tokens-file`). */
export function randomDocuments(vocabSize: number, count: number, length: number, seed = 1): number[][] {
  const rand = seededRandom(seed);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(rand() * vocabSize)));
}

const USAGE =
  'usage: node scripts/run.mjs scripts/make-test-model.ts (--preset NAME | --config FILE) --out DIR [--layers N] [--dtype f32|bf16|f16] [--seed S] [--documents N] [--doc-length T]\n' +
  `presets: ${Object.keys(MODEL_PRESETS).join(', ')}`;

function main(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string' },
      config: { type: 'string' },
      out: { type: 'string' },
      layers: { type: 'string' },
      dtype: { type: 'string' },
      seed: { type: 'string' },
      documents: { type: 'string' },
      'doc-length': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (!values.out || (values.preset === undefined) === (values.config === undefined)) throw new Error(USAGE);
  const base = values.preset !== undefined ? MODEL_PRESETS[values.preset] : JSON.parse(readFileSync(values.config!, 'utf8'));
  if (!base) throw new Error(`unknown preset '${values.preset}'\n${USAGE}`);
  const config = { ...base } as Record<string, unknown>;
  if (values.layers !== undefined) config.num_hidden_layers = Number(values.layers);
  const dtype = (values.dtype ?? 'bf16') as 'f32' | 'bf16' | 'f16';
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new Error(`--dtype must be f32, bf16 or f16, got ${dtype}`);
  config.torch_dtype = { f32: 'float32', bf16: 'bfloat16', f16: 'float16' }[dtype];
  const { bytes, tensorBytes } = makeTestModel(config, { dtype, seed: Number(values.seed ?? 0) });
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(join(out, 'model.safetensors'), bytes);
  const docs = randomDocuments(parseModelConfig(config).vocabSize, Number(values.documents ?? 64), Number(values['doc-length'] ?? 64));
  writeFileSync(join(out, 'tokens.json'), `${JSON.stringify(docs)}\n`);
  console.log(
    `${out}: model.safetensors ${bytes.byteLength} bytes (${tensorBytes} bytes of ${dtype} tensors), tokens.json ${docs.length} documents`,
  );
}

const entry = process.argv[1];
if (entry && resolve(entry) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
