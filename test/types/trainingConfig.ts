/**
 * Type-level tests of the worker's API, checked by `npx tsc --noEmit -p .` (never run): through
 * comlink, `configure()` takes the options of the factory it names, so a misspelt option, an
 * option of another factory or a value of the wrong type fails to compile. Each `@ts-expect-error`
 * fails the type check when its line stops being an error.
 */
import type { Remote } from 'comlink';
import type { FactoryOptionsFor, TrainerWorkerApi, TrainingConfig } from '../../src/worker/worker';

declare const trainer: Remote<TrainerWorkerApi>;
const run = { batchSize: 2, seqLen: 8, tokens: [[3, 4, 5]] };

export async function configureIsTypedPerFactory(): Promise<void> {
  await trainer.configure({ ...run, factory: 'distillation', factoryOptions: { alpha: 0.3, distillationLayerIndex: null } });
  await trainer.configure({ ...run, factory: 'crossEntropyDistillation', factoryOptions: { medianNormPenaltyWeight: 0.2 } });
  await trainer.configure({ ...run, factory: 'mutualInformationDistillation' });

  // @ts-expect-error a misspelt option name
  await trainer.configure({ ...run, factory: 'distillation', factoryOptions: { alpah: 0.3 } });
  // @ts-expect-error an option of another factory (crossEntropyDistillation has no alpha)
  await trainer.configure({ ...run, factory: 'crossEntropyDistillation', factoryOptions: { alpha: 0.3 } });
  // @ts-expect-error a value of the wrong type
  await trainer.configure({ ...run, factory: 'distillation', factoryOptions: { alpha: 'high' } });
  // @ts-expect-error no such factory
  await trainer.configure({ ...run, factory: 'distilation' });
}

export function oneFactory(options: FactoryOptionsFor<'crossEntropyDistillation'>): TrainingConfig<'crossEntropyDistillation'> {
  return { ...run, factory: 'crossEntropyDistillation', factoryOptions: options };
}
