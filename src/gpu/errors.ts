/**
 * The toolkit's errors: every error it throws on purpose is an {@link SgtError} whose `code` says
 * what kind of failure it is, so that an app (or a page driving the trainer worker) can branch on
 * the code and show the message. The messages name the function and the argument, as before.
 */

/**
 * What kind of failure an {@link SgtError} reports:
 *
 * - `INVALID_ARGUMENT`: an argument has the wrong type or value (not a tensor, a negative count,
 *   an out-of-range id, an empty prompt, ...).
 * - `SHAPE_MISMATCH`: tensor shapes do not fit together or have the wrong rank.
 * - `DTYPE_MISMATCH`: a tensor has the wrong element type.
 * - `INVALID_OPTION`: an options object has an unknown key or a bad value (factories, trainer,
 *   cloak, training configuration).
 * - `INVALID_STATE`: the call is out of order (no context yet, another call still running, a
 *   service not configured, ...).
 * - `USE_AFTER_DISPOSE`: a tensor, model, trainer or context was used after `dispose()`.
 * - `CHECKPOINT_INVALID`: checkpoint bytes are malformed or belong to another model or cloak.
 * - `MODEL_INVALID`: a model's config, safetensors file, shard index or tokenizer is malformed or
 *   inconsistent.
 * - `UNSUPPORTED`: valid input the toolkit does not handle (a model type, a dtype, no WebGPU).
 * - `IO_ERROR`: reading a file or a download failed (not found on the server, a network error, a
 *   truncated read); the same request may work later.
 * - `LIMIT_EXCEEDED`: the work needs more than a device limit allows (storage binding size,
 *   buffer size, workgroups per dimension); the message says what to split.
 * - `OUT_OF_MEMORY`: the device could not allocate a buffer.
 * - `DEVICE_LOST`: the GPU device was lost or destroyed; call `init()` for a fresh context.
 * - `GPU_ERROR`: WebGPU reported a validation or internal error, or a readback failed.
 * - `INTERNAL`: a broken invariant of the toolkit itself (a bug: please report it).
 */
export type SgtErrorCode =
  | 'INVALID_ARGUMENT'
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'INVALID_OPTION'
  | 'INVALID_STATE'
  | 'USE_AFTER_DISPOSE'
  | 'CHECKPOINT_INVALID'
  | 'MODEL_INVALID'
  | 'UNSUPPORTED'
  | 'IO_ERROR'
  | 'LIMIT_EXCEEDED'
  | 'OUT_OF_MEMORY'
  | 'DEVICE_LOST'
  | 'GPU_ERROR'
  | 'INTERNAL';

/** Every {@link SgtErrorCode}, in the order documented there. */
export const SGT_ERROR_CODES: readonly SgtErrorCode[] = Object.freeze([
  'INVALID_ARGUMENT',
  'SHAPE_MISMATCH',
  'DTYPE_MISMATCH',
  'INVALID_OPTION',
  'INVALID_STATE',
  'USE_AFTER_DISPOSE',
  'CHECKPOINT_INVALID',
  'MODEL_INVALID',
  'UNSUPPORTED',
  'IO_ERROR',
  'LIMIT_EXCEEDED',
  'OUT_OF_MEMORY',
  'DEVICE_LOST',
  'GPU_ERROR',
  'INTERNAL',
] as const);

/**
 * An error thrown by the toolkit, with a {@link SgtErrorCode}:
 *
 * ```ts
 * try { await trainer.step(); }
 * catch (e) {
 *   if (isSgtError(e, 'DEVICE_LOST')) await restart();
 *   else throw e;
 * }
 * ```
 */
export class SgtError extends Error {
  /** What kind of failure this is. */
  readonly code: SgtErrorCode;

  constructor(code: SgtErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SgtError';
    this.code = code;
  }
}

/**
 * Whether `e` is an {@link SgtError} (with `code`, when given). Also true for an error that crossed
 * a worker boundary as a plain `Error` with `name === 'SgtError'` and a known `code` (comlink
 * without {@link installErrorTransfer} on the page side), so a page can branch either way.
 */
export function isSgtError(e: unknown, code?: SgtErrorCode): e is SgtError {
  if (!(e instanceof Error)) return false;
  const c = (e as { code?: unknown }).code;
  const typed = e instanceof SgtError || (e.name === 'SgtError' && SGT_ERROR_CODES.includes(c as SgtErrorCode));
  return typed && (code === undefined || c === code);
}

/** The shape of comlink's transfer handlers (structural, so this module does not import comlink). */
export interface ErrorTransferHandler {
  canHandle(value: unknown): boolean;
  serialize(value: unknown): [unknown, Transferable[]];
  deserialize(value: unknown): unknown;
}

interface SerializedThrow {
  isError: boolean;
  value: { message?: string; name?: string; stack?: string; code?: unknown };
}

const INSTALLED = Symbol.for('sgt-webgpu.errorTransfer');

/**
 * Makes errors thrown across comlink keep their {@link SgtErrorCode}: wraps comlink's `throw`
 * transfer handler so that the sending side adds `code` to what it sends and the receiving side
 * rebuilds an {@link SgtError}. The trainer worker (`sgt-webgpu/worker`) installs it on its side;
 * call it on the page too, `installErrorTransfer(Comlink.transferHandlers)`, for `instanceof
 * SgtError` (without it a page still gets a plain `Error` with `name` 'SgtError' and `code`, which
 * {@link isSgtError} accepts). Idempotent.
 */
export function installErrorTransfer(handlers: Map<string, ErrorTransferHandler>): void {
  const base = handlers.get('throw');
  if (!base || (base as { [INSTALLED]?: boolean })[INSTALLED]) return;
  const wrapped: ErrorTransferHandler & { [INSTALLED]: boolean } = {
    [INSTALLED]: true,
    canHandle: (value) => base.canHandle(value),
    serialize(thrown) {
      const [serialized, transfers] = base.serialize(thrown) as [SerializedThrow, Transferable[]];
      const error = (thrown as { value?: unknown }).value;
      if (serialized.isError && error instanceof SgtError) serialized.value.code = error.code;
      return [serialized, transfers];
    },
    deserialize(serialized) {
      const s = serialized as SerializedThrow;
      const code = s.value?.code;
      if (s.isError && SGT_ERROR_CODES.includes(code as SgtErrorCode)) {
        const error = new SgtError(code as SgtErrorCode, s.value.message ?? '');
        if (s.value.stack) error.stack = s.value.stack;
        throw error;
      }
      return base.deserialize(serialized);
    },
  };
  handlers.set('throw', wrapped);
}
