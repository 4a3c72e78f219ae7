/**
 * Compiling edited WGSL up front, for its messages. The library's pipeline cache reports a
 * compile error asynchronously, through an error scope, as one string at the next readback; the
 * playground instead asks the shader module for its compilation info, which carries a line and
 * column per message. The edited file is composed as the library composes it (`#include` lines
 * resolved, included files appended after it), so its own lines keep their numbers and a message
 * about an included file names that file (`common.wgsl:12`).
 */
import { composeWgsl, wgslLocation, WgslIncludeError } from '../../src/index';

/** One compiler message about the edited source. */
export interface CompileMessage {
  type: GPUCompilationMessageType;
  /** 1-based line (of `file` when set), 0 when the message is about no particular line. */
  line: number;
  /** 1-based column (in UTF-16 units), 0 when there is none. */
  column: number;
  message: string;
  /** The included file (e.g. `common.wgsl`) the line is in; absent for the edited file itself. */
  file?: string;
}

/** Raised by {@link checkWgsl} when the source has errors: the messages to show. */
export class WgslCompileError extends Error {
  constructor(readonly messages: CompileMessage[]) {
    const errors = messages.filter((m) => m.type === 'error');
    super(
      `the edited WGSL does not compile (${errors.length} error${errors.length === 1 ? '' : 's'}):\n${errors.map(formatMessage).join('\n')}`,
    );
    this.name = 'WgslCompileError';
  }
}

/**
 * Compiles `code` on `device` and returns every message of `getCompilationInfo()`. An invalid
 * module also raises a validation error; it is caught in an error scope here, or it would reach
 * the device's `uncapturederror` handler and fail the library's next, unrelated, dispatch.
 */
export async function compileWgsl(device: GPUDevice, code: string): Promise<CompileMessage[]> {
  let composed: ReturnType<typeof composeWgsl>;
  try {
    composed = composeWgsl(code);
  } catch (e) {
    if (!(e instanceof WgslIncludeError)) throw e;
    return [{ type: 'error', line: e.line, column: 1, message: e.message, ...(e.file === null ? {} : { file: e.file }) }];
  }
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: composed.code, label: 'playground: edited WGSL' });
  // Pop at once (scopes are a stack shared with the library's pipeline cache), await later.
  const scope = device.popErrorScope();
  const info = await module.getCompilationInfo();
  await scope;
  return info.messages.map((m) => {
    const at = m.lineNum > 0 ? wgslLocation(composed, m.lineNum) : { file: null, line: 0 };
    const where = at.file === null ? {} : { file: at.file };
    return { type: m.type, line: at.line, column: m.linePos, message: m.message, ...where };
  });
}

/** Throws a {@link WgslCompileError} when `code` has errors; returns the warnings and notes otherwise. */
export async function checkWgsl(device: GPUDevice, code: string): Promise<CompileMessage[]> {
  const messages = await compileWgsl(device, code);
  if (messages.some((m) => m.type === 'error')) throw new WgslCompileError(messages);
  return messages;
}

/** Where a message is: `line 12:5` in the edited file, `common.wgsl:12:5` in an included one, or ''. */
export function messageLocation(m: CompileMessage): string {
  if (m.line <= 0) return m.file ?? '';
  const column = m.column > 0 ? `:${m.column}` : '';
  return m.file === undefined ? `line ${m.line}${column}` : `${m.file}:${m.line}${column}`;
}

/** `line 12:5 error: message`, `common.wgsl:12:5 error: message` (or `error: message` without a location). */
export function formatMessage(m: CompileMessage): string {
  const where = messageLocation(m);
  return `${where}${where ? ' ' : ''}${m.type}: ${m.message}`;
}
