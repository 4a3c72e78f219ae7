/**
 * The demo's time estimates (demo/ui/timing.ts): the evaluations a run still makes (checked
 * against a step-by-step simulation of the worker's run loop), the ETA from measured step and
 * evaluation times (a first step, which also compiles kernels, only as an upper bound), and the
 * step times remembered per model and settings.
 */
import { describe, expect, it } from 'vitest';
import {
  TimingMemory,
  describeEstimate,
  estimateRemaining,
  evaluationsLeft,
  formatDuration,
  median,
  timingModelKey,
} from '../../demo/ui/timing';

/** The evaluations of src/worker/run.ts's loop, made one step at a time: after each multiple, and at the end if the last step was not one. */
function simulatedEvaluationSteps(maxSteps: number, every: number): number[] {
  const made: number[] = [];
  let evaluatedAt = -1;
  for (let step = 1; step <= maxSteps; step++) {
    if (step % every === 0) {
      made.push(step);
      evaluatedAt = step;
    }
  }
  if (evaluatedAt !== maxSteps) made.push(maxSteps);
  return made;
}

describe('demo timing', () => {
  it('counts the evaluations left as the run loop makes them, whether or not the one due now is made', () => {
    for (const maxSteps of [1, 2, 3, 7, 10, 12]) {
      for (const every of [1, 2, 3, 5, 10, 20]) {
        const made = simulatedEvaluationSteps(maxSteps, every);
        for (let step = 0; step <= maxSteps; step++) {
          // Right after step `step`'s event: the evaluation due after it is not made yet.
          const pending = made.filter((m) => m >= step && m > 0).length;
          expect(evaluationsLeft(step, maxSteps, every, step - 1), `max ${maxSteps} every ${every} step ${step}`).toBe(pending);
          // After the evaluation at `step` (or when none is due there).
          expect(evaluationsLeft(step, maxSteps, every), `max ${maxSteps} every ${every} step ${step} evaluated`).toBe(
            made.filter((m) => m > step).length,
          );
        }
      }
    }
    expect(evaluationsLeft(0, 100, 0)).toBe(0);
  });

  it('gives an ETA only after a step, an upper bound while only the first step or evaluation is measured', () => {
    const run = { evaluatedAt: -1, maxSteps: 10, evaluateEvery: 5 };
    expect(estimateRemaining({ steps: [], evaluations: [] }, { ...run, step: 0 })).toBeNull();
    // One step of 30 s (compiling included), one baseline evaluation of 12 s: 9 steps and 2 evaluations left.
    const first = estimateRemaining({ steps: [30], evaluations: [12] }, { ...run, step: 1, evaluatedAt: 0 });
    expect(first).toEqual({ seconds: 9 * 30 + 2 * 12, upperBound: true, perStep: 30, perEvaluation: 12, unmeasuredEvaluations: 0 });
    // Later steps replace the first: the median of steps 2.. (1, 3, 2 s -> 2 s); evaluations still first-only.
    const later = estimateRemaining({ steps: [30, 1, 3, 2], evaluations: [12] }, { ...run, step: 4, evaluatedAt: 0 });
    expect(later).toMatchObject({ seconds: 6 * 2 + 2 * 12, upperBound: true, perStep: 2 });
    const settled = estimateRemaining({ steps: [30, 1, 3, 2, 2, 2], evaluations: [12, 4] }, { ...run, step: 6, evaluatedAt: 5 });
    expect(settled).toEqual({ seconds: 4 * 2 + 1 * 4, upperBound: false, perStep: 2, perEvaluation: 4, unmeasuredEvaluations: 0 });
    // No evaluation measured yet: the ETA says how many it leaves out.
    const noEval = estimateRemaining({ steps: [5, 1, 1], evaluations: [] }, { ...run, step: 3 });
    expect(noEval).toMatchObject({ seconds: 7, upperBound: false, perEvaluation: null, unmeasuredEvaluations: 2 });
    // The evaluation after the last step is still ahead when its step event arrives.
    const last = estimateRemaining({ steps: [5, 1], evaluations: [9, 3] }, { ...run, step: 10, evaluatedAt: 5 });
    expect(last).toMatchObject({ seconds: 3, upperBound: false });
  });

  it('formats durations and takes medians', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
    expect(formatDuration(0.04)).toBe('under 0.1 s');
    expect(formatDuration(0.84)).toBe('0.8 s');
    expect(formatDuration(42.4)).toBe('42 s');
    expect(formatDuration(252)).toBe('4 min 12 s');
    expect(formatDuration(240)).toBe('4 min');
    expect(formatDuration(14 * 60 + 20)).toBe('14 min');
    expect(formatDuration(3900)).toBe('1 h 5 min');
    expect(formatDuration(Number.NaN)).toBe('unknown');
  });

  it('remembers step times per model and settings, scales them by tokens for other sizes, and survives a reload', () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) };
    const model = timingModelKey({ type: 'llama', layers: 4, hiddenSize: 128, vocabSize: 259 }, 'google swiftshader');
    const shape = { model, factory: 'crossEntropyDistillation', batchSize: 2, seqLen: 16 };
    const memory = new TimingMemory(storage);
    expect(memory.lookup(shape)).toBeNull();
    expect(describeEstimate(null, { maxSteps: 300, evaluateEvery: 10 })).toMatch(/^Time: unknown until a first step runs/);

    // A first step only: an upper bound, replaced by a real measurement, which a later first-only run does not undo.
    memory.remember(shape, { steps: [30], evaluations: [12] });
    expect(memory.lookup(shape)).toMatchObject({ stepSeconds: 30, upperBound: true, scaledFrom: null });
    memory.remember(shape, { steps: [30, 2, 4, 3], evaluations: [12, 5, 5] });
    memory.remember(shape, { steps: [25], evaluations: [] });
    const measured = memory.lookup(shape);
    expect(measured).toMatchObject({ stepSeconds: 3, evaluationSeconds: 5, upperBound: false, scaledFrom: null });
    // 300 steps at 3 s, the baseline and 30 evaluations at 5 s.
    expect(describeEstimate(measured, { maxSteps: 300, evaluateEvery: 10 })).toBe(
      `Time: about ${formatDuration(300 * 3 + 31 * 5)} (3.0 s a step, measured in this browser).`,
    );
    expect(describeEstimate(measured, { maxSteps: 300, evaluateEvery: 0 }, true)).toBe(
      'Time: about 15 min (3.0 s a step, measured in this browser), plus compiling the kernels at the first step.',
    );

    // Another size of the same model and factory: scaled by tokens per step; another factory: unknown.
    const reloaded = new TimingMemory(storage);
    const bigger = reloaded.lookup({ ...shape, batchSize: 4, seqLen: 64 });
    expect(bigger).toMatchObject({ stepSeconds: 24, evaluationSeconds: 40, scaledFrom: { batchSize: 2, seqLen: 16 } });
    expect(describeEstimate(bigger, { maxSteps: 10, evaluateEvery: 0 })).toBe(
      'Time: about 4 min (rough: scaled from 24 s a step at batch 2 × 16).',
    );
    expect(reloaded.lookup({ ...shape, factory: 'distillation' })).toBeNull();
    expect(
      reloaded.lookup({ ...shape, model: timingModelKey({ type: 'llama', layers: 4, hiddenSize: 128, vocabSize: 259 }, 'nvidia') }),
    ).toBeNull();

    // Unreadable or missing storage: nothing remembered, nothing thrown.
    store.set('sgt-demo-step-times', '{not json');
    expect(new TimingMemory(storage).lookup(shape)).toBeNull();
    const inMemory = new TimingMemory(null);
    inMemory.remember(shape, { steps: [1, 2], evaluations: [] });
    expect(inMemory.lookup(shape)).toMatchObject({ stepSeconds: 2, evaluationSeconds: null });
  });
});
