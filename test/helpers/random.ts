/**
 * Seeded pseudo-random numbers for tests: the same seed gives the same inputs on every run and
 * machine, so a failure can be replayed, and no test depends on `Math.random`.
 */
import { seededRandom } from '../../src/text/data';

/** 32-bit FNV-1a hash of a string: derives a per-test seed from the test's name. */
export function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A small seeded generator over the library's mulberry32 ({@link seededRandom}: 32-bit state, good
 * enough for test data). The tests and the kernel playground (`demo/playground`) both draw from it.
 */
export class Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number;

  /** `seed`: any number or a string (hashed). */
  constructor(seed: number | string) {
    this.next = seededRandom((typeof seed === 'string' ? seedOf(seed) : seed) >>> 0);
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next(); // (0, 1]: log(0) would be -Infinity
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }

  /** `n` values uniform in [lo, hi). */
  uniforms(n: number, lo = -1, hi = 1): number[] {
    return Array.from({ length: n }, () => this.uniform(lo, hi));
  }

  /** `n` values with magnitude uniform in [lo, hi) and a random sign: keeps clear of 0 (kinks, poles). */
  signed(n: number, lo: number, hi: number): number[] {
    return Array.from({ length: n }, () => (this.next() < 0.5 ? -1 : 1) * this.uniform(lo, hi));
  }

  /** `n` normal values times `std`. */
  normals(n: number, std = 1): number[] {
    return Array.from({ length: n }, () => std * this.normal());
  }

  /** `n` integers in [lo, hi). */
  ints(n: number, lo: number, hi: number): number[] {
    return Array.from({ length: n }, () => this.int(lo, hi));
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

/** Rounds to float32 and back: the values a GPU f32 tensor made from `values` really holds. */
export function f32(values: ArrayLike<number>): Float32Array {
  return Float32Array.from(values);
}

/** Deterministic pseudo-random numbers in [-1, 1) from a 32-bit LCG (a quick source of test data). */
export function noise(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}
