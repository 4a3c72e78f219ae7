/**
 * The fine-tuning demo (demo/index.html, built): the default model loads by itself, a tiny run
 * trains in the worker while the step, the loss, NN-FR, top-1 agreement and both charts update;
 * a bad hyperparameter is reported next to its field and keeps Start disabled; a truncated
 * model.safetensors picked from disk is reported clearly. Runs are tiny: SwiftShader is slow.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test, type Locator, type Page } from '@playwright/test';
import { collectPageErrors, DEMO_URL, firstNumber, forbidExternalRequests, screenshot } from './helpers';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Opens the demo and waits until the default model is on the GPU and the Bible is indexed. */
async function openWithDefaultModel(page: Page): Promise<void> {
  await page.goto('/');
  const status = page.getByTestId('model-status');
  await expect(status).toHaveAttribute('data-kind', /^(ok|error)$/, { timeout: 120_000 });
  const text = await status.textContent();
  expect(await status.getAttribute('data-kind'), `the default model did not load: ${text}`).toBe('ok');
  await expect(status).toContainText('Loaded default model: llama, 4 layers');
  await expect(page.getByTestId('adapter')).toContainText('GPU:');
  // The King James Bible is fetched and indexed: the book picker lists its 66 books.
  await expect(page.getByTestId('corpus-book').locator('option')).toHaveCount(66, { timeout: 60_000 });
}

/** Sets a text field of the training form (the form checks it on input). */
async function setField(page: Page, key: string, value: string): Promise<void> {
  const input = page.getByTestId(`field-${key}`);
  await input.fill(value);
  await expect(input).toHaveValue(value);
}

/** The value a uPlot legend shows for the series labelled `label` (the latest point's, after a push). */
function legendValue(chart: Locator, label: string): Locator {
  return chart
    .locator('.u-legend tr.u-series', { has: chart.page().locator('.u-label', { hasText: new RegExp(`^${label}$`) }) })
    .locator('.u-value');
}

test.describe('fine-tuning demo', () => {
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

  test('loads the default model, trains a few steps in the worker, and updates the step, loss, metrics and charts', async ({
    page,
  }, testInfo) => {
    test.setTimeout(300_000);
    await openWithDefaultModel(page);
    await expect(page.getByTestId('run-state')).toHaveText('idle');
    await expect(page.getByTestId('step')).toHaveText('0');
    await expect(page.getByTestId('loss')).toHaveText('–');
    await expect(page.getByTestId('nnfr')).toHaveText('–');

    // A tiny run: 20 verses of Genesis, batches of 2 sequences of 16 bytes, 3 steps, metrics after every step.
    await page.getByTestId('factory').selectOption('crossEntropyDistillation');
    await page.getByTestId('corpus-count').fill('20');
    await expect(page.getByTestId('corpus-status')).toContainText(/\b20 verses\b/);
    await setField(page, 'batchSize', '2');
    await setField(page, 'seqLen', '16');
    await setField(page, 'maxSteps', '3');
    await setField(page, 'evaluateEvery', '1');
    // Start is clicked straight from the last field, focus still in it (as a user does).
    await expect(page.getByTestId('field-evaluateEvery')).toBeFocused();
    const start = page.getByTestId('start');
    await expect(start).toBeEnabled();
    await start.click();

    // The run starts in the worker: the form locks while it runs, and the step counter moves.
    await expect(page.getByTestId('run-status')).toContainText(/Training a [\d,]+-parameter transform on \d+ sequences/, {
      timeout: 60_000,
    });
    await expect(page.getByTestId('run-state')).toHaveText('running');
    await expect(page.getByTestId('field-batchSize')).toBeDisabled();
    const step = page.getByTestId('step');
    await expect(step).toHaveText(/^[12] \/ 3$/, { timeout: 120_000 });
    expect(firstNumber(await page.getByTestId('loss').textContent())).toBeGreaterThan(0);
    await expect(page.getByTestId('nnfr')).toHaveText(/%$/, { timeout: 120_000 });
    await screenshot(page, testInfo, 'demo-training');

    await expect(page.getByTestId('run-state')).toHaveText('finished', { timeout: 180_000 });
    await expect(step).toHaveText('3 / 3');
    await expect(page.getByTestId('run-status')).toContainText('Finished after 3 steps');

    const lossText = await page.getByTestId('loss').textContent();
    const loss = firstNumber(lossText);
    expect(Number.isFinite(loss), `loss shown: ${lossText}`).toBe(true);
    expect(loss).toBeGreaterThan(0);
    await expect(page.getByTestId('throughput')).toContainText(/[\d,]+ tokens\/s/);

    // NN-FR and top-1 agreement are percentages, KL a non-negative number.
    for (const id of ['nnfr', 'agreement']) {
      const text = await page.getByTestId(id).textContent();
      expect(text, id).toMatch(/^\d+(\.\d)?%$/);
      expect(firstNumber(text)).toBeGreaterThanOrEqual(0);
      expect(firstNumber(text)).toBeLessThanOrEqual(100);
    }
    expect(firstNumber(await page.getByTestId('kl').textContent())).toBeGreaterThanOrEqual(0);

    // The charts plotted the run: one chart for the total loss and one per component, each legend
    // showing the last step's value; the metrics chart's legend shows the last NN-FR and agreement.
    const losses = page.getByTestId('chart-losses');
    await expect(legendValue(page.getByTestId('chart-loss-loss'), 'loss')).toHaveText(lossText!);
    const lossCharts = losses.locator('[data-testid^="chart-loss-"]');
    const keys = await lossCharts.evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.testid!.slice('chart-loss-'.length)));
    expect(keys[0]).toBe('loss');
    expect(keys.length, `loss charts: ${keys.join(', ')}`).toBeGreaterThanOrEqual(3);
    for (const key of keys) {
      const chart = page.getByTestId(`chart-loss-${key}`);
      await expect(chart.locator('canvas').first()).toBeVisible();
      await expect(legendValue(chart, key)).toHaveText(/^-?\d+\.\d{4}$/);
    }
    const metrics = page.getByTestId('chart-metrics');
    // The chart's legend and the tiles show the same percentage (as the CLI prints it: one decimal).
    for (const [id, label] of [
      ['nnfr', 'NN-FR'],
      ['agreement', 'top-1 agreement'],
    ]) {
      const tile = await page.getByTestId(id).textContent();
      expect(tile).toMatch(/^\d+\.\d%$/);
      await expect(legendValue(metrics, label)).toHaveText(tile!);
    }

    // After the run the transform can be downloaded, and the form is usable again.
    await expect(page.getByTestId('download')).toBeEnabled();
    await expect(page.getByTestId('field-batchSize')).toBeEnabled();
    await screenshot(page, testInfo, 'demo-trained');
  });

  test('a bad hyperparameter shows its error next to the field and keeps Start disabled', async ({ page }, testInfo) => {
    await openWithDefaultModel(page);
    const start = page.getByTestId('start');
    await expect(start).toBeEnabled();

    await page.getByTestId('factory').selectOption('distillation');
    const alpha = page.getByTestId('field-alpha');
    await expect(alpha).toHaveValue('0.5');
    await alpha.fill('2');
    await expect(page.getByTestId('error-alpha')).toHaveText('Must be between 0 and 1.');
    await expect(alpha).toHaveAttribute('aria-invalid', 'true');
    await expect(start).toBeDisabled();
    await expect(start).toHaveAttribute('title', 'Fix the highlighted fields to start.');
    // The error sits next to its field: in the same field box.
    await expect(page.locator('.field', { has: alpha }).getByTestId('error-alpha')).toBeVisible();
    await screenshot(page, testInfo, 'demo-bad-alpha');

    // Clicking anyway does nothing: no run starts.
    await start.click({ force: true });
    await page.waitForTimeout(1_000);
    await expect(page.getByTestId('run-state')).toHaveText('idle');
    await expect(page.getByTestId('step')).toHaveText('0');
    await expect(page.getByTestId('run-status')).toHaveText('');

    // Another bad field: a sequence longer than the default model's 256 positions.
    await alpha.fill('0.5');
    await expect(page.getByTestId('error-alpha')).toHaveText('');
    await expect(start).toBeEnabled();
    await setField(page, 'seqLen', '257');
    await expect(page.getByTestId('error-seqLen')).toHaveText('Must be a whole number from 2 to 256.');
    await expect(start).toBeDisabled();
    await setField(page, 'seqLen', '64');
    await expect(page.getByTestId('error-seqLen')).toHaveText('');
    await expect(start).toBeEnabled();
  });

  test('the Start button stays put when focus leaves a field, so a click right after typing lands on it', async ({ page }, testInfo) => {
    await openWithDefaultModel(page);
    const start = page.getByTestId('start');
    await expect(start).toBeEnabled();
    // Type into a run setting whose help text is longer than its two-line preview, then move the
    // focus to Start, as the mousedown of a click does: Start must not move between the mousedown
    // and the mouseup, or the click lands on whatever slid under the pointer and nothing starts.
    const field = page.getByTestId('field-evaluateEvery');
    await field.fill('1');
    await start.scrollIntoViewIfNeeded();
    await page.mouse.move(0, 0);
    const before = await start.boundingBox();
    await start.focus();
    await expect(field).not.toBeFocused();
    const after = await start.boundingBox();
    await screenshot(page, testInfo, 'demo-focus-left-field');
    expect(after, 'Start moved when the focus left the field (a help text collapsed above it)').toEqual(before);
  });

  test('a truncated model.safetensors picked from disk is reported clearly', async ({ page }, testInfo) => {
    await openWithDefaultModel(page);
    const weights = readFileSync(resolve(repo, 'models/default/model.safetensors'));
    const config = readFileSync(resolve(repo, 'models/default/config.json'));
    // The header is intact; the tensor data stops half-way.
    const truncated = weights.subarray(0, Math.floor(weights.byteLength / 2));

    await page.getByTestId('model-files').setInputFiles([
      { name: 'config.json', mimeType: 'application/json', buffer: config },
      { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: truncated },
    ]);
    const status = page.getByTestId('model-status');
    await expect(status).toHaveAttribute('data-kind', 'error', { timeout: 60_000 });
    await expect(status).toContainText('Could not load the model');
    await expect(status).toContainText(/safetensors: .*the file is truncated/);
    // No model: nothing can start.
    await expect(page.getByTestId('start')).toBeDisabled();
    await expect(page.getByTestId('start')).toHaveAttribute('title', 'Load a model first.');
    await screenshot(page, testInfo, 'demo-truncated-model');

    // A picked set without model.safetensors is reported by name too.
    await page.getByTestId('model-files').setInputFiles([{ name: 'config.json', mimeType: 'application/json', buffer: config }]);
    await expect(status).toContainText('Could not load the model: missing model.safetensors.');
    await expect(status).toHaveAttribute('data-kind', 'error');
  });
});
