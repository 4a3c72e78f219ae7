/** Training data: packing and masks on hand-worked examples, batching, the seeded shuffle, the split, and textDataset. */
import { describe, expect, it } from 'vitest';
import {
  batches,
  packSequences,
  seededPermutation,
  seededRandom,
  textDataset,
  trainHeldOutSplit,
  type PackedSequence,
} from '../../src/text/data';
import { byteTokenizer } from '../../src/text/tokenizer';

const rows = (seqs: PackedSequence[], key: keyof PackedSequence): number[][] => seqs.map((s) => Array.from(s[key]));

function expectNoiseWithinAttention(seqs: PackedSequence[]): void {
  for (const s of seqs) for (let t = 0; t < s.ids.length; t++) expect(s.noiseMask[t]).toBeLessThanOrEqual(s.attentionMask[t]);
}

describe('packSequences', () => {
  // Stream: [BOS 5 6 7 EOS] [BOS 8 9 EOS] = 1 5 6 7 2 1 8 9 2, cut every 4, last chunk padded with 0.
  const docs = [
    [5, 6, 7],
    [8, 9],
  ];
  const base = { seqLen: 4, padId: 0, bos: 1, eos: 2 };

  it('packs documents with BOS/EOS into seqLen chunks and right-pads the last', () => {
    const seqs = packSequences(docs, base);
    expect(rows(seqs, 'ids')).toEqual([
      [1, 5, 6, 7],
      [2, 1, 8, 9],
      [2, 0, 0, 0],
    ]);
    expect(rows(seqs, 'attentionMask')).toEqual([
      [1, 1, 1, 1],
      [1, 1, 1, 1],
      [1, 0, 0, 0],
    ]);
    // Default N = A and L = A.
    expect(rows(seqs, 'noiseMask')).toEqual(rows(seqs, 'attentionMask'));
    expect(rows(seqs, 'lossMask')).toEqual(rows(seqs, 'attentionMask'));
    expect(seqs[0].ids).toBeInstanceOf(Int32Array);
    // The masks are separate arrays: editing one must not change another.
    seqs[0].lossMask[0] = 0;
    expect(seqs[0].attentionMask[0]).toBe(1);
  });

  it('excludes BOS/EOS from the noise mask when asked, and can use N as the loss mask', () => {
    const seqs = packSequences(docs, { ...base, noiseMask: { excludeSpecialTokens: true }, lossMask: 'noise' });
    expect(rows(seqs, 'noiseMask')).toEqual([
      [0, 1, 1, 1],
      [0, 0, 1, 1],
      [0, 0, 0, 0],
    ]);
    expect(rows(seqs, 'lossMask')).toEqual(rows(seqs, 'noiseMask'));
    expect(rows(seqs, 'attentionMask')).toEqual([
      [1, 1, 1, 1],
      [1, 1, 1, 1],
      [1, 0, 0, 0],
    ]);
  });

  it('excludes the first k tokens of each document or of each sequence', () => {
    // Per document: the first own token of each document (5 and 8), not the BOS.
    const perDoc = packSequences(docs, { ...base, noiseMask: { excludeFirst: 1 } });
    expect(rows(perDoc, 'noiseMask')).toEqual([
      [1, 0, 1, 1],
      [1, 1, 0, 1],
      [1, 0, 0, 0],
    ]);
    const perSeq = packSequences(docs, { ...base, noiseMask: { excludeFirst: 2, excludeFirstOf: 'sequence' } });
    expect(rows(perSeq, 'noiseMask')).toEqual([
      [0, 0, 1, 1],
      [0, 0, 1, 1],
      [0, 0, 0, 0],
    ]);
    const both = packSequences(docs, { ...base, noiseMask: { excludeFirst: 2, excludeSpecialTokens: true } });
    expect(rows(both, 'noiseMask')).toEqual([
      [0, 0, 0, 1],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]);
    for (const s of [perDoc, perSeq, both]) expectNoiseWithinAttention(s);
  });

  it('takes a single flat document, skips empty ones, and pads only when needed', () => {
    expect(rows(packSequences([3, 4, 5], { seqLen: 2, padId: 9 }), 'ids')).toEqual([
      [3, 4],
      [5, 9],
    ]);
    expect(rows(packSequences(Int32Array.of(3, 4, 5, 6), { seqLen: 2, padId: 9 }), 'ids')).toEqual([
      [3, 4],
      [5, 6],
    ]);
    expect(rows(packSequences([[], [5], []], base), 'ids')).toEqual([[1, 5, 2, 0]]);
    expect(packSequences([], base)).toEqual([]);
    expect(packSequences([[], []], base)).toEqual([]);
  });

  it('draws a seeded noise fraction, with N <= A everywhere', () => {
    const long = Array.from({ length: 5000 }, (_, i) => i % 50);
    const opts = { seqLen: 64, padId: 0, noiseMask: { fraction: 0.3, seed: 7 } };
    const a = packSequences(long, opts);
    const b = packSequences(long, opts);
    expect(rows(a, 'noiseMask')).toEqual(rows(b, 'noiseMask'));
    const c = packSequences(long, { ...opts, noiseMask: { fraction: 0.3, seed: 8 } });
    expect(rows(c, 'noiseMask')).not.toEqual(rows(a, 'noiseMask'));
    expectNoiseWithinAttention(a);
    const on = a.reduce((n, s) => n + s.noiseMask.reduce((x, y) => x + y, 0), 0);
    expect(on / 5000).toBeGreaterThan(0.27);
    expect(on / 5000).toBeLessThan(0.33);
    // Padding (the last 5000 % 64 = 8 tokens fill 8 of 64 positions) is never noised.
    expect(Array.from(a[a.length - 1].noiseMask.subarray(8))).toEqual(new Array(56).fill(0));
    const none = packSequences(long, { ...opts, noiseMask: { fraction: 0 } });
    expect(none.every((s) => s.noiseMask.every((v) => v === 0))).toBe(true);
  });

  it('validates its input with errors that say where', () => {
    expect(() => packSequences(docs, { ...base, seqLen: 1 })).toThrow(/seqLen must be an integer >= 2, got 1/);
    expect(() => packSequences(docs, { ...base, seqLen: 2.5 })).toThrow(/seqLen/);
    expect(() =>
      packSequences(
        [
          [1, 2],
          [3, 300],
        ],
        { ...base, vocabSize: 256 },
      ),
    ).toThrow(/document 1, position 1: id 300 is not an integer in \[0, 256\)/);
    expect(() => packSequences([[1, 2.5]], base)).toThrow(/document 0, position 1: id 2.5/);
    expect(() => packSequences([[1, -1]], base)).toThrow(/document 0, position 1: id -1/);
    expect(() => packSequences([1, 2], { ...base, padId: 10, vocabSize: 10 })).toThrow(/padId = 10 must be an integer in \[0, 10\)/);
    expect(() => packSequences([1, 2], { ...base, eos: -2 })).toThrow(/eos = -2/);
    expect(() => packSequences([1, [2]] as unknown as number[], base)).toThrow(/mixes ids and documents/);
    expect(() => packSequences([1, 2], { ...base, noiseMask: { fraction: 1.5 } })).toThrow(
      /noiseMask.fraction must be a number in \[0, 1\]/,
    );
    expect(() => packSequences([1, 2], { ...base, noiseMask: { excludeFirst: -1 } })).toThrow(/noiseMask.excludeFirst/);
    expect(() => packSequences([1, 2], { ...base, lossMask: 'all' as 'noise' })).toThrow(/lossMask must be 'attention' or 'noise'/);
  });
});

describe('seeded randomness', () => {
  it('is deterministic per seed and roughly uniform', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const xs = Array.from({ length: 10000 }, () => a());
    expect(Array.from({ length: 10000 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(seededRandom(43)()).not.toBe(seededRandom(42)());
  });

  it('gives permutations', () => {
    const p = seededPermutation(100, 3);
    expect(Array.from(p).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(Array.from(seededPermutation(100, 3))).toEqual(Array.from(p));
    expect(Array.from(seededPermutation(100, 4))).not.toEqual(Array.from(p));
  });
});

describe('batches', () => {
  // Five sequences of length 3 whose ids say which sequence they are: row s holds 10s, 10s+1, 10s+2.
  const seqs: PackedSequence[] = Array.from({ length: 5 }, (_, s) => ({
    ids: Int32Array.of(10 * s, 10 * s + 1, 10 * s + 2),
    attentionMask: Uint8Array.of(1, 1, s % 2),
    noiseMask: Uint8Array.of(0, 1, s % 2),
    lossMask: Uint8Array.of(1, 0, 1),
  }));
  const firstIds = (bs: ReturnType<typeof batches>): number[] =>
    [...bs].flatMap((b) => Array.from({ length: b.batchSize }, (_, r) => b.ids[r * b.seqLen] / 10));

  it('lays out row-major [B, T] arrays, in order, with a short last batch', () => {
    const out = [...batches(seqs, 2)];
    expect(out.map((b) => [b.batchSize, b.seqLen])).toEqual([
      [2, 3],
      [2, 3],
      [1, 3],
    ]);
    expect(Array.from(out[0].ids)).toEqual([0, 1, 2, 10, 11, 12]);
    expect(out[0].attentionMask).toBeInstanceOf(Float32Array);
    expect(Array.from(out[0].attentionMask)).toEqual([1, 1, 0, 1, 1, 1]);
    expect(Array.from(out[0].noiseMask)).toEqual([0, 1, 0, 0, 1, 1]);
    expect(Array.from(out[0].lossMask)).toEqual([1, 0, 1, 1, 0, 1]);
    expect(Array.from(out[2].ids)).toEqual([40, 41, 42]);
    expect(out[2].ids.length).toBe(3);
  });

  it('drops the short last batch when asked', () => {
    const out = [...batches(seqs, 2, { dropLast: true })];
    expect(out.map((b) => b.batchSize)).toEqual([2, 2]);
    expect([...batches(seqs, 5, { dropLast: true })].length).toBe(1);
    expect([...batches(seqs, 6, { dropLast: true })].length).toBe(0);
    expect([...batches([], 2)].length).toBe(0);
  });

  it('shuffles deterministically per seed and epoch, visiting each sequence once', () => {
    const a = firstIds(batches(seqs, 2, { shuffle: true, seed: 1 }));
    expect([...a].sort()).toEqual([0, 1, 2, 3, 4]);
    expect(firstIds(batches(seqs, 2, { shuffle: true, seed: 1 }))).toEqual(a);
    const orders = new Set<string>();
    for (let seed = 0; seed < 20; seed++) orders.add(firstIds(batches(seqs, 2, { shuffle: true, seed })).join());
    expect(orders.size).toBeGreaterThan(10);
    const epochs = new Set<string>();
    for (let epoch = 0; epoch < 20; epoch++) epochs.add(firstIds(batches(seqs, 2, { shuffle: true, seed: 1, epoch })).join());
    expect(epochs.size).toBeGreaterThan(10);
    expect(firstIds(batches(seqs, 2))).toEqual([0, 1, 2, 3, 4]);
  });

  it('keeps each row with its own masks after shuffling', () => {
    for (const b of batches(seqs, 2, { shuffle: true, seed: 5 })) {
      for (let r = 0; r < b.batchSize; r++) {
        const s = b.ids[r * 3] / 10;
        expect(Array.from(b.attentionMask.subarray(r * 3, r * 3 + 3))).toEqual([1, 1, s % 2]);
      }
    }
  });

  it('rejects bad batch sizes and malformed sequences', () => {
    expect(() => [...batches(seqs, 0)]).toThrow(/batchSize must be an integer >= 1, got 0/);
    const short = { ...seqs[0], ids: Int32Array.of(1, 2) };
    expect(() => [...batches([seqs[0], short], 1)]).toThrow(/sequence 1 has 2 positions, sequence 0 has 3/);
    const noisyPad = { ...seqs[0], noiseMask: Uint8Array.of(0, 1, 1) };
    expect(() => [...batches([noisyPad], 1)]).toThrow(/sequence 0, position 2: noise mask is 1 on a padding position/);
    const notBinary = { ...seqs[1], lossMask: Uint8Array.of(2, 0, 0) };
    expect(() => [...batches([notBinary], 1)]).toThrow(/masks must hold 0 or 1/);
  });

  it('batches packed sequences end to end', () => {
    const packed = packSequences(
      [
        [5, 6, 7],
        [8, 9],
      ],
      { seqLen: 4, padId: 0, bos: 1, eos: 2 },
    );
    const [b] = [...batches(packed, 3)];
    expect(Array.from(b.ids)).toEqual([1, 5, 6, 7, 2, 1, 8, 9, 2, 0, 0, 0]);
    expect(Array.from(b.attentionMask)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  });
});

describe('trainHeldOutSplit', () => {
  const items = Array.from({ length: 10 }, (_, i) => i);

  it('splits disjointly and deterministically, keeping the input order', () => {
    const { train, heldOut } = trainHeldOutSplit(items, 0.2, 11);
    expect(heldOut.length).toBe(2);
    expect(train.length).toBe(8);
    expect([...train, ...heldOut].sort((a, b) => a - b)).toEqual(items);
    expect(train).toEqual([...train].sort((a, b) => a - b));
    expect(trainHeldOutSplit(items, 0.2, 11)).toEqual({ train, heldOut });
    const picks = new Set<string>();
    for (let seed = 0; seed < 10; seed++) picks.add(trainHeldOutSplit(items, 0.2, seed).heldOut.join());
    expect(picks.size).toBeGreaterThan(3);
  });

  it('keeps at least one on each side and validates the fraction', () => {
    expect(trainHeldOutSplit([1, 2], 0.1).heldOut.length).toBe(1);
    expect(trainHeldOutSplit([1, 2], 0.9).train.length).toBe(1);
    expect(trainHeldOutSplit(items, 0)).toEqual({ train: items, heldOut: [] });
    expect(() => trainHeldOutSplit(items, 1)).toThrow(/heldOutFraction must be a number in \[0, 1\), got 1/);
    expect(() => trainHeldOutSplit(items, -0.1)).toThrow(/heldOutFraction/);
  });
});

describe('textDataset', () => {
  it("tokenizes and packs with the tokenizer's specials", () => {
    const tok = byteTokenizer();
    // "ab" -> 256 97 98 257, "c" -> 256 99 257; seqLen 4, pad 258.
    const seqs = textDataset(['ab', 'c'], tok, { seqLen: 4 });
    expect(rows(seqs, 'ids')).toEqual([
      [256, 97, 98, 257],
      [256, 99, 257, 258],
    ]);
    expect(rows(seqs, 'attentionMask')).toEqual([
      [1, 1, 1, 1],
      [1, 1, 1, 0],
    ]);
    const noSpecials = textDataset('abc', tok, { seqLen: 2, bos: null, eos: null, noiseMask: { excludeSpecialTokens: true } });
    expect(rows(noSpecials, 'ids')).toEqual([
      [97, 98],
      [99, 258],
    ]);
    expect(rows(noSpecials, 'noiseMask')).toEqual([
      [1, 1],
      [1, 0],
    ]);
    expect(tok.decode(Array.from(seqs[0].ids))).toBe('ab');
  });

  it('errors when the model vocabulary is too small for the tokenizer', () => {
    expect(() => textDataset('hi', byteTokenizer(), { seqLen: 4, vocabSize: 96 })).toThrow(
      /vocabulary \(96\) is too small for the tokenizer \(259 ids\)/,
    );
    expect(() => textDataset([42 as unknown as string], byteTokenizer(), { seqLen: 4 })).toThrow(/document 0 is not a string/);
  });
});
