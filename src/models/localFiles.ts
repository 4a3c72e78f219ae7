/**
 * Local files in Node: folder paths and `file:` URLs (Node's `fetch` cannot read `file:` URLs).
 * `node:fs/promises` is imported on demand under a variable name, so that bundlers leave it out of
 * browser builds and a page never loads it; the few calls used are typed here structurally, so the
 * package's declarations need no Node types.
 */
import { SgtError } from '../gpu/errors';

/** A local file opened for reading. */
export interface OpenedLocalFile {
  /** Bytes in the file. */
  size: number;
  /** Its bytes, read in chunks; the file is closed at the end or on cancel. */
  stream(): ReadableStream<Uint8Array>;
}

interface FileHandleLike {
  stat(): Promise<{ size: number; isFile(): boolean }>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

interface FsPromisesLike {
  open(path: string | URL, flags: string): Promise<FileHandleLike>;
  stat(path: string | URL): Promise<{ isDirectory(): boolean; isFile(): boolean }>;
}

/** Bytes read from disk per chunk. */
const CHUNK_BYTES = 1 << 22;

/** Whether this runs in Node (where local paths and `file:` URLs can be read). */
export function isNode(): boolean {
  const g = globalThis as { process?: { versions?: { node?: string } } };
  return typeof g.process?.versions?.node === 'string';
}

let fsModule: Promise<FsPromisesLike> | null = null;

function nodeFs(): Promise<FsPromisesLike> {
  if (!isNode()) return Promise.reject(new SgtError('UNSUPPORTED', 'local files (a folder path or a file: URL) can only be read in Node'));
  // A variable name keeps bundlers (Vite, Rollup, webpack) from resolving node:fs for the browser.
  const name = 'node:fs/promises';
  fsModule ??= import(/* @vite-ignore */ /* webpackIgnore: true */ name) as Promise<FsPromisesLike>;
  return fsModule;
}

function errorCode(e: unknown): string | undefined {
  return (e as { code?: unknown })?.code as string | undefined;
}

/** Whether `path` (a path or a `file:` URL) is an existing folder. */
export async function isLocalFolder(path: string | URL): Promise<boolean> {
  const fs = await nodeFs();
  try {
    return (await fs.stat(path)).isDirectory();
  } catch (e) {
    if (errorCode(e) === 'ENOENT' || errorCode(e) === 'ENOTDIR') return false;
    throw e;
  }
}

/** Whether `path` (a path or a `file:` URL) is an existing file. */
export async function isLocalFile(path: string | URL): Promise<boolean> {
  const fs = await nodeFs();
  try {
    return (await fs.stat(path)).isFile();
  } catch (e) {
    if (errorCode(e) === 'ENOENT' || errorCode(e) === 'ENOTDIR') return false;
    throw e;
  }
}

function fileStream(handle: FileHandleLike): ReadableStream<Uint8Array> {
  let position = 0;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await handle.close().catch(() => {});
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = new Uint8Array(CHUNK_BYTES);
        const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, position);
        if (bytesRead === 0) {
          await close();
          controller.close();
          return;
        }
        position += bytesRead;
        controller.enqueue(chunk.subarray(0, bytesRead));
      } catch (e) {
        await close();
        controller.error(e);
      }
    },
    cancel: close,
  });
}

/**
 * Opens a local file (a path or a `file:` URL) for reading; null when there is no such file.
 * Throws for a folder or an unreadable file, naming the path.
 */
export async function openLocalFile(path: string | URL): Promise<OpenedLocalFile | null> {
  const fs = await nodeFs();
  let handle: FileHandleLike;
  try {
    handle = await fs.open(path, 'r');
  } catch (e) {
    if (errorCode(e) === 'ENOENT' || errorCode(e) === 'ENOTDIR') return null;
    throw new SgtError('IO_ERROR', `cannot open ${String(path)}: ${(e as Error).message}`, { cause: e });
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close().catch(() => {});
    throw new SgtError('INVALID_ARGUMENT', `${String(path)} is not a file`);
  }
  return { size: info.size, stream: () => fileStream(handle) };
}
