/**
 * A case's inputs on the host: drawn from a seed, or parsed from pasted JSON (and written back
 * out as JSON, so that random inputs can be copied, edited and run again).
 */
import { SIZES, type KernelCase, type Size } from './cases';
import { fmtShape } from './compare';
import { Rng } from '../../test/helpers/random';

/** One input, as uploaded: f32 values are already rounded to f32, so the twin sees what the GPU sees. */
export interface HostInput {
  name: string;
  shape: number[];
  dtype: 'f32' | 'i32';
  values: Float32Array | Int32Array;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((p, s) => p * s, 1);
}

function typed(dtype: 'f32' | 'i32', values: ArrayLike<number>): Float32Array | Int32Array {
  return dtype === 'i32' ? Int32Array.from(values) : Float32Array.from(values);
}

/**
 * The inputs of `c` at `size`, drawn from `seed`. Each input has its own stream
 * (`seed/name`), so one input's values do not depend on the others' sizes; cases whose inputs
 * depend on each other draw them together from `seed/inputs`.
 */
export function randomInputs(c: KernelCase, size: Size, seed: string): HostInput[] {
  const dims = SIZES[size].dims;
  const shapes = c.inputs.map((spec) => spec.shape(dims));
  const drawn = c.generate
    ? c.generate(new Rng(`${seed}/inputs`), shapes)
    : c.inputs.map((spec, k) => spec.gen(new Rng(`${seed}/${spec.name}`), sizeOf(shapes[k]), shapes));
  return c.inputs.map((spec, k) => {
    const dtype = spec.dtype ?? 'f32';
    return { name: spec.name, shape: shapes[k], dtype, values: typed(dtype, drawn[k]) };
  });
}

/** Shape and row-major values of a rectangular nested array; throws naming `name` when ragged. */
function flatten(name: string, value: unknown): { shape: number[]; data: number[] } {
  const shape: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const data: number[] = [];
  const walk = (v: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new Error(`input '${name}': element ${path || '(the value)'} is ${JSON.stringify(v)}, not a finite number`);
      data.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) {
      throw new Error(
        `input '${name}': ${path || 'the value'} should be an array of ${shape[depth]} (the array is not rectangular, shape ${fmtShape(shape)})`,
      );
    }
    v.forEach((item, i) => {
      walk(item, depth + 1, `${path}[${i}]`);
    });
  };
  walk(value, 0, '');
  return { shape, data };
}

/**
 * Parses pasted JSON for `c`: an object with one entry per input name, each a nested array (its
 * nesting gives the shape; a bare number is a 0-d tensor) or `{ "shape": [...], "data": [...] }`
 * with row-major data. Shapes are free: the library and the twin check them.
 */
export function parseJsonInputs(c: KernelCase, text: string): HostInput[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`the pasted inputs are not valid JSON: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`the pasted inputs must be a JSON object with the keys ${c.inputs.map((s) => `"${s.name}"`).join(', ')}`);
  }
  const record = parsed as Record<string, unknown>;
  const unknownKeys = Object.keys(record).filter((k) => !c.inputs.some((s) => s.name === k));
  if (unknownKeys.length)
    throw new Error(
      `unknown input ${unknownKeys.map((k) => `"${k}"`).join(', ')}; ${c.label} takes ${c.inputs.map((s) => `"${s.name}"`).join(', ')}`,
    );
  return c.inputs.map((spec) => {
    const v = record[spec.name];
    if (v === undefined) throw new Error(`input '${spec.name}' is missing from the pasted JSON`);
    let shape: number[];
    let data: number[];
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as { shape?: unknown; data?: unknown };
      if (!Array.isArray(o.shape) || !o.shape.every((s) => Number.isInteger(s) && s >= 0)) {
        throw new Error(`input '${spec.name}': "shape" must be an array of non-negative integers`);
      }
      shape = o.shape as number[];
      data = flatten(spec.name, o.data).data;
      if (data.length !== sizeOf(shape))
        throw new Error(`input '${spec.name}': ${data.length} values do not fill shape ${fmtShape(shape)}`);
    } else {
      ({ shape, data } = flatten(spec.name, v));
    }
    const dtype = spec.dtype ?? 'f32';
    if (dtype === 'i32' && data.some((x) => !Number.isInteger(x)))
      throw new Error(`input '${spec.name}' holds integers (i32); found a fraction`);
    const notBinary = spec.mask ? data.findIndex((x) => x !== 0 && x !== 1) : -1;
    if (notBinary >= 0) throw new Error(`input '${spec.name}' is a 0/1 mask; found ${data[notBinary]} at index ${notBinary}`);
    return { name: spec.name, shape, dtype, values: typed(dtype, data) };
  });
}

/** `v` printed compactly: an f32 value to 7 significant digits (enough to round back to itself). */
function num(v: number, dtype: 'f32' | 'i32'): string {
  return dtype === 'i32' ? String(v) : String(Number(v.toPrecision(7)));
}

function nest(values: ArrayLike<number>, shape: readonly number[], dtype: 'f32' | 'i32', at: number, indent: string): string {
  if (shape.length === 0) return num(values[at], dtype);
  const stride = sizeOf(shape.slice(1));
  const items = Array.from({ length: shape[0] }, (_, i) => nest(values, shape.slice(1), dtype, at + i * stride, `${indent}  `));
  // Innermost rows on one line; outer levels one item per line.
  if (shape.length === 1) return `[${items.join(', ')}]`;
  return `[\n${indent}  ${items.join(`,\n${indent}  `)}\n${indent}]`;
}

/** The inputs as JSON that {@link parseJsonInputs} reads back: nested arrays, one row per line. */
export function inputsToJson(inputs: HostInput[]): string {
  const body = inputs.map((i) => `  "${i.name}": ${nest(i.values, i.shape, i.dtype, 0, '  ')}`).join(',\n');
  return `{\n${body}\n}`;
}
