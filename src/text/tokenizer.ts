/**
 * Tokenizers for the training data: a Hugging Face `tokenizer.json` (through the pure-TS
 * `@huggingface/tokenizers` package, so it runs in a page, a Web Worker and Node alike) and a
 * byte-level fallback for models that ship no tokenizer.
 */
import { SgtError } from '../gpu/errors';

/**
 * What the data pipeline needs from a tokenizer. `encode` never adds special tokens: the packer
 * places BOS/EOS itself, so that documents concatenated into one sequence are delimited the same
 * way whatever the tokenizer's post-processor would have done.
 */
export interface Tokenizer {
  /** One more than the largest id the tokenizer can produce (a model's embedding table must have at least this many rows). */
  vocabSize: number;
  /** Text to token ids, without special tokens. */
  encode(text: string): number[];
  /** Token ids back to text. Special tokens are left out. */
  decode(ids: number[]): string;
  /** Beginning-of-sequence id, when the tokenizer has one. */
  bosId?: number;
  /** End-of-sequence id, when the tokenizer has one. */
  eosId?: number;
  /** Id written into padding positions (masked out by the attention mask, but it must still be a valid embedding row). */
  padId: number;
}

/** The JSON of a `tokenizer.json` or `tokenizer_config.json`, parsed or as text. */
function parseJsonArg(value: unknown, file: string): Record<string, unknown> {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch (e) {
      throw new SgtError('MODEL_INVALID', `tokenizer: ${file} is not valid: ${(e as Error).message}`);
    }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SgtError(
      'MODEL_INVALID',
      `tokenizer: ${file} is not valid: expected a JSON object, got ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed}`,
    );
  }
  return parsed as Record<string, unknown>;
}

/**
 * `tokenizer_config.json` writes special tokens either as a string or (older files) as a serialized
 * `AddedToken` object; the library expects strings, so objects are reduced to their `content`.
 */
function tokenString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/**
 * Loads a Hugging Face tokenizer from the contents of `tokenizer.json` (and, optionally,
 * `tokenizer_config.json`, which names the BOS/EOS/PAD tokens). The package is imported lazily so
 * that a bundle that only uses {@link byteTokenizer} does not carry it.
 *
 * The special ids come from the config's `bos_token` / `eos_token` / `pad_token`. Without a pad
 * token, padding uses the EOS id (else 0): padding positions are masked out, so any valid row will do.
 *
 * @param tokenizerJson the parsed `tokenizer.json`, or its text.
 * @param tokenizerConfig the parsed `tokenizer_config.json`, or its text.
 * @throws `tokenizer: tokenizer.json is not valid: ...` when the file does not parse or the library rejects it.
 */
export async function loadHuggingFaceTokenizer(tokenizerJson: unknown, tokenizerConfig?: unknown): Promise<Tokenizer> {
  const json = parseJsonArg(tokenizerJson, 'tokenizer.json');
  const rawConfig = tokenizerConfig === undefined || tokenizerConfig === null ? {} : parseJsonArg(tokenizerConfig, 'tokenizer_config.json');
  const model = json.model;
  if (model === null || typeof model !== 'object' || Array.isArray(model)) {
    throw new SgtError('MODEL_INVALID', 'tokenizer: tokenizer.json is not valid: it has no "model" object');
  }
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) {
    throw new SgtError('MODEL_INVALID', 'tokenizer: tokenizer.json is not valid: "added_tokens" must be an array');
  }
  // The Rust serializer always writes these keys (null when unused) and the JS library requires
  // them; filling the gaps lets hand-trimmed files load too.
  const full: Record<string, unknown> = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...json,
    added_tokens: json.added_tokens ?? [],
  };
  const config: Record<string, unknown> = { ...rawConfig };
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token', 'sep_token', 'cls_token', 'mask_token']) {
    if (key in config) {
      const s = tokenString(config[key]);
      if (s === undefined) delete config[key];
      else config[key] = s;
    }
  }

  const { Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers');
  let hf: InstanceType<typeof HfTokenizer>;
  try {
    hf = new HfTokenizer(full, config);
  } catch (e) {
    throw new SgtError('MODEL_INVALID', `tokenizer: tokenizer.json is not valid: ${(e as Error).message}`);
  }

  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  if (vocabSize === 0) throw new SgtError('MODEL_INVALID', 'tokenizer: tokenizer.json is not valid: its vocabulary is empty');

  const idOf = (key: string): number | undefined => {
    const name = config[key];
    if (typeof name !== 'string') return undefined;
    const id = hf.token_to_id(name);
    if (id === undefined)
      throw new SgtError('MODEL_INVALID', `tokenizer: tokenizer_config.json names ${key} "${name}", which is not in the vocabulary`);
    return id;
  };
  const bosId = idOf('bos_token');
  const eosId = idOf('eos_token');
  const padId = idOf('pad_token') ?? eosId ?? 0;

  return {
    vocabSize,
    bosId,
    eosId,
    padId,
    encode(text: string): number[] {
      if (typeof text !== 'string') throw new SgtError('INVALID_ARGUMENT', `tokenizer: encode expects a string, got ${typeof text}`);
      const { ids, tokens } = hf.encode(text, { add_special_tokens: false });
      // The library maps a piece that is neither in the vocabulary nor covered by an unk token to
      // `undefined`; a hole in the ids would surface much later as a wrong embedding row.
      for (let i = 0; i < ids.length; i++) {
        if (!Number.isInteger(ids[i])) {
          throw new SgtError(
            'INVALID_ARGUMENT',
            `tokenizer: cannot encode the piece ${JSON.stringify(tokens[i])}: it is not in the vocabulary and the model has no unk token`,
          );
        }
      }
      return ids;
    },
    decode(ids: number[]): string {
      // The library throws on an empty list; an empty text is the natural answer.
      if (ids.length === 0) return '';
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
          throw new SgtError('INVALID_ARGUMENT', `tokenizer: cannot decode id ${id}: ids must be integers in [0, ${vocabSize})`);
      }
      return hf.decode(ids, { skip_special_tokens: true });
    },
  };
}

/** Options of {@link byteTokenizer}. */
export interface ByteTokenizerOptions {
  /** Rows of the model's embedding table; at least 256 plus room for the special ids. Default: largest special id + 1. */
  vocabSize?: number;
  /** BOS id (>= 256), or `null` for none. Default 256. */
  bosId?: number | null;
  /** EOS id (>= 256), or `null` for none. Default 257. */
  eosId?: number | null;
  /** Padding id (>= 256). Default 258. */
  padId?: number;
}

/**
 * A byte-level tokenizer: each UTF-8 byte is one id in `0..255`, special tokens sit above 255.
 * Round trips are lossless for any well-formed string (lone surrogates cannot be written in UTF-8
 * and become U+FFFD). Useful for models without a tokenizer, such as the tiny test models, as long
 * as their vocabulary has room for 256 bytes plus the specials.
 *
 * `decode` skips ids above 255 (the specials and any unused rows a sampled model may produce) and
 * turns invalid UTF-8 into U+FFFD rather than throwing, since generated ids need not be valid UTF-8.
 *
 * @throws when `vocabSize < 256`, or a special id is below 256 or does not fit in `vocabSize`.
 */
export function byteTokenizer(options: ByteTokenizerOptions = {}): Tokenizer {
  const bosId = options.bosId === undefined ? 256 : options.bosId;
  const eosId = options.eosId === undefined ? 257 : options.eosId;
  const padId = options.padId ?? 258;
  const specials: [string, number | null][] = [
    ['bosId', bosId],
    ['eosId', eosId],
    ['padId', padId],
  ];
  let largest = 255;
  for (const [name, id] of specials) {
    if (id === null) continue;
    if (!Number.isInteger(id) || id < 256) {
      throw new SgtError('INVALID_ARGUMENT', `byteTokenizer: ${name} = ${id} must be an integer >= 256 (ids 0..255 are the bytes)`);
    }
    largest = Math.max(largest, id);
  }
  const vocabSize = options.vocabSize ?? largest + 1;
  if (!Number.isInteger(vocabSize) || vocabSize < 256) {
    throw new SgtError(
      'UNSUPPORTED',
      `byteTokenizer: the model's vocabulary (${vocabSize}) is too small for a byte-level tokenizer: it needs at least 256 ids for the bytes`,
    );
  }
  if (largest >= vocabSize) {
    const names = specials
      .filter(([, id]) => id !== null && id >= vocabSize)
      .map(([n, id]) => `${n} = ${id}`)
      .join(', ');
    throw new SgtError(
      'INVALID_ARGUMENT',
      `byteTokenizer: the model's vocabulary (${vocabSize}) is too small for the special ids (${names}); pass ids below ${vocabSize}, or null for BOS/EOS`,
    );
  }
  const encoder = new TextEncoder();
  // ignoreBOM keeps a leading U+FEFF in the text: the default would swallow it and break the round trip.
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  return {
    vocabSize,
    bosId: bosId ?? undefined,
    eosId: eosId ?? undefined,
    padId,
    encode(text: string): number[] {
      if (typeof text !== 'string') throw new SgtError('INVALID_ARGUMENT', `byteTokenizer: encode expects a string, got ${typeof text}`);
      return Array.from(encoder.encode(text));
    },
    decode(ids: number[]): string {
      const bytes = new Uint8Array(ids.length);
      let n = 0;
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
          throw new SgtError('INVALID_ARGUMENT', `byteTokenizer: cannot decode id ${id}: ids must be integers in [0, ${vocabSize})`);
        if (id < 256) bytes[n++] = id;
      }
      return decoder.decode(bytes.subarray(0, n));
    },
  };
}
