/**
 * The binding layouts of the WGSL the package ships, reflected when it is built: the build's
 * shader plugin (scripts/vite-plugin-wgsl.ts) turns each `shaders/*.wgsl?raw` import into
 * `shippedWgsl(source, layouts)`, so the pipeline cache finds a shipped kernel's bind-group layout
 * here and a page never loads the WGSL parser (wgsl_reflect) for it. WGSL supplied at run time is
 * reflected by ./wgslReflect, loaded on demand (`GpuContext.prepareShader`).
 */
import { SgtError } from './errors';

/** How one binding of an entry point is bound. */
export interface BindingSlot {
  name: string;
  binding: number;
  kind: 'uniform' | 'storage' | 'read-only-storage';
}

/** The binding slots (group 0, by binding number) of every compute entry point of a WGSL module. */
export type EntryPointLayouts = Readonly<Record<string, readonly BindingSlot[]>>;

const shipped = new Map<string, EntryPointLayouts>();

/**
 * @internal Emitted by the build around each shipped kernel file: remembers the layouts of
 * `source` (its `#include` lines resolved) and returns `source`. Calls are marked pure: a kernel no
 * op of an app uses is dropped from its bundle together with its layouts.
 */
export function shippedWgsl(source: string, layouts: EntryPointLayouts): string {
  shipped.set(source, layouts);
  return source;
}

/** The layouts of `source` when it is a shipped kernel file (reflected at build time), else undefined. */
export function shippedLayouts(source: string): EntryPointLayouts | undefined {
  return shipped.get(source);
}

/** The slots of `entryPoint` in `layouts`; throws naming the entry points the module has. */
export function entryPointSlots(layouts: EntryPointLayouts, entryPoint: string): readonly BindingSlot[] {
  const slots = Object.hasOwn(layouts, entryPoint) ? layouts[entryPoint] : undefined;
  if (!slots) {
    const names = Object.keys(layouts).join(', ');
    throw new SgtError('INVALID_ARGUMENT', `WGSL has no compute entry point '${entryPoint}' (it has: ${names})`);
  }
  return slots;
}
