/**
 * Compute pipelines cached by WGSL source + entry point + override constants, with bind-group
 * layouts derived from the WGSL itself (wgsl_reflect): no hand-written binding tables. A source's
 * `#include` lines are resolved first (./wgslCompose): the composed module is what is reflected
 * and compiled.
 */
// wgsl_reflect's "main" is a CommonJS file inside a "type": "module" package, which Node cannot
// load; its ES build works everywhere (types: src/env.d.ts).
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';
import { composeWgsl, mapWgslMessage, type ComposedWgsl } from './wgslCompose';
import { SgtError } from './errors';

/** How one binding of an entry point is bound. */
export interface BindingSlot {
  name: string;
  binding: number;
  kind: 'uniform' | 'storage' | 'read-only-storage';
}

/** A compiled pipeline and the binding slots of its entry point (group 0). */
export interface CompiledPipeline {
  pipeline: GPUComputePipeline;
  bindGroupLayout: GPUBindGroupLayout;
  slots: BindingSlot[];
}

/** Binding slots of a compute entry point, read from the WGSL source (its includes resolved). */
export function reflectBindings(source: string, entryPoint: string): BindingSlot[] {
  return reflectComposed(composeWgsl(source).code, entryPoint);
}

function reflectComposed(code: string, entryPoint: string): BindingSlot[] {
  const reflect = new WgslReflect(code);
  const fn = reflect.entry.compute.find((f) => f.name === entryPoint);
  if (!fn) {
    const names = reflect.entry.compute.map((f) => f.name).join(', ');
    throw new SgtError('INVALID_ARGUMENT', `WGSL has no compute entry point '${entryPoint}' (it has: ${names})`);
  }
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

/** Compiled compute pipelines of one device, by WGSL source, entry point and override constants. */
export class PipelineCache {
  private pipelines = new Map<string, CompiledPipeline>();
  private modules = new Map<string, GPUShaderModule>();
  private reflections = new Map<string, BindingSlot[]>();

  /** `onError` receives compile / validation errors of a pipeline, which is then evicted. */
  constructor(
    private readonly device: GPUDevice,
    private readonly onError: (message: string) => void,
  ) {}

  /** Number of distinct pipelines compiled so far. */
  get size(): number {
    return this.pipelines.size;
  }

  /** The pipeline of `entryPoint` in `source` with these override `constants`, compiled on first use. */
  get(source: string, entryPoint: string, constants: Record<string, number> = {}): CompiledPipeline {
    const constKey = Object.keys(constants)
      .sort()
      .map((k) => `${k}=${constants[k]}`)
      .join(',');
    const key = `${entryPoint}|${constKey}|${source}`;
    let hit = this.pipelines.get(key);
    if (hit) return hit;
    // Composed at most once per miss (a missing include throws here, synchronously).
    let composed: ComposedWgsl | undefined;
    const compose = () => {
      composed ??= composeWgsl(source);
      return composed;
    };
    const reflectKey = `${entryPoint}|${source}`;
    let slots = this.reflections.get(reflectKey);
    if (!slots) {
      slots = reflectComposed(compose().code, entryPoint);
      this.reflections.set(reflectKey, slots);
    }
    // Errors of compilation arrive asynchronously; an error scope ties them to this kernel, and
    // evicting the entry means the next call recompiles (and reports) instead of reusing it.
    this.device.pushErrorScope('validation');
    let module = this.modules.get(source);
    if (!module) {
      module = this.device.createShaderModule({ code: compose().code });
      this.modules.set(source, module);
    }
    const bindGroupLayout = this.device.createBindGroupLayout({
      entries: slots.map((s) => ({
        binding: s.binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: s.kind },
      })),
    });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] }),
      compute: { module, entryPoint, constants },
    });
    hit = { pipeline, bindGroupLayout, slots };
    this.pipelines.set(key, hit);
    void this.device.popErrorScope().then((error) => {
      if (!error) return;
      this.pipelines.delete(key);
      this.modules.delete(source);
      // Locations past the kernel file's last line are named by their included file.
      this.onError(`kernel '${entryPoint}' failed to compile: ${mapWgslMessage(compose(), error.message)}`);
    });
    return hit;
  }
}
