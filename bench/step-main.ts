/**
 * Training-step throughput on its own (bench/step-throughput.ts), with a JSON record:
 *
 *   node scripts/run.mjs bench/step-main.ts [--model default|synthetic|PRESET] [--blocks N] [--dtype bf16|f32]
 *       [--batch B] [--seq T] [--steps N] [--factories a,b] [--json FILE]
 *
 * `--model` may repeat (default: `default` and `synthetic`); a PRESET is a key of MODEL_PRESETS in
 * scripts/make-test-model.ts (`smollm2-135m`, ...), with generated weights. The GPU script
 * (bench/gpu/) runs a bundle of this file: `--model smollm2-135m --batch 8 --seq 256
 * --factories crossEntropyDistillation`.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { getContext } from '../src/gpu/context';
import { FACTORY_NAMES, isFactoryName, type FactoryName } from '../src/factories/options';
import { formatStepRows, stepBenchmarks, type StepModel, type StepPlan } from './step-throughput';

const USAGE =
  'usage: step-main [--model default|synthetic|PRESET]... [--blocks N] [--dtype bf16|f32] [--batch B] [--seq T] [--steps N] [--factories a,b] [--json FILE]';

function positive(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got '${v}'\n${USAGE}`);
  return n;
}

function plansFrom(argv: string[]): { plans: StepPlan[]; json?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', multiple: true },
      blocks: { type: 'string' },
      dtype: { type: 'string' },
      batch: { type: 'string' },
      seq: { type: 'string' },
      steps: { type: 'string' },
      factories: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const factories = (values.factories ?? FACTORY_NAMES.join(',')).split(',').map((f) => {
    if (!isFactoryName(f)) throw new Error(`--factories: unknown factory '${f}' (${FACTORY_NAMES.join(', ')})`);
    return f as FactoryName;
  });
  if (values.dtype !== undefined && values.dtype !== 'bf16' && values.dtype !== 'f32')
    throw new Error(`--dtype must be bf16 or f32\n${USAGE}`);
  const B = positive('batch', values.batch, 4);
  const T = positive('seq', values.seq, 64);
  const steps = positive('steps', values.steps, 3);
  const blocks = values.blocks === undefined ? undefined : positive('blocks', values.blocks, 1);
  const models = values.model ?? ['default', 'synthetic'];
  const plans = models.map((name): StepPlan => {
    const model: StepModel =
      name === 'default' || name === 'synthetic'
        ? { kind: name }
        : { kind: 'preset', preset: name, blocks, dtype: values.dtype as 'bf16' | 'f32' | undefined };
    return { model, B, T, steps, factories };
  });
  return { plans, json: values.json };
}

async function main(): Promise<void> {
  const { plans, json } = plansFrom(process.argv.slice(2));
  const t0 = performance.now();
  const rows = await stepBenchmarks(plans, (r) =>
    process.stderr.write(
      `  done: ${r.model} ${r.factory}: ${r.tokensPerSecond.toFixed(0)} tokens/s (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
    ),
  );
  const info = getContext().adapter.info;
  console.log(`adapter: ${info.vendor}/${info.architecture} ${info.description ?? ''}`);
  console.log(formatStepRows(rows));
  if (json) {
    const record = {
      schema: 'sgt-step-bench/1',
      createdAt: new Date().toISOString(),
      adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description },
      node: process.version,
      wallSeconds: (performance.now() - t0) / 1000,
      rows,
    };
    writeFileSync(json, `${JSON.stringify(record, null, 1)}\n`);
    console.log(`results: ${json}`);
  }
}

await main();
