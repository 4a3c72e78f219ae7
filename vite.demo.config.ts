/**
 * The demo site: the in-browser fine-tuning demo (`demo/index.html`) and the WebGPU playground
 * (`demo/playground.html`). `npm run demo` serves it; `npm run demo:build` builds it into
 * `dist-demo/` (what the end-to-end tests and `vite preview` serve).
 */
import { defineConfig } from 'vite';
import { resolve } from 'node:path';
import { wgslShaders } from './scripts/vite-plugin-wgsl.ts';

const root = resolve(import.meta.dirname, 'demo');

export default defineConfig({
  root,
  // Shipped kernels come with their build-time layouts; the playground's edits load the WGSL parser.
  plugins: [wgslShaders()],
  // Relative asset URLs: the built site works from any folder or sub-path, offline.
  base: './',
  publicDir: false,
  server: { host: '127.0.0.1', port: 5173, fs: { allow: [import.meta.dirname] } },
  preview: { host: '127.0.0.1', port: 4173 },
  // A worker is bundled on its own, with worker.plugins only: the trainer worker's kernels need them too.
  worker: { format: 'es', plugins: () => [wgslShaders()] },
  optimizeDeps: { include: ['comlink', 'wgsl_reflect/wgsl_reflect.module.js'], exclude: ['webgpu'] },
  build: {
    outDir: resolve(import.meta.dirname, 'dist-demo'),
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: { main: resolve(root, 'index.html'), playground: resolve(root, 'playground.html') },
      external: ['webgpu'],
    },
  },
});
