/**
 * "What the transform does to a prompt", computed in the worker next to the trained cloak: the
 * prompt's transformed embeddings `xt`, their nearest-vocabulary decoding (by cosine, as NN-FR
 * counts it), and the teacher's and the student's next-token predictions and greedy continuations.
 *
 * The student continues from the transformed prompt followed by the *clean* embeddings of the
 * tokens it generates (a client would transform only what the user typed); there is no KV cache:
 * each new token reruns the whole sequence, which is fine for a few dozen tokens.
 */
import { gather, matmulRowBlocks, reshape } from '../src/ops/index';
import { randn } from '../src/ops/random';
import { noGrad } from '../src/autograd/engine';
import { readAll, scope, tensor } from '../src/tensor/tensor';
import { nearestRowsByCosine } from '../src/eval/metrics';
import type { CausalLM } from '../src/models/causalLM';
import { noisyEmbeddings, type TransformerCloak } from '../src/models/cloak';
import type { Tokenizer } from '../src/text/tokenizer';

/** Options of {@link inspectPrompt}. */
export interface InspectOptions {
  /** Next-token candidates to report (default 5). */
  topK?: number;
  /** Greedy continuation length (default 20). */
  maxNewTokens?: number;
  /** Seed of the transform's noise draw (default: a fresh random one, so each call differs). */
  seed?: number;
  /**
   * The noise mask `N` over the prompt's positions (BOS included, before any truncation): 1 =
   * transform this position, 0 = leave it clean, as in training (LOSSES.md section 1). Default:
   * every position, as `TransformerCloak.transform` does.
   */
  noiseMask?: ArrayLike<number>;
}

/** One prompt position. */
export interface InspectedToken {
  /** The true token id. */
  id: number;
  /** How the true token reads (specials as `⟨bos⟩`, ...). */
  text: string;
  /** The vocabulary row nearest to `xt` at this position by cosine similarity. */
  nearestId: number;
  nearestText: string;
  /** Whether the nearest row is not the true token (the inversion attack fails here). */
  hidden: boolean;
  /** Whether the noise mask transformed this position (otherwise `xt` is the clean embedding). */
  transformed: boolean;
}

/** One next-token candidate. */
export interface Candidate {
  id: number;
  text: string;
  probability: number;
}

/** One side (teacher on clean embeddings, student on transformed ones). */
export interface SidePrediction {
  /** The `topK` most likely next tokens after the prompt. */
  top: Candidate[];
  /** The greedy continuation, decoded. */
  continuation: string;
  continuationIds: number[];
}

/** What {@link inspectPrompt} returns (plain data: it crosses the worker boundary). */
export interface InspectResult {
  tokens: InspectedToken[];
  /** Share of positions whose nearest vocabulary row is not the true token (this prompt's NN-FR). */
  hiddenShare: number;
  teacher: SidePrediction;
  student: SidePrediction;
  seed: number;
  /** True when the prompt was cut to fit the model's positions. */
  truncated: boolean;
}

/** A token as it reads on its own, with the specials named and invisible characters shown. */
export function tokenText(tokenizer: Tokenizer, id: number): string {
  if (id === tokenizer.bosId) return '⟨bos⟩';
  if (id === tokenizer.eosId) return '⟨eos⟩';
  if (id === tokenizer.padId) return '⟨pad⟩';
  let s: string;
  try {
    s = tokenizer.decode([id]);
  } catch {
    s = '';
  }
  return s === '' ? `⟨${id}⟩` : s;
}

function softmaxTop(logits: Float32Array, k: number, tokenizer: Tokenizer): Candidate[] {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let z = 0;
  for (const v of logits) z += Math.exp(v - max);
  // A partial selection: V can be 150k, k is 5.
  const best: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    if (best.length < k || logits[i] > logits[best[best.length - 1]]) {
      best.push(i);
      best.sort((a, b) => logits[b] - logits[a] || a - b);
      if (best.length > k) best.pop();
    }
  }
  return best.map((id) => ({ id, text: tokenText(tokenizer, id), probability: Math.exp(logits[id] - max) / z }));
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * The logits of the last position, read back alone: the head is applied (block by block) to that
 * position's final hidden state only, so no `[T, V]` logits are made however long the prompt or
 * large the vocabulary.
 */
async function lastLogits(model: CausalLM, input: { ids: number[] } | { embeds: Float32Array; length: number }): Promise<Float32Array> {
  return scope(async () => {
    const d = model.config.hiddenSize;
    const last = noGrad(() => {
      const out =
        'ids' in input
          ? model.forward({ ids: { data: input.ids, shape: [1, input.ids.length] }, output: 'hidden' })
          : model.forward({ inputsEmbeds: tensor(input.embeds, [1, input.length, d]), output: 'hidden' });
      const T = 'ids' in input ? input.ids.length : input.length;
      const row = gather(reshape(out.hidden!, [T, d]), tensor(Int32Array.of(T - 1), [1]));
      return matmulRowBlocks(row, model.headBlocks());
    });
    const [row] = await readAll([last]);
    return row as Float32Array;
  });
}

/**
 * Transforms `prompt` with `cloak` (the positions of `options.noiseMask`: by default every
 * position, BOS included) and compares the teacher's and the student's predictions. Leaves no
 * tensor behind and draws its noise from its own seed, so the training run's noise stream is
 * untouched.
 */
export async function inspectPrompt(
  model: CausalLM,
  cloak: TransformerCloak,
  tokenizer: Tokenizer,
  prompt: string,
  options: InspectOptions = {},
): Promise<InspectResult> {
  const topK = options.topK ?? 5;
  const maxNewTokens = options.maxNewTokens ?? 20;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const d = model.config.hiddenSize;
  let ids = [...(tokenizer.bosId !== undefined ? [tokenizer.bosId] : []), ...tokenizer.encode(prompt)];
  if (ids.length === 0) throw new Error('inspect: the prompt is empty');
  const room = model.config.maxPositions - maxNewTokens;
  if (room < 1)
    throw new Error(`inspect: the model takes ${model.config.maxPositions} positions: generate fewer than ${maxNewTokens} tokens`);
  let noiseMask = Float32Array.from(options.noiseMask ?? new Array<number>(ids.length).fill(1));
  if (noiseMask.length !== ids.length || noiseMask.some((v) => v !== 0 && v !== 1)) {
    throw new Error(`inspect: 'noiseMask' must hold ${ids.length} values of 0 or 1 (one per prompt position, BOS included)`);
  }
  const truncated = ids.length > room;
  if (truncated) {
    ids = ids.slice(0, room);
    noiseMask = noiseMask.slice(0, room);
  }
  const T = ids.length;

  const { xt, nearest } = await scope(async () => {
    const [xtT, nearestT] = noGrad(() => {
      const x = model.embed({ data: ids, shape: [1, T] });
      const { mu, sigma } = cloak.forward(x, tensor(new Float32Array(T).fill(1), [1, T]));
      const xtT = noisyEmbeddings(x, mu, sigma, randn([1, T, d], { seed }), tensor(noiseMask, [1, T]));
      // The table as the model stores it (row blocks, file dtype): no f32 copy of it is made.
      return [xtT, nearestRowsByCosine(reshape(xtT, [T, d]), model.embeddingBlocks())];
    });
    const [a, b] = await readAll([xtT, nearestT]);
    return { xt: a as Float32Array, nearest: b as Int32Array };
  });

  const tokens: InspectedToken[] = ids.map((id, t) => ({
    id,
    text: tokenText(tokenizer, id),
    nearestId: nearest[t],
    nearestText: tokenText(tokenizer, nearest[t]),
    hidden: nearest[t] !== id,
    transformed: noiseMask[t] === 1,
  }));

  const stop = (id: number) => id === tokenizer.eosId;
  // Teacher: clean ids all the way.
  const teacherIds: number[] = [];
  let teacherTop: Candidate[] = [];
  for (let i = 0; i < maxNewTokens; i++) {
    const logits = await lastLogits(model, { ids: [...ids, ...teacherIds] });
    if (i === 0) teacherTop = softmaxTop(logits, topK, tokenizer);
    const next = argmax(logits);
    if (stop(next)) break;
    teacherIds.push(next);
  }
  // Student: the transformed prompt, then the clean embeddings of what it generated.
  const studentIds: number[] = [];
  let studentTop: Candidate[] = [];
  for (let i = 0; i < maxNewTokens; i++) {
    const n = T + studentIds.length;
    const embeds = new Float32Array(n * d);
    embeds.set(xt);
    if (studentIds.length > 0) {
      const generated = await scope(async () => {
        const e = noGrad(() => model.embed({ data: studentIds, shape: [1, studentIds.length] }));
        return (await readAll([e]))[0] as Float32Array;
      });
      embeds.set(generated, T * d);
    }
    const logits = await lastLogits(model, { embeds, length: n });
    if (i === 0) studentTop = softmaxTop(logits, topK, tokenizer);
    const next = argmax(logits);
    if (stop(next)) break;
    studentIds.push(next);
  }

  return {
    tokens,
    hiddenShare: tokens.filter((t) => t.hidden).length / tokens.length,
    teacher: { top: teacherTop, continuation: tokenizer.decode(teacherIds), continuationIds: teacherIds },
    student: { top: studentTop, continuation: tokenizer.decode(studentIds), continuationIds: studentIds },
    seed,
    truncated,
  };
}
