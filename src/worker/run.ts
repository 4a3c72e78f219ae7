/**
 * The run loop of `TrainerService.start`: optimizer steps until `maxSteps` or `stop()`, with
 * pause/resume between steps, periodic evaluation, and the progress events (`phase` before each
 * step and evaluation, `step`, `metrics`, `state`) a page plots. {@link RunController} holds one run's state; the service checks the
 * calls' preconditions and owns the trainer.
 */
import * as Comlink from 'comlink';
import type { InversionAttacksOptions } from '../eval/privacyUtility';
import type { StepReport, Trainer } from '../train/trainer';
import type { ProgressCallback, ProgressEvent, RunState, RunSummary, StepEvent } from './api';

/** How long a run goes and how it evaluates. */
export interface RunLimits {
  /** The step at which the run finishes (Infinity: until `stop()`). */
  maxSteps: number;
  /** Evaluate every this many steps (0: never). */
  evaluateEvery: number;
  /** Held-out batches per evaluation. */
  evaluateBatches: number;
  /** Evaluate before the first step when the run starts at step 0 (the untrained baseline). */
  evaluateAtStart: boolean;
  /** Run the learned attacks when the run finishes (their options), or null. */
  attackAtEnd?: InversionAttacksOptions | null;
}

/** The `step` event of a {@link StepReport}. */
export function stepEvent(r: StepReport): StepEvent {
  return {
    type: 'step',
    step: r.step,
    loss: r.loss,
    components: r.components,
    learningRate: r.learningRate,
    gradNorm: r.gradNorm,
    tokensPerSecond: r.tokensPerSecond,
    tokens: r.tokens,
    seconds: r.seconds,
    privacyWeightScale: r.privacyWeightScale,
  };
}

/** One run at a time: its state, the pause and stop requests, and who waits on them. */
export class RunController {
  /** The state of the current or last run (null: no run since the trainer was made). */
  state: RunState | null = null;
  private running: Promise<RunSummary> | null = null;
  private pauseRequested = false;
  private stopRequested = false;
  private wake: (() => void) | null = null;
  private pauseWaiters: ((s: RunState) => void)[] = [];
  private endWaiters: ((s: RunState) => void)[] = [];

  /** Whether a run is in progress (stepping or paused). */
  get active(): boolean {
    return this.running !== null;
  }

  /** Whether a pause was asked for and has neither taken effect nor been cancelled. */
  get pausePending(): boolean {
    return this.pauseRequested;
  }

  /**
   * Runs `trainer` until `limits.maxSteps` or {@link stop}. Resolves with how the run ended;
   * rejects with the original error if a step (or the callback) throws. Frees the callback's
   * comlink proxy at the end.
   */
  async start(trainer: Trainer, limits: RunLimits, onProgress: ProgressCallback | undefined): Promise<RunSummary> {
    this.pauseRequested = false;
    this.stopRequested = false;
    this.running = this.loop(trainer, limits, onProgress);
    try {
      return await this.running;
    } finally {
      this.running = null;
      // The callback is a comlink proxy when it came from a page: free its message port.
      (onProgress as Partial<Comlink.ProxyMethods> | undefined)?.[Comlink.releaseProxy]?.();
    }
  }

  /** Asks the run to pause after its current step; resolves as `TrainerService.pause` documents. */
  pause(): Promise<RunState> {
    if (this.state === 'paused') return Promise.resolve('paused');
    this.pauseRequested = true;
    return new Promise((resolve) => this.pauseWaiters.push(resolve));
  }

  /** Resumes a paused run, or cancels a pause that has not taken effect (its `pause()` resolves `'running'`). */
  resume(): void {
    this.pauseRequested = false;
    this.settle(this.pauseWaiters, 'running');
    this.wake?.();
  }

  /** Asks the run to end after its current step (at once when paused); resolves with its final state. */
  stop(): Promise<RunState> {
    this.stopRequested = true;
    this.wake?.();
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  /** Stops the run, if any, and waits for it to end (its error, if any, went to `start()`'s caller). */
  async end(): Promise<void> {
    if (!this.running) return;
    this.stopRequested = true;
    this.wake?.();
    await this.running.catch(() => {});
  }

  private async loop(trainer: Trainer, limits: RunLimits, onProgress: ProgressCallback | undefined): Promise<RunSummary> {
    const started = performance.now();
    const firstStep = trainer.stepCount;
    const emit = async (event: ProgressEvent) => {
      if (onProgress) await onProgress(event);
    };
    let final: RunSummary['state'];
    try {
      final = await this.steps(trainer, limits, emit);
      await this.setState(final, trainer, emit);
    } catch (e) {
      this.state = 'stopped';
      // Tell the page the run ended (best effort: the callback itself may be what failed).
      await emit({ type: 'state', state: 'stopped', step: trainer.stepCount }).catch(() => {});
      this.settle(this.pauseWaiters, 'stopped');
      this.settle(this.endWaiters, 'stopped');
      throw e;
    }
    this.settle(this.pauseWaiters, final);
    this.settle(this.endWaiters, final);
    return {
      state: final,
      step: trainer.stepCount,
      stepsThisRun: trainer.stepCount - firstStep,
      seconds: (performance.now() - started) / 1000,
    };
  }

  /** Steps, pauses and evaluates until the run ends; returns how (the final state event is the caller's). */
  private async steps(trainer: Trainer, limits: RunLimits, emit: (e: ProgressEvent) => Promise<void>): Promise<RunSummary['state']> {
    const { maxSteps, evaluateEvery, evaluateBatches } = limits;
    const finish = Number.isFinite(maxSteps) ? maxSteps : null;
    // Phase events go out before the work starts: a page says what is happening while it runs.
    let firstEvaluation = true;
    let firstStep = true;
    // The learned attacks go with the evaluation after the last step (one metrics event, not two).
    const attack = limits.attackAtEnd ?? null;
    let attacked = false;
    const metrics = async () => {
      const withAttack = attack !== null && trainer.stepCount >= maxSteps;
      await emit({ type: 'phase', phase: 'evaluate', step: trainer.stepCount, first: firstEvaluation, maxSteps: finish });
      firstEvaluation = false;
      const m = await trainer.evaluate(evaluateBatches);
      const attacks = withAttack ? { attack: await trainer.attack(attack) } : {};
      attacked ||= withAttack;
      await emit({ type: 'metrics', step: trainer.stepCount, ...m, ...attacks });
    };
    await this.setState('running', trainer, emit);
    let evaluatedAt = -1;
    if (limits.evaluateAtStart && trainer.stepCount === 0 && !this.stopRequested) {
      await metrics();
      evaluatedAt = 0;
    }
    for (;;) {
      if (this.stopRequested) return 'stopped';
      if (this.pauseRequested) {
        await this.setState('paused', trainer, emit);
        this.settle(this.pauseWaiters, 'paused');
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = null;
        if (this.stopRequested) return 'stopped';
        await this.setState('running', trainer, emit);
        continue;
      }
      if (trainer.stepCount >= maxSteps) {
        if ((evaluateEvery > 0 && evaluatedAt !== trainer.stepCount) || (attack && !attacked)) await metrics();
        return 'finished';
      }
      await emit({ type: 'phase', phase: 'step', step: trainer.stepCount + 1, first: firstStep, maxSteps: finish });
      firstStep = false;
      await emit(stepEvent(await trainer.step()));
      if (evaluateEvery > 0 && trainer.stepCount % evaluateEvery === 0) {
        await metrics();
        evaluatedAt = trainer.stepCount;
      }
    }
  }

  private async setState(state: RunState, trainer: Trainer, emit: (e: ProgressEvent) => Promise<void>): Promise<void> {
    this.state = state;
    await emit({ type: 'state', state, step: trainer.stepCount });
  }

  private settle(waiters: ((s: RunState) => void)[], state: RunState): void {
    for (const w of waiters.splice(0)) w(state);
  }
}
