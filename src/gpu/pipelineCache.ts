/**
 * Compute pipelines cached by WGSL source + entry point + override constants, with bind-group
 * layouts derived from the WGSL itself: no hand-written binding tables. A shipped kernel's layouts
 * were reflected when the package was built (./shaderLayouts); WGSL supplied at run time is
 * reflected with wgsl_reflect (./wgslReflect), imported on demand by {@link PipelineCache.prepare}.
 * A source's `#include` lines are resolved first (./wgslCompose): the composed module is what is
 * reflected and compiled.
 */
import { composeWgsl, mapWgslMessage, type ComposedWgsl } from './wgslCompose';
import { SgtError } from './errors';
import { entryPointSlots, shippedLayouts, type BindingSlot } from './shaderLayouts';

export type { BindingSlot } from './shaderLayouts';

/** A compiled pipeline and the binding slots of its entry point (group 0). */
export interface CompiledPipeline {
  pipeline: GPUComputePipeline;
  bindGroupLayout: GPUBindGroupLayout;
  slots: readonly BindingSlot[];
}

type RuntimeReflect = typeof import('./wgslReflect');

/** Compiled compute pipelines of one device, by WGSL source, entry point and override constants. */
export class PipelineCache {
  /**
   * By source, then by entry point and constants. Two levels, so that a lookup hashes the source
   * string once (V8 keeps a string's hash) instead of a fresh key of several KiB per dispatch.
   */
  private pipelines = new Map<string, Map<string, CompiledPipeline>>();
  private count = 0;
  private modules = new Map<string, GPUShaderModule>();
  private reflections = new Map<string, readonly BindingSlot[]>();
  private runtimeReflect: RuntimeReflect | null = null;

  /** `onError` receives compile / validation errors of a pipeline, which is then evicted. */
  constructor(
    private readonly device: GPUDevice,
    private readonly onError: (message: string) => void,
  ) {}

  /**
   * Makes the layouts of `source` readable: nothing for a shipped kernel, else loads the WGSL
   * parser (once per cache) so that {@link get} can reflect WGSL supplied at run time.
   */
  async prepare(source: string): Promise<void> {
    if (shippedLayouts(source) || this.runtimeReflect) return;
    this.runtimeReflect = await import('./wgslReflect');
  }

  /** Number of distinct pipelines compiled so far. */
  get size(): number {
    return this.count;
  }

  /** The pipeline of `entryPoint` in `source` with these override `constants`, compiled on first use. */
  get(source: string, entryPoint: string, constants: Record<string, number> = {}): CompiledPipeline {
    let bySource = this.pipelines.get(source);
    if (!bySource) {
      bySource = new Map();
      this.pipelines.set(source, bySource);
    }
    let key = entryPoint;
    for (const k of Object.keys(constants).sort()) key += `|${k}=${constants[k]}`;
    let hit = bySource.get(key);
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
      slots = this.reflect(source, entryPoint, () => compose().code);
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
    bySource.set(key, hit);
    this.count++;
    void this.device.popErrorScope().then((error) => {
      if (!error) return;
      if (bySource.delete(key)) this.count--;
      this.modules.delete(source);
      // Locations past the kernel file's last line are named by their included file.
      this.onError(`kernel '${entryPoint}' failed to compile: ${mapWgslMessage(compose(), error.message)}`);
    });
    return hit;
  }

  /** The slots of `entryPoint`: reflected at build time for a shipped kernel, else now (after {@link prepare}). */
  private reflect(source: string, entryPoint: string, composedCode: () => string): readonly BindingSlot[] {
    const shipped = shippedLayouts(source);
    if (shipped) return entryPointSlots(shipped, entryPoint);
    if (!this.runtimeReflect) {
      throw new SgtError(
        'INVALID_STATE',
        `kernel '${entryPoint}': its WGSL is not one the package ships, so its bindings must be read at run time: ` +
          'call `await getContext().prepareShader(source)` first (it loads the WGSL parser), or run it inside `withShaderSource`',
      );
    }
    return this.runtimeReflect.reflectEntryPoint(composedCode(), entryPoint);
  }
}
