/**
 * Reader for the safetensors format (Hugging Face): an 8-byte little-endian header length, a
 * UTF-8 JSON header mapping tensor names to `{ dtype, shape, data_offsets }`, then the raw
 * little-endian data. The header is validated completely before anything uses the data, so that a
 * corrupt or unsupported file fails here with a message naming the problem rather than later as
 * garbage weights. Tensor bytes are views into the loaded file: nothing is copied until a tensor
 * is converted.
 */

import { floatBitsToHalf, halfToFloatBitsTable } from '../tensor/half';
import { isNode, openLocalFile } from './localFiles';
import { SgtError, isSgtError } from '../gpu/errors';

export { floatBitsToHalf };

/** Tensor element types this reader accepts (the float types causal LMs are published in). */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

/** Supported dtypes and their widths in bytes. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = Object.freeze({ F32: 4, F16: 2, BF16: 2 });

const SUPPORTED = Object.keys(SAFETENSORS_DTYPE_BYTES) as SafetensorsDType[];

/** One tensor of a safetensors file. */
export interface SafetensorsEntry {
  /** Element type as stored. */
  dtype: SafetensorsDType;
  /** Dimensions, outermost first (row-major). */
  shape: number[];
  /** The stored little-endian bytes: a view into the file's buffer, not a copy. */
  bytes: Uint8Array;
}

/** A parsed safetensors file. */
export interface SafetensorsFile {
  /** The header's `__metadata__` (string to string), empty when absent. */
  metadata: Record<string, string>;
  /** Tensors by name, in header order. */
  tensors: Map<string, SafetensorsEntry>;
  /** The shard files it was merged from, when it stands for a sharded checkpoint (see `readWeights`). */
  shards?: string[];
}

/** Options of {@link readSafetensors}. */
export interface ReadSafetensorsOptions {
  /** Called as bytes arrive; `totalBytes` is null when the size is unknown (no usable Content-Length). */
  onProgress?: (loadedBytes: number, totalBytes: number | null) => void;
  /** Aborts the download or read; the promise then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Where {@link readSafetensors} can read a file from: bytes, a Blob/File, or a URL (string or `URL`). */
export type SafetensorsSource = ArrayBuffer | Uint8Array | Blob | URL | string;

function fail(message: string): never {
  throw new SgtError('MODEL_INVALID', `safetensors: ${message}`);
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses and validates a whole safetensors file held in memory. Throws, naming the tensor and the
 * problem, when the header length does not fit, the header is not a UTF-8 JSON object, a dtype is
 * not F32/F16/BF16, a shape is not a list of non-negative integers, `data_offsets` fall outside
 * the data section or disagree with the shape, or two tensors overlap.
 */
export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (bytes.byteLength < 8) {
    fail(`file is ${bytes.byteLength} bytes, too short to hold the 8-byte header length`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // A u64 read as two halves: BigInt is not needed for any length that can fit in memory.
  const headerLen = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  const available = bytes.byteLength - 8;
  if (headerLen > available) {
    fail(
      `header length ${headerLen} runs past the end of the file (${available} bytes follow the length field); the file is truncated or not safetensors`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    fail(`header (${headerLen} bytes) is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    fail(`header must be a JSON object, got ${header === null ? 'null' : Array.isArray(header) ? 'an array' : typeof header}`);
  }

  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsEntry>();
  const ranges: { name: string; begin: number; end: number }[] = [];

  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`'__metadata__' must be an object of strings`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`'__metadata__' entry '${k}' must be a string, got ${typeof v}`);
        // Defined, not assigned: assigning a key '__proto__' (valid JSON) would set the prototype.
        Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      fail(`tensor '${name}' must be an object with dtype, shape and data_offsets`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(SUPPORTED as string[]).includes(dtype)) {
      fail(
        `tensor '${name}' has dtype ${typeof dtype === 'string' ? dtype : JSON.stringify(dtype)}, which is not supported (supported: ${SUPPORTED.join(', ')})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      fail(`tensor '${name}' has shape ${JSON.stringify(shape)}; expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      fail(`tensor '${name}' has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) fail(`tensor '${name}' has data_offsets [${begin}, ${end}] with begin after end`);
    if (end > dataLen) {
      fail(`tensor '${name}' has data_offsets [${begin}, ${end}] beyond the data section (${dataLen} bytes); the file is truncated`);
    }
    const dt = dtype as SafetensorsDType;
    const need = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dt];
    if (end - begin !== need) {
      fail(`tensor '${name}' has data_offsets [${begin}, ${end}] but shape ${fmt(shape as number[])} in ${dt} needs ${need} bytes`);
    }
    ranges.push({ name, begin, end });
    tensors.set(name, { dtype: dt, shape: [...(shape as number[])], bytes: bytes.subarray(dataStart + begin, dataStart + end) });
  }

  // Empty tensors occupy no bytes, so they cannot overlap anything.
  const filled = ranges.filter((r) => r.end > r.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < filled.length; i++) {
    const a = filled[i - 1];
    const b = filled[i];
    if (b.begin < a.end) fail(`tensors '${a.name}' [${a.begin}, ${a.end}] and '${b.name}' [${b.begin}, ${b.end}] overlap`);
  }
  return { metadata, tensors };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}

/**
 * Reads a byte stream into one buffer, preallocated when the size is known (so a multi-GB file is
 * not held twice) and grown otherwise. `label` prefixes the error of a stream that ends early.
 */
export async function readStream(
  stream: ReadableStream<Uint8Array>,
  total: number | null,
  options: ReadSafetensorsOptions,
  label = 'safetensors',
): Promise<Uint8Array> {
  const { onProgress, signal } = options;
  let buf = new Uint8Array(total ?? 1 << 20);
  let loaded = 0;
  const reader = stream.getReader();
  const onAbort = (): void => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener('abort', onAbort);
  try {
    onProgress?.(0, total);
    for (;;) {
      throwIfAborted(signal);
      const { done, value } = await reader.read();
      throwIfAborted(signal);
      if (done) break;
      if (loaded + value.byteLength > buf.byteLength) {
        // More than announced (e.g. a wrong Content-Length): keep going rather than truncate.
        const grown = new Uint8Array(Math.max(buf.byteLength * 2, loaded + value.byteLength));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(value, loaded);
      loaded += value.byteLength;
      onProgress?.(loaded, total);
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
  if (total !== null && loaded < total)
    throw new SgtError('IO_ERROR', `${label}: read ended after ${loaded} of ${total} bytes; the file is truncated`);
  return loaded === buf.byteLength ? buf : buf.subarray(0, loaded);
}

function withSource(e: unknown, source: string): Error {
  const err = e as Error;
  if (err instanceof Error && err.message.startsWith('safetensors:')) {
    return new SgtError(isSgtError(err) ? err.code : 'MODEL_INVALID', `${err.message} (in ${source})`, { cause: err });
  }
  return err;
}

/**
 * The bytes a response's body will yield, from Content-Length; null when unknown or when a content
 * encoding makes Content-Length count the compressed bytes instead.
 */
export function responseLength(response: Response): number | null {
  const encoding = response.headers.get('content-encoding');
  const lengthHeader = response.headers.get('content-length');
  const length = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
  return encoding && encoding !== 'identity' ? null : length;
}

/** Fetches a URL and reads it (non-OK statuses and network errors named with the URL). */
async function fetchSafetensors(url: string, options: ReadSafetensorsOptions): Promise<SafetensorsFile> {
  const { signal } = options;
  let response: Response;
  try {
    response = await fetch(url, { signal });
  } catch (e) {
    throwIfAborted(signal);
    throw new SgtError('IO_ERROR', `safetensors: cannot fetch ${url}: ${(e as Error).message}`, { cause: e });
  }
  if (!response.ok) {
    void response.body?.cancel().catch(() => {});
    fail(`fetching ${url} failed: HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
  }
  if (!response.body) fail(`response from ${url} has no body`);
  try {
    return parseSafetensors(await readStream(response.body, responseLength(response), options));
  } catch (e) {
    throw withSource(e, url);
  }
}

/** Reads a `file:` URL from disk with `node:fs` (Node only: `fetch` cannot read `file:` URLs). */
async function readSafetensorsFileUrl(url: string, options: ReadSafetensorsOptions): Promise<SafetensorsFile> {
  if (!isNode()) fail(`cannot read ${url}: file: URLs can only be read in Node; in a browser pass a File or the bytes`);
  const opened = await openLocalFile(new URL(url));
  if (!opened) fail(`no such file: ${url}`);
  try {
    return parseSafetensors(await readStream(opened.stream(), opened.size, options));
  } catch (e) {
    throw withSource(e, url);
  }
}

/**
 * Loads and parses a safetensors file from memory, a Blob/File (streamed, with progress) or a URL
 * (fetched and streamed, with progress from Content-Length). A non-OK HTTP response rejects with
 * the URL and status. In Node, a `file:` URL is read from disk (`node:fs`, loaded only then).
 */
export async function readSafetensors(source: SafetensorsSource, options: ReadSafetensorsOptions = {}): Promise<SafetensorsFile> {
  const { signal, onProgress } = options;
  throwIfAborted(signal);
  if (source instanceof Uint8Array) {
    onProgress?.(source.byteLength, source.byteLength);
    return parseSafetensors(source);
  }
  if (source instanceof ArrayBuffer) {
    onProgress?.(source.byteLength, source.byteLength);
    return parseSafetensors(new Uint8Array(source));
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const name = 'name' in source && typeof source.name === 'string' && source.name ? source.name : 'Blob';
    const bytes = await readStream(source.stream() as ReadableStream<Uint8Array>, source.size, options);
    try {
      return parseSafetensors(bytes);
    } catch (e) {
      throw withSource(e, name);
    }
  }
  if (typeof source === 'string' || source instanceof URL) {
    const url = String(source);
    return /^file:/i.test(url) ? readSafetensorsFileUrl(url, options) : fetchSafetensors(url, options);
  }
  throw new SgtError('INVALID_ARGUMENT', 'safetensors: source must be an ArrayBuffer, a Uint8Array, a Blob or a URL');
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The entry's elements as 16-bit words, read little-endian (a view when aligned on an LE host: do
 * not write to it); for F16 and BF16 entries, their bit patterns.
 */
export function words16(entry: SafetensorsEntry): Uint16Array {
  const b = entry.bytes;
  const n = b.byteLength >> 1;
  if (littleEndian && b.byteOffset % 2 === 0) return new Uint16Array(b.buffer, b.byteOffset, n);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = b[2 * i] | (b[2 * i + 1] << 8);
  return out;
}

/**
 * The entry's values as a Float32Array. F16 and BF16 are widened exactly (every half and bfloat16
 * value, subnormals, infinities and NaN included, is representable in f32). F32 is returned as a
 * view of the file's bytes when they are 4-byte aligned and copied only otherwise, so the result
 * may share memory with the file: do not write to it.
 */
export function toFloat32(entry: SafetensorsEntry): Float32Array {
  const b = entry.bytes;
  if (entry.dtype === 'F32') {
    const n = b.byteLength >> 2;
    if (littleEndian && b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, n);
    if (littleEndian) return new Float32Array(b.slice().buffer, 0, n);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }
  const w = words16(entry);
  const out = new Float32Array(w.length);
  const bits = new Uint32Array(out.buffer);
  if (entry.dtype === 'BF16') {
    // bfloat16 is the top half of an f32.
    for (let i = 0; i < w.length; i++) bits[i] = w[i] << 16;
  } else {
    const t = halfToFloatBitsTable();
    for (let i = 0; i < w.length; i++) bits[i] = t[w[i]];
  }
  return out;
}

/**
 * The entry's values as IEEE half-precision bit patterns, for f16 GPU paths. F16 is returned as a
 * view when 2-byte aligned (do not write to it); F32 and BF16 are rounded to nearest, ties to even,
 * with values beyond the half range (|x| >= 65520) becoming infinity and tiny ones subnormal or 0
 * (BF16's wider exponent range does not fit in F16).
 */
export function toFloat16Bits(entry: SafetensorsEntry): Uint16Array {
  if (entry.dtype === 'F16') return words16(entry);
  if (entry.dtype === 'BF16') {
    const w = words16(entry);
    const out = new Uint16Array(w.length);
    for (let i = 0; i < w.length; i++) out[i] = floatBitsToHalf(w[i] << 16);
    return out;
  }
  const f = toFloat32(entry);
  const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = floatBitsToHalf(bits[i]);
  return out;
}
