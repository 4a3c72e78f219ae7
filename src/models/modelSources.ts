/**
 * Where `loadPretrained` reads a model's files from, opened one file at a time by name: a base URL
 * laid out as the Hugging Face Hub serves a repository (`<base>/config.json`, ...), a Node folder
 * (a path or a `file:` URL), files picked in a page (a `FileList` or `File[]`, e.g. from
 * `<input type="file" webkitdirectory>`), or a folder handle (File System Access API). Files
 * fetched over HTTP(S) are kept in the Cache Storage API when it exists (pages and workers in a
 * secure context) and caching is on.
 */
import { isLocalFile, isLocalFolder, isNode, openLocalFile } from './localFiles';
import { responseLength } from './safetensors';
import { SgtError, type SgtErrorCode } from '../gpu/errors';

/**
 * A model folder: a base URL (string or `URL`; in a page a relative one resolves against the
 * page), a Node folder path or `file:` URL, picked files (`FileList` / `File[]`), or a
 * `FileSystemDirectoryHandle`.
 */
export type PretrainedSource = string | URL | FileList | readonly File[] | FileSystemDirectoryHandle;

/** The Cache Storage cache that `loadPretrained` keeps downloads in unless given another name. */
export const PRETRAINED_CACHE_NAME = 'sgt-webgpu-models';

/**
 * A model folder that cannot be read: a missing `config.json`, weights or shard, a file that is
 * not what its name says, or a failed download. `file` names the file at fault (null when the
 * folder itself is), `source` the folder.
 */
export class ModelFilesError extends SgtError {
  /** The file at fault, or null when it is the folder itself. */
  readonly file: string | null;
  /** The folder, base URL or picked files, as the message names it. */
  readonly source: string;
  /**
   * @param message what is wrong and what was expected.
   * @param details the folder, the file at fault and the underlying error.
   */
  constructor(message: string, details: { source: string; file?: string | null; cause?: unknown; code?: SgtErrorCode }) {
    super(details.code ?? 'MODEL_INVALID', message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ModelFilesError';
    this.file = details.file ?? null;
    this.source = details.source;
  }
}

/** One of a model's files, opened: its size when known and a stream of its bytes. */
export interface OpenedModelFile {
  /** Bytes in the file, null when the server does not say. */
  size: number | null;
  /** Whether it comes from the Cache Storage cache. */
  fromCache: boolean;
  /** Its bytes (read once). */
  stream(): ReadableStream<Uint8Array>;
  /** Keeps the bytes, read and checked, in the cache (HTTP(S) sources with caching on; else nothing). */
  keep(bytes: Uint8Array): Promise<void>;
}

/** A model folder whose files are opened by name. */
export interface ModelFileSource {
  /** The folder as messages name it: the base URL, the path, or the picked folder. */
  label: string;
  /** Opens a file; null when the folder has no such file. */
  open(name: string): Promise<OpenedModelFile | null>;
  /** The file names, when the source can list them (picked files), for messages. */
  names?: string[];
  /** Whether the folder has a file, when that is cheap to ask (local folders and picked files; not HTTP). */
  has?(name: string): Promise<boolean>;
}

/** How HTTP(S) sources are fetched and cached. */
export interface ModelSourceOptions {
  /** Keep downloads in the Cache Storage API (default true; a string names the cache). */
  cache?: boolean | string;
  /** Aborts the downloads. */
  signal?: AbortSignal;
  /** Extra `fetch` options (e.g. an `Authorization` header for a gated Hub model). */
  requestInit?: RequestInit;
}

const nothingToKeep = async (): Promise<void> => {};

function blobFile(blob: Blob): OpenedModelFile {
  return { size: blob.size, fromCache: false, stream: () => blob.stream() as ReadableStream<Uint8Array>, keep: nothingToKeep };
}

/** Picked files: the top-level ones by name (in a picked folder, sub-folders are skipped). */
function pickedFiles(files: readonly File[]): ModelFileSource {
  const byName = new Map<string, File>();
  let folder = '';
  for (const file of files) {
    const parts = (file.webkitRelativePath || file.name).split('/');
    if (parts.length > 2) continue;
    if (parts.length === 2) folder = parts[0];
    byName.set(file.name, file);
  }
  return {
    label: folder ? `${folder}/ (picked)` : 'the picked files',
    names: [...byName.keys()].sort(),
    has: async (name) => byName.has(name),
    open: async (name) => {
      const file = byName.get(name);
      return file ? blobFile(file) : null;
    },
  };
}

function directoryHandle(handle: FileSystemDirectoryHandle): ModelFileSource {
  return {
    label: `${handle.name}/`,
    has: async (name) => {
      try {
        await handle.getFileHandle(name);
        return true;
      } catch {
        return false;
      }
    },
    open: async (name) => {
      try {
        return blobFile(await (await handle.getFileHandle(name)).getFile());
      } catch (e) {
        if ((e as Error)?.name === 'NotFoundError') return null;
        throw e;
      }
    },
  };
}

async function localFolder(folder: string | URL): Promise<ModelFileSource> {
  const label = folder instanceof URL ? folder.href : folder;
  if (!(await isLocalFolder(folder))) throw new ModelFilesError(`no such folder: ${label}`, { source: label });
  const base = folder instanceof URL ? new URL(folder.href.endsWith('/') ? folder.href : `${folder.href}/`) : folder.replace(/[\\/]+$/, '');
  const path = (name: string): string | URL => (base instanceof URL ? new URL(name, base) : `${base}/${name}`);
  return { label, has: (name) => isLocalFile(path(name)), open: (name) => openLocal(path(name)) };
}

async function openLocal(path: string | URL): Promise<OpenedModelFile | null> {
  const opened = await openLocalFile(path);
  return opened && { size: opened.size, fromCache: false, stream: opened.stream, keep: nothingToKeep };
}

async function openCache(cache: ModelSourceOptions['cache']): Promise<Cache | null> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (cache === false || !storage) return null;
  try {
    return await storage.open(typeof cache === 'string' ? cache : PRETRAINED_CACHE_NAME);
  } catch {
    // Storage may be disabled (private modes, opaque origins): load without a cache.
    return null;
  }
}

function responseFile(response: Response, fromCache: boolean, keep: OpenedModelFile['keep']): OpenedModelFile {
  const body = response.body;
  const stream = body ? () => body : () => new Response(new Uint8Array(0)).body as ReadableStream<Uint8Array>;
  return { size: responseLength(response), fromCache, stream, keep };
}

/** Fetches one file (from the cache when it holds it); null on HTTP 404. */
async function fetchFile(
  url: string,
  name: string,
  label: string,
  cache: Cache | null,
  options: ModelSourceOptions,
): Promise<OpenedModelFile | null> {
  const hit = cache ? await cache.match(url).catch(() => undefined) : undefined;
  if (hit) return responseFile(hit, true, nothingToKeep);
  let response: Response;
  try {
    response = await fetch(url, { ...options.requestInit, signal: options.signal ?? options.requestInit?.signal });
  } catch (e) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw new ModelFilesError(`cannot fetch ${url}: ${(e as Error).message}`, { source: label, file: name, cause: e, code: 'IO_ERROR' });
  }
  if (response.status === 404) {
    void response.body?.cancel().catch(() => {});
    return null;
  }
  if (!response.ok) {
    void response.body?.cancel().catch(() => {});
    const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
    throw new ModelFilesError(`fetching ${url} failed: ${status}`, { source: label, file: name, code: 'IO_ERROR' });
  }
  const keep = async (bytes: Uint8Array): Promise<void> => {
    const headers = {
      'content-type': response.headers.get('content-type') ?? 'application/octet-stream',
      'content-length': String(bytes.byteLength),
    };
    // Best effort: a full quota or a refused write only means the next load downloads again.
    await cache?.put(url, new Response(bytes as Uint8Array<ArrayBuffer>, { headers })).catch(() => {});
  };
  return responseFile(response, false, keep);
}

function isHttp(url: URL): boolean {
  return url.protocol === 'http:' || url.protocol === 'https:';
}

async function httpFolder(base: URL, options: ModelSourceOptions): Promise<ModelFileSource> {
  const folder = new URL(base.href);
  if (!folder.pathname.endsWith('/')) folder.pathname += '/';
  const label = folder.href;
  const cache = isHttp(folder) ? await openCache(options.cache) : null;
  return { label, open: (name) => fetchFile(new URL(name, folder).href, name, label, cache, options) };
}

/**
 * A model whose files sit at URLs of their own (e.g. an app's bundled assets, hashed names and
 * all): `urls` maps each file name to its URL (`file:` URLs are read from disk in Node).
 */
export async function modelFileUrls(
  label: string,
  urls: Readonly<Record<string, URL>>,
  options: ModelSourceOptions = {},
): Promise<ModelFileSource> {
  const cache = Object.values(urls).some(isHttp) ? await openCache(options.cache) : null;
  return {
    label,
    names: Object.keys(urls).sort(),
    open: async (name) => {
      const url = Object.hasOwn(urls, name) ? urls[name] : undefined;
      if (!url) return null;
      if (url.protocol === 'file:') return openLocal(url);
      return fetchFile(url.href, name, label, isHttp(url) ? cache : null, options);
    },
  };
}

function isFileList(source: unknown): source is FileList | readonly File[] {
  if (typeof FileList !== 'undefined' && source instanceof FileList) return true;
  return (
    Array.isArray(source) && source.every((f) => typeof Blob !== 'undefined' && f instanceof Blob && typeof (f as File).name === 'string')
  );
}

function isDirectoryHandle(source: unknown): source is FileSystemDirectoryHandle {
  const h = source as { kind?: unknown; getFileHandle?: unknown } | null;
  return typeof h === 'object' && h !== null && h.kind === 'directory' && typeof h.getFileHandle === 'function';
}

/** A string source as a URL: absolute URLs as they are; in a page, relative ones against the page; in Node, null (a path). */
function stringUrl(source: string): URL | null {
  if (/^[a-z][a-z0-9+.-]+:/i.test(source) && !/^[a-z]:[\\/]/i.test(source)) return new URL(source);
  if (isNode()) return null;
  const here = (globalThis as { location?: { href?: string } }).location?.href;
  return new URL(source, here);
}

/**
 * Opens a {@link PretrainedSource} for reading its files by name. Throws naming `fn` when the
 * source is of no accepted kind, and a {@link ModelFilesError} when a local folder does not exist.
 */
export async function modelFileSource(fn: string, source: PretrainedSource, options: ModelSourceOptions = {}): Promise<ModelFileSource> {
  if (isFileList(source)) return pickedFiles(Array.from(source));
  if (isDirectoryHandle(source)) return directoryHandle(source);
  let url: URL | null = null;
  if (source instanceof URL) url = source;
  else if (typeof source === 'string' && source !== '') {
    try {
      url = stringUrl(source);
    } catch (e) {
      throw new SgtError(
        'INVALID_ARGUMENT',
        `${fn}: argument 'source' ${JSON.stringify(source)} is not a valid URL: ${(e as Error).message}`,
      );
    }
    if (url === null) return localFolder(source);
  } else {
    const got = source === null ? 'null' : Array.isArray(source) ? 'an array of non-files' : typeof source;
    throw new SgtError(
      'INVALID_ARGUMENT',
      `${fn}: argument 'source' must be a base URL (string or URL), a folder path or file: URL (Node), ` +
        `a FileList or File[] (picked files), or a FileSystemDirectoryHandle; got ${got}`,
    );
  }
  return url.protocol === 'file:' ? localFolder(url) : httpFolder(url, options);
}
