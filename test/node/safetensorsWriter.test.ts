/** The safetensors writer, read back by an independent minimal parser (DataView + JSON.parse). */
import { describe, expect, it } from 'vitest';
import { writeSafetensors, type SafetensorsWriteTensor } from '../../src/models/safetensorsWriter';

interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Parses a safetensors file by hand: header length, header JSON (in file order), data section. */
function parse(bytes: Uint8Array): {
  n: number;
  headerText: string;
  header: Record<string, unknown>;
  order: string[];
  dataStart: number;
  dv: DataView;
} {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const header = JSON.parse(headerText) as Record<string, unknown>;
  // Object key order is not the file order for integer-like keys, so read the order from the text.
  const order: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)":\{"dtype"/g;
  for (let m = re.exec(headerText); m; m = re.exec(headerText)) order.push(JSON.parse(`"${m[1]}"`));
  return { n, headerText, header, order, dataStart: 8 + n, dv };
}

function read(bytes: Uint8Array, name: string): number[] | bigint[] {
  const { header, dataStart, dv } = parse(bytes);
  const e = header[name] as RawEntry;
  const [begin, end] = e.data_offsets;
  const at = dataStart + begin;
  const size = { F64: 8, F32: 4, I64: 8, U64: 8, I32: 4, U32: 4, I16: 2, U16: 2, F16: 2, BF16: 2, I8: 1, U8: 1, BOOL: 1 }[e.dtype]!;
  const count = (end - begin) / size;
  const out: (number | bigint)[] = [];
  for (let i = 0; i < count; i++) {
    const p = at + i * size;
    switch (e.dtype) {
      case 'F64':
        out.push(dv.getFloat64(p, true));
        break;
      case 'F32':
        out.push(dv.getFloat32(p, true));
        break;
      case 'I64':
        out.push(dv.getBigInt64(p, true));
        break;
      case 'U64':
        out.push(dv.getBigUint64(p, true));
        break;
      case 'I32':
        out.push(dv.getInt32(p, true));
        break;
      case 'U32':
        out.push(dv.getUint32(p, true));
        break;
      case 'I16':
        out.push(dv.getInt16(p, true));
        break;
      case 'U16':
      case 'F16':
      case 'BF16':
        out.push(dv.getUint16(p, true));
        break;
      case 'I8':
        out.push(dv.getInt8(p));
        break;
      default:
        out.push(dv.getUint8(p));
    }
  }
  return out as number[] | bigint[];
}

describe('writeSafetensors', () => {
  const weights: Record<string, SafetensorsWriteTensor> = {
    'layer.weight': { dtype: 'F32', shape: [2, 3], data: Float32Array.of(1, -2.5, 3.25, 1e-8, -0, 65504) },
    'layer.bias': { dtype: 'F32', shape: [3], data: Float32Array.of(0.5, NaN, Infinity) },
    step: { dtype: 'I64', shape: [], data: BigInt64Array.of(123456789012345n) },
    rng: { dtype: 'I64', shape: [2], data: BigInt64Array.of(-1n, 9007199254740993n) },
    counts: { dtype: 'I32', shape: [1], data: Int32Array.of(-7) },
    flags: { dtype: 'U8', shape: [3], data: Uint8Array.of(0, 255, 7) },
  };

  it('writes a file that an independent parser reads back exactly', () => {
    const bytes = writeSafetensors(weights);
    const { header } = parse(bytes);
    expect(Object.keys(header).sort()).toEqual(Object.keys(weights).sort());
    for (const [name, t] of Object.entries(weights)) {
      const e = header[name] as RawEntry;
      expect(e.dtype).toBe(t.dtype);
      expect(e.shape).toEqual(t.shape);
      expect(e.data_offsets[1] - e.data_offsets[0]).toBe(t.data.byteLength);
      const back = read(bytes, name);
      if (t.data instanceof BigInt64Array) expect(back).toEqual(Array.from(t.data));
      else expect(back).toEqual(Array.from(t.data as Float32Array));
    }
    expect(Object.is(read(bytes, 'layer.weight')[4], -0)).toBe(true);
  });

  it('pads the header with spaces to 8 bytes and lays tensors out back to back, in header order', () => {
    const bytes = writeSafetensors(weights);
    const { n, headerText, order, dataStart } = parse(bytes);
    expect(n % 8).toBe(0);
    const json = headerText.trimEnd();
    expect(headerText.slice(json.length)).toMatch(/^ {0,7}$/);
    expect(json.endsWith('}')).toBe(true);
    // As the Rust crate does: widest dtype first (I64, then F32, I32, U8), then by name.
    expect(order).toEqual(['rng', 'step', 'layer.bias', 'layer.weight', 'counts', 'flags']);
    let offset = 0;
    const { header } = parse(bytes);
    for (const name of order) {
      const [begin, end] = (header[name] as RawEntry).data_offsets;
      expect(begin).toBe(offset);
      // Each tensor starts aligned to its element size, so a reader can view it in place.
      const size = (weights[name].data as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
      expect((dataStart + begin) % size).toBe(0);
      offset = end;
    }
    expect(bytes.length).toBe(dataStart + offset);
  });

  it('matches the Rust serializer byte for byte on a small file', () => {
    const bytes = writeSafetensors({ test: { dtype: 'I32', shape: [2, 2], data: Int32Array.of(1, 2, 3, 4) } });
    const json = '{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}';
    expect(json.length).toBe(60);
    const expected = new Uint8Array(8 + 64 + 16);
    expected[0] = 64;
    expected.set(new TextEncoder().encode(`${json}    `), 8);
    expected.set(new Uint8Array(Int32Array.of(1, 2, 3, 4).buffer), 72);
    expect(Array.from(bytes)).toEqual(Array.from(expected));
  });

  it('stores string metadata under __metadata__, first and with sorted keys', () => {
    const bytes = writeSafetensors(weights, { step: '1000', format: 'pt', note: 'é "quoted"' });
    const { header, headerText } = parse(bytes);
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'é "quoted"', step: '1000' });
    expect(headerText.startsWith('{"__metadata__":{"format":"pt","note":"é \\"quoted\\"","step":"1000"},')).toBe(true);
    expect(read(bytes, 'counts')).toEqual([-7]);
    expect(parse(writeSafetensors({}, {})).headerText.trimEnd()).toBe('{"__metadata__":{}}');
    expect(parse(writeSafetensors({})).headerText.trimEnd()).toBe('{}');
    expect(() => writeSafetensors(weights, { step: 3 as unknown as string })).toThrow(/metadata "step" must be a string/);
  });

  it('takes a Map, scalars, empty tensors, views into larger buffers, and every dtype', () => {
    const big = new Float32Array([9, 8, 7, 6, 5]);
    const tensors = new Map<string, SafetensorsWriteTensor>([
      ['view', { dtype: 'F32', shape: [2], data: big.subarray(2, 4) }],
      ['empty', { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) }],
      ['f64', { dtype: 'F64', shape: [1], data: Float64Array.of(Math.PI) }],
      ['u64', { dtype: 'U64', shape: [1], data: BigUint64Array.of(2n ** 64n - 1n) }],
      ['u32', { dtype: 'U32', shape: [1], data: Uint32Array.of(4294967295) }],
      ['bf16', { dtype: 'BF16', shape: [1], data: Uint16Array.of(0x3f80) }],
      ['f16', { dtype: 'F16', shape: [1], data: Uint16Array.of(0x3c00) }],
      ['i16', { dtype: 'I16', shape: [1], data: Int16Array.of(-300) }],
      ['u16', { dtype: 'U16', shape: [1], data: Uint16Array.of(65535) }],
      ['i8', { dtype: 'I8', shape: [1], data: Int8Array.of(-5) }],
      ['bool', { dtype: 'BOOL', shape: [2], data: Uint8Array.of(1, 0) }],
    ]);
    const bytes = writeSafetensors(tensors);
    const { header, order } = parse(bytes);
    expect(read(bytes, 'view')).toEqual([7, 6]);
    expect((header.empty as RawEntry).shape).toEqual([0, 3]);
    expect(read(bytes, 'empty')).toEqual([]);
    expect(read(bytes, 'f64')).toEqual([Math.PI]);
    expect(read(bytes, 'u64')).toEqual([2n ** 64n - 1n]);
    expect(read(bytes, 'u32')).toEqual([4294967295]);
    expect(read(bytes, 'bf16')).toEqual([0x3f80]);
    expect(read(bytes, 'f16')).toEqual([0x3c00]);
    expect(read(bytes, 'i16')).toEqual([-300]);
    expect(read(bytes, 'u16')).toEqual([65535]);
    expect(read(bytes, 'i8')).toEqual([-5]);
    expect(read(bytes, 'bool')).toEqual([1, 0]);
    expect(order).toEqual(['u64', 'f64', 'empty', 'view', 'u32', 'bf16', 'f16', 'u16', 'i16', 'i8', 'bool']);
  });

  it('sorts names by code point, as Rust does, and keeps integer-like names in data order', () => {
    const one = (v: number): SafetensorsWriteTensor => ({ dtype: 'F32', shape: [1], data: Float32Array.of(v) });
    // By UTF-16 code unit "😀" (D83D) would sort before "～" (FF5E); by code point (and UTF-8 bytes) it sorts after.
    const bytes = writeSafetensors({ '2': one(2), '10': one(10), '0': one(0), '😀': one(5), '～': one(4), b: one(3) });
    const { order } = parse(bytes);
    expect(order).toEqual(['0', '10', '2', 'b', '～', '😀']);
    expect(order.map((name) => read(bytes, name)[0])).toEqual([0, 10, 2, 3, 4, 5]);
  });

  it('rejects bad input with errors naming the tensor', () => {
    const f = (t: Partial<SafetensorsWriteTensor>) => () =>
      writeSafetensors({ 'model.w': { dtype: 'F32', shape: [2], data: new Float32Array(2), ...t } as SafetensorsWriteTensor });
    expect(f({ shape: [2, 2] })).toThrow(/tensor "model.w" has shape \[2,2\] \(4 elements\) but its data holds 2/);
    expect(f({ data: new Int32Array(2) })).toThrow(/tensor "model.w" has dtype F32, whose data must be a Float32Array, got Int32Array/);
    expect(f({ dtype: 'I64' })).toThrow(/tensor "model.w" has dtype I64, whose data must be a BigInt64Array/);
    expect(f({ dtype: 'F8' as 'F32' })).toThrow(/tensor "model.w" has unknown dtype "F8"/);
    expect(f({ shape: [-2] })).toThrow(/tensor "model.w" has shape \[-2\]; it must be an array of non-negative integers/);
    expect(f({ shape: [1.5] })).toThrow(/tensor "model.w" has shape/);
    expect(f({ dtype: 'BOOL', shape: [1], data: Uint8Array.of(2) })).toThrow(/tensor "model.w" is BOOL, so its bytes must be 0 or 1/);
    expect(() => writeSafetensors({ __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } })).toThrow(
      /"__metadata__" is reserved/,
    );
    expect(() => writeSafetensors({ '': { dtype: 'F32', shape: [1], data: new Float32Array(1) } })).toThrow(/non-empty/);
  });
});
