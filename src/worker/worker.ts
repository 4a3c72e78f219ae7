/**
 * The module Web Worker that owns the WebGPU device and trains a Stained Glass Transform, driven
 * from a page over comlink (a device and its buffers cannot be shared between threads, so the
 * whole GPU side lives here and the page gets back scalars, progress events and transferred bytes).
 *
 * Starting it from a page (Vite bundles the worker and its imports from this URL form):
 *
 * ```ts
 * import * as Comlink from 'comlink';
 * import type { TrainerWorkerApi, ProgressEvent } from 'sgt-webgpu/worker';
 *
 * const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
 * const trainer = Comlink.wrap<TrainerWorkerApi>(worker);
 * await trainer.init();
 * const weights = await (await fetch('/model/model.safetensors')).arrayBuffer();
 * await trainer.loadModel(Comlink.transfer({ config, weights, tokenizerJson }, [weights]));
 * await trainer.configure({ factory: 'crossEntropyDistillation', batchSize: 4, seqLen: 64, text, maxSteps: 200, evaluateEvery: 20 });
 * const done = trainer.start(Comlink.proxy((e: ProgressEvent) => { if (e.type === 'step') plot(e.step, e.loss); }));
 * // pause() / resume() / stop() while it runs; each takes effect between steps.
 * await done;
 * const cloak = await trainer.cloakSafetensors(); // Uint8Array, transferred
 * await trainer.dispose();
 * trainer[Comlink.releaseProxy]();
 * worker.terminate();
 * ```
 *
 * (`'./worker.ts'` is this file: from an app, point the URL at it inside the package, e.g.
 * `new URL('sgt-webgpu/src/worker/worker.ts', import.meta.url)`, or re-export it from a worker file
 * of the app's own.) Errors thrown in the worker reach the page as rejected promises with their
 * original message and `SgtError` code (`installErrorTransfer(Comlink.transferHandlers)` on the page
 * makes them `SgtError`s again).
 */
import * as Comlink from 'comlink';
import { TrainerService } from './workerApi';
import { installErrorTransfer } from '../gpu/errors';

export type {
  TrainerWorkerApi,
  AdapterSummary,
  LoadModelArgs,
  ModelSummary,
  TrainingConfig,
  TrainingRunConfig,
  ConfigureSummary,
  ProgressEvent,
  ProgressCallback,
  PhaseEvent,
  StepEvent,
  MetricsEvent,
  StateEvent,
  RunState,
  RunSummary,
  ServiceState,
  EvaluationResult,
  FactoryName,
  FactoryOptionsFor,
  TransformerCloakOptions,
} from './workerApi';

// SgtError codes cross to the page with the message (see installErrorTransfer).
installErrorTransfer(Comlink.transferHandlers);
Comlink.expose(new TrainerService());
