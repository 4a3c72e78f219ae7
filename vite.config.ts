/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { playwright } from '@vitest/browser-playwright';
import { resolve } from 'node:path';
import { chromiumArgs, chromiumPath, swiftshaderIcd } from './test/chromium.ts';
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
        // The GPU tests of the kernels, losses and models again on the other software adapter,
        // SwiftShader (what Chrome falls back to without a usable GPU; 5-17x slower than lavapipe,
        // no shader-f16): Dawn sees only its driver. The adapter-independent tests (CLI, trainer,
        // checkpoints, parsers, concurrency) and weight layouts (run on SwiftShader in the browser
        // project) stay in `node`. test/node/adapter-parity.test.ts checks that this is SwiftShader.
        plugins: [wgslShaders()],
        test: {
          name: 'node-swiftshader',
          include: [
            'test/node/{ops,ops-edge,fuzz-ops,adapter-parity,random,core,edge-values,optim,wgslCompose}.test.ts',
            'test/node/{loss-*,mask-rule,metrics*,fused-head,embeddingStats,factories}.test.ts',
            'test/node/{model-ops-*,models,cloak}.test.ts',
          ],
          environment: 'node',
          pool: 'forks',
          env: { NODEVICE_SELECT: '1', VK_ICD_FILENAMES: swiftshaderIcd, VK_DRIVER_FILES: swiftshaderIcd, SGT_TEST_ADAPTER: 'swiftshader' },
          testTimeout: 180_000,
          hookTimeout: 180_000,
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
