#!/usr/bin/env node
// The `sgt-train` command (same arguments as `npm run train -- ...`; see `sgt-train --help`).
// An installed package runs the bundled CLI (dist/cli/cli.js, built by `npm run build`); a
// checkout without a build runs the TypeScript through the Vite module runner (scripts/run.mjs),
// which handles the `?raw` WGSL imports.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(import.meta.dirname, '..');
const built = resolve(root, 'dist/cli/cli.js');
if (existsSync(built)) {
  // The CLI runs itself when it is the entry point (argv[1]).
  process.argv[1] = built;
  await import(pathToFileURL(built).href);
} else {
  // run.mjs reads its entry and the entry's arguments from argv.
  process.argv = [process.argv[0], resolve(root, 'scripts/run.mjs'), resolve(root, 'src/cli/cli.ts'), ...process.argv.slice(2)];
  await import('../scripts/run.mjs');
}
