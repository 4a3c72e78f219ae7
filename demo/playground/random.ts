/**
 * Seeded pseudo-random inputs for the playground: the same seed gives the same inputs on every
 * run and machine, so a mismatch seen once can be replayed (and pasted into a bug report).
 */

/** 32-bit FNV-1a hash of a string: turns a seed text such as `"42/x"` into a generator state. */
export function hashSeed(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A small seeded generator (mulberry32): good enough for test data, and no `Math.random`. */
export class Rng {
  private state: number;

  /** `seed`: a number or a text (hashed). */
  constructor(seed: number | string) {
    this.state = (typeof seed === 'string' ? hashSeed(seed) : seed) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** `n` values uniform in [lo, hi). */
  uniforms(n: number, lo: number, hi: number): number[] {
    return Array.from({ length: n }, () => lo + (hi - lo) * this.next());
  }

  /** `n` values with magnitude uniform in [lo, hi) and a random sign: keeps clear of 0 (kinks, poles). */
  signed(n: number, lo: number, hi: number): number[] {
    return Array.from({ length: n }, () => (this.next() < 0.5 ? -1 : 1) * (lo + (hi - lo) * this.next()));
  }

  /** `n` normal values times `std` (Box-Muller). */
  normals(n: number, std = 1): number[] {
    return Array.from({ length: n }, () => {
      const u = 1 - this.next(); // (0, 1]: log(0) would be -Infinity
      return std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
    });
  }

  /** `n` integers in [lo, hi). */
  ints(n: number, lo: number, hi: number): number[] {
    return Array.from({ length: n }, () => lo + Math.floor(this.next() * (hi - lo)));
  }

  /** `n` distinct integers in [0, count) (all of them when `n >= count`), in increasing order. */
  sample(n: number, count: number): number[] {
    const all = Array.from({ length: count }, (_, i) => i);
    for (let i = count - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [all[i], all[j]] = [all[j], all[i]];
    }
    return all.slice(0, Math.min(n, count)).sort((a, b) => a - b);
  }
}
