/**
 * The row-pair losses of LOSSES.md over `shaders/cosine.wgsl`: the layer cosine distance, the
 * layer L2 distance, the input-embedding similarity and the absolute cosine similarity. Each is
 * one row-reduction pass over both inputs (vec4 reads where the hidden size allows), a small pass
 * that finishes the rows and takes the masked mean, and one backward pass per input that needs a
 * gradient.
 */
import source from '../../shaders/cosine.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape } from '../tensor/tensor';
import { checkFloatTensor, checkSameShape, maskTensor, type MaskInput } from '../tensor/validate';
import { SgtError } from '../gpu/errors';
import { rowLayout, rowLayoutParams } from './rowLayout';

/** The four variants of the kernel family (the WGSL `VARIANT` override). */
const VARIANTS = {
  distillationLayerCosineDistance: 0,
  inputEmbeddingSimilarity: 1,
  absoluteCosineSimilarity: 2,
  distillationLayerL2Distance: 3,
} as const;

type VariantName = keyof typeof VARIANTS;

interface RowPairAttrs {
  /** Whether the mask tensor was uploaded here (and so must live until the backward). */
  ownedMask: boolean;
}

function gradientOf(
  which: 'first' | 'second',
  name: VariantName,
  u: Tensor,
  v: Tensor,
  mask: Tensor,
  coef: Tensor,
  scale: Tensor,
  g: Tensor,
): Tensor {
  const ctx = getContext();
  const out = Tensor.empty(u.shape);
  if (u.size === 0) return out;
  const cols = u.shape[2];
  const rows = u.size / cols;
  const layout = rowLayout(ctx, rows, cols);
  ctx.dispatch({
    shader: source,
    entryPoint: layout.vec4 ? 'rowPairBackward' : 'rowPairBackwardRagged',
    label: `${name} (backward)`,
    constants: { WRT_FIRST: which === 'first' ? 1 : 0 },
    resources: {
      uRows: u.buffer,
      vRows: v.buffer,
      uRows4: u.buffer,
      vRows4: v.buffer,
      mask: mask.buffer,
      savedCoef: coef.buffer,
      savedScale: scale.buffer,
      grad: g.buffer,
      gradOut: out.buffer,
      gradOut4: out.buffer,
    },
    params: rowLayoutParams(rows, cols, layout),
    workgroups: [layout.workgroups],
  });
  return out;
}

function defineRowPairOp(variant: VariantName) {
  return defineOp<RowPairAttrs>({
    name: variant,
    forward: ([u, v, mask], { ownedMask }) => {
      const ctx = getContext();
      const cols = u.shape[2];
      const rows = u.size / cols;
      const layout = rowLayout(ctx, rows, cols);
      const params = rowLayoutParams(rows, cols, layout);
      const rowCoef = Tensor.empty([rows, 4]);
      const pieces = Tensor.empty([rows * layout.segments * 3]);
      const loss = Tensor.empty([]);
      const lossScale = Tensor.empty([1]);
      const constants = { VARIANT: VARIANTS[variant] };
      if (rows > 0) {
        ctx.dispatch({
          shader: source,
          entryPoint: layout.vec4 ? 'rowPairPieces' : 'rowPairPiecesRagged',
          label: variant,
          constants,
          resources: { uRows: u.buffer, vRows: v.buffer, uRows4: u.buffer, vRows4: v.buffer, mask: mask.buffer, pieces: pieces.buffer },
          params,
          workgroups: [layout.workgroups],
        });
      }
      ctx.dispatch({
        shader: source,
        entryPoint: 'rowPairFinish',
        label: variant,
        constants,
        resources: { mask: mask.buffer, pieces: pieces.buffer, rowCoef: rowCoef.buffer, loss: loss.buffer, lossScale: lossScale.buffer },
        params,
        workgroups: [1],
      });
      pieces.dispose();
      // A mask uploaded from host data lives as long as the backward may need it.
      return { output: loss, saved: ownedMask ? [rowCoef, lossScale, mask] : [rowCoef, lossScale] };
    },
    // Each row's gradient is a fixed combination of u and v (coefficients saved by the forward),
    // scaled by g / |selected|; see shaders/cosine.wgsl for the formulas.
    backward: (g, { inputs: [u, v, mask], saved: [coef, scale] }) => [
      u.requiresGrad ? gradientOf('first', variant, u, v, mask, coef, scale, g) : null,
      v.requiresGrad ? gradientOf('second', variant, u, v, mask, coef, scale, g) : null,
      null,
    ],
  });
}

const rowPairOps: Record<VariantName, ReturnType<typeof defineRowPairOp>> = {
  distillationLayerCosineDistance: defineRowPairOp('distillationLayerCosineDistance'),
  inputEmbeddingSimilarity: defineRowPairOp('inputEmbeddingSimilarity'),
  absoluteCosineSimilarity: defineRowPairOp('absoluteCosineSimilarity'),
  distillationLayerL2Distance: defineRowPairOp('distillationLayerL2Distance'),
};

function rowPairLoss(variant: VariantName, names: [string, string, string], u: Tensor, v: Tensor, maskInput: MaskInput): Tensor {
  const [uName, vName, maskName] = names;
  checkFloatTensor(variant, uName, u, 3);
  checkFloatTensor(variant, vName, v, 3);
  checkSameShape(variant, vName, v, uName, u);
  const [B, T, d] = u.shape;
  if (d === 0)
    throw new SgtError('SHAPE_MISMATCH', `${variant}: '${uName}' has shape ${fmtShape(u.shape)}; the feature axis must not be empty`);
  const { mask, owned } = maskTensor(variant, maskName, maskInput, [B, T]);
  return rowPairOps[variant]([u, v, mask], { ownedMask: owned });
}

/**
 * `distillationLayerCosineDistanceLoss`: `mean over L = 1 of 1 - cos(h, ht)`, with
 * `cos(u, v) = u.v / max(|u| |v|, 1e-8)`, one flat mean over every selected `(b, t)`.
 *
 * @param h - `[B, T, d]` f32: the teacher's hidden states (a gradient flows to it only if it
 *   requires grad).
 * @param ht - `[B, T, d]` f32: the student's hidden states.
 * @param lossMask - `L`, `[B, T]`: an f32 tensor (a non-zero value selects) or host 0/1 data.
 * @returns A 0-d tensor supporting `backward()`; 0 with zero gradients when nothing is selected.
 */
export function distillationLayerCosineDistance(h: Tensor, ht: Tensor, lossMask: MaskInput): Tensor {
  return rowPairLoss('distillationLayerCosineDistance', ['h', 'ht', 'lossMask'], h, ht, lossMask);
}

/**
 * `distillationLayerL2DistanceLoss`: `mean over L = 1 of ||h - ht||_2`. The gradient of the norm
 * at `h == ht` is taken as 0 (it happens exactly before the first transformed token).
 *
 * @param h - `[B, T, d]` f32: the teacher's hidden states (a gradient flows to it only if it
 *   requires grad).
 * @param ht - `[B, T, d]` f32: the student's hidden states.
 * @param lossMask - `L`, `[B, T]`: an f32 tensor (a non-zero value selects) or host 0/1 data.
 * @returns A 0-d tensor supporting `backward()`; 0 with zero gradients when nothing is selected.
 */
export function distillationLayerL2Distance(h: Tensor, ht: Tensor, lossMask: MaskInput): Tensor {
  return rowPairLoss('distillationLayerL2Distance', ['h', 'ht', 'lossMask'], h, ht, lossMask);
}

/**
 * `inputEmbeddingSimilarityLoss`: `mean over N = 1 of cos(x, xt)`.
 *
 * @param x - `[B, T, d]` f32: the clean input embeddings (a gradient flows to it only if it
 *   requires grad).
 * @param xt - `[B, T, d]` f32: the transformed embeddings.
 * @param noiseMask - `N`, `[B, T]`: an f32 tensor (a non-zero value selects) or host 0/1 data.
 * @returns A 0-d tensor supporting `backward()`; 0 with zero gradients when nothing is selected.
 */
export function inputEmbeddingSimilarity(x: Tensor, xt: Tensor, noiseMask: MaskInput): Tensor {
  return rowPairLoss('inputEmbeddingSimilarity', ['x', 'xt', 'noiseMask'], x, xt, noiseMask);
}

/**
 * `absoluteCosineSimilarityPenalty`: `mean over N = 1 of |cos(x, xt)|` (the gradient of `|c|` at
 * `c = 0` is 0).
 *
 * @param x - `[B, T, d]` f32: the clean input embeddings (a gradient flows to it only if it
 *   requires grad).
 * @param xt - `[B, T, d]` f32: the transformed embeddings.
 * @param noiseMask - `N`, `[B, T]`: an f32 tensor (a non-zero value selects) or host 0/1 data.
 * @returns A 0-d tensor supporting `backward()`; 0 with zero gradients when nothing is selected.
 */
export function absoluteCosineSimilarity(x: Tensor, xt: Tensor, noiseMask: MaskInput): Tensor {
  return rowPairLoss('absoluteCosineSimilarity', ['x', 'xt', 'noiseMask'], x, xt, noiseMask);
}
