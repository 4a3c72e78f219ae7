/**
 * The demo's run status line: what is happening now (loading the model, preparing, measuring the
 * untrained transform, compiling the kernels at the first step, step k of n, evaluating, paused,
 * done, error), how long the current phase has taken so far, and the ETA once a step is measured.
 * The worker announces each step and evaluation before it starts (`phase` events), so the line
 * changes before the slow work, not after it.
 */
import type { ProgressEvent } from '../../src/worker/workerApi';
import { estimateRemaining, formatDuration, type RunTimes } from './timing';

/** What the line is showing (`data-phase` on the line, for styling and tests). */
export type Phase =
  | 'idle'
  | 'loading'
  | 'ready'
  | 'preparing'
  | 'baseline'
  | 'first-step'
  | 'step'
  | 'evaluating'
  | 'paused'
  | 'done'
  | 'stopped'
  | 'error';

/** The elements of the status line. */
export interface StatusElements {
  /** The live region (role=status) holding the phase text. */
  line: HTMLElement;
  text: HTMLElement;
  /** Seconds spent in the current phase (updated every second, hidden from screen readers). */
  elapsed: HTMLElement;
  /** The ETA (or why there is none yet). */
  eta: HTMLElement;
}

const BUSY: ReadonlySet<Phase> = new Set(['loading', 'preparing', 'baseline', 'first-step', 'step', 'evaluating']);

/** The status line of one page: {@link show} a phase, or feed it a run's progress events. */
export class RunStatus {
  private phaseStarted = performance.now();
  private timer: ReturnType<typeof setInterval> | null = null;
  private times: RunTimes = { steps: [], evaluations: [] };
  private evaluationStarted: number | null = null;
  /** The step of the run's last evaluation (-1: none yet). */
  private evaluatedAt = -1;
  private eta: { seconds: number; at: number; text: (left: string) => string } | null = null;
  private run = { maxSteps: 0, evaluateEvery: 0 };

  constructor(private readonly el: StatusElements) {}

  /** The times measured by the current run. */
  get measured(): RunTimes {
    return { steps: [...this.times.steps], evaluations: [...this.times.evaluations] };
  }

  /** Shows a phase; busy phases show their elapsed time, ticking. */
  show(phase: Phase, text: string): void {
    this.el.line.dataset.phase = phase;
    this.el.text.textContent = text;
    this.phaseStarted = performance.now();
    const busy = BUSY.has(phase);
    if (busy && !this.timer) this.timer = setInterval(() => this.tick(), 1000);
    if (!busy && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    this.tick();
  }

  /** A new run: forgets the last one's times and ETA. */
  beginRun(run: { maxSteps: number; evaluateEvery: number }): void {
    this.run = run;
    this.times = { steps: [], evaluations: [] };
    this.evaluationStarted = null;
    this.evaluatedAt = -1;
    this.eta = null;
    this.el.eta.textContent = 'Time left: known after the first step.';
  }

  /** Clears the ETA line (between runs) or sets it to `text`. */
  setEtaText(text: string): void {
    this.eta = null;
    this.el.eta.textContent = text;
  }

  /** Follows a run's progress event. */
  onEvent(event: ProgressEvent): void {
    const { maxSteps } = this.run;
    if (event.type === 'phase' && event.phase === 'evaluate') {
      this.evaluationStarted = performance.now();
      const compiling = event.first
        ? ' The first evaluation also compiles the GPU kernels it needs: up to a minute on a software GPU.'
        : '';
      if (event.step === 0) this.show('baseline', `Measuring the untrained transform on held-out text (the baseline)…${compiling}`);
      else this.show('evaluating', `Evaluating on held-out text after step ${event.step} of ${maxSteps}…${compiling}`);
    } else if (event.type === 'phase') {
      if (event.first)
        this.show(
          'first-step',
          `Step ${event.step} of ${maxSteps}: the first step also compiles the GPU kernels it needs (up to a minute on a software GPU)…`,
        );
      else this.show('step', `Training: step ${event.step} of ${maxSteps}…`);
    } else if (event.type === 'metrics') {
      if (this.evaluationStarted !== null) this.times.evaluations.push((performance.now() - this.evaluationStarted) / 1000);
      this.evaluationStarted = null;
      this.evaluatedAt = event.step;
      this.updateEta(event.step);
    } else if (event.type === 'step') {
      this.times.steps.push(event.seconds);
      this.updateEta(event.step);
    } else if (event.state === 'paused') {
      this.show('paused', `Paused after step ${event.step} of ${maxSteps}. Resume goes on from there.`);
      this.eta = null;
      this.el.eta.textContent = 'Time left: paused.';
    }
  }

  private updateEta(step: number): void {
    const eta = estimateRemaining(this.times, { step, evaluatedAt: this.evaluatedAt, ...this.run });
    if (!eta) return;
    const parts = [`${formatDuration(eta.perStep)} a step`];
    if (eta.perEvaluation !== null) parts.push(`${formatDuration(eta.perEvaluation)} an evaluation`);
    if (eta.unmeasuredEvaluations > 0) parts.push(`${eta.unmeasuredEvaluations} evaluations not counted yet`);
    if (eta.upperBound) parts.push('the first step and evaluation also compiled the kernels, so it should go faster');
    const measured = parts.join('; ');
    this.eta = {
      seconds: eta.seconds,
      at: performance.now(),
      text: (left) => `Time left: ${eta.upperBound ? 'at most about' : 'about'} ${left} (${measured}).`,
    };
    this.tick();
  }

  private tick(): void {
    const busy = BUSY.has((this.el.line.dataset.phase ?? 'idle') as Phase);
    const seconds = (performance.now() - this.phaseStarted) / 1000;
    this.el.elapsed.textContent = busy && seconds >= 1 ? ` ${Math.floor(seconds)} s` : '';
    if (this.eta) {
      const left = Math.max(0, this.eta.seconds - (performance.now() - this.eta.at) / 1000);
      this.el.eta.textContent = this.eta.text(formatDuration(left));
    }
  }
}
