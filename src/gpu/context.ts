/**
 * The WebGPU device and everything that talks to it directly: adapter selection (browser, worker
 * or Node/Dawn), limits, the buffer pool, the pipeline cache, command batching, a uniform arena
 * for per-dispatch parameters, batched readback, and error / device-loss handling.
 */
import { BufferPool, sizeClass } from './bufferPool';
import { PipelineCache, type CompiledPipeline } from './pipelineCache';
import { SgtError, type SgtErrorCode } from './errors';
import { KernelTimer } from './kernelTimer';

/** Options for {@link init}. */
export interface InitOptions {
  /** Adapter power preference, passed to `requestAdapter`. */
  powerPreference?: GPUPowerPreference;
  /** Dawn toggles for Node (`create(flags)`), e.g. `['adapter=llvmpipe']`. Ignored in browsers. */
  dawnFlags?: string[];
  /** Upper bound on workgroups a grid-stride kernel launches (default 512). */
  maxGridWorkgroups?: number;
  /** Bytes of freed buffers the pool may keep for reuse (default 256 MiB). */
  poolBytes?: number;
  /**
   * Lowers the largest storage binding the toolkit uses (bytes) below the device's
   * `maxStorageBufferBindingSize`, as {@link GpuContext.setBindingLimit} does: a test hook that
   * makes a small model take the paths a real one needs (embedding and LM head split into row
   * blocks, named errors for what cannot be split).
   */
  bindingLimit?: number;
}

/** A resource bound to a named WGSL variable: a whole buffer or a byte range of one. */
export type BoundResource = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** One compute dispatch, resources bound by their WGSL variable names. */
export interface Dispatch {
  /** WGSL module source; its `#include "common.wgsl"` lines are resolved (`composeWgsl`). */
  shader: string;
  /** Compute entry point in `shader`. */
  entryPoint: string;
  /** Values of WGSL `override` constants (part of the pipeline cache key). */
  constants?: Record<string, number>;
  /** Storage buffers by WGSL variable name. */
  resources: Record<string, BoundResource>;
  /** Bytes of the entry point's single uniform (its parameter struct), if it has one. */
  params?: ArrayBuffer | ArrayBufferView;
  /** Workgroup counts. */
  workgroups: [number, number?, number?];
  /** Name shown in error messages. */
  label?: string;
}

const UNIFORM_SLOT = 256;
/** Checks of GPU data one context can hold (see {@link GpuContext.dataCheck}), two u32 counters each. */
const CHECK_SLOTS = 16;
const ARENA_CHUNK = 64 * 1024;

const NO_ADAPTER_HELP =
  'No WebGPU adapter was found. In Node, Dawn needs a Vulkan driver: on Debian 12 run ' +
  '`apt-get install libvulkan1` and `apt-get install -t bookworm-backports mesa-vulkan-drivers` ' +
  '(lavapipe), or `apt-get install chromium` and set ' +
  'VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (SwiftShader). In Chromium, launch ' +
  'with --enable-unsafe-webgpu (and --use-webgpu-adapter=swiftshader on a machine with no GPU).';

/** A ready WebGPU device with its pool, pipeline cache and command batch. */
export class GpuContext {
  /** The device every tensor of this context lives on. */
  readonly device: GPUDevice;
  /** The adapter the device came from. */
  readonly adapter: GPUAdapter;
  /** Optional features that were present and enabled. */
  readonly features: ReadonlySet<string>;
  /** Upper bound on workgroups launched by a grid-stride kernel. */
  readonly maxGridWorkgroups: number;
  /** Free-list of buffers for reuse, and the live-buffer count. */
  readonly pool: BufferPool;
  /** @internal */
  readonly pipelines: PipelineCache;
  /**
   * Work recorded since the context was made (or {@link resetCounters}): dispatches, buffer
   * copies, submits and readbacks, and, while {@link countByKernel} is on, dispatches per kernel
   * entry point. For profiling a step: how many dispatches, submits and readbacks it records, and
   * of which kernels.
   */
  readonly counters = { dispatches: 0, copies: 0, submits: 0, readbacks: 0, byKernel: new Map<string, number>() };
  /** Whether {@link counters}.byKernel counts dispatches per entry point (default false). */
  countByKernel = false;
  private timer: KernelTimer | null = null;
  private readonly deviceBindingLimit: number;
  private readonly maxWorkgroupsPerDimension: number;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pendingDispatches = 0;
  private arenaChunks: GPUBuffer[] = [];
  private arenaCpu: Uint8Array[] = [];
  private arenaUsed = 0; // bytes used over all chunks of the open batch
  private afterSubmit: (() => void)[] = [];
  private errors: { message: string; outOfMemory: boolean }[] = [];
  private rootErrorReported = false;
  private shaderOverrides = new Map<string, string>();
  private lostMessage: string | null = null;
  private destroyed = false;
  private forcedBindingLimit: number | null = null;
  private readonly dataChecks = new Map<string, { slot: number; describe: (count: number, detail: number) => string }>();
  private checkBuffer: GPUBuffer | null = null;
  /** Whether a dispatch bound the check counters since the last readback. */
  private checksBound = false;

  /** @internal Use {@link init}. */
  constructor(adapter: GPUAdapter, device: GPUDevice, features: Set<string>, options: InitOptions) {
    this.adapter = adapter;
    this.device = device;
    this.features = features;
    this.maxGridWorkgroups = options.maxGridWorkgroups ?? 512;
    // Read once: every dispatch checks against them, and a native getter per dispatch adds up.
    this.deviceBindingLimit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    this.maxWorkgroupsPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    this.pool = new BufferPool(device, options.poolBytes ?? 256 * 1024 * 1024, (b) => this.destroyLater(b));
    this.pipelines = new PipelineCache(device, (message) => this.errors.push({ message, outOfMemory: false }));
    if (options.bindingLimit !== undefined) this.setBindingLimit(options.bindingLimit);
    device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      const message = error?.message ?? String(event);
      // Once a root error was reported, its knock-on effects ("X is invalid due to a previous
      // error") carry no news and would fail an unrelated later call.
      if (this.rootErrorReported && /due to a previous error/.test(message)) return;
      // By name, not instanceof: GPUOutOfMemoryError is a global only once Dawn is loaded.
      this.errors.push({ message, outOfMemory: error?.constructor?.name === 'GPUOutOfMemoryError' });
    });
    void device.lost.then((info) => {
      if (this.destroyed) {
        this.lostMessage = 'WebGPU device was destroyed by dispose()';
        return;
      }
      this.lostMessage = `WebGPU device lost (${info.reason}): ${info.message || 'no message'}; call init() for a fresh context`;
      emit(lostListeners, { context: this, reason: info.reason ?? 'unknown', message: this.lostMessage });
    });
  }

  /** Adapter limits as granted to the device. */
  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /**
   * The largest storage binding (bytes) any tensor of the toolkit may need: the device's
   * `maxStorageBufferBindingSize` and `maxBufferSize`, or less when lowered by
   * {@link setBindingLimit}. Weights larger than this are stored as row blocks; anything else that
   * would need more is refused with a named error, and every dispatch checks its bindings against it.
   */
  get bindingLimit(): number {
    const device = this.deviceBindingLimit;
    return this.forcedBindingLimit === null ? device : Math.min(device, this.forcedBindingLimit);
  }

  /**
   * Lowers {@link bindingLimit} to `bytes` (`null` restores the device's): the documented test hook
   * that exercises on a tiny model the block splitting a large model needs. `bytes` must be a size
   * class of the buffer pool (a multiple of 256 up to 64 KiB, a power of two above always is), so
   * that no pooled buffer of a tensor under the limit is larger than the limit. It applies to
   * tensors made afterwards (a loaded model keeps its layout).
   */
  setBindingLimit(bytes: number | null): void {
    if (bytes !== null && (!Number.isSafeInteger(bytes) || bytes < 256 || sizeClass(bytes) !== bytes)) {
      throw new SgtError(
        'INVALID_ARGUMENT',
        `setBindingLimit: ${bytes} bytes is not a size class of the buffer pool (use a power of two >= 256)`,
      );
    }
    this.forcedBindingLimit = bytes;
  }

  /** Why this context can no longer be used (disposed or device lost), or null while it can. */
  get deadReason(): string | null {
    if (this.destroyed) return 'its GPU context was disposed';
    return this.lostMessage;
  }

  /** Throws if the device was lost or a GPU error was reported since the last check. */
  checkHealthy(): void {
    if (this.destroyed) throw new SgtError('USE_AFTER_DISPOSE', 'GpuContext: used after dispose()');
    if (this.lostMessage) throw new SgtError('DEVICE_LOST', this.lostMessage);
    if (this.errors.length) {
      const roots = this.errors.filter((e) => !/due to a previous error/.test(e.message));
      const reported = roots.length ? roots : this.errors;
      this.errors = [];
      if (roots.length) this.rootErrorReported = true;
      const code: SgtErrorCode = reported.some((e) => e.outOfMemory) ? 'OUT_OF_MEMORY' : 'GPU_ERROR';
      throw new SgtError(code, `WebGPU error: ${reported.map((e) => e.message).join('\n')}`);
    }
  }

  /**
   * The {@link SgtError} for a tensor of this context that can no longer be used (`where` names the
   * op and the tensor), or null while it can: `DEVICE_LOST` after a device loss,
   * `USE_AFTER_DISPOSE` after {@link dispose}.
   */
  deadError(where: string): SgtError | null {
    if (this.destroyed) return new SgtError('USE_AFTER_DISPOSE', `${where} is unusable: its GPU context was disposed`);
    if (this.lostMessage) return new SgtError('DEVICE_LOST', `${where} is unusable: ${this.lostMessage}`);
    return null;
  }

  /** Number of dispatches recorded but not yet submitted. */
  get pending(): number {
    return this.pendingDispatches;
  }

  /** Grid-stride workgroup count for `items` work items handled `perGroup` at a time. */
  gridSize(items: number, perGroup: number): number {
    return Math.max(1, Math.min(this.maxGridWorkgroups, Math.ceil(items / perGroup)));
  }

  /** Records one compute dispatch into the open batch (nothing runs until {@link flush}). */
  dispatch(d: Dispatch): void {
    this.checkHealthy();
    const shader = this.shaderOverrides.get(d.shader) ?? d.shader;
    const pipe: CompiledPipeline = this.pipelines.get(shader, d.entryPoint, d.constants);
    const entries: GPUBindGroupEntry[] = [];
    const limit = this.bindingLimit;
    for (const slot of pipe.slots) {
      if (slot.kind === 'uniform') {
        if (!d.params) throw new SgtError('INTERNAL', `${d.label ?? d.entryPoint}: kernel needs params '${slot.name}'`);
        entries.push({ binding: slot.binding, resource: this.uniformSlice(d.params) });
      } else {
        const r = d.resources[slot.name];
        if (!r) throw new SgtError('INTERNAL', `${d.label ?? d.entryPoint}: no buffer bound to '${slot.name}'`);
        const binding = 'buffer' in r ? r : { buffer: r };
        const bytes = binding.size ?? binding.buffer.size - (binding.offset ?? 0);
        if (bytes > limit) {
          throw new SgtError(
            'LIMIT_EXCEEDED',
            `${d.label ?? d.entryPoint}: '${slot.name}' needs a binding of ${bytes} bytes, more than the storage binding limit (${limit} bytes)`,
          );
        }
        if (binding.buffer === this.checkBuffer) this.checksBound = true;
        entries.push({ binding: slot.binding, resource: binding });
      }
    }
    const bindGroup = this.device.createBindGroup({ layout: pipe.bindGroupLayout, entries });
    const [x, y = 1, z = 1] = d.workgroups;
    const maxDim = this.maxWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim) {
      throw new SgtError(
        'LIMIT_EXCEEDED',
        `${d.label ?? d.entryPoint}: dispatch [${x},${y},${z}] exceeds ${maxDim} workgroups per dimension`,
      );
    }
    const timestampWrites = this.timer?.next(d.entryPoint);
    if (timestampWrites) this.endPass();
    const pass = timestampWrites ? this.commandEncoder().beginComputePass({ timestampWrites }) : this.computePass();
    pass.setPipeline(pipe.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    if (timestampWrites) pass.end();
    this.pendingDispatches++;
    this.counters.dispatches++;
    if (this.countByKernel) this.counters.byKernel.set(d.entryPoint, (this.counters.byKernel.get(d.entryPoint) ?? 0) + 1);
  }

  /**
   * Profiling: from now on every dispatch runs in a compute pass of its own with timestamps, and
   * the GPU time is added up per kernel entry point (needs the `timestamp-query` feature; throws
   * `UNSUPPORTED` without it). {@link stopKernelTimer} returns the totals.
   */
  startKernelTimer(): void {
    if (!this.features.has('timestamp-query')) throw new SgtError('UNSUPPORTED', 'startKernelTimer: the adapter has no timestamp-query');
    this.flush();
    this.timer ??= new KernelTimer(this.device);
  }

  /** Ends {@link startKernelTimer}'s profiling: the GPU ms and dispatch count per entry point. */
  async stopKernelTimer(): Promise<Map<string, { count: number; ms: number }>> {
    const timer = this.timer;
    if (!timer) return new Map();
    this.flush();
    this.timer = null;
    await timer.settle();
    timer.destroy();
    return timer.totals;
  }

  /** Zeroes {@link counters}. */
  resetCounters(): void {
    Object.assign(this.counters, { dispatches: 0, copies: 0, submits: 0, readbacks: 0 });
    this.counters.byKernel.clear();
  }

  /**
   * Runs `fn` with every dispatch of the WGSL module `original` compiled from `replacement`
   * instead: the library's own ops and their backward passes, with an edited kernel family (the
   * playground's "run edited WGSL"). Resolves with what `fn` returns (or resolves to); the override
   * ends when `fn` has settled. `replacement` is composed like any kernel source (its `#include`
   * lines resolved) and its bindings are read at run time ({@link prepareShader} is awaited first).
   */
  async withShaderSource<R>(original: string, replacement: string, fn: () => R | Promise<R>): Promise<R> {
    await this.prepareShader(replacement);
    if (this.shaderOverrides.has(original)) throw new SgtError('INVALID_STATE', 'withShaderSource: this shader is already overridden');
    this.shaderOverrides.set(original, replacement);
    try {
      return await fn();
    } finally {
      this.shaderOverrides.delete(original);
    }
  }

  /**
   * Makes WGSL the package does not ship usable by {@link dispatch}: loads, once, the WGSL parser
   * (wgsl_reflect, a chunk of its own) that reads the bindings of such WGSL. The shipped kernels
   * need no call: their layouts were read when the package was built, and an app that only uses
   * them never downloads the parser.
   */
  async prepareShader(source: string): Promise<void> {
    await this.pipelines.prepare(source);
  }

  /** Records a buffer-to-buffer copy into the open batch. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.checkHealthy();
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.pendingDispatches++;
    this.counters.copies++;
  }

  /**
   * Writes host data into a buffer. Any recorded work is submitted first, because
   * `queue.writeBuffer` runs before commands that are still unsubmitted and the buffer may be a
   * pooled one those commands still read.
   */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.checkHealthy();
    if (this.pendingDispatches > 0) this.flush();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(buffer, byteOffset, padded);
  }

  /** Submits every recorded dispatch as one command buffer. */
  flush(): void {
    this.checkHealthy();
    if (!this.encoder) return;
    this.endPass();
    const afterTimedSubmit = this.timer?.beforeSubmit(this.encoder);
    const commands = this.encoder.finish();
    this.encoder = null;
    const chunksUsed = Math.ceil(this.arenaUsed / ARENA_CHUNK);
    for (let i = 0; i < chunksUsed; i++) {
      const used = Math.min(ARENA_CHUNK, this.arenaUsed - i * ARENA_CHUNK);
      this.device.queue.writeBuffer(this.arenaChunks[i], 0, this.arenaCpu[i], 0, used);
    }
    this.device.queue.submit([commands]);
    this.counters.submits++;
    afterTimedSubmit?.();
    this.arenaUsed = 0;
    this.pendingDispatches = 0;
    const after = this.afterSubmit;
    this.afterSubmit = [];
    for (const f of after) f();
  }

  /**
   * @internal A check that kernels make on GPU data the host cannot see before the work runs (an
   * id outside the table, a sigma <= 0). Returns the buffer of u32 counters to bind (as `checks`)
   * and the check's slot, registered on first use with `describe`. A kernel adds 1 to
   * `checks[2 * slot]` per bad value and may keep a detail in `checks[2 * slot + 1]` (atomicMax).
   * The next {@link read} after a dispatch that bound the counters reads them with its data, and
   * when a check fired, clears them and throws `describe(count, detail)` instead of returning.
   */
  dataCheck(key: string, describe: (count: number, detail: number) => string): { buffer: GPUBuffer; slot: number } {
    let check = this.dataChecks.get(key);
    if (!check) {
      if (this.dataChecks.size === CHECK_SLOTS) throw new SgtError('INTERNAL', `dataCheck: more than ${CHECK_SLOTS} kinds of check`);
      check = { slot: this.dataChecks.size, describe };
      this.dataChecks.set(key, check);
    }
    // WebGPU zero-initialises a new buffer: no check has fired.
    this.checkBuffer ??= this.device.createBuffer({
      size: CHECK_SLOTS * 8,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: 'data checks',
    });
    return { buffer: this.checkBuffer, slot: check.slot };
  }

  /** Throws the message of every data check that fired (see {@link dataCheck}), after clearing the counters. */
  private reportDataChecks(counters: Uint32Array): void {
    const fired = [...this.dataChecks.values()].filter((c) => counters[2 * c.slot] > 0);
    if (!fired.length) return;
    this.write(this.checkBuffer!, new Uint32Array(CHECK_SLOTS * 2));
    throw new SgtError('INVALID_ARGUMENT', fired.map((c) => c.describe(counters[2 * c.slot], counters[2 * c.slot + 1])).join('\n'));
  }

  /**
   * Reads several buffer ranges back with one staging buffer and one `mapAsync`.
   * Flushes the batch first; throws if the device reported an error meanwhile, or if a check of
   * GPU data fired in the work it waited for (see {@link dataCheck}).
   */
  async read(requested: { buffer: GPUBuffer; offset?: number; bytes: number }[]): Promise<ArrayBuffer[]> {
    this.checkHealthy();
    const checks = this.checksBound ? this.checkBuffer : null;
    this.checksBound = false;
    const ranges = checks ? [...requested, { buffer: checks, bytes: CHECK_SLOTS * 8 }] : requested;
    const sizes = ranges.map((r) => alignUp(Math.max(r.bytes, 4), 4));
    const total = sizes.reduce((a, b) => a + b, 0);
    const staging = this.device.createBuffer({ size: total, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.counters.readbacks++;
    this.endPass();
    let at = 0;
    ranges.forEach((r, i) => {
      this.commandEncoder().copyBufferToBuffer(r.buffer, r.offset ?? 0, staging, at, sizes[i]);
      at += sizes[i];
    });
    this.pendingDispatches++;
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      this.checkHealthy();
      // A lost device rejects the map, and its `lost` promise may settle just after: wait one
      // task for it so that the error says DEVICE_LOST rather than a bare readback failure.
      await Promise.race([this.device.lost, new Promise((done) => setTimeout(done, 0))]);
      this.checkHealthy();
      throw new SgtError('GPU_ERROR', `readback failed: ${(e as Error).message}`);
    }
    const mapped = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.checkHealthy();
    const out: ArrayBuffer[] = [];
    at = 0;
    ranges.forEach((r, i) => {
      out.push(mapped.slice(at, at + r.bytes));
      at += sizes[i];
    });
    if (checks) this.reportDataChecks(new Uint32Array(out.pop()!));
    return out;
  }

  /** Waits until the GPU has finished all submitted work, then reports any GPU error. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.checkHealthy();
  }

  /** Destroys `buffer` once the commands that may use it are submitted. */
  destroyLater(buffer: GPUBuffer): void {
    if (this.encoder) this.afterSubmit.push(() => buffer.destroy());
    else buffer.destroy();
  }

  /** Frees every pooled buffer and destroys the device. Tensors of this context become unusable. */
  dispose(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.encoder = null;
    this.pass = null;
    this.pool.clear();
    for (const b of this.arenaChunks) b.destroy();
    this.checkBuffer?.destroy();
    this.device.destroy();
    if (current === this) current = null;
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Places `params` in this batch's uniform arena; uploaded in one write per chunk at flush. */
  private uniformSlice(params: ArrayBuffer | ArrayBufferView): GPUBufferBinding {
    const bytes = ArrayBuffer.isView(params) ? new Uint8Array(params.buffer, params.byteOffset, params.byteLength) : new Uint8Array(params);
    const size = alignUp(Math.max(bytes.byteLength, 16), UNIFORM_SLOT);
    if (size > ARENA_CHUNK) throw new SgtError('INTERNAL', 'kernel params larger than 64 KiB');
    let chunk = Math.floor(this.arenaUsed / ARENA_CHUNK);
    let offset = this.arenaUsed % ARENA_CHUNK;
    if (offset + size > ARENA_CHUNK) {
      chunk++;
      offset = 0;
    }
    while (this.arenaChunks.length <= chunk) {
      this.arenaChunks.push(this.device.createBuffer({ size: ARENA_CHUNK, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }));
      this.arenaCpu.push(new Uint8Array(ARENA_CHUNK));
    }
    this.arenaCpu[chunk].set(bytes, offset);
    this.arenaUsed = chunk * ARENA_CHUNK + offset + size;
    return { buffer: this.arenaChunks[chunk], offset, size: alignUp(bytes.byteLength, 16) };
  }
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function padTo4(bytes: Uint8Array): Uint8Array {
  const p = new Uint8Array(alignUp(bytes.byteLength, 4));
  p.set(bytes);
  return p;
}

let current: GpuContext | null = null;
let pendingInit: Promise<GpuContext> | null = null;

/** What an {@link onDeviceLost} listener receives. */
export interface DeviceLostEvent {
  /** The context whose device was lost: its tensors now fail with `DEVICE_LOST`. */
  context: GpuContext;
  /** WebGPU's reason (`'destroyed'` or `'unknown'`). */
  reason: string;
  /** The message its operations now fail with. */
  message: string;
}

/** What an {@link onDeviceRestored} listener receives. */
export interface DeviceRestoredEvent {
  /** The fresh context {@link init} made. */
  context: GpuContext;
  /** The lost context it replaces. */
  previous: GpuContext;
}

const lostListeners = new Set<(event: DeviceLostEvent) => void>();
const restoredListeners = new Set<(event: DeviceRestoredEvent) => void>();

function emit<E>(listeners: Set<(event: E) => void>, event: E): void {
  for (const listener of [...listeners]) {
    try {
      listener(event);
    } catch (e) {
      // A listener's failure must not stop the others or the toolkit's own handling.
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}

/**
 * Calls `listener` when the device of a context is lost (the browser took the GPU away, a driver
 * reset, `device.destroy()`); not for a deliberate {@link GpuContext.dispose}. Every tensor of that
 * context then fails with an {@link SgtError} of code `DEVICE_LOST`; call {@link init} for a fresh
 * context and rebuild what lived on the old one. Returns a function that removes the listener.
 */
export function onDeviceLost(listener: (event: DeviceLostEvent) => void): () => void {
  lostListeners.add(listener);
  return () => lostListeners.delete(listener);
}

/** Calls `listener` when {@link init} replaces a lost context with a fresh one. Returns a function that removes it. */
export function onDeviceRestored(listener: (event: DeviceRestoredEvent) => void): () => void {
  restoredListeners.add(listener);
  return () => restoredListeners.delete(listener);
}

/** The context made by {@link init}; throws if there is none. */
export function getContext(): GpuContext {
  if (!current) throw new SgtError('INVALID_STATE', 'No GPU context: call `await init()` first');
  return current;
}

/** Whether {@link init} has produced a live context. */
export function hasContext(): boolean {
  return current !== null;
}

async function findGpu(options: InitOptions): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const g = globalThis as { process?: { versions?: { node?: string } }; __sgtDawnGpu?: GPU };
  if (!g.process?.versions?.node) {
    throw new SgtError('UNSUPPORTED', `WebGPU is not available in this browser (navigator.gpu is missing). ${NO_ADAPTER_HELP}`);
  }
  if (!g.__sgtDawnGpu) {
    // A variable module name keeps bundlers from pulling the native Dawn addon into browser builds.
    const moduleName = 'webgpu';
    let dawn: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
    try {
      dawn = await import(/* @vite-ignore */ moduleName);
    } catch (e) {
      throw new SgtError('UNSUPPORTED', `WebGPU in Node needs the 'webgpu' package (Dawn): npm install webgpu (${(e as Error).message})`);
    }
    Object.assign(globalThis, dawn.globals);
    // Dawn's GPU object must stay reachable for the life of the process, or the process crashes.
    g.__sgtDawnGpu = dawn.create(options.dawnFlags ?? []);
  }
  return g.__sgtDawnGpu;
}

const WANTED_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'];
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

/**
 * Creates (once) and returns the WebGPU context used by every tensor and op: `navigator.gpu` in a
 * page or Web Worker, Dawn (the `webgpu` npm package) in Node. Requests the adapter's real limits
 * and the optional features `shader-f16`, `subgroups` and `timestamp-query` when present.
 * Throws a message that says how to get an adapter when there is none.
 *
 * Once the device of the current context is lost, `init()` makes a fresh context (a new adapter
 * and device) and tells the {@link onDeviceRestored} listeners; tensors, models and trainers of the
 * lost one keep failing with `DEVICE_LOST` and must be rebuilt.
 */
export async function init(options: InitOptions = {}): Promise<GpuContext> {
  if (current && current.deadReason === null) return current;
  if (pendingInit) return pendingInit;
  const previous = current;
  pendingInit = (async () => {
    const gpu = await findGpu(options);
    const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
    if (!adapter) throw new SgtError('UNSUPPORTED', NO_ADAPTER_HELP);
    const features = new Set(WANTED_FEATURES.filter((f) => adapter.features.has(f)));
    const requiredLimits: Record<string, number> = {};
    for (const k of WANTED_LIMITS) requiredLimits[k] = adapter.limits[k];
    const device = await adapter.requestDevice({
      requiredFeatures: [...features] as GPUFeatureName[],
      requiredLimits,
    });
    const fresh = new GpuContext(adapter, device, features, options);
    current = fresh;
    if (previous) {
      previous.pool.clear();
      emit(restoredListeners, { context: fresh, previous });
    }
    return fresh;
  })();
  try {
    return await pendingInit;
  } finally {
    pendingInit = null;
  }
}
