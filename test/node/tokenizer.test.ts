/** Tokenizers: the byte-level fallback's round trips and limits, and a hand-built BPE tokenizer.json through @huggingface/tokenizers. */
import { describe, expect, it } from 'vitest';
import { byteTokenizer, loadHuggingFaceTokenizer } from '../../src/text/tokenizer';

describe('byteTokenizer', () => {
  const tok = byteTokenizer();

  it('maps text to its UTF-8 bytes, specials above 255', () => {
    expect(tok.encode('Hi!')).toEqual([72, 105, 33]);
    // é is U+00E9 = C3 A9 in UTF-8; 😀 is U+1F600 = F0 9F 98 80.
    expect(tok.encode('é')).toEqual([0xc3, 0xa9]);
    expect(tok.encode('😀')).toEqual([0xf0, 0x9f, 0x98, 0x80]);
    expect(tok.encode('')).toEqual([]);
    expect([tok.bosId, tok.eosId, tok.padId, tok.vocabSize]).toEqual([256, 257, 258, 259]);
  });

  it.each([
    ['ASCII', 'The quick brown fox jumps over the lazy dog. 0123456789 ~!@#$%^&*()\n\t'],
    ['accents', 'Ça déménage à Noël, señor Müller; ÅÆØ ñ ß'],
    ['combining marks', 'e\u0301 a\u0308'],
    ['emoji', '😀 👩‍👩‍👧‍👦 🇫🇷 👍🏽'],
    ['CJK', '漢字かなカナ한국어 中文'],
    ['a leading byte-order mark and NUL', '\uFEFFabc\u0000def'],
    ['mixed', 'naïve café — 東京 🍣 + Ω≈ç√∫'],
  ])('round-trips %s losslessly', (_name, text) => {
    const ids = tok.encode(text);
    expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 256)).toBe(true);
    expect(ids.length).toBe(new TextEncoder().encode(text).length);
    expect(tok.decode(ids)).toBe(text);
  });

  it('skips special ids when decoding and rejects ids outside the vocabulary', () => {
    const ids = [256, ...tok.encode('ok'), 257, 258, 258];
    expect(tok.decode(ids)).toBe('ok');
    expect(() => tok.decode([259])).toThrow(/cannot decode id 259.*\[0, 259\)/);
    expect(() => tok.decode([-1])).toThrow(/cannot decode id -1/);
    expect(() => tok.decode([1.5])).toThrow(/cannot decode id 1.5/);
  });

  it('turns invalid UTF-8 (as a model may sample) into U+FFFD instead of throwing', () => {
    expect(tok.decode([0x61, 0xff, 0x62])).toBe('a\uFFFDb');
  });

  it('fits specials into a larger model vocabulary and allows no BOS/EOS', () => {
    const big = byteTokenizer({ vocabSize: 1000, bosId: 998, eosId: 999, padId: 999 });
    expect([big.vocabSize, big.bosId, big.eosId, big.padId]).toEqual([1000, 998, 999, 999]);
    const bare = byteTokenizer({ bosId: null, eosId: null, padId: 256 });
    expect([bare.vocabSize, bare.bosId, bare.eosId, bare.padId]).toEqual([257, undefined, undefined, 256]);
  });

  it('errors when the model vocabulary is too small', () => {
    // tiny-llama's vocabulary has 96 rows: no room for 256 bytes.
    expect(() => byteTokenizer({ vocabSize: 96 })).toThrow(/vocabulary \(96\) is too small.*256/);
    expect(() => byteTokenizer({ vocabSize: 258 })).toThrow(/vocabulary \(258\) is too small for the special ids \(padId = 258\)/);
    expect(() => byteTokenizer({ bosId: 65 })).toThrow(/bosId = 65 must be an integer >= 256/);
  });
});

/**
 * A BPE tokenizer small enough to work out by hand, in the SentencePiece style of Llama: a
 * Metaspace pre-tokenizer turns spaces into "▁" and prepends one, a BOS-adding post-processor
 * (which `encode` must not apply), and a Metaspace decoder.
 */
function tinyBpe(): Record<string, unknown> {
  const special = (id: number, content: string) => ({
    id,
    content,
    special: true,
    normalized: false,
    lstrip: false,
    rstrip: false,
    single_word: false,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>'), special(18, '<pad>')],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: {
        '<unk>': 0,
        '<s>': 1,
        '</s>': 2,
        '▁': 3,
        h: 4,
        e: 5,
        l: 6,
        o: 7,
        w: 8,
        r: 9,
        d: 10,
        he: 11,
        ll: 12,
        '▁he': 13,
        llo: 14,
        '▁hello': 15,
        or: 16,
        '▁w': 17,
        '<pad>': 18,
      },
      // Applied by rank: "▁hello" = ▁ h e l l o -> ▁ he l l o -> ▁ he ll o -> ▁he ll o -> ▁he llo -> ▁hello.
      merges: ['h e', 'l l', '▁ he', 'll o', '▁he llo', 'o r', '▁ w'],
    },
  };
}

describe('loadHuggingFaceTokenizer', () => {
  const config = { bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' };

  it("encodes with the merges worked out by hand, without the post-processor's BOS", async () => {
    const tok = await loadHuggingFaceTokenizer(tinyBpe(), config);
    expect(tok.vocabSize).toBe(19);
    expect([tok.bosId, tok.eosId, tok.padId]).toEqual([1, 2, 18]);
    // "▁hello" merges fully (15); "▁world" = ▁ w o r l d -> "o r" (rank 5) then "▁ w" (rank 6): ▁w or l d.
    expect(tok.encode('hello world')).toEqual([15, 17, 16, 6, 10]);
    expect(tok.encode('hello hello')).toEqual([15, 15]);
    // "he" alone: ▁ h e -> ▁ he -> ▁he.
    expect(tok.encode('he')).toEqual([13]);
    // "z" is not in the vocabulary: the unk token.
    expect(tok.encode('hz')).toEqual([3, 4, 0]);
    expect(tok.encode('')).toEqual([]);
  });

  it('decodes back to the text, dropping special tokens', async () => {
    const tok = await loadHuggingFaceTokenizer(tinyBpe(), config);
    expect(tok.decode([15, 17, 16, 6, 10])).toBe('hello world');
    expect(tok.decode([1, 15, 2, 18, 18])).toBe('hello');
    expect(tok.decode([])).toBe('');
    for (const text of ['hello world', 'world hello', 'he rolled old hello']) {
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
    expect(() => tok.decode([19])).toThrow(/cannot decode id 19.*\[0, 19\)/);
  });

  it('accepts the files as text, token objects in the config, and pads with EOS when there is no pad token', async () => {
    const tok = await loadHuggingFaceTokenizer(
      JSON.stringify(tinyBpe()),
      JSON.stringify({
        bos_token: { __type: 'AddedToken', content: '<s>', special: true },
        eos_token: '</s>',
      }),
    );
    expect([tok.bosId, tok.eosId, tok.padId]).toEqual([1, 2, 2]);
    expect(tok.encode('hello')).toEqual([15]);
    const bare = await loadHuggingFaceTokenizer(tinyBpe());
    expect([bare.bosId, bare.eosId, bare.padId]).toEqual([undefined, undefined, 0]);
  });

  it('fills the null components that a trimmed tokenizer.json leaves out', async () => {
    const { model } = tinyBpe();
    const tok = await loadHuggingFaceTokenizer({ model });
    // No pre-tokenizer: the text is one word, no "▁" is prepended, and the space is unknown.
    expect(tok.encode('he')).toEqual([11]);
    expect(tok.vocabSize).toBe(19);
  });

  it('gives a clear error for a malformed tokenizer.json', async () => {
    await expect(loadHuggingFaceTokenizer('{"model": {"type": "BPE",')).rejects.toThrow(/^tokenizer: tokenizer\.json is not valid: /);
    await expect(loadHuggingFaceTokenizer('[1, 2]')).rejects.toThrow(
      /tokenizer: tokenizer\.json is not valid: expected a JSON object, got an array/,
    );
    await expect(loadHuggingFaceTokenizer({ version: '1.0' })).rejects.toThrow(
      /tokenizer: tokenizer\.json is not valid: it has no "model" object/,
    );
    await expect(loadHuggingFaceTokenizer({ model: { type: 'Nonsense' } })).rejects.toThrow(
      /tokenizer: tokenizer\.json is not valid: .*Nonsense/,
    );
    await expect(loadHuggingFaceTokenizer(tinyBpe(), '{oops')).rejects.toThrow(/tokenizer: tokenizer_config\.json is not valid/);
    await expect(loadHuggingFaceTokenizer(tinyBpe(), { eos_token: '<eot>' })).rejects.toThrow(
      /eos_token "<eot>", which is not in the vocabulary/,
    );
  });

  it('drops an unknown piece when there is no unk token (as the Rust library does)', async () => {
    const json = tinyBpe();
    const tok = await loadHuggingFaceTokenizer({ ...json, model: { ...(json.model as Record<string, unknown>), unk_token: null } });
    expect(tok.encode('hz')).toEqual([3, 4]);
  });

  it('refuses to return undefined ids when the unk token is missing from the vocabulary', async () => {
    const json = tinyBpe();
    const tok = await loadHuggingFaceTokenizer({ ...json, model: { ...(json.model as Record<string, unknown>), unk_token: '<oov>' } });
    expect(tok.encode('hello')).toEqual([15]);
    expect(() => tok.encode('hz')).toThrow(/cannot encode the piece "<oov>"/);
  });
});
