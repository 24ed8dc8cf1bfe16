/**
 * Small writes copied into shared batch buffers and handed to the engine together: per-write
 * native overhead made 1 KiB writes 0.41× as fast as net.Socket before batching. The copy
 * makes the caller's buffer reusable at once, so small writes may also be acknowledged early.
 * @module
 */
import type { WriteResult } from './socket'

/**
 * Sizes of one batch buffer. A socket starts at the smaller; a writer that fills a batch gets
 * the next one twice as large, up to the larger, and a turn that filled none and ends with its
 * batch at most a quarter full halves it again (so a steady writer keeps one size and reuses
 * its buffers). One `send(2)` of 512 KiB costs the kernel less per byte than four of 128 KiB on
 * loopback: 1 KiB writes 1.6× net.Socket's rate against 1.2–1.4× (docs/benchmarks.md), while a
 * socket that writes little keeps small buffers.
 */
const BATCH_MIN = 128 * 1024
const BATCH_MAX = 512 * 1024
/** Most bytes of settled batch buffers a socket keeps for reuse (16 of the smallest). */
const FREE_MAX = 2 * 1024 * 1024
/**
 * Bytes of copied small writes that may be acknowledged before they are sent, while no larger
 * write is pending ahead of them: their promise resolves at once, as net.Socket's callback does
 * once data is buffered (an awaited 4 KiB write took ~100 µs through the engine round trip
 * against ~7 µs for net.Socket). Past this, small writes wait for their batch again
 * (backpressure). A later failure of those bytes is reported by the next write and `end()`.
 */
const EARLY_LIMIT = 1 << 20

interface Member {
  resolve(result: WriteResult): void
  reject(err: unknown): void
  bytes: number
}

interface Batch {
  buf: Buffer
  used: number
  /** Of `used`, bytes already acknowledged. */
  early: number
  members: Member[]
}

/** How a flushed batch is sent; `settled` must be called once, when the kernel released it. */
export type SendBatch = (data: Uint8Array, settled: { resolve(r: WriteResult): void; reject(e: unknown): void }) => void

/** One socket's batcher. */
export class WriteBatcher {
  #batch: Batch | null = null
  #scheduled = false
  /**
   * Batch buffers whose sends settled, for reuse: a fresh 128 KiB buffer per batch made V8
   * collect external memory often enough to stall the event loop for tens of milliseconds.
   */
  #free: Buffer[] = []
  /** Size of the next batch buffer, from {@link BATCH_MIN} to {@link BATCH_MAX}. */
  #size = BATCH_MIN
  /** A batch filled up during this turn (then the turn's end does not shrink the size). */
  #filled = false
  /** Copied bytes acknowledged to callers but not yet settled. */
  #early = 0
  readonly #send: SendBatch
  /** The last early acknowledgement, reused for the next write of the same size. */
  #acked: { bytes: number; promise: Promise<WriteResult> } | null = null

  constructor(send: SendBatch) {
    this.#send = send
  }

  /**
   * Copies `data` into the current batch (starting one, and its flush on the next turn).
   * Resolves at once when `mayAckEarly` and fewer than 1 MiB of early-acknowledged copies
   * wait; otherwise when the batch settles.
   */
  add(data: Uint8Array, mayAckEarly: boolean): Promise<WriteResult> {
    const bytes = data.byteLength
    if (this.#batch !== null && this.#batch.used + bytes > this.#batch.buf.length) {
      this.#filled = true
      if (this.#size < BATCH_MAX) this.#resize(this.#size * 2)
      this.flush()
    }
    if (this.#batch === null) {
      this.#batch = { buf: this.#free.pop() ?? Buffer.allocUnsafe(this.#size), used: 0, early: 0, members: [] }
      if (!this.#scheduled) {
        this.#scheduled = true
        setImmediate(() => {
          this.#scheduled = false
          const shrink = !this.#filled && this.#batch !== null && this.#size > BATCH_MIN && this.#batch.used <= this.#size / 4
          this.#filled = false
          if (shrink) this.#resize(this.#size / 2)
          this.flush()
        })
      }
    }
    const batch = this.#batch
    batch.buf.set(data, batch.used)
    batch.used += bytes
    if (mayAckEarly && this.#early + bytes <= EARLY_LIMIT) {
      this.#early += bytes
      batch.early += bytes
      if (this.#acked?.bytes !== bytes) this.#acked = { bytes, promise: Promise.resolve(Object.freeze({ bytes, zeroCopy: false, copied: false })) }
      return this.#acked.promise
    }
    return new Promise<WriteResult>((resolve, reject) => batch.members.push({ resolve, reject, bytes }))
  }

  /** Sets the size of later batch buffers; free buffers of another size are let go. */
  #resize(size: number): void {
    this.#size = size
    this.#free.length = 0
  }

  /** Bytes of settled batch buffers kept for reuse (at most {@link FREE_MAX}). */
  get freeBytes(): number {
    return this.#free.length * this.#size
  }

  /** No batch is open: nothing copied waits to be sent. */
  get empty(): boolean {
    return this.#batch === null
  }

  /** Hands the current batch to `send` as one write; its members settle with it. */
  flush(): void {
    const batch = this.#batch
    if (batch === null) return
    this.#batch = null
    // Settled means the kernel released the buffer: it may be reused for a later batch.
    const recycle = (): void => {
      this.#early -= batch.early
      if ((this.#free.length + 1) * this.#size <= FREE_MAX && batch.buf.length === this.#size) this.#free.push(batch.buf)
    }
    this.#send(batch.buf.subarray(0, batch.used), {
      resolve: (r) => {
        recycle()
        for (const m of batch.members) m.resolve({ bytes: m.bytes, zeroCopy: r.zeroCopy, copied: r.copied })
      },
      reject: (e) => {
        recycle()
        for (const m of batch.members) m.reject(e)
      },
    })
  }

  /** Drops the batch not yet flushed (destroy): its waiting members reject. Returns its bytes. */
  discard(err: unknown): number {
    const batch = this.#batch
    this.#batch = null
    if (batch === null) return 0
    this.#early -= batch.early
    for (const m of batch.members) m.reject(err)
    return batch.used
  }
}
