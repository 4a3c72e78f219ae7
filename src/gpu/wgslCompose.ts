/**
 * WGSL composition: a kernel file says `#include "common.wgsl"` and gets the shared prelude
 * (`shaders/common.wgsl`: negInf, the workgroup reductions, the online log-sum-exp) without
 * moving a single one of its own lines.
 *
 * WGSL module-scope declarations may be used before they are declared, so an include is resolved
 * by turning its line into a comment (same line count) and appending the included file after the
 * including one, once however often it is included (nested includes are appended after it, in
 * order of first mention). Line N of the file is line N of the composed module; a line past its
 * end belongs to an included file, which {@link wgslLocation} names (`common.wgsl:12`).
 * The pipeline cache compiles and reflects the composed module; the playground composes the
 * edited file the same way and maps its compiler messages back.
 */
import common from '../../shaders/common.wgsl?raw';
import { composeWgslFrom, type ComposedWgsl } from './wgslComposeCore';

export { WgslIncludeError, wgslLocation, mapWgslMessage, type ComposedWgsl, type WgslSegment } from './wgslComposeCore';

/** Files a kernel may `#include`, by the name it uses. */
export const WGSL_INCLUDES: Readonly<Record<string, string>> = { 'common.wgsl': common };

/**
 * Resolves the `#include "name"` lines of `source` (and of the files it includes) from `library`
 * (default: the shipped {@link WGSL_INCLUDES}). Throws a {@link WgslIncludeError} naming an
 * unknown file. Source without includes is returned as is.
 */
export function composeWgsl(source: string, library: Readonly<Record<string, string>> = WGSL_INCLUDES): ComposedWgsl {
  return composeWgslFrom(source, library);
}
