/**
 * Privacy and utility of a transform in one call (issue 14): utility against the true next token
 * (`./utility`), NN-FR by cosine and by L2 distance (`./metrics`), and the learned inversion
 * attacks (`./inversionAttack`: a linear probe and a window MLP, trained through the transform with
 * fresh noise and on clean embeddings for comparison). What `Trainer.evaluate`, the CLI's
 * report, the worker, the demo and `npm run measure-privacy` report.
 */
import { type Tensor, keep, readAll, scope, tensor } from '../tensor/tensor';
import { noGrad } from '../autograd/engine';
import type { CausalLM } from '../models/causalLM';
import { NoiseMaskedNoisyTransformerModel, type TransformerCloak } from '../models/cloak';
import { batches, type HostBatch, type PackedSequence } from '../text/data';
import { nearestNeighbourInversion } from './metrics';
import {
  addUtility,
  emptyUtilitySums,
  nextTokenTargets,
  utilityReport,
  utilityTensors,
  type UtilityReport,
  type UtilitySums,
} from './utility';
import {
  cleanEmbeddings,
  inversionAttack,
  transformedEmbeddings,
  type InversionAttackOptions,
  type InversionAttackResult,
} from './inversionAttack';

/** NN-FR of the held-out positions a transform changed. */
export interface NearestNeighbourPrivacy {
  /** Share of transformed positions whose nearest vocabulary embedding by cosine is not the true token. */
  nnfrCosine: number;
  /** The same by L2 distance. */
  nnfrL2: number;
  /** Transformed positions counted. */
  transformedPositions: number;
}

/** The learned attacks' token-recovery results: through the transform, and on clean embeddings. */
export interface InversionAttackReport {
  linear: InversionAttackResult;
  mlp: InversionAttackResult;
  linearClean: InversionAttackResult;
  mlpClean: InversionAttackResult;
}

/** What {@link evaluatePrivacyUtility} returns. */
export interface PrivacyUtilityReport {
  utility: UtilityReport;
  privacy: NearestNeighbourPrivacy & { attack: InversionAttackReport | null };
}

/** Options of {@link inversionAttacks}: the attack's options shared by both kinds, and the noise seed. */
export type InversionAttacksOptions = Omit<InversionAttackOptions, 'kind'> & {
  /** Seed of the transform's noise stream in the attack (default: `seed`, or 0). */
  noiseSeed?: number;
};

/** Options of {@link evaluatePrivacyUtility}. */
export interface PrivacyUtilityOptions {
  /** Held-out sequences per batch of the utility and NN-FR pass (default 4). */
  batchSize?: number;
  /** At most this many held-out batches in that pass (default: all). */
  maxBatches?: number;
  /** Seed of that pass's noise (default 1): the same seed gives the same draw at every evaluation. */
  seed?: number;
  /** The learned attacks' options, or false to skip them (they take longer: seconds to minutes). */
  attack?: InversionAttacksOptions | false;
}

/**
 * NN-FR and utility of one held-out batch through `noisy` (requested outputs must include the final
 * hidden states): one scope of GPU work, one readback, sums on the host.
 */
export async function evaluateHeldOutBatch(
  noisy: NoiseMaskedNoisyTransformerModel,
  model: CausalLM,
  batch: HostBatch,
  nn: { cosine: number; l2: number; count: number },
  sums: UtilitySums,
): Promise<void> {
  const targets = nextTokenTargets(batch);
  const tensors: Tensor[] = scope(() =>
    noGrad(() => {
      const out = noisy.forward(batch);
      const ids = tensor(batch.ids, [batch.batchSize, batch.seqLen]);
      const table = model.embeddingBlocks();
      const cos = nearestNeighbourInversion(out.xt, table, ids, out.noiseMask);
      const l2 = nearestNeighbourInversion(out.xt, table, ids, out.noiseMask, { metric: 'euclidean' });
      const utility = utilityTensors(out.teacherHidden!, out.studentHidden!, model.headBlocks(), batch, targets);
      return [cos.failures, l2.failures, cos.count, ...utility];
    }),
  );
  // Taken out of any scope: this call owns them while the readback is awaited.
  for (const t of tensors) keep(t);
  let values: ArrayLike<number>[];
  try {
    values = await readAll(tensors);
  } finally {
    for (const t of tensors) t.dispose();
  }
  nn.cosine += values[0][0];
  nn.l2 += values[1][0];
  nn.count += values[2][0];
  addUtility(sums, values.slice(3), batch, targets);
}

/**
 * Utility and NN-FR over `heldOut` batches through `noisy` (which must request the final hidden
 * states); the caller sets the noise state and restores it.
 */
export async function evaluateHeldOut(
  noisy: NoiseMaskedNoisyTransformerModel,
  model: CausalLM,
  heldOut: Iterable<HostBatch>,
): Promise<{ utility: UtilityReport; privacy: NearestNeighbourPrivacy }> {
  const nn = { cosine: 0, l2: 0, count: 0 };
  const sums = emptyUtilitySums();
  for (const batch of heldOut) await evaluateHeldOutBatch(noisy, model, batch, nn, sums);
  return {
    utility: utilityReport(sums),
    privacy: {
      nnfrCosine: nn.count ? nn.cosine / nn.count : 0,
      nnfrL2: nn.count ? nn.l2 / nn.count : 0,
      transformedPositions: nn.count,
    },
  };
}

/**
 * The four learned attacks: the linear probe and the window MLP trained on `data.train` through
 * `cloak` (fresh noise each batch) and on clean embeddings, each scored on `data.heldOut`.
 *
 * @param model - the frozen base model.
 * @param cloak - the transform attacked.
 * @param data - training and held-out packed sequences (one length each).
 * @param options - shared attack options (see `InversionAttackOptions`), `noiseSeed`.
 */
export async function inversionAttacks(
  model: CausalLM,
  cloak: TransformerCloak,
  data: { train: readonly PackedSequence[]; heldOut: readonly PackedSequence[] },
  options: InversionAttacksOptions = {},
): Promise<InversionAttackReport> {
  const { noiseSeed, ...shared } = options;
  const V = model.config.vocabSize;
  const through = (kind: 'linear' | 'mlp') =>
    inversionAttack(transformedEmbeddings(model, cloak, noiseSeed ?? shared.seed ?? 0), data, V, { ...shared, kind });
  const clean = (kind: 'linear' | 'mlp') => inversionAttack(cleanEmbeddings(model), data, V, { ...shared, kind });
  const linear = await through('linear');
  const mlp = await through('mlp');
  const linearClean = await clean('linear');
  const mlpClean = await clean('mlp');
  return { linear, mlp, linearClean, mlpClean };
}

/**
 * Privacy and utility of a transform on held-out text: `{ utility, privacy: { nnfrCosine, nnfrL2,
 * transformedPositions, attack: { linear, mlp, linearClean, mlpClean } } }` (see
 * {@link PrivacyUtilityReport}). The utility and NN-FR pass uses a fixed noise draw (`seed`); the
 * attacks train on `data.train` and score `data.heldOut`. Frees everything it makes.
 *
 * @param model - the frozen base model (any `CausalLM`).
 * @param cloak - the transform (e.g. `Trainer.transform`).
 * @param data - packed training and held-out sequences (e.g. `textDataset(...)`).
 * @param options - see {@link PrivacyUtilityOptions}.
 */
export async function evaluatePrivacyUtility(
  model: CausalLM,
  cloak: TransformerCloak,
  data: { train: readonly PackedSequence[]; heldOut: readonly PackedSequence[] },
  options: PrivacyUtilityOptions = {},
): Promise<PrivacyUtilityReport> {
  const noisy = new NoiseMaskedNoisyTransformerModel(model, cloak, { seed: options.seed ?? 1 });
  noisy.requestOutputs({ distillationLayerIndex: null, logits: false, finalHidden: true });
  const heldOut = [...batches(data.heldOut, options.batchSize ?? 4)].slice(0, options.maxBatches ?? Number.POSITIVE_INFINITY);
  const { utility, privacy } = await evaluateHeldOut(noisy, model, heldOut);
  const attack = options.attack === false ? null : await inversionAttacks(model, cloak, data, options.attack ?? {});
  return { utility, privacy: { ...privacy, attack } };
}
