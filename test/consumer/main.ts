/**
 * What an app does with the published package: parse the weights with the main entry
 * (`sgt-webgpu`), start the trainer worker (`sgt-webgpu/worker`, through ./worker.ts), load
 * tiny-llama (copied into public/ by the test), configure a tiny pre-tokenized run and take one
 * optimizer step. Every result is written into the page for the test to read.
 */
import * as Comlink from 'comlink';
import { parseSafetensors } from 'sgt-webgpu';
import type { StepEvent, TrainerWorkerApi } from 'sgt-webgpu/worker';

function show(testId: string, text: string): void {
  const el = document.querySelector<HTMLElement>(`[data-testid="${testId}"]`);
  if (!el) throw new Error(`index.html has no [data-testid="${testId}"]`);
  el.textContent = text;
}

function setStatus(status: 'loading' | 'done' | 'error', text: string): void {
  const el = document.querySelector<HTMLElement>('[data-testid="status"]')!;
  el.dataset.status = status;
  el.textContent = text;
}

async function fetchOk(url: string): Promise<Response> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response;
}

/** Seeded documents of ids 3..92, inside tiny-llama's 96-token vocabulary (it has no tokenizer). */
function documents(count: number): number[][] {
  let s = 12345;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
  return Array.from({ length: count }, () => Array.from({ length: 5 + Math.floor(next() * 10) }, () => 3 + Math.floor(next() * 90)));
}

async function main(): Promise<void> {
  const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
  const workerFailed = new Promise<never>((_, reject) => {
    worker.addEventListener('error', (e) => reject(new Error(`the worker failed to load: ${e.message || 'module load error'}`)));
  });
  const trainer = Comlink.wrap<TrainerWorkerApi>(worker);

  const adapter = await Promise.race([trainer.init(), workerFailed]);
  show('scope', adapter.scope);

  const [config, weights] = await Promise.all([
    fetchOk('./tiny-llama/config.json').then((r) => r.json() as Promise<unknown>),
    fetchOk('./tiny-llama/model.safetensors').then((r) => r.arrayBuffer()),
  ]);
  // The main entry, on the page's thread: read the header before sending the bytes away.
  const file = parseSafetensors(new Uint8Array(weights));
  show('tensors', String(file.tensors.size));

  const model = await trainer.loadModel(Comlink.transfer({ config, weights }, [weights]));
  show('model', `${model.type}, ${model.layers} layers, width ${model.hiddenSize}, vocabulary ${model.vocabSize}`);

  await trainer.configure({
    factory: 'crossEntropyDistillation',
    cloak: { numLayers: 1, seed: 1 },
    batchSize: 2,
    seqLen: 8,
    seed: 3,
    heldOutFraction: 0,
    tokens: documents(8),
  });
  const step: StepEvent = await trainer.step();
  show('step', String(step.step));
  show('loss', String(step.loss));

  await trainer.dispose();
  trainer[Comlink.releaseProxy]();
  worker.terminate();
  setStatus('done', 'done');
}

/**
 * Never called: the packed declarations type `configure()` per factory, so a misspelt option does
 * not compile (the test type-checks this file; an unused `@ts-expect-error` fails it).
 */
export function misspeltOption(trainer: Comlink.Remote<TrainerWorkerApi>): Promise<unknown> {
  return trainer.configure({
    factory: 'crossEntropyDistillation',
    // @ts-expect-error 'medianNormPenaltyWieght' is not an option of crossEntropyDistillation
    factoryOptions: { medianNormPenaltyWieght: 0.1 },
    batchSize: 2,
    seqLen: 8,
    tokens: documents(8),
  });
}

main().catch((e: unknown) => {
  const pre = document.querySelector<HTMLElement>('[data-testid="error"]')!;
  pre.hidden = false;
  pre.textContent = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  setStatus('error', 'error');
});
