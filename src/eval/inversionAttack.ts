/**
 * A learned inversion attack (issue 14, point 3): a classifier trained in the toolkit on WebGPU
 * (its own ops, autograd and AdamW) to read the token id back from the embeddings a client would
 * send. Two attackers: `'linear'` (one embedding to the id: `z = x W^T + b`) and `'mlp'` (a window
 * of neighbouring positions, zero-padded at the sequence ends, through one hidden layer:
 * `z = gelu(sum_k S_k x W1_k^T + b1) W2^T + b2`, where `S_k` shifts the sequence by `k`, which is
 * the same as one linear layer over the concatenated window). It trains on embeddings of training
 * text (a transform's with fresh noise each batch, or clean ones for comparison) and is scored on
 * held-out text: the token-recovery rate, the share of transformed positions whose true token gets
 * the classifier's largest logit. A transform that fools nearest-neighbour search but lets a linear
 * probe read every token shows as such here.
 *
 * The features are standardised per dimension with the mean and standard deviation of the first
 * training batch (what any attacker would do; it makes one learning rate fit clean and transformed
 * embeddings of any scale).
 */
import { type Tensor, keep, readAll, scope, tensor } from '../tensor/tensor';
import { enableGrad, noGrad } from '../autograd/engine';
import { add, gather, geluTanh, logSoftmax, matmul, max, mul, reshape, scale, sub, sum } from '../ops/index';
import { randn, randnBlocks } from '../ops/random';
import { AdamW } from '../optim/adamw';
import type { CausalLM } from '../models/causalLM';
import { noisyEmbeddings, type TransformerCloak } from '../models/cloak';
import { batches, type HostBatch, type PackedSequence } from '../text/data';
import { SgtError } from '../gpu/errors';

const FN = 'inversionAttack';

/**
 * Where the attacked embeddings come from: `[B, T, d]` f32 for a batch (a new tensor of the current
 * scope, made without a graph). {@link transformedEmbeddings} and {@link cleanEmbeddings} make one.
 */
export type EmbeddingSource = (batch: HostBatch) => Tensor;

/** Options of {@link inversionAttack}. */
export interface InversionAttackOptions {
  /** `'linear'`: one position to its id; `'mlp'`: a window of positions through a hidden layer. */
  kind: 'linear' | 'mlp';
  /** The MLP's window radius: positions `t - r .. t + r` (default 2). */
  radius?: number;
  /** The MLP's hidden width (default 128). */
  hiddenSize?: number;
  /**
   * Training steps, one batch of training sequences each (default 60: on a model like the default
   * one the linear probe reads clean embeddings almost perfectly after a few steps, the MLP after a
   * few dozen).
   */
  steps?: number;
  /** Sequences per batch (default 8). */
  batchSize?: number;
  /** AdamW's learning rate (default 1e-2; no weight decay). */
  learningRate?: number;
  /** Held-out batches scored (default: all). */
  maxEvalBatches?: number;
  /** Seed of the classifier's initial weights and the batch order (default 0). */
  seed?: number;
}

/** What {@link inversionAttack} measured. */
export interface InversionAttackResult {
  /** Share of scored held-out positions whose true token the classifier ranks first (ties count). */
  recoveryRate: number;
  /** Positions recovered and scored (the held-out batches' noise-mask positions). */
  recovered: number;
  positions: number;
  /** Share of scored positions whose token is the training text's most frequent one: the rate of always guessing it. */
  majorityRate: number;
  /** Mean cross-entropy of the last training step (nats). */
  finalLoss: number;
  /** Steps trained and the wall time of training and scoring. */
  steps: number;
  seconds: number;
}

/**
 * The embeddings a transform sends: `xt = x + N (mu + sigma eps)` (LOSSES.md section 1) of the base
 * model's embeddings through `cloak`, with fresh noise on every call (a seeded stream).
 *
 * @param model - the frozen base model (its input embedding).
 * @param cloak - the trained transform.
 * @param seed - seed of the noise stream (default 0).
 */
export function transformedEmbeddings(model: CausalLM, cloak: TransformerCloak, seed = 0): EmbeddingSource {
  let offset = 0;
  return (batch) =>
    noGrad(() => {
      const { batchSize: B, seqLen: T } = batch;
      const x = model.embed({ data: batch.ids, shape: [B, T] });
      const { mu, sigma } = cloak.forward(x, tensor(batch.attentionMask, [B, T]));
      const d = x.shape[2];
      const eps = randn([B, T, d], { seed, offset });
      offset += randnBlocks(B * T * d);
      return noisyEmbeddings(x, mu, sigma, eps, tensor(batch.noiseMask, [B, T]));
    });
}

/** The clean input embeddings of `model`: the attack's reference (what it recovers with no transform). */
export function cleanEmbeddings(model: CausalLM): EmbeddingSource {
  return (batch) => noGrad(() => model.embed({ data: batch.ids, shape: [batch.batchSize, batch.seqLen] }));
}

interface Resolved {
  kind: 'linear' | 'mlp';
  radius: number;
  hiddenSize: number;
  steps: number;
  batchSize: number;
  learningRate: number;
  maxEvalBatches: number;
  seed: number;
}

function resolveOptions(o: InversionAttackOptions): Resolved {
  const fail = (m: string): never => {
    throw new SgtError('INVALID_OPTION', `${FN}: ${m}`);
  };
  if (!o || (o.kind !== 'linear' && o.kind !== 'mlp')) fail(`option 'kind' must be 'linear' or 'mlp', got ${String(o?.kind)}`);
  const int = (k: keyof InversionAttackOptions, fallback: number, min: number) => {
    const v = o[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(`option '${k}' must be an integer >= ${min}, got ${String(v)}`);
    return v as number;
  };
  const learningRate = o.learningRate ?? 1e-2;
  if (typeof learningRate !== 'number' || !(learningRate > 0) || !Number.isFinite(learningRate))
    fail(`option 'learningRate' must be a positive number, got ${String(learningRate)}`);
  const maxEval = o.maxEvalBatches ?? Number.POSITIVE_INFINITY;
  if (maxEval !== Number.POSITIVE_INFINITY) int('maxEvalBatches', 1, 1);
  return {
    kind: o.kind,
    radius: int('radius', 2, 0),
    hiddenSize: int('hiddenSize', 128, 1),
    steps: int('steps', 60, 1),
    batchSize: int('batchSize', 8, 1),
    learningRate,
    maxEvalBatches: maxEval,
    seed: int('seed', 0, 0),
  };
}

/** The classifier's parameters and its forward pass (see the file comment). */
class Probe {
  readonly params = new Map<string, Tensor>();
  private shifts: Tensor[] = [];
  private seedOffset = 0;

  constructor(
    private readonly o: Resolved,
    d: number,
    vocab: number,
    private readonly standardise: { mean: Tensor; invStd: Tensor },
  ) {
    if (o.kind === 'linear') {
      this.param('w', [vocab, d], 0.01);
      this.param('b', [vocab], 0);
    } else {
      for (let k = -o.radius; k <= o.radius; k++) this.param(`w1.${k}`, [o.hiddenSize, d], 1 / Math.sqrt(d * (2 * o.radius + 1)));
      this.param('b1', [o.hiddenSize], 0);
      this.param('w2', [vocab, o.hiddenSize], 0.01);
      this.param('b2', [vocab], 0);
    }
  }

  private param(name: string, shape: number[], std: number): void {
    const n = shape.reduce((a, b) => a * b, 1);
    const t =
      std === 0
        ? tensor(new Float32Array(n), shape)
        : noGrad(() => scope(() => scale(randn(shape, { seed: this.o.seed, offset: this.seedOffset }), std)));
    this.seedOffset += randnBlocks(n);
    t.requiresGrad = true;
    this.params.set(name, keep(t));
  }

  /** `S_k` `[T, T]`: `(S_k x)_t = x_{t+k}`, 0 past either end of the sequence. Made once per length. */
  private shift(k: number, T: number): Tensor {
    const i = k + this.o.radius;
    if (this.shifts[i]?.shape[0] !== T) {
      this.shifts[i]?.dispose();
      const s = new Float32Array(T * T);
      for (let t = 0; t < T; t++) if (t + k >= 0 && t + k < T) s[t * T + t + k] = 1;
      this.shifts[i] = keep(tensor(s, [T, T]));
    }
    return this.shifts[i];
  }

  /** Logits `[B * T, V]` of the standardised features of `x` `[B, T, d]`. */
  logits(x: Tensor): Tensor {
    const [B, T, d] = x.shape;
    const p = (name: string) => this.params.get(name)!;
    const features = mul(sub(x, this.standardise.mean), this.standardise.invStd);
    if (this.o.kind === 'linear') return add(matmul(reshape(features, [B * T, d]), p('w'), { transposeB: true }), p('b'));
    let h: Tensor | null = null;
    for (let k = -this.o.radius; k <= this.o.radius; k++) {
      const shifted = k === 0 ? features : matmul(this.shift(k, T), features);
      const term = matmul(reshape(shifted, [B * T, d]), p(`w1.${k}`), { transposeB: true });
      h = h ? add(h, term) : term;
    }
    const hidden = geluTanh(add(h!, p('b1')));
    return add(matmul(hidden, p('w2'), { transposeB: true }), p('b2'));
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const t of this.shifts) t?.dispose();
    this.standardise.mean.dispose();
    this.standardise.invStd.dispose();
  }
}

/** The flat index `n * V + id` of each position's true-token logit, and the `[N, 1]` weights of the scored positions. */
function targetsOf(batch: HostBatch, vocab: number): { flat: Tensor; weights: Tensor; count: number } {
  const n = batch.batchSize * batch.seqLen;
  const flat = new Int32Array(n);
  const weights = new Float32Array(n);
  let count = 0;
  for (let i = 0; i < n; i++) {
    flat[i] = i * vocab + batch.ids[i];
    if (batch.noiseMask[i] !== 0) {
      weights[i] = 1;
      count++;
    }
  }
  return { flat: tensor(flat, [n], { dtype: 'i32' }), weights: tensor(weights, [n, 1]), count };
}

/** Each position's true-token logit `[N, 1]`, picked out of `[N, V]` values (differentiable). */
function pick(values: Tensor, flat: Tensor): Tensor {
  const [n, vocab] = values.shape;
  return gather(reshape(values, [n * vocab, 1]), flat);
}

/** Per-dimension mean and 1 / std (`[d]`) of the first batch's features (std floored at 1e-6). */
async function standardisation(source: EmbeddingSource, batch: HostBatch): Promise<{ mean: Tensor; invStd: Tensor }> {
  const x = keep(scope(() => source(batch)));
  const values = (await readAll([x]))[0] as Float32Array;
  const d = x.shape[2];
  x.dispose();
  const rows = values.length / d;
  const mean = new Float64Array(d);
  const sq = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < d; k++) {
      mean[k] += values[r * d + k] / rows;
      sq[k] += (values[r * d + k] * values[r * d + k]) / rows;
    }
  }
  const invStd = mean.map((m, k) => 1 / Math.max(Math.sqrt(Math.max(sq[k] - m * m, 0)), 1e-6));
  return { mean: keep(tensor(Float32Array.from(mean), [d])), invStd: keep(tensor(Float32Array.from(invStd), [d])) };
}

/** An endless, seeded, shuffled walk over the training batches (dropping a last partial batch when there are full ones). */
function* trainingBatches(train: readonly PackedSequence[], batchSize: number, seed: number): Generator<HostBatch> {
  const size = Math.min(batchSize, train.length);
  for (let epoch = 0; ; epoch++) yield* batches(train, size, { shuffle: true, seed, epoch, dropLast: true });
}

/** One AdamW step on one batch; returns the batch's mean cross-entropy (a kept 0-d tensor). */
function trainStep(probe: Probe, optimizer: AdamW, source: EmbeddingSource, batch: HostBatch, vocab: number): Tensor {
  return scope(() => {
    const x = source(batch);
    const { flat, weights, count } = targetsOf(batch, vocab);
    const loss = enableGrad(() => {
      const picked = pick(logSoftmax(probe.logits(x)), flat);
      const l = scale(sum(mul(picked, weights)), -1 / Math.max(count, 1));
      l.backward();
      return l;
    });
    optimizer.step();
    optimizer.zeroGrad();
    return noGrad(() => scale(loss, 1));
  });
}

/** Recovered and scored positions of one held-out batch: the true token's logit is the row maximum. */
async function scoreBatch(probe: Probe, source: EmbeddingSource, batch: HostBatch, vocab: number): Promise<[number, number]> {
  const out = scope(() =>
    noGrad(() => {
      const z = probe.logits(source(batch));
      const { flat } = targetsOf(batch, vocab);
      return [max(z, -1), pick(z, flat)];
    }),
  );
  for (const t of out) keep(t);
  const [best, truth] = await readAll(out).finally(() => {
    for (const t of out) t.dispose();
  });
  let recovered = 0;
  let positions = 0;
  for (let i = 0; i < best.length; i++) {
    if (batch.noiseMask[i] === 0) continue;
    positions++;
    if (truth[i] >= best[i]) recovered++;
  }
  return [recovered, positions];
}

/** Share of the scored held-out positions whose token is the most frequent token of the training text. */
function majorityRate(train: readonly PackedSequence[], heldOut: HostBatch[]): number {
  const counts = new Map<number, number>();
  for (const s of train) for (const id of s.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  let top = -1;
  let most = -1;
  for (const [id, c] of counts) if (c > most) [top, most] = [id, c];
  let hits = 0;
  let n = 0;
  for (const b of heldOut) {
    for (let i = 0; i < b.ids.length; i++) {
      if (b.noiseMask[i] === 0) continue;
      n++;
      if (b.ids[i] === top) hits++;
    }
  }
  return n ? hits / n : 0;
}

/**
 * Trains an inversion classifier on embeddings of `data.train` from `source` and scores its
 * token-recovery rate on `data.heldOut` (see the file comment). Deterministic for a seed (and a
 * deterministic source); every GPU buffer it makes is freed before it resolves.
 *
 * @param source - the embeddings attacked: {@link transformedEmbeddings} (fresh noise per batch)
 *   or {@link cleanEmbeddings}.
 * @param data - `train`: packed training sequences (their noise masks say which positions the
 *   loss counts); `heldOut`: the scored sequences (their noise-mask positions are scored). One
 *   sequence length in each.
 * @param vocabSize - the classifier's classes (the model's vocabulary); every id must be below it.
 * @param options - see {@link InversionAttackOptions}.
 * @throws Before any GPU work: a bad option, empty data, or an id outside `[0, vocabSize)`.
 */
export async function inversionAttack(
  source: EmbeddingSource,
  data: { train: readonly PackedSequence[]; heldOut: readonly PackedSequence[] },
  vocabSize: number,
  options: InversionAttackOptions,
): Promise<InversionAttackResult> {
  const o = resolveOptions(options);
  checkData(data, vocabSize);
  const started = performance.now();
  const heldOut = [...batches(data.heldOut, Math.min(o.batchSize, data.heldOut.length))].slice(0, o.maxEvalBatches);
  const walk = trainingBatches(data.train, o.batchSize, o.seed);
  const first = walk.next().value as HostBatch;
  const d0 = await standardisation(source, first);
  const probe = new Probe(o, d0.mean.shape[0], vocabSize, d0);
  const optimizer = new AdamW([...probe.params.values()], { lr: o.learningRate, weightDecay: 0 });
  try {
    let loss: Tensor | null = null;
    let batch = first;
    for (let s = 0; s < o.steps; s++, batch = walk.next().value as HostBatch) {
      loss?.dispose();
      loss = keep(trainStep(probe, optimizer, source, batch, vocabSize));
    }
    const finalLoss = (await readAll([loss!]))[0][0];
    loss?.dispose();
    let recovered = 0;
    let positions = 0;
    for (const b of heldOut) {
      const [r, n] = await scoreBatch(probe, source, b, vocabSize);
      recovered += r;
      positions += n;
    }
    const seconds = (performance.now() - started) / 1000;
    const rate = positions ? recovered / positions : 0;
    return {
      recoveryRate: rate,
      recovered,
      positions,
      majorityRate: majorityRate(data.train, heldOut),
      finalLoss,
      steps: o.steps,
      seconds,
    };
  } finally {
    optimizer.dispose();
    probe.dispose();
  }
}

function checkData(data: { train: readonly PackedSequence[]; heldOut: readonly PackedSequence[] }, vocabSize: number): void {
  if (!Number.isInteger(vocabSize) || vocabSize < 1)
    throw new SgtError('INVALID_ARGUMENT', `${FN}: argument 'vocabSize' must be a positive integer, got ${String(vocabSize)}`);
  for (const key of ['train', 'heldOut'] as const) {
    const sets = data?.[key];
    if (!Array.isArray(sets) || sets.length === 0)
      throw new SgtError('INVALID_ARGUMENT', `${FN}: 'data.${key}' must be a non-empty list of packed sequences`);
    for (const [i, s] of sets.entries()) {
      for (const id of s.ids) {
        if (!(id >= 0 && id < vocabSize))
          throw new SgtError('INVALID_ARGUMENT', `${FN}: 'data.${key}[${i}]' holds token id ${id}, outside [0, ${vocabSize})`);
      }
    }
  }
}
