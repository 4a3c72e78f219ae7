/**
 * Where `sgt-train` writes, checked before any training: `--out DIR` exactly, or else a new
 * time-stamped folder under `runs/` (`runs/2026-12-03T10-15-00/`) with `runs/latest` pointing at it.
 *
 * Folders are created one level at a time, never with `mkdirSync(..., { recursive: true })`: on a
 * path it cannot create in a pseudo-filesystem (`--out /proc/x`), Node's recursive mkdir retries
 * forever at 100% CPU. The check writes a probe file because permission bits say nothing to root,
 * to a read-only mount or to /proc. Each file is written to a temporary name and renamed, so a
 * failed write never leaves half a file in place of an earlier run's.
 */
import { closeSync, lstatSync, mkdirSync, openSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UsageError } from './usage';
import { SgtError } from '../gpu/errors';

/** The files a run writes, in the order it writes them: `report.json` last, as it lists what was written. */
export const OUTPUT_FILES = ['cloak.safetensors', 'checkpoint.safetensors', 'report.json'] as const;

/** One of {@link OUTPUT_FILES}. */
export type OutputFile = (typeof OUTPUT_FILES)[number];

/** Where a run writes: exactly `dir` (`--out`), or a new folder named `name` (or `name-2`, ...) under `runsDir`. */
export type OutputPlan = { dir: string; runsDir?: undefined } | { dir: string; runsDir: string; name: string };

/** What {@link writeRun} did. */
export interface WriteOutcome {
  /** The run's folder. */
  dir: string;
  /** The files written there, in order. */
  written: OutputFile[];
  /** What could not be created or written, each with the file system's reason. */
  errors: string[];
  /** Things the user should know (`runs/latest` moved or made a pointer file). */
  notes: string[];
}

/** `2026-12-03T10-15-00`: the local time, sortable, with no character a file system refuses. */
export function runFolderName(date: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const day = `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}`;
  return `${day}T${p(date.getHours())}-${p(date.getMinutes())}-${p(date.getSeconds())}`;
}

/** Whether something (a dangling link too) is at `path`; false also when a parent is no folder or cannot be searched. */
function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A name under `dir` that is free: `base`, else `base-2`, `base-3`, ... */
function freeName(dir: string, base: string): string {
  for (let i = 1; ; i++) {
    const name = i === 1 ? base : `${base}-${i}`;
    if (!exists(join(dir, name))) return name;
  }
}

/**
 * Creates `dir` and its missing parents one level at a time and returns the folders it created,
 * outermost first. On a failure it removes what it created and throws the file system's error.
 */
export function createFolders(dir: string): string[] {
  const missing: string[] = [];
  for (let p = resolve(dir); !exists(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  const created: string[] = [];
  try {
    for (const folder of missing) {
      mkdirSync(folder);
      created.push(folder);
    }
  } catch (e) {
    removeFolders(created);
    throw e;
  }
  return created;
}

/** Removes folders that {@link createFolders} made (innermost first), if they are still empty. */
function removeFolders(created: readonly string[]): void {
  for (const folder of [...created].reverse()) {
    try {
      rmdirSync(folder);
    } catch {
      // Not empty (someone wrote there meanwhile) or gone: leave it.
    }
  }
}

/**
 * Checks that a run can write its files into `dir`: creates it (and its parents), opens any
 * output file already there for writing, writes and removes a probe file, then removes the
 * folders it created. Throws a {@link UsageError} that starts with `what` otherwise.
 */
export function checkOutputDir(dir: string, what: string): void {
  if (exists(dir) && !statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`${what}: exists and is not a folder`);
  }
  let created: string[];
  try {
    created = createFolders(dir);
  } catch (e) {
    throw new UsageError(`${what}: cannot create that folder (${reason(e)})`);
  }
  try {
    for (const file of OUTPUT_FILES) {
      const path = join(dir, file);
      if (!exists(path)) continue;
      if (!statSync(path).isFile()) throw new UsageError(`${what}: ${file} there is not a file, so the run could not write it`);
      try {
        closeSync(openSync(path, 'r+'));
      } catch (e) {
        throw new UsageError(`${what}: cannot overwrite ${file} there (${reason(e)})`);
      }
    }
    const probe = join(dir, `.sgt-train-probe-${process.pid}`);
    try {
      writeFileSync(probe, '');
      rmSync(probe);
    } catch (e) {
      throw new UsageError(`${what}: cannot write files in that folder (${reason(e)})`);
    }
  } finally {
    removeFolders(created);
  }
}

/**
 * The run's output folder, checked (see {@link checkOutputDir}) before any training: `out`
 * (resolved against `cwd`) when given, else a folder under `<cwd>/runs` named after `started`.
 */
export function planOutput(out: string | undefined, started: Date, cwd: string = process.cwd()): OutputPlan {
  if (out !== undefined) {
    if (out.trim() === '') throw new UsageError('--out needs a folder name, got an empty string');
    const dir = resolve(cwd, out);
    checkOutputDir(dir, `--out ${out}`);
    return { dir };
  }
  const runsDir = resolve(cwd, 'runs');
  const name = freeName(runsDir, runFolderName(started));
  const dir = join(runsDir, name);
  checkOutputDir(dir, `the run folder ${dir} (choose another with --out DIR)`);
  return { dir, runsDir, name };
}

/**
 * Creates the planned folder: `--out`'s as is, or a fresh one under `runs/` (a run that started
 * in the same second in the same place has taken `name`: then `name-2`, ...). Returns its path.
 */
function openRunFolder(plan: OutputPlan): string {
  if (plan.runsDir === undefined) {
    createFolders(plan.dir);
    if (!statSync(plan.dir).isDirectory()) throw new SgtError('INVALID_ARGUMENT', 'it exists and is not a folder');
    return plan.dir;
  }
  createFolders(plan.runsDir);
  for (let i = 1; ; i++) {
    const dir = join(plan.runsDir, i === 1 ? plan.name : `${plan.name}-${i}`);
    try {
      mkdirSync(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** Writes `data` to `path` through a temporary file in the same folder, so `path` is never half written. */
function writeWhole(path: string, data: Uint8Array | string): void {
  const temporary = `${path}.partial-${process.pid}`;
  try {
    writeFileSync(temporary, data);
    renameSync(temporary, path);
  } catch (e) {
    rmSync(temporary, { force: true });
    throw e;
  }
}

/**
 * Points `runs/latest` at the run folder `name`: a relative symbolic link (a junction on Windows
 * without the right to make links), or where no link can be made a one-line file naming the run.
 * A real folder left at `runs/latest` by an earlier version is kept, renamed after its date.
 * Returns what the user should know.
 */
export function pointLatest(runsDir: string, name: string): string[] {
  const latest = join(runsDir, 'latest');
  const notes: string[] = [];
  const stat = lstatSync(latest, { throwIfNoEntry: false });
  if (stat?.isDirectory()) {
    const kept = freeName(runsDir, runFolderName(stat.mtime));
    renameSync(latest, join(runsDir, kept));
    notes.push(`${latest} was a folder (from an earlier version): moved to ${join(runsDir, kept)}`);
  }
  const temporary = join(runsDir, `.latest-${process.pid}`);
  try {
    try {
      symlinkSync(name, temporary, 'dir');
    } catch {
      symlinkSync(join(runsDir, name), temporary, 'junction');
    }
  } catch {
    writeFileSync(temporary, `${name}\n`);
    notes.push(`no symbolic link can be made here: ${latest} is a file that names the latest run`);
  }
  // A rename replaces the old link or file in one step: `latest` is never missing or half made.
  renameSync(temporary, latest);
  return notes;
}

/**
 * Writes what a run produced: the cloak and the checkpoint when given, then the report, made by
 * `report` from what was written and what failed so far. A file that cannot be written does not
 * stop the others. Without `--out`, `runs/latest` then points at the new folder.
 */
export function writeRun(
  plan: OutputPlan,
  files: { cloak?: Uint8Array; checkpoint?: Uint8Array },
  report: (sofar: { written: OutputFile[]; errors: string[] }) => string,
): WriteOutcome {
  const outcome: WriteOutcome = { dir: plan.dir, written: [], errors: [], notes: [] };
  try {
    outcome.dir = openRunFolder(plan);
  } catch (e) {
    outcome.errors.push(`cannot create the folder ${plan.dir} (${reason(e)})`);
    return outcome;
  }
  const put = (file: OutputFile, data: Uint8Array | string) => {
    try {
      writeWhole(join(outcome.dir, file), data);
      outcome.written.push(file);
    } catch (e) {
      outcome.errors.push(`cannot write ${file} (${reason(e)})`);
    }
  };
  if (files.cloak) put('cloak.safetensors', files.cloak);
  if (files.checkpoint) put('checkpoint.safetensors', files.checkpoint);
  put('report.json', report({ written: [...outcome.written, 'report.json'], errors: [...outcome.errors] }));
  if (plan.runsDir !== undefined && outcome.written.length > 0) {
    try {
      outcome.notes.push(...pointLatest(plan.runsDir, outcome.dir.slice(plan.runsDir.length + 1)));
    } catch (e) {
      outcome.notes.push(`could not point ${join(plan.runsDir, 'latest')} at this run (${reason(e)})`);
    }
  }
  return outcome;
}
