/**
 * The fine-tuning demo page: loads a model into the trainer worker, trains a Stained Glass
 * Transform with the chosen loss factory while plotting every component loss and the privacy /
 * utility metrics, and shows what the transform does to a typed prompt. All GPU work happens in
 * the worker (`demo-worker.ts`); this file only wires the DOM to it.
 */
import * as Comlink from 'comlink';
import './style.css';
import type { DemoWorkerApi } from './demo-worker';
import type { MetricsEvent, ProgressEvent, RunState } from '../src/worker/workerApi';
import { RECOMMENDED_RUNS, type FactoryName } from '../src/factories/options';
import { scheduleForRun } from '../src/factories/schedule';
import { TrainingForm } from './ui/form';
import { LineChart, LossCharts } from './ui/charts';
import { checkWebGpu, renderWebGpuHelp } from './ui/webgpu';
import { fetchDefaultModel, formatBytes, readPickedFiles, weightBuffers, type ModelFiles } from './ui/modelFiles';
import { renderInspect } from './ui/inspectView';
import { RunStatus } from './ui/status';
import { TimingMemory, describeEstimate, formatDuration, timingModelKey } from './ui/timing';
import { loadBible, pickVerses, splitDocuments, type Bible } from './corpus';

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`demo: the page has no #${id}`);
  return e as T;
};

const ui = {
  adapter: $('adapter'),
  webgpuHelp: $('webgpu-help'),
  loadDefault: $<HTMLButtonElement>('load-default'),
  modelFolder: $<HTMLInputElement>('model-folder'),
  modelFiles: $<HTMLInputElement>('model-files'),
  modelProgress: $<HTMLProgressElement>('model-progress'),
  modelStatus: $('model-status'),
  corpusKjv: $<HTMLInputElement>('corpus-kjv'),
  corpusOwn: $<HTMLInputElement>('corpus-own'),
  kjvOptions: $('kjv-options'),
  ownOptions: $('own-options'),
  corpusBook: $<HTMLSelectElement>('corpus-book'),
  corpusCount: $<HTMLInputElement>('corpus-count'),
  corpusCountError: $('error-corpus-count'),
  corpusText: $<HTMLTextAreaElement>('corpus-text'),
  corpusStatus: $('corpus-status'),
  start: $<HTMLButtonElement>('start'),
  pause: $<HTMLButtonElement>('pause'),
  resume: $<HTMLButtonElement>('resume'),
  stop: $<HTMLButtonElement>('stop'),
  download: $<HTMLButtonElement>('download'),
  runStatus: $('run-status'),
  runState: $('run-state'),
  step: $('step'),
  loss: $('loss'),
  lossBefore: $('loss-before'),
  throughput: $('throughput'),
  nnfr: $('nnfr'),
  nnfrBefore: $('nnfr-before'),
  agreement: $('agreement'),
  agreementBefore: $('agreement-before'),
  kl: $('kl'),
  accuracyDrop: $('accuracy-drop'),
  accuracyDropBefore: $('accuracy-drop-before'),
  perplexityRatio: $('perplexity-ratio'),
  perplexityRatioBefore: $('perplexity-ratio-before'),
  attack: $('attack'),
  attackClean: $('attack-clean'),
  klBefore: $('kl-before'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  inspect: $<HTMLButtonElement>('inspect'),
  inspectTokens: $<HTMLInputElement>('inspect-tokens'),
  inspectTokensError: $('error-inspect-tokens'),
  inspectStatus: $('inspect-status'),
  inspectOutput: $('inspect-output'),
};

/** Where the page stands; every button's state follows from it (see `refresh`). */
const state = {
  gpu: false,
  /** The worker holds a model that loaded without error (`timingKey`: the model on this adapter, for remembered step times). */
  model: null as null | { layers: number; maxPositions: number; tokenizer: string; timingKey: string },
  /** The WebGPU adapter, as the worker reported it. */
  adapter: '',
  /** A run on this page compiled the kernels already (the estimate then leaves out compiling). */
  compiled: false,
  loadingModel: false,
  /** The worker holds a trainer (configure succeeded at least once for this model). */
  configured: false,
  run: 'idle' as 'idle' | 'starting' | RunState,
  stepsPlanned: 0,
  factory: null as FactoryName | null,
  /** A download or an inspection is in flight. */
  busy: false,
  bible: null as Bible | null,
};

const message = (e: unknown): string => {
  const m = e instanceof Error ? e.message : String(e);
  // Errors from the worker carry the service's method prefix: the page says where it happened.
  return m.replace(/^TrainerService\.\w+: /, '');
};

function setStatus(el: HTMLElement, text: string, kind: 'info' | 'ok' | 'error' = 'info'): void {
  el.textContent = text;
  el.dataset.kind = kind;
}

// ---------------------------------------------------------------------------------------------
// The worker

const worker = new Worker(new URL('./demo-worker.ts', import.meta.url), { type: 'module', name: 'sgt-trainer' });
const api = Comlink.wrap<DemoWorkerApi>(worker);
worker.addEventListener('error', (e) =>
  setStatus(ui.runStatus, `The training worker failed: ${e.message || 'unknown error'}. Reload the page.`, 'error'),
);

// ---------------------------------------------------------------------------------------------
// The form

// The form starts from the library's defaults, which live in the worker; a worker that does not
// start (an old browser without module workers, a blocked script) must not leave a blank page.
const defaults = await Promise.race([
  api.factoryDefaults(),
  new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 20 s')), 20_000)),
]).catch((e: unknown) => {
  setStatus(
    ui.runStatus,
    `The training worker did not start (${message(e)}). This browser may not support module Web Workers; try a current Chrome, Edge, Firefox or Safari.`,
    'error',
  );
  throw e;
});
const form = new TrainingForm($('factory-box'), $('factory-fields'), $('run-fields'), defaults);
form.onChange = () => refresh();

const lossCharts = new LossCharts($('chart-losses'));
/** The metrics chart's series, in the order {@link metricValues} gives them. */
const METRIC_SERIES = ['NN-FR', 'NN-FR (L2)', 'top-1 agreement', 'student accuracy', 'teacher accuracy'];
/** One metrics event's values of the chart's series. */
function metricValues(e: MetricsEvent): number[] {
  return [e.nearestNeighbourFailureRate, e.nearestNeighbourFailureRateL2, e.top1Agreement, e.studentAccuracy, e.teacherAccuracy];
}
const metricsChart = new LineChart($('chart-metrics'), { yRange: [0, 1], digits: 1, percent: true, points: true });
lossCharts.reset(['loss']);
metricsChart.reset(METRIC_SERIES);

const status = new RunStatus({ line: $('run-phase'), text: $('run-phase-text'), elapsed: $('run-phase-elapsed'), eta: $('run-eta') });
const timingMemory = new TimingMemory(
  (() => {
    try {
      return window.localStorage;
    } catch {
      return null; // Storage blocked (a sandboxed frame, strict privacy settings): remember in memory only.
    }
  })(),
);
// The time estimate sits under the steps field and follows every change of the settings.
const stepsEstimate = Object.assign(document.createElement('p'), { id: 'steps-estimate', className: 'estimate' });
stepsEstimate.dataset.testid = 'steps-estimate';
form.addRunNote('maxSteps', stepsEstimate);

function updateEstimate(): void {
  const v = form.values();
  if (!state.model) stepsEstimate.textContent = 'Time: known once a model is loaded and a step has run.';
  else if (!v) stepsEstimate.textContent = '';
  else {
    const shape = { model: state.model.timingKey, factory: v.factory, batchSize: v.run.batchSize, seqLen: v.run.seqLen };
    stepsEstimate.textContent = describeEstimate(timingMemory.lookup(shape), v.run, !state.compiled);
  }
}

function corpusCountValue(): number | null {
  const v = Number(ui.corpusCount.value.trim());
  return Number.isInteger(v) && v >= 1 ? v : null;
}

/** Greedy tokens per side: each reruns the whole sequence, so a slow adapter wants few. */
function inspectTokensValue(): number | null {
  const v = Number(ui.inspectTokens.value.trim());
  return Number.isInteger(v) && v >= 1 && v <= 128 ? v : null;
}

function corpusReady(): boolean {
  if (ui.corpusOwn.checked) return ui.corpusText.value.trim().length > 0;
  return state.bible !== null && corpusCountValue() !== null;
}

/** Enables exactly the controls that make sense now. */
function refresh(): void {
  const idle = state.run === 'idle' || state.run === 'stopped' || state.run === 'finished';
  const ready = state.gpu && state.model !== null && !state.loadingModel;
  ui.start.disabled = !(ready && idle && !state.busy && form.valid && corpusReady());
  ui.pause.disabled = state.run !== 'running' || state.busy;
  ui.resume.disabled = state.run !== 'paused' || state.busy;
  ui.stop.disabled = !(state.run === 'running' || state.run === 'paused') || state.busy;
  ui.download.disabled = !(ready && state.configured && (idle || state.run === 'paused') && !state.busy);
  ui.inspect.disabled = !(
    ready &&
    state.configured &&
    state.run !== 'starting' &&
    !state.busy &&
    ui.prompt.value.length > 0 &&
    inspectTokensValue() !== null
  );
  ui.inspectTokensError.textContent = inspectTokensValue() === null ? 'Must be a whole number from 1 to 128.' : '';
  ui.inspectTokens.setAttribute('aria-invalid', String(inspectTokensValue() === null));
  const modelLocked = !state.gpu || state.loadingModel || !idle || state.busy;
  ui.loadDefault.disabled = modelLocked;
  ui.modelFolder.disabled = modelLocked;
  ui.modelFiles.disabled = modelLocked;
  form.setDisabled(!idle);
  for (const el of [ui.corpusKjv, ui.corpusOwn, ui.corpusBook, ui.corpusCount, ui.corpusText]) el.disabled = !idle;
  ui.runState.textContent = state.run === 'starting' ? 'starting' : state.run;
  ui.corpusCountError.textContent = ui.corpusKjv.checked && corpusCountValue() === null ? 'Must be a whole number ≥ 1.' : '';
  ui.corpusCount.setAttribute('aria-invalid', String(ui.corpusKjv.checked && corpusCountValue() === null));
  const why = !state.gpu
    ? 'WebGPU is not available.'
    : state.loadingModel
      ? 'Loading the model…'
      : !state.model
        ? 'Load a model first.'
        : !form.valid
          ? 'Fix the highlighted fields to start.'
          : !corpusReady()
            ? 'Choose the training text.'
            : '';
  ui.start.title = why;
  updateEstimate();
}

/** Says how much text the chosen source gives (in UTF-8 bytes). */
function showCorpus(): void {
  if (ui.corpusOwn.checked) {
    const docs = splitDocuments(ui.corpusText.value);
    const bytes = new TextEncoder().encode(docs.join('\n')).length;
    setStatus(
      ui.corpusStatus,
      docs.length
        ? `${docs.length} document${docs.length === 1 ? '' : 's'}, ${formatBytes(bytes)} of UTF-8.`
        : 'Paste some text to train on.',
    );
  } else if (state.bible) {
    const count = corpusCountValue();
    if (count === null) {
      setStatus(ui.corpusStatus, '');
      return;
    }
    const verses = pickVerses(state.bible, ui.corpusBook.value, count);
    const got = verses.reduce((n, d) => n + d.split('\n').length, 0);
    const bytes = new TextEncoder().encode(verses.join('\n')).length;
    setStatus(ui.corpusStatus, `${got} verses of ${ui.corpusBook.value} (${formatBytes(bytes)} of UTF-8), in documents of 10 verses.`);
  }
}

for (const el of [ui.corpusKjv, ui.corpusOwn]) {
  el.addEventListener('change', () => {
    ui.kjvOptions.hidden = !ui.corpusKjv.checked;
    ui.ownOptions.hidden = !ui.corpusOwn.checked;
    showCorpus();
    refresh();
  });
}
for (const el of [ui.corpusCount, ui.corpusText, ui.corpusBook]) {
  el.addEventListener(el === ui.corpusBook ? 'change' : 'input', () => {
    showCorpus();
    refresh();
  });
}
for (const el of [ui.prompt, ui.inspectTokens]) el.addEventListener('input', () => refresh());

/** The training documents from the chosen source. */
function trainingDocuments(): string[] {
  if (ui.corpusOwn.checked) return splitDocuments(ui.corpusText.value);
  return pickVerses(state.bible!, ui.corpusBook.value, corpusCountValue() ?? 0);
}

// ---------------------------------------------------------------------------------------------
// Model loading

async function loadModel(get: () => Promise<ModelFiles>): Promise<void> {
  state.loadingModel = true;
  state.model = null;
  state.configured = false;
  form.setModel(null, null);
  refresh();
  ui.modelProgress.hidden = false;
  ui.modelProgress.removeAttribute('value');
  setStatus(ui.modelStatus, 'Reading the model files…');
  status.show('loading', 'Loading the model…');
  try {
    const files = await get();
    const size = weightBuffers(files.weights).reduce((n, b) => n + b.byteLength, 0);
    setStatus(ui.modelStatus, `Uploading ${formatBytes(size)} of weights to the GPU…`);
    ui.modelProgress.removeAttribute('value');
    const { weights, config, tokenizerJson, tokenizerConfig } = files;
    // Transferred, not copied: a model can be hundreds of megabytes.
    const summary = await api.loadModel(Comlink.transfer({ config, weights, tokenizerJson, tokenizerConfig }, weightBuffers(weights)));
    state.model = {
      layers: summary.layers,
      maxPositions: summary.maxPositions,
      tokenizer: summary.tokenizer,
      timingKey: timingModelKey(summary, state.adapter),
    };
    form.setModel(summary.layers, summary.maxPositions);
    const params =
      summary.parameterCount >= 1e6 ? `${(summary.parameterCount / 1e6).toFixed(1)} M` : `${(summary.parameterCount / 1e3).toFixed(0)} k`;
    const tok =
      summary.tokenizer === 'huggingface'
        ? 'its tokenizer.json'
        : summary.tokenizer === 'byte'
          ? 'UTF-8 bytes'
          : 'no tokenizer (text training is not possible)';
    setStatus(
      ui.modelStatus,
      `Loaded ${files.source}: ${summary.type}, ${summary.layers} layers, width ${summary.hiddenSize}, ${summary.heads} heads, ` +
        `vocabulary ${summary.vocabSize.toLocaleString('en')}, ${summary.maxPositions} positions, ${params} parameters; text as ${tok}.`,
      'ok',
    );
    if (summary.tokenizer === 'none') {
      state.model = null;
      setStatus(ui.modelStatus, `${ui.modelStatus.textContent} Add its tokenizer.json to train on text.`, 'error');
    }
  } catch (e) {
    state.model = null;
    setStatus(ui.modelStatus, `Could not load the model: ${message(e)}`, 'error');
  } finally {
    state.loadingModel = false;
    ui.modelProgress.hidden = true;
    if (state.model) status.show('ready', 'Ready: choose the text and the settings, then press Start.');
    else status.show('idle', 'No model: load one above to train.');
    refresh();
  }
}

ui.loadDefault.addEventListener('click', () =>
  loadModel(() =>
    fetchDefaultModel((loaded, total) => {
      if (total) ui.modelProgress.value = loaded / total;
      setStatus(ui.modelStatus, `Downloading the default model: ${formatBytes(loaded)}${total ? ` of ${formatBytes(total)}` : ''}…`);
    }),
  ),
);
for (const input of [ui.modelFolder, ui.modelFiles]) {
  input.addEventListener('change', () => {
    const files = input.files ? Array.from(input.files) : [];
    input.value = '';
    if (files.length) void loadModel(() => readPickedFiles(files));
  });
}

// ---------------------------------------------------------------------------------------------
// Training

let tokensPerSecond = 0;

/** "53.2%", as the CLI and the chart's legend print shares. */
const percent = (v: number): string => `${(v * 100).toFixed(1)}%`;

function onProgress(event: ProgressEvent): void {
  status.onEvent(event);
  if (event.type === 'step') {
    // The components depend on the factory: the first step of a run names them.
    const keys = ['loss', ...Object.keys(event.components).filter((k) => k !== 'loss')];
    if (keys.join() !== lossCharts.keys.join()) lossCharts.reset(keys);
    lossCharts.push(event.step, event.components);
    // The first step's loss was measured with the untrained transform, before its update.
    if (event.step === 1) {
      lossCharts.setBaselines(event.components);
      ui.lossBefore.textContent = `before training: ${event.loss.toFixed(4)}`;
    }
    ui.step.textContent = state.stepsPlanned ? `${event.step} / ${state.stepsPlanned}` : String(event.step);
    ui.loss.textContent = event.loss.toFixed(4);
    // Smoothed: one step's time jitters with the browser's other work.
    tokensPerSecond = tokensPerSecond === 0 ? event.tokensPerSecond : 0.8 * tokensPerSecond + 0.2 * event.tokensPerSecond;
    const perStep = document.createElement('small');
    perStep.textContent = `${(1 / Math.max(event.seconds, 1e-6)).toFixed(2)} steps/s`;
    ui.throughput.replaceChildren(`${Math.round(tokensPerSecond).toLocaleString('en')} tokens/s `, perStep);
  } else if (event.type === 'metrics') {
    showMetrics(event);
  } else if (event.type === 'state') {
    state.run = event.state;
    refresh();
  }
}

/** A metrics event on the chart and the tiles; the step-0 event (the untrained transform) also as the baselines. */
function showMetrics(event: MetricsEvent): void {
  metricsChart.push(event.step, metricValues(event));
  const drop = (e: MetricsEvent) => `${e.accuracyDropPoints.toFixed(2)} points`;
  ui.nnfr.textContent = percent(event.nearestNeighbourFailureRate);
  ui.agreement.textContent = percent(event.top1Agreement);
  ui.kl.textContent = event.meanKL.toFixed(4);
  ui.accuracyDrop.textContent = drop(event);
  ui.perplexityRatio.textContent = event.perplexityRatio.toFixed(3);
  if (event.step === 0) {
    metricsChart.setBaselines(metricValues(event));
    ui.nnfrBefore.textContent = `before training: ${percent(event.nearestNeighbourFailureRate)}`;
    ui.agreementBefore.textContent = `before training: ${percent(event.top1Agreement)}`;
    ui.klBefore.textContent = `before training: ${event.meanKL.toFixed(4)}`;
    ui.accuracyDropBefore.textContent = `before training: ${drop(event)}`;
    ui.perplexityRatioBefore.textContent = `before training: ${event.perplexityRatio.toFixed(3)}`;
  }
  if (event.attack) {
    const a = event.attack;
    ui.attack.textContent = `${percent(a.linear.recoveryRate)} / ${percent(a.mlp.recoveryRate)} recovered`;
    ui.attackClean.textContent = `clean embeddings: ${percent(a.linearClean.recoveryRate)} / ${percent(a.mlpClean.recoveryRate)}`;
  }
}

/** Empties the tiles and the charts for a new run. */
function clearRunDisplay(): void {
  tokensPerSecond = 0;
  lossCharts.reset(['loss']);
  metricsChart.reset(METRIC_SERIES);
  for (const el of [ui.loss, ui.throughput, ui.nnfr, ui.agreement, ui.kl, ui.accuracyDrop, ui.perplexityRatio, ui.attack])
    el.textContent = '–';
  for (const el of [
    ui.lossBefore,
    ui.nnfrBefore,
    ui.agreementBefore,
    ui.klBefore,
    ui.accuracyDropBefore,
    ui.perplexityRatioBefore,
    ui.attackClean,
  ])
    el.textContent = '';
  ui.step.textContent = `0 / ${state.stepsPlanned}`;
}

ui.start.addEventListener('click', async () => {
  const values = form.values();
  if (!values || !state.model) return;
  // Said at once: the worker's own phase events follow as soon as the data and the transform are built.
  status.show('preparing', 'Preparing the data and the transform…');
  status.setEtaText('');
  state.run = 'starting';
  refresh();
  const { run } = values;
  const shape = { model: state.model.timingKey, factory: values.factory, batchSize: run.batchSize, seqLen: run.seqLen };
  let started = false;
  try {
    setStatus(ui.runStatus, '');
    const text = trainingDocuments();
    const summary = await api.configure({
      factory: values.factory,
      factoryOptions: values.factoryOptions,
      batchSize: run.batchSize,
      seqLen: run.seqLen,
      learningRate: run.learningRate,
      // The factory's recommended schedule shape, ramped over the share of the steps the form says.
      privacySchedule:
        run.privacyRamp > 0 ? scheduleForRun(RECOMMENDED_RUNS[values.factory].privacySchedule, run.privacyRamp, run.maxSteps) : null,
      maxSteps: run.maxSteps,
      evaluateEvery: run.evaluateEvery,
      // Two held-out batches keep an evaluation at a few steps' cost.
      evaluateBatches: 2,
      // The untrained transform's metrics: the baseline drawn on the chart.
      evaluateAtStart: run.evaluateEvery > 0,
      // The learned attacks once the run finishes (their result arrives with the last metrics event).
      attackAtEnd: run.attackSteps > 0 ? { steps: run.attackSteps } : false,
      heldOutFraction: 0.1,
      // Checked with the estimate before the transform is made (the device's limits always are).
      memoryBudget: run.memoryBudgetMiB > 0 ? run.memoryBudgetMiB * 2 ** 20 : undefined,
      text,
    });
    state.configured = true;
    state.factory = values.factory;
    state.stepsPlanned = summary.maxSteps ?? 0;
    clearRunDisplay();
    status.beginRun({ maxSteps: state.stepsPlanned, evaluateEvery: run.evaluateEvery });
    setStatus(
      ui.runStatus,
      `Training a ${summary.cloakParameterCount.toLocaleString('en')}-parameter transform on ${summary.trainSequences} sequences ` +
        `(${summary.trainTokens.toLocaleString('en')} tokens; ${summary.heldOutSequences} held out) with ${values.factory}` +
        (summary.memory ? `, about ${(summary.memory.totalBytes / 2 ** 20).toFixed(0)} MiB of GPU memory at the peak.` : '.'),
    );
    const run$ = api.start(Comlink.proxy(onProgress));
    started = true;
    state.run = 'running';
    refresh();
    // Start is now disabled: keep keyboard focus on the controls of the run.
    if (document.activeElement === ui.start || document.activeElement === document.body) ui.pause.focus();
    const result = await run$;
    state.run = result.state;
    const took = formatDuration(result.seconds);
    if (result.state === 'finished') status.show('done', `Done: ${result.step} steps in ${took}.`);
    else status.show('stopped', `Stopped after step ${result.step} of ${state.stepsPlanned} (${took}).`);
    status.setEtaText('');
    setStatus(
      ui.runStatus,
      `${result.state === 'finished' ? 'Finished' : 'Stopped'} after ${result.step} steps (${result.seconds.toFixed(1)} s). Download the transform or try it on a prompt below.`,
      'ok',
    );
    setStatus(ui.inspectStatus, `A transform trained for ${result.step} steps is ready: type a prompt and press Transform.`);
  } catch (e) {
    state.run = 'idle';
    status.show('error', `Error: ${message(e)}`);
    status.setEtaText('');
    setStatus(ui.runStatus, `Training failed: ${message(e)}`, 'error');
  } finally {
    if (started) {
      // What this run measured sets the estimate beside the steps field, here and on later visits.
      timingMemory.remember(shape, status.measured);
      state.compiled ||= status.measured.steps.length > 0;
    }
    refresh();
  }
});

async function control(what: 'pause' | 'resume' | 'stop'): Promise<void> {
  try {
    if (what === 'stop') setStatus(ui.runStatus, 'Stopping after the current step…');
    const s = await api[what]();
    state.run = s;
    refresh();
  } catch (e) {
    setStatus(ui.runStatus, `Could not ${what}: ${message(e)}`, 'error');
  }
}
ui.pause.addEventListener('click', () => void control('pause'));
ui.resume.addEventListener('click', () => void control('resume'));
ui.stop.addEventListener('click', () => void control('stop'));

ui.download.addEventListener('click', async () => {
  state.busy = true;
  refresh();
  try {
    const bytes = await api.cloakSafetensors();
    const { step } = await api.getState();
    const blob = new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `sgt-transform-${state.factory ?? 'cloak'}-step${step}.safetensors`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    setStatus(ui.runStatus, `Saved ${a.download} (${formatBytes(bytes.byteLength)}).`, 'ok');
  } catch (e) {
    setStatus(ui.runStatus, `Could not download the transform: ${message(e)}`, 'error');
  } finally {
    state.busy = false;
    refresh();
  }
});

// ---------------------------------------------------------------------------------------------
// The prompt

ui.inspect.addEventListener('click', async () => {
  const prompt = ui.prompt.value;
  state.busy = true;
  refresh();
  // A step must not be in flight: pause a running run around the inspection.
  let pausedHere = false;
  try {
    if (state.run === 'running') {
      setStatus(ui.inspectStatus, 'Pausing training…');
      state.run = await api.pause();
      // The run may have finished instead of pausing: then there is nothing to resume.
      pausedHere = state.run === 'paused';
    }
    setStatus(ui.inspectStatus, 'Transforming and generating…');
    const result = await api.inspect(prompt, { topK: 5, maxNewTokens: inspectTokensValue() ?? 20 });
    renderInspect(
      {
        text: $('prompt-text'),
        decoding: $('prompt-decoding'),
        summary: $('prompt-summary'),
        teacherTop: $('teacher-top'),
        studentTop: $('student-top'),
        teacherContinuation: $('teacher-continuation'),
        studentContinuation: $('student-continuation'),
      },
      result,
      prompt,
    );
    ui.inspectOutput.hidden = false;
    const { step } = await api.getState();
    setStatus(ui.inspectStatus, `Transform as of step ${step}.`, 'ok');
  } catch (e) {
    setStatus(ui.inspectStatus, `Could not transform the prompt: ${message(e)}`, 'error');
  } finally {
    if (pausedHere) {
      try {
        state.run = await api.resume();
      } catch (e) {
        setStatus(ui.runStatus, `Could not resume: ${message(e)}`, 'error');
      }
    }
    state.busy = false;
    refresh();
  }
});

// ---------------------------------------------------------------------------------------------
// Start-up: WebGPU, the corpus, the default model

refresh();
void loadBible()
  .then((bible) => {
    state.bible = bible;
    ui.corpusBook.replaceChildren(...bible.books.map((b) => new Option(b, b, b === 'Genesis', b === 'Genesis')));
    showCorpus();
    refresh();
  })
  .catch((e) => setStatus(ui.corpusStatus, `Could not load the King James Bible: ${message(e)}. Paste your own text instead.`, 'error'));

status.show('loading', 'Starting WebGPU…');
const gpu = await checkWebGpu();
if (!gpu.ok) {
  renderWebGpuHelp(ui.webgpuHelp, gpu);
  ui.adapter.textContent = 'No WebGPU: training is not possible in this browser.';
  status.show('error', 'No WebGPU: training is not possible in this browser (see above).');
  setStatus(ui.modelStatus, 'WebGPU is not available (see above).', 'error');
  refresh();
} else {
  try {
    const adapter = await api.init();
    state.gpu = true;
    state.adapter = [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ') || gpu.adapter;
    ui.adapter.textContent =
      `GPU: ${[adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' · ') || gpu.adapter}` +
      (adapter.features.length ? ` (${adapter.features.join(', ')})` : '');
    refresh();
    await loadModel(() =>
      fetchDefaultModel((loaded, total) => {
        if (total) ui.modelProgress.value = loaded / total;
        setStatus(ui.modelStatus, `Downloading the default model: ${formatBytes(loaded)}${total ? ` of ${formatBytes(total)}` : ''}…`);
      }),
    );
  } catch (e) {
    renderWebGpuHelp(ui.webgpuHelp, { ok: false, reason: 'error', detail: message(e) });
    ui.adapter.textContent = 'WebGPU failed to start in the training worker.';
    status.show('error', 'WebGPU failed to start in the training worker (see above).');
    refresh();
  }
}
