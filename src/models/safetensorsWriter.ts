/**
 * A safetensors writer, for checkpoints: the file that `safetensors.torch.load_file` and the
 * reader in `./safetensors` read back. Layout (https://github.com/huggingface/safetensors):
 * an 8-byte little-endian header length, a JSON header padded with spaces to a multiple of 8 bytes,
 * then the tensors' bytes, little-endian, back to back in header order.
 */
import { SgtError } from '../gpu/errors';

/** Element types the writer accepts, with the safetensors names. */
export type SafetensorsWriteDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'U64' | 'I32' | 'U32' | 'I16' | 'U16' | 'I8' | 'U8' | 'BOOL';

/** Typed array accepted for each dtype. F16 and BF16 take their raw 16-bit patterns; BOOL takes 0/1 bytes. */
export type SafetensorsWriteData =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

/** One tensor to write. `data` holds `product(shape)` elements, row-major. */
export interface SafetensorsWriteTensor {
  /** The safetensors dtype. */
  dtype: SafetensorsWriteDType;
  /** Dimensions, outermost first; `[]` for a scalar. */
  shape: readonly number[];
  /** The elements, in the typed array matching `dtype`. */
  data: SafetensorsWriteData;
}

/**
 * Per dtype: the typed array it takes and its rank in the Rust crate's `Dtype` enum. The crate
 * lays tensors out by descending rank (wider types first) so that, with the data section starting
 * 8-byte aligned, every tensor starts aligned to its element size and a reader can view it in place.
 */
const DTYPES: Record<SafetensorsWriteDType, { array: new (n: number) => SafetensorsWriteData; rank: number }> = {
  BOOL: { array: Uint8Array, rank: 0 },
  U8: { array: Uint8Array, rank: 1 },
  I8: { array: Int8Array, rank: 2 },
  I16: { array: Int16Array, rank: 6 },
  U16: { array: Uint16Array, rank: 7 },
  F16: { array: Uint16Array, rank: 8 },
  BF16: { array: Uint16Array, rank: 9 },
  I32: { array: Int32Array, rank: 10 },
  U32: { array: Uint32Array, rank: 11 },
  F32: { array: Float32Array, rank: 12 },
  F64: { array: Float64Array, rank: 13 },
  I64: { array: BigInt64Array, rank: 14 },
  U64: { array: BigUint64Array, rank: 15 },
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses the bytes of each `width`-byte element in place. */
function swapBytes(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

/** Orders strings by code point, which is the UTF-8 byte order that Rust's `str` comparison uses. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return (ca.done ? 0 : 1) - (cb.done ? 0 : 1);
    const d = ca.value.codePointAt(0)! - cb.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/**
 * Serializes tensors (and optional string metadata, stored under `__metadata__`) into a
 * safetensors file. The output matches the Rust crate's (and so `safetensors.torch.save_file`'s)
 * layout: tensors sorted by dtype width, widest first, then by name; the header lists them in
 * that same order with contiguous `data_offsets`; the header is padded with spaces to 8 bytes.
 *
 * @param tensors by name; a `Map` or a plain object.
 * @param metadata free-form string pairs (e.g. `{ format: 'pt' }`, a step count, a config).
 * @throws naming the tensor when its dtype is unknown, its shape is not a list of non-negative
 *   integers, its data is not the dtype's typed array, or the data length differs from the shape's size.
 */
export function writeSafetensors(
  tensors: Readonly<Record<string, SafetensorsWriteTensor>> | ReadonlyMap<string, SafetensorsWriteTensor>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const where = 'writeSafetensors';
  const entries: [string, SafetensorsWriteTensor][] =
    tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, SafetensorsWriteTensor>);
  for (const [name, t] of entries) {
    if (typeof name !== 'string' || name.length === 0)
      throw new SgtError('INVALID_ARGUMENT', `${where}: tensor names must be non-empty strings`);
    if (name === '__metadata__')
      throw new SgtError('INVALID_ARGUMENT', `${where}: "__metadata__" is reserved for the metadata and cannot name a tensor`);
    if (t === null || typeof t !== 'object')
      throw new SgtError('INVALID_ARGUMENT', `${where}: tensor "${name}" must be an object { dtype, shape, data }`);
    const spec = Object.hasOwn(DTYPES, t.dtype) ? DTYPES[t.dtype] : undefined;
    if (spec === undefined)
      throw new SgtError(
        'INVALID_ARGUMENT',
        `${where}: tensor "${name}" has unknown dtype ${JSON.stringify(t.dtype)} (expected one of ${Object.keys(DTYPES).join(', ')})`,
      );
    if (!Array.isArray(t.shape) || t.shape.some((s) => typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0)) {
      throw new SgtError(
        'INVALID_ARGUMENT',
        `${where}: tensor "${name}" has shape ${JSON.stringify(t.shape)}; it must be an array of non-negative integers`,
      );
    }
    if (!(t.data instanceof spec.array)) {
      const got = (t.data as object | null)?.constructor?.name ?? String(t.data);
      throw new SgtError(
        'INVALID_ARGUMENT',
        `${where}: tensor "${name}" has dtype ${t.dtype}, whose data must be a ${spec.array.name}, got ${got}`,
      );
    }
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== size) {
      throw new SgtError(
        'INVALID_ARGUMENT',
        `${where}: tensor "${name}" has shape [${t.shape.join(',')}] (${size} elements) but its data holds ${t.data.length}`,
      );
    }
    if (t.dtype === 'BOOL' && (t.data as Uint8Array).some((v) => v > 1))
      throw new SgtError('INVALID_ARGUMENT', `${where}: tensor "${name}" is BOOL, so its bytes must be 0 or 1`);
  }
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata))
      throw new SgtError('INVALID_ARGUMENT', `${where}: metadata must be an object of strings`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        throw new SgtError(
          'INVALID_ARGUMENT',
          `${where}: metadata "${k}" must be a string (safetensors metadata is string to string), got ${typeof v}`,
        );
    }
  }

  entries.sort(([na, a], [nb, b]) => DTYPES[b.dtype].rank - DTYPES[a.dtype].rank || compareCodePoints(na, nb));

  // Built by hand rather than from one object: JSON object key order follows insertion except for
  // integer-like keys, which engines move first; a tensor named "0" would otherwise leave the data order.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const sorted = Object.keys(metadata).sort(compareCodePoints);
    parts.push(`"__metadata__":{${sorted.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  let offset = 0;
  for (const [name, t] of entries) {
    const bytes = t.data.byteLength;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`,
    );
    offset += bytes;
  }
  let header = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padding = (8 - (header.length % 8)) % 8;
  if (padding > 0) {
    const padded = new Uint8Array(header.length + padding).fill(0x20);
    padded.set(header);
    header = padded;
  }

  const out = new Uint8Array(8 + header.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let pos = 8 + header.length;
  for (const [, t] of entries) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(bytes, pos);
    // The format is little-endian; typed arrays use the platform's order.
    if (!LITTLE_ENDIAN) swapBytes(out.subarray(pos, pos + bytes.length), t.data.BYTES_PER_ELEMENT);
    pos += bytes.length;
  }
  return out;
}
