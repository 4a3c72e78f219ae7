/** The Stained Glass Transform: TransformerCloak and NoiseMaskedNoisyTransformerModel. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { expectClose } from '../helpers/compare';
import { Rng } from '../helpers/random';
import { getContext, liveBufferCount, mul, randn, readAll, scope, sum, tensor, type Tensor } from '../../src/index';
import { TransformerCloak, NoiseMaskedNoisyTransformerModel, noisyEmbeddings, serializeTransformedPrompt } from '../../src/models/cloak';
import { parseSafetensors, toFloat32 } from '../../src/models/safetensors';
import { writeSafetensors } from '../../src/models/safetensorsWriter';
import { loadCausalLM } from '../../src/models/causalLM';
import { referenceCloakTransform } from '../../src/reference/cloak';
import { ndarray, type NDArray } from '../../src/reference/index';

async function hostParams(cloak: TransformerCloak): Promise<Map<string, NDArray>> {
  const named = [...cloak.namedParameters()];
  const values = await readAll(named.map(([, t]) => t));
  return new Map(named.map(([name, t], i) => [name, ndarray(values[i], [...t.shape])]));
}

/** Sets every parameter to small random values so that no gradient path is trivially zero. */
function randomize(cloak: TransformerCloak, rng: Rng): void {
  // In place (same buffers), as the optimizer updates parameters.
  for (const t of cloak.parameters()) getContext().write(t.buffer, Float32Array.from(rng.uniforms(t.size, -0.3, 0.3)));
}

const B = 2;
const T = 5;
const d = 16;

describe('TransformerCloak', () => {
  it('matches its float64 twin: mu, sigma, xt and every parameter gradient', async () => {
    await gpu();
    const rng = new Rng('cloak twin');
    const cloak = new TransformerCloak({ hiddenSize: d, encoderWidth: 8, numHeads: 2, numLayers: 1, meanBound: 0.7, seed: 3 });
    await scope(async () => {
      randomize(cloak, rng);
      const xData = Float32Array.from(rng.uniforms(B * T * d, -1, 1));
      const A = [1, 1, 1, 1, 0, 1, 1, 1, 1, 1];
      const N = [0, 1, 1, 1, 0, 1, 0, 1, 1, 1];
      const seedData = Float32Array.from(rng.uniforms(B * T * d, -1, 1));
      const x = tensor(xData, [B, T, d]);
      const mask = tensor(A, [B, T]);
      const noise = tensor(N, [B, T]);
      const eps = randn([B, T, d], { seed: 11 });
      const { mu, sigma } = cloak.forward(x, mask);
      const xt = noisyEmbeddings(x, mu, sigma, eps, noise);
      sum(mul(xt, tensor(seedData, [B, T, d]))).backward();
      const params = await hostParams(cloak);
      const [muV, sigmaV, xtV, epsV] = await readAll([mu, sigma, xt, eps]);
      const ref = referenceCloakTransform(
        cloak.options,
        params,
        ndarray(xData, [B, T, d]),
        ndarray(A, [B, T]),
        ndarray(N, [B, T]),
        ndarray(epsV, [B, T, d]),
      );
      expectClose(muV, ref.mu.data, 1e-4, 1e-5, 'mu');
      expectClose(sigmaV, ref.sigma.data, 1e-4, 1e-6, 'sigma');
      expectClose(xtV, ref.xt.data, 1e-4, 1e-5, 'xt');
      const grads = ref.parameterGradients(ndarray(seedData, [B, T, d]));
      const named = [...cloak.namedParameters()];
      const gpuGrads = await readAll(named.map(([, t]) => t.grad!));
      // Some gradients are exactly 0 in theory (a key bias shifts every score of a query equally,
      // and softmax ignores that), so the absolute floor is relative to the largest gradient.
      const peak = Math.max(...[...grads.values()].flatMap((g) => Array.from(g.data, Math.abs)));
      named.forEach(([name], i) => {
        expectClose(gpuGrads[i], grads.get(name)!.data, 1e-3, 1e-5 * peak, `grad ${name}`);
      });
    });
    cloak.dispose();
  });

  it("the twin's parameter gradients match finite differences", () => {
    const rng = new Rng('cloak fd');
    const options = new TransformerCloakOptionsOnly({ hiddenSize: 6, encoderWidth: 4, numHeads: 2, numLayers: 1, meanBound: null });
    const names = options.parameterShapes();
    const params = new Map<string, NDArray>(
      [...names].map(([n, shape]) => [
        n,
        ndarray(
          rng.uniforms(
            shape.reduce((a, b) => a * b, 1),
            -0.5,
            0.5,
          ),
          shape,
        ),
      ]),
    );
    const [b, t, dd] = [2, 3, 6];
    const x = ndarray(rng.uniforms(b * t * dd, -1, 1), [b, t, dd]);
    const A = ndarray([1, 1, 1, 1, 1, 0], [b, t]);
    const N = ndarray([1, 0, 1, 1, 1, 0], [b, t]);
    const eps = ndarray(rng.uniforms(b * t * dd, -1, 1), [b, t, dd]);
    const seed = ndarray(rng.uniforms(b * t * dd, -1, 1), [b, t, dd]);
    const objective = () => {
      const r = referenceCloakTransform(options.resolved, params, x, A, N, eps);
      return r.xt.data.reduce((acc, v, i) => acc + v * seed.data[i], 0);
    };
    const grads = referenceCloakTransform(options.resolved, params, x, A, N, eps).parameterGradients(seed);
    for (const [name, value] of params) {
      for (const i of [0, Math.floor(value.data.length / 2), value.data.length - 1]) {
        const h = 1e-6;
        const saved = value.data[i];
        value.data[i] = saved + h;
        const up = objective();
        value.data[i] = saved - h;
        const down = objective();
        value.data[i] = saved;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(grads.get(name)!.data[i] - fd), `${name}[${i}]`).toBeLessThan(1e-6 + 1e-5 * Math.abs(fd));
      }
    }
  });

  it('keeps sigma strictly inside (sMin, sMax), even where f32 saturates', async () => {
    await gpu();
    for (const rhoInit of [-200, -4, 0, 4, 200]) {
      const cloak = new TransformerCloak({ hiddenSize: d, encoderWidth: 8, numHeads: 2, rhoInit, sMin: 1e-4, sMax: 2 });
      const values = await scope(async () => {
        const x = tensor(Float32Array.from(new Rng(`sigma ${rhoInit}`).uniforms(B * T * d, -3, 3)), [B, T, d]);
        return cloak.forward(x, tensor(new Float32Array(B * T).fill(1), [B, T])).sigma.toArray();
      });
      for (const s of values) {
        expect(s).toBeGreaterThan(1e-4);
        expect(s).toBeLessThan(2);
      }
      cloak.dispose();
    }
  });

  it('starts at zero mean shift and small sigma; the same seed gives the same weights', async () => {
    await gpu();
    const a = new TransformerCloak({ hiddenSize: d, seed: 5 });
    const b = new TransformerCloak({ hiddenSize: d, seed: 5 });
    const c = new TransformerCloak({ hiddenSize: d, seed: 6 });
    expect(a.options.encoderWidth).toBe(16);
    const [pa, pb, pc] = await Promise.all([hostParams(a), hostParams(b), hostParams(c)]);
    for (const [name, v] of pa) expect(Array.from(pb.get(name)!.data), name).toEqual(Array.from(v.data));
    expect(Array.from(pc.get('input_projection.weight')!.data)).not.toEqual(Array.from(pa.get('input_projection.weight')!.data));
    expect(pa.get('mu_head.weight')!.data.every((v) => v === 0)).toBe(true);
    expect(pa.get('rho_head.bias')!.data.every((v) => v === -4)).toBe(true);
    for (const cl of [a, b, c]) cl.dispose();
  });

  it('rejects bad options, naming them', () => {
    expect(() => new TransformerCloak({ hiddenSize: 0 })).toThrow(/'hiddenSize' must be a positive integer/);
    expect(() => new TransformerCloak({ hiddenSize: 16, numHeads: 3 })).toThrow(/'numHeads' \(3\) must divide 'encoderWidth' \(16\)/);
    expect(() => new TransformerCloak({ hiddenSize: 16, sMin: 2, sMax: 1 })).toThrow(/'sMax'/);
    expect(() => new TransformerCloak({ hiddenSize: 16, shallow: 0 })).toThrow(/'shallow' must be positive/);
    expect(() => new TransformerCloak({ hiddenSize: 16, meanBound: -1 })).toThrow(/'meanBound'/);
  });
});

/** The cloak's resolved options and parameter shapes, without a GPU (for the float64-only test). */
class TransformerCloakOptionsOnly {
  readonly resolved: TransformerCloak['options'];
  constructor(o: { hiddenSize: number; encoderWidth: number; numHeads: number; numLayers: number; meanBound: number | null }) {
    this.resolved = { ...o, mlpRatio: 4, sMin: 1e-4, sMax: 2, shallow: 1, rhoInit: -4, seed: 0, initStd: 0.02 };
  }
  parameterShapes(): Map<string, number[]> {
    const { hiddenSize: dd, encoderWidth: dc, numLayers, mlpRatio } = this.resolved;
    const m = new Map<string, number[]>();
    const lin = (n: string, out: number, inp: number) => {
      m.set(`${n}.weight`, [out, inp]);
      m.set(`${n}.bias`, [out]);
    };
    const norm = (n: string, w: number) => {
      m.set(`${n}.weight`, [w]);
      m.set(`${n}.bias`, [w]);
    };
    lin('input_projection', dc, dd);
    for (let i = 0; i < numLayers; i++) {
      const p = `encoder.layers.${i}.`;
      norm(`${p}norm1`, dc);
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${p}self_attn.${proj}`, dc, dc);
      norm(`${p}norm2`, dc);
      lin(`${p}linear1`, mlpRatio * dc, dc);
      lin(`${p}linear2`, dc, mlpRatio * dc);
    }
    norm('encoder.norm', dc);
    lin('mu_head', dd, dc);
    lin('rho_head', dd, dc);
    return m;
  }
}

describe('NoiseMaskedNoisyTransformerModel', () => {
  async function setup(seed = 0) {
    await gpu();
    const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
    const model = await loadCausalLM({ config, weights });
    const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, rhoInit: 0 });
    return { model, cloak, noisy: new NoiseMaskedNoisyTransformerModel(model, cloak, { seed }) };
  }
  const batch = {
    ids: [5, 9, 13, 2, 0, 7, 8, 1, 3, 4],
    attentionMask: [1, 1, 1, 1, 0, 1, 1, 1, 1, 1],
    noiseMask: [0, 1, 1, 1, 0, 1, 1, 0, 1, 1],
    batchSize: 2,
    seqLen: 5,
  };

  it('leaves positions outside the noise mask exactly clean; the same seed repeats, another differs', async () => {
    const { model, cloak, noisy } = await setup(7);
    const run = (nm: NoiseMaskedNoisyTransformerModel) =>
      scope(async () => {
        const out = nm.forward(batch);
        const [x, xt] = await readAll([out.x, out.xt]);
        return { x, xt };
      });
    const first = await run(noisy);
    const again = await run(new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 7 }));
    const other = await run(new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 8 }));
    const dd = model.config.hiddenSize;
    batch.noiseMask.forEach((n, p) => {
      const xs = Array.from(first.x.slice(p * dd, (p + 1) * dd));
      const xts = Array.from(first.xt.slice(p * dd, (p + 1) * dd));
      if (n === 0) expect(xts, `position ${p}`).toEqual(xs);
      else expect(xts, `position ${p}`).not.toEqual(xs);
    });
    expect(Array.from(again.xt)).toEqual(Array.from(first.xt));
    expect(Array.from(other.xt)).not.toEqual(Array.from(first.xt));
    // The generator advances: a second forward of the same model draws new noise.
    const second = await run(noisy);
    expect(Array.from(second.xt)).not.toEqual(Array.from(first.xt));
    cloak.dispose();
    model.dispose();
  });

  it('gives the cloak (only) gradients, captures the requested layer, and frees everything', async () => {
    const { model, cloak, noisy } = await setup();
    noisy.requestOutputs({ distillationLayerIndex: 0, logits: false });
    const start = liveBufferCount();
    await scope(async () => {
      const out = noisy.forward(batch);
      expect(out.h!.shape).toEqual([2, 5, model.config.hiddenSize]);
      expect(out.studentLogits).toBeNull();
      sum(mul(out.ht!, out.ht!)).backward();
      expect(model.parameters().every((p) => p.grad === null)).toBe(true);
      const grads = cloak.parameters().map((p) => p.grad as Tensor);
      expect(grads.every((g) => g !== null)).toBe(true);
    });
    for (const p of cloak.parameters()) {
      p.grad!.dispose();
      p.grad = null;
    }
    expect(liveBufferCount()).toBe(start);
    expect(() => noisy.requestOutputs({ distillationLayerIndex: 2, logits: false })).toThrow(
      /distillationLayerIndex 2 is out of range: the model has blocks 0..1/,
    );
    expect(() => noisy.forward({ ...batch, noiseMask: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1] })).toThrow(/N must be <= A/);
    expect(() => new NoiseMaskedNoisyTransformerModel(model, new TransformerCloak({ hiddenSize: 8 }))).toThrow(/hiddenSize/);
    cloak.dispose();
    model.dispose();
  });
});

describe('client-side obfuscation', () => {
  it('transform(ids) gives xt of the prompt, differs per call by default, repeats with a seed, and serialises without the ids', async () => {
    await gpu();
    const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
    const model = await loadCausalLM({ config, weights });
    const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, rhoInit: 0 });
    const ids = [5, 17, 33, 2];
    const start = liveBufferCount();
    const a = await cloak.transform(ids, { model, seed: 4, noiseMask: [0, 1, 1, 1] });
    const b = await cloak.transform(ids, { model, seed: 4, noiseMask: [0, 1, 1, 1] });
    const c = await cloak.transform(ids, { model });
    const d2 = await cloak.transform(ids, { model });
    expect(liveBufferCount()).toBe(start);
    expect(a.shape).toEqual([4, 32]);
    expect(Array.from(a.embeddings)).toEqual(Array.from(b.embeddings));
    expect(Array.from(c.embeddings)).not.toEqual(Array.from(d2.embeddings));
    const x = await scope(() => model.embed({ data: ids, shape: [1, 4] }).toArray());
    expect(Array.from(a.embeddings.slice(0, 32))).toEqual(Array.from(x.slice(0, 32))); // position 0 is not transformed
    expect(Array.from(a.embeddings.slice(32))).not.toEqual(Array.from(x.slice(32)));
    const file = parseSafetensors(serializeTransformedPrompt(a));
    expect([...file.tensors.keys()].sort()).toEqual(['attention_mask', 'inputs_embeds']);
    expect(file.tensors.get('inputs_embeds')!.shape).toEqual([1, 4, 32]);
    expect(Array.from(toFloat32(file.tensors.get('inputs_embeds')!))).toEqual(Array.from(a.embeddings));
    await expect(cloak.transform('text', { model })).rejects.toThrow(/needs option 'tokenizer'/);
    await expect(cloak.transform([], { model })).rejects.toThrow(/empty/);
    cloak.dispose();
    model.dispose();
  });

  it("the demo's inspectPrompt applies the noise mask as transform does: unmasked positions stay clean", async () => {
    await gpu();
    const { inspectPrompt } = await import('../../demo/inspect');
    const config = JSON.parse(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/config.json'), 'utf8')) as unknown;
    const weights = new Uint8Array(readFileSync(resolve(FIXTURES_DIR, 'tiny-llama/model.safetensors')));
    const model = await loadCausalLM({ config, weights });
    // A large scale, so that a transformed position's nearest row is hardly ever its own token.
    const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, rhoInit: 4 });
    const tokenizer = {
      vocabSize: model.config.vocabSize,
      encode: () => [5, 17, 33],
      decode: (ids: number[]) => ids.join(' '),
      bosId: 1,
      padId: 0,
    };
    const options = { seed: 4, topK: 2, maxNewTokens: 1 };
    const start = liveBufferCount();
    const clean = await inspectPrompt(model, cloak, tokenizer, 'p', { ...options, noiseMask: [0, 0, 0, 0] });
    expect(clean.tokens.map((t) => t.id)).toEqual([1, 5, 17, 33]);
    expect(clean.tokens.every((t) => !t.transformed && t.nearestId === t.id)).toBe(true);
    // With nothing transformed the student sees the teacher's input.
    expect(clean.student.top).toEqual(clean.teacher.top);
    const masked = await inspectPrompt(model, cloak, tokenizer, 'p', { ...options, noiseMask: [0, 1, 1, 1] });
    expect(masked.tokens.map((t) => t.transformed)).toEqual([false, true, true, true]);
    expect(masked.tokens[0].nearestId).toBe(1);
    expect(masked.student.top).not.toEqual(masked.teacher.top);
    expect(liveBufferCount()).toBe(start);
    await expect(inspectPrompt(model, cloak, tokenizer, 'p', { ...options, noiseMask: [1, 1, 1] })).rejects.toThrow(
      /'noiseMask' must hold 4 values of 0 or 1/,
    );
    cloak.dispose();
    model.dispose();
  });

  it('round-trips through safetensors (options in the metadata) and rejects a mismatched file', async () => {
    await gpu();
    const cloak = new TransformerCloak({ hiddenSize: 16, encoderWidth: 8, numHeads: 2, seed: 8, meanBound: 0.5 });
    const bytes = await cloak.toSafetensors();
    const again = TransformerCloak.fromSafetensors(bytes);
    expect(again.options).toEqual(cloak.options);
    const [pa, pb] = await Promise.all([hostParams(cloak), hostParams(again)]);
    for (const [name, v] of pa) expect(Array.from(pb.get(name)!.data), name).toEqual(Array.from(v.data));
    const start = liveBufferCount();
    const file = parseSafetensors(bytes);
    const broken = writeSafetensors(
      Object.fromEntries(
        [...file.tensors]
          .filter(([n]) => n !== 'mu_head.bias')
          .map(([n, e]) => [n, { dtype: 'F32' as const, shape: e.shape, data: Float32Array.from(toFloat32(e)) }]),
      ),
      file.metadata,
    );
    expect(() => TransformerCloak.fromSafetensors(broken)).toThrow(/tensor 'mu_head.bias' is missing/);
    expect(liveBufferCount()).toBe(start);
    cloak.dispose();
    again.dispose();
  });
});
