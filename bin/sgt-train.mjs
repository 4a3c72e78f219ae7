#!/usr/bin/env node
// The `sgt-train` command: runs src/train/cli.ts through the package's Vite module runner
// (scripts/run.mjs), which handles the TypeScript and the `?raw` WGSL imports. Same arguments as
// `npm run train -- ...`; see `sgt-train --help`.
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
// run.mjs reads its entry and the entry's arguments from argv; an absolute path keeps it
// independent of the directory the command is run from.
process.argv = [process.argv[0], resolve(root, 'scripts/run.mjs'), resolve(root, 'src/train/cli.ts'), ...process.argv.slice(2)];
await import('../scripts/run.mjs');
