/**
 * Weights in their file dtype and weights split into row blocks (issue 9, points 1 and 2):
 * packed `bf16` / `f16` tensors; matmul, gather and the norms reading them against the float64
 * twin; gather and the LM-head product over row blocks; the fixture models (and generated ones
 * with a larger vocabulary) giving the same logits and input gradients with weights kept 16-bit
 * and with the binding limit forced small (several blocks); GPU weight bytes equal to the file's;
 * the named errors; live-buffer counts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { hasContext } from '../../src/gpu/context';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import { add, getContext, liveBufferCount, mul, readAll, scope, sum, tensor } from '../../src/index';
import { gather, gatherRowBlocks, layerNorm, matmul, matmulRowBlocks, rmsNorm } from '../../src/ops/index';
import { bits16ToFloats, floatsToBits16 } from '../../src/tensor/half';
import { loadCausalLM, type CausalLM } from '../../src/models/causalLM';
import { parseModelConfig } from '../../src/models/config';
import { parseSafetensors, toFloat32, type SafetensorsFile } from '../../src/models/safetensors';
import { writeSafetensors, type SafetensorsWriteTensor } from '../../src/models/safetensorsWriter';
import { SAFETENSORS_INDEX_NAME, mergeSafetensorsShards, parseSafetensorsIndex } from '../../src/models/shards';
import { expectedWeights, resolveWeightPrefix, rowBlockRows } from '../../src/models/weights';
import {
  bits16Value,
  gather as refGather,
  matmul as refMatmul,
  matmulBackward as refMatmulBackward,
  ndarray,
  unpackBits16,
} from '../../src/reference/index';
import { layerNorm as refLayerNorm, layerNormBackward as refLayerNormBackward, rmsNorm as refRmsNorm } from '../../src/reference/norm';

type Packed = 'bf16' | 'f16';
const PACKED: Packed[] = ['bf16', 'f16'];

afterEach(() => {
  if (hasContext()) getContext().setBindingLimit(null);
});

/** Seeded normals rounded to `dtype`: the 16-bit patterns and their exact values. */
function packedRandom(rng: Rng, n: number, dtype: Packed, scale = 1): { bits: Uint16Array; values: Float64Array } {
  const bits = floatsToBits16(
    Float32Array.from({ length: n }, () => rng.normal() * scale),
    dtype,
  );
  return { bits, values: unpackBits16(bits, dtype) };
}

function randomF32(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

describe('packed bf16 / f16 tensors', () => {
  it('the host conversions agree with the float64 twin on every 16-bit pattern', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    for (const dtype of PACKED) {
      const host = bits16ToFloats(all, dtype);
      const twin = unpackBits16(all, dtype);
      const back = floatsToBits16(host, dtype);
      const wrong: string[] = [];
      for (let i = 0; i < 65536; i++) {
        const same = Number.isNaN(twin[i]) ? Number.isNaN(host[i]) && Number.isNaN(bits16Value(back[i], dtype)) : host[i] === twin[i];
        // Rounding a pattern's own value gives the pattern back (NaNs stay NaN).
        if (!same || (!Number.isNaN(twin[i]) && back[i] !== i))
          wrong.push(`0x${i.toString(16)}: ${host[i]} vs ${twin[i]}, back 0x${back[i].toString(16)}`);
      }
      expect(wrong.slice(0, 5), dtype).toEqual([]);
    }
    // Ties go to even; overflow goes to infinity.
    expect(bits16Value(floatsToBits16([1 + 2 ** -8], 'bf16')[0], 'bf16')).toBe(1);
    expect(bits16Value(floatsToBits16([1 + 3 * 2 ** -8], 'bf16')[0], 'bf16')).toBe(1 + 2 ** -6);
    expect(bits16Value(floatsToBits16([3.4e38], 'bf16')[0], 'bf16')).toBe(Infinity);
    expect(bits16Value(floatsToBits16([1e5], 'f16')[0], 'f16')).toBe(Infinity);
  });

  it('store two elements per word (odd counts padded), read back widened, and refuse gradients', async () => {
    await gpu();
    const before = liveBufferCount();
    await scope(async () => {
      for (const dtype of PACKED) {
        const t = tensor([1.5, -2, 0.333, 7], [2, 2], { dtype });
        expect(t.dtype).toBe(dtype);
        expect(t.byteLength).toBe(8);
        const odd = tensor(new Float32Array([1, 2, 3]), [3], { dtype });
        expect(odd.byteLength).toBe(8);
        const fromBits = tensor(floatsToBits16([0.1, -0.2, 0.3], dtype), [3], { dtype });
        const [a, b, c] = await readAll([t, odd, fromBits]);
        expect(a).toBeInstanceOf(Float32Array);
        expect(Array.from(a)).toEqual(Array.from(unpackBits16(floatsToBits16([1.5, -2, 0.333, 7], dtype), dtype)));
        expect(Array.from(b)).toEqual([1, 2, 3]);
        expect(Array.from(c)).toEqual(Array.from(unpackBits16(floatsToBits16([0.1, -0.2, 0.3], dtype), dtype)));
        expect(() => {
          t.requiresGrad = true;
        }).toThrow(new RegExp(`has dtype ${dtype}, a packed read-only weight, and cannot require gradients`));
        expect(() => tensor([1, 2], [2], { dtype, requiresGrad: true })).toThrow(/requiresGrad needs dtype f32/);
        // Ops that do not read weights name the packed dtype.
        expect(() => add(t, t)).toThrow(
          new RegExp(`add: argument 'a' has dtype ${dtype}; expected f32 \\(${dtype} is a packed read-only weight type`),
        );
        expect(() => matmul(t, tensor([1, 2, 3, 4], [2, 2]))).toThrow(new RegExp(`matmul: argument 'a' has dtype ${dtype}; expected f32`));
        expect(() => matmul(tensor([1, 2, 3, 4], [2, 2]), t, { transposeA: true })).toThrow(/needs transposeA false/);
      }
      expect(() => tensor(new Uint16Array(2), [2])).toThrow(/Uint16Array data holds 16-bit patterns: give dtype 'bf16' or 'f16'/);
      expect(() => tensor(new Uint16Array(2), [2], { dtype: 'f32' })).toThrow(/Uint16Array data needs dtype 'bf16' or 'f16'/);
    });
    expect(liveBufferCount()).toBe(before);
  });
});

describe('weight-reading kernels with packed operands vs the float64 twin', () => {
  const cases = [
    { name: 'x [5,37] @ Wᵀ, W [19,37] (torch Linear), with bias', a: [5, 37], b: [19, 37], tB: true, bias: true },
    { name: 'x [3,4,21] @ W, W [21,13] (GPT-2 Conv1D), batch sharing W', a: [3, 4, 21], b: [21, 13], tB: false, bias: true },
    { name: 'x [70,33] @ Wᵀ, W [67,33], several tiles', a: [70, 33], b: [67, 33], tB: true, bias: false },
    // K a multiple of 4: x is read as vec4s beside the unpacked weight; one row (a skinny product).
    { name: 'x [1,32] @ Wᵀ, W [36,32], one row, aligned K', a: [1, 32], b: [36, 32], tB: true, bias: true },
    { name: 'x [9,16] @ W, W [16,20], aligned K and N', a: [9, 16], b: [16, 20], tB: false, bias: false },
  ];
  for (const dtype of PACKED) {
    for (const c of cases) {
      it(`matmul with a ${dtype} weight: ${c.name}`, async () => {
        await gpu();
        const rng = new Rng(`matmul ${dtype} ${c.name}`);
        const N = c.tB ? c.b[0] : c.b[1];
        const aData = randomF32(
          rng,
          c.a.reduce((p, q) => p * q, 1),
        );
        const w = packedRandom(rng, c.b[0] * c.b[1], dtype, 0.5);
        const bias = c.bias ? packedRandom(rng, N, dtype) : null;
        const before = liveBufferCount();
        const [y, ga, seedData] = await scope(async () => {
          const a = tensor(aData, c.a, { requiresGrad: true });
          const W = tensor(w.bits, c.b, { dtype });
          const out = matmul(a, W, { transposeB: c.tB, bias: bias ? tensor(bias.bits, [N], { dtype }) : undefined });
          const seed = randomF32(rng, out.size);
          sum(mul(out, tensor(seed, out.shape))).backward();
          const [yv, gv] = await readAll([out, a.grad!]);
          return [yv, gv, seed];
        });
        expect(liveBufferCount()).toBe(before);
        const refA = ndarray(aData, c.a);
        const refW = ndarray(w.values, c.b);
        const ref = refMatmul(refA, refW, { transposeB: c.tB });
        if (bias) for (let i = 0; i < ref.data.length; i++) ref.data[i] += bias.values[i % N];
        expectClose(y, ref.data, 1e-5, 1e-5, 'product');
        const [refGa] = refMatmulBackward(ndarray(seedData, ref.shape), refA, refW, { transposeB: c.tB });
        expectClose(ga, refGa.data, 1e-5, 1e-5, 'gradient of a');
      });
    }

    it(`gather from a ${dtype} table of odd width; ids out of range fail the next readback`, async () => {
      await gpu();
      const rng = new Rng(`gather ${dtype}`);
      const table = packedRandom(rng, 13 * 7, dtype);
      const ids = [0, 12, 5, 5, 1, 11, 3];
      const got = await scope(async () => gather(tensor(table.bits, [13, 7], { dtype }), tensor(Int32Array.from(ids), [7])).toArray());
      expect(Array.from(got)).toEqual(Array.from(refGather(ndarray(table.values, [13, 7]), ndarray(ids, [7])).data));
      const outside = [0, 12, 5, 5, -1, 13, 3];
      await expect(
        scope(async () => gather(tensor(table.bits, [13, 7], { dtype }), tensor(Int32Array.from(outside), [7])).toArray()),
      ).rejects.toThrow(/gather: 2 id\(s\) of an ids tensor lay outside the table \(the first at flat index 4 of its ids\)/);
    });

    it(`rmsNorm and layerNorm with a ${dtype} weight and bias`, async () => {
      await gpu();
      const rng = new Rng(`norm ${dtype}`);
      const d = 37;
      const xData = randomF32(rng, 3 * d);
      const w = packedRandom(rng, d, dtype);
      const b = packedRandom(rng, d, dtype);
      const seed = randomF32(rng, 3 * d);
      const [rms, ln, dx] = await scope(async () => {
        const x = tensor(xData, [3, d], { requiresGrad: true });
        const W = tensor(w.bits, [d], { dtype });
        const B = tensor(b.bits, [d], { dtype });
        const y = layerNorm(x, W, B, 1e-5);
        sum(mul(y, tensor(seed, [3, d]))).backward();
        return readAll([rmsNorm(x, W, 1e-6), y, x.grad!]);
      });
      const refX = ndarray(xData, [3, d]);
      expectClose(rms, refRmsNorm(refX, ndarray(w.values), 1e-6).data, 1e-5, 1e-5, 'rmsNorm');
      expectClose(ln, refLayerNorm(refX, ndarray(w.values), ndarray(b.values), 1e-5).data, 1e-5, 1e-5, 'layerNorm');
      const [refDx] = refLayerNormBackward(ndarray(seed, [3, d]), refX, ndarray(w.values), ndarray(b.values), 1e-5);
      expectClose(dx, refDx.data, 1e-4, 1e-5, 'layerNorm dx');
    });
  }
});

describe('row blocks: gather and the LM-head product', () => {
  /** `rows` split into blocks of these sizes. */
  const splits: [string, number[]][] = [
    ['blocks of 16-multiples', [32, 48, 16, 7]],
    ['uneven blocks', [5, 30, 1, 67]],
  ];
  for (const [label, sizes] of splits) {
    it(`match one tensor exactly, forward and backward (f32 blocks with gradients): ${label}`, async () => {
      await gpu();
      const rng = new Rng(`row blocks ${label}`);
      const V = sizes.reduce((a, b) => a + b, 0);
      const K = 24;
      const W = randomF32(rng, V * K, 0.3);
      const xData = randomF32(rng, 2 * 5 * K);
      const ids = Int32Array.from({ length: 9 }, () => Math.floor(rng.uniform(-2, V + 2)));
      const seedY = randomF32(rng, 2 * 5 * V);
      const seedE = randomF32(rng, 9 * K);
      const before = liveBufferCount();
      const run = (blocked: boolean) =>
        scope(async () => {
          const x = tensor(xData, [2, 5, K], { requiresGrad: true });
          let start = 0;
          const blocks = blocked
            ? sizes.map((r) => {
                const t = tensor(W.subarray(start * K, (start + r) * K), [r, K], { requiresGrad: true });
                start += r;
                return t;
              })
            : [tensor(W, [V, K], { requiresGrad: true })];
          const y = matmulRowBlocks(x, blocks);
          const e = gatherRowBlocks(blocks, tensor(ids, [9]));
          add(sum(mul(y, tensor(seedY, [2, 5, V]))), sum(mul(e, tensor(seedE, [9, K])))).backward();
          const gW = blocks.map((b) => b.grad!);
          const arrays = await readAll([y, e, x.grad!, ...gW]);
          return { y: arrays[0], e: arrays[1], dx: arrays[2], dW: arrays.slice(3).flatMap((a) => Array.from(a)) };
        });
      const one = await run(false);
      const split = await run(true);
      expect(liveBufferCount()).toBe(before);
      expect(Array.from(split.y)).toEqual(Array.from(one.y));
      expect(Array.from(split.e)).toEqual(Array.from(one.e));
      // Columns of the weight gradient are independent sums over the same rows: exact.
      expect(split.dW).toEqual(one.dW);
      // dx sums over the vocabulary block after block: in the same order when the blocks are multiples of 16.
      if (sizes.slice(0, -1).every((r) => r % 16 === 0)) expect(Array.from(split.dx)).toEqual(Array.from(one.dx));
      else expectClose(split.dx, one.dx, 1e-5, 1e-6, 'dx');
    });
  }

  it('take packed blocks, and check their shapes', async () => {
    await gpu();
    const rng = new Rng('packed row blocks');
    const w = packedRandom(rng, 40 * 8, 'bf16');
    const xData = randomF32(rng, 3 * 8);
    const [y, e] = await scope(async () => {
      const blocks = [
        tensor(w.bits.subarray(0, 16 * 8), [16, 8], { dtype: 'bf16' }),
        tensor(w.bits.subarray(16 * 8), [24, 8], { dtype: 'bf16' }),
      ];
      return readAll([matmulRowBlocks(tensor(xData, [3, 8]), blocks), gatherRowBlocks(blocks, tensor(Int32Array.of(39, 0, 16, 15), [4]))]);
    });
    const refW = ndarray(w.values, [40, 8]);
    expectClose(y, refMatmul(ndarray(xData, [3, 8]), refW, { transposeB: true }).data, 1e-5, 1e-5, 'product');
    expect(Array.from(e)).toEqual(Array.from(refGather(refW, ndarray([39, 0, 16, 15], [4])).data));
    await scope(async () => {
      const x = tensor(xData, [3, 8]);
      expect(() => matmulRowBlocks(x, [tensor(new Float32Array(16), [2, 8]), tensor(new Float32Array(14), [2, 7])])).toThrow(
        /matmulRowBlocks: block 1 has shape \[2,7\]; expected \[rows, 8\]/,
      );
      expect(() =>
        gatherRowBlocks([tensor(new Float32Array(16), [2, 8]), tensor(new Float32Array(14), [2, 7])], tensor(Int32Array.of(0), [1])),
      ).toThrow(/block 1 has shape \[2,7\]; every block needs the width 8/);
      expect(() => matmulRowBlocks(x, [])).toThrow(/non-empty list/);
    });
  });

  it('rowBlockRows: the most rows under the limit, in multiples of 16', () => {
    expect(rowBlockRows(96, 32, 'f32', 1 << 20)).toBe(96);
    expect(rowBlockRows(96, 32, 'f32', 8192)).toBe(64);
    expect(rowBlockRows(151, 32, 'bf16', 4096)).toBe(64);
    expect(rowBlockRows(1000, 33, 'bf16', 1024)).toBe(15); // 15 rows of 33 halves fit; fewer than 16: as is
    expect(rowBlockRows(10, 1000, 'f32', 1024)).toBe(0);
  });
});

describe('the binding limit', () => {
  it('can be lowered to a pool size class only, and every dispatch checks its bindings against it', async () => {
    const ctx = await gpu();
    const device = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
    expect(ctx.bindingLimit).toBe(device);
    expect(() => ctx.setBindingLimit(1000)).toThrow(/not a size class of the buffer pool/);
    ctx.setBindingLimit(1024);
    expect(ctx.bindingLimit).toBe(1024);
    const before = liveBufferCount();
    scope(() => {
      const big = tensor(new Float32Array(512), [512]);
      expect(() => add(big, big)).toThrow(/'a' needs a binding of 2048 bytes, more than the storage binding limit \(1024 bytes\)/);
    });
    expect(liveBufferCount()).toBe(before);
    ctx.setBindingLimit(null);
    expect(ctx.bindingLimit).toBe(device);
  });
});

// ---------------------------------------------------------------------------------------------
// Models

/** A fixture's config and its weights as one parsed file (shards merged). */
function fixture(name: string): { config: Record<string, unknown>; file: SafetensorsFile } {
  const dir = resolve(FIXTURES_DIR, name);
  const config = JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  if (!existsSync(resolve(dir, SAFETENSORS_INDEX_NAME)))
    return { config, file: parseSafetensors(new Uint8Array(readFileSync(resolve(dir, 'model.safetensors')))) };
  const index = parseSafetensorsIndex(readFileSync(resolve(dir, SAFETENSORS_INDEX_NAME), 'utf8'));
  const shards = index.shards.map((s) => ({ name: s, file: parseSafetensors(new Uint8Array(readFileSync(resolve(dir, s)))) }));
  return { config, file: mergeSafetensorsShards(shards) };
}

/** The same weights written as `dtype` (rounded to nearest, ties to even). */
function convert(file: SafetensorsFile, dtype: 'BF16' | 'F16'): SafetensorsFile {
  const out: Record<string, SafetensorsWriteTensor> = {};
  for (const [name, e] of file.tensors)
    out[name] = { dtype, shape: e.shape, data: floatsToBits16(toFloat32(e), dtype === 'BF16' ? 'bf16' : 'f16') };
  return parseSafetensors(writeSafetensors(out));
}

/** A generated model with a larger vocabulary (seeded), in BF16. */
function generated(family: 'llama' | 'gpt2', V: number): { config: Record<string, unknown>; file: SafetensorsFile } {
  const config: Record<string, unknown> =
    family === 'llama'
      ? {
          model_type: 'llama',
          vocab_size: V,
          hidden_size: 32,
          intermediate_size: 64,
          num_hidden_layers: 2,
          num_attention_heads: 4,
          num_key_value_heads: 2,
          max_position_embeddings: 32,
          tie_word_embeddings: false,
        }
      : { model_type: 'gpt2', vocab_size: V, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 512, n_inner: 64 };
  const rng = new Rng(`generated ${family} ${V}`);
  const tensors: Record<string, SafetensorsWriteTensor> = {};
  for (const [name, shape] of expectedWeights(parseModelConfig(config))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm|ln_/.test(name) && name.endsWith('weight');
    const values = Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * rng.normal() : 0.2 * rng.normal()));
    tensors[name] = { dtype: 'BF16', shape, data: floatsToBits16(values, 'bf16') };
  }
  return { config, file: parseSafetensors(writeSafetensors(tensors)) };
}

/** Bytes of the tensors the model uses, as stored in the file. */
function fileWeightBytes(config: Record<string, unknown>, file: SafetensorsFile): number {
  const parsed = parseModelConfig(config);
  const prefix = resolveWeightPrefix(parsed, file);
  let total = 0;
  for (const name of expectedWeights(parsed).keys()) {
    const key = parsed.family === 'gpt2' && name === 'lm_head.weight' ? name : prefix + name;
    total += file.tensors.get(key)!.bytes.byteLength;
  }
  return total;
}

/** Logits, captured blocks and the input-embedding gradient of sum(logits * seed) for seeded ids. */
async function pass(
  model: CausalLM,
  B: number,
  T: number,
): Promise<{ embeds: number[]; logits: number[]; blocks: number[]; grad: number[] }> {
  const rng = new Rng(`pass ${model.config.modelType} ${B}x${T}`);
  const V = model.config.vocabSize;
  const ids = Array.from({ length: B * T }, () => Math.floor(rng.uniform(0, V)));
  const mask = Array.from({ length: B * T }, (_, i) => (i === B * T - 1 ? 0 : 1));
  const seed = randomF32(rng, B * T * V);
  const start = liveBufferCount();
  const r = await scope(async () => {
    const x = model.embed({ data: ids, shape: [B, T] });
    const embeds = Array.from(await x.toArray());
    x.requiresGrad = true;
    const out = model.forward({ inputsEmbeds: x, attentionMask: mask, captureBlocks: 'all' });
    sum(mul(out.logits!, tensor(seed, [B, T, V]))).backward();
    const [logits, grad, ...blocks] = await readAll([out.logits!, x.grad!, ...out.blocks]);
    return { embeds, logits: Array.from(logits), grad: Array.from(grad), blocks: blocks.flatMap((b) => Array.from(b)) };
  });
  expect(liveBufferCount(), 'live buffers after a forward and backward').toBe(start);
  return r;
}

const DTYPE_CASES: {
  label: string;
  model: () => { config: Record<string, unknown>; file: SafetensorsFile };
  dtype: 'f32' | 'bf16' | 'f16';
}[] = [
  { label: 'tiny-llama (F32)', model: () => fixture('tiny-llama'), dtype: 'f32' },
  { label: 'tiny-llama3 (BF16, two shards)', model: () => fixture('tiny-llama3'), dtype: 'bf16' },
  { label: 'tiny-qwen2 (BF16, q/k/v biases)', model: () => fixture('tiny-qwen2'), dtype: 'bf16' },
  {
    label: 'tiny-llama written as BF16',
    model: () => ({ ...fixture('tiny-llama'), file: convert(fixture('tiny-llama').file, 'BF16') }),
    dtype: 'bf16',
  },
  {
    label: 'tiny-gpt2 written as BF16 (LayerNorm and Conv1D biases)',
    model: () => ({ ...fixture('tiny-gpt2'), file: convert(fixture('tiny-gpt2').file, 'BF16') }),
    dtype: 'bf16',
  },
  {
    label: 'tiny-gpt2 written as F16',
    model: () => ({ ...fixture('tiny-gpt2'), file: convert(fixture('tiny-gpt2').file, 'F16') }),
    dtype: 'f16',
  },
];

describe.each(DTYPE_CASES)('$label: weights kept in the file dtype', ({ model: make, dtype }) => {
  it('give the logits and input gradient of the widened model, with the file bytes on the GPU', async () => {
    const ctx = await gpu();
    const { config, file } = make();
    const bytes = fileWeightBytes(config, file);
    const before = liveBufferCount();
    const liveBytes = ctx.pool.liveBytes;
    const packed = await loadCausalLM({ config, weights: file });
    expect(packed.weightBytes).toBe(bytes);
    expect(ctx.pool.liveBytes - liveBytes).toBe(bytes);
    expect(new Set(packed.parameters().map((t) => t.dtype))).toEqual(new Set([dtype]));
    const widened = await loadCausalLM({ config, weights: file, weightDtype: 'f32' });
    expect(new Set(widened.parameters().map((t) => t.dtype))).toEqual(new Set(['f32']));
    expect(widened.weightBytes).toBe(dtype === 'f32' ? bytes : 2 * bytes);
    // bfloat16 and half values are exact in f32 and accumulation is f32 either way: the same bits.
    const a = await pass(packed, 2, 7);
    const b = await pass(widened, 2, 7);
    expect(a.embeds).toEqual(b.embeds);
    expect(a.blocks).toEqual(b.blocks);
    expect(a.logits).toEqual(b.logits);
    expect(a.grad).toEqual(b.grad);
    packed.dispose();
    widened.dispose();
    expect(liveBufferCount()).toBe(before);
    expect(ctx.pool.liveBytes).toBe(liveBytes);
  });
});

describe('a BF16 model', () => {
  it('loads widened to f32 when trainable, and refuses to train packed weights', async () => {
    await gpu();
    const { config, file } = fixture('tiny-qwen2');
    const trainable = await loadCausalLM({ config, weights: file, trainable: true });
    expect(trainable.parameters().every((t) => t.dtype === 'f32' && t.requiresGrad)).toBe(true);
    trainable.dispose();
    const before = liveBufferCount();
    await expect(loadCausalLM({ config, weights: file, trainable: true, weightDtype: 'file' })).rejects.toThrow(
      /'model.embed_tokens.weight' is BF16 and weightDtype is 'file'; weights that require gradients must be f32/,
    );
    expect(liveBufferCount()).toBe(before);
    const frozen = await loadCausalLM({ config, weights: file });
    expect(() => frozen.setTrainable(true)).toThrow(
      /setTrainable: weight '.*' is bf16, a packed read-only weight; load the model with weightDtype 'f32'/,
    );
    expect(frozen.parameters().some((t) => t.requiresGrad)).toBe(false);
    frozen.dispose();
  });
});

/** Models loaded under a lowered binding limit, with the batch that keeps their logits under it. */
const SPLIT_CASES: {
  label: string;
  model: () => { config: Record<string, unknown>; file: SafetensorsFile };
  limit: number;
  B: number;
  T: number;
  blocks: number;
}[] = [
  { label: 'tiny-llama (F32, untied head)', model: () => fixture('tiny-llama'), limit: 8192, B: 2, T: 7, blocks: 2 },
  { label: 'tiny-llama3 (BF16, tied)', model: () => fixture('tiny-llama3'), limit: 9216, B: 1, T: 8, blocks: 2 },
  { label: 'tiny-qwen2 (BF16, tied, biases)', model: () => fixture('tiny-qwen2'), limit: 4096, B: 1, T: 6, blocks: 3 },
  { label: 'a generated llama (BF16, V 1000, untied)', model: () => generated('llama', 1000), limit: 8192, B: 1, T: 2, blocks: 8 },
  {
    label: 'a generated gpt2 (BF16, V 1000, tied, 512 positions split too)',
    model: () => generated('gpt2', 1000),
    limit: 8192,
    B: 1,
    T: 2,
    blocks: 8,
  },
];

describe.each(SPLIT_CASES)('$label under a forced binding limit', ({ model: make, limit, B, T, blocks }) => {
  it('stores the embedding and head as row blocks under the limit and gives the same results', async () => {
    const ctx = await gpu();
    const { config, file } = make();
    const whole = await loadCausalLM({ config, weights: file });
    expect(whole.embeddingBlocks().length).toBe(1);
    const expected = await pass(whole, B, T);
    const statsWhole = await readAll([whole.embeddingStatistics().columnStd, whole.embeddingStatistics().medianNorm]);
    const tableWhole = await whole.embeddingTable.toArray();
    whole.dispose();

    ctx.setBindingLimit(limit);
    const before = liveBufferCount();
    const split = await loadCausalLM({ config, weights: file });
    expect(split.embeddingBlocks().length).toBe(blocks);
    expect(split.headBlocks().length).toBeGreaterThanOrEqual(2);
    for (const t of split.parameters()) expect(t.byteLength).toBeLessThanOrEqual(limit);
    expect(split.weightBytes).toBe(fileWeightBytes(config, file));
    const got = await pass(split, B, T);
    expect(got.embeds).toEqual(expected.embeds);
    expect(got.blocks).toEqual(expected.blocks);
    expect(got.logits).toEqual(expected.logits);
    // The head's blocks are multiples of 16 rows: the backward sums in the order of one product.
    expect(got.grad).toEqual(expected.grad);
    // Statistics widen the table piece by piece; the whole f32 table exceeds the limit and is refused.
    const stats = await readAll([split.embeddingStatistics().columnStd, split.embeddingStatistics().medianNorm]);
    expectClose(stats[0], statsWhole[0], 1e-5, 1e-6, 'column std');
    expect(stats[1][0]).toBeCloseTo(statsWhole[1][0], 6);
    expect(() => split.embeddingTable).toThrow(
      /CausalLM.embeddingTable: an f32 copy of the .* token embedding .* needs \d+ bytes, more than the storage binding limit/,
    );
    split.dispose();
    expect(liveBufferCount()).toBe(before);
    ctx.setBindingLimit(null);
    // Without the limit, the widened copy of a packed or split table is the table.
    const again = await loadCausalLM({ config, weights: file });
    expect(Array.from(await again.embeddingTable.toArray())).toEqual(Array.from(tableWhole));
    again.dispose();
  });
});

describe('named errors under a forced binding limit', () => {
  it('a weight that cannot be split names itself and the limit, before any GPU work', async () => {
    const ctx = await gpu();
    const { config, file } = fixture('tiny-llama');
    ctx.setBindingLimit(4096);
    const before = liveBufferCount();
    const pending = ctx.pending;
    await expect(loadCausalLM({ config, weights: file })).rejects.toThrow(
      /weights: 'model.layers.0.mlp.gate_proj.weight' \[64, 32\] needs 8192 bytes as f32, more than the storage binding limit \(4096 bytes\); only the token embedding and the LM head are stored as row blocks/,
    );
    expect(liveBufferCount()).toBe(before);
    expect(ctx.pending).toBe(pending);
  });

  it('logits over the limit are refused before the forward runs', async () => {
    const ctx = await gpu();
    const { config, file } = fixture('tiny-qwen2');
    ctx.setBindingLimit(4096);
    const model = await loadCausalLM({ config, weights: file });
    const before = liveBufferCount();
    expect(() => model.forward({ ids: { data: new Array(2 * 8).fill(1), shape: [2, 8] } })).toThrow(
      /forward: the logits \[2, 8, 151\] needs 9664 bytes, more than the storage binding limit \(4096 bytes\); use fewer or shorter sequences/,
    );
    expect(liveBufferCount()).toBe(before);
    // Stopping before the head needs no logits.
    await scope(async () => {
      const out = model.forward({ ids: { data: new Array(2 * 8).fill(1), shape: [2, 8] }, stopAfterBlock: 1, captureBlocks: [1] });
      expect(out.blocks[0].shape).toEqual([2, 8, 32]);
    });
    model.dispose();
  });
});
