/**
 * Float64 twin of the packed 16-bit weights (`bf16` / `f16` tensors): the value of each 16-bit
 * pattern, decoded arithmetically from its sign, exponent and mantissa (not by bit tricks, unlike
 * the GPU's `bitcast<f32>(u << 16)` and `unpack2x16float` and the host's table), so that a packed
 * operand of a twin (matmul's `b`, gather's table, a norm's weight) is its decoded values.
 */

/** The value of one 16-bit pattern: bfloat16 (8 exponent bits, 7 mantissa bits) or IEEE half (5, 10). */
export function bits16Value(bits: number, dtype: 'bf16' | 'f16'): number {
  const [expBits, mantBits] = dtype === 'bf16' ? [8, 7] : [5, 10];
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> mantBits) & ((1 << expBits) - 1);
  const mant = bits & ((1 << mantBits) - 1);
  const bias = (1 << (expBits - 1)) - 1;
  if (exp === (1 << expBits) - 1) return mant === 0 ? sign * Infinity : NaN;
  if (exp === 0) return sign * mant * 2 ** (1 - bias - mantBits);
  return sign * (1 + mant / 2 ** mantBits) * 2 ** (exp - bias);
}

/** The values of many 16-bit patterns (see {@link bits16Value}). */
export function unpackBits16(bits: ArrayLike<number>, dtype: 'bf16' | 'f16'): Float64Array {
  return Float64Array.from({ length: bits.length }, (_, i) => bits16Value(bits[i], dtype));
}
