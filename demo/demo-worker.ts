/**
 * The demo page's module Web Worker: the library's {@link TrainerService} (which owns the WebGPU
 * device, the model and the trainer) plus the two things only this page needs — the factories'
 * default options, and {@link DemoService.inspect} ("what the transform does to a prompt").
 */
import * as Comlink from 'comlink';
import { DEFAULT_FACTORY_OPTIONS, TrainerService, type FactoryName } from '../src/train/workerApi';
import type { Trainer } from '../src/train/trainer';
import type { Tokenizer } from '../src/train/tokenizer';
import { inspectPrompt, type InspectOptions, type InspectResult } from './inspect';

/**
 * The service's private state that `inspect` needs. TrainerService exposes no accessor for its
 * trainer and tokenizer (nor its one-call-at-a-time lock), so this reads them by name; the names
 * are checked at run time, so a rename in the library fails loudly here rather than silently.
 */
interface ServiceInternals {
  trainer: Trainer | null;
  tokenizer: Tokenizer | null;
  busy: string | null;
  running: Promise<unknown> | null;
  runState: string | null;
}

/** {@link TrainerService} with the demo's extra calls. */
export class DemoService extends TrainerService {
  /** {@link DEFAULT_FACTORY_OPTIONS}, so that the page's form starts from the library's defaults. */
  async factoryDefaults(): Promise<Record<FactoryName, Record<string, unknown>>> {
    return JSON.parse(JSON.stringify(DEFAULT_FACTORY_OPTIONS)) as Record<FactoryName, Record<string, unknown>>;
  }

  /**
   * Transforms `prompt` with the cloak as trained so far and compares the teacher's and the
   * student's predictions (see `inspect.ts`). Needs a configured trainer, and no step in flight:
   * call it before a run, while paused, or after a run ends.
   */
  async inspect(prompt: string, options: InspectOptions = {}): Promise<InspectResult> {
    const self = this as unknown as ServiceInternals;
    for (const key of ['trainer', 'tokenizer', 'busy', 'running', 'runState'] as const) {
      if (!(key in self)) throw new Error(`inspect: TrainerService has no '${key}' field any more; update demo/demo-worker.ts`);
    }
    const { state } = await this.getState();
    if (state === 'disposed') throw new Error('inspect: the service was disposed');
    if (!self.trainer) throw new Error('inspect: no transform yet: start training first');
    if (!self.tokenizer) throw new Error('inspect: the model has no tokenizer to read a text prompt with');
    if (self.running && self.runState !== 'paused') throw new Error('inspect: a run is in progress: pause() it first');
    if (self.busy) throw new Error(`inspect: ${self.busy}() is still running: await it first`);
    if (typeof prompt !== 'string' || prompt.length === 0) throw new Error('inspect: type a prompt first');
    // Taking the service's lock makes resume() and the other GPU calls wait for this one.
    self.busy = 'inspect';
    try {
      const trainer = self.trainer;
      return await inspectPrompt(trainer.noisyModel.baseModel, trainer.transform, self.tokenizer, prompt, options);
    } finally {
      self.busy = null;
    }
  }
}

/** What the page sees through `Comlink.wrap<DemoWorkerApi>(worker)`. */
export type DemoWorkerApi = DemoService;

Comlink.expose(new DemoService());
