/**
 * Memory in the CLI and the worker (issue 9, point 6 and the "done when" at a small scale): a
 * Qwen2-layout model whose BF16 embedding is split into row blocks under a binding limit forced
 * small trains from `--model DIR --tokens-file F`, and the pool's peak that report.json records is
 * at most 1.3x the file's tensor bytes; `--memory-budget` refuses a run before the model is loaded,
 * saying what to lower; `--tokens-file` takes JSON documents, one JSON array, or plain text; the
 * worker's configure refuses a run over its `memoryBudget`, and its state records the weight
 * bytes and the pool's peak. Each `main` and service destroys its device, so this file runs in its
 * own process (forks pool).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { init } from '../../src/index';
import { main, UsageError, type CompletedReport } from '../../src/cli/cli';
import { TrainerService } from '../../src/worker/workerApi';
import { isSgtError } from '../../src/gpu/errors';
import { estimateMemory } from '../../src/train/memory';
import { makeTestModel, randomDocuments } from '../../scripts/make-test-model';

const work = mkdtempSync(join(tmpdir(), 'sgt-cli-memory-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const quiet = { stdout: () => {}, stderr: () => {} };

/** A Qwen2 layout at a small scale: the embedding (64000 x 64 BF16, tied) is nearly all of the file. */
const QWEN_SMALL = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 64000,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  max_position_embeddings: 512,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
};
/** 256 KiB: the table (8 MB) splits into 32 row blocks of 2048 rows; every other tensor fits. */
const BINDING_LIMIT = 256 * 1024;

function writeModel(dir: string, config: Record<string, unknown>): number {
  mkdirSync(dir, { recursive: true });
  const { bytes, tensorBytes } = makeTestModel(config, { dtype: 'bf16', seed: 3 });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), bytes);
  return tensorBytes;
}

const qwenDir = join(work, 'qwen-small');
const qwenTensorBytes = writeModel(qwenDir, QWEN_SMALL);
const qwenTokens = join(work, 'qwen-tokens.json');
writeFileSync(qwenTokens, JSON.stringify(randomDocuments(64000, 24, 40, 5)));

describe('report.json records the weights and the peak', () => {
  it('a split BF16 embedding trains with a peak at most 1.3x the file (binding limit forced to 256 KiB)', async () => {
    const ctx = await init({ bindingLimit: BINDING_LIMIT });
    expect(ctx.bindingLimit).toBe(BINDING_LIMIT);
    const out = join(work, 'run-qwen');
    const args = [
      '--model',
      qwenDir,
      '--tokens-file',
      qwenTokens,
      '--steps',
      '3',
      '--batch-size',
      '2',
      '--seq-len',
      '16',
      '--out',
      out,
      '--attack-steps',
      '0',
    ];
    const result = await main([...args, '--quiet'], quiet);
    if (result.help) throw new Error('expected a run');
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as CompletedReport;
    const { memory } = report;
    expect(memory.weightBytes).toBe(qwenTensorBytes);
    expect(memory.estimate?.rowBlocks['model.embed_tokens.weight']).toBe(2048);
    expect(memory.peakBytes).toBeGreaterThan(memory.weightBytes);
    expect(memory.peakBytes).toBeLessThanOrEqual(1.3 * qwenTensorBytes);
    expect(memory.peakBytes).toBeLessThanOrEqual(1.3 * statSync(join(qwenDir, 'model.safetensors')).size);
    // With the freed buffers the pool keeps for reuse: what it occupied on the GPU at most.
    expect(memory.heldPeakBytes).toBeGreaterThanOrEqual(memory.peakBytes);
    // The estimate made before the run, against what the pool measured over it.
    expect(Math.abs(memory.estimatedPeakBytes! / memory.peakBytes - 1)).toBeLessThan(0.03);
    expect(memory.budget).toBeNull();
    expect(report.final.step).toBe(3);
  });

  it('--memory-budget below the estimate is a usage error before the model is loaded, naming what fits', async () => {
    const out = join(work, 'run-over-budget');
    // Room for 2 sequences of 16 tokens, not for 8 of 64.
    const budget = estimateMemory(QWEN_SMALL, { batchSize: 2, seqLen: 16, dtype: 'bf16' }).totalBytes + 2 ** 20;
    const args = [
      '--model',
      qwenDir,
      '--tokens-file',
      qwenTokens,
      '--steps',
      '1',
      '--batch-size',
      '8',
      '--seq-len',
      '64',
      '--attack-steps',
      '0',
    ];
    const run = main([...args, '--memory-budget', String(budget), '--out', out], quiet);
    await expect(run).rejects.toThrow(UsageError);
    await expect(run).rejects.toThrow(
      /^not enough GPU memory for this run: the run needs about .* more than the budget of .* \(--memory-budget\); it fits with --(batch-size|seq-len) \d+/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('--memory-budget takes sizes with units and refuses anything else', async () => {
    for (const bad of ['lots', '0', '1.5 furlongs', 'MiB']) {
      await expect(main(['--model', qwenDir, '--steps', '1', '--memory-budget', bad], quiet)).rejects.toThrow(
        `--memory-budget must be a size such as 1.5GiB, 800MB or a number of bytes, got '${bad}'`,
      );
    }
  });

  it('--tokens-file takes whitespace-separated ids (one document per line) and one JSON array', async () => {
    const tiny = resolve(FIXTURES_DIR, 'tiny-llama');
    const text = join(work, 'tokens.txt');
    writeFileSync(
      text,
      `${randomDocuments(96, 12, 20, 9)
        .map((d) => d.join(' '))
        .join('\n')}\n\n`,
    );
    const flat = join(work, 'tokens-flat.json');
    writeFileSync(flat, JSON.stringify(randomDocuments(96, 1, 240, 9)[0]));
    for (const file of [text, flat]) {
      const out = join(work, `run-${file.endsWith('.txt') ? 'text' : 'flat'}`);
      const result = await main(
        [
          '--model',
          tiny,
          '--tokens-file',
          file,
          '--steps',
          '1',
          '--batch-size',
          '2',
          '--seq-len',
          '8',
          '--out',
          out,
          '--attack-steps',
          '0',
        ],
        quiet,
      );
      if (result.help) throw new Error('expected a run');
      expect(result.report.data.tokenizer).toBe('pretokenized');
      expect(result.report.data.trainSequences).toBeGreaterThanOrEqual(2);
    }
    const bad = join(work, 'tokens-bad.txt');
    writeFileSync(bad, '1 2 3\n4 five 6\n');
    await expect(main(['--model', tiny, '--tokens-file', bad, '--steps', '1'], quiet)).rejects.toThrow(
      /--tokens-file .* must hold token ids: .*whitespace-separated integer ids with one document per line/,
    );
  });
});

describe('the worker checks the budget and records memory in its state', () => {
  it('configure refuses a run over memoryBudget (LIMIT_EXCEEDED) and keeps the model; the state has the weights and the peak', async () => {
    await gpu();
    const service = new TrainerService();
    try {
      await service.init();
      await service.loadModel({
        config: readFileSync(join(qwenDir, 'config.json'), 'utf8'),
        weights: new Uint8Array(readFileSync(join(qwenDir, 'model.safetensors'))),
      });
      const loaded = await service.getState();
      expect(loaded.memory?.weightBytes).toBe(qwenTensorBytes);
      expect(loaded.memory?.peakBytes).toBe(loaded.memory?.liveBytes);
      expect(loaded.memory!.heldPeakBytes).toBeGreaterThanOrEqual(loaded.memory!.peakBytes);
      const tokens = randomDocuments(64000, 24, 40, 5);
      const base = { factory: 'crossEntropyDistillation', batchSize: 2, seqLen: 16, tokens } as const;
      let error: unknown;
      try {
        await service.configure({ ...base, memoryBudget: qwenTensorBytes });
      } catch (e) {
        error = e;
      }
      expect(isSgtError(error, 'LIMIT_EXCEEDED')).toBe(true);
      expect((error as Error).message).toMatch(/^TrainerService\.configure: not enough GPU memory for this run: .*\(memoryBudget\)/);
      expect((await service.getState()).state).toBe('modelLoaded');
      await expect(service.configure({ ...base, memoryBudget: -1 })).rejects.toThrow(
        "'memoryBudget' must be a positive number of bytes, got -1",
      );
      const summary = await service.configure({ ...base, memoryBudget: 4 * qwenTensorBytes });
      expect(summary.memory?.weightBytes).toBe(qwenTensorBytes);
      await service.step();
      const state = await service.getState();
      expect(state.memory?.peakBytes).toBeGreaterThan(qwenTensorBytes);
      expect(state.memory!.peakBytes).toBeLessThanOrEqual(summary.memory!.totalBytes * 1.03);
    } finally {
      await service.dispose();
    }
  });
});
