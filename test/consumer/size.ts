// The bundle-size probe of the consumer test: an app that uses only the device and the losses.
// scripts/e2e-consumer.mjs builds this entry alone (vite.size.config.js) and gzips what a page
// loads before its first call (the entry and its static imports; lazy chunks are listed apart).
import { init, losses } from 'sgt-webgpu';

// Used, so that the bundler keeps both (an app build drops what an entry only exports).
document.addEventListener('click', async () => {
  await init();
  console.log(Object.keys(losses));
});
