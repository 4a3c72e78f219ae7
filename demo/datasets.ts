/** Small synthetic 2-D classification sets, generated with a seeded PRNG (same data every run). */
import { seededRandom } from '../src/text/data';

/** A labelled point set: `x` is [count, 2] row-major, `y` the class of each point. */
export interface Dataset {
  x: Float32Array;
  y: Int32Array;
  count: number;
  classes: number;
}

/** A standard normal sample (Box-Muller). */
export function randn(rand: () => number): number {
  const u = 1 - rand();
  const v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * Two interleaved spirals, `perClass` points each: arm `c` at angle `t + c*pi`, radius growing
 * with `t` over `turns` turns, plus Gaussian noise. Coordinates are roughly in [-1, 1].
 */
export function spirals(perClass: number, seed: number, turns = 1.5, noise = 0.03): Dataset {
  const rand = seededRandom(seed);
  const count = 2 * perClass;
  const x = new Float32Array(count * 2);
  const y = new Int32Array(count);
  for (let c = 0; c < 2; c++) {
    for (let i = 0; i < perClass; i++) {
      const k = c * perClass + i;
      const r = 0.1 + 0.9 * (i / perClass); // keep off the centre, where the arms meet
      const t = 2 * Math.PI * turns * (i / perClass) + c * Math.PI;
      x[2 * k] = r * Math.cos(t) + noise * randn(rand);
      x[2 * k + 1] = r * Math.sin(t) + noise * randn(rand);
      y[k] = c;
    }
  }
  return { x, y, count, classes: 2 };
}

/** Two interleaving half circles ("moons"), `perClass` points each, centred and scaled to about [-1, 1]. */
export function moons(perClass: number, seed: number, noise = 0.1): Dataset {
  const rand = seededRandom(seed);
  const count = 2 * perClass;
  const x = new Float32Array(count * 2);
  const y = new Int32Array(count);
  for (let i = 0; i < perClass; i++) {
    const a = Math.PI * rand();
    const b = Math.PI * rand();
    const pts: [number, number, number][] = [
      [Math.cos(a), Math.sin(a), 0],
      [1 - Math.cos(b), 0.5 - Math.sin(b), 1],
    ];
    pts.forEach(([px, py, c], j) => {
      const k = 2 * i + j;
      x[2 * k] = (px - 0.5 + noise * randn(rand)) / 1.5;
      x[2 * k + 1] = (py - 0.25 + noise * randn(rand)) / 1.5;
      y[k] = c;
    });
  }
  return { x, y, count, classes: 2 };
}

/** The named data set. */
export function makeDataset(name: 'spirals' | 'moons', perClass: number, seed: number): Dataset {
  return name === 'spirals' ? spirals(perClass, seed) : moons(perClass, seed);
}
