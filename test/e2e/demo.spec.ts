/**
 * The fine-tuning demo (demo/index.html, built): the default model loads by itself, a tiny run
 * trains in the worker while the step, the loss, NN-FR, top-1 agreement and both charts update;
 * the status line says what is happening within 2 s of Start and before each slow piece of work,
 * an ETA follows the first step, the values before training are drawn as dashed baselines, and the
 * page fits 390 px and 1280 px without sideways scrolling; the metric explanations open from the
 * keyboard; a bad hyperparameter is reported next to its field and keeps Start disabled; a
 * truncated model.safetensors picked from disk is reported clearly. Runs are tiny: SwiftShader is slow.
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

/** One change of the status line, the ETA or the step tile, as the page showed it. */
interface StatusSnapshot {
  /** Milliseconds since Start was clicked. */
  t: number;
  phase: string;
  text: string;
  eta: string;
  step: string;
  nnfr: string;
}

/**
 * Records every change of the status line, the ETA and the step tile from the click on Start on
 * (a MutationObserver in the page, so that no state is missed between two polls of the test).
 */
async function recordStatus(page: Page): Promise<() => Promise<StatusSnapshot[]>> {
  await page.evaluate(() => {
    const w = window as unknown as { __status: StatusSnapshot[]; __t0: number };
    w.__status = [];
    w.__t0 = Number.NaN;
    const text = (id: string) => (document.getElementById(id)?.textContent ?? '').replace(/\s+/g, ' ').trim();
    const snap = () => {
      if (Number.isNaN(w.__t0)) return;
      const s = {
        t: performance.now() - w.__t0,
        phase: document.getElementById('run-phase')?.dataset.phase ?? '',
        // The elapsed seconds tick on their own: they are not a change of state.
        text: text('run-phase-text'),
        eta: text('run-eta'),
        step: text('step'),
        nnfr: text('nnfr'),
      };
      const last = w.__status.at(-1);
      if (!last || last.phase !== s.phase || last.text !== s.text || last.step !== s.step || last.eta.slice(0, 20) !== s.eta.slice(0, 20))
        w.__status.push(s);
    };
    // Capturing: the time is taken before the page's own click handler runs.
    document.getElementById('start')?.addEventListener(
      'click',
      () => {
        w.__t0 = performance.now();
      },
      { capture: true },
    );
    const observer = new MutationObserver(snap);
    for (const id of ['run-phase', 'run-eta', 'step', 'nnfr']) {
      observer.observe(document.getElementById(id)!, { attributes: true, childList: true, characterData: true, subtree: true });
    }
  });
  return () => page.evaluate(() => (window as unknown as { __status: StatusSnapshot[] }).__status);
}

/**
 * The dashed baselines a chart drew: where (from its `data-baselines`) and how much of each row of
 * the canvas is in the series' colour there (a dashed line covers about 60% of the plot's width).
 */
async function baselinesOnCanvas(chart: Locator): Promise<{ label: string; value: number; coverage: number }[]> {
  return chart.evaluate((el) => {
    const rows = JSON.parse((el as HTMLElement).dataset.baselines ?? '[]') as {
      label: string;
      value: number;
      y: number;
      left: number;
      width: number;
      color: string;
    }[];
    const canvas = el.querySelector('canvas')!;
    const ctx = canvas.getContext('2d')!;
    const rgb = (color: string) => [1, 3, 5].map((i) => Number.parseInt(color.slice(i, i + 2), 16));
    return rows.map((r) => {
      // Baselines at the same height (e.g. NN-FR by cosine and by L2, both 0 before training) are
      // drawn over each other: a pixel in the colour of any of them counts for all of them.
      const want = rows.filter((o) => Math.abs(o.y - r.y) <= 1).map((o) => rgb(o.color));
      // Three pixel rows around the line (antialiasing), one count per column.
      const data = ctx.getImageData(r.left, r.y - 1, r.width, 3).data;
      let hit = 0;
      for (let x = 0; x < r.width; x++) {
        for (let dy = 0; dy < 3; dy++) {
          const o = (dy * r.width + x) * 4;
          const near = want.some((w) => Math.abs(data[o] - w[0]) + Math.abs(data[o + 1] - w[1]) + Math.abs(data[o + 2] - w[2]) < 60);
          if (data[o + 3] > 200 && near) {
            hit++;
            break;
          }
        }
      }
      return { label: r.label, value: r.value, coverage: hit / r.width };
    });
  });
}

/** Whether the page is wider than the window (it then scrolls sideways). */
async function expectNoSidewaysScroll(page: Page, what: string): Promise<void> {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  expect(scrollWidth, `${what}: the page is ${scrollWidth} px wide in a ${innerWidth} px window`).toBeLessThanOrEqual(innerWidth);
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

  test('loads the default model, trains a few steps in the worker, and updates the status line, ETA, step, loss, metrics, charts and baselines', async ({
    page,
  }, testInfo) => {
    test.setTimeout(360_000);
    await openWithDefaultModel(page);
    await expect(page.getByTestId('run-phase')).toHaveAttribute('data-phase', 'ready');
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
    // The learned attacks at the end, kept short here.
    await setField(page, 'attackSteps', '5');
    await setField(page, 'evaluateEvery', '1');
    // A fresh browser has measured nothing: the estimate beside the steps says so.
    await expect(page.getByTestId('steps-estimate')).toHaveText(/^Time: unknown until a first step runs/);
    // Start is clicked straight from the last field, focus still in it (as a user does).
    await expect(page.getByTestId('field-evaluateEvery')).toBeFocused();
    const start = page.getByTestId('start');
    await expect(start).toBeEnabled();
    const statusLog = await recordStatus(page);
    const phase = page.getByTestId('run-phase');
    await start.click();
    // The status line says what is happening at once (the first step takes tens of seconds here).
    await expect(phase).toHaveAttribute('data-phase', /^(preparing|baseline|first-step)$/, { timeout: 2_000 });
    await expect(phase).toContainText(/Preparing the data|Measuring the untrained transform|Step 1 of 3/, { timeout: 2_000 });

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
    await expect(phase).toHaveAttribute('data-phase', 'done');
    await expect(phase).toContainText(/Done: 3 steps in \d/);

    // What the status line said, in order: at once after the click, then each phase before its work.
    const log = await statusLog();
    const seen = log.map((s) => `${s.phase} @ ${s.step}`);
    expect(log[0].t, `first change ${JSON.stringify(log[0])}`).toBeLessThan(2_000);
    expect(log[0].phase).toBe('preparing');
    const at = (phaseName: string) => log.find((s) => s.phase === phaseName);
    // The untrained transform is measured before any step, and announced before its result.
    expect(at('baseline'), seen.join(', ')).toMatchObject({ step: '0 / 3', nnfr: '–' });
    expect(at('baseline')!.text).toContain('Measuring the untrained transform');
    // The first step is announced (it compiles the kernels) before it ends; then step k of n.
    expect(at('first-step'), seen.join(', ')).toMatchObject({ step: '0 / 3', text: expect.stringContaining('Step 1 of 3') });
    expect(at('first-step')!.t).toBeGreaterThan(at('baseline')!.t);
    expect(at('step'), seen.join(', ')).toMatchObject({ text: 'Training: step 2 of 3…' });
    expect(at('evaluating')?.text, seen.join(', ')).toMatch(/^Evaluating on held-out text after step [123] of 3/);
    // No ETA before a step is measured; after the first, an upper bound (it compiled the kernels);
    // after the second, an estimate from the steps after the first.
    for (const s of log.filter((e) => e.step === '0 / 3')) expect(s.eta).not.toMatch(/about/);
    const afterFirst = log.find((s) => s.step === '1 / 3');
    expect(afterFirst?.eta, seen.join(', ')).toMatch(/^Time left: at most about \d+(\.\d)? (s|min)\b.*\(\d.* a step/);
    const afterSecond = log.find((s) => s.step === '2 / 3');
    expect(afterSecond?.eta, seen.join(', ')).toMatch(/^Time left: about \d+(\.\d)? (s|min)\b.*\(\d.* a step/);
    // The run's step time is remembered for these settings: the estimate beside the steps uses it.
    await expect(page.getByTestId('steps-estimate')).toHaveText(/^Time: about .* a step, measured in this browser\)\.$/);

    const lossText = await page.getByTestId('loss').textContent();
    const loss = firstNumber(lossText);
    expect(Number.isFinite(loss), `loss shown: ${lossText}`).toBe(true);
    expect(loss).toBeGreaterThan(0);
    await expect(page.getByTestId('throughput')).toContainText(/[\d,]+ tokens\/s/);

    // Utility against the true next token and the learned attacks' token recovery (after the last step).
    await expect(page.getByTestId('accuracy-drop')).toHaveText(/^-?\d+\.\d{2} points$/);
    await expect(page.getByTestId('accuracy-drop-before')).toHaveText(/^before training: -?\d+\.\d{2} points$/);
    await expect(page.getByTestId('perplexity-ratio')).toHaveText(/^\d+\.\d{3}$/);
    await expect(page.getByTestId('attack')).toHaveText(/^\d+(\.\d)?% \/ \d+(\.\d)?% recovered$/);
    await expect(page.getByTestId('attack-clean')).toHaveText(/^clean embeddings: \d+(\.\d)?% \/ \d+(\.\d)?%$/);

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

    // The values before training: in the tiles, and as dashed lines across the charts.
    const beforeTraining = async (id: string) =>
      (await page.getByTestId(`${id}-before`).textContent())?.replace('before training: ', '') ?? null;
    const metricLines = await baselinesOnCanvas(metrics);
    expect(metricLines.map((l) => l.label)).toEqual(['NN-FR', 'NN-FR (L2)', 'top-1 agreement', 'student accuracy', 'teacher accuracy']);
    const lineValue = (label: string) => `${((metricLines.find((l) => l.label === label)?.value ?? Number.NaN) * 100).toFixed(1)}%`;
    expect(lineValue('NN-FR')).toBe(await beforeTraining('nnfr'));
    expect(lineValue('top-1 agreement')).toBe(await beforeTraining('agreement'));
    expect(firstNumber(await beforeTraining('kl'))).toBeGreaterThanOrEqual(0);
    const lossLine = await baselinesOnCanvas(page.getByTestId('chart-loss-loss'));
    expect(lossLine).toHaveLength(1);
    expect(lossLine[0].value.toFixed(4)).toBe(await beforeTraining('loss'));
    for (const key of keys) {
      const [line] = await baselinesOnCanvas(page.getByTestId(`chart-loss-${key}`));
      expect(line?.label, `chart-loss-${key} has no baseline`).toBe(key);
    }
    for (const line of [...metricLines, ...lossLine]) {
      expect(line.coverage, `the dashed ${line.label} baseline is not on the canvas`).toBeGreaterThan(0.4);
    }

    // After the run the transform can be downloaded, and the form is usable again.
    await expect(page.getByTestId('download')).toBeEnabled();
    await expect(page.getByTestId('field-batchSize')).toBeEnabled();
    await expectNoSidewaysScroll(page, 'trained, 1280 px');
    await screenshot(page, testInfo, 'demo-trained');
    // The same page on a phone: the charts follow the width, nothing scrolls sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    await expect
      .poll(() => metrics.evaluate((e) => e.querySelector('canvas')!.getBoundingClientRect().right <= window.innerWidth))
      .toBe(true);
    await expectNoSidewaysScroll(page, 'trained, 390 px');
    await screenshot(page, testInfo, 'demo-trained-390');
  });

  test('fits 390 px and 1280 px without sideways scrolling, and the metric explanations open from the keyboard', async ({
    page,
  }, testInfo) => {
    await page.setViewportSize({ width: 390, height: 844 });
    await openWithDefaultModel(page);
    await expectNoSidewaysScroll(page, '390 px');
    await screenshot(page, testInfo, 'demo-390');

    // The explanations are a <details>, not tooltips: Tab reaches the summary, Enter opens it.
    await expect(page.locator('.stats abbr[title], .stats [title]')).toHaveCount(0);
    const help = page.getByTestId('metric-help');
    await expect(help).not.toHaveAttribute('open', '');
    await expect(help.getByText('The share of transformed positions whose nearest vocabulary embedding')).toBeHidden();
    // Tab from the heading of the training section: the summary is the next thing to focus.
    await page.locator('#train-heading').click();
    await page.keyboard.press('Tab');
    await expect(help.locator('summary')).toBeFocused();
    await page.keyboard.press('Enter');
    await expect(help).toHaveAttribute('open', '');
    await expect(help.getByText('The share of transformed positions whose nearest vocabulary embedding')).toBeVisible();
    await expect(help).toContainText('Top-1 agreement');
    await expect(help).toContainText('Kullback–Leibler');
    await expectNoSidewaysScroll(page, '390 px, explanations open');
    await screenshot(page, testInfo, 'demo-390-explanations');

    await page.setViewportSize({ width: 1280, height: 900 });
    await expectNoSidewaysScroll(page, '1280 px');
    await screenshot(page, testInfo, 'demo-1280');
  });

  test('a bad hyperparameter shows its error next to the field and keeps Start disabled', async ({ page }, testInfo) => {
    await openWithDefaultModel(page);
    const start = page.getByTestId('start');
    await expect(start).toBeEnabled();

    await page.getByTestId('factory').selectOption('distillation');
    const alpha = page.getByTestId('field-alpha');
    // The form starts from the factory's recommended alpha (src/factories/options.ts).
    await expect(alpha).toHaveValue('0.001');
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
