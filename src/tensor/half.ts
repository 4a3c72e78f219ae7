/**
 * Host conversions between f32 and the two 16-bit float formats that weights are published in:
 * bfloat16 (the top half of an f32) and IEEE half precision. Packed (`bf16` / `f16`) tensors keep
 * these bit patterns on the GPU, two per 32-bit word, and the kernels that read weights unpack them
 * (`bitcast<f32>(u << 16)` for bfloat16, `unpack2x16float` for half).
 */

let f16Table: Uint32Array | null = null;

/** f32 bit patterns of all 65536 halves: one lookup per element beats branching per element. */
export function halfToFloatBitsTable(): Uint32Array {
  if (f16Table) return f16Table;
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f)
      bits = sign | 0x7f800000 | (mant << 13); // inf / NaN (payload kept)
    else if (exp !== 0) bits = sign | ((exp + 112) << 23) | (mant << 13);
    else if (mant === 0) bits = sign;
    else {
      // A subnormal half is a normal float: shift the mantissa up to its leading one.
      let e = 113;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
    t[h] = bits >>> 0;
  }
  f16Table = t;
  return t;
}

/** Rounds f32 bits to the nearest half (ties to even), overflowing to infinity. */
export function floatBitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // NaN stays NaN
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Below 2^-25 everything rounds to zero, even the halfway point (ties to the even 0).
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - e;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (m & 1) !== 0)) m++;
    return sign | m; // a carry into bit 10 is exactly the smallest normal
  }
  let m = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (m & 1) !== 0)) m++;
  // Adding lets a mantissa carry bump the exponent, up to infinity (0x7c00).
  return sign | ((e << 10) + m);
}

/** Rounds f32 bits to the nearest bfloat16 (ties to even); NaN stays a (quiet) NaN. */
export function floatBitsToBfloat16(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const rounded = (x >>> 0) + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** f32 values rounded to 16-bit patterns of `dtype` (nearest, ties to even). */
export function floatsToBits16(values: ArrayLike<number>, dtype: 'bf16' | 'f16'): Uint16Array {
  const f = values instanceof Float32Array ? values : Float32Array.from(values);
  const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  const round = dtype === 'bf16' ? floatBitsToBfloat16 : floatBitsToHalf;
  for (let i = 0; i < f.length; i++) out[i] = round(bits[i]);
  return out;
}

/** 16-bit patterns of `dtype` widened to f32 (exact: every bfloat16 and half value is an f32). */
export function bits16ToFloats(words: Uint16Array, dtype: 'bf16' | 'f16'): Float32Array {
  const out = new Float32Array(words.length);
  const bits = new Uint32Array(out.buffer);
  if (dtype === 'bf16') {
    for (let i = 0; i < words.length; i++) bits[i] = words[i] << 16;
  } else {
    const t = halfToFloatBitsTable();
    for (let i = 0; i < words.length; i++) bits[i] = t[words[i]];
  }
  return out;
}
