/**
 * Float64 twin of `shaders/random.wgsl`: the same Philox4x32-10 words (exact integer arithmetic)
 * and the same Box-Muller transform, evaluated in float64.
 */
const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const MASK32 = 0xffffffffn;

function mulHiLo(a: number, b: bigint): [number, number] {
  const p = BigInt(a >>> 0) * b;
  return [Number((p >> 32n) & MASK32), Number(p & MASK32)];
}

/** Philox4x32-10 of a 4-word counter under a 2-word key. */
export function philox4x32(counter: [number, number, number, number], key: [number, number]): [number, number, number, number] {
  let [c0, c1, c2, c3] = counter.map((c) => c >>> 0);
  let [k0, k1] = key.map((k) => k >>> 0);
  for (let round = 0; round < 10; round++) {
    const [hi0, lo0] = mulHiLo(c0, M0);
    const [hi1, lo1] = mulHiLo(c2, M1);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return [c0, c1, c2, c3];
}

/** A uniform in (0, 1) from the top 23 bits, exactly as the kernel's (exact in f32 too). */
function unitOpen(bits: number): number {
  return ((bits >>> 9) + 0.5) / 8388608;
}

/** The `n` normals that `randn([n], { seed, offset })` draws on the GPU. */
export function randnReference(n: number, seed: number, offset = 0): Float64Array {
  const out = new Float64Array(n);
  const key: [number, number] = [seed % 2 ** 32, Math.floor(seed / 2 ** 32)];
  for (let b = 0; b * 4 < n; b++) {
    const r = philox4x32([b + offset, 0, 0, 0], key);
    const z = [];
    for (const [u, v] of [
      [r[0], r[1]],
      [r[2], r[3]],
    ]) {
      const radius = Math.sqrt(-2 * Math.log(unitOpen(u)));
      const angle = 2 * Math.PI * unitOpen(v);
      z.push(radius * Math.cos(angle), radius * Math.sin(angle));
    }
    for (let j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = z[j];
  }
  return out;
}
