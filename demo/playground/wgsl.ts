/**
 * Compiling edited WGSL up front, for its messages. The library's pipeline cache reports a
 * compile error asynchronously, through an error scope, as one string at the next readback; the
 * playground instead asks the shader module for its compilation info, which carries a line and
 * column per message.
 */

/** One compiler message about the edited source. */
export interface CompileMessage {
  type: GPUCompilationMessageType;
  /** 1-based line, 0 when the message is about no particular line. */
  line: number;
  /** 1-based column (in UTF-16 units), 0 when there is none. */
  column: number;
  message: string;
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
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code, label: 'playground: edited WGSL' });
  // Pop at once (scopes are a stack shared with the library's pipeline cache), await later.
  const scope = device.popErrorScope();
  const info = await module.getCompilationInfo();
  await scope;
  return info.messages.map((m) => ({ type: m.type, line: m.lineNum, column: m.linePos, message: m.message }));
}

/** Throws a {@link WgslCompileError} when `code` has errors; returns the warnings and notes otherwise. */
export async function checkWgsl(device: GPUDevice, code: string): Promise<CompileMessage[]> {
  const messages = await compileWgsl(device, code);
  if (messages.some((m) => m.type === 'error')) throw new WgslCompileError(messages);
  return messages;
}

/** `line 12:5 error: message` (or `error: message` without a location). */
export function formatMessage(m: CompileMessage): string {
  const where = m.line > 0 ? `line ${m.line}${m.column > 0 ? `:${m.column}` : ''} ` : '';
  return `${where}${m.type}: ${m.message}`;
}
