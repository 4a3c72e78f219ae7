/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { playwright } from '@vitest/browser-playwright';
import { resolve } from 'node:path';
import { chromiumArgs, chromiumPath } from './test/chromium.ts';
import { wgslShaders } from './scripts/vite-plugin-wgsl.ts';
import { packageFileUrls } from './scripts/vite-plugin-package-files.ts';

export default defineConfig({
  // The library build: the shipped WGSL carries its bind-group layouts (reflected at build time)
  // and no comments. The test projects below have their own (comments kept).
  // The default model's files stay files beside dist/ (not inlined), reached by chunk-relative URLs.
  plugins: [{ ...wgslShaders({ stripComments: true }), apply: 'build' }, packageFileUrls()],
  build: {
    lib: {
      // `sgt-webgpu` (the library) and `sgt-webgpu/worker` (a module that, imported in a Web
      // Worker, exposes the TrainerService over comlink).
      entry: { index: resolve(import.meta.dirname, 'src/index.ts'), worker: resolve(import.meta.dirname, 'src/worker/worker.ts') },
      formats: ['es'],
      fileName: (_format, name) => `${name}.js`,
    },
    outDir: 'dist',
    sourcemap: true,
    // Dependencies stay imports so that an app bundles one copy of each; Dawn is Node-only. One
    // output module per source module, so that an app's bundler drops every module it does not
    // use (package.json's `sideEffects` names the few that must run on import).
    rollupOptions: {
      external: ['webgpu', 'comlink', /^wgsl_reflect/, /^@huggingface\/tokenizers/],
      output: { preserveModules: true, preserveModulesRoot: 'src', entryFileNames: '[name].js' },
    },
  },
  test: {
    projects: [
      {
        plugins: [wgslShaders()],
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          environment: 'node',
          // Dawn is a native addon: forks (not threads) so that env vars reach it and it gets its own process.
          pool: 'forks',
          env: { NODEVICE_SELECT: '1' },
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        // Pre-bundle the browser tests' dependencies when the server starts: comlink (imported by
        // the worker test and its worker) found only mid-run makes Vite re-optimize and reload.
        optimizeDeps: { include: ['comlink', 'wgsl_reflect/wgsl_reflect.module.js'] },
        plugins: [wgslShaders()],
        // The page reads the PyTorch fixtures beside the repository (test/browser/fixtures.ts):
        // allow that folder besides the repository itself (setting `allow` replaces the default).
        server: { fs: { allow: [import.meta.dirname, resolve(import.meta.dirname, '../shared/fixtures')] } },
        test: {
          name: 'browser',
          include: ['test/browser/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          browser: {
            enabled: true,
            headless: true,
            provider: playwright({
              launchOptions: { executablePath: chromiumPath, args: chromiumArgs },
            }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
