/**
 * The distillation cross-entropy (`distillationCrossEntropyLoss` of LOSSES.md), over
 * `shaders/crossEntropy.wgsl`: one fused pass over both logit tensors, a small mean pass, and a
 * fused backward. No softmax tensor is ever made, so vocabularies of 150,000+ entries cost only
 * their logits.
 */
import source from '../../shaders/crossEntropy.wgsl?raw';
import { getContext } from '../gpu/context';
import { maskedRowMean } from './maskedMean';
import { defineOp } from '../autograd/engine';
import { Tensor } from '../tensor/tensor';
import { checkLogitsPair, maskTensor, type MaskInput } from '../tensor/validate';

const WG = 256;
const FN = 'distillationCrossEntropy';

function params(rows: number, cols: number): Uint32Array {
  return new Uint32Array([rows, cols, 0, 0]);
}

const crossEntropyOp = defineOp<{ ownedMask: boolean }>({
  name: 'distillationCrossEntropy',
  forward: ([teacher, student, mask], { ownedMask }) => {
    const ctx = getContext();
    const cols = student.shape[2];
    const rows = student.size / cols;
    const rowStats = Tensor.empty([rows, 4]);
    const rowLoss = Tensor.empty([rows]);
    const p = params(rows, cols);
    if (rows > 0) {
      ctx.dispatch({
        shader: source,
        entryPoint: 'crossEntropyForward',
        label: FN,
        resources: {
          teacher: teacher.buffer,
          student: student.buffer,
          mask: mask.buffer,
          rowStats: rowStats.buffer,
          rowLoss: rowLoss.buffer,
        },
        params: p,
        workgroups: [ctx.gridSize(rows, 1)],
      });
    }
    const { loss, lossScale } = maskedRowMean(rowLoss, mask, FN);
    rowLoss.dispose();
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
      ctx.dispatch({
        shader: source,
        entryPoint: 'crossEntropyBackward',
        label: `${FN} (backward)`,
        resources: {
          teacher: teacher.buffer,
          student: student.buffer,
          mask: mask.buffer,
          savedStats: rowStats.buffer,
          savedScale: lossScale.buffer,
          grad: g.buffer,
          gradStudent: gradStudent.buffer,
        },
        params: params(rows, cols),
        workgroups: [ctx.gridSize(student.size, WG)],
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
