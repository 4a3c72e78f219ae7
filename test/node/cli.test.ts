/**
 * The `npm run train` CLI, called in-process through `main(argv)`, and the TrainerService it
 * drives (the same class the page drives in its Web Worker): files written and readable, the
 * report's metrics, run control (pause / resume / stop), and clear errors for bad arguments and
 * calls made in the wrong order. Each `main` and each service destroys its device when done, so
 * this file runs in its own process (forks pool).
 */
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR } from '../helpers/fixtures';
import { parseSafetensors, toFloat32 } from '../../src/models/safetensors';
import { writeSafetensors, type SafetensorsWriteTensor } from '../../src/models/safetensorsWriter';
import { TransformerCloak } from '../../src/models/cloak';
import { liveBufferCount } from '../../src/index';
import { seededRandom } from '../../src/text/data';
import {
  DEFAULT_MODEL_DIR,
  main,
  helpText,
  RunError,
  UsageError,
  DEFAULT_CORPUS,
  type CompletedReport,
  type TrainingReport,
} from '../../src/cli/cli';
import { RECOMMENDED_RUNS } from '../../src/factories/options';
import { TrainerService, DEFAULT_FACTORY_OPTIONS, type ProgressEvent, type StepEvent } from '../../src/worker/workerApi';

const TINY_LLAMA = resolve(FIXTURES_DIR, 'tiny-llama');
const TINY_LLAMA3 = resolve(FIXTURES_DIR, 'tiny-llama3');
const work = mkdtempSync(join(tmpdir(), 'sgt-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Pre-tokenized documents inside tiny-llama's 96-token vocabulary (ids 3..92: no specials). */
function documents(seed: number, count: number): number[][] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Array.from({ length: 5 + Math.floor(random() * 10) }, () => 3 + Math.floor(random() * 90)));
}

const tokensFile = join(work, 'tokens.json');
writeFileSync(tokensFile, JSON.stringify(documents(7, 24)));

/** The names a TransformerCloak with `numLayers` encoder layers gives its parameters. */
function cloakNames(numLayers: number): string[] {
  const names = ['input_projection', 'encoder.norm', 'mu_head', 'rho_head'];
  for (let i = 0; i < numLayers; i++) {
    const p = `encoder.layers.${i}.`;
    names.push(
      `${p}norm1`,
      `${p}norm2`,
      `${p}linear1`,
      `${p}linear2`,
      ...['q_proj', 'k_proj', 'v_proj', 'out_proj'].map((q) => `${p}self_attn.${q}`),
    );
  }
  return names.flatMap((n) => [`${n}.weight`, `${n}.bias`]).sort();
}

const quietIO = () => {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), interactive: false }, out, err };
};

describe('npm run train (main)', () => {
  it('trains tiny-llama on a tokens file and writes the cloak, the checkpoint and the report', async () => {
    const outDir = join(work, 'run1');
    const { io, out, err } = quietIO();
    const result = await main(
      [
        '--model',
        TINY_LLAMA,
        '--steps',
        '3',
        '--out',
        outDir,
        '--tokens-file',
        tokensFile,
        '--batch-size',
        '2',
        '--seq-len',
        '8',
        '--eval-every',
        '2',
        '--seed',
        '4',
        '--cloak',
        'numLayers=1',
        '--set',
        'medianNormPenaltyWeight=0.2',
        '--attack-steps',
        '10',
      ],
      io,
    );
    if (result.help) throw new Error('main printed the help instead of training');
    for (const f of ['cloak.safetensors', 'checkpoint.safetensors', 'report.json']) expect(existsSync(join(outDir, f)), f).toBe(true);
    expect(result.files).toEqual(['cloak.safetensors', 'checkpoint.safetensors', 'report.json'].map((f) => join(outDir, f)));

    const report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as CompletedReport;
    expect(report).toEqual(JSON.parse(JSON.stringify(result.report)));
    expect(report.files).toEqual(['cloak.safetensors', 'checkpoint.safetensors', 'report.json']);
    expect(report.error).toBeUndefined();
    expect(report.model).toMatchObject({ type: 'llama', layers: 2, hiddenSize: 32, vocabSize: 96, heads: 4, tokenizer: 'none' });
    // tiny-llama: embeddings and head 2*96*32, two blocks of 2*32 norms + q,o 32x32 + k,v 16x32 + three 64x32 MLP mats, final norm.
    expect(report.model.parameterCount).toBe(2 * 96 * 32 + 2 * (2 * 32 + 2 * 32 * 32 + 2 * 16 * 32 + 3 * 64 * 32) + 32);
    expect(report.data.tokenizer).toBe('pretokenized');
    expect(report.data.trainSequences + report.data.heldOutSequences).toBeGreaterThanOrEqual(20);
    expect(report.data.heldOutSequences).toBeGreaterThanOrEqual(2);
    expect(report.hyperparameters).toMatchObject({
      factory: 'crossEntropyDistillation',
      steps: 3,
      batchSize: 2,
      seqLen: 8,
      // No --lr: the factory's recommended learning rate.
      learningRate: RECOMMENDED_RUNS.crossEntropyDistillation.learningRate,
      seed: 4,
      evaluateEvery: 2,
      factoryOptions: { ...DEFAULT_FACTORY_OPTIONS.crossEntropyDistillation, medianNormPenaltyWeight: 0.2 },
      cloak: { numLayers: 1, hiddenSize: 32 },
    });
    expect(report.final.step).toBe(3);
    expect(Object.keys(report.final.components).sort()).toEqual([
      'absoluteCosineSimilarityPenalty',
      'distillationCrossEntropyLoss',
      'loss',
      'medianNormPenalty',
    ]);
    const m = report.final.metrics;
    for (const v of [m.nearestNeighbourFailureRate, m.top1Agreement]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
    expect(m.meanKL).toBeGreaterThanOrEqual(0);
    expect(m.transformedPositions).toBeGreaterThan(0);
    expect(m.lossPositions).toBeGreaterThan(0);
    // Utility against the true next token, NN-FR by L2, and the learned attacks (--attack-steps 10).
    expect(m.targetPositions).toBeGreaterThan(0);
    expect(m.accuracyDropPoints).toBeCloseTo(100 * (m.teacherAccuracy - m.studentAccuracy), 9);
    expect(m.perplexityRatio).toBeCloseTo(m.studentPerplexity / m.teacherPerplexity, 9);
    expect(m.nearestNeighbourFailureRateL2).toBeGreaterThanOrEqual(0);
    const attack = report.final.attack!;
    for (const kind of ['linear', 'mlp', 'linearClean', 'mlpClean'] as const) {
      expect(attack[kind].steps, kind).toBe(10);
      // Every held-out position the transform changes (the evaluation drops a last partial batch; the attack does not).
      expect(attack[kind].positions, kind).toBeGreaterThanOrEqual(m.transformedPositions);
      expect(attack[kind].positions, kind).toBe(attack.linear.positions);
    }
    expect(out.join('')).toMatch(/learned inversion attack, tokens recovered on held-out text: linear \d+\.\d% \(clean \d+\.\d%\)/);
    // Evaluated at step 2 (--eval-every 2) and at the end.
    expect(report.metricsHistory.map((h) => h.step)).toEqual([2, 3]);
    expect(report.lossCurve.points.map(([s]) => s)).toEqual([1, 2, 3]);
    for (const [, loss] of report.lossCurve.points) expect(Number.isFinite(loss)).toBe(true);
    expect(report.lossCurve.last).toBe(report.final.loss);
    expect(report.lossCurve.min).toBeLessThanOrEqual(report.lossCurve.max);

    // The cloak file: the cloak's PyTorch-style names alone, F32, and the same values as the checkpoint's cloak.* tensors.
    const cloak = parseSafetensors(new Uint8Array(readFileSync(join(outDir, 'cloak.safetensors'))));
    expect([...cloak.tensors.keys()].sort()).toEqual(cloakNames(1));
    expect(cloak.tensors.get('input_projection.weight')!.shape).toEqual([32, 32]);
    expect(cloak.tensors.get('rho_head.bias')!.shape).toEqual([32]);
    expect(JSON.parse(cloak.metadata.sgt_cloak)).toMatchObject({ numLayers: 1, hiddenSize: 32 });
    expect(cloak.metadata.sgt_step).toBe('3');
    const checkpoint = parseSafetensors(new Uint8Array(readFileSync(join(outDir, 'checkpoint.safetensors'))));
    for (const [name, entry] of cloak.tensors) {
      expect(entry.dtype).toBe('F32');
      expect(Array.from(toFloat32(entry)), name).toEqual(Array.from(toFloat32(checkpoint.tensors.get(`cloak.${name}`)!)));
    }
    // Three steps moved the mu head off its zero initialisation.
    expect(Array.from(toFloat32(cloak.tensors.get('mu_head.weight')!)).some((v) => v !== 0)).toBe(true);
    // The checkpoint resumes: a fresh service with the same model and cloak options picks it up at step 3.
    const resumed = new TrainerService();
    try {
      await resumed.init();
      await resumed.loadModel({
        config: readFileSync(join(TINY_LLAMA, 'config.json'), 'utf8'),
        weights: new Uint8Array(readFileSync(join(TINY_LLAMA, 'model.safetensors'))),
      });
      await resumed.configure({
        factory: 'crossEntropyDistillation',
        cloak: { numLayers: 1 },
        batchSize: 2,
        seqLen: 8,
        tokens: documents(7, 24),
        maxSteps: 4,
      });
      expect(await resumed.loadCheckpoint(readFileSync(join(outDir, 'checkpoint.safetensors')))).toMatchObject({
        state: 'configured',
        step: 3,
      });
      expect((await resumed.step()).step).toBe(4);
      // cloak.safetensors is what TransformerCloak.fromSafetensors reads back.
      const rebuilt = TransformerCloak.fromSafetensors(readFileSync(join(outDir, 'cloak.safetensors')));
      expect({ ...rebuilt.options }).toEqual(JSON.parse(cloak.metadata.sgt_cloak));
      rebuilt.dispose();
    } finally {
      await resumed.dispose();
    }

    // The summary gives NN-FR and agreement as percentages (as the demo does), to one decimal, from the report's shares.
    const summary = out.join('');
    expect(summary).toMatch(
      /^trained 3 steps in \d+s: loss \d+\.\d{4} -> \d+\.\d{4}; NN-FR \d+\.\d% \(L2 \d+\.\d%\), accuracy \d+\.\d% vs \d+\.\d% \(drop -?\d+\.\d{2} points\), perplexity x\d+\.\d{3}, top-1 agreement \d+\.\d%, mean KL \d+\.\d{4}\n/,
    );
    expect(summary).toContain(`NN-FR ${(100 * m.nearestNeighbourFailureRate).toFixed(1)}%`);
    expect(summary).toContain(`top-1 agreement ${(100 * m.top1Agreement).toFixed(1)}%`);
    expect(err.join('')).toMatch(/3\/3 loss \d/);
    expect(err.join('')).toMatch(/step 2: NN-FR \d+\.\d% \(L2 \d+\.\d%\), accuracy .*, top-1 agreement \d+\.\d%/);
  });

  it('falls back to the byte-level tokenizer and the built-in corpus for a model with room for bytes', async () => {
    // tiny-llama with its embedding and head grown to 300 rows (rows repeat): a vocabulary the byte tokenizer fits in.
    const dir = join(work, 'byte-llama');
    mkdirSync(dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(TINY_LLAMA, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: 300 }));
    const file = parseSafetensors(new Uint8Array(readFileSync(join(TINY_LLAMA, 'model.safetensors'))));
    const tensors: Record<string, SafetensorsWriteTensor> = {};
    for (const [name, entry] of file.tensors) {
      let data = toFloat32(entry);
      let shape = entry.shape;
      if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') {
        const [v, d] = shape;
        const grown = new Float32Array(300 * d);
        for (let r = 0; r < 300; r++) grown.set(data.subarray((r % v) * d, ((r % v) + 1) * d), r * d);
        data = grown;
        shape = [300, d];
      }
      tensors[name] = { dtype: 'F32', shape, data: Float32Array.from(data) };
    }
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors));

    const { io } = quietIO();
    const result = await main(
      [
        '--model',
        dir,
        '--steps',
        '2',
        '--out',
        join(work, 'run-bytes'),
        '--batch-size',
        '2',
        '--seq-len',
        '32',
        '--eval-batches',
        '2',
        '--attack-steps',
        '0',
        '--quiet',
      ],
      io,
    );
    if (result.help) throw new Error('main printed the help instead of training');
    const report = result.report;
    expect(report.model.tokenizer).toBe('byte');
    expect(report.data.tokenizer).toBe('byte');
    expect(report.data.source).toBe('built-in corpus');
    // Without --lr and --privacy-*: the default factory's recommended run settings, the ramp a share of --steps.
    const recommended = RECOMMENDED_RUNS.crossEntropyDistillation;
    expect(report.hyperparameters.learningRate).toBe(recommended.learningRate);
    expect(report.hyperparameters.privacySchedule).toEqual({
      shape: recommended.privacySchedule,
      rampSteps: Math.round(recommended.privacyRamp * 2),
      startScale: 0,
    });
    // Every byte of the corpus, plus a BOS and an EOS per paragraph, is a real token.
    const bytes = DEFAULT_CORPUS.reduce((n, p) => n + new TextEncoder().encode(p).length + 2, 0);
    expect(report.data.trainTokens).toBeLessThan(bytes);
    expect(report.data.trainTokens).toBeGreaterThan(0.7 * bytes);
    expect(report.final.step).toBe(2);
    expect(report.final.metrics.lossPositions).toBeGreaterThan(0);
    expect(Number.isFinite(report.lossCurve.last)).toBe(true);
  });

  it('--help lists every option and the factory defaults', async () => {
    const { io, out } = quietIO();
    expect(await main(['--help'], io)).toEqual({ help: true });
    const text = out.join('');
    expect(text).toBe(helpText());
    for (const flag of [
      '--model',
      '--steps',
      '--out',
      '--factory',
      '--text',
      '--tokens-file',
      '--batch-size',
      '--seq-len',
      '--lr',
      '--seed',
      '--eval-every',
      '--attack-steps',
      '--set',
      '--cloak',
      '--quiet',
    ]) {
      expect(text).toContain(flag);
    }
    for (const [factory, options] of Object.entries(DEFAULT_FACTORY_OPTIONS)) {
      expect(text).toContain(`${factory}:`);
      for (const key of Object.keys(options)) expect(text).toContain(`${key}=`);
    }
  });

  it('trains from a sharded folder (model.safetensors.index.json: tiny-llama3) and names a missing shard', async () => {
    const sharded = join(work, 'tiny-llama3');
    mkdirSync(sharded, { recursive: true });
    for (const f of readdirSync(TINY_LLAMA3)) copyFileSync(join(TINY_LLAMA3, f), join(sharded, f));
    rmSync(join(sharded, 'reference.json'));
    const { io } = quietIO();
    const args = [
      '--steps',
      '1',
      '--tokens-file',
      tokensFile,
      '--batch-size',
      '2',
      '--seq-len',
      '8',
      '--cloak',
      'numLayers=1',
      '--attack-steps',
      '0',
    ];
    const result = await main(['--model', sharded, '--out', join(work, 'run-sharded'), ...args], io);
    if (result.help) throw new Error('main printed the help instead of training');
    // tiny-llama3: tied 128 x 48 embedding, two blocks of 2*48 norms + q, o 64x48 + k, v 32x48 + three 96x48 MLP mats, final norm.
    expect(result.report.model).toMatchObject({ type: 'llama', layers: 2, hiddenSize: 48, vocabSize: 128, heads: 4 });
    expect(result.report.model.parameterCount).toBe(128 * 48 + 2 * (2 * 48 + 2 * 64 * 48 + 2 * 32 * 48 + 3 * 96 * 48) + 48);
    expect(Number.isFinite(result.report.final.loss)).toBe(true);
    rmSync(join(sharded, 'model-00002-of-00002.safetensors'));
    await expect(main(['--model', sharded, '--out', join(work, 'bad-sharded'), ...args], io)).rejects.toThrow(
      `--model ${sharded}: missing shard model-00002-of-00002.safetensors named by model.safetensors.index.json`,
    );
    rmSync(join(sharded, 'model.safetensors.index.json'));
    await expect(main(['--model', sharded, '--out', join(work, 'bad-sharded'), ...args], io)).rejects.toThrow(
      /no model\.safetensors \(nor model\.safetensors\.index\.json\) in that folder/,
    );
    expect(existsSync(join(work, 'bad-sharded'))).toBe(false);
  });

  it('rejects bad arguments with clear errors', async () => {
    const { io } = quietIO();
    const run = (...args: string[]) => main(args, io);
    const base = ['--model', TINY_LLAMA, '--out', join(work, 'bad')];
    await expect(run(...base, '--steps', '0')).rejects.toThrow("--steps must be an integer >= 1, got '0'");
    await expect(run(...base, '--steps', '2.5')).rejects.toThrow("--steps must be an integer >= 1, got '2.5'");
    // Without --model the embedded default model is used: it must be there, loadable.
    expect(existsSync(join(DEFAULT_MODEL_DIR, 'config.json')) && existsSync(join(DEFAULT_MODEL_DIR, 'model.safetensors'))).toBe(true);
    const empty = join(work, 'empty-model');
    mkdirSync(empty, { recursive: true });
    await expect(run('--model', empty, '--steps', '3', '--out', join(work, 'bad'))).rejects.toThrow(/no config\.json in that folder/);
    await expect(run('--model', join(work, 'nowhere'), '--steps', '3', '--out', join(work, 'bad'))).rejects.toThrow(/no such folder/);
    await expect(run(...base, '--steps', '3', '--factory', 'nope')).rejects.toThrow(/--factory must be one of distillation, /);
    await expect(run(...base, '--steps', '3', '--lr=-1')).rejects.toThrow("--lr must be a positive number, got '-1'");
    await expect(run(...base, '--steps', '3', '--privacy-schedule', 'step')).rejects.toThrow(
      "--privacy-schedule must be one of constant, linear, cosine, got 'step'",
    );
    await expect(run(...base, '--steps', '3', '--privacy-ramp', '2')).rejects.toThrow("--privacy-ramp must be a number in [0, 1], got '2'");
    await expect(run(...base, '--steps', '3', '--set', 'alpha')).rejects.toThrow("--set expects key=value, got 'alpha'");
    await expect(run(...base, '--steps', '3', '--frobnicate')).rejects.toThrow(/Unknown option '--frobnicate'/);
    await expect(run(...base, '--steps', '3', '--text', tokensFile, '--tokens-file', tokensFile)).rejects.toThrow(
      'give at most one of --text and --tokens-file',
    );
    await expect(run(...base, '--steps', '0')).rejects.toBeInstanceOf(UsageError);
    // These reach the GPU: the tokenizer check needs the model's vocabulary, the option checks the factory.
    await expect(run(...base, '--steps', '3')).rejects.toThrow(
      /has no tokenizer\.json and its vocabulary \(96 ids\) is too small for the byte-level tokenizer.*--tokens-file/,
    );
    // The values the service judges are usage errors too (exit code 2), not failures of a run.
    const badAlpha = run(
      ...base,
      '--steps',
      '3',
      '--tokens-file',
      tokensFile,
      '--seq-len',
      '8',
      '--factory',
      'distillation',
      '--set',
      'alpha=2',
    );
    await expect(badAlpha).rejects.toThrow("distillationLossFactory: option 'alpha' must be in [0, 1], got 2");
    await expect(badAlpha).rejects.toBeInstanceOf(UsageError);
    const longSeq = run(...base, '--steps', '3', '--tokens-file', tokensFile, '--seq-len', '1000');
    await expect(longSeq).rejects.toThrow("'seqLen' (1000) exceeds the model's 64 positions");
    await expect(longSeq).rejects.toBeInstanceOf(UsageError);
    const notModel = join(work, 'not-a-model');
    mkdirSync(notModel, { recursive: true });
    writeFileSync(join(notModel, 'config.json'), '{}');
    writeFileSync(join(notModel, 'model.safetensors'), 'not safetensors');
    const badWeights = run('--model', notModel, '--steps', '3', '--out', join(work, 'bad'), '--tokens-file', tokensFile);
    await expect(badWeights).rejects.toThrow(`--model ${notModel}: `);
    await expect(badWeights).rejects.toBeInstanceOf(UsageError);
    expect(existsSync(join(work, 'bad'))).toBe(false);
  });

  it('checks --out before reading or training: a folder it can create and write in, with no non-file in the way', async () => {
    const { io, err } = quietIO();
    const args = ['--model', TINY_LLAMA, '--steps', '3', '--tokens-file', tokensFile];
    // /proc refuses new folders (Node's recursive mkdir spins forever on it); /dev/null is no folder.
    await expect(main([...args, '--out', '/proc/sgt-x'], io)).rejects.toThrow(
      "--out /proc/sgt-x: cannot create that folder (ENOENT: no such file or directory, mkdir '/proc/sgt-x')",
    );
    await expect(main([...args, '--out', '/proc/sgt-x/y/z'], io)).rejects.toBeInstanceOf(UsageError);
    await expect(main([...args, '--out', '/dev/null'], io)).rejects.toThrow('--out /dev/null: exists and is not a folder');
    await expect(main([...args, '--out', '/proc/self'], io)).rejects.toThrow(/--out \/proc\/self: cannot write files in that folder/);
    const file = join(work, 'a-file');
    writeFileSync(file, 'x');
    await expect(main([...args, '--out', join(file, 'run')], io)).rejects.toThrow(/cannot create that folder \(ENOTDIR/);
    await expect(main([...args, '--out', ''], io)).rejects.toThrow('--out needs a folder name');
    const blocked = join(work, 'blocked');
    mkdirSync(join(blocked, 'report.json'), { recursive: true });
    await expect(main([...args, '--out', blocked], io)).rejects.toThrow(
      `--out ${blocked}: report.json there is not a file, so the run could not write it`,
    );
    // The check made no folder and left no probe: a missing parent chain is created and removed again.
    const deep = join(work, 'deep', 'er', 'run');
    await expect(main([...args, '--out', deep, '--steps', '0'], io)).rejects.toThrow('--steps must be');
    await expect(main([...args, '--out', deep, '--model', join(work, 'nowhere')], io)).rejects.toThrow(/no such folder/);
    expect(existsSync(join(work, 'deep'))).toBe(false);
    expect(readdirSync(blocked)).toEqual(['report.json']);
    expect(err.join('')).toBe('');
  });

  it('--version prints the package version', async () => {
    const { io, out } = quietIO();
    const { version } = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(await main(['--version'], io)).toEqual({ help: true, version });
    expect(out.join('')).toBe(`sgt-train ${version}\n`);
  });

  it('writes what it can when a file cannot be written at the end: report.json with the error, the cloak; RunError', async () => {
    const outDir = join(work, 'run-partial');
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      stdout: (s: string) => void out.push(s),
      interactive: false,
      stderr: (s: string) => {
        err.push(s);
        // After the --out check passed, something takes checkpoint.safetensors' place before the end of the run.
        if (s.includes('2/2 loss')) mkdirSync(join(outDir, 'checkpoint.safetensors'), { recursive: true });
      },
    };
    const args = [
      '--model',
      TINY_LLAMA,
      '--steps',
      '2',
      '--out',
      outDir,
      '--tokens-file',
      tokensFile,
      '--batch-size',
      '2',
      '--seq-len',
      '8',
      '--attack-steps',
      '0',
    ];
    const run = main([...args, '--cloak', 'numLayers=1'], io);
    await expect(run).rejects.toBeInstanceOf(RunError);
    const error = (await run.catch((e: unknown) => e)) as RunError;
    expect(error.message).toMatch(
      new RegExp(
        `^cannot write checkpoint\\.safetensors \\(EISDIR.*\\) \\(partial results in ${outDir}: cloak\\.safetensors, report\\.json\\)$`,
      ),
    );
    expect(error.dir).toBe(outDir);
    expect(error.written).toEqual([join(outDir, 'cloak.safetensors'), join(outDir, 'report.json')]);
    const report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as TrainingReport;
    expect(report.error).toMatch(/^cannot write checkpoint\.safetensors \(EISDIR/);
    expect(report.files).toEqual(['cloak.safetensors', 'report.json']);
    expect(report.final.step).toBe(2);
    expect(report.final.metrics?.step).toBe(2);
    expect(report.lossCurve?.points.length).toBe(2);
    // The cloak is whole (written under a temporary name, then renamed), and no temporary file is left.
    const cloak = parseSafetensors(new Uint8Array(readFileSync(join(outDir, 'cloak.safetensors'))));
    expect(cloak.metadata.sgt_step).toBe('2');
    expect(readdirSync(outDir).sort()).toEqual(['checkpoint.safetensors', 'cloak.safetensors', 'report.json']);
    expect(out.join('')).toBe('');

    // A folder that cannot be made at the end: nothing written, said so.
    const gone = join(work, 'run-gone');
    const io2 = {
      ...io,
      stderr: (s: string) => {
        if (s.includes('2/2 loss')) writeFileSync(gone, 'now a file');
      },
    };
    const run2 = main([...args.map((a) => (a === outDir ? gone : a))], io2);
    await expect(run2).rejects.toThrow(
      `cannot create the folder ${gone} (it exists and is not a folder) (nothing could be written to ${gone})`,
    );
    expect(statSync(gone).isFile()).toBe(true);
  });
});

describe('npm run train: output folders and warnings', () => {
  it('a training that stops early (a NaN loss) writes report.json with the error and the steps it made, and no cloak', async () => {
    const outDir = join(work, 'run-nan');
    const { io, err } = quietIO();
    const argv = [
      '--model',
      TINY_LLAMA,
      '--steps',
      '6',
      '--out',
      outDir,
      '--tokens-file',
      tokensFile,
      '--batch-size',
      '2',
      '--seq-len',
      '8',
    ];
    // On a terminal the bar is redrawn in place: the line it leaves open is ended, so the error starts a line of its own.
    const run = main([...argv, '--lr', '1e30', '--max-grad-norm', '1e30'], { ...io, interactive: true });
    await expect(run).rejects.toThrow(
      new RegExp(
        `^training stopped after (\\d) of 6 steps: the loss is NaN at step \\d: lower --lr .*\\(partial results in ${outDir}: report\\.json\\)$`,
      ),
    );
    const report = JSON.parse(readFileSync(join(outDir, 'report.json'), 'utf8')) as TrainingReport;
    expect(report.error).toMatch(/^training stopped after \d of 6 steps: the loss is NaN/);
    expect(report.files).toEqual(['report.json']);
    expect(report.final.metrics).toBeNull();
    const made = report.lossCurve?.points.length ?? 0;
    expect(report.error).toContain(`after ${made} of 6 steps: the loss is NaN at step ${made + 1}`);
    expect(readdirSync(outDir)).toEqual(['report.json']);
    const progress = err.join('');
    expect(progress).toContain('\r[');
    expect(progress.endsWith('\x1b[K\n')).toBe(true);
  });

  it('without --out, each run gets runs/<start time>/ and runs/latest links to the newest; a small held-out set warns', async () => {
    const cwd = mkdtempSync(join(work, 'cwd-'));
    // A runs/latest folder from an earlier version is kept under its date, not overwritten.
    mkdirSync(join(cwd, 'runs', 'latest'), { recursive: true });
    writeFileSync(join(cwd, 'runs', 'latest', 'report.json'), '{"old": true}');
    const args = [
      '--model',
      TINY_LLAMA,
      '--steps',
      '1',
      '--tokens-file',
      tokensFile,
      '--batch-size',
      '2',
      '--seq-len',
      '8',
      '--attack-steps',
      '0',
    ];
    const before = process.cwd();
    const stamp = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(-\d+)?$/;
    const results = [];
    const errs: string[] = [];
    process.chdir(cwd);
    try {
      for (let i = 0; i < 2; i++) {
        const { io, err } = quietIO();
        // One held-out sequence (--held-out-fraction 0.01 of ~30): too few to measure; --quiet keeps warnings.
        const result = await main([...args, '--quiet', '--held-out-fraction', '0.01'], io);
        if (result.help) throw new Error('main printed the help instead of training');
        results.push(result);
        errs.push(err.join(''));
      }
    } finally {
      process.chdir(before);
    }
    const runs = join(cwd, 'runs');
    const names = results.map((r) => r.outDir.slice(runs.length + 1));
    for (const [i, r] of results.entries()) {
      expect(r.outDir.startsWith(`${runs}/`)).toBe(true);
      expect(names[i]).toMatch(stamp);
      expect(r.files).toEqual(['cloak.safetensors', 'checkpoint.safetensors', 'report.json'].map((f) => join(r.outDir, f)));
      expect(existsSync(join(r.outDir, 'report.json'))).toBe(true);
    }
    expect(names[0]).not.toBe(names[1]);
    expect(lstatSync(join(runs, 'latest')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(runs, 'latest'))).toBe(names[1]);
    expect(JSON.parse(readFileSync(join(runs, 'latest', 'report.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(results[1].report)));
    const kept = readdirSync(runs).filter((n) => n !== 'latest' && !names.includes(n));
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatch(stamp);
    expect(JSON.parse(readFileSync(join(runs, kept[0], 'report.json'), 'utf8'))).toEqual({ old: true });
    expect(errs[0]).toContain(
      `sgt-train: note: ${join(runs, 'latest')} was a folder (from an earlier version): moved to ${join(runs, kept[0])}`,
    );

    const warning =
      'sgt-train: warning: only 1 held-out sequence of 8 tokens: too few to measure NN-FR, agreement and KL (fewer than 4); ' +
      'give more data (--text or --tokens-file), or a larger --held-out-fraction (now 0.01)\n';
    expect(results[1].report.data.heldOutSequences).toBe(1);
    expect(errs[1]).toBe(warning);
    expect(results[1].report.warnings).toEqual([warning.slice('sgt-train: warning: '.length, -1)]);
  });
});

/** Runs the CLI as a user does, in its own process (bin/sgt-train.mjs on the sources, as `npm run train` does). */
function cli(args: string[], env: Record<string, string> = {}) {
  const root = resolve(import.meta.dirname, '../..');
  const r = spawnSync(process.execPath, [join(root, 'bin/sgt-train.mjs'), ...args], {
    cwd: work,
    env: { ...process.env, SGT_TRAIN_FROM_SOURCE: '1', ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('sgt-train as a process', () => {
  const args = [
    '--model',
    TINY_LLAMA,
    '--tokens-file',
    tokensFile,
    '--batch-size',
    '2',
    '--seq-len',
    '8',
    '--steps',
    '1',
    '--attack-steps',
    '0',
  ];

  it('exits 2 for every usage error, before any training, with one line and no blank line', () => {
    const usage: [string[], string][] = [
      // The output folder is checked first: /proc/x used to train, then spin at 100% CPU forever.
      [
        [...args, '--out', '/proc/x'],
        "sgt-train: --out /proc/x: cannot create that folder (ENOENT: no such file or directory, mkdir '/proc/x')\n",
      ],
      [[...args, '--steps', '0'], "sgt-train: --steps must be an integer >= 1, got '0'\n"],
      [[...args, '--frobnicate'], /^sgt-train: Unknown option '--frobnicate'.*\(see --help\)\n$/],
      [['--model', join(work, 'nowhere')], `sgt-train: --model ${join(work, 'nowhere')}: no such folder\n`],
      // These two are judged by the service on the GPU (they exited 1 before); Dawn's two adapter
      // warnings, which used to come first, are dropped by the command.
      [
        [...args, '--out', join(work, 'p1'), '--factory', 'distillation', '--set', 'alpha=2'],
        /^sgt-train: distillationLossFactory: option 'alpha' must be in \[0, 1\], got 2\n$/,
      ],
      [
        [...args, '--out', join(work, 'p1'), '--seq-len', '1000'],
        /^sgt-train: TrainerService\.configure: 'seqLen' \(1000\) exceeds the model's 64 positions\n$/,
      ],
    ] as never;
    for (const [argv, expected] of usage) {
      const r = cli(argv);
      expect({ argv, status: r.status }).toEqual({ argv, status: 2 });
      if (typeof expected === 'string') expect(r.stderr).toBe(expected);
      else expect(r.stderr).toMatch(expected);
      expect(r.stderr).not.toMatch(/\n\n|loss|held-out|artificially reduced/);
      expect(r.stdout).toBe('');
    }
    expect(existsSync(join(work, 'p1'))).toBe(false);
  });

  it('--version prints the version and exits 0; a run that cannot get a device exits 1', () => {
    const { version } = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };
    const v = cli(['--version']);
    expect(v).toEqual({ status: 0, stdout: `sgt-train ${version}\n`, stderr: '' });
    const noDevice = cli([...args, '--out', join(work, 'p2')], { VK_ICD_FILENAMES: join(work, 'no-such-icd.json') });
    expect(noDevice.status).toBe(1);
    expect(noDevice.stderr).toMatch(/\nsgt-train: No WebGPU adapter was found\. .*\n$/);
    expect(existsSync(join(work, 'p2'))).toBe(false);
  });

  it('trains, writes and exits 0', () => {
    const outDir = join(work, 'p3');
    const r = cli([...args, '--out', outDir]);
    expect(r.status).toBe(0);
    // Dawn's own two adapter warnings (a native fprintf) are dropped by the command.
    expect(r.stderr).not.toMatch(/artificially reduced/);
    expect(r.stdout).toMatch(
      /^trained 1 step in \d+s: loss \d+\.\d{4} -> \d+\.\d{4}; NN-FR \d+\.\d% \(L2 \d+\.\d%\), .*top-1 agreement \d+\.\d%, mean KL /,
    );
    expect(r.stdout).toContain(`  ${join(outDir, 'report.json')}\n`);
    expect(readdirSync(outDir).sort()).toEqual(['checkpoint.safetensors', 'cloak.safetensors', 'report.json']);
  });
});

describe('TrainerService in Node', () => {
  const config = {
    factory: 'crossEntropyDistillation' as const,
    cloak: { numLayers: 1, seed: 2 },
    batchSize: 2,
    seqLen: 8,
    learningRate: 3e-3,
    seed: 5,
    tokens: documents(11, 24),
  };
  const modelArgs = () => ({
    config: JSON.parse(readFileSync(join(TINY_LLAMA, 'config.json'), 'utf8')) as unknown,
    weights: new Uint8Array(readFileSync(join(TINY_LLAMA, 'model.safetensors'))).slice().buffer,
  });

  it('refuses calls made in the wrong order, with what to call first', async () => {
    const s = new TrainerService();
    await expect(s.loadModel(modelArgs())).rejects.toThrow('TrainerService.loadModel: call init() first');
    await s.init();
    await expect(s.configure(config)).rejects.toThrow('TrainerService.configure: no model is loaded: call loadModel() first');
    await expect(s.start()).rejects.toThrow('TrainerService.start: no model is loaded: call loadModel() and configure() first');
    await expect(s.pause()).rejects.toThrow('TrainerService.pause: no run is in progress (no model loaded)');
    const model = await s.loadModel(modelArgs());
    expect(model).toMatchObject({ type: 'llama', layers: 2, hiddenSize: 32, vocabSize: 96, tokenizer: 'none' });
    await expect(s.evaluate()).rejects.toThrow('TrainerService.evaluate: call configure() first');
    await expect(s.configure({ ...config, tokens: undefined, text: 'hello' })).rejects.toThrow(
      /too small for the byte-level fallback .*pass tokenizerJson to loadModel\(\), or pre-tokenized 'tokens'/,
    );
    await expect(s.configure({ ...config, text: 'hello' })).rejects.toThrow("give exactly one of 'text'");
    await expect(s.configure({ ...config, seqLen: 100 })).rejects.toThrow("'seqLen' (100) exceeds the model's 64 positions");
    await expect(s.configure({ ...config, factory: 'distillation', factoryOptions: { alpha: 2 } })).rejects.toThrow(
      "option 'alpha' must be in [0, 1], got 2",
    );
    const summary = await s.configure({ ...config, maxSteps: 2 });
    expect(summary).toMatchObject({
      tokenizer: 'pretokenized',
      seqLen: 8,
      maxSteps: 2,
      factoryOptions: DEFAULT_FACTORY_OPTIONS.crossEntropyDistillation,
    });
    expect(await s.getState()).toMatchObject({ state: 'configured', step: 0 });
    await expect(s.resume()).rejects.toThrow('TrainerService.resume: the run is not paused (not started)');
    const events: ProgressEvent[] = [];
    expect(await s.start((e) => void events.push(e))).toMatchObject({ state: 'finished', step: 2, stepsThisRun: 2 });
    expect(events.map((e) => (e.type === 'state' ? e.state : e.type))).toEqual(['running', 'phase', 'step', 'phase', 'step', 'finished']);
    await expect(s.start()).rejects.toThrow(/already reached maxSteps \(2\)/);
    await expect(s.stop()).rejects.toThrow('TrainerService.stop: no run is in progress (the last run finished)');
    const one = await s.step();
    expect(one.step).toBe(3);
    await s.dispose();
    await expect(s.step()).rejects.toThrow('TrainerService.step: the service was disposed');
    await expect(s.init()).rejects.toThrow('TrainerService.init: the service was disposed');
    expect(await s.getState()).toMatchObject({ state: 'disposed' });
  });

  it('says what a run is doing before it does it, and evaluateAtStart measures the untrained transform first', async () => {
    const s = new TrainerService();
    await s.init();
    await s.loadModel(modelArgs());
    await expect(s.configure({ ...config, evaluateAtStart: 'yes' as never })).rejects.toThrow(
      "TrainerService.configure: 'evaluateAtStart' must be true or false, got yes",
    );
    const run = { ...config, maxSteps: 2, evaluateEvery: 1, evaluateBatches: 1, evaluateAtStart: true };
    await s.configure(run);
    // The same evaluation made by hand before any step: the baseline the run must report at step 0.
    const untrained = await s.evaluate(1);
    const events: ProgressEvent[] = [];
    const stepsDoneAtPhase: number[] = [];
    await s.start(async (e) => {
      events.push(e);
      // A phase event arrives before its work starts: no step of it is done yet.
      if (e.type === 'phase') stepsDoneAtPhase.push((await s.getState()).step);
    });
    const label = (e: ProgressEvent) =>
      e.type === 'state' ? e.state : e.type === 'phase' ? `begin ${e.phase} ${e.step}${e.first ? ' (first)' : ''}` : `${e.type} ${e.step}`;
    expect(events.map(label)).toEqual([
      'running',
      'begin evaluate 0 (first)',
      'metrics 0',
      'begin step 1 (first)',
      'step 1',
      'begin evaluate 1',
      'metrics 1',
      'begin step 2',
      'step 2',
      'begin evaluate 2',
      'metrics 2',
      'finished',
    ]);
    expect(stepsDoneAtPhase).toEqual([0, 0, 1, 1, 2]);
    for (const e of events) if (e.type === 'phase') expect(e.maxSteps).toBe(2);
    const baseline = events.find((e) => e.type === 'metrics');
    expect(baseline).toEqual({ ...untrained, type: 'metrics' });

    // A run that starts after step 0 has no baseline to take: it steps at once.
    await s.configure({ ...run, maxSteps: 3, evaluateEvery: 0 });
    await s.step();
    const later: ProgressEvent[] = [];
    await s.start((e) => void later.push(e));
    expect(later.map(label)).toEqual(['running', 'begin step 2 (first)', 'step 2', 'begin step 3', 'step 3', 'finished']);
    await s.dispose();
  });

  it('attackAtEnd: the last metrics event carries the learned attacks; attack() runs them between runs', async () => {
    const s = new TrainerService();
    await s.init();
    await s.loadModel(modelArgs());
    await expect(s.configure({ ...config, attackAtEnd: 'yes' as never })).rejects.toThrow(
      "TrainerService.configure: 'attackAtEnd' must be true, false or an object of attack options, got yes",
    );
    await s.configure({ ...config, maxSteps: 2, evaluateEvery: 1, evaluateBatches: 1, attackAtEnd: { steps: 3, hiddenSize: 8 } });
    const events: ProgressEvent[] = [];
    await s.start((e) => void events.push(e));
    // One metrics event per evaluation: the attacks ride on the one after the last step.
    const metrics = events.filter((e) => e.type === 'metrics');
    expect(metrics.map((e) => [e.step, e.type === 'metrics' && e.attack !== undefined])).toEqual([
      [1, false],
      [2, true],
    ]);
    const attack = metrics[1].type === 'metrics' ? metrics[1].attack : undefined;
    expect(Object.keys(attack ?? {}).sort()).toEqual(['linear', 'linearClean', 'mlp', 'mlpClean']);
    for (const r of Object.values(attack!)) {
      expect(r.steps).toBe(3);
      expect(r.recoveryRate).toBeGreaterThanOrEqual(0);
      expect(r.recoveryRate).toBeLessThanOrEqual(1);
    }
    const direct = await s.attack({ steps: 2, hiddenSize: 8 });
    expect(direct.step).toBe(2);
    expect(direct.mlp.steps).toBe(2);
    await s.dispose();
  });

  it('loads a sharded checkpoint as a list of buffers or with its index; a missing shard is named and leaves nothing allocated', async () => {
    const s = new TrainerService();
    await s.init();
    const llama3 = JSON.parse(readFileSync(join(TINY_LLAMA3, 'config.json'), 'utf8')) as unknown;
    const shard = (n: number) => new Uint8Array(readFileSync(join(TINY_LLAMA3, `model-0000${n}-of-00002.safetensors`))).slice().buffer;
    const index = readFileSync(join(TINY_LLAMA3, 'model.safetensors.index.json'), 'utf8');
    const expected = { type: 'llama', layers: 2, hiddenSize: 48, vocabSize: 128, heads: 4, maxPositions: 64 };
    expect(await s.loadModel({ config: llama3, weights: [shard(2), shard(1)] })).toMatchObject(expected);
    const withIndex = { index, shards: { 'model-00001-of-00002.safetensors': shard(1), 'model-00002-of-00002.safetensors': shard(2) } };
    expect(await s.loadModel({ config: llama3, weights: withIndex })).toMatchObject(expected);
    const start = liveBufferCount();
    await expect(
      s.loadModel({ config: llama3, weights: { index, shards: { 'model-00001-of-00002.safetensors': shard(1) } } }),
    ).rejects.toThrow("weights: missing shard 'model-00002-of-00002.safetensors' (10 tensors) named by model.safetensors.index.json");
    await expect(s.loadModel({ config: llama3, weights: [shard(1), shard(1)] })).rejects.toThrow(/is in two shards/);
    await expect(s.loadModel({ config: llama3, weights: [shard(1)] })).rejects.toThrow(/absent from every shard/);
    await expect(s.loadModel({ config: llama3, weights: { shards: {} } as never })).rejects.toThrow(
      /'weights' must be the bytes of model.safetensors/,
    );
    expect(liveBufferCount()).toBe(start);
    await s.dispose();
  });

  it('pauses, resumes and stops between steps; a failing callback rejects start with its message', async () => {
    const s = new TrainerService();
    await s.init();
    await s.loadModel(modelArgs());
    await s.configure({ ...config, evaluateEvery: 3 });
    const events: ProgressEvent[] = [];
    const steps = () => events.filter((e): e is StepEvent => e.type === 'step').length;
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
      expect(cond()).toBe(true);
    };
    const done = s.start((e) => void events.push(e));
    await until(() => steps() >= 2);
    await expect(s.start()).rejects.toThrow('TrainerService.start: a run is already running: stop() it first');
    await expect(s.checkpoint()).rejects.toThrow('TrainerService.checkpoint: a run is in progress: pause() or stop() it first');
    await expect(s.configure(config)).rejects.toThrow('TrainerService.configure: a run is in progress: stop() it first');
    expect(await s.pause()).toBe('paused');
    const atPause = steps();
    await new Promise((r) => setTimeout(r, 300));
    expect(steps()).toBe(atPause);
    expect(await s.getState()).toMatchObject({ state: 'paused', step: atPause });
    // While paused the trainer may be inspected.
    const m = await s.evaluate();
    expect(m.step).toBe(atPause);
    expect(m.top1Agreement).toBeGreaterThanOrEqual(0);
    expect(await s.resume()).toBe('running');
    await until(() => steps() >= atPause + 2);
    expect(await s.stop()).toBe('stopped');
    const summary = await done;
    expect(summary.state).toBe('stopped');
    expect(summary.step).toBe(steps());
    const kinds = events.map((e) => (e.type === 'state' ? e.state : e.type));
    expect(kinds[0]).toBe('running');
    expect(kinds.at(-1)).toBe('stopped');
    expect(kinds).toContain('paused');
    // evaluateEvery 3: a metrics event after step 3.
    const metrics = events.find((e) => e.type === 'metrics');
    expect(metrics).toMatchObject({ type: 'metrics', step: 3 });
    for (const e of events) if (e.type === 'step') expect(Number.isFinite(e.loss)).toBe(true);

    // A stopped run goes on where it stopped; an error in the callback ends it and reaches the caller.
    const before = (await s.getState()).step;
    await expect(
      s.start((e) => {
        if (e.type === 'step') throw new RangeError(`callback refused step ${e.step}`);
      }),
    ).rejects.toThrow(`callback refused step ${before + 1}`);
    expect(await s.getState()).toMatchObject({ state: 'stopped', step: before + 1 });
    await s.dispose();
  });
});
