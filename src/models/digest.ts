/**
 * Checksums on the host: FNV-1a (32-bit) over 32-bit little-endian words, and the digest of a
 * model's weights that a checkpoint records so that it resumes only on the same base weights.
 *
 * FNV-1a over words, not bytes: four times fewer steps, and still certain to catch any single
 * changed word (each step `h -> (h ^ w) * p` is a bijection of `h` for a fixed word, so a changed
 * word changes the state, and the later steps cannot bring it back). It guards against corruption
 * and mix-ups, not against a deliberate edit.
 */
import type { SafetensorsFile } from './safetensors';

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** A running FNV-1a (32-bit) checksum: feed it bytes and strings, read {@link hex}. */
export class Fnv1a32 {
  private h = FNV_OFFSET;

  /** Adds `bytes`: whole 32-bit little-endian words, then the remaining bytes one word each. */
  bytes(bytes: Uint8Array): this {
    const words = bytes.byteLength >>> 2;
    let h = this.h;
    if (bytes.byteOffset % 4 === 0) {
      const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
      for (let i = 0; i < words; i++) h = Math.imul(h ^ u32[i], FNV_PRIME);
    } else {
      for (let i = 0; i < words; i++) {
        const at = 4 * i;
        const w = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
        h = Math.imul(h ^ w, FNV_PRIME);
      }
    }
    for (let i = 4 * words; i < bytes.byteLength; i++) h = Math.imul(h ^ bytes[i], FNV_PRIME);
    // The length last: a trailing zero word is not the same as no word.
    this.h = Math.imul(h ^ bytes.byteLength, FNV_PRIME);
    return this;
  }

  /** Adds the UTF-8 bytes of `text`. */
  text(text: string): this {
    return this.bytes(new TextEncoder().encode(text));
  }

  /** The checksum so far, as 8 hex digits. */
  hex(): string {
    return (this.h >>> 0).toString(16).padStart(8, '0');
  }
}

/** Bytes read from each tensor by {@link weightsDigest}: this many windows of {@link WINDOW} bytes. */
const WINDOWS = 16;
const WINDOW = 1024;

/**
 * The digest of a model's weights (`fnv1a32:` and 8 hex digits): every tensor's name, dtype and
 * shape, and a sample of its bytes (the whole tensor up to 16 KiB, else sixteen evenly spaced
 * 1 KiB windows), in name order, so that it does not depend on sharding or header order. Two
 * trainings of one architecture differ in almost every weight, so they get different digests;
 * the sample keeps the cost at 16 KiB per tensor, whatever the model's size.
 */
export function weightsDigest(file: SafetensorsFile): string {
  const hash = new Fnv1a32();
  for (const name of [...file.tensors.keys()].sort()) {
    const { dtype, shape, bytes } = file.tensors.get(name)!;
    hash.text(`${name}\0${dtype}\0${shape.join(',')}`);
    if (bytes.byteLength <= WINDOWS * WINDOW) {
      hash.bytes(bytes);
      continue;
    }
    // The first window starts at byte 0 and the last one ends at the tensor's last byte.
    for (let i = 0; i < WINDOWS; i++) {
      const start = Math.floor((i * (bytes.byteLength - WINDOW)) / (WINDOWS - 1));
      hash.bytes(bytes.subarray(start, start + WINDOW));
    }
  }
  return `fnv1a32:${hash.hex()}`;
}
