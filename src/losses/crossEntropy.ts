/**
 * The distillation cross-entropy (`distillationCrossEntropyLoss` of LOSSES.md), over
 * `shaders/crossEntropy.wgsl`: one pass over both logit tensors (vec4 reads where the vocabulary
 * allows), a small pass that merges each row's pieces and takes the masked mean, and a fused
 * backward. No softmax tensor is ever made, so vocabularies of 150,000+ entries cost only their
 * logits.
 */
import source from '../../shaders/crossEntropy.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor } from '../tensor/tensor';
import { checkLogitsPair, maskTensor, type MaskInput } from '../tensor/validate';
import { rowLayout, rowLayoutParams } from './rowLayout';

const FN = 'distillationCrossEntropy';

const crossEntropyOp = defineOp<{ ownedMask: boolean }>({
  name: 'distillationCrossEntropy',
  forward: ([teacher, student, mask], { ownedMask }) => {
    const ctx = getContext();
    const cols = student.shape[2];
    const rows = student.size / cols;
    const layout = rowLayout(ctx, rows, cols);
    const params = rowLayoutParams(rows, cols, layout);
    const pieces = Tensor.empty([rows * layout.segments * 5]);
    const rowStats = Tensor.empty([rows, 4]);
    const loss = Tensor.empty([]);
    const lossScale = Tensor.empty([1]);
    if (rows > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: layout.vec4 ? 'crossEntropyPieces' : 'crossEntropyPiecesRagged',
        label: FN,
        resources: {
          teacher: teacher.buffer,
          student: student.buffer,
          teacher4: teacher.buffer,
          student4: student.buffer,
          mask: mask.buffer,
          pieces: pieces.buffer,
        },
        params,
        workgroups: [layout.workgroups],
      });
    }
    ctx.dispatch({
      shader: source,
      entryPoint: 'crossEntropyFinish',
      label: FN,
      resources: { mask: mask.buffer, pieces: pieces.buffer, rowStats: rowStats.buffer, loss: loss.buffer, lossScale: lossScale.buffer },
      params,
      workgroups: [1],
    });
    pieces.dispose();
    // A mask uploaded from host data lives as long as the backward may need it.
    return { output: loss, saved: ownedMask ? [rowStats, lossScale, mask] : [rowStats, lossScale] };
  },
  // d(CE)/d(zt) = (softmax(zt) - softmax(z)) * g / |L| on selected rows; the teacher is detached.
  backward: (g, { inputs: [teacher, student, mask], saved: [rowStats, lossScale] }) => {
    const ctx = getContext();
    const cols = student.shape[2];
    const rows = student.size / cols;
    if (!student.requiresGrad) return [null, null, null];
    const gradStudent = Tensor.empty(student.shape);
    if (student.size > 0) {
      const layout = rowLayout(ctx, rows, cols);
      ctx.dispatch({
        shader: source,
        entryPoint: layout.vec4 ? 'crossEntropyBackward' : 'crossEntropyBackwardRagged',
        label: `${FN} (backward)`,
        resources: {
          teacher: teacher.buffer,
          student: student.buffer,
          teacher4: teacher.buffer,
          student4: student.buffer,
          mask: mask.buffer,
          savedStats: rowStats.buffer,
          savedScale: lossScale.buffer,
          grad: g.buffer,
          gradStudent: gradStudent.buffer,
          gradStudent4: gradStudent.buffer,
        },
        params: rowLayoutParams(rows, cols, layout),
        workgroups: [layout.workgroups],
      });
    }
    return [null, gradStudent, null];
  },
});

/**
 * The distillation cross-entropy `mean over L = 1 of -sum_v softmax(z)_v * log_softmax(zt)_v`,
 * one flat mean over every selected `(b, t)` of the batch, max-shifted throughout.
 *
 * @param teacherLogits - `z`, `[B, T, V]` f32: the teacher's logits; treated as a constant (no
 *   gradient flows to it, even if it requires grad).
 * @param studentLogits - `zt`, `[B, T, V]` f32: the student's logits; receives the gradient
 *   `(softmax(zt) - softmax(z)) / |L|` on selected positions and exactly 0 elsewhere.
 * @param lossMask - `L`, `[B, T]`: an f32 tensor (a non-zero value selects a position) or host
 *   data holding only 0 and 1. Unselected positions take no part at all (their logits may even be
 *   NaN).
 * @returns A 0-d tensor (shape `[]`) that supports `backward()`; 0 (with zero gradients) when
 *   the mask selects nothing.
 * @throws When the shapes differ, are not rank 3, the vocabulary is empty, the mask has the
 *   wrong shape or values, or a logits tensor exceeds the device's storage binding size.
 */
export function distillationCrossEntropy(teacherLogits: Tensor, studentLogits: Tensor, lossMask: MaskInput): Tensor {
  const [B, T] = checkLogitsPair(FN, teacherLogits, studentLogits, 'studentLogits');
  const { mask, owned } = maskTensor(FN, 'lossMask', lossMask, [B, T]);
  return crossEntropyOp([teacherLogits, studentLogits, mask], { ownedMask: owned });
}
