/**
 * Training steps on the real configs of the models people train transforms for (SmolLM2-135M,
 * Qwen2.5-0.5B, Llama-3.2-1B: `MODEL_PRESETS` of scripts/make-test-model.ts), with generated BF16
 * weights built in memory, reduced to what the adapter does in minutes: the first few blocks and
 * a short sequence (each row says which). Per model: the median time of a `Trainer.step`
 * (crossEntropyDistillation, fused LM head), the buffer pool's peak from the model's load through
 * the steps, the weights' GPU bytes (= the file's tensor bytes) and `estimateMemory`'s figure for
 * the same run.
 *
 * Then the fused LM-head cross-entropy against the unfused reference path (logits, then
 * `distillationCrossEntropy`) on one forward + backward of the noisy model at a size where the
 * `[B*T, V]` logits show: the peak of each, their times, and the cloak gradients' agreement.
 * Rows are returned, not printed.
 */
import { getContext, init } from '../src/gpu/context';
import { readAll, scope, type Tensor } from '../src/tensor/tensor';
import { loadCausalLM, type CausalLM } from '../src/models/causalLM';
import { NoiseMaskedNoisyTransformerModel, TransformerCloak } from '../src/models/cloak';
import { crossEntropyDistillationFactory } from '../src/factories/distillation';
import { DEFAULT_FACTORY_OPTIONS } from '../src/factories/options';
import { Trainer } from '../src/train/trainer';
import { estimateMemory } from '../src/train/memory';
import { seededRandom } from '../src/text/data';
import { MODEL_PRESETS, makeTestModel } from '../scripts/make-test-model';
import { median } from './timing';

/** One model's training-step row. */
export interface RealModelRow {
  model: string;
  /** Blocks kept of the real model's, and its total. */
  blocks: number;
  totalBlocks: number;
  B: number;
  T: number;
  vocab: number;
  hidden: number;
  /** Weights on the GPU (bytes): the BF16 file's tensor bytes. */
  weightBytes: number;
  /** Row blocks of the embedding under the device's binding limit. */
  embeddingBlocks: number;
  /** Median ms of a timed `Trainer.step` (after one untimed step), and how many were timed. */
  stepMs: number;
  steps: number;
  /** The pool's peak from the model's load through every step (weights included), and the estimate of it. */
  peakBytes: number;
  estimateBytes: number;
}

/** The fused and the unfused cross-entropy on one forward + backward. */
export interface FusedVsUnfusedRow {
  model: string;
  B: number;
  T: number;
  vocab: number;
  /** Peak bytes above what was live before the pass (the weights), and ms of the pass, each path. */
  fusedPeakBytes: number;
  unfusedPeakBytes: number;
  fusedMs: number;
  unfusedMs: number;
  /** Max |fused - unfused| / max |unfused| over the cloak's gradients, and the losses' relative difference. */
  gradRelErr: number;
  lossRelErr: number;
}

/** Options of {@link realModelBenchmarks}. */
export interface RealModelBenchOptions {
  /** One small row (SmolLM2, 1 block, T 8) and a small fused-vs-unfused size. */
  quick?: boolean;
  onProgress?: (message: string) => void;
}

interface Plan {
  model: string;
  preset: string;
  blocks: number;
  B: number;
  T: number;
}

const FULL: Plan[] = [
  { model: 'SmolLM2-135M', preset: 'smollm2-135m', blocks: 4, B: 2, T: 32 },
  { model: 'Qwen2.5-0.5B', preset: 'qwen2.5-0.5b', blocks: 2, B: 1, T: 32 },
  { model: 'Llama-3.2-1B', preset: 'llama-3.2-1b', blocks: 1, B: 1, T: 16 },
];
const QUICK: Plan[] = [{ model: 'SmolLM2-135M', preset: 'smollm2-135m', blocks: 1, B: 1, T: 8 }];

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

function presetConfig(plan: Plan): Record<string, unknown> {
  return { ...MODEL_PRESETS[plan.preset], num_hidden_layers: plan.blocks };
}

async function trainingRow(plan: Plan, steps: number): Promise<RealModelRow> {
  const ctx = getContext();
  const config = presetConfig(plan);
  const { bytes } = makeTestModel(config, { dtype: 'bf16', seed: 1 });
  await ctx.sync();
  const base = ctx.pool.liveBytes;
  ctx.pool.resetPeak();
  const model = await loadCausalLM({ config, weights: bytes });
  const { vocabSize: vocab, hiddenSize: hidden } = model.config;
  const factory = 'crossEntropyDistillation';
  const trainer = new Trainer(
    model,
    { train: sequences(2 * plan.B, plan.T, vocab, 2) },
    {
      factory,
      factoryOptions: { ...DEFAULT_FACTORY_OPTIONS[factory] },
      batchSize: plan.B,
    },
  );
  try {
    await trainer.step(); // pipelines compile, the embedding statistics are made
    const per: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      await trainer.step();
      per.push(performance.now() - t0);
    }
    const estimate = estimateMemory(config, { batchSize: plan.B, seqLen: plan.T, dtype: 'bf16', bindingLimit: ctx.bindingLimit });
    return {
      model: plan.model,
      blocks: plan.blocks,
      totalBlocks: MODEL_PRESETS[plan.preset].num_hidden_layers as number,
      B: plan.B,
      T: plan.T,
      vocab,
      hidden,
      weightBytes: model.weightBytes,
      embeddingBlocks: model.embeddingBlocks().length,
      stepMs: median(per),
      steps,
      peakBytes: ctx.pool.peakLiveBytes - base,
      estimateBytes: estimate.totalBytes,
    };
  } finally {
    trainer.dispose();
    model.dispose();
    await ctx.sync();
  }
}

/** One forward + backward of the noisy model on `path` (fused or not): the loss, the cloak's gradients, the pass's peak and time. */
async function pass(model: CausalLM, fusedHead: boolean, B: number, T: number) {
  const ctx = getContext();
  const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, seed: 5, rhoInit: -1, initStd: 0.1 });
  const noisy = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 3, fusedHead });
  const [lossFn] = crossEntropyDistillationFactory(noisy, { ...DEFAULT_FACTORY_OPTIONS.crossEntropyDistillation });
  const [s] = sequences(1, B * T, model.config.vocabSize, 4);
  const batch = { ids: s.ids, attentionMask: s.attentionMask, noiseMask: s.noiseMask, lossMask: s.lossMask, batchSize: B, seqLen: T };
  const run = () =>
    scope(() => {
      noisy.forward(batch);
      const loss = lossFn();
      loss.backward();
      return loss;
    });
  try {
    const warm = run(); // pipelines compile
    await warm.item();
    warm.dispose();
    for (const p of cloak.parameters()) clearGrad(p);
    await ctx.sync();
    const before = ctx.pool.liveBytes;
    ctx.pool.resetPeak();
    const t0 = performance.now();
    const loss = run();
    const [value] = await readAll([loss]);
    const ms = performance.now() - t0;
    const peak = ctx.pool.peakLiveBytes - before;
    loss.dispose();
    const grads = await readAll(cloak.parameters().map((p) => p.grad!));
    return { loss: value[0], grads: grads as Float32Array[], peak, ms };
  } finally {
    cloak.dispose();
  }
}

function clearGrad(p: Tensor): void {
  p.grad?.dispose();
  p.grad = null;
}

async function fusedVsUnfused(plan: Plan): Promise<FusedVsUnfusedRow> {
  const config = presetConfig(plan);
  const model = await loadCausalLM({ config, weights: makeTestModel(config, { dtype: 'bf16', seed: 1 }).bytes });
  try {
    model.embeddingStatistics();
    const fused = await pass(model, true, plan.B, plan.T);
    const unfused = await pass(model, false, plan.B, plan.T);
    let err = 0;
    let scale = 0;
    unfused.grads.forEach((g, i) => {
      for (let j = 0; j < g.length; j++) {
        err = Math.max(err, Math.abs(fused.grads[i][j] - g[j]));
        scale = Math.max(scale, Math.abs(g[j]));
      }
    });
    return {
      model: plan.model,
      B: plan.B,
      T: plan.T,
      vocab: model.config.vocabSize,
      fusedPeakBytes: fused.peak,
      unfusedPeakBytes: unfused.peak,
      fusedMs: fused.ms,
      unfusedMs: unfused.ms,
      gradRelErr: err / (scale || 1),
      lossRelErr: Math.abs(fused.loss - unfused.loss) / Math.abs(unfused.loss),
    };
  } finally {
    model.dispose();
    await getContext().sync();
  }
}

/** The training-step rows of the three real configs, then the fused vs unfused cross-entropy row. */
export async function realModelBenchmarks(
  options: RealModelBenchOptions = {},
): Promise<{ steps: RealModelRow[]; heads: FusedVsUnfusedRow[] }> {
  await init();
  const quick = options.quick ?? false;
  const steps: RealModelRow[] = [];
  for (const plan of quick ? QUICK : FULL) {
    steps.push(await trainingRow(plan, quick ? 1 : 2));
    options.onProgress?.(plan.model);
  }
  const headPlan: Plan = quick
    ? { model: 'SmolLM2-135M', preset: 'smollm2-135m', blocks: 1, B: 1, T: 16 }
    : { model: 'SmolLM2-135M', preset: 'smollm2-135m', blocks: 2, B: 2, T: 64 };
  const heads = [await fusedVsUnfused(headPlan)];
  options.onProgress?.('fused vs unfused cross-entropy');
  return { steps, heads };
}
