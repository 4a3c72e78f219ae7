#!/usr/bin/env node
// Runs a TypeScript entry point in Node through Vite's module runner, so that the library's
// `?raw` WGSL imports and TypeScript work the same way as in the page, the worker and the tests.
// Usage: node scripts/run.mjs path/to/script.ts [args...]
import { createServer, createServerModuleRunner, loadConfigFromFile } from 'vite';
import { resolve } from 'node:path';

const [entry, ...args] = process.argv.slice(2);
if (!entry) {
  console.error('usage: node scripts/run.mjs <script.ts> [args...]');
  process.exit(2);
}
process.env.NODEVICE_SELECT ??= '1';
const root = resolve(import.meta.dirname, '..');
// The CLI bundle's plugins (the WGSL shader plugin: shipped kernels carry their layouts).
const cli = await loadConfigFromFile({ command: 'serve', mode: 'development' }, resolve(root, 'vite.cli.config.ts'), root, 'error');
const server = await createServer({
  configFile: false,
  root,
  plugins: cli.config.plugins,
  logLevel: 'error',
  appType: 'custom',
  server: { middlewareMode: true, hmr: false, ws: false },
  // A Node script needs no browser dependency pre-bundling (and must not scan the demo pages).
  optimizeDeps: { noDiscovery: true, entries: [] },
});
const runner = createServerModuleRunner(server.environments.ssr, { hmr: false });
process.argv = [process.argv[0], entry, ...args];
let code = 0;
try {
  await runner.import(resolve(entry));
} catch (e) {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  code = 1;
}
await runner.close();
await server.close();
// Dawn keeps native handles open; exit explicitly once the script is done.
process.exit(code);
