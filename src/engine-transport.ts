/**
 * The engine transport: one socket's sends through this thread's io_uring engine. It issues
 * writes, file sends, `end`, aborts and the final close or detach to the binding, and turns
 * the engine's events back into settled pending operations. Every call that makes the engine
 * owe an event takes one `keepAlive(+1)`, and the handler of that event gives it back, here and
 * nowhere else (a ref'd interval would otherwise leak, or the loop exit under a pending write).
 * @module
 */
import { constants } from 'node:os'

import { keepAlive, register } from './engine'
import { abortError, codedError, errnoError, normalizeBindingError, type ZeroCopyError } from './errors'
import { fileShrankError, type PreparedFile } from './file'
import { binding } from './native'
import type { BindingStats } from '../binding.js'
import type { PendingOps } from './pending'
import type { ZeroCopyMode } from './socket'

const libcECANCELED = constants.errno.ECANCELED
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]))

/** The error for an engine result `errno` (positive): an errno name, or one of the engine's own. */
function engineError(errno: number, syscall: string): ZeroCopyError {
  if (errno === binding.ERRNO_FILE_SHRANK) return fileShrankError()
  if (errno === binding.ERRNO_ENGINE_FAILED) {
    return codedError(
      'ERR_ZC_ENGINE_FAILED',
      `This thread's io_uring send engine failed (io_uring_enter ${binding.engineFailure() ?? 'failed'}); later sockets use plain sends`,
    )
  }
  return errnoError(ERRNO_NAMES.get(errno) ?? 'EIO', syscall)
}

/** What the transport needs of its socket. */
export interface EngineHooks {
  /** The socket's first error, or `null`. */
  error(): Error | null
  /** Records `err` as the socket's error unless it has one. */
  fail(err: Error): void
  /** The error for operations of a destroyed socket. */
  destroyedError(): Error
  /** Tears the socket down (the connection is unusable). */
  destroy(): void
  /** The engine made progress: activity for the socket's idle timer. */
  touch(): void
}

/** One socket's engine connection. */
export class EngineTransport {
  readonly #native: binding.BindingSocket
  readonly #pending: PendingOps
  readonly #hooks: EngineHooks
  #endedWaiter: { resolve(): void; reject(e: unknown): void } | null = null
  /** The engine was asked to close or detach; `#closed` settles on its `closed` event. */
  #closeSent = false
  /** The engine reported `closed`: it holds nothing of this socket any more. */
  #gone = false
  #closed: { promise: Promise<void>; resolve(): void } | null = null

  /** Opens the engine connection on `fd`; throws the binding's error when the engine refuses it. */
  constructor(fd: number, mode: ZeroCopyMode, threshold: number, chunk: number, pending: PendingOps, hooks: EngineHooks) {
    this.#native = new binding.BindingSocket(fd, mode, threshold, chunk)
    this.#pending = pending
    this.#hooks = hooks
    register(this.#native.id, {
      done: (id, value, flags) => this.#done(id, value, flags),
      progress: (id, sent) => {
        hooks.touch()
        const p = pending.get(id)
        p?.onProgress?.(sent, p.bytes)
      },
      ended: (errno) => {
        keepAlive(-1)
        this.#ended(errno)
      },
      closed: () => this.#onClosed(),
    })
  }

  /** The engine's counters of this socket. */
  get stats(): BindingStats {
    return this.#native.stats
  }

  /** `auto` found that the kernel copies zero-copy sends on this route anyway. */
  get copiesAnyway(): boolean {
    return this.#native.copiesAnyway
  }

  write(id: number, data: Uint8Array): void {
    keepAlive(1)
    this.#native.write(id, data)
  }

  /** Queues the file range; the engine works on its own duplicate, so `file` may be closed after. */
  sendFile(id: number, file: PreparedFile): void {
    try {
      keepAlive(1)
      this.#native.sendFile(id, file.fd, file.offset, file.length)
    } catch (e) {
      keepAlive(-1)
      this.#pending.settle(id, (p) => p.reject(normalizeBindingError(e)))
    }
  }

  abort(id: number): void {
    this.#native.abort(id)
  }

  /**
   * Half-closes after every queued byte. The promise is created only here and awaited by the
   * caller at once, so a destroy that rejects it ({@link rejectEnd}) always has a listener.
   */
  end(): Promise<void> {
    const ended = new Promise<void>((resolve, reject) => (this.#endedWaiter = { resolve, reject }))
    keepAlive(1)
    this.#native.end()
    return ended
  }

  /** A destroy: an `end()` in progress rejects with `err`. */
  rejectEnd(err: Error): void {
    this.#endedWaiter?.reject(err)
    this.#endedWaiter = null
  }

  /**
   * Asks the engine to close (`'close'`: cancel and, if the peer holds pages, reset) or to hand
   * back (`'detach'`) the socket; settles on its `closed` event. The engine reports `closed`
   * once per connection, and the event loop is kept alive for it once: a close after a detach
   * only changes how the engine goes, it does not wait for a second event.
   */
  close(how: 'close' | 'detach'): Promise<void> {
    if (this.#gone) return Promise.resolve()
    if (this.#closed === null) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => (resolve = r))
      this.#closed = { promise, resolve }
    }
    const first = !this.#closeSent
    if (first) keepAlive(1)
    this.#closeSent = true
    if (how === 'close') this.#native.close()
    else if (first) this.#native.detach()
    return this.#closed.promise
  }

  #onClosed(): void {
    const closed = this.#closed
    if (closed === null || this.#gone) return
    keepAlive(-1)
    this.#gone = true
    closed.resolve()
  }

  #done(id: number, value: number, flags: number): void {
    keepAlive(-1)
    this.#hooks.touch()
    this.#pending.settle(id, (p) => {
      if (flags & binding.FLAG_ABORTED || p.aborted) return p.reject(abortError(p.signal))
      if (value >= 0) return p.resolve({ bytes: value, zeroCopy: (flags & binding.FLAG_ZERO_COPY) !== 0, copied: (flags & binding.FLAG_COPIED) !== 0 })
      if (-value === libcECANCELED) return p.reject(this.#hooks.error() ?? this.#hooks.destroyedError())
      const err = engineError(-value, p.syscall)
      this.#hooks.fail(err)
      p.reject(-value === binding.ERRNO_FILE_SHRANK ? err : this.#hooks.error())
      // The connection is unusable: tear it down (without making the socket emit 'error').
      queueMicrotask(() => this.#hooks.destroy())
    })
  }

  #ended(errno: number): void {
    const waiter = this.#endedWaiter
    this.#endedWaiter = null
    if (errno === 0) waiter?.resolve()
    else waiter?.reject(this.#hooks.error() ?? engineError(-errno, 'shutdown'))
  }
}
