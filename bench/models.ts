/**
 * Causal-LM benchmarks: time PER TOKEN of the frozen model's forward (inference, under `noGrad`)
 * and of forward + backward to the input embeddings (the gradient a Stained Glass Transform
 * trains on: `sum(logits * R)` back to `inputsEmbeds`, weights frozen), for
 *
 * - `tiny-llama` (`../shared/fixtures/tiny-llama`, read with node:fs), and
 * - a generated ~20M-parameter Llama (random weights from a seeded PRNG, built in memory as a
 *   `SafetensorsFile`, nothing written to disk),
 *
 * each against the float64 twin (`src/reference/causalLM.ts`) in the same run. The twin is slow,
 * so it runs on a shorter sequence and fewer repeats; every time is divided by its own B*T. The
 * GPU rows also report the peak bytes the buffer pool had handed out during one pass
 * (`pool.resetPeak()` before, `pool.peakLiveBytes` after), total (weights included) and above
 * what was live before the pass (activations, gradients, temporaries). Each model is checked
 * once: GPU logits and input gradient against the twin on the twin's sequence. Rows are
 * returned, not printed.
 */
import { seededRandom } from '../src/text/data';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { getContext, init } from '../src/gpu/context';
import { noGrad } from '../src/autograd/engine';
import { readAll, scope, tensor, type Tensor } from '../src/tensor/tensor';
import { mul, sum } from '../src/ops/index';
import { loadCausalLM, type CausalLM } from '../src/models/causalLM';
import { parseModelConfig, type ModelConfig } from '../src/models/config';
import { parseSafetensors, toFloat32, type SafetensorsFile } from '../src/models/safetensors';
import { expectedWeights } from '../src/models/weights';
import { referenceCausalLM } from '../src/reference/causalLM';
import { ndarray, type NDArray } from '../src/reference/index';
import { median } from './timing';

/** One benchmark row: one model, one pass. */
export interface ModelBenchRow {
  /** Model name. */
  model: string;
  /** Number of weights. */
  params: number;
  /** `forward` (inference, no tape) or `forward+backward` (to the input embeddings). */
  pass: 'forward' | 'forward+backward';
  /** Batch and sequence length of the GPU rows. */
  gpuB: number;
  gpuT: number;
  /** Median GPU ms per pass / (B*T), and the number of timed passes. */
  gpuMsPerToken: number;
  gpuRuns: number;
  /** GPU ms per token on the twin's (shorter) sequence, for a like-for-like ratio (the main figure when the lengths agree). */
  gpuMsPerTokenAtFloat64T: number;
  /** Timed GPU passes on the twin's sequence (0 when it is the GPU rows' own sequence). */
  gpuShortRuns: number;
  /** Sequence length of the float64 twin's rows (B is 1), its ms per pass / T, and its timed passes. */
  float64T: number;
  float64MsPerToken: number;
  float64Runs: number;
  /** Most bytes handed out by the buffer pool during one GPU pass, weights and inputs included. */
  peakBytes: number;
  /** `peakBytes` minus the bytes live before the pass (what the pass itself allocated at most). */
  passPeakBytes: number;
  /** Max relative error of the GPU against the twin on the twin's sequence (logits; for fwd+bwd, the input gradient). */
  relErr: number;
}

/** Options of {@link benchmarks}. */
export interface ModelBenchOptions {
  /** Fewer and shorter runs (for `npm run bench -- --quick`). */
  quick?: boolean;
  /** Called when a model is done, for progress lines. */
  onProgress?: (message: string) => void;
}

/** The generated model: Llama layout, 6 blocks of width 512, GQA 8/4, tied embeddings (~21.6M weights). */
export const GENERATED_LLAMA_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 8192,
  hidden_size: 512,
  intermediate_size: 1376,
  num_hidden_layers: 6,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 512,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  torch_dtype: 'float32',
};

const FIXTURE_DIR = resolve(import.meta.dirname, '../../shared/fixtures/tiny-llama');

/**
 * A `SafetensorsFile` of F32 tensors for `config`, in memory: norm weights 1, every other weight
 * uniform with standard deviation 0.02 (Hugging Face's initialiser range), from a seeded PRNG.
 */
function randomWeights(config: ModelConfig, seed: number): SafetensorsFile {
  const rand = seededRandom(seed);
  const half = 0.02 * Math.sqrt(3);
  const tensors = new Map<string, { dtype: 'F32'; shape: number[]; bytes: Uint8Array }>();
  for (const [name, shape] of expectedWeights(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (/norm\.weight$/.test(name)) data.fill(1);
    else for (let i = 0; i < n; i++) data[i] = (2 * rand() - 1) * half;
    tensors.set(name, { dtype: 'F32', shape, bytes: new Uint8Array(data.buffer) });
  }
  return { metadata: {}, tensors };
}

/** The twin's weights: every tensor of the file in float64, under its Hugging Face name. */
function twinWeights(file: SafetensorsFile): Map<string, NDArray> {
  const out = new Map<string, NDArray>();
  for (const [name, entry] of file.tensors) out.set(name, ndarray(toFloat32(entry), entry.shape));
  return out;
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / (scale || 1);
}

interface Sizes {
  /** GPU sequence length (B = 1). */
  T: number;
  /** Timed GPU passes. */
  gpuRuns: number;
  /** Timed GPU passes on the twin's sequence (when it is shorter). */
  shortRuns: number;
  /** Twin sequence length (B = 1). */
  twinT: number;
  /** Timed twin passes (after one untimed pass, which also gives the check's values). */
  twinRuns: number;
}

/** Float64 twin on the first `twinT` tokens (B = 1, all real): ms per token of both passes, and its logits and input gradient. */
function runTwin(config: ModelConfig, file: SafetensorsFile, idsData: Int32Array, seedData: Float32Array, sizes: Sizes) {
  const { twinT } = sizes;
  const d = config.hiddenSize;
  const V = config.vocabSize;
  const weights = twinWeights(file);
  const table = weights.get('model.embed_tokens.weight')!;
  const embeds = new Float64Array(twinT * d);
  for (let p = 0; p < twinT; p++) embeds.set(table.data.subarray(idsData[p] * d, (idsData[p] + 1) * d), p * d);
  const x = ndarray(embeds, [1, twinT, d]);
  const mask = ndarray(new Float64Array(twinT).fill(1), [1, twinT]);
  const seed = ndarray(seedData.subarray(0, twinT * V), [1, twinT, V]);
  const forward = () => referenceCausalLM(config, weights, x, mask);
  const both = () => {
    const r = forward();
    return { logits: r.logits, grad: r.inputGradient(seed) };
  };
  const want = both(); // untimed: warms the JIT, and the values for the check
  const time = (fn: () => unknown) => {
    const per: number[] = [];
    for (let r = 0; r < sizes.twinRuns; r++) {
      const t0 = performance.now();
      fn();
      per.push(performance.now() - t0);
    }
    return median(per) / twinT;
  };
  const forwardMs = time(forward);
  const bothMs = time(both);
  return { forwardMs, bothMs, logits: want.logits.data, grad: want.grad.data };
}

/**
 * GPU side: the check's values on the twin's tokens, the peak bytes of one pass, and the ms per
 * token on T tokens and on the twin's tokens (both passes' runs interleaved).
 */
async function runGpu(rawConfig: unknown, file: SafetensorsFile, idsData: Int32Array, seedData: Float32Array, sizes: Sizes) {
  const ctx = getContext();
  const pool = ctx.pool;
  const { T, twinT } = sizes;
  const model: CausalLM = await loadCausalLM({ config: rawConfig, weights: file });
  const V = model.config.vocabSize;
  const made: Tensor[] = [];
  try {
    const [logits, grad] = await scope(async () => {
      const x = model.embed({ data: idsData.subarray(0, twinT), shape: [1, twinT] });
      x.requiresGrad = true;
      const out = model.forward({ inputsEmbeds: x });
      sum(mul(out.logits!, tensor(seedData.subarray(0, twinT * V), [1, twinT, V]))).backward();
      const res = await readAll([out.logits!, x.grad!]);
      x.grad!.dispose();
      x.grad = null;
      return res;
    });

    /** Forward (inference) and forward+backward recorders on the first `n` tokens. */
    const passes = (n: number) => {
      const ids = tensor(idsData.subarray(0, n), [1, n]);
      const seed = tensor(seedData.subarray(0, n * V), [1, n, V]);
      made.push(ids, seed);
      const forward = () => scope(() => void noGrad(() => model.forward({ ids })));
      const both = () =>
        scope(() => {
          const x = model.embed(ids);
          x.requiresGrad = true;
          sum(mul(model.forward({ inputsEmbeds: x }).logits!, seed)).backward();
          x.grad?.dispose();
          x.grad = null;
        });
      return { forward, both };
    };
    /** The peak bytes of one untimed pass (pipelines compile in it). */
    const peakOf = async (record: () => void) => {
      await ctx.sync();
      const before = pool.liveBytes;
      pool.resetPeak();
      record();
      await ctx.sync();
      const peak = pool.peakLiveBytes;
      return { peak, passPeak: peak - before };
    };
    /**
     * Median ms per token of both passes on `n` tokens, their timed runs interleaved (forward,
     * forward+backward, forward...) so that a change of load on the shared machine hits both.
     */
    const timeGpu = async (p: { forward: () => void; both: () => void }, n: number, runs: number) => {
      const perF: number[] = [];
      const perB: number[] = [];
      await ctx.sync(); // nothing recorded before (warm-up passes) may run inside a timed pass
      for (let r = 0; r < runs; r++) {
        for (const [record, per] of [
          [p.forward, perF],
          [p.both, perB],
        ] as const) {
          const t0 = performance.now();
          record();
          await ctx.sync();
          per.push(performance.now() - t0);
        }
      }
      return { forward: median(perF) / n, both: median(perB) / n };
    };
    const full = passes(T);
    const peakF = await peakOf(full.forward);
    const peakB = await peakOf(full.both);
    const gpu = await timeGpu(full, T, sizes.gpuRuns);
    // The same passes on the twin's (shorter) sequence, for a like-for-like ratio.
    let gpuShort = gpu;
    if (twinT !== T) {
      const short = passes(twinT);
      short.forward(); // warm-up (the check above ran forward+backward on these shapes, not the noGrad forward)
      gpuShort = await timeGpu(short, twinT, sizes.shortRuns);
    }
    return { logits, grad, peakF, peakB, gpu, gpuShort };
  } finally {
    for (const t of made) t.dispose();
    model.dispose();
    await ctx.sync();
  }
}

async function benchModel(name: string, rawConfig: unknown, file: SafetensorsFile, sizes: Sizes): Promise<ModelBenchRow[]> {
  const config = parseModelConfig(rawConfig);
  const params = [...expectedWeights(config).values()].reduce((s, shape) => s + shape.reduce((a, b) => a * b, 1), 0);
  const V = config.vocabSize;
  const rand = seededRandom(1234);
  const idsData = Int32Array.from({ length: sizes.T }, () => Math.floor(rand() * V));
  const seedData = Float32Array.from({ length: sizes.T * V }, () => 2 * rand() - 1);
  // The GPU first: the twin's float64 copy of the weights (and its garbage) does not exist yet.
  const g = await runGpu(rawConfig, file, idsData, seedData, sizes);
  const twin = runTwin(config, file, idsData, seedData, sizes);
  const errForward = relErr(g.logits, twin.logits);
  const errBoth = Math.max(errForward, relErr(g.grad, twin.grad));
  const common = {
    model: name,
    params,
    gpuB: 1,
    gpuT: sizes.T,
    gpuRuns: sizes.gpuRuns,
    gpuShortRuns: sizes.twinT !== sizes.T ? sizes.shortRuns : 0,
    float64T: sizes.twinT,
    float64Runs: sizes.twinRuns,
  };
  return [
    {
      ...common,
      pass: 'forward',
      gpuMsPerToken: g.gpu.forward,
      gpuMsPerTokenAtFloat64T: g.gpuShort.forward,
      float64MsPerToken: twin.forwardMs,
      peakBytes: g.peakF.peak,
      passPeakBytes: g.peakF.passPeak,
      relErr: errForward,
    },
    {
      ...common,
      pass: 'forward+backward',
      gpuMsPerToken: g.gpu.both,
      gpuMsPerTokenAtFloat64T: g.gpuShort.both,
      float64MsPerToken: twin.bothMs,
      peakBytes: g.peakB.peak,
      passPeakBytes: g.peakB.passPeak,
      relErr: errBoth,
    },
  ];
}

/** Times tiny-llama and the generated ~20M Llama, forward and forward+backward, against the float64 twin. */
export async function benchmarks(options: ModelBenchOptions = {}): Promise<ModelBenchRow[]> {
  await init();
  const quick = options.quick ?? false;
  const rows: ModelBenchRow[] = [];

  const tinyRaw = JSON.parse(readFileSync(resolve(FIXTURE_DIR, 'config.json'), 'utf8')) as unknown;
  const tinyFile = parseSafetensors(new Uint8Array(readFileSync(resolve(FIXTURE_DIR, 'model.safetensors'))));
  rows.push(
    ...(await benchModel(
      'tiny-llama',
      tinyRaw,
      tinyFile,
      quick ? { T: 64, gpuRuns: 3, shortRuns: 0, twinT: 64, twinRuns: 3 } : { T: 64, gpuRuns: 7, shortRuns: 0, twinT: 64, twinRuns: 5 },
    )),
  );
  options.onProgress?.('tiny-llama');

  const genName = 'generated Llama 512x6';
  const genWeights = randomWeights(parseModelConfig(GENERATED_LLAMA_CONFIG), 7);
  rows.push(
    ...(await benchModel(
      genName,
      GENERATED_LLAMA_CONFIG,
      genWeights,
      quick ? { T: 8, gpuRuns: 1, shortRuns: 0, twinT: 8, twinRuns: 1 } : { T: 64, gpuRuns: 3, shortRuns: 2, twinT: 8, twinRuns: 1 },
    )),
  );
  options.onProgress?.(genName);
  return rows;
}
