// A second sgt column for the peers harness: the build named by $SGT_BASELINE_DIST (e.g. an older
// commit's dist/index.js), so a kernel change is timed against its base in the same run, on the
// same adapter, beside the peers (`node bench/peers.mjs run --baseline DIST`). The harness runs each
// runner in its own process (cwd: the harness folder), so setting SGT_DIST here changes only this one.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export default async function createBaselineRunner(options) {
  if (!process.env.SGT_BASELINE_DIST) throw new Error('sgt-baseline runner: set SGT_BASELINE_DIST to a built dist/index.js');
  process.env.SGT_DIST = process.env.SGT_BASELINE_DIST;
  const { default: createSgtRunner } = await import(pathToFileURL(join(process.cwd(), 'runners/sgt.mjs')).href);
  return createSgtRunner(options);
}
