/**
 * `BufferPool`: Buffers whose memory is registered with the ring, so zero-copy writes of them
 * skip per-send page pinning (`IORING_RECVSEND_FIXED_BUF`).
 * @module
 */
import { binding } from './native'
import { engineAvailable } from './engine'
import { codedError, invalidArgValue } from './errors'
import { validateInteger, validateOptions } from './validate'

/** Options for {@link BufferPool}. */
export interface BufferPoolOptions {
  /** Bytes per buffer. **Default:** `65536`. */
  size?: number | undefined
  /** Number of buffers. **Default:** `64`. */
  count?: number | undefined
}

interface Slot {
  pool: BufferPool
  index: number
  /** Writes of this buffer that have not settled (the kernel may still read it). */
  inFlight: number
  /** Handed out by `acquire()` and not yet released. */
  acquired: boolean
}

/** Slots by the buffer's memory (its ArrayBuffer), so subarrays are recognised too. */
const slots = new WeakMap<ArrayBufferLike, Slot>()

/** Called by the socket when a write of `data` starts; returns a function to call when it settles. */
export function trackWrite(data: Uint8Array): (() => void) | undefined {
  const slot = slots.get(data.buffer)
  if (slot === undefined) return undefined
  slot.inFlight++
  return () => {
    slot.inFlight--
    slot.pool._maybeFree(slot)
  }
}

/**
 * A fixed set of equally sized Buffers in one block of memory registered with the io_uring
 * (when this process allows it), for writes that should not pin pages on every send.
 * `acquire()` hands out a free buffer; `release()` gives it back. A buffer is never handed out
 * again while a write of it is still in the kernel: a release during a write takes effect when
 * the write settles. Where registration is impossible (no io_uring, RLIMIT_MEMLOCK too low) the
 * pool still works with ordinary memory and {@link BufferPool.reason} says why.
 *
 * @example
 * ```ts
 * const pool = new BufferPool({ size: 256 * 1024, count: 16 })
 * const buf = pool.acquire()
 * const n = await file.read(buf, 0, buf.length)
 * await zs.write(buf.subarray(0, n.bytesRead))
 * pool.release(buf)
 * ```
 */
export class BufferPool {
  /** Bytes per buffer. */
  readonly size: number
  /** Number of buffers. */
  readonly count: number
  #native: binding.BindingPool
  #buffers: Buffer[]
  #free: number[]

  /**
   * @param options - `size` (bytes per buffer) and `count`.
   * @throws `RangeError` `ERR_OUT_OF_RANGE` for sizes or counts out of range; `ENOMEM` when the
   *   memory cannot be allocated.
   */
  constructor(options?: BufferPoolOptions) {
    validateOptions(options, 'options')
    const size = options?.size ?? 65536
    const count = options?.count ?? 64
    validateInteger(size, 'options.size', 1, 1 << 30)
    validateInteger(count, 'options.count', 1, 65536)
    if (size * count > 2 ** 31) throw invalidArgValue('options', 'must describe at most 2 GiB (size × count)', size * count)
    engineAvailable() // registration needs the engine's ring
    this.size = size
    this.count = count
    this.#native = new binding.BindingPool(size, count)
    this.#buffers = Array.from({ length: count }, (_, i) => this.#native.buffer(i))
    this.#free = Array.from({ length: count }, (_, i) => count - 1 - i)
    this.#buffers.forEach((buf, index) => slots.set(buf.buffer, { pool: this, index, inFlight: 0, acquired: false }))
  }

  /** `true` when the memory is registered with the ring (fixed-buffer zero-copy sends). */
  get registered(): boolean {
    return this.#native.registered
  }

  /** Why the memory is not registered, or `null` when it is. */
  get reason(): string | null {
    return this.#native.reason ?? null
  }

  /** Buffers free to acquire now. */
  get available(): number {
    return this.#free.length
  }

  /**
   * Takes a free buffer (`size` bytes, contents left from earlier use).
   * @returns The buffer.
   * @throws `ERR_ZC_POOL_EXHAUSTED` when every buffer is acquired or still in flight.
   */
  acquire(): Buffer {
    const index = this.#free.pop()
    if (index === undefined) {
      throw codedError('ERR_ZC_POOL_EXHAUSTED', `all ${this.count} buffers are in use`)
    }
    const buf = this.#buffers[index]
    slots.get(buf.buffer)!.acquired = true
    return buf
  }

  /**
   * Gives `buf` (or a subarray of it) back. If a write of it is still in flight, it becomes
   * free once that write settles. Releasing twice is a no-op.
   * @param buf - A buffer from {@link acquire}.
   * @throws `TypeError` `ERR_INVALID_ARG_VALUE` for a buffer of another pool or none.
   */
  release(buf: Uint8Array): void {
    const slot = buf instanceof Uint8Array ? slots.get(buf.buffer) : undefined
    if (slot === undefined || slot.pool !== this) throw invalidArgValue('buf', 'must be a buffer of this pool', buf)
    if (!slot.acquired) return
    slot.acquired = false
    this._maybeFree(slot)
  }

  /** @internal Returns `slot` to the free list once it is released and no write holds it. */
  _maybeFree(slot: Slot): void {
    if (!slot.acquired && slot.inFlight === 0 && !this.#free.includes(slot.index)) this.#free.push(slot.index)
  }
}
