/**
 * Training data on the host: packing token streams into fixed-length sequences with their masks
 * (attention A, noise N <= A, loss L; see design/LOSSES.md section 1), seeded shuffling, batching
 * into row-major `[B, T]` arrays, and a train / held-out split. Everything here is plain
 * TypeScript, deterministic for a given seed, and runs in a page, a Web Worker or Node.
 */
import type { Tokenizer } from './tokenizer';
import { SgtError } from '../gpu/errors';

/** One packed sequence of `seqLen` positions. Masks hold 0/1. */
export interface PackedSequence {
  /** Token ids; padding positions hold the pad id. */
  ids: Int32Array;
  /** A: 1 for a real token, 0 for padding. */
  attentionMask: Uint8Array;
  /** N: 1 where the transform is applied; always `N <= A`. */
  noiseMask: Uint8Array;
  /** L: 1 where the outputs count in the distillation terms (default `A`). */
  lossMask: Uint8Array;
}

/** Which positions the transform leaves clean. By default every real token is transformed. */
export interface NoiseMaskOptions {
  /** Leave the BOS/EOS tokens that the packer inserts untransformed. Default false. */
  excludeSpecialTokens?: boolean;
  /** Leave the first `k` tokens untransformed (a prompt prefix, say). Default 0. */
  excludeFirst?: number;
  /**
   * What `excludeFirst` counts from: the start of each document (its own tokens, not the BOS the
   * packer adds) or the start of each packed sequence. Default `'document'`.
   */
  excludeFirstOf?: 'document' | 'sequence';
  /** Probability, in `[0, 1]`, that each remaining real token is transformed. Default 1. */
  fraction?: number;
  /** Seed of the draws made for `fraction < 1`. Default 0. */
  seed?: number;
}

/** Options of {@link packSequences}. */
export interface PackOptions {
  /** Positions per sequence, at least 2. */
  seqLen: number;
  /** Id written into padding positions. */
  padId: number;
  /** Id put before every document, if any. */
  bos?: number;
  /** Id put after every document (the separator between packed documents), if any. */
  eos?: number;
  /** When given, every id (pad, specials, tokens) must lie in `[0, vocabSize)`. */
  vocabSize?: number;
  /** How the noise mask is built. */
  noiseMask?: NoiseMaskOptions;
  /** The loss mask: the attention mask (default, as in LOSSES.md) or the noise mask. */
  lossMask?: 'attention' | 'noise';
}

function checkInt(value: unknown, name: string, where: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new SgtError('INVALID_ARGUMENT', `${where}: ${name} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

function checkId(value: unknown, name: string, where: string, vocabSize: number | undefined): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || (vocabSize !== undefined && value >= vocabSize)) {
    const range = vocabSize === undefined ? '>= 0' : `in [0, ${vocabSize})`;
    throw new SgtError('INVALID_ARGUMENT', `${where}: ${name} = ${String(value)} must be an integer ${range}`);
  }
  return value;
}

function checkSeed(seed: unknown, where: string): number {
  if (typeof seed !== 'number' || !Number.isInteger(seed))
    throw new SgtError('INVALID_ARGUMENT', `${where}: seed must be an integer, got ${String(seed)}`);
  return seed;
}

/**
 * A seeded generator of uniform floats in `[0, 1)` (mulberry32: 32-bit state, fast, and the same
 * sequence on every platform since it only uses 32-bit integer arithmetic).
 */
export function seededRandom(seed: number): () => number {
  let state = checkSeed(seed, 'seededRandom') >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded permutation of `0..n-1` (Fisher-Yates driven by {@link seededRandom}). */
export function seededPermutation(n: number, seed: number): Int32Array {
  checkInt(n, 'n', 'seededPermutation');
  const rng = seededRandom(seed);
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

/** Accepts one document (a flat id list) or several; a typed array counts as one document. */
function asDocuments(
  tokenIds: readonly (readonly number[] | Int32Array)[] | readonly number[] | Int32Array,
  where: string,
): ArrayLike<number>[] {
  if (tokenIds instanceof Int32Array) return [tokenIds];
  if (!Array.isArray(tokenIds))
    throw new SgtError('INVALID_ARGUMENT', `${where}: tokenIds must be an array of ids or an array of documents`);
  if (tokenIds.length === 0) return [];
  if (typeof tokenIds[0] === 'number') {
    const doc = tokenIds as readonly unknown[];
    for (let i = 0; i < doc.length; i++) {
      if (typeof doc[i] !== 'number')
        throw new SgtError('INVALID_ARGUMENT', `${where}: tokenIds mixes ids and documents (element ${i} is not a number)`);
    }
    return [tokenIds as readonly number[]];
  }
  return (tokenIds as readonly unknown[]).map((doc, d) => {
    if (!Array.isArray(doc) && !(doc instanceof Int32Array))
      throw new SgtError('INVALID_ARGUMENT', `${where}: document ${d} is not an array of ids`);
    return doc as ArrayLike<number>;
  });
}

/**
 * Packs documents into fixed-length sequences: each document becomes `[bos] ...ids [eos]` (each
 * special only when given), the documents are concatenated into one stream and the stream is cut
 * into `seqLen` chunks, the last one right-padded with `padId`. A document can straddle two
 * sequences, and a sequence can hold several documents that attend to each other (the usual
 * trade of packing: no position is wasted on padding but the last). Empty documents are skipped.
 *
 * Masks: A is 1 on real tokens; N is A minus the positions excluded by `noiseMask` (so `N <= A`
 * always); L is A, or N with `lossMask: 'noise'`.
 *
 * @param tokenIds one document (`number[]`) or several (`number[][]`).
 * @throws on a `seqLen` below 2, a non-integer or out-of-vocabulary id (naming document and position), or bad options.
 */
export function packSequences(
  tokenIds: readonly (readonly number[] | Int32Array)[] | readonly number[] | Int32Array,
  options: PackOptions,
): PackedSequence[] {
  const where = 'packSequences';
  if (options === null || typeof options !== 'object')
    throw new SgtError('INVALID_OPTION', `${where}: options { seqLen, padId } are required`);
  const seqLen = checkInt(options.seqLen, 'seqLen', where, 2);
  const vocabSize = options.vocabSize === undefined ? undefined : checkInt(options.vocabSize, 'vocabSize', where, 1);
  const padId = checkId(options.padId, 'padId', where, vocabSize);
  const bos = options.bos === undefined ? undefined : checkId(options.bos, 'bos', where, vocabSize);
  const eos = options.eos === undefined ? undefined : checkId(options.eos, 'eos', where, vocabSize);
  const noise = options.noiseMask ?? {};
  const excludeSpecial = noise.excludeSpecialTokens ?? false;
  const excludeFirst = checkInt(noise.excludeFirst ?? 0, 'noiseMask.excludeFirst', where);
  const excludeFirstOf = noise.excludeFirstOf ?? 'document';
  if (excludeFirstOf !== 'document' && excludeFirstOf !== 'sequence') {
    throw new SgtError(
      'INVALID_OPTION',
      `${where}: noiseMask.excludeFirstOf must be 'document' or 'sequence', got ${String(excludeFirstOf)}`,
    );
  }
  const fraction = noise.fraction ?? 1;
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
    throw new SgtError('INVALID_OPTION', `${where}: noiseMask.fraction must be a number in [0, 1], got ${String(fraction)}`);
  }
  const rng = fraction < 1 ? seededRandom(checkSeed(noise.seed ?? 0, `${where}: noiseMask`)) : null;
  const lossMode = options.lossMask ?? 'attention';
  if (lossMode !== 'attention' && lossMode !== 'noise')
    throw new SgtError('INVALID_OPTION', `${where}: lossMask must be 'attention' or 'noise', got ${String(lossMode)}`);

  // The stream, with for each position whether the transform may touch it (before `fraction` and
  // the per-sequence prefix, which depend on where the chunk boundaries fall).
  const docs = asDocuments(tokenIds, where);
  const stream: number[] = [];
  const noisable: boolean[] = [];
  docs.forEach((doc, d) => {
    if (doc.length === 0) return;
    if (bos !== undefined) {
      stream.push(bos);
      noisable.push(!excludeSpecial);
    }
    for (let i = 0; i < doc.length; i++) {
      const id = doc[i];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
        const range = vocabSize === undefined ? '>= 0' : `in [0, ${vocabSize})`;
        throw new SgtError('INVALID_ARGUMENT', `${where}: document ${d}, position ${i}: id ${String(id)} is not an integer ${range}`);
      }
      stream.push(id);
      noisable.push(excludeFirstOf === 'sequence' || i >= excludeFirst);
    }
    if (eos !== undefined) {
      stream.push(eos);
      noisable.push(!excludeSpecial);
    }
  });

  const sequences: PackedSequence[] = [];
  for (let start = 0; start < stream.length; start += seqLen) {
    const ids = new Int32Array(seqLen).fill(padId);
    const attentionMask = new Uint8Array(seqLen);
    const noiseMask = new Uint8Array(seqLen);
    const real = Math.min(seqLen, stream.length - start);
    for (let t = 0; t < real; t++) {
      ids[t] = stream[start + t];
      attentionMask[t] = 1;
      let n = noisable[start + t] && !(excludeFirstOf === 'sequence' && t < excludeFirst);
      // Drawn for every real position, whatever the exclusions, so that changing an exclusion does
      // not reshuffle the draws of the other positions.
      if (rng !== null && rng() >= fraction) n = false;
      noiseMask[t] = n ? 1 : 0;
    }
    const lossMask = lossMode === 'noise' ? noiseMask.slice() : attentionMask.slice();
    sequences.push({ ids, attentionMask, noiseMask, lossMask });
  }
  return sequences;
}

/** One host batch, row-major `[batchSize, seqLen]`, ready to upload. Masks hold 0/1. */
export interface HostBatch {
  /** Token ids `[B, T]`. */
  ids: Int32Array;
  /** A `[B, T]`. */
  attentionMask: Float32Array;
  /** N `[B, T]`. */
  noiseMask: Float32Array;
  /** L `[B, T]`. */
  lossMask: Float32Array;
  /** B: rows in this batch (smaller than asked for in a last partial batch). */
  batchSize: number;
  /** T. */
  seqLen: number;
}

/** Options of {@link batches}. */
export interface BatchOptions {
  /** Visit the sequences in a seeded random order. Default false. */
  shuffle?: boolean;
  /** Seed of the shuffle. Default 0. */
  seed?: number;
  /** Mixed into the seed so that each epoch gets its own order from one seed. Default 0. */
  epoch?: number;
  /** Drop a last batch with fewer than `batchSize` rows (the mutual-information loss, for one, needs an even B). Default false. */
  dropLast?: boolean;
}

function checkSequence(seq: PackedSequence, s: number, seqLen: number, where: string): void {
  if (seq === null || typeof seq !== 'object' || !(seq.ids instanceof Int32Array))
    throw new SgtError('INVALID_ARGUMENT', `${where}: sequence ${s} has no Int32Array ids`);
  if (seq.ids.length !== seqLen)
    throw new SgtError('SHAPE_MISMATCH', `${where}: sequence ${s} has ${seq.ids.length} positions, sequence 0 has ${seqLen}`);
  for (const key of ['attentionMask', 'noiseMask', 'lossMask'] as const) {
    const m = seq[key];
    if (m === undefined || m === null || m.length !== seqLen)
      throw new SgtError('SHAPE_MISMATCH', `${where}: sequence ${s}: ${key} must have ${seqLen} entries`);
  }
  for (let t = 0; t < seqLen; t++) {
    const a = seq.attentionMask[t];
    const n = seq.noiseMask[t];
    const l = seq.lossMask[t];
    if ((a !== 0 && a !== 1) || (n !== 0 && n !== 1) || (l !== 0 && l !== 1))
      throw new SgtError('INVALID_ARGUMENT', `${where}: sequence ${s}, position ${t}: masks must hold 0 or 1`);
    // The transform must never touch padding: the losses assume N <= A.
    if (n > a)
      throw new SgtError(
        'INVALID_ARGUMENT',
        `${where}: sequence ${s}, position ${t}: noise mask is 1 on a padding position (N <= A is required)`,
      );
  }
}

/**
 * Groups sequences into host batches of `batchSize` rows, in order or in a seeded random order.
 * The sequences are checked first (equal lengths, 0/1 masks, `N <= A`), so a bad one fails here
 * rather than inside a GPU kernel.
 *
 * @throws on a `batchSize` below 1, sequences of different lengths, or malformed masks.
 */
export function* batches(
  sequences: readonly PackedSequence[],
  batchSize: number,
  options: BatchOptions = {},
): Generator<HostBatch, void, undefined> {
  const where = 'batches';
  if (!Array.isArray(sequences)) throw new SgtError('INVALID_ARGUMENT', `${where}: sequences must be an array`);
  checkInt(batchSize, 'batchSize', where, 1);
  const seed = checkSeed(options.seed ?? 0, where);
  const epoch = checkInt(options.epoch ?? 0, 'epoch', where);
  if (sequences.length === 0) return;
  const seqLen = sequences[0]?.ids?.length ?? 0;
  sequences.forEach((seq, s) => {
    checkSequence(seq, s, seqLen, where);
  });

  const n = sequences.length;
  let order: ArrayLike<number>;
  if (options.shuffle) {
    // The golden-ratio step keeps consecutive epochs' seeds far apart in mulberry32's state space.
    order = seededPermutation(n, (seed + Math.imul(epoch, 0x9e3779b9)) | 0);
  } else {
    order = Array.from({ length: n }, (_, i) => i);
  }
  const end = options.dropLast ? n - (n % batchSize) : n;
  for (let first = 0; first < end; first += batchSize) {
    const rows = Math.min(batchSize, end - first);
    const ids = new Int32Array(rows * seqLen);
    const attentionMask = new Float32Array(rows * seqLen);
    const noiseMask = new Float32Array(rows * seqLen);
    const lossMask = new Float32Array(rows * seqLen);
    for (let r = 0; r < rows; r++) {
      const seq = sequences[order[first + r]];
      const off = r * seqLen;
      ids.set(seq.ids, off);
      for (let t = 0; t < seqLen; t++) {
        attentionMask[off + t] = seq.attentionMask[t];
        noiseMask[off + t] = seq.noiseMask[t];
        lossMask[off + t] = seq.lossMask[t];
      }
    }
    yield { ids, attentionMask, noiseMask, lossMask, batchSize: rows, seqLen };
  }
}

/**
 * Splits sequences into a training set and a held-out set with a seeded choice. Both keep the
 * input's order (shuffling is {@link batches}'s job). With `heldOutFraction > 0` and at least two
 * sequences, each side gets at least one.
 *
 * @throws when `heldOutFraction` is not in `[0, 1)`.
 */
export function trainHeldOutSplit<S>(sequences: readonly S[], heldOutFraction: number, seed = 0): { train: S[]; heldOut: S[] } {
  const where = 'trainHeldOutSplit';
  if (!Array.isArray(sequences)) throw new SgtError('INVALID_ARGUMENT', `${where}: sequences must be an array`);
  if (typeof heldOutFraction !== 'number' || !(heldOutFraction >= 0 && heldOutFraction < 1)) {
    throw new SgtError('INVALID_ARGUMENT', `${where}: heldOutFraction must be a number in [0, 1), got ${String(heldOutFraction)}`);
  }
  const n = sequences.length;
  let held = Math.round(heldOutFraction * n);
  if (heldOutFraction > 0 && n >= 2) held = Math.min(Math.max(held, 1), n - 1);
  const perm = seededPermutation(n, checkSeed(seed, where));
  const isHeld = new Uint8Array(n);
  for (let i = 0; i < held; i++) isHeld[perm[i]] = 1;
  const train: S[] = [];
  const heldOut: S[] = [];
  for (let i = 0; i < n; i++) (isHeld[i] ? heldOut : train).push(sequences[i]);
  return { train, heldOut };
}

/** Options of {@link textDataset}: those of {@link packSequences}, with the tokenizer's specials as defaults. */
export interface TextDatasetOptions extends Omit<PackOptions, 'padId' | 'bos' | 'eos'> {
  /** Padding id; default the tokenizer's. */
  padId?: number;
  /** BOS id; default the tokenizer's; `null` for none. */
  bos?: number | null;
  /** EOS id; default the tokenizer's; `null` for none. */
  eos?: number | null;
  /** The model's vocabulary size; the tokenizer's must not exceed it. Default the tokenizer's. */
  vocabSize?: number;
}

/**
 * Tokenizes one text or several documents and packs them (see {@link packSequences}).
 *
 * @throws when the tokenizer's vocabulary is larger than the model's `vocabSize`, or on bad options.
 */
export function textDataset(text: string | readonly string[], tokenizer: Tokenizer, options: TextDatasetOptions): PackedSequence[] {
  const where = 'textDataset';
  const docs = typeof text === 'string' ? [text] : text;
  if (!Array.isArray(docs)) throw new SgtError('INVALID_ARGUMENT', `${where}: text must be a string or an array of strings`);
  docs.forEach((doc, i) => {
    if (typeof doc !== 'string') throw new SgtError('INVALID_ARGUMENT', `${where}: document ${i} is not a string`);
  });
  const vocabSize = options.vocabSize ?? tokenizer.vocabSize;
  if (tokenizer.vocabSize > vocabSize) {
    throw new SgtError(
      'MODEL_INVALID',
      `${where}: the model's vocabulary (${vocabSize}) is too small for the tokenizer (${tokenizer.vocabSize} ids)`,
    );
  }
  const pick = (value: number | null | undefined, fallback: number | undefined): number | undefined =>
    value === null ? undefined : (value ?? fallback);
  return packSequences(
    docs.map((doc) => tokenizer.encode(doc)),
    {
      ...options,
      vocabSize,
      padId: options.padId ?? tokenizer.padId,
      bos: pick(options.bos, tokenizer.bosId),
      eos: pick(options.eos, tokenizer.eosId),
    },
  );
}
