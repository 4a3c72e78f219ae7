/**
 * How the tests launch Debian's headless Chromium on a machine with no GPU: WebGPU on SwiftShader,
 * and no background network traffic (the network is closed at test time). Shared by the Vitest
 * browser project (vite.config.ts) and the end-to-end tests (playwright.config.ts).
 */
export const chromiumArgs = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--enable-unsafe-swiftshader',
  '--disable-gpu-sandbox',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** The browser: Debian's Chromium (no Playwright browser download), or `CHROMIUM_PATH`. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * SwiftShader's Vulkan driver, which Debian's Chromium ships: the Vitest project
 * `node-swiftshader` points Dawn at it (VK_ICD_FILENAMES) to run the Node tests on the adapter
 * Chrome falls back to without a usable GPU. `SWIFTSHADER_ICD` overrides the path.
 */
export const swiftshaderIcd = process.env.SWIFTSHADER_ICD ?? '/usr/lib/chromium/vk_swiftshader_icd.json';
