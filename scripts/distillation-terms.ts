/**
 * Why does the layer-distillation factory lose the predictions? Trains a cloak with
 * `distillationLossFactory` on the default model and, every `--every` steps, logs each
 * component's value and the norm of its own gradient with respect to the cloak's parameters
 * (one backward per component, on the same forward), before weighting, plus the weight the
 * factory gives it, and the held-out NN-FR / top-1 agreement.
 *
 *   node scripts/run.mjs scripts/distillation-terms.ts [--model DIR] [--steps N] [--every K]
 *     [--set key=value,...] [--lr X] [--out FILE.json]
 */
import { writeFileSync } from 'node:fs';
import {
  AdamW,
  NoiseMaskedNoisyTransformerModel,
  TransformerCloak,
  agreementAndKL,
  backward,
  batches,
  clipGradNorm,
  distillationLossFactory,
  enableGrad,
  init,
  keep,
  nearestNeighbourInversion,
  noGrad,
  readAll,
  scope,
  tensor,
  type DistillationLossOptions,
  type HostBatch,
  type Tensor,
} from '../src/index';
import { loadModelDir, packKjv } from './privacy-data';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const STEPS = Number(args.get('steps') ?? 40);
const EVERY = Number(args.get('every') ?? 10);
const LR = Number(args.get('lr') ?? 3e-3);
const OVERRIDES = Object.fromEntries(
  (args.get('set') ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const [k, v] = kv.split('=');
      return [k, v === 'null' ? null : Number(v)];
    }),
);

/** Every term on (weight 1 each), so that each has a graph; the factory's weights are printed beside. */
const OPTIONS: DistillationLossOptions = {
  distillationLayerIndex: null,
  alpha: 0.4,
  stdLogRatioLossWeight: 1,
  inputEmbeddingSimilarityLossWeight: 1,
  distillationLayerCosineDistanceLossWeight: 1,
  distillationLayerL2DistanceLossWeight: 0,
  ...OVERRIDES,
};

async function read(ts: Tensor[]): Promise<number[]> {
  for (const t of ts) keep(t);
  const v = (await readAll(ts)).map((a) => a[0]);
  for (const t of ts) t.dispose();
  return v;
}

/**
 * How alike the teacher's logit vectors of unrelated positions are: the mean cosine between the
 * logits of position pairs (i, i + T/2) of one batch, and the mean cosine between each position's
 * logits and its centred copy (what the cosine distance would see without the shared component).
 */
async function logitCosines(
  noisy: NoiseMaskedNoisyTransformerModel,
  batch: HostBatch,
): Promise<{ unrelatedPairs: number; sharedShare: number }> {
  const [logits] = scope(() => noGrad(() => [keep(noisy.forward(batch).teacherLogits!)]));
  const v = (await readAll([logits]))[0] as Float32Array;
  logits.dispose();
  const V = v.length / (batch.batchSize * batch.seqLen);
  const row = (i: number) => v.subarray(i * V, (i + 1) * V);
  const cos = (a: Float32Array, b: Float32Array) => {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let k = 0; k < a.length; k++) {
      ab += a[k] * b[k];
      aa += a[k] * a[k];
      bb += b[k] * b[k];
    }
    return ab / Math.sqrt(aa * bb);
  };
  let pairs = 0;
  let n = 0;
  let shared = 0;
  const half = batch.seqLen / 2;
  for (let b = 0; b < batch.batchSize; b++) {
    for (let t = 1; t < half; t++) {
      const i = b * batch.seqLen + t;
      pairs += cos(row(i), row(i + half));
      const r = row(i);
      const mean = r.reduce((x, y) => x + y, 0) / V;
      shared += cos(
        r,
        r.map((x) => x - mean),
      );
      n++;
    }
  }
  return { unrelatedPairs: pairs / n, sharedShare: shared / n };
}

async function main(): Promise<void> {
  await init();
  const { model, tokenizer } = await loadModelDir(args.get('model') ?? 'models/default');
  const data = packKjv(tokenizer, 64, 16, model.config.vocabSize);
  const train = [...batches(data.train, 4, { shuffle: true, seed: 7, epoch: 0, dropLast: true })];
  const heldOut = [...batches(data.heldOut, 4, { dropLast: true })];
  const cloak = new TransformerCloak({ hiddenSize: model.config.hiddenSize, seed: 7 });
  const noisy = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: 7, fusedHead: false });
  const [lossFn, getComponents, getHp] = distillationLossFactory(noisy, OPTIONS);
  const params = cloak.parameters();
  const optimizer = new AdamW(params, { lr: LR, weightDecay: 0.01 });
  const log: Record<string, unknown>[] = [];
  for (let s = 0; s <= STEPS; s++) {
    const batch = train[s % train.length];
    if (s % EVERY === 0) {
      // Per-term gradient norms on one forward: backward each component alone (graph retained).
      const row: Record<string, unknown> = { step: s };
      const keys: string[] = [];
      const scalars = scope(() =>
        enableGrad(() => {
          const out: Tensor[] = [];
          lossFn(noisy.forward(batch).studentLogits);
          const comps = getComponents();
          for (const [key, c] of Object.entries(comps)) {
            if (!c.requiresGrad) continue;
            backward(c, undefined, { retainGraph: true });
            keys.push(key);
            out.push(c, clipGradNorm(params, 1e30));
            for (const p of params) {
              p.grad?.dispose();
              p.grad = null;
            }
          }
          getHp();
          return out;
        }),
      );
      const v = await read(scalars);
      keys.forEach((k, i) => {
        row[k] = { value: v[2 * i], gradNorm: v[2 * i + 1] };
      });
      // Held-out metrics with the current cloak.
      let fail = 0;
      let cnt = 0;
      let agree = 0;
      let lcount = 0;
      let sigmaMean = 0;
      for (const hb of heldOut) {
        const m = scope(() =>
          noGrad(() => {
            const out = noisy.forward(hb);
            const nn = nearestNeighbourInversion(out.xt, model.embeddingBlocks(), tensor(hb.ids, [hb.batchSize, hb.seqLen]), out.noiseMask);
            const ak = agreementAndKL(out.teacherLogits!, out.studentLogits!, out.lossMask);
            return [nn.failures, nn.count, ak.agree, ak.count, out.sigma];
          }),
        );
        for (const t of m) keep(t);
        const vals = await readAll(m);
        for (const t of m) t.dispose();
        fail += vals[0][0];
        cnt += vals[1][0];
        agree += vals[2][0];
        lcount += vals[3][0];
        const sv = vals[4] as Float32Array;
        sigmaMean += sv.reduce((x, y) => x + y, 0) / sv.length / heldOut.length;
      }
      if (s === 0) row.teacherLogitCosine = await logitCosines(noisy, heldOut[0]);
      row.nnfr = fail / cnt;
      row.agreement = agree / lcount;
      row.meanSigma = sigmaMean;
      console.log(JSON.stringify(row));
      log.push(row);
    }
    if (s === STEPS) break;
    const scalars = scope(() =>
      enableGrad(() => {
        const loss = lossFn(noisy.forward(batch).studentLogits);
        getComponents();
        backward(loss);
        const g = clipGradNorm(params, 1);
        optimizer.step();
        optimizer.zeroGrad();
        return [loss, g];
      }),
    );
    await read(scalars);
  }
  const out = args.get('out');
  if (out) writeFileSync(out, `${JSON.stringify({ options: OPTIONS, learningRate: LR, log }, null, 2)}\n`);
  optimizer.dispose();
  cloak.dispose();
  model.dispose();
}

await main();
