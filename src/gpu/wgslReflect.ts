/**
 * Reads bind-group layouts from WGSL with wgsl_reflect (a WGSL parser, about 220 KB): at build
 * time for the shipped kernels (scripts/vite-plugin-wgsl.ts, into ./shaderLayouts), and at run
 * time only for WGSL an app supplies or edits, where the pipeline cache imports this module
 * dynamically so that a bundle that never does so never loads the parser. (Imports carry their
 * `.ts` extension: the plugin loads this module through Vite's config loader.)
 */
// wgsl_reflect's "main" is a CommonJS file inside a "type": "module" package, which Node cannot
// load; its ES build works everywhere (types: src/env.d.ts).
import { ResourceType, WgslReflect, type FunctionInfo } from 'wgsl_reflect/wgsl_reflect.module.js';
import { SgtError } from './errors.ts';
import type { BindingSlot, EntryPointLayouts } from './shaderLayouts.ts';

/** The binding slots of one compute entry point, sorted by binding number. */
function slotsOf(fn: FunctionInfo): BindingSlot[] {
  const slots: BindingSlot[] = [];
  for (const r of fn.resources) {
    if (r.group !== 0) throw new SgtError('INVALID_ARGUMENT', `WGSL binding '${r.name}' must be in @group(0)`);
    if (r.resourceType === ResourceType.Uniform) slots.push({ name: r.name, binding: r.binding, kind: 'uniform' });
    else if (r.resourceType === ResourceType.Storage)
      slots.push({ name: r.name, binding: r.binding, kind: r.access === 'read' ? 'read-only-storage' : 'storage' });
    else throw new SgtError('INVALID_ARGUMENT', `WGSL binding '${r.name}': only buffers are supported in compute kernels`);
  }
  return slots.sort((a, b) => a.binding - b.binding);
}

/** Binding slots of `entryPoint` in a composed WGSL module (its `#include` lines already resolved). */
export function reflectEntryPoint(code: string, entryPoint: string): BindingSlot[] {
  const compute = new WgslReflect(code).entry.compute;
  const fn = compute.find((f) => f.name === entryPoint);
  if (!fn) {
    const names = compute.map((f) => f.name).join(', ');
    throw new SgtError('INVALID_ARGUMENT', `WGSL has no compute entry point '${entryPoint}' (it has: ${names})`);
  }
  return slotsOf(fn);
}

/** Binding slots of every compute entry point of a composed WGSL module. */
export function reflectEntryPoints(code: string): EntryPointLayouts {
  const out: Record<string, BindingSlot[]> = {};
  for (const fn of new WgslReflect(code).entry.compute) out[fn.name] = slotsOf(fn);
  return out;
}
