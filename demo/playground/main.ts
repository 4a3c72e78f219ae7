/**
 * The kernel playground page (`demo/playground.html`): picks a case from `./cases.ts`, builds its
 * inputs, runs it through `./runner.ts` and shows the comparison, the finite differences, the
 * timing and the kernel's WGSL (editable where the playground can launch it).
 *
 * Stable hooks for end-to-end tests (`data-testid`): kernel-picker, size-picker, seed-input,
 * input-mode-random, input-mode-json, json-inputs, json-fill, timing-runs, run-button,
 * run-edited-button, result-status (text "match" / "mismatch" / "error" / "running…" / "not run",
 * mirrored in `data-status`), result-details, gpu-time, error-box, wgsl-editor, wgsl-file,
 * edit-note, wgsl-reset, adapter-info. `body[data-gpu]` becomes "ready" or "unavailable".
 */
import { init, WGSL_INCLUDES, type GpuContext } from '../../src/index';
import { CASES, SIZES, findCase, isGrad, type KernelCase, type Size } from './cases';
import { fmtShape, type Comparison, type FdPoint } from './compare';
import { inputsToJson, parseJsonInputs, randomInputs, type HostInput } from './inputs';
import { median, runCase, type RunReport } from './runner';
import { SHADERS, type ShaderFile } from './shaders';
import { WgslCompileError, formatMessage, messageLocation, type CompileMessage } from './wgsl';

// ---------------------------------------------------------------------------------------------
// Elements
// ---------------------------------------------------------------------------------------------

function byId<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`playground.html has no #${id}`);
  return e as T;
}

const ui = {
  adapter: byId<HTMLParagraphElement>('adapter'),
  kernel: byId<HTMLSelectElement>('kernel'),
  caseInfo: byId<HTMLDivElement>('case-info'),
  modeRandom: byId<HTMLInputElement>('mode-random'),
  modeJson: byId<HTMLInputElement>('mode-json'),
  randomOptions: byId<HTMLDivElement>('random-options'),
  jsonOptions: byId<HTMLDivElement>('json-options'),
  seed: byId<HTMLInputElement>('seed'),
  size: byId<HTMLSelectElement>('size'),
  json: byId<HTMLTextAreaElement>('json'),
  jsonFill: byId<HTMLButtonElement>('json-fill'),
  runs: byId<HTMLInputElement>('runs'),
  run: byId<HTMLButtonElement>('run'),
  runEdited: byId<HTMLButtonElement>('run-edited'),
  status: byId<HTMLOutputElement>('status'),
  statusDetail: byId<HTMLSpanElement>('status-detail'),
  error: byId<HTMLDivElement>('error'),
  details: byId<HTMLDivElement>('details'),
  wgslFile: byId<HTMLElement>('wgsl-file'),
  editNote: byId<HTMLParagraphElement>('edit-note'),
  gutter: byId<HTMLPreElement>('gutter'),
  wgsl: byId<HTMLTextAreaElement>('wgsl'),
  reset: byId<HTMLButtonElement>('reset'),
};

/** Creates an element with attributes and children (strings become text: no HTML is parsed). */
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

let current: KernelCase = CASES[0];
/** Edited text per WGSL file, so that kernels sharing a file share the edit. */
const edits = new Map<ShaderFile, string>();
let busy = false;
let gpuAvailable = true;

const gpuReady: Promise<GpuContext> = init().then(
  (ctx) => {
    const info = ctx.adapter.info;
    const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' · ') || 'unnamed adapter';
    const features = [...ctx.features].join(', ') || 'none';
    ui.adapter.textContent = `WebGPU adapter: ${name} (optional features: ${features}).`;
    document.body.dataset.gpu = 'ready';
    return ctx;
  },
  (e: unknown) => {
    gpuAvailable = false;
    document.body.dataset.gpu = 'unavailable';
    ui.adapter.textContent = 'WebGPU is not available in this browser: kernels cannot run here.';
    showError(message(e));
    setStatus('error', 'error', 'no WebGPU adapter');
    updateButtons();
    throw e;
  },
);
// The rejection is reported above; runs await gpuReady and stop there.
gpuReady.catch(() => undefined);

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------
// Picker, case description, inputs
// ---------------------------------------------------------------------------------------------

function fillPickers(): void {
  const groups = new Map<string, HTMLOptGroupElement>();
  for (const c of CASES) {
    let g = groups.get(c.group);
    if (!g) {
      g = h('optgroup', { label: c.group });
      groups.set(c.group, g);
      ui.kernel.append(g);
    }
    g.append(h('option', { value: c.id }, c.label));
  }
  for (const [key, { label, dims }] of Object.entries(SIZES)) {
    const title = `rows ${dims.rows}, cols ${dims.cols}; B ${dims.B}, T ${dims.T}, d ${dims.d}, V ${dims.V}; H ${dims.H}, Hkv ${dims.Hkv}, Dh ${dims.Dh}`;
    ui.size.append(h('option', { value: key, title }, `${label} (${title})`));
  }
  ui.size.value = 'small';
}

function size(): Size {
  return ui.size.value as Size;
}

function seed(): string {
  return ui.seed.value.trim() || '1';
}

function jsonMode(): boolean {
  return ui.modeJson.checked;
}

/** The inputs to run: drawn from the seed, or parsed from the JSON box. */
function currentInputs(): HostInput[] {
  return jsonMode() ? parseJsonInputs(current, ui.json.value) : randomInputs(current, size(), seed());
}

function describeCase(c: KernelCase): void {
  const dims = SIZES[size()].dims;
  const inputs = h('ul', { class: 'input-list' });
  for (const spec of c.inputs) {
    const shape = jsonMode() ? 'shape from the JSON' : fmtShape(spec.shape(dims));
    inputs.append(h('li', {}, h('code', {}, spec.name), ` ${shape} ${spec.dtype ?? 'f32'}${isGrad(spec) ? ', differentiated' : ''}`));
  }
  const files = [c.wgsl, ...(c.alsoRuns ?? [])].map((f, i) => (i === 0 ? f : `${f} (also runs)`)).join(', ');
  const dl = h(
    'dl',
    {},
    h('dt', {}, 'Computes'),
    h('dd', {}, c.formula),
    h('dt', {}, 'Library call'),
    h('dd', {}, h('code', {}, c.call)),
    h('dt', {}, 'Float64 twin'),
    h('dd', {}, h('code', {}, c.twin)),
    h('dt', {}, 'WGSL'),
    h('dd', {}, files),
    h('dt', {}, 'Inputs'),
    h('dd', {}, inputs),
  );
  ui.caseInfo.replaceChildren(dl);
}

function fillJsonFromRandom(): void {
  ui.json.value = inputsToJson(randomInputs(current, size(), seed()));
}

function selectCase(id: string, updateHash = true): void {
  const c = findCase(id) ?? CASES[0];
  current = c;
  ui.kernel.value = c.id;
  describeCase(c);
  loadEditor();
  if (jsonMode()) fillJsonFromRandom();
  clearResult();
  updateButtons();
  if (updateHash && location.hash.slice(1) !== c.id) history.replaceState(null, '', `#${c.id}`);
}

function setInputMode(): void {
  ui.randomOptions.hidden = jsonMode();
  ui.jsonOptions.hidden = !jsonMode();
  if (jsonMode() && !ui.json.value.trim()) fillJsonFromRandom();
  describeCase(current);
}

// ---------------------------------------------------------------------------------------------
// WGSL editor
// ---------------------------------------------------------------------------------------------

function loadEditor(): void {
  const file = current.wgsl;
  ui.wgslFile.textContent = `shaders/${file}`;
  ui.wgsl.value = edits.get(file) ?? SHADERS[file];
  ui.wgsl.scrollTop = 0;
  const also = current.alsoRuns?.length ? ` (${current.alsoRuns.map((f) => `shaders/${f}`).join(', ')} still run as shipped)` : '';
  ui.editNote.textContent =
    `Editable: "Run edited WGSL" compiles this text and runs the library's own ${current.call} and its backward with ` +
    `shaders/${file} replaced by it${also}.`;
  renderGutter(new Map());
}

/** Line numbers beside the editor; lines with compile errors are marked (and carry the message). */
function renderGutter(marks: Map<number, string>): void {
  const lines = ui.wgsl.value.split('\n').length;
  const parts: (Node | string)[] = [];
  for (let i = 1; i <= lines; i++) {
    const mark = marks.get(i);
    parts.push(mark ? h('span', { class: 'err', title: mark }, String(i)) : String(i));
    if (i < lines) parts.push('\n');
  }
  ui.gutter.replaceChildren(...parts);
  ui.gutter.scrollTop = ui.wgsl.scrollTop;
}

/** Puts the caret on `line` (1-based) and scrolls it into view. */
function jumpToLine(line: number, column: number): void {
  const lines = ui.wgsl.value.split('\n');
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const lineText = lines[line - 1] ?? '';
  const at = start + Math.max(0, Math.min(column - 1, lineText.length));
  ui.wgsl.focus();
  ui.wgsl.setSelectionRange(at, start + lineText.length);
  scrollToLine(line);
}

/** Scrolls the editor (and its gutter) so that `line` sits a third of the way down. */
function scrollToLine(line: number): void {
  const lineHeight = parseFloat(getComputedStyle(ui.wgsl).lineHeight) || 18;
  ui.wgsl.scrollTop = Math.max(0, (line - 1) * lineHeight - ui.wgsl.clientHeight / 3);
  ui.gutter.scrollTop = ui.wgsl.scrollTop;
}

// ---------------------------------------------------------------------------------------------
// Status, errors, results
// ---------------------------------------------------------------------------------------------

type Status = 'idle' | 'running' | 'match' | 'mismatch' | 'error';

function setStatus(status: Status, text: string, detail = ''): void {
  ui.status.dataset.status = status;
  ui.status.value = text;
  ui.status.textContent = text;
  ui.statusDetail.textContent = detail;
}

function clearResult(): void {
  setStatus('idle', 'not run');
  ui.error.hidden = true;
  ui.error.replaceChildren();
  ui.details.replaceChildren();
}

function showError(text: string): void {
  ui.error.hidden = false;
  ui.error.replaceChildren(text);
}

function showCompileErrors(messages: CompileMessage[]): void {
  const errors = messages.filter((m) => m.type === 'error');
  const editedLines = ui.wgsl.value.split('\n');
  const list = h('ul', {});
  for (const m of errors) {
    const where = messageLocation(m);
    // A line of the edited file links to the editor; one of an included file (common.wgsl) is
    // quoted from that file.
    const inEditor = m.file === undefined && m.line > 0;
    const sourceLines = m.file === undefined ? editedLines : (WGSL_INCLUDES[m.file] ?? '').split('\n');
    const link = inEditor
      ? h('button', { type: 'button', class: 'line-link', title: 'Show this line in the editor' }, where)
      : where || null;
    if (link instanceof HTMLElement) link.addEventListener('click', () => jumpToLine(m.line, m.column));
    // The line before too: a missing ';' is reported at the start of the next statement.
    const excerpt =
      m.line > 0 && sourceLines[m.line - 1] !== undefined
        ? h(
            'div',
            { class: 'excerpt' },
            ...[m.line - 1, m.line]
              .filter((n) => n >= 1)
              .map((n) => h('code', {}, `${n === m.line ? '>' : ' '} ${String(n).padStart(4)} | ${sourceLines[n - 1]}\n`)),
          )
        : null;
    list.append(h('li', {}, link, `${where ? ' ' : ''}${m.type}: ${m.message}`, excerpt));
  }
  ui.error.hidden = false;
  ui.error.replaceChildren(`The edited WGSL does not compile (${errors.length} error${errors.length === 1 ? '' : 's'}):`, list);
  const marks = new Map<number, string>();
  for (const m of errors) {
    if (m.file === undefined && m.line > 0) marks.set(m.line, [marks.get(m.line), formatMessage(m)].filter(Boolean).join('\n'));
  }
  renderGutter(marks);
  // Bring the first error into view without moving the focus (it stays on the run button).
  const first = errors.find((m) => m.file === undefined && m.line > 0);
  if (first) scrollToLine(first.line);
}

/** A number for a table: 4 significant digits, exponent notation for very small or large values. */
function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a < 1e-3 || a >= 1e5 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

function resultCell(pass: boolean): HTMLTableCellElement {
  return h('td', { class: pass ? 'ok' : 'bad' }, pass ? 'pass' : 'FAIL');
}

function comparisonTable(rows: Comparison[]): HTMLElement {
  const body = h('tbody', {});
  for (const r of rows) {
    body.append(
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, r.label),
        h('td', { class: 'num' }, String(r.n)),
        h('td', { class: 'num' }, r.problem ? '—' : num(r.maxAbs)),
        h('td', { class: 'num' }, r.problem ? '—' : num(r.maxRel)),
        h('td', { class: 'num', title: 'largest |gpu - twin| / (atol + rtol |twin|); at most 1 passes' }, r.problem ?? num(r.worst)),
        // Two unbreakable halves: the cell wraps at the slash, never inside "1.00e-6".
        h('td', { class: 'num tol' }, h('span', {}, num(r.tol.rtol)), ' ', h('span', {}, `/ ${num(r.tol.atol)}`)),
        resultCell(r.pass),
      ),
    );
  }
  const head = h(
    'thead',
    {},
    h(
      'tr',
      {},
      ...['', 'elements', 'max abs err', 'max rel err', 'worst / tol', 'rtol / atol', 'result'].map((t) => h('th', { scope: 'col' }, t)),
    ),
  );
  return h('div', { class: 'table-scroll' }, h('table', {}, h('caption', {}, 'GPU against the float64 twin'), head, body));
}

function fdTable(points: FdPoint[]): HTMLElement {
  const body = h('tbody', {});
  for (const p of points) {
    body.append(
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, `${current.inputs[p.input].name}[${p.index}]`),
        h('td', { class: 'num' }, num(p.numeric)),
        h('td', { class: 'num' }, num(p.analytic)),
        h('td', { class: 'num' }, p.gpu === null ? '—' : num(p.gpu)),
        resultCell(p.ratio <= 1),
      ),
    );
  }
  const head = h(
    'thead',
    {},
    h(
      'tr',
      {},
      ...['element', 'finite difference', 'twin backward', 'GPU gradient', 'twin vs FD'].map((t) => h('th', { scope: 'col' }, t)),
    ),
  );
  return h(
    'div',
    { class: 'table-scroll' },
    h('table', {}, h('caption', {}, 'Central finite differences of sum(w · twin(x)), float64 (rtol 1e-6, atol 1e-8)'), head, body),
  );
}

function previewTable(report: RunReport): HTMLElement {
  const body = h('tbody', {});
  report.preview.gpu.forEach((g, i) => {
    body.append(
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, String(i)),
        h('td', { class: 'num' }, num(g)),
        h('td', { class: 'num' }, num(report.preview.twin[i])),
      ),
    );
  });
  const head = h('thead', {}, h('tr', {}, ...['index', 'GPU', 'twin'].map((t) => h('th', { scope: 'col' }, t))));
  return h(
    'div',
    { class: 'table-scroll' },
    h('table', {}, h('caption', {}, `Output ${fmtShape(report.outShape)}: first values`), head, body),
  );
}

function renderReport(report: RunReport): void {
  const parts: HTMLElement[] = [];
  const warnings = report.compileMessages;
  if (warnings.length) {
    parts.push(
      h(
        'div',
        { class: 'warnings', role: 'note' },
        'Compiler messages:',
        h('ul', {}, ...warnings.map((m) => h('li', {}, formatMessage(m)))),
      ),
    );
  }
  parts.push(comparisonTable(report.comparisons));
  if (report.fd.length) parts.push(fdTable(report.fd));
  const t = report.timesMs;
  parts.push(
    h(
      'p',
      { class: 'timing', 'data-testid': 'gpu-time' },
      'GPU time of the forward: ',
      h('strong', {}, `${median(t).toFixed(3)} ms`),
      ` median of ${t.length} run${t.length === 1 ? '' : 's'} (min ${Math.min(...t).toFixed(3)}, max ${Math.max(...t).toFixed(3)} ms), `,
      'each recorded, submitted and awaited with getContext().sync(), after one untimed warm-up.',
    ),
  );
  parts.push(previewTable(report));
  if (report.leakedBuffers !== 0) {
    parts.push(h('p', { class: 'hint' }, `Note: ${report.leakedBuffers} GPU buffer(s) were still allocated after the run.`));
  }
  ui.details.replaceChildren(...parts);
}

function summary(report: RunReport): string {
  const source = report.edited ? 'edited WGSL' : 'library kernel';
  const grads = report.comparisons.length - 1;
  const failed = report.comparisons.filter((c) => !c.pass).map((c) => c.label);
  const fdFailed = report.fd.filter((p) => p.ratio > 1).length;
  if (report.pass) {
    return `${source}: forward${grads ? ` and ${grads} gradient${grads === 1 ? '' : 's'}` : ''} within the tests' tolerances; twin backward agrees with finite differences`;
  }
  const what = [...failed, ...(fdFailed ? [`${fdFailed} finite-difference point${fdFailed === 1 ? '' : 's'}`] : [])];
  return `${source}: outside tolerance: ${what.join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

function updateButtons(): void {
  ui.run.disabled = busy || !gpuAvailable;
  ui.runEdited.disabled = busy || !gpuAvailable;
  ui.runEdited.title = 'Compile the editor text and run this kernel with it';
  ui.kernel.disabled = busy;
}

async function run(edited: boolean): Promise<void> {
  if (busy) return;
  busy = true;
  updateButtons();
  const c = current;
  setStatus('running', 'running…', edited ? 'compiling and running the edited WGSL' : 'running the library kernel');
  ui.error.hidden = true;
  ui.details.replaceChildren();
  renderGutter(new Map());
  try {
    await gpuReady;
    const inputs = currentInputs();
    const runs = Math.min(200, Math.max(1, Math.floor(Number(ui.runs.value) || 10)));
    const report = await runCase(c, inputs, { seed: seed(), timingRuns: runs, editedSource: edited ? ui.wgsl.value : undefined });
    renderReport(report);
    setStatus(report.pass ? 'match' : 'mismatch', report.pass ? 'match' : 'mismatch', summary(report));
  } catch (e) {
    if (e instanceof WgslCompileError) {
      showCompileErrors(e.messages);
      setStatus('error', 'error', 'compile error');
    } else {
      showError(message(e));
      setStatus('error', 'error', edited ? 'the edited kernel failed' : 'the run failed');
    }
  } finally {
    busy = false;
    updateButtons();
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------------------------

fillPickers();
// Re-selecting the current kernel keeps its pasted JSON, edits and result.
ui.kernel.addEventListener('change', () => {
  if (ui.kernel.value !== current.id) selectCase(ui.kernel.value);
});
ui.size.addEventListener('change', () => {
  describeCase(current);
  clearResult();
});
ui.seed.addEventListener('change', clearResult);
ui.modeRandom.addEventListener('change', setInputMode);
ui.modeJson.addEventListener('change', setInputMode);
ui.jsonFill.addEventListener('click', fillJsonFromRandom);
ui.run.addEventListener('click', () => void run(false));
ui.runEdited.addEventListener('click', () => void run(true));
ui.reset.addEventListener('click', () => {
  edits.delete(current.wgsl);
  loadEditor();
});
ui.wgsl.addEventListener('input', () => {
  edits.set(current.wgsl, ui.wgsl.value);
  // Marks from the last compile no longer match the lines once the text changes.
  renderGutter(new Map());
});
ui.wgsl.addEventListener('scroll', () => {
  ui.gutter.scrollTop = ui.wgsl.scrollTop;
});
ui.wgsl.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    void run(true);
  }
});
window.addEventListener('hashchange', () => {
  const id = location.hash.slice(1);
  if (id && id !== current.id && findCase(id)) selectCase(id, false);
});

selectCase(location.hash.slice(1) || CASES[0].id, false);
setInputMode();
