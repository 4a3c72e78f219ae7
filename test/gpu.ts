/** Test helper: the GPU context, failing loudly (never skipping) when there is no adapter. */
import { init, type GpuContext } from '../src/index';

export async function gpu(): Promise<GpuContext> {
  try {
    return await init();
  } catch (e) {
    throw new Error(
      `GPU tests need a WebGPU adapter and none could be created: ${(e as Error).message}\n` +
        'Run `bash .ci/run` once as root to install the drivers (libvulkan1, mesa-vulkan-drivers from bookworm-backports, chromium).',
    );
  }
}
