/**
 * End-to-end tests (`npm run test:e2e`): Playwright drives Debian's headless Chromium (WebGPU on
 * SwiftShader, no GPU needed) against the built demo site (`npm run demo:build`, served by
 * `vite preview` on 127.0.0.1:4173) and against a fixture app that installs the packed npm
 * tarball (test/consumer, see test/e2e/consumer.spec.ts).
 *
 * Screenshots (one per test, plus the named ones the tests take) and traces of failures land in
 * test-results/; the HTML report in playwright-report/. Both are gitignored.
 */
import { defineConfig } from '@playwright/test';
import { chromiumArgs, chromiumPath, DEMO_PORT, DEMO_URL } from './test/e2e/helpers';

export default defineConfig({
  testDir: 'test/e2e',
  outputDir: 'test-results',
  // SwiftShader runs WebGPU on the CPU (and the machines are small): one test at a time, and
  // generous timeouts. A test that needs longer sets its own.
  workers: 1,
  fullyParallel: false,
  timeout: 180_000,
  expect: { timeout: 30_000 },
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: [['list'], ['html', { outputFolder: 'playwright-report', open: 'never' }]],
  use: {
    baseURL: DEMO_URL,
    browserName: 'chromium',
    headless: true,
    launchOptions: { executablePath: chromiumPath, args: chromiumArgs },
    screenshot: 'on',
    trace: 'retain-on-failure',
    viewport: { width: 1280, height: 900 },
    actionTimeout: 30_000,
    navigationTimeout: 60_000,
  },
  projects: [{ name: 'chromium' }],
  webServer: {
    command: `npm run demo:build && npx vite preview --config vite.demo.config.ts --host 127.0.0.1 --port ${DEMO_PORT} --strictPort`,
    url: `${DEMO_URL}/playground.html`,
    reuseExistingServer: !process.env.CI,
    timeout: 240_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});
