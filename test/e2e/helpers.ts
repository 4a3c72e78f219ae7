/**
 * Shared pieces of the end-to-end tests (`npm run test:e2e`, Playwright driving Debian's headless
 * Chromium with WebGPU on SwiftShader): the browser's flags, the servers' ports, and page helpers.
 */
import { expect, type Page, type TestInfo } from '@playwright/test';

export { chromiumArgs, chromiumPath } from '../chromium';

/** Where `vite preview` serves the built demo site (dist-demo/). */
export const DEMO_PORT = 4173;
export const DEMO_URL = `http://127.0.0.1:${DEMO_PORT}`;

/** Where the consumer fixture app (test/consumer, built against the packed tarball) is served. */
export const CONSUMER_PORT = 4174;

/**
 * Collects what the page and its workers print to the console as errors, and uncaught page
 * errors, so that a test can fail on them and show them.
 */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
  });
  page.on('worker', (w) => {
    w.on('console', (m) => {
      if (m.type() === 'error') errors.push(`worker console.error: ${m.text()}`);
    });
  });
  return errors;
}

/** Fails the test when the page made a request off the test server (the site must work offline). */
export function forbidExternalRequests(page: Page, origin: string): string[] {
  const external: string[] = [];
  page.on('request', (r) => {
    const url = r.url();
    if (url.startsWith('data:') || url.startsWith('blob:') || url.startsWith(origin)) return;
    external.push(url);
  });
  return external;
}

/** Saves a full-page screenshot under the test's output folder (test-results/) and attaches it to the report. */
export async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}

/** Reads a number out of an element's text ("1.2345", "12.5%", "3 / 4"): the first number in it. */
export function firstNumber(text: string | null): number {
  const m = /-?\d+(?:\.\d+)?(?:e[-+]?\d+)?/i.exec(text ?? '');
  return m ? Number(m[0]) : Number.NaN;
}

/** Waits until `body[data-gpu]` says whether the page got a WebGPU device, and expects "ready". */
export async function expectGpuReady(page: Page, timeout = 60_000): Promise<void> {
  await expect(page.locator('body')).toHaveAttribute('data-gpu', /^(ready|unavailable)$/, { timeout });
  await expect(page.locator('body'), 'the page found no WebGPU adapter (see the Chromium flags in test/e2e/helpers.ts)').toHaveAttribute(
    'data-gpu',
    'ready',
  );
}
