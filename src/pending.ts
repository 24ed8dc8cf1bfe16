/**
 * The operations a `ZeroCopySocket` has issued and not yet settled, by id, with the counters
 * that depend on them: bytes in flight, and how many are callers' own (not batches).
 * @module
 */
import type { WriteResult } from './socket'

/** One issued write, batch or file send, until it settles. */
export interface Pending {
  resolve(result: WriteResult): void
  reject(err: unknown): void
  bytes: number
  aborted: boolean
  signal?: AbortSignal
  onAbort?: () => void
  /** For file sends: progress callback, and the syscall name errors carry. */
  onProgress?: (sent: number, total: number) => void
  syscall: string
  /** A batch of small writes, not a caller's write or file. */
  batch?: boolean
}

/** The registry; `settle` is the only way out, so the counters and idle waiters stay in step. */
export class PendingOps {
  #ops = new Map<number, Pending>()
  #nextId = 1
  #idleWaiters: (() => void)[] = []
  /**
   * Bytes of writes not settled yet (the kernel may hold them): added when a write is queued
   * (a small write when it is copied into a batch), taken off by {@link settle}.
   */
  inFlightBytes = 0
  /** Callers' writes and files pending (not batches): early acknowledgements wait behind them. */
  large = 0
  /**
   * Of the entries, copy writes waiting in JS (src/socket.ts `#waiting`), not issued to the
   * transport; the others are issued: the transport may still send bytes of them.
   */
  waiting = 0
  /** Called (by {@link settle}) when the last issued entry settled while some are waiting. */
  onIssuedIdle: (() => void) | null = null

  /** A fresh id, in issue order. */
  nextId(): number {
    return this.#nextId++
  }

  get size(): number {
    return this.#ops.size
  }

  add(id: number, p: Pending): void {
    this.#ops.set(id, p)
    if (!p.batch) this.large++
  }

  get(id: number): Pending | undefined {
    return this.#ops.get(id)
  }

  ids(): number[] {
    return [...this.#ops.keys()]
  }

  /** Removes `id` (if still pending), updates the counters, then runs `how` on it. */
  settle(id: number, how: (p: Pending) => void): void {
    const p = this.#ops.get(id)
    if (p === undefined) return
    this.#ops.delete(id)
    if (!p.batch) this.large--
    this.inFlightBytes -= p.bytes
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort)
    how(p)
    if (this.waiting > 0 && this.#ops.size === this.waiting) this.onIssuedIdle?.()
    if (this.#ops.size === 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  /** Settles once nothing is pending: every wake-up comes from the `settle` that emptied the map. */
  idle(): Promise<void> {
    if (this.#ops.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }
}
