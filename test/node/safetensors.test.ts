/** The safetensors reader: parsing and validation, dtype conversion, and the Blob and URL sources. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  floatBitsToHalf,
  parseSafetensors,
  readSafetensors,
  toFloat16Bits,
  toFloat32,
  type SafetensorsEntry,
} from '../../src/models/safetensors';
import { FIXTURES_DIR } from '../helpers/fixtures';

const MODELS = ['tiny-llama', 'tiny-gpt2'] as const;

function fixtureBytes(model: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(readFileSync(resolve(FIXTURES_DIR, model, 'model.safetensors')));
}

/** An independent minimal reader: the header via DataView and JSON.parse, one f32 element via DataView. */
function rawHeader(bytes: Uint8Array): {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  dataStart: number;
} {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'));
  return { header, dataStart: 8 + n };
}

function rawF32(bytes: Uint8Array, name: string, index: number): number {
  const { header, dataStart } = rawHeader(bytes);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return dv.getFloat32(dataStart + header[name].data_offsets[0] + 4 * index, true);
}

/** Assembles a safetensors file from a header object (or raw header text) and a data section. */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), dataStartMod8 = 0): Uint8Array {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  // Writers pad the header with spaces so the data is 8-byte aligned; another `dataStartMod8` makes it unaligned.
  while ((8 + Buffer.byteLength(text)) % 8 !== dataStartMod8) text += ' ';
  const h = Buffer.from(text, 'utf8');
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function u16Bytes(words: number[]): Uint8Array {
  const b = new Uint8Array(words.length * 2);
  const dv = new DataView(b.buffer);
  words.forEach((w, i) => {
    dv.setUint16(2 * i, w, true);
  });
  return b;
}

function f32Bytes(values: number[]): Uint8Array {
  const b = new Uint8Array(values.length * 4);
  const dv = new DataView(b.buffer);
  values.forEach((v, i) => {
    dv.setFloat32(4 * i, v, true);
  });
  return b;
}

function entry(dtype: 'F32' | 'F16' | 'BF16', bytes: Uint8Array): SafetensorsEntry {
  return { dtype, shape: [bytes.length / (dtype === 'F32' ? 4 : 2)], bytes };
}

/** The single tensor `x` of a file holding `data` in `dtype`. */
function oneTensor(dtype: 'F16' | 'BF16' | 'F32', data: Uint8Array, dataStartMod8 = 0): SafetensorsEntry {
  const n = data.length / (dtype === 'F32' ? 4 : 2);
  const file = parseSafetensors(build({ x: { dtype, shape: [n], data_offsets: [0, data.length] } }, data, dataStartMod8));
  return file.tensors.get('x')!;
}

/** Half value by the textbook formula, independent of the bit-twiddling under test. */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * 2 ** -14 * (m / 1024);
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

describe('parseSafetensors on the fixture models', () => {
  for (const model of MODELS) {
    it(`${model}: every tensor parses with its header entry and data`, () => {
      const bytes = fixtureBytes(model);
      const file = parseSafetensors(bytes);
      const { header } = rawHeader(bytes);
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      expect(file.metadata).toEqual({ format: 'pt' });
      expect([...file.tensors.keys()]).toEqual(names);
      for (const name of names) {
        const e = file.tensors.get(name)!;
        expect(e.dtype).toBe(header[name].dtype);
        expect(e.shape).toEqual(header[name].shape);
        const f = toFloat32(e);
        expect(f.length).toBe(header[name].shape.reduce((a, b) => a * b, 1));
        // Spot-check the first, a middle and the last element against the independent reader.
        for (const i of [0, f.length >> 1, f.length - 1]) expect(f[i]).toBe(rawF32(bytes, name, i));
      }
      // Views, not copies: the bytes live in the file's buffer.
      const first = file.tensors.get(names[0])!;
      expect(first.bytes.buffer).toBe(bytes.buffer);
      expect(toFloat32(first).buffer).toBe(bytes.buffer);
    });
  }
});

describe('dtype conversion', () => {
  it('widens F16 exactly: normals, subnormals, zeros, infinities, NaN', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0x0400, 2 ** -14],
      [0x0001, 2 ** -24],
      [0x03ff, 1023 * 2 ** -24],
      [0x8001, -(2 ** -24)],
      [0x0000, 0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    const e = oneTensor('F16', u16Bytes([...cases.map((c) => c[0]), 0x8000, 0x7e00]));
    const f = toFloat32(e);
    cases.forEach(([, v], i) => {
      expect(f[i]).toBe(v);
    });
    expect(Object.is(f[cases.length], -0)).toBe(true);
    expect(f[cases.length + 1]).toBeNaN();
  });

  it('agrees with the textbook formula on all 65536 halves', () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const f = toFloat32(entry('F16', u16Bytes(all)));
    for (const h of all) {
      const want = halfValue(h);
      if (Number.isNaN(want)) expect(f[h]).toBeNaN();
      else if (f[h] !== want) expect.fail(`half 0x${h.toString(16)}: got ${f[h]}, want ${want}`);
    }
  });

  it('widens BF16 exactly', () => {
    const e = oneTensor('BF16', u16Bytes([0x3f80, 0xc000, 0x4049, 0x7f80, 0xff80, 0x0001, 0x7fc0]));
    const f = toFloat32(e);
    expect([...f.subarray(0, 6)]).toEqual([1, -2, 3.140625, Infinity, -Infinity, 2 ** -133]);
    expect(f[6]).toBeNaN();
  });

  it('reads unaligned data (odd header length) by copying', () => {
    const f32 = oneTensor('F32', f32Bytes([1.5, -2.25, 3e-3]), 2);
    expect(f32.bytes.byteOffset % 4).toBe(2);
    expect([...toFloat32(f32)]).toEqual([1.5, -2.25, Math.fround(3e-3)]);
    const f16 = oneTensor('F16', u16Bytes([0x3c00, 0xc000]), 3);
    expect(f16.bytes.byteOffset % 2).toBe(1);
    expect([...toFloat32(f16)]).toEqual([1, -2]);
    expect([...toFloat16Bits(f16)]).toEqual([0x3c00, 0xc000]);
  });

  it('rounds F32 to F16 bits to nearest, ties to even, with overflow and subnormals', () => {
    const values = [
      1,
      -2,
      65504,
      65519,
      65520,
      1e6,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -26,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      2 ** -14 - 2 ** -25,
      0,
      Infinity,
    ];
    const want = [0x3c00, 0xc000, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 0x0001, 0x0000, 0x0001, 0x3c00, 0x3c02, 0x0400, 0x0000, 0x7c00];
    expect([...toFloat16Bits(oneTensor('F32', f32Bytes(values)))]).toEqual(want);
    expect(floatBitsToHalf(0x7fc00000) & 0x7c00).toBe(0x7c00); // NaN stays NaN
    expect(floatBitsToHalf(0x7fc00000) & 0x3ff).not.toBe(0);
    // Every finite half survives f32 and back.
    const halves = Array.from({ length: 65536 }, (_, i) => i).filter((h) => ((h >> 10) & 0x1f) !== 0x1f);
    const back = toFloat16Bits(entry('F32', new Uint8Array(toFloat32(entry('F16', u16Bytes(halves))).buffer)));
    expect([...back]).toEqual(halves);
  });

  it('returns F16 as a view and converts BF16 to F16 bits', () => {
    const f16 = oneTensor('F16', u16Bytes([0x3c00, 0x7bff]));
    const bits = toFloat16Bits(f16);
    expect(bits.buffer).toBe(f16.bytes.buffer);
    expect([...bits]).toEqual([0x3c00, 0x7bff]);
    // 1, -2, bf16 max (beyond half range -> inf), 2^-133 (below half range -> 0)
    expect([...toFloat16Bits(oneTensor('BF16', u16Bytes([0x3f80, 0xc000, 0x7f7f, 0x0001])))]).toEqual([0x3c00, 0xc000, 0x7c00, 0x0000]);
  });
});

describe('parseSafetensors rejects malformed files', () => {
  const good = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('too short for the header length', () => {
    expect(() => parseSafetensors(new Uint8Array(5))).toThrow(/safetensors: file is 5 bytes, too short to hold the 8-byte header length/);
  });

  it('header length beyond the end', () => {
    const bytes = build(good, new Uint8Array(8));
    new DataView(bytes.buffer).setUint32(0, 100000, true);
    expect(() => parseSafetensors(bytes)).toThrow(/header length 100000 runs past the end of the file \(\d+ bytes follow/);
    // A high word set (a length beyond 4 GiB) is caught too.
    const huge = build(good, new Uint8Array(8));
    new DataView(huge.buffer).setUint32(4, 1, true);
    expect(() => parseSafetensors(huge)).toThrow(/header length \d+ runs past the end/);
  });

  it('bad JSON, non-UTF-8 and non-object headers', () => {
    expect(() => parseSafetensors(build('{"a": {'))).toThrow(/safetensors: header is not valid JSON/);
    const bad = build('{"a":1}');
    bad[9] = 0xff;
    expect(() => parseSafetensors(bad)).toThrow(/header \(\d+ bytes\) is not valid UTF-8/);
    expect(() => parseSafetensors(build([1, 2]))).toThrow(/header must be a JSON object, got an array/);
    expect(() => parseSafetensors(build('42'))).toThrow(/header must be a JSON object, got number/);
    expect(() => parseSafetensors(build('null'))).toThrow(/header must be a JSON object, got null/);
  });

  it('unknown dtype, naming the tensor and the supported dtypes', () => {
    const h = { 'model.ids': { dtype: 'I64', shape: [1], data_offsets: [0, 8] } };
    expect(() => parseSafetensors(build(h, new Uint8Array(8)))).toThrow(
      "safetensors: tensor 'model.ids' has dtype I64, which is not supported (supported: F32, F16, BF16)",
    );
  });

  it('bad shapes, offsets and metadata', () => {
    const data = new Uint8Array(16);
    expect(() => parseSafetensors(build({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, data))).toThrow(
      /tensor 'a' has shape \[1.5\]; expected an array of non-negative integers/,
    );
    expect(() => parseSafetensors(build({ a: { dtype: 'F32', shape: [2], data_offsets: [0] } }, data))).toThrow(
      /tensor 'a' has data_offsets \[0\]; expected \[begin, end\]/,
    );
    expect(() => parseSafetensors(build({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, data))).toThrow(
      /tensor 'a' has data_offsets \[8, 4\] with begin after end/,
    );
    expect(() => parseSafetensors(build({ a: { dtype: 'F32', shape: [2] } }, data))).toThrow(/tensor 'a' has data_offsets undefined/);
    expect(() => parseSafetensors(build({ __metadata__: { format: 1 }, ...good }, data))).toThrow(
      /'__metadata__' entry 'format' must be a string/,
    );
  });

  it('offsets out of range (a truncated data section)', () => {
    const h = { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
    expect(() => parseSafetensors(build(h, new Uint8Array(12)))).toThrow(
      "safetensors: tensor 'w' has data_offsets [0, 16] beyond the data section (12 bytes); the file is truncated",
    );
  });

  it('size mismatch between offsets and shape', () => {
    const h = { 'model.norm.weight': { dtype: 'F32', shape: [32], data_offsets: [0, 100] } };
    expect(() => parseSafetensors(build(h, new Uint8Array(128)))).toThrow(
      "safetensors: tensor 'model.norm.weight' has data_offsets [0, 100] but shape [32] in F32 needs 128 bytes",
    );
    const bf = { b: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 24] } };
    expect(() => parseSafetensors(build(bf, new Uint8Array(24)))).toThrow(
      /'b' has data_offsets \[0, 24\] but shape \[2, 3\] in BF16 needs 12 bytes/,
    );
  });

  it('overlapping tensors', () => {
    const h = {
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
      empty: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
    };
    expect(() => parseSafetensors(build(h, new Uint8Array(24)))).toThrow("safetensors: tensors 'a' [0, 16] and 'b' [8, 24] overlap");
    // Adjacent tensors and an empty one inside another's range are fine.
    const ok = { a: h.a, b: { dtype: 'F32', shape: [2], data_offsets: [16, 24] }, empty: h.empty };
    const file = parseSafetensors(build(ok, new Uint8Array(24)));
    expect(file.tensors.get('empty')!.shape).toEqual([0]);
    expect(toFloat32(file.tensors.get('empty')!).length).toBe(0);
  });
});

describe('readSafetensors sources', () => {
  const bytes = fixtureBytes('tiny-llama');
  const name = 'model.layers.1.mlp.down_proj.weight';
  const want = rawF32(bytes, name, 7);

  it('reads an ArrayBuffer and a Uint8Array', async () => {
    const copy = bytes.slice();
    expect(toFloat32((await readSafetensors(copy.buffer)).tensors.get(name)!)[7]).toBe(want);
    expect(toFloat32((await readSafetensors(copy)).tensors.get(name)!)[7]).toBe(want);
  });

  it('reads a Blob, reporting progress up to its size', async () => {
    const blob = new Blob([bytes]);
    const seen: [number, number | null][] = [];
    const file = await readSafetensors(blob, { onProgress: (l, t) => seen.push([l, t]) });
    expect(toFloat32(file.tensors.get(name)!)[7]).toBe(want);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every(([, t]) => t === bytes.length)).toBe(true);
    for (let i = 1; i < seen.length; i++) expect(seen[i][0]).toBeGreaterThanOrEqual(seen[i - 1][0]);
    expect(seen.at(-1)![0]).toBe(bytes.length);
  });

  it('names a File in its parse error, and honours an aborted signal', async () => {
    const file = new File([bytes.subarray(0, 5000)], 'cut.safetensors');
    await expect(readSafetensors(file)).rejects.toThrow(/beyond the data section.*\(in cut\.safetensors\)/);
    const ac = new AbortController();
    ac.abort(new Error('user cancelled'));
    await expect(readSafetensors(new Blob([bytes]), { signal: ac.signal })).rejects.toThrow('user cancelled');
  });

  describe('from a URL', () => {
    let server: Server;
    let base: string;
    beforeAll(async () => {
      server = createServer((req, res) => {
        if (req.url === '/model.safetensors') {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) });
          res.end(Buffer.from(bytes));
        } else if (req.url === '/chunked.safetensors') {
          // No Content-Length: the total is unknown.
          res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
          res.write(Buffer.from(bytes.subarray(0, 40000)));
          setTimeout(() => res.end(Buffer.from(bytes.subarray(40000))), 10);
        } else {
          res.writeHead(404, 'Not Found');
          res.end('no such file');
        }
      });
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

    it('streams the body with progress from Content-Length', async () => {
      const seen: [number, number | null][] = [];
      const file = await readSafetensors(`${base}/model.safetensors`, { onProgress: (l, t) => seen.push([l, t]) });
      expect(toFloat32(file.tensors.get(name)!)[7]).toBe(want);
      expect(file.tensors.size).toBe(21);
      expect(seen.every(([, t]) => t === bytes.length)).toBe(true);
      expect(seen.at(-1)![0]).toBe(bytes.length);
    });

    it('accepts a URL object and a body without Content-Length', async () => {
      const seen: [number, number | null][] = [];
      const file = await readSafetensors(new URL(`${base}/chunked.safetensors`), { onProgress: (l, t) => seen.push([l, t]) });
      expect(toFloat32(file.tensors.get(name)!)[7]).toBe(want);
      expect(seen.every(([, t]) => t === null)).toBe(true);
      expect(seen.at(-1)![0]).toBe(bytes.length);
    });

    it('rejects a 404 naming the URL and the status', async () => {
      const url = `${base}/missing.safetensors`;
      await expect(readSafetensors(url)).rejects.toThrow(`safetensors: fetching ${url} failed: HTTP 404 Not Found`);
    });
  });
});
