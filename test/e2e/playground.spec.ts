/**
 * The kernel playground (demo/playground.html, built): library kernels run on WebGPU
 * (SwiftShader) and match their float64 twins, and edited WGSL with a syntax error is reported
 * with its line number (of the edited file, though the shared prelude is appended to it), or with
 * the prelude's file and line when the error is there. At 1280 px the inputs and the result
 * tables stay inside their panels; at 390 px nothing scrolls sideways.
 */
import { expect, test, type Page } from '@playwright/test';
import { collectPageErrors, DEMO_URL, expectGpuReady, forbidExternalRequests, screenshot } from './helpers';

/** Opens the playground on a kernel (through the URL hash) and waits for its WebGPU device. */
async function open(page: Page, kernel: string): Promise<void> {
  await page.goto(`/playground.html#${kernel}`);
  await expectGpuReady(page);
  await expect(page.getByTestId('kernel-picker')).toHaveValue(kernel);
  // One timed run is enough here (the timing is not under test) and keeps SwiftShader quick.
  await page.getByTestId('timing-runs').fill('1');
}

/** Clicks a run button and waits for the run to end; returns the status it ended with. */
async function runAndWait(page: Page, button: 'run-button' | 'run-edited-button'): Promise<string | null> {
  const status = page.getByTestId('result-status');
  await page.getByTestId(button).click();
  await expect(status).toHaveAttribute('data-status', /^(match|mismatch|error)$/, { timeout: 120_000 });
  return status.getAttribute('data-status');
}

/** A run that matched: the status says so, every comparison row passed, the timing is shown. */
async function expectMatch(page: Page): Promise<void> {
  const status = page.getByTestId('result-status');
  const detail = await page.locator('#status-detail').textContent();
  const error = (await page.getByTestId('error-box').isVisible()) ? await page.getByTestId('error-box').textContent() : '';
  await expect(status, `status detail: ${detail}; error box: ${error}`).toHaveText('match');
  await expect(status).toHaveAttribute('data-status', 'match');
  await expect(page.getByTestId('error-box')).toBeHidden();
  const details = page.getByTestId('result-details');
  // The forward and at least one gradient, compared with the float64 twin; no FAIL anywhere.
  await expect(details.locator('td.ok').first()).toBeVisible();
  expect(await details.locator('td.ok').count()).toBeGreaterThanOrEqual(2);
  await expect(details.locator('td.bad')).toHaveCount(0);
  await expect(page.getByTestId('gpu-time')).toContainText(/\d+\.\d{3} ms median of 1 run/);
}

/** Controls and tables that stick out of their panel, and tables wider than their scroll box. */
async function outsideTheirPanels(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    const name = (el: Element) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className ? `.${el.className}` : ''}`;
    for (const panel of document.querySelectorAll('.panel')) {
      const p = panel.getBoundingClientRect();
      for (const el of panel.querySelectorAll('select, input, textarea, button, fieldset, table, .table-scroll, .code')) {
        const r = el.getBoundingClientRect();
        if (r.width > 0 && (r.left < p.left - 0.5 || r.right > p.right + 0.5))
          out.push(
            `${name(el)} spans ${Math.round(r.left)}..${Math.round(r.right)} in ${name(panel)} ${Math.round(p.left)}..${Math.round(p.right)}`,
          );
      }
    }
    for (const box of document.querySelectorAll('.table-scroll')) {
      if (box.scrollWidth > box.clientWidth) out.push(`a table ${box.scrollWidth} px wide scrolls in its ${box.clientWidth} px box`);
    }
    return out;
  });
}

async function pageWidth(page: Page): Promise<{ scrollWidth: number; innerWidth: number }> {
  return page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
}

test.describe('kernel playground', () => {
  let errors: string[];
  let external: string[];

  test.beforeEach(({ page }) => {
    errors = collectPageErrors(page);
    external = forbidExternalRequests(page, DEMO_URL);
  });

  test.afterEach(() => {
    expect(errors, 'errors on the page or in its workers').toEqual([]);
    expect(external, 'requests off the test server').toEqual([]);
  });

  test('softmax (picked by the URL hash) matches its float64 twin', async ({ page }, testInfo) => {
    await open(page, 'softmax');
    await expect(page.getByTestId('result-status')).toHaveText('not run');
    expect(await runAndWait(page, 'run-button')).toBe('match');
    await expectMatch(page);
    await screenshot(page, testInfo, 'playground-softmax-match');
  });

  test('a loss picked in the kernel picker matches its float64 twin', async ({ page }, testInfo) => {
    await open(page, 'softmax');
    await page.getByTestId('kernel-picker').selectOption('distillationCrossEntropy');
    await expect(page).toHaveURL(/#distillationCrossEntropy$/);
    await expect(page.getByTestId('case-description')).toContainText('losses.distillationCrossEntropy');
    await page.getByTestId('size-picker').selectOption('tiny');
    expect(await runAndWait(page, 'run-button')).toBe('match');
    await expectMatch(page);
    // A 0-d loss: the twin's backward was also checked against central finite differences.
    await expect(page.getByTestId('result-details')).toContainText('Central finite differences');
    await screenshot(page, testInfo, 'playground-loss-match');
  });

  test('edited WGSL with a syntax error shows the compiler error with its line number', async ({ page }, testInfo) => {
    await open(page, 'softmax');
    const editor = page.getByTestId('wgsl-editor');
    await expect(editor).toBeEditable();
    const source = await editor.inputValue();
    const lines = source.split('\n');
    // Break one statement in the middle of the file, after its `#include "common.wgsl"` line:
    // the error must point at that line.
    const include = lines.findIndex((l) => l.startsWith('#include "common.wgsl"'));
    const target = lines.findIndex((l) => /^\s*let logS = log\(s\);\s*$/.test(l));
    expect(include, 'softmax.wgsl no longer includes common.wgsl').toBeGreaterThanOrEqual(0);
    expect(target, 'softmax.wgsl no longer has the line this test edits').toBeGreaterThan(include);
    const lineNumber = target + 1;
    lines[target] = lines[target].replace('log(s);', 'log(s) + ;');
    // Type it the way a user does: select everything in the editor and type over it.
    await editor.fill(lines.join('\n'));

    expect(await runAndWait(page, 'run-edited-button')).toBe('error');
    const box = page.getByTestId('error-box');
    await expect(box).toBeVisible();
    await expect(box).toContainText('does not compile');
    await expect(box).toContainText(new RegExp(`\\bline ${lineNumber}(:\\d+)?\\b`));
    // The excerpt quotes the broken line, and the gutter marks it.
    await expect(box).toContainText('log(s) + ;');
    await expect(page.locator('#gutter .err')).toHaveText(String(lineNumber));
    await screenshot(page, testInfo, 'playground-wgsl-syntax-error');

    // Putting the library's source back, the edited path runs and matches again.
    await page.getByTestId('wgsl-reset').click();
    await expect(editor).toHaveValue(source);
    expect(await runAndWait(page, 'run-edited-button')).toBe('match');
    await expectMatch(page);
  });

  test('fits 1280 px: the inputs and the result tables stay inside their panels; nothing scrolls sideways at 390 px', async ({
    page,
  }, testInfo) => {
    // The loss with the widest tables (a gradient row per input, finite differences of a 3-d input), at the default size.
    await open(page, 'distillationCrossEntropy');
    expect(await runAndWait(page, 'run-button')).toBe('match');
    await expect(page.getByTestId('result-details').locator('table')).toHaveCount(3);
    expect(await outsideTheirPanels(page)).toEqual([]);
    const wide = await pageWidth(page);
    expect(wide.scrollWidth, `${wide.scrollWidth} px of page in a ${wide.innerWidth} px window`).toBeLessThanOrEqual(wide.innerWidth);
    await screenshot(page, testInfo, 'playground-1280');

    // A phone: one column; a table wider than the screen scrolls inside its own box, not the page.
    await page.setViewportSize({ width: 390, height: 844 });
    const narrow = await pageWidth(page);
    expect(narrow.scrollWidth, `${narrow.scrollWidth} px of page in a ${narrow.innerWidth} px window`).toBeLessThanOrEqual(
      narrow.innerWidth,
    );
    await screenshot(page, testInfo, 'playground-390');
  });

  test('an error in the shared prelude names common.wgsl and its line', async ({ page }) => {
    await open(page, 'softmax');
    const editor = page.getByTestId('wgsl-editor');
    const source = await editor.inputValue();
    // Declaring a prelude function again: the compiler reports the prelude's declaration.
    await editor.fill(`${source}\nfn negInf() -> f32 { return 0.0; }\n`);
    expect(await runAndWait(page, 'run-edited-button')).toBe('error');
    const box = page.getByTestId('error-box');
    await expect(box).toContainText(/common\.wgsl:\d+(:\d+)? error: redeclaration of 'negInf'/);
    // The excerpt quotes the prelude's line; the editor's gutter marks none of the user's lines.
    await expect(box).toContainText('fn negInf() -> f32 {');
    await expect(page.locator('#gutter .err')).toHaveCount(0);
  });
});
