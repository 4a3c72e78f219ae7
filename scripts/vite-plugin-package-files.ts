/**
 * The library build's handling of the package's own data files (`models/default/*`), which the
 * sources reach as `new URL('../../models/default/config.json', import.meta.url)`.
 *
 * Left alone, Vite's library mode would inline each such file into the bundle as a base64 data
 * URL (3.3 MB for the default model's weights). This plugin keeps them as files instead: the
 * package ships `models/default/` beside `dist/`, and each built module gets the literal path from
 * where it sits to that file. The result is still `new URL("<literal>", import.meta.url)`, so it
 * resolves when the package is used unbundled (Node, a CDN, a static server) and an app's bundler
 * (Vite, webpack) still finds and emits the file as one of the app's assets.
 *
 * In the transform stage the literal becomes a marker under `/* @vite-ignore *\/` (so Vite's
 * asset plugin skips it); once the chunk's place is known, the marker and the comment are
 * replaced by the chunk-relative path.
 */
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { Plugin } from 'vite';

const ROOT = resolve(import.meta.dirname, '..');
/** The folders whose files are shipped beside `dist/` and referenced from the sources. */
const PACKAGE_FOLDERS = ['models/default/'];
const MARKER = '__sgt_package_file__:';

const SOURCE_URL = /new\s+URL\(\s*(['"])(\.[^'"]+)\1\s*,\s*import\.meta\.url\s*\)/g;
const MARKED_URL = new RegExp(`/\\*\\s*@vite-ignore\\s*\\*/(\\s*)(["'])${MARKER}([^"']+)\\2`, 'g');

/** The path from the package root, when `rel` (relative to the module `id`) points into a shipped folder. */
function packagePath(id: string, rel: string): string | null {
  const target = relative(ROOT, resolve(dirname(id), rel))
    .split(sep)
    .join('/');
  return PACKAGE_FOLDERS.some((folder) => target.startsWith(folder)) ? target : null;
}

/** Keeps the package's data files out of the library bundle, referenced by a chunk-relative `new URL`. */
export function packageFileUrls(): Plugin {
  let outDir = resolve(ROOT, 'dist');
  return {
    name: 'sgt:package-file-urls',
    apply: 'build',
    enforce: 'pre',
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    transform(code, id) {
      if (!id.startsWith(join(ROOT, 'src') + sep) || !code.includes('import.meta.url')) return null;
      let changed = false;
      // Same line, same lines after it: the source map stays right but for columns on that line.
      const out = code.replace(SOURCE_URL, (whole, _quote: string, rel: string) => {
        const path = packagePath(id, rel);
        if (!path) return whole;
        changed = true;
        return `new URL(/* @vite-ignore */ "${MARKER}${path}", import.meta.url)`;
      });
      return changed ? { code: out, map: null } : null;
    },
    renderChunk(code, chunk) {
      if (!code.includes(MARKER)) return null;
      // Where the package root is, seen from the chunk, assuming outDir sits in the package root (dist/).
      const chunkDir = dirname(join(outDir, chunk.fileName));
      // The comment goes, the whitespace (and line breaks) after it stays: lines do not move.
      const out = code.replace(MARKED_URL, (_whole, space: string, _quote: string, path: string) => {
        let rel = relative(chunkDir, join(dirname(outDir), path))
          .split(sep)
          .join('/');
        if (!rel.startsWith('.')) rel = `./${rel}`;
        return `${space}${JSON.stringify(rel)}`;
      });
      return { code: out, map: null };
    },
  };
}
