/**
 * Browser-side test helpers (page and module Web Worker): the GPU context, failing loudly (never
 * skipping) when WebGPU or an adapter is missing, and a small seeded random generator.
 */
import { init, type GpuContext } from '../../src/index';

const HOW_TO =
  'Browser tests run in headless Chromium driven by Playwright (`npx vitest run --project browser`). ' +
  "They need Debian's chromium with its SwiftShader Vulkan ICD (`bash scripts/setup.sh` as root installs it, or " +
  '`apt-get install -y --no-install-recommends chromium libvulkan1`; set CHROMIUM_PATH if it is not ' +
  '/usr/bin/chromium) launched with ' +
  '--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader --enable-unsafe-swiftshader (see the `browser` ' +
  'project in vite.config.ts and shared/design/WEBGPU-HERE.md). Pages must come from http://127.0.0.1 or ' +
  'localhost (a secure context), or navigator.gpu is absent.';

/** Where this code runs, for error messages. */
function where(): string {
  const g = globalThis as { WorkerGlobalScope?: unknown; document?: unknown };
  return g.WorkerGlobalScope !== undefined && g.document === undefined ? 'Web Worker' : 'page';
}

/** `init()` in a page or worker, or an Error that says what is missing and how to get it. */
export async function browserGpu(): Promise<GpuContext> {
  const nav = (globalThis as { navigator?: { gpu?: GPU; userAgent?: string } }).navigator;
  if (!nav?.gpu) {
    throw new Error(
      `WebGPU is unavailable in this ${where()}: navigator.gpu is missing ` +
        `(isSecureContext=${String(globalThis.isSecureContext)}, userAgent=${nav?.userAgent ?? '?'}). ${HOW_TO}`,
    );
  }
  try {
    return await init();
  } catch (e) {
    throw new Error(`WebGPU init() failed in this ${where()}: ${(e as Error).message}\n${HOW_TO}`);
  }
}

/** Deterministic uniform numbers in [lo, hi), rounded to float32 so that the GPU sees exactly them. */
export function seeded(seed: number): (lo?: number, hi?: number) => number {
  let s = seed >>> 0;
  return (lo = -1, hi = 1) => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    return Math.fround(lo + (hi - lo) * u);
  };
}

/** `n` seeded float32 values in [lo, hi). */
export function randomF32(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  const r = seeded(seed);
  return Float32Array.from({ length: n }, () => r(lo, hi));
}
