/**
 * Typed errors (issue 12, class 8): every error the toolkit throws on purpose is an SgtError whose
 * code says what kind of failure it is, with the message it always had; the code survives comlink.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import * as Comlink from 'comlink';
import { describe, expect, it } from 'vitest';
import { gpu } from '../gpu';
import {
  AdamW,
  SGT_ERROR_CODES,
  SgtError,
  type SgtErrorCode,
  exp,
  installErrorTransfer,
  isSgtError,
  losses,
  matmul,
  parseModelConfig,
  parseSafetensors,
  tensor,
} from '../../src/index';
import { checkFloatTensor, checkSameShape, maskTensor } from '../../src/tensor/validate';
import { decodeCheckpoint } from '../../src/train/checkpoint';
import { TrainerService } from '../../src/worker/workerApi';

const SRC = resolve(import.meta.dirname, '../../src');

/**
 * Folders of src/ that may construct plain Errors, and why. Nothing else may: a new
 * `throw new Error(` fails this test until it becomes an SgtError with a code.
 */
const PLAIN_ERRORS_ALLOWED: Record<string, string> = {
  reference:
    'the float64 twins are test oracles, not the toolkit: they import only types from outside src/reference (scripts/check-layers.mjs), so they cannot construct SgtError',
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Runs `f` and returns what it threw (fails if it threw nothing). */
function thrown(f: () => unknown): SgtError {
  try {
    f();
  } catch (e) {
    return e as SgtError;
  }
  throw new Error('expected a throw');
}

async function rejected(p: Promise<unknown>): Promise<SgtError> {
  try {
    await p;
  } catch (e) {
    return e as SgtError;
  }
  throw new Error('expected a rejection');
}

function expectCode(error: unknown, code: SgtErrorCode, message: RegExp): void {
  expect(error).toBeInstanceOf(SgtError);
  expect((error as SgtError).code).toBe(code);
  expect((error as SgtError).name).toBe('SgtError');
  expect((error as Error).message).toMatch(message);
  expect(isSgtError(error, code)).toBe(true);
}

describe('SgtError', () => {
  it('no plain Error is constructed in src/ outside the allowed folders', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const rel = relative(SRC, file);
      if (rel.split('/')[0] in PLAIN_ERRORS_ALLOWED) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/\bnew (Error|TypeError|RangeError)\(/.test(line)) offenders.push(`src/${rel}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(offenders).toEqual([]);
  });

  it('carries a code, a name and the cause; isSgtError checks the code and accepts a plain Error rebuilt by comlink', () => {
    const cause = new Error('inner');
    const e = new SgtError('SHAPE_MISMATCH', 'f: bad', { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.cause).toBe(cause);
    expect(isSgtError(e)).toBe(true);
    expect(isSgtError(e, 'SHAPE_MISMATCH')).toBe(true);
    expect(isSgtError(e, 'DTYPE_MISMATCH')).toBe(false);
    expect(isSgtError(new Error('x'))).toBe(false);
    expect(isSgtError({ name: 'SgtError', code: 'SHAPE_MISMATCH', message: 'x' })).toBe(false);
    const overTheWire = Object.assign(new Error('f: bad'), { name: 'SgtError', code: 'SHAPE_MISMATCH' });
    expect(isSgtError(overTheWire, 'SHAPE_MISMATCH')).toBe(true);
    expect(isSgtError(Object.assign(new Error('x'), { name: 'SgtError', code: 'NOT_A_CODE' }))).toBe(false);
    expect(new Set(SGT_ERROR_CODES).size).toBe(SGT_ERROR_CODES.length);
  });
});

describe('representative errors carry the right code and keep their message', () => {
  it('argument checks (validate.ts), tensors and ops', async () => {
    await gpu();
    const a = tensor([1, 2, 3, 4], [2, 2]);
    const ids = tensor([0, 1], [2], { dtype: 'i32' });
    expectCode(
      thrown(() => checkFloatTensor('f', 'x', 3 as never)),
      'INVALID_ARGUMENT',
      /^f: argument 'x' must be a Tensor$/,
    );
    expectCode(
      thrown(() => checkFloatTensor('f', 'x', ids)),
      'DTYPE_MISMATCH',
      /^f: argument 'x' has dtype i32; expected f32$/,
    );
    expectCode(
      thrown(() => checkFloatTensor('f', 'x', a, 3)),
      'SHAPE_MISMATCH',
      /expected rank 3/,
    );
    expectCode(
      thrown(() => checkSameShape('f', 'a', a, 'b', ids)),
      'SHAPE_MISMATCH',
      /they must match/,
    );
    expectCode(
      thrown(() => maskTensor('f', 'm', [0, 2], [1, 2])),
      'INVALID_ARGUMENT',
      /must hold only 0 and 1; found 2/,
    );
    expectCode(
      thrown(() => tensor([1, 2, 3], [2, 2])),
      'SHAPE_MISMATCH',
      /data has 3 elements but shape \[2,2\] needs 4/,
    );
    expectCode(
      thrown(() => matmul(a, tensor([1, 2, 3], [3, 1]))),
      'SHAPE_MISMATCH',
      /inner dimensions differ \(2 vs 3\)/,
    );
    expectCode(
      thrown(() => losses.distillationCrossEntropy(a, a, [1, 1])),
      'SHAPE_MISMATCH',
      /distillationCrossEntropy: argument 'teacherLogits' has shape \[2,2\]; expected rank 3/,
    );
    const gone = tensor([1]);
    gone.dispose();
    expectCode(
      thrown(() => exp(gone)),
      'USE_AFTER_DISPOSE',
      /exp \(input 0\): tensor of shape \[1\] was used after dispose\(\)/,
    );
    expectCode(await rejected(gone.toArray()), 'USE_AFTER_DISPOSE', /was used after dispose/);
    expectCode(
      thrown(() => new AdamW([a], { eps: 0 })),
      'INVALID_OPTION',
      /AdamW: option 'eps' must be a finite number > 0/,
    );
    a.dispose();
    ids.dispose();
  });

  it('the device: over-limit bindings, out of memory and WebGPU errors', async () => {
    const ctx = await gpu();
    expectCode(
      thrown(() => ctx.setBindingLimit(1000)),
      'INVALID_ARGUMENT',
      /setBindingLimit: 1000 bytes is not a size class/,
    );
    // A GPUOutOfMemoryError reported by the device surfaces at the next check, as OUT_OF_MEMORY.
    const OutOfMemory = (globalThis as unknown as { GPUOutOfMemoryError: new (m: string) => GPUError }).GPUOutOfMemoryError;
    const ErrorEvent = (globalThis as unknown as { GPUUncapturedErrorEvent: new (t: string, i: { error: GPUError }) => Event })
      .GPUUncapturedErrorEvent;
    ctx.device.dispatchEvent(new ErrorEvent('uncapturederror', { error: new OutOfMemory('allocation of 64 GiB failed') }));
    expectCode(
      thrown(() => ctx.checkHealthy()),
      'OUT_OF_MEMORY',
      /WebGPU error: allocation of 64 GiB failed/,
    );
    // A validation error (a buffer larger than the device allows, made behind the toolkit's back).
    ctx.device.createBuffer({ size: ctx.limits.maxBufferSize + 4, usage: GPUBufferUsage.STORAGE });
    await expect(rejected(ctx.sync())).resolves.toMatchObject({ code: 'GPU_ERROR', message: expect.stringMatching(/^WebGPU error: /) });
    expect([...(await exp(tensor([0])).toArray())]).toEqual([1]);
  });

  it('models, checkpoints and configuration', async () => {
    expectCode(
      thrown(() => parseSafetensors(new Uint8Array([1, 2, 3]))),
      'MODEL_INVALID',
      /safetensors/,
    );
    expectCode(
      thrown(() => parseModelConfig({ model_type: 'llama' })),
      'MODEL_INVALID',
      /^config\.json: /,
    );
    expectCode(
      thrown(() => decodeCheckpoint(new Uint8Array([1, 2, 3]), { model: null as never, cloak: {}, parameters: [] })),
      'CHECKPOINT_INVALID',
      /./,
    );
    const service = new TrainerService();
    expectCode(await rejected(service.loadModel({ config: {}, weights: new Uint8Array() })), 'INVALID_STATE', /call init\(\) first/);
  });
});

describe('over comlink', () => {
  it('installErrorTransfer keeps the code: the receiving side gets an SgtError, other errors stay plain', async () => {
    installErrorTransfer(Comlink.transferHandlers);
    installErrorTransfer(Comlink.transferHandlers); // idempotent
    const { port1, port2 } = new MessageChannel();
    Comlink.expose(
      {
        typed(): never {
          throw new SgtError('INVALID_OPTION', 'TrainerService.configure: bad option');
        },
        plain(): never {
          throw new Error('plain failure');
        },
      },
      port1,
    );
    const remote = Comlink.wrap<{ typed(): never; plain(): never }>(port2);
    const typed = await rejected(remote.typed());
    expectCode(typed, 'INVALID_OPTION', /^TrainerService\.configure: bad option$/);
    const plain = await rejected(remote.plain());
    expect(plain).not.toBeInstanceOf(SgtError);
    expect(isSgtError(plain)).toBe(false);
    expect(plain.message).toBe('plain failure');
    port1.close();
    port2.close();
  });
});
