/**
 * Training-step throughput: one `Trainer.step` (teacher forward, cloak, student forward, the
 * factory's loss, backward, clipping, AdamW on the cloak) in tokens per second, for each of the
 * four loss factories with their default options, at a stated B x T.
 *
 * Two models by default, so that a change in kernels and a change of models/default read apart:
 *
 * - `models/default`: whatever the package's default model is today (loaded as `npm run train` loads it);
 * - `synthetic`: a fixed Llama config (the default model's config of 2026-11-28: V 259, d 128, 4 blocks,
 *   4 heads, I 352, tied, f32) with seeded weights, identical in every run, for before/after tables.
 *
 * `--preset smollm2-135m` style plans (the real configs of `scripts/make-test-model.ts`, BF16 weights
 * made in memory) are what the GPU script runs. Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { loadCausalLM, type CausalLM } from '../src/models/causalLM';
import { loadDefaultModel } from '../src/models/pretrained';
import { DEFAULT_FACTORY_OPTIONS, FACTORY_NAMES, type FactoryName } from '../src/factories/options';
import { Trainer } from '../src/train/trainer';
import { seededRandom } from '../src/text/data';
import { MODEL_PRESETS, makeTestModel } from '../scripts/make-test-model';
import { median } from './timing';

/** The default model's config of 2026-11-28 (0.84M parameters), kept fixed for before/after comparisons. */
export const SYNTHETIC_STEP_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 259,
  hidden_size: 128,
  intermediate_size: 352,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 256,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  torch_dtype: 'float32',
});

/** Which model a step row trains on. */
export type StepModel =
  | { kind: 'default' }
  | { kind: 'synthetic' }
  | { kind: 'preset'; preset: string; blocks?: number; dtype?: 'f32' | 'bf16' };

/** One step benchmark: a model, B x T, the factories, and how many timed steps. */
export interface StepPlan {
  model: StepModel;
  B: number;
  T: number;
  factories?: readonly FactoryName[];
  /** Timed steps after one untimed step (default 3). */
  steps?: number;
}

/** One factory's row. */
export interface StepRow {
  model: string;
  params: number;
  factory: FactoryName;
  B: number;
  T: number;
  /** Median ms of the timed steps, and the tokens per second it gives (B * T / step time). */
  stepMs: number;
  tokensPerSecond: number;
  /** Every timed step's ms, and the first (untimed: kernels compile, embedding statistics are made). */
  samplesMs: number[];
  firstMs: number;
  loss: number;
}

/** `count` sequences of `T` random ids, every position real, transformed and in the loss. */
function sequences(count: number, T: number, vocab: number, seed: number) {
  const rand = seededRandom(seed);
  return Array.from({ length: count }, () => ({
    ids: Int32Array.from({ length: T }, () => Math.floor(rand() * vocab)),
    attentionMask: new Uint8Array(T).fill(1),
    noiseMask: new Uint8Array(T).fill(1),
    lossMask: new Uint8Array(T).fill(1),
  }));
}

async function loadStepModel(m: StepModel): Promise<{ name: string; model: CausalLM; params: number }> {
  if (m.kind === 'default') {
    const p = await loadDefaultModel();
    const c = p.model.config;
    return {
      name: `models/default (V ${c.vocabSize}, d ${c.hiddenSize}, ${c.numLayers} blocks)`,
      model: p.model,
      params: p.parameterCount,
    };
  }
  const base = m.kind === 'synthetic' ? SYNTHETIC_STEP_CONFIG : MODEL_PRESETS[m.preset];
  if (!base)
    throw new Error(`step bench: unknown preset '${m.kind === 'preset' ? m.preset : ''}' (${Object.keys(MODEL_PRESETS).join(', ')})`);
  const total = base.num_hidden_layers as number;
  const blocks = m.kind === 'preset' ? (m.blocks ?? total) : total;
  const config = { ...base, num_hidden_layers: blocks };
  const dtype = m.kind === 'preset' ? (m.dtype ?? 'bf16') : 'f32';
  const { bytes, tensorBytes } = makeTestModel(config, { dtype, seed: 1 });
  const model = await loadCausalLM({ config, weights: bytes });
  const label =
    m.kind === 'synthetic' ? 'synthetic Llama (V 259, d 128, 4 blocks, f32)' : `${m.preset} (${blocks} of ${total} blocks, ${dtype})`;
  return { name: label, model, params: tensorBytes / (dtype === 'f32' ? 4 : 2) };
}

async function factoryRow(name: string, params: number, model: CausalLM, factory: FactoryName, plan: StepPlan): Promise<StepRow> {
  const { B, T } = plan;
  const trainer = new Trainer(
    model,
    { train: sequences(2 * B, T, model.config.vocabSize, 2) },
    { factory, factoryOptions: { ...DEFAULT_FACTORY_OPTIONS[factory] }, batchSize: B },
  );
  try {
    let t0 = performance.now();
    await trainer.step();
    const firstMs = performance.now() - t0;
    const samplesMs: number[] = [];
    let loss = Number.NaN;
    for (let i = 0; i < (plan.steps ?? 3); i++) {
      t0 = performance.now();
      loss = (await trainer.step()).loss;
      samplesMs.push(performance.now() - t0);
    }
    const stepMs = median(samplesMs);
    return { model: name, params, factory, B, T, stepMs, tokensPerSecond: (B * T * 1000) / stepMs, samplesMs, firstMs, loss };
  } finally {
    trainer.dispose();
    await getContext().sync();
  }
}

/** Runs every plan's factories, one model load per plan; `onProgress` after each row. */
export async function stepBenchmarks(plans: readonly StepPlan[], onProgress?: (row: StepRow) => void): Promise<StepRow[]> {
  await init();
  const rows: StepRow[] = [];
  for (const plan of plans) {
    const { name, model, params } = await loadStepModel(plan.model);
    try {
      for (const factory of plan.factories ?? FACTORY_NAMES) {
        const row = await factoryRow(name, params, model, factory, plan);
        rows.push(row);
        onProgress?.(row);
      }
    } finally {
      model.dispose();
      await getContext().sync();
    }
  }
  return rows;
}

/** The bench's default plans: models/default and the fixed synthetic config, B 4 x T 64 (the CLI's defaults). */
export function defaultStepPlans(quick: boolean): StepPlan[] {
  const B = 4;
  const T = quick ? 32 : 64;
  const steps = quick ? 1 : 3;
  return [
    { model: { kind: 'default' }, B, T, steps },
    { model: { kind: 'synthetic' }, B, T, steps },
  ];
}

/** The rows as a Markdown table. */
export function formatStepRows(rows: readonly StepRow[]): string {
  const lines = [
    '| model | factory | B x T | step ms (median) | tokens/s | first step ms | loss |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.model} | ${r.factory} | ${r.B} x ${r.T} | ${r.stepMs.toFixed(0)} (${r.samplesMs.length}) | ${r.tokensPerSecond >= 100 ? r.tokensPerSecond.toFixed(0) : r.tokensPerSecond.toPrecision(3)} | ` +
        `${r.firstMs.toFixed(0)} | ${r.loss.toPrecision(4)} |`,
    );
  }
  return lines.join('\n');
}
