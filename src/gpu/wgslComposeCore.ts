/**
 * The WGSL composition algorithm (`#include` resolution and locating lines of a composed module),
 * importing only `./errors` (itself import-free): `./wgslCompose` applies it with the shipped
 * include library, and the build's shader plugin (scripts/vite-plugin-wgsl.ts) runs it in Node,
 * where no `?raw` import resolves (hence also the `.ts` extension, which Vite's config loader
 * wants). ./wgslCompose explains the composition rule.
 */
import { SgtError } from './errors.ts';

/** One file's lines in a composed module. */
export interface WgslSegment {
  /** Name of the file (`null` for the composed file itself). */
  file: string | null;
  /** 1-based line of the composed module where the file starts. */
  firstLine: number;
  /** Number of lines of the file. */
  lineCount: number;
}

/** A composed WGSL module and where each file lies in it. */
export interface ComposedWgsl {
  code: string;
  /** The including file first (from line 1), then every included file in the order appended. */
  segments: WgslSegment[];
}

/** An `#include` naming no known file. `line` is 1-based in the file that has the include. */
export class WgslIncludeError extends SgtError {
  constructor(
    message: string,
    readonly file: string | null,
    readonly line: number,
  ) {
    super('INVALID_ARGUMENT', message);
    this.name = 'WgslIncludeError';
  }
}

const INCLUDE = /^[ \t]*#include[ \t]+"([^"\n]*)"[ \t]*(?:\/\/.*)?$/;

function lineCount(text: string): number {
  if (text === '') return 0;
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) if (i < text.length - 1) n++;
  return n;
}

/**
 * Resolves the `#include "name"` lines of `source` (and of the files it includes) from `library`.
 * Throws a {@link WgslIncludeError} naming an unknown file. Source without includes is returned as is.
 */
export function composeWgslFrom(source: string, library: Readonly<Record<string, string>>): ComposedWgsl {
  if (!source.includes('#include')) return { code: source, segments: [{ file: null, firstLine: 1, lineCount: lineCount(source) }] };
  const seen = new Set<string>();
  const queue: string[] = [];
  const expand = (text: string, file: string | null): string =>
    text
      .split('\n')
      .map((line, i) => {
        const m = INCLUDE.exec(line);
        if (!m) return line;
        const name = m[1];
        if (!Object.hasOwn(library, name)) {
          const known = Object.keys(library).join(', ') || 'none';
          const where = `line ${i + 1}${file === null ? '' : ` of ${file}`}`;
          throw new WgslIncludeError(`#include "${name}" (${where}): no such WGSL file (known: ${known})`, file, i + 1);
        }
        if (!seen.has(name)) {
          seen.add(name);
          queue.push(name);
        }
        return `// ${line.trim()}: appended at the end of the module`;
      })
      .join('\n');
  const parts = [expand(source, null)];
  const segments: WgslSegment[] = [{ file: null, firstLine: 1, lineCount: lineCount(source) }];
  for (let k = 0; k < queue.length; k++) {
    const name = queue[k];
    const last = segments[segments.length - 1];
    if (!parts[parts.length - 1].endsWith('\n')) parts[parts.length - 1] += '\n';
    parts.push(expand(library[name], name));
    segments.push({ file: name, firstLine: last.firstLine + last.lineCount, lineCount: lineCount(library[name]) });
  }
  return { code: parts.join(''), segments };
}

/** The file (`null`: the including one) and 1-based line of line `line` of a composed module. */
export function wgslLocation(composed: ComposedWgsl, line: number): { file: string | null; line: number } {
  for (let k = composed.segments.length - 1; k >= 0; k--) {
    const s = composed.segments[k];
    if (line >= s.firstLine) return { file: s.file, line: line - s.firstLine + 1 };
  }
  return { file: null, line };
}

/**
 * A compiler message of the composed module (Dawn's `:LINE:COL error: ...`) with the locations in
 * included files rewritten as `common.wgsl:LINE:COL`; those in the including file are kept.
 */
export function mapWgslMessage(composed: ComposedWgsl, message: string): string {
  if (composed.segments.length < 2) return message;
  return message.replace(/(^|\s)([^\s:]*):(\d+):(\d+)(?= (?:error|warning|note|info)\b)/g, (whole, start, _label, line, column) => {
    const at = wgslLocation(composed, Number(line));
    return at.file === null ? whole : `${start}${at.file}:${at.line}:${column}`;
  });
}
