#!/usr/bin/env node
// The `sgt-train` command (same arguments as `npm run train -- ...`; see `sgt-train --help`).
// An installed package runs the bundled CLI (dist/cli/cli.js, built by `npm run build`); a
// checkout without a build (or with SGT_TRAIN_FROM_SOURCE=1, as `npm run train` sets) runs the
// TypeScript through the Vite module runner (scripts/run.mjs), which handles the `?raw` WGSL imports.
//
// Dawn prints two warnings of its own to the process's stderr when it lists the adapters
// ("maxDynamic{Uniform,Storage}BuffersPerPipelineLayout artificially reduced ..."): a native
// fprintf that no Dawn option, toggle or callback turns off, harmless, and printed on every run
// on lavapipe. So the command runs the CLI in a child process and drops exactly those two lines
// from its stderr; everything else (progress lines included) passes through as it comes.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const DAWN_WARNING =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;
const WARNING_START = 'Warning: maxDynamic';

if (process.env.SGT_TRAIN_CHILD !== '1') {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    env: { ...process.env, SGT_TRAIN_CHILD: '1' },
    stdio: ['inherit', 'inherit', 'pipe'],
  });
  let pending = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    pending += chunk;
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (!DAWN_WARNING.test(line)) process.stderr.write(`${line}\n`);
      newline = pending.indexOf('\n');
    }
    // A partial line (a progress line ended by \r) is written at once unless it may still become
    // one of Dawn's warnings.
    if (pending && !(WARNING_START.startsWith(pending) || pending.startsWith(WARNING_START))) {
      process.stderr.write(pending);
      pending = '';
    }
  });
  child.stderr.on('end', () => {
    if (pending && !DAWN_WARNING.test(pending)) process.stderr.write(pending);
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? (signal ? 1 : 0);
  });
} else {
  const root = resolve(import.meta.dirname, '..');
  const built = resolve(root, 'dist/cli/cli.js');
  if (existsSync(built) && process.env.SGT_TRAIN_FROM_SOURCE !== '1') {
    // The CLI runs itself when it is the entry point (argv[1]).
    process.argv[1] = built;
    await import(pathToFileURL(built).href);
  } else {
    // run.mjs reads its entry and the entry's arguments from argv.
    process.argv = [process.argv[0], resolve(root, 'scripts/run.mjs'), resolve(root, 'src/cli/cli.ts'), ...process.argv.slice(2)];
    await import('../scripts/run.mjs');
  }
}
