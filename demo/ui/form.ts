/**
 * The training form: the factory picker, the chosen factory's options and the run's settings,
 * each checked as it is typed (the error sits next to the field, and `valid` is false while any
 * field is wrong). Values typed for one factory are kept when switching to another and back.
 */
import type { FactoryName } from '../../src/factories/options';
import {
  FACTORY_RUN_DEFAULTS,
  FACTORY_SPECS,
  RUN_DEFAULTS,
  RUN_FIELDS,
  checkField,
  type FieldSpec,
  type ValidationContext,
} from './fields';

/** What the form holds once every field is valid. */
export interface FormValues {
  factory: FactoryName;
  factoryOptions: Record<string, number | boolean | null>;
  run: {
    batchSize: number;
    seqLen: number;
    learningRate: number;
    privacyRamp: number;
    maxSteps: number;
    evaluateEvery: number;
    attackSteps: number;
    memoryBudgetMiB: number;
  };
}

interface BoundField {
  spec: FieldSpec;
  input: HTMLInputElement;
  error: HTMLElement;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

function asText(v: unknown): string {
  return v === null || v === undefined ? '' : String(v);
}

/** The form, rendered into the given containers. */
export class TrainingForm {
  /** Called whenever validity may have changed. */
  onChange: () => void = () => {};
  private factory: FactoryName = 'crossEntropyDistillation';
  private readonly typed = new Map<FactoryName, Map<string, string | boolean>>();
  /** The run settings the user has typed in (kept when the factory changes). */
  private readonly runTyped = new Set<string>();
  private factoryFields: BoundField[] = [];
  private readonly runFields: BoundField[] = [];
  private readonly select: HTMLSelectElement;
  private readonly formula: HTMLElement;
  private model: { numLayers: number | null; maxPositions: number | null } = { numLayers: null, maxPositions: null };
  private disabled = false;

  /**
   * @param factoryBox - where the picker and the factory's fields go.
   * @param runBox - where the run's settings go.
   * @param defaults - the library's default options per factory (DEFAULT_FACTORY_OPTIONS).
   */
  constructor(
    factoryBox: HTMLElement,
    private readonly fieldsBox: HTMLElement,
    runBox: HTMLElement,
    private readonly defaults: Record<FactoryName, Record<string, unknown>>,
  ) {
    this.select = el('select', { id: 'factory', name: 'factory' });
    this.select.dataset.testid = 'factory';
    for (const spec of FACTORY_SPECS) this.select.append(el('option', { value: spec.name, textContent: spec.label }));
    this.select.value = this.factory;
    this.select.addEventListener('change', () => this.showFactory(this.select.value as FactoryName));
    this.formula = el('p', { className: 'formula', id: 'factory-formula' });
    this.formula.dataset.testid = 'factory-formula';
    this.select.setAttribute('aria-describedby', 'factory-formula');
    factoryBox.replaceChildren(el('label', { htmlFor: 'factory' }, 'Loss factory'), this.select, this.formula);

    for (const spec of RUN_FIELDS) this.runFields.push(this.renderField(spec, asText(RUN_DEFAULTS[spec.key]), runBox));
    this.showFactory(this.factory);
  }

  /** The loaded model's limits, for the layer index and the sequence length. */
  setModel(numLayers: number | null, maxPositions: number | null): void {
    this.model = { numLayers, maxPositions };
    this.validateAll();
  }

  /** Whether every field holds a valid value. */
  get valid(): boolean {
    return [...this.factoryFields, ...this.runFields].every((f) => this.check(f).ok);
  }

  /** The chosen factory. */
  get factoryName(): FactoryName {
    return this.factory;
  }

  /**
   * Puts `note` right under the run setting `key`'s input (e.g. the time estimate beside the
   * steps), described by it for screen readers.
   */
  addRunNote(key: string, note: HTMLElement): void {
    const field = this.runFields.find((f) => f.spec.key === key);
    if (!field) throw new Error(`TrainingForm: no run setting '${key}'`);
    if (!note.id) throw new Error('TrainingForm: the note needs an id (the input is described by it)');
    field.input.after(note);
    field.input.setAttribute('aria-describedby', `${field.input.getAttribute('aria-describedby') ?? ''} ${note.id}`.trim());
  }

  /** Locks the form while a run uses its values. */
  setDisabled(disabled: boolean): void {
    this.disabled = disabled;
    this.select.disabled = disabled;
    for (const f of [...this.factoryFields, ...this.runFields]) f.input.disabled = disabled;
  }

  /** The values, or null while a field is invalid. */
  values(): FormValues | null {
    if (!this.valid) return null;
    const factoryOptions: Record<string, number | boolean | null> = {};
    for (const f of this.factoryFields) {
      const c = this.check(f);
      if (c.ok) factoryOptions[f.spec.key] = c.value;
    }
    const run: Record<string, number> = {};
    for (const f of this.runFields) {
      const c = this.check(f);
      if (c.ok) run[f.spec.key] = c.value as number;
    }
    return { factory: this.factory, factoryOptions, run: run as FormValues['run'] };
  }

  private context(): ValidationContext {
    return { ...this.model, factory: this.factory };
  }

  private showFactory(name: FactoryName): void {
    this.saveTyped();
    this.factory = name;
    this.select.value = name;
    const spec = FACTORY_SPECS.find((s) => s.name === name)!;
    this.formula.textContent = `loss = ${spec.formula}`;
    const typed = this.typed.get(name);
    // The run settings the user has not typed follow the factory's recommended ones.
    const recommended = FACTORY_RUN_DEFAULTS(name);
    for (const f of this.runFields) {
      if (f.spec.key in recommended && !this.runTyped.has(f.spec.key)) f.input.value = asText(recommended[f.spec.key]);
    }
    this.fieldsBox.replaceChildren();
    this.factoryFields = spec.fields.map((field) => {
      const initial = typed?.get(field.key) ?? this.defaults[name]?.[field.key] ?? field.initial ?? '';
      return this.renderField(field, typeof initial === 'boolean' ? initial : asText(initial), this.fieldsBox);
    });
    if (this.disabled) this.setDisabled(true);
    this.validateAll();
  }

  private saveTyped(): void {
    if (this.factoryFields.length === 0) return;
    const values = new Map<string, string | boolean>();
    for (const f of this.factoryFields) values.set(f.spec.key, f.spec.rule === 'flag' ? f.input.checked : f.input.value);
    this.typed.set(this.factory, values);
  }

  private renderField(spec: FieldSpec, initial: string | boolean, into: HTMLElement): BoundField {
    const id = `field-${spec.key}`;
    const helpId = `help-${spec.key}`;
    const errorId = `error-${spec.key}`;
    const input = el('input', { id, name: spec.key, title: spec.help });
    input.dataset.testid = id;
    input.setAttribute('aria-describedby', `${errorId} ${helpId}`);
    const error = el('p', { className: 'error', id: errorId });
    error.dataset.testid = errorId;
    error.setAttribute('aria-live', 'polite');
    // The help text shows two lines in the flow; hovering or focusing the field lays the whole
    // text over what follows instead of growing the field, so nothing below moves when focus
    // leaves (a click on Start right after typing must land where it was aimed).
    const clamped = el('p', { className: 'help', id: helpId, textContent: spec.help });
    const full = el('p', { className: 'help-full', textContent: spec.help });
    full.setAttribute('aria-hidden', 'true');
    const help = el('div', { className: 'help-box' }, clamped, full);
    const key = el('code', { textContent: spec.key });
    let box: HTMLElement;
    if (spec.rule === 'flag') {
      input.type = 'checkbox';
      input.checked = Boolean(initial);
      box = el(
        'div',
        { className: 'field field-flag' },
        el('label', { htmlFor: id }, input, el('span', {}, `${spec.label} `, key)),
        help,
        error,
      );
    } else {
      input.type = 'text';
      input.inputMode =
        spec.rule === 'layer' || spec.rule === 'count' || spec.rule === 'countOrZero' || spec.rule === 'seqLen' || spec.rule === 'batchSize'
          ? 'numeric'
          : 'decimal';
      input.autocomplete = 'off';
      input.spellcheck = false;
      input.value = String(initial);
      if (spec.rule === 'layer') input.placeholder = 'logits';
      box = el('div', { className: 'field' }, el('label', { htmlFor: id }, `${spec.label} `, key), input, error, help);
    }
    into.append(box);
    const bound = { spec, input, error };
    input.addEventListener(spec.rule === 'flag' ? 'change' : 'input', () => {
      if (into !== this.fieldsBox) this.runTyped.add(spec.key);
      this.show(bound);
      this.onChange();
    });
    this.show(bound);
    return bound;
  }

  private check(f: BoundField) {
    return checkField(f.spec, f.spec.rule === 'flag' ? f.input.checked : f.input.value, this.context());
  }

  private show(f: BoundField): void {
    const c = this.check(f);
    f.error.textContent = c.ok ? '' : c.error;
    f.input.setAttribute('aria-invalid', String(!c.ok));
  }

  private validateAll(): void {
    for (const f of [...this.factoryFields, ...this.runFields]) this.show(f);
    this.onChange();
  }
}
