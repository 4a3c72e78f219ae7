// Builds size.ts alone, as an app's production bundle (minified, tree-shaken), with a manifest
// that tells the entry's static imports from its lazy chunks.
export default {
  logLevel: 'warn',
  build: {
    outDir: 'dist-size',
    emptyOutDir: true,
    manifest: true,
    rollupOptions: { input: 'size.ts' },
  },
};
