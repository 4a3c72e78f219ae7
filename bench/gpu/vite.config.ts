/**
 * The GPU script's bundle (bench/gpu/pack.sh): the library (src/index.ts, the peers harness's sgt
 * column loads it as SGT_DIST) and the step benchmark (bench/step-main.ts) as plain ES modules for
 * Node, every dependency inlined except `webgpu` (Dawn, from the carried node_modules), so a device
 * machine with no npm and no network runs them with the carried Node. Written to .carry/sgt-gpu/app.
 */
import { defineConfig } from 'vite';
import { resolve } from 'node:path';
import { wgslShaders } from '../../scripts/vite-plugin-wgsl.ts';

// The checkout this file is in (pack.sh --commit REV copies it into a clean worktree of REV, so that the
// shader plugin, the shaders and the layout registry are all that commit's); SGT_GPU_APP_OUT: where to write.
const root = resolve(import.meta.dirname, '../..');

export default defineConfig({
  root,
  plugins: [wgslShaders()],
  ssr: { noExternal: true, external: ['webgpu'] },
  build: {
    ssr: true,
    outDir: resolve(process.env.SGT_GPU_APP_OUT ?? resolve(root, '.carry/sgt-gpu/app')),
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    rollupOptions: {
      input: { sgt: resolve(root, 'src/index.ts'), step: resolve(root, 'bench/step-main.ts') },
      output: {
        format: 'es',
        entryFileNames: '[name].mjs',
        chunkFileNames: 'chunks/[name]-[hash].mjs',
        // make-test-model runs its own command line when it is the entry file: keep it out of step.mjs
        manualChunks: (id) => (id.includes('scripts/make-test-model') ? 'make-test-model' : undefined),
      },
    },
  },
});
