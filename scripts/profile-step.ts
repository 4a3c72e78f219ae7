/**
 * `node scripts/run.mjs scripts/profile-step.ts [--model default|small|bpe|all] [--steps n] [--factory f] [--by-kernel] [--time-kernels]`
 *
 * Profiles one SGT training step end to end (the Trainer: teacher and student forwards, the
 * cloak, the loss, backward, clipping, AdamW, one readback): tokens/s (median of `--steps` timed
 * steps after two warm-up steps) and, per step, the dispatches, buffer copies, submits and
 * readbacks the GPU context counted. `--by-kernel` lists the dispatches per kernel entry point,
 * `--time-kernels` the GPU time per entry point of one more step (timestamp queries, one compute
 * pass per dispatch, so somewhat slower than a plain step). Models:
 *
 * - `default`: `models/default`, whatever it is at the time (say which in a report);
 * - `small`: fixed, the default model's config of 2026-11-28 (V 259, d 128, 4 blocks, 4 heads, I 352);
 * - `bpe`: fixed, a BPE-sized Llama: V 4096, d 192, 4 blocks, 6 heads / 2 KV heads (head 32), I 512.
 *
 * The fixed ones have seeded random weights, tied embeddings, f32. B = 4, T = 64 (the CLI's
 * defaults), factory `crossEntropyDistillation` unless `--factory`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { init } from '../src/gpu/context';
import { loadCausalLM, type CausalLM } from '../src/models/causalLM';
import { parseModelConfig } from '../src/models/config';
import type { SafetensorsFile } from '../src/models/safetensors';
import { expectedWeights } from '../src/models/weights';
import { seededRandom, type PackedSequence } from '../src/text/data';
import { Trainer } from '../src/train/trainer';
import { DEFAULT_FACTORY_OPTIONS, type FactoryName } from '../src/factories/options';

const LLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 256,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  torch_dtype: 'float32',
};
const CONFIGS = {
  small: {
    ...LLAMA,
    vocab_size: 259,
    hidden_size: 128,
    intermediate_size: 352,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 4,
  },
  bpe: {
    ...LLAMA,
    vocab_size: 4096,
    hidden_size: 192,
    intermediate_size: 512,
    num_hidden_layers: 4,
    num_attention_heads: 6,
    num_key_value_heads: 2,
  },
};
type ModelName = 'default' | keyof typeof CONFIGS;

function seededWeights(raw: unknown): SafetensorsFile {
  const rand = seededRandom(1);
  const half = 0.02 * Math.sqrt(3);
  const tensors = new Map<string, { dtype: 'F32'; shape: number[]; bytes: Uint8Array }>();
  for (const [name, shape] of expectedWeights(parseModelConfig(raw))) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (/norm\.weight$/.test(name)) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = (2 * rand() - 1) * half;
    tensors.set(name, { dtype: 'F32', shape, bytes: new Uint8Array(data.buffer) });
  }
  return { metadata: {}, tensors };
}

async function loadModel(which: ModelName): Promise<CausalLM> {
  if (which !== 'default') return loadCausalLM({ config: CONFIGS[which], weights: seededWeights(CONFIGS[which]) });
  const dir = resolve(import.meta.dirname, '../models/default');
  return loadCausalLM({
    config: readFileSync(resolve(dir, 'config.json'), 'utf8'),
    weights: new Uint8Array(readFileSync(resolve(dir, 'model.safetensors'))),
  });
}

function sequences(vocab: number, count: number, T: number): PackedSequence[] {
  const rand = seededRandom(7);
  return Array.from({ length: count }, () => {
    const ids = Int32Array.from({ length: T }, () => Math.floor(rand() * vocab));
    const ones = new Uint8Array(T).fill(1);
    return { ids, attentionMask: ones, noiseMask: ones, lossMask: ones };
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Flags {
  factory: FactoryName;
  steps: number;
  byKernel: boolean;
  timeKernels: boolean;
}

async function run(which: ModelName, f: Flags): Promise<void> {
  const ctx = await init();
  const B = 4;
  const T = 64;
  const model = await loadModel(which);
  const options = { factory: f.factory, factoryOptions: { ...DEFAULT_FACTORY_OPTIONS[f.factory] }, batchSize: B };
  const trainer = new Trainer(model, { train: sequences(model.config.vocabSize, 16, T) }, options);
  try {
    await trainer.step();
    await trainer.step();
    ctx.countByKernel = f.byKernel;
    ctx.resetCounters();
    const rates: number[] = [];
    for (let s = 0; s < f.steps; s++) rates.push((await trainer.step()).tokensPerSecond);
    const c = ctx.counters;
    const per = (n: number) => (n / f.steps).toFixed(1);
    const cfg = model.config;
    console.log(
      `${which} (V ${cfg.vocabSize}, d ${cfg.hiddenSize}, ${cfg.numLayers} blocks) ${f.factory} B ${B} T ${T}: ` +
        `${median(rates).toFixed(0)} tokens/s (median of ${f.steps}); per step ${per(c.dispatches)} dispatches, ` +
        `${per(c.copies)} copies, ${per(c.submits)} submits, ${per(c.readbacks)} readbacks`,
    );
    if (f.byKernel) for (const [name, n] of [...c.byKernel].sort((a, b) => b[1] - a[1])) console.log(`  ${per(n).padStart(7)}  ${name}`);
    if (f.timeKernels) await timeKernels(trainer);
  } finally {
    trainer.dispose();
    model.dispose();
  }
}

/** One more step with every dispatch timestamped: GPU ms per kernel entry point. */
async function timeKernels(trainer: Trainer): Promise<void> {
  const ctx = await init();
  ctx.startKernelTimer();
  await trainer.step();
  const times = [...(await ctx.stopKernelTimer())].sort((a, b) => b[1].ms - a[1].ms);
  const total = times.reduce((a, [, t]) => a + t.ms, 0);
  console.log(`  GPU time of one step by kernel (timestamps): ${total.toFixed(0)} ms`);
  for (const [name, t] of times) {
    console.log(
      `  ${t.ms.toFixed(1).padStart(8)} ms ${((100 * t.ms) / total).toFixed(1).padStart(5)}%  ${String(t.count).padStart(4)}x  ${name}`,
    );
  }
}

const argv = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const which = arg('--model', 'all');
const models: ModelName[] = which === 'all' ? ['default', 'small', 'bpe'] : [which as ModelName];
const flags: Flags = {
  factory: arg('--factory', 'crossEntropyDistillation') as FactoryName,
  steps: Number(arg('--steps', '5')),
  byKernel: argv.includes('--by-kernel'),
  timeKernels: argv.includes('--time-kernels'),
};
for (const m of models) await run(m, flags);
