/** Whether this browser can run the demo, and what to tell the user when it cannot. */

/** The outcome of {@link checkWebGpu}. */
export type WebGpuCheck = { ok: true; adapter: string } | { ok: false; reason: 'no-api' | 'no-adapter' | 'error'; detail?: string };

/** Looks for `navigator.gpu` and asks for an adapter (the worker asks again for its own). */
export async function checkWebGpu(): Promise<WebGpuCheck> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return { ok: false, reason: 'no-api' };
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return { ok: false, reason: 'no-adapter' };
    const info = adapter.info;
    return { ok: true, adapter: [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' · ') || 'unnamed adapter' };
  } catch (e) {
    return { ok: false, reason: 'error', detail: (e as Error).message };
  }
}

/** Fills `box` with what went wrong and how to get WebGPU, as DOM (no HTML strings). */
export function renderWebGpuHelp(box: HTMLElement, check: Exclude<WebGpuCheck, { ok: true }>): void {
  const what =
    check.reason === 'no-api'
      ? 'This browser has no WebGPU (navigator.gpu is missing), which the demo needs to train on your GPU.'
      : check.reason === 'no-adapter'
        ? 'This browser has WebGPU, but it found no usable GPU adapter (it may be blocked, or disabled for this GPU or driver).'
        : `WebGPU failed to start: ${check.detail ?? 'unknown error'}.`;
  const title = document.createElement('strong');
  title.textContent = 'WebGPU is not available. ';
  const p = document.createElement('p');
  p.append(title, what);
  const list = document.createElement('ul');
  const tips: [string, string][] = [
    ['Chrome or Edge 113+', ' on Windows, macOS and ChromeOS: on by default. Make sure hardware acceleration is on (Settings → System).'],
    [
      'Chrome on Linux',
      ': enable chrome://flags/#enable-unsafe-webgpu (and, if needed, chrome://flags/#enable-vulkan), then restart the browser.',
    ],
    ['Chrome on Android 121+', ': on by default on recent devices.'],
    [
      'Firefox',
      ': on by default in Firefox 141+ on Windows; elsewhere use Firefox Nightly, or set dom.webgpu.enabled to true in about:config.',
    ],
    [
      'Safari 26+',
      ' (macOS, iOS, iPadOS, visionOS): on by default; on Safari 18 turn on the WebGPU feature flag (Develop → Feature Flags).',
    ],
  ];
  for (const [who, how] of tips) {
    const li = document.createElement('li');
    const b = document.createElement('b');
    b.textContent = who;
    li.append(b, how);
    list.append(li);
  }
  const after = document.createElement('p');
  after.textContent =
    'Then reload this page. You can check what your browser reports at chrome://gpu (Chrome/Edge) or about:support (Firefox).';
  box.replaceChildren(p, list, after);
  box.hidden = false;
}
