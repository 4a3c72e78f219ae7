/**
 * The factories' option tables (src/factories/options.ts) drive everything else: the tables match
 * the reference Python API, the factories accept every row and reject anything else with messages
 * generated from the rows, and the worker's defaults, the CLI's help and the demo's form fields are
 * the tables' contents. No GPU: the factories get a stand-in noisy model (they only read the
 * layer count and register their outputs at factory time).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FACTORIES, type DistillationLossOptions } from '../../src/factories/distillation';
import {
  DEFAULT_FACTORY_OPTIONS,
  FACTORY_NAMES,
  FACTORY_OPTIONS,
  batchSizeError,
  factoryEntry,
  factoryOptionsHelp,
  initialValue,
  isFactoryName,
  needsEvenBatch,
  parseFactoryOptions,
  type FactoryName,
  type FactoryOptionsFor,
  type OptionKind,
  type OptionSpec,
  type OptionValue,
} from '../../src/factories/options';
import type { NoiseMaskedNoisyTransformerModel } from '../../src/models/cloak';
import { helpText } from '../../src/cli/cli';
import { DEFAULT_FACTORY_OPTIONS as WORKER_DEFAULTS } from '../../src/worker/workerApi';
import * as api from '../../src/index';
import { FACTORY_SPECS, RUN_FIELDS, checkField } from '../../demo/ui/fields';

const NUM_LAYERS = 2;

/** Enough of a noisy model for the factories' option checks (no GPU). */
function standInModel(): NoiseMaskedNoisyTransformerModel {
  return {
    baseModel: { config: { numLayers: NUM_LAYERS } },
    addFactoryOutputs: () => {},
    onForward: () => {},
  } as unknown as NoiseMaskedNoisyTransformerModel;
}

const makeFactory = (f: FactoryName, options: unknown) =>
  (FACTORIES[f] as (m: NoiseMaskedNoisyTransformerModel, o: unknown) => ReturnType<(typeof FACTORIES)[FactoryName]>)(
    standInModel(),
    options,
  );

/** Every option at its starting value or default. */
const allOptions = (f: FactoryName): Record<string, OptionValue> =>
  Object.fromEntries(factoryEntry(f).options.map((row) => [row.name, initialValue(row)]));

/** A valid value of each kind that differs from the rows' starting values and defaults. */
const OTHER_VALUE: Record<OptionKind, OptionValue> = { layer: 1, alpha: 0.25, weight: 0.75, positive: 2.5, flag: false };
/** An invalid value of each kind, and the message part that says why. */
const BAD_VALUE: Record<OptionKind, [unknown, RegExp]> = {
  layer: [NUM_LAYERS, new RegExp(`must be null or a block index in 0..${NUM_LAYERS - 1}, got ${NUM_LAYERS}`)],
  alpha: [1.5, /must be in \[0, 1\], got 1.5/],
  weight: [-1, /must be a finite number >= 0, got -1/],
  positive: [0, /must be positive, got 0/],
  flag: ['yes', /must be true or false, got yes/],
};

/** The reference's signature of `pythonName`: its arguments after `noisy_model`, with their defaults. */
function referenceSignature(pythonName: string): { name: string; default?: OptionValue }[] {
  const text = readFileSync(resolve(import.meta.dirname, '../../../shared/reference/distillation-api-reference.txt'), 'utf8');
  const lines = text.split('\n');
  const start = lines.indexOf(`${pythonName}(`);
  expect(start, `the reference has no signature of ${pythonName}`).toBeGreaterThanOrEqual(0);
  const args: { name: string; default?: OptionValue }[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith(') ->')) break;
    const m = /^(\w+): [^=]+?(?: = (.+))?,$/.exec(line);
    if (!m || m[1] === 'noisy_model') continue;
    args.push(
      m[2] === undefined ? { name: m[1] } : { name: m[1], default: m[2] === 'True' ? true : m[2] === 'False' ? false : Number(m[2]) },
    );
  }
  return args;
}

const camelCase = (pythonName: string) => pythonName.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

describe('the option tables', () => {
  it('have one entry per factory function, and FactoryName/FACTORIES come from src/factories through src/index', () => {
    expect([...FACTORY_NAMES]).toEqual(Object.keys(FACTORIES));
    expect(Object.keys(api.FACTORIES)).toEqual([...FACTORY_NAMES]);
    expect(api.FACTORY_OPTIONS).toBe(FACTORY_OPTIONS);
    for (const f of FACTORY_NAMES) {
      expect(isFactoryName(f)).toBe(true);
      expect(FACTORIES[f].name).toBe(factoryEntry(f).functionName);
    }
    expect(isFactoryName('toString')).toBe(false);
    expect([api.distillationLossFactory, api.mutualInformationDistillationLossFactory, api.crossEntropyDistillationFactory]).toEqual([
      FACTORIES.distillation,
      FACTORIES.mutualInformationDistillation,
      FACTORIES.crossEntropyDistillation,
    ]);
  });

  for (const f of FACTORY_NAMES) {
    it(`${f}: the rows are the reference's arguments, in its order, with its defaults`, () => {
      const entry = factoryEntry(f);
      const reference = referenceSignature(entry.pythonName);
      expect(entry.options.map((row) => row.pythonName)).toEqual(reference.map((a) => a.name));
      for (const [i, row] of entry.options.entries()) {
        expect(camelCase(row.pythonName)).toBe(row.name);
        // A required argument has a starting value and no default; an optional one the reference's default.
        expect(row.default, row.name).toBe(reference[i].default);
        expect(row.start === undefined, row.name).toBe(reference[i].default !== undefined);
        expect(row.help.length, row.name).toBeGreaterThan(20);
        expect(row.label.length, row.name).toBeGreaterThan(0);
      }
    });
  }

  it('mark exactly the mutual-information factories as needing an even batch', () => {
    expect(FACTORY_NAMES.filter(needsEvenBatch)).toEqual(['mutualInformationDistillation', 'mutualInformationCrossEntropyDistillation']);
    for (const f of FACTORY_NAMES) {
      for (const n of [1, 2, 3, 4, 7]) {
        const error = batchSizeError(f, n, "'batchSize'");
        if (needsEvenBatch(f) && n % 2 === 1) {
          expect(error).toBe(
            `'batchSize' must be even and at least 2 for the ${f} factory (mutual information pairs two halves of the batch), got ${n}`,
          );
        } else expect(error).toBeNull();
      }
    }
  });
});

describe('the factories parse their options from the tables', () => {
  for (const f of FACTORY_NAMES) {
    const entry = factoryEntry(f);
    const fn = entry.functionName;

    it(`${f}: accepts every row, at its starting value or default and at another valid value`, () => {
      expect(() => makeFactory(f, allOptions(f))).not.toThrow();
      const resolved = parseFactoryOptions(f, allOptions(f), NUM_LAYERS);
      expect(Object.keys(resolved)).toEqual(entry.options.map((row) => row.name));
      for (const row of entry.options) {
        const options = { ...DEFAULT_FACTORY_OPTIONS[f], [row.name]: OTHER_VALUE[row.kind] };
        expect(() => makeFactory(f, options), row.name).not.toThrow();
        expect(parseFactoryOptions(f, options, NUM_LAYERS)[row.name as keyof typeof resolved]).toBe(OTHER_VALUE[row.kind]);
      }
    });

    it(`${f}: the starting options are complete, and the optional rows take the reference's defaults`, () => {
      const resolved = parseFactoryOptions(f, DEFAULT_FACTORY_OPTIONS[f], NUM_LAYERS) as Record<string, OptionValue>;
      for (const row of entry.options) expect(resolved[row.name], row.name).toBe(initialValue(row));
    });

    it(`${f}: rejects an unknown option, naming it and listing the known ones`, () => {
      const known = entry.options.map((row) => row.name).join(', ');
      expect(() => makeFactory(f, { ...DEFAULT_FACTORY_OPTIONS[f], alhpa: 1 })).toThrow(`${fn}: unknown option 'alhpa' (known: ${known})`);
      expect(() => makeFactory(f, null)).toThrow(`${fn}: options must be an object`);
    });

    it(`${f}: rejects a missing required option and a value out of each row's range, naming the option`, () => {
      for (const row of entry.options as readonly OptionSpec[]) {
        if (row.start !== undefined) {
          const { [row.name]: _dropped, ...missing } = DEFAULT_FACTORY_OPTIONS[f] as Record<string, unknown>;
          expect(() => makeFactory(f, missing), row.name).toThrow(new RegExp(`^${fn}: option '${row.name}' is required`));
        }
        const [bad, why] = BAD_VALUE[row.kind];
        expect(() => makeFactory(f, { ...DEFAULT_FACTORY_OPTIONS[f], [row.name]: bad }), row.name).toThrow(
          new RegExp(`^${fn}: option '${row.name}' ${why.source}`),
        );
      }
    });
  }
});

describe('generated from the tables', () => {
  it("the worker's DEFAULT_FACTORY_OPTIONS: every required row at its starting value", () => {
    expect(WORKER_DEFAULTS).toBe(DEFAULT_FACTORY_OPTIONS);
    for (const f of FACTORY_NAMES) {
      const required = factoryEntry(f).options.filter((row) => row.start !== undefined);
      expect(DEFAULT_FACTORY_OPTIONS[f]).toEqual(Object.fromEntries(required.map((row) => [row.name, row.start])));
    }
  });

  it("the CLI's help lists every factory with its reference name and batch rule, and every option with its value", () => {
    const help = helpText();
    expect(help).toContain(factoryOptionsHelp());
    for (const f of FACTORY_NAMES) {
      const entry = factoryEntry(f);
      const lines = help.split('\n');
      const at = lines.findIndex((l) => l.trim().startsWith(`${f}:`));
      expect(lines[at], f).toContain(entry.pythonName);
      expect(lines[at + 1].includes('even batch size'), f).toBe(needsEvenBatch(f));
      for (const row of entry.options) expect(help, `${f}.${row.name}`).toContain(`${row.name}=${JSON.stringify(initialValue(row))}`);
    }
  });

  it("the demo's factory picker and fields are the tables", () => {
    expect(FACTORY_SPECS.map((s) => s.name)).toEqual([...FACTORY_NAMES]);
    for (const spec of FACTORY_SPECS) {
      const entry = factoryEntry(spec.name);
      expect(spec.label).toBe(entry.label);
      expect(spec.formula).toBe(entry.formula);
      expect(spec.fields).toEqual(
        entry.options.map((row) => ({
          key: row.name,
          label: row.label,
          rule: row.kind,
          help: row.help,
          step: row.step,
          initial: initialValue(row),
        })),
      );
    }
  });

  it("the demo's checks agree with the factories' on each row's starting value and bad value", () => {
    for (const spec of FACTORY_SPECS) {
      for (const field of spec.fields) {
        const ctx = { numLayers: NUM_LAYERS, maxPositions: 64, factory: spec.name };
        const start = field.initial === null ? '' : typeof field.initial === 'boolean' ? field.initial : String(field.initial);
        expect(checkField(field, start, ctx), field.key).toEqual({ ok: true, value: field.initial });
        if (field.rule !== 'flag') expect(checkField(field, String(BAD_VALUE[field.rule as OptionKind][0]), ctx).ok, field.key).toBe(false);
      }
    }
  });

  it("the demo's batch-size field follows each factory's batch rule", () => {
    const batchSize = RUN_FIELDS.find((f) => f.key === 'batchSize')!;
    for (const f of FACTORY_NAMES) {
      const ctx = { numLayers: NUM_LAYERS, maxPositions: 64, factory: f };
      for (const n of [1, 2, 3, 4]) expect(checkField(batchSize, String(n), ctx).ok, `${f} ${n}`).toBe(batchSizeError(f, n, 'b') === null);
      if (needsEvenBatch(f)) expect(batchSize.help).toContain(FACTORY_OPTIONS[f].label);
    }
  });
});

// Compile-time checks (npm run typecheck): the option types are the tables' rows.
const _complete: FactoryOptionsFor<'distillation'> = DEFAULT_FACTORY_OPTIONS.distillation;
const _sameType: DistillationLossOptions = _complete;
// @ts-expect-error 'alpha' is a required row of the distillation table
const _missing: FactoryOptionsFor<'distillation'> = { ...DEFAULT_FACTORY_OPTIONS.distillation, alpha: undefined };
// @ts-expect-error no row of the cross-entropy table is named 'alpha'
const _unknown: FactoryOptionsFor<'crossEntropyDistillation'> = { ...DEFAULT_FACTORY_OPTIONS.crossEntropyDistillation, alpha: 0.5 };
const _wrongType: FactoryOptionsFor<'mutualInformationCrossEntropyDistillation'> = {
  ...DEFAULT_FACTORY_OPTIONS.mutualInformationCrossEntropyDistillation,
  // @ts-expect-error a flag row takes a boolean
  combineNoiseMasksForMutualInformationSubBatches: 1,
};
void [_sameType, _missing, _unknown, _wrongType];
