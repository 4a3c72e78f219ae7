/**
 * Bundles the Node CLI (`sgt-train`) into `dist/cli/cli.js` for the published package: the WGSL
 * `?raw` imports are inlined and the dependencies stay imports, so an installed package runs the
 * CLI with plain Node (a checkout can also run the TypeScript through `scripts/run.mjs`).
 */
import { defineConfig } from 'vite';
import { resolve } from 'node:path';
import { wgslShaders } from './scripts/vite-plugin-wgsl.ts';

export default defineConfig({
  // Also the plugins of scripts/run.mjs (which runs the TypeScript sources in Node).
  plugins: [wgslShaders()],
  build: {
    ssr: resolve(import.meta.dirname, 'src/cli/cli.ts'),
    outDir: 'dist/cli',
    emptyOutDir: true,
    target: 'node20',
    sourcemap: true,
    rollupOptions: { output: { entryFileNames: 'cli.js' } },
  },
});
