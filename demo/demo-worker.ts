/**
 * The demo page's module Web Worker: the library's {@link TrainerService} (which owns the WebGPU
 * device, the model and the trainer) plus the two things only this page needs — the factories'
 * default options, and {@link DemoService.inspect} ("what the transform does to a prompt").
 */
import * as Comlink from 'comlink';
import { DEFAULT_FACTORY_OPTIONS, TrainerService, type FactoryName } from '../src/worker/workerApi';
import { inspectPrompt, type InspectOptions, type InspectResult } from './inspect';

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
    if (typeof prompt !== 'string' || prompt.length === 0) throw new Error('inspect: type a prompt first');
    // withSession holds the service's lock, so resume() and the other GPU calls wait for this one.
    return this.withSession('inspect', ({ trainer, tokenizer }) => {
      if (!tokenizer) throw new Error('inspect: the model has no tokenizer to read a text prompt with');
      return inspectPrompt(trainer.noisyModel.baseModel, trainer.transform, tokenizer, prompt, options);
    });
  }
}

/** What the page sees through `Comlink.wrap<DemoWorkerApi>(worker)`. */
export type DemoWorkerApi = DemoService;

Comlink.expose(new DemoService());
