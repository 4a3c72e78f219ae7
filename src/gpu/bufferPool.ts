/**
 * Storage buffers recycled by size class. Freed buffers are kept (up to a byte budget) and handed
 * out again, so a training step allocates nothing after its first run. `live` counts buffers that
 * are handed out and not yet released: a step that frees what it makes leaves it unchanged.
 */
import { SgtError } from './errors';

/** Rounds a byte size up to its size class: multiples of 256 B below 64 KiB, then powers of 2^(1/4). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 65536) return Math.ceil(b / 256) * 256;
  const step = 2 ** (Math.floor(Math.log2(b)) - 2);
  return Math.ceil(b / step) * step;
}

/** The pool of storage buffers of one device (see the file comment). */
export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private pooledBytes = 0;
  private liveCount = 0;
  private liveBytesTotal = 0;
  private peakBytes = 0;
  private peakHeld = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxPooledBytes: number,
    private readonly destroy: (b: GPUBuffer) => void,
  ) {}

  /** Buffers handed out and not yet released. */
  get live(): number {
    return this.liveCount;
  }

  /** Bytes of buffers handed out and not yet released. */
  get liveBytes(): number {
    return this.liveBytesTotal;
  }

  /** Most bytes handed out at once since the pool was made or {@link resetPeak} was called. */
  get peakLiveBytes(): number {
    return this.peakBytes;
  }

  /**
   * Bytes of every buffer the pool holds: handed out, or freed and kept for reuse (up to its
   * `maxPooledBytes`). The GPU memory the pool occupies, which {@link liveBytes} understates.
   */
  get heldBytes(): number {
    return this.liveBytesTotal + this.pooledBytes;
  }

  /** Most {@link heldBytes} at once since the pool was made or {@link resetPeak} was called. */
  get peakHeldBytes(): number {
    return this.peakHeld;
  }

  /** Starts new peak measurements ({@link peakLiveBytes}, {@link peakHeldBytes}) from the current bytes. */
  resetPeak(): void {
    this.peakBytes = this.liveBytesTotal;
    this.peakHeld = this.heldBytes;
  }

  /** A storage buffer of at least `bytes` bytes (usable as copy source and destination). */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const max = this.device.limits.maxBufferSize;
    if (size > max && bytes <= max) return this.track(this.create(bytes));
    if (bytes > max) {
      throw new SgtError('LIMIT_EXCEEDED', `buffer of ${bytes} bytes exceeds the device's maxBufferSize (${max})`);
    }
    const list = this.free.get(size);
    const reused = list?.pop();
    if (reused) {
      this.pooledBytes -= size;
      return this.track(reused);
    }
    return this.track(this.create(size));
  }

  /**
   * A storage buffer of exactly `bytes` bytes (rounded up to 4), bypassing the size classes: for
   * long-lived tensors such as model weights, whose memory should be their bytes and no more.
   * Released, it is destroyed rather than pooled (unless its size happens to be a size class).
   */
  acquireExact(bytes: number): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const max = this.device.limits.maxBufferSize;
    if (size > max) throw new SgtError('LIMIT_EXCEEDED', `buffer of ${bytes} bytes exceeds the device's maxBufferSize (${max})`);
    return this.track(this.create(size));
  }

  /** Returns a buffer for reuse (or destroys it when the pool is full). */
  release(buffer: GPUBuffer): void {
    this.liveCount--;
    this.liveBytesTotal -= buffer.size;
    const size = buffer.size;
    if (this.pooledBytes + size > this.maxPooledBytes || sizeClass(size) !== size) {
      this.destroy(buffer);
      return;
    }
    let list = this.free.get(size);
    if (!list) {
      list = [];
      this.free.set(size, list);
    }
    list.push(buffer);
    this.pooledBytes += size;
  }

  /** Destroys every pooled (free) buffer. */
  clear(): void {
    for (const list of this.free.values()) for (const b of list) this.destroy(b);
    this.free.clear();
    this.pooledBytes = 0;
  }

  private create(size: number): GPUBuffer {
    return this.device.createBuffer({
      size,
      // GPUBufferUsage is read here, not at import: in Node it exists only once Dawn is loaded.
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  private track(b: GPUBuffer): GPUBuffer {
    this.liveCount++;
    this.liveBytesTotal += b.size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytesTotal);
    this.peakHeld = Math.max(this.peakHeld, this.heldBytes);
    return b;
  }
}
