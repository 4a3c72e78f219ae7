/**
 * The loss reductions as one namespace (`losses.distillationCrossEntropy(...)`), each a
 * differentiable op over its own WGSL kernel family.
 */
import { distillationCrossEntropy } from './crossEntropy';
import { lmHeadDistillationCrossEntropy } from './lmHeadCrossEntropy';
import { absoluteCosineSimilarity, distillationLayerCosineDistance, distillationLayerL2Distance, inputEmbeddingSimilarity } from './cosine';
import { stdLogRatio } from './stdLogRatio';
import { medianNormPenalty } from './medianNorm';
import { inverseL2PowerLawCatalyst } from './catalyst';
import { mutualInformation } from './mutualInformation';

/**
 * Every component loss of LOSSES.md section 2 as a function returning a 0-d tensor that supports
 * `backward()`. Masks are `[B, T]` f32 tensors or host arrays of 0/1; positions outside a mask are
 * selected out; an empty mask gives 0 and zero gradients. `lmHeadDistillationCrossEntropy` is
 * `distillationCrossEntropy` fused with the LM head: it takes the final hidden states and the head
 * (as row blocks) and never materialises the `[N, V]` logits.
 */
export const losses = {
  distillationLayerCosineDistance,
  distillationLayerL2Distance,
  distillationCrossEntropy,
  lmHeadDistillationCrossEntropy,
  stdLogRatio,
  inputEmbeddingSimilarity,
  absoluteCosineSimilarity,
  medianNormPenalty,
  inverseL2PowerLawCatalyst,
  mutualInformation,
} as const;

export type { CatalystOptions, NearestRows, NearestRowsOptions } from './catalyst';
export type { MutualInformationOptions } from './mutualInformation';
export type { LmHeadCrossEntropyOptions } from './lmHeadCrossEntropy';
export type { MaskInput } from '../tensor/validate';
export { nearestRows } from './catalyst';
export { embeddingRowNorms, medianOfNonNegative } from './medianNorm';
export { lmHeadChunkColumns } from './lmHeadCrossEntropy';
