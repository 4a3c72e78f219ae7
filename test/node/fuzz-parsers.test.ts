/**
 * Fuzzing what parses untrusted files: safetensors headers and bytes (`parseSafetensors`,
 * `readSafetensors` from a Blob), shard lists and `model.safetensors.index.json` (`readWeights`,
 * `parseSafetensorsIndex`), `config.json` (`parseModelConfig`) and a whole model load
 * (`loadCausalLM`). The rule for every input: it parses into something consistent, or it is refused
 * with a typed error (`SgtError`, code `MODEL_INVALID` or `IO_ERROR`, a message naming the file) —
 * never another exception, a hang, a crash of the process or a GPU buffer left live. Valid files
 * written by `writeSafetensors` read back exactly. Seeded and bounded (test/helpers/fuzz.ts).
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SgtError, liveBufferCount } from '../../src/index';
import { parseModelConfig } from '../../src/models/config';
import { loadCausalLM } from '../../src/models/causalLM';
import { SAFETENSORS_DTYPE_BYTES, parseSafetensors, readSafetensors, toFloat32, type SafetensorsFile } from '../../src/models/safetensors';
import { writeSafetensors } from '../../src/models/safetensorsWriter';
import { parseSafetensorsIndex, readWeights } from '../../src/models/shards';
import { fuzz } from '../helpers/fuzz';
import { gpu } from '../gpu';

const FIXTURES = '../shared/fixtures';
const fixture = (path: string): Uint8Array => new Uint8Array(readFileSync(`${FIXTURES}/${path}`));

/** How long one parse of these small inputs may take before it counts as a hang (ms). */
const PARSE_LIMIT_MS = 2_000;

/**
 * Runs `body` (sync or async) and returns its result or its error, failing on a hang: an async
 * body that does not settle within `limitMs`, or a sync one that takes that long.
 */
async function outcome<T>(body: () => T | Promise<T>, limitMs = PARSE_LIMIT_MS): Promise<{ value?: T; error?: unknown }> {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${limitMs} ms: a hang`)), limitMs);
  });
  try {
    return { value: await Promise.race([Promise.resolve().then(body), hang]) };
  } catch (error) {
    if (error instanceof Error && error.message.endsWith('a hang')) throw error;
    return { error };
  } finally {
    clearTimeout(timer);
    expect(performance.now() - start, 'a parse this slow is a hang in the making').toBeLessThan(limitMs);
  }
}

/** A refusal as the library promises it: an SgtError of one of `codes`, its message starting with `prefix`. */
function expectRefusal(error: unknown, codes: string[], prefix: RegExp): void {
  expect(error, `${String(error)}`).toBeInstanceOf(SgtError);
  const e = error as SgtError;
  expect(codes, e.message).toContain(e.code);
  expect(e.message).toMatch(prefix);
}

/**
 * How many inputs of a property parsed and how many were refused: a property whose inputs all
 * land on one side tests only that side, so each asserts that both happened.
 */
class Tally {
  parsed = 0;
  refused = 0;
  count(ok: boolean): void {
    if (ok) this.parsed++;
    else this.refused++;
  }
  expectBoth(what: string): void {
    expect(this.parsed, `${what}: no input parsed`).toBeGreaterThan(0);
    expect(this.refused, `${what}: no input was refused`).toBeGreaterThan(0);
  }
}

/** What a parsed file must satisfy: every entry's bytes fit its dtype and shape, and convert. */
function expectConsistent(file: SafetensorsFile): void {
  for (const [name, entry] of file.tensors) {
    const count = entry.shape.reduce((a, b) => a * b, 1);
    expect(entry.bytes.byteLength, name).toBe(count * SAFETENSORS_DTYPE_BYTES[entry.dtype]);
    expect(toFloat32(entry).length, name).toBe(count);
  }
  for (const v of Object.values(file.metadata)) expect(typeof v).toBe('string');
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

/** Names: ordinary, unicode, and the ones that trip plain objects. */
const nameArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'model.layers.0.mlp.up_proj.weight', ' '),
);

const dtypeArb = fc.constantFrom('F32', 'F16', 'BF16') as fc.Arbitrary<'F32' | 'F16' | 'BF16'>;
const tensorArb = fc
  .record({ dtype: dtypeArb, shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), seed: fc.integer() })
  .map(({ dtype, shape, seed }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = dtype === 'F32' ? new Float32Array(n) : new Uint16Array(n);
    for (let i = 0; i < n; i++) data[i] = dtype === 'F32' ? ((seed + i * 7919) % 1000) / 37 : (seed + i * 31) & 0xffff;
    return { dtype, shape, data };
  });
const tensorsArb = fc.dictionary(
  nameArb.filter((n) => n !== '__metadata__'),
  tensorArb,
  { maxKeys: 5, noNullPrototype: true },
);
const metadataArb = fc.option(fc.dictionary(nameArb, fc.string({ maxLength: 10 }), { maxKeys: 3, noNullPrototype: true }), {
  nil: undefined,
});

/** A valid file as bytes. */
const validFileArb = fc.tuple(tensorsArb, metadataArb).map(([tensors, metadata]) => writeSafetensors(tensors, metadata));

/** One damage done to a file's bytes. */
const damageArb = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('length' as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), remove: fc.nat({ max: 8 }), insert: fc.uint8Array({ maxLength: 8 }) }),
);
type Damage = typeof damageArb extends fc.Arbitrary<infer D> ? D : never;

/** Applies `d`, aiming mostly at the header (where a flipped byte changes what the parser sees). */
function damage(bytes: Uint8Array, d: Damage): Uint8Array {
  const headerEnd =
    bytes.length < 8 ? bytes.length : Math.min(bytes.length, 8 + new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true));
  const at = (n: number) => n % Math.max(1, headerEnd);
  switch (d.kind) {
    case 'flip': {
      const out = bytes.slice();
      if (out.length) out[at(d.at)] ^= d.bits;
      return out;
    }
    case 'truncate':
      return bytes.slice(0, d.at % (bytes.length + 1));
    case 'length': {
      const out = bytes.slice();
      if (out.length >= 8) new DataView(out.buffer).setBigUint64(0, d.value, true);
      return out;
    }
    case 'splice': {
      const i = 8 + (d.at % Math.max(1, headerEnd - 8));
      const out = new Uint8Array([...bytes.subarray(0, i), ...d.insert, ...bytes.subarray(i + d.remove)]);
      return out;
    }
  }
}

/** A header entry as a careless or hostile writer might make it. */
const oddNumber = fc.oneof(
  fc.integer({ min: -3, max: 64 }),
  fc.constantFrom(1.5, -0, 2 ** 53, 2 ** 64, 1e308, Number.MAX_SAFE_INTEGER),
  fc.double({ noNaN: true }).filter(Number.isFinite),
);
const oddValue = fc.oneof(oddNumber, fc.string({ maxLength: 4 }), fc.constant(null), fc.boolean(), fc.jsonValue({ maxDepth: 2 }));
const headerEntryArb = fc.oneof(
  fc.record(
    {
      dtype: fc.oneof(dtypeArb, fc.constantFrom('I64', 'F64', 'U8', 'f32', 'BOOL', ''), oddValue),
      shape: fc.oneof(fc.array(oddNumber, { maxLength: 4 }), oddValue),
      data_offsets: fc.oneof(fc.tuple(oddNumber, oddNumber), fc.array(oddNumber, { maxLength: 3 }), oddValue),
    },
    { requiredKeys: [] },
  ),
  oddValue,
);
const headerArb = fc.dictionary(fc.oneof(nameArb, fc.constant('__metadata__')), headerEntryArb, { maxKeys: 4, noNullPrototype: true });

/** A file around a header: the JSON text, then `dataLength` bytes of data. */
function fileWithHeader(header: unknown, dataLength: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLength);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  return out;
}

const SAFETENSORS_REFUSAL = /^safetensors: /;
/** Shard lists and their index are refused as `weights: ...` (src/models/shards.ts), a shard's own damage as `safetensors: ...`. */
const WEIGHTS_REFUSAL = /^(weights|safetensors): /;

// ---------------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------------

describe('safetensors: every input parses consistently or is refused by name (fast-check)', () => {
  it('files written by writeSafetensors read back exactly: names (unicode, __proto__), dtypes, shapes, bytes, metadata', async () => {
    await fuzz(
      'safetensors round trip',
      fc.property(tensorsArb, metadataArb, (tensors, metadata) => {
        const file = parseSafetensors(writeSafetensors(tensors, metadata));
        expect([...file.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
        for (const [name, t] of Object.entries(tensors)) {
          const entry = file.tensors.get(name)!;
          expect([entry.dtype, entry.shape]).toEqual([t.dtype, t.shape]);
          expect(entry.bytes).toEqual(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        }
        expect(Object.entries(file.metadata).sort()).toEqual(Object.entries(metadata ?? {}).sort());
      }),
      { runs: 500 },
    );
  });

  it('damaged files (flipped, truncated, spliced bytes, a wrong length field) never pass inconsistent', async () => {
    const arb = fc.tuple(
      fc.oneof(validFileArb, fc.constant(fixture('tiny-qwen2/model.safetensors'))),
      fc.array(damageArb, { minLength: 1, maxLength: 3 }),
    );
    const tally = new Tally();
    await fuzz(
      'safetensors damaged bytes',
      fc.asyncProperty(arb, async ([bytes, damages]) => {
        const damaged = damages.reduce(damage, bytes);
        const { value, error } = await outcome(() => parseSafetensors(damaged));
        tally.count(Boolean(value));
        if (value) expectConsistent(value);
        else expectRefusal(error, ['MODEL_INVALID'], SAFETENSORS_REFUSAL);
      }),
      { runs: 1000 },
    );
    tally.expectBoth('damaged files');
  });

  it('hostile headers (odd dtypes, shapes, offsets, types, metadata) never pass inconsistent', async () => {
    const tally = new Tally();
    await fuzz(
      'safetensors hostile headers',
      fc.asyncProperty(headerArb, fc.nat({ max: 64 }), async (header, dataLength) => {
        const { value, error } = await outcome(() => parseSafetensors(fileWithHeader(header, dataLength)));
        tally.count(Boolean(value));
        if (value) expectConsistent(value);
        else expectRefusal(error, ['MODEL_INVALID'], SAFETENSORS_REFUSAL);
      }),
      { runs: 1000 },
    );
    tally.expectBoth('hostile headers');
  });

  it('read from a Blob (the streaming path), damaged files behave as from bytes, with the source named', async () => {
    const arb = fc.tuple(validFileArb, fc.array(damageArb, { maxLength: 2 }));
    const tally = new Tally();
    await fuzz(
      'safetensors from a Blob',
      fc.asyncProperty(arb, async ([bytes, damages]) => {
        const damaged = damages.reduce(damage, bytes);
        const direct = await outcome(() => parseSafetensors(damaged));
        const streamed = await outcome(() => readSafetensors(new File([damaged as BlobPart], 'w.safetensors')));
        expect(Boolean(streamed.value)).toBe(Boolean(direct.value));
        tally.count(Boolean(streamed.value));
        if (streamed.value) expectConsistent(streamed.value);
        else {
          expectRefusal(streamed.error, ['MODEL_INVALID', 'IO_ERROR'], SAFETENSORS_REFUSAL);
          expect((streamed.error as Error).message).toContain('w.safetensors');
        }
      }),
      { runs: 150 },
    );
    tally.expectBoth('Blobs');
  });
});

// ---------------------------------------------------------------------------------------------
// Shards and their index
// ---------------------------------------------------------------------------------------------

describe('shards and model.safetensors.index.json (fast-check)', () => {
  it('any JSON (or text) as an index parses into file names or is refused by name', async () => {
    const weightMap = fc.dictionary(nameArb, fc.oneof(fc.constantFrom('a.safetensors', 'b.safetensors'), oddValue), {
      maxKeys: 4,
      noNullPrototype: true,
    });
    const arb = fc.oneof(
      fc.record({ weight_map: fc.oneof(weightMap, oddValue), metadata: fc.option(oddValue) }, { requiredKeys: [] }),
      fc.jsonValue({ maxDepth: 3 }),
      fc.string({ maxLength: 40 }),
      fc.jsonValue({ maxDepth: 3 }).map((j) => JSON.stringify({ weight_map: j })),
    );
    const tally = new Tally();
    await fuzz(
      'safetensors index',
      fc.asyncProperty(arb, async (json) => {
        const { value, error } = await outcome(() => parseSafetensorsIndex(json));
        tally.count(Boolean(value));
        if (!value) return expectRefusal(error, ['MODEL_INVALID'], /^weights: model\.safetensors\.index\.json /);
        expect(value.weightMap.size).toBeGreaterThan(0);
        for (const file of value.weightMap.values()) expect(typeof file === 'string' && file.length > 0).toBe(true);
        expect(new Set(value.shards)).toEqual(new Set(value.weightMap.values()));
      }),
      { runs: 500 },
    );
    tally.expectBoth('indexes');
  });

  it('shard lists, with or without an index, merge each tensor from its one shard or are refused by name', async () => {
    const shardArb = fc.tuple(fc.constantFrom('a.safetensors', 'b.safetensors', 'c.safetensors'), tensorsArb);
    const arb = fc.record({
      shards: fc.uniqueArray(shardArb, { minLength: 1, maxLength: 3, selector: ([name]) => name }),
      // An index that agrees with the shards, or one that places some tensor elsewhere.
      index: fc.option(fc.nat(), { nil: undefined }),
      asBlobs: fc.boolean(),
    });
    const tally = new Tally();
    await fuzz(
      'shards',
      fc.asyncProperty(arb, async ({ shards, index, asBlobs }) => {
        const bytes = shards.map(([name, tensors]) => [name, writeSafetensors(tensors)] as const);
        const sources = new Map(bytes.map(([name, b]) => [name, asBlobs ? new Blob([b as BlobPart]) : b]));
        let input: Parameters<typeof readWeights>[0];
        // The shards read: all of a list; those the index names (an index is what says which to read).
        let read = new Set(shards.map(([name]) => name));
        if (index !== undefined) {
          // Entries, then Object.fromEntries: an assignment would lose a tensor named '__proto__'.
          const placed = shards.flatMap(([name, tensors]) => Object.keys(tensors).map((t) => [t, name]));
          if (placed.length) placed[index % placed.length][1] = ['a.safetensors', 'b.safetensors', 'c.safetensors'][index % 3];
          const weightMap = Object.fromEntries(placed);
          read = new Set(Object.values(weightMap));
          input = { index: { weight_map: weightMap }, shards: sources };
        } else input = [...sources.values()];
        const { value, error } = await outcome(() => readWeights(input));
        tally.count(Boolean(value));
        if (!value) return expectRefusal(error, ['MODEL_INVALID'], WEIGHTS_REFUSAL);
        expectConsistent(value);
        const owners = new Map<string, number>();
        for (const [name, tensors] of shards) {
          if (read.has(name)) for (const t of Object.keys(tensors)) owners.set(t, (owners.get(t) ?? 0) + 1);
        }
        expect(
          [...owners.values()].every((n) => n === 1),
          'a tensor in two shards was accepted',
        ).toBe(true);
        expect(new Set(value.tensors.keys())).toEqual(new Set(owners.keys()));
      }),
      { runs: 200 },
    );
    tally.expectBoth('shard lists');
  });
});

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

const CONFIGS = ['tiny-llama', 'tiny-llama3', 'tiny-qwen2', 'tiny-gpt2'].map(
  (m) => JSON.parse(readFileSync(`${FIXTURES}/${m}/config.json`, 'utf8')) as Record<string, unknown>,
);
const CONFIG_KEYS = [...new Set(CONFIGS.flatMap((c) => Object.keys(c)))].concat([
  'head_dim',
  'rope_parameters',
  'rope_scaling',
  'partial_rotary_factor',
  'sliding_window',
  'use_sliding_window',
  'attention_bias',
  'mlp_bias',
  'n_inner',
  'activation_function',
]);
const ropeDictArb = fc.record(
  {
    rope_type: fc.oneof(fc.constantFrom('default', 'linear', 'llama3', 'yarn', 'dynamic'), oddValue),
    type: fc.oneof(fc.constantFrom('linear', 'llama3'), oddValue, fc.constant({ toString: 1 })),
    factor: oddValue,
    low_freq_factor: oddValue,
    high_freq_factor: oddValue,
    original_max_position_embeddings: oddValue,
    rope_theta: oddValue,
  },
  { requiredKeys: [] },
);
/** One edit of a config: a field set to an odd value (or a RoPE dict), or deleted. */
const configEditArb = fc.tuple(fc.oneof(fc.constantFrom(...CONFIG_KEYS), nameArb), fc.oneof(oddValue, ropeDictArb, fc.constant(undefined)));

describe('config.json: every edit of a real config parses into a sound config or is refused by name (fast-check)', () => {
  it('fields set to odd values, deleted, or unknown; RoPE dicts of every shape', async () => {
    const arb = fc.tuple(fc.constantFrom(...CONFIGS), fc.array(configEditArb, { minLength: 1, maxLength: 4 }));
    const tally = new Tally();
    await fuzz(
      'config.json',
      fc.asyncProperty(arb, async ([base, edits]) => {
        const json: Record<string, unknown> = structuredClone(base);
        for (const [key, value] of edits) {
          if (value === undefined) delete json[key];
          else Object.defineProperty(json, key, { value, enumerable: true, writable: true, configurable: true });
        }
        const { value: config, error } = await outcome(() => parseModelConfig(JSON.parse(JSON.stringify(json))));
        tally.count(Boolean(config));
        if (!config) return expectRefusal(error, ['MODEL_INVALID'], /^config\.json: /);
        for (const k of [
          'vocabSize',
          'hiddenSize',
          'intermediateSize',
          'numLayers',
          'numHeads',
          'numKvHeads',
          'headDim',
          'maxPositions',
        ] as const) {
          expect(Number.isSafeInteger(config[k]) && config[k] > 0, `${k} = ${config[k]}`).toBe(true);
        }
        expect(config.numHeads % config.numKvHeads).toBe(0);
        expect(config.normEps > 0 && Number.isFinite(config.normEps)).toBe(true);
        expect(config.ropeTheta === null || (config.ropeTheta > 0 && Number.isFinite(config.ropeTheta))).toBe(true);
      }),
      { runs: 1000 },
    );
    tally.expectBoth('configs');
  });
});

// ---------------------------------------------------------------------------------------------
// A whole model load: nothing stays allocated on a refusal
// ---------------------------------------------------------------------------------------------

describe('loadCausalLM on damaged weights and configs (fast-check)', () => {
  it('loads and frees, or refuses by name with no GPU buffer left live', async () => {
    await gpu();
    const config = readFileSync(`${FIXTURES}/tiny-llama/config.json`, 'utf8');
    const weights = fixture('tiny-llama/model.safetensors');
    const file = parseSafetensors(weights);
    const names = [...file.tensors.keys()];
    type Edit = typeof edit extends fc.Arbitrary<infer E> ? E : never;
    const edit = fc.oneof(
      // A tensor dropped, renamed, reshaped or retyped (rewritten, so that the file itself is valid).
      fc.record({ kind: fc.constantFrom('drop', 'rename', 'reshape', 'retype'), which: fc.nat() }),
      // Bytes damaged.
      fc.record({ kind: fc.constant('bytes' as const), damages: fc.array(damageArb, { minLength: 1, maxLength: 2 }) }),
      // The config edited.
      fc.record({ kind: fc.constant('config' as const), edits: fc.array(configEditArb, { minLength: 1, maxLength: 2 }) }),
    );
    const tally = new Tally();
    await fuzz(
      'loadCausalLM',
      fc.asyncProperty(edit, async (e) => {
        let bytes = weights;
        let json = config;
        if (e.kind === 'bytes') bytes = e.damages.reduce(damage, weights);
        else if (e.kind === 'config') {
          const c = JSON.parse(config);
          for (const [key, value] of e.edits) {
            if (value === undefined) delete c[key];
            else Object.defineProperty(c, key, { value, enumerable: true, writable: true, configurable: true });
          }
          json = JSON.stringify(c);
        } else {
          const victim = names[e.which % names.length];
          const tensors: Record<string, { dtype: 'F32' | 'F16' | 'BF16'; shape: number[]; data: Float32Array | Uint16Array }> = {};
          for (const [name, entry] of file.tensors) {
            const data = toFloat32(entry).slice();
            if (name !== victim) tensors[name] = { dtype: 'F32', shape: entry.shape, data };
            else if (e.kind === 'rename') tensors[`${name}.x`] = { dtype: 'F32', shape: entry.shape, data };
            else if (e.kind === 'reshape') tensors[name] = { dtype: 'F32', shape: [data.length], data };
            else if (e.kind === 'retype') tensors[name] = { dtype: 'BF16', shape: entry.shape, data: new Uint16Array(data.length) };
          }
          bytes = writeSafetensors(tensors);
        }
        const before = liveBufferCount();
        // A GPU upload on a loaded machine may take a while: 20 s before it counts as a hang.
        const { value: model, error } = await outcome(() => loadCausalLM({ config: json, weights: bytes }), 20_000);
        tally.count(Boolean(model));
        if (model) {
          model.dispose();
        } else {
          // Named by where it was found: safetensors:, weights:, config.json:, 'weights do not match', ...
          expectRefusal(error, ['MODEL_INVALID', 'UNSUPPORTED', 'LIMIT_EXCEEDED'], /^([\w.]+: |weights )/);
        }
        expect(liveBufferCount(), 'GPU buffers left live').toBe(before);
      }),
      {
        runs: 80,
        timeMs: 60_000,
        // Every size at the largest safe integer: num_hidden_layers = 2^53 - 1 made the weights check
        // list names for a minute and run out of memory (found by this property).
        examples: [
          'num_hidden_layers',
          'vocab_size',
          'hidden_size',
          'intermediate_size',
          'num_attention_heads',
          'num_key_value_heads',
          'head_dim',
          'max_position_embeddings',
        ].map((key): [Edit] => [{ kind: 'config', edits: [[key, Number.MAX_SAFE_INTEGER]] }]),
      },
    );
    tally.expectBoth('model loads');
  });
});
