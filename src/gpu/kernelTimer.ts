/**
 * Per-kernel GPU time from timestamp queries (the `timestamp-query` feature), for profiling only:
 * while a {@link GpuContext} has a timer, each dispatch runs in a compute pass of its own whose
 * beginning and end are timestamped, and the times are added up per entry point once the GPU has
 * run them. One pass per dispatch costs a little, so the totals are for comparing kernels with
 * each other, not for timing a step.
 */

/** Dispatches timed per submitted batch; later ones in the same batch run untimed (and are counted). */
const CAPACITY = 2048;

/** The time spent in one kernel (entry point) over the profiled work. */
export interface KernelTime {
  /** Dispatches timed. */
  count: number;
  /** Their total GPU time in ms. */
  ms: number;
}

/** @internal Collects timestamp pairs per dispatch; made by `GpuContext.startKernelTimer`. */
export class KernelTimer {
  /** ms and dispatch count per entry point, filled as readbacks complete (await {@link settle}). */
  readonly totals = new Map<string, KernelTime>();
  /** Dispatches that found the batch's query set full. */
  untimed = 0;
  private readonly querySet: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  private labels: string[] = [];
  private reads: Promise<void>[] = [];

  constructor(private readonly device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * CAPACITY });
    this.resolved = device.createBuffer({ size: 16 * CAPACITY, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** The timestamp writes of the next dispatch's pass, or undefined when this batch's set is full. */
  next(label: string): GPUComputePassTimestampWrites | undefined {
    if (this.labels.length === CAPACITY) {
      this.untimed++;
      return undefined;
    }
    const i = this.labels.push(label) - 1;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Records the resolve of this batch's timestamps into `encoder`; returns the callback to run after its submit. */
  beforeSubmit(encoder: GPUCommandEncoder): (() => void) | null {
    const labels = this.labels;
    if (!labels.length) return null;
    this.labels = [];
    const bytes = 16 * labels.length;
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, 2 * labels.length, this.resolved, 0);
    encoder.copyBufferToBuffer(this.resolved, 0, staging, 0, bytes);
    return () => {
      this.reads.push(
        staging.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigUint64Array(staging.getMappedRange());
          labels.forEach((label, i) => {
            const entry = this.totals.get(label) ?? { count: 0, ms: 0 };
            entry.count++;
            entry.ms += Number(t[2 * i + 1] - t[2 * i]) / 1e6;
            this.totals.set(label, entry);
          });
          staging.unmap();
          staging.destroy();
        }),
      );
    };
  }

  /** Waits for every submitted batch's times. */
  async settle(): Promise<void> {
    const reads = this.reads;
    this.reads = [];
    await Promise.all(reads);
  }

  /** Frees the query set and the resolve buffer. */
  destroy(): void {
    this.querySet.destroy();
    this.resolved.destroy();
  }
}
