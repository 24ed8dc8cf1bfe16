/**
 * The engine transport ({@link Transport}), and whether a socket can have one
 * ({@link engineUnusable}): one socket's sends through this thread's io_uring engine. It issues
 * writes, file sends, `end`, aborts and the final close or detach to the binding, and turns
 * the engine's events back into settled pending operations. The binding keeps the event loop
 * alive while the engine owes any of those events (crates/zerocopy-node/src/owed.rs).
 * @module
 */
import type net from 'node:net'
import { constants } from 'node:os'
import tls from 'node:tls'

import { engineAvailable, engineFailure, register } from './engine'
import { abortError, codedError, destroyedError, errnoError, normalizeBindingError, type ZeroCopyError } from './errors'
import { fileShrankError, type PreparedFile } from './file'
import { binding } from './native'
import { socketFd } from './net-internals'
import type { SendPolicy } from './options'
import type { PendingOps } from './pending'
import { probeReason } from './probe'
import type { SocketHooks, Transport, TransportStats } from './transport'

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

/** Why the engine cannot be used for `socket`, or `null` when it can (then it may still refuse the descriptor). */
export function engineUnusable(socket: net.Socket): string | null {
  if (!engineAvailable()) return engineFailure() ?? probeReason()
  if (socket instanceof tls.TLSSocket) return 'TLS socket: bytes must go through TLS, so the socket writes them itself'
  if (!socket.connecting && socketFd(socket) < 0) return 'the socket has no file descriptor (not a kernel TCP socket)'
  return null
}

/** One socket's engine connection. */
export class EngineTransport implements Transport {
  /** Sends go out through io_uring. */
  readonly zeroCopyCapable = true
  /** Small writes are batched: it saves a native call and an engine round trip each. */
  readonly batches = true
  readonly #native: binding.BindingSocket
  readonly #pending: PendingOps
  readonly #hooks: SocketHooks
  #endedWaiter: { resolve(): void; reject(e: unknown): void } | null = null
  /** The engine was asked to close or detach; `#closed` settles on its `closed` event. */
  #closeSent = false
  /** The engine reported `closed`: it holds nothing of this socket any more. */
  #gone = false
  #closed: { promise: Promise<void>; resolve(): void } | null = null
  readonly #mode: SendPolicy['mode']
  /** `auto` on a route that copies, as last read from the engine (see {@link sendsInline}). */
  #copying = false
  /** Writes since {@link #copying} was read. */
  #sinceCheck = 0
  /** Inline sends ({@link sendNow}) that took bytes, and those bytes: copy sends the engine never saw. */
  #inlineSends = 0
  #inlineBytes = 0

  /** Opens the engine connection on `fd`; throws the binding's error when the engine refuses it. */
  constructor(fd: number, policy: SendPolicy, pending: PendingOps, hooks: SocketHooks) {
    this.#native = new binding.BindingSocket(fd, policy.mode, policy.threshold, policy.chunk)
    this.#mode = policy.mode
    this.#pending = pending
    this.#hooks = hooks
    register(this.#native.id, {
      done: (id, value, flags) => this.#done(id, value, flags),
      progress: (id, sent) => {
        hooks.touch()
        const p = pending.get(id)
        p?.onProgress?.(sent, p.bytes)
      },
      ended: (errno) => this.#ended(errno),
      closed: () => this.#onClosed(),
    })
  }

  /** The engine's counters of this socket; `fallbackReason` says when it sends plain anyway. */
  stats(): TransportStats {
    const n = this.#native.stats
    return {
      bytesSent: n.bytesSent + this.#inlineBytes,
      zeroCopySends: n.zeroCopySends,
      copySends: n.copySends + this.#inlineSends,
      sendfileCalls: n.sendfileCalls,
      sendfileBytes: n.sendfileBytes,
      notifications: n.notifications,
      copiedNotifications: n.copiedNotifications,
      fallbackReason: n.zeroCopyUnsupported
        ? 'EOPNOTSUPP: this socket type has no zero-copy path; sending plain through io_uring'
        : n.copiesAnyway
          ? 'the kernel copies zero-copy sends on this route (a loopback peer, or notifications reporting ZC_COPIED): auto sends plain'
          : null,
    }
  }

  /** `auto` found that the kernel copies zero-copy sends on this route anyway. */
  get copiesAnyway(): boolean {
    return this.#native.copiesAnyway
  }

  /**
   * `'never'`, or `'auto'` once the engine found that the kernel copies zero-copy sends on this
   * route (read again every 8 writes: a native call each time would cost more than it tells).
   * Never `'always'`. In `'auto'` the engine's occasional zero-copy probe of the route needs
   * engine sends; while writes go inline the route stays "copying", which is right on loopback,
   * the route that reports copies.
   */
  sendsInline(): boolean {
    if (this.#mode !== 'auto') return this.#mode === 'never'
    if ((this.#sinceCheck++ & 7) === 0) this.#copying = this.#native.copiesAnyway
    return this.#copying
  }

  /** One non-blocking `send(2)` on this thread (see {@link Transport.sendNow}): a copy send. */
  sendNow(data: Uint8Array): number {
    const fd = this.#hooks.fd()
    if (fd < 0) return 0
    const n = binding.sendNow(fd, data)
    if (n > 0) {
      this.#inlineSends++
      this.#inlineBytes += n
      this.#hooks.touch()
    }
    if (n >= 0) return n
    const err = this.#failure(-n, 'sendZc')
    queueMicrotask(() => this.#hooks.destroy()) // as for a failed engine send
    throw err
  }

  /** Queues `data`; the binding holds it until the kernel released it. */
  write(id: number, data: Uint8Array): void {
    this.#native.write(id, data)
  }

  /** Queues the file range; the engine works on its own duplicate, so `file` is closed at once. */
  async sendFile(id: number, file: PreparedFile): Promise<void> {
    try {
      this.#native.sendFile(id, file.fd, file.offset, file.length)
    } catch (e) {
      this.#pending.settle(id, (p) => p.reject(normalizeBindingError(e)))
    } finally {
      await file.close()
    }
  }

  /** Asks the engine to withdraw write `id` if none of its bytes reached the kernel. */
  abort(id: number): void {
    this.#native.abort(id)
  }

  /**
   * Half-closes after every queued byte. The engine's promise is created only here and awaited
   * at once, so a destroy that rejects it always has a listener.
   */
  async end(): Promise<void> {
    const ended = new Promise<void>((resolve, reject) => (this.#endedWaiter = { resolve, reject }))
    this.#native.end()
    await ended
    await this.#pending.idle()
    const err = this.#hooks.error()
    if (err) throw err
  }

  /** Closes the engine connection; an `end()` in progress rejects with `err`. */
  destroy(err: Error): void {
    void this.#close('close')
    this.#endedWaiter?.reject(err)
    this.#endedWaiter = null
  }

  /** Hands the socket back once everything queued went out and was released. */
  detach(): Promise<void> {
    return this.#close('detach')
  }

  /**
   * Asks the engine to close (`'close'`: cancel and, if the peer holds pages, reset) or to hand
   * back (`'detach'`) the socket; settles on its `closed` event. The engine reports `closed`
   * once per connection: a close after a detach only changes how the engine goes, it does not
   * wait for a second event.
   */
  #close(how: 'close' | 'detach'): Promise<void> {
    if (this.#gone) return Promise.resolve()
    if (this.#closed === null) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => (resolve = r))
      this.#closed = { promise, resolve }
    }
    const first = !this.#closeSent
    this.#closeSent = true
    if (how === 'close') this.#native.close()
    else if (first) this.#native.detach()
    return this.#closed.promise
  }

  #onClosed(): void {
    const closed = this.#closed
    if (closed === null || this.#gone) return
    this.#gone = true
    closed.resolve()
  }

  #done(id: number, value: number, flags: number): void {
    this.#hooks.touch()
    this.#pending.settle(id, (p) => {
      if (flags & binding.FLAG_ABORTED || p.aborted) return p.reject(abortError(p.signal))
      if (value >= 0) return p.resolve({ bytes: value, zeroCopy: (flags & binding.FLAG_ZERO_COPY) !== 0, copied: (flags & binding.FLAG_COPIED) !== 0 })
      if (-value === libcECANCELED) return p.reject(this.#hooks.error() ?? destroyedError())
      p.reject(this.#failure(-value, p.syscall))
      // The connection is unusable: tear it down (without making the socket emit 'error').
      queueMicrotask(() => this.#hooks.destroy())
    })
  }

  /**
   * A send failed with `errno`: records the error as the socket's (the caller tears the
   * connection down). Returns what the operation rejects with: the socket's first error, or
   * for a shrunk file its own.
   */
  #failure(errno: number, syscall: string): Error {
    const err = engineError(errno, syscall)
    this.#hooks.fail(err)
    return errno === binding.ERRNO_FILE_SHRANK ? err : (this.#hooks.error() ?? err)
  }

  #ended(errno: number): void {
    const waiter = this.#endedWaiter
    this.#endedWaiter = null
    if (errno === 0) waiter?.resolve()
    else waiter?.reject(this.#hooks.error() ?? engineError(-errno, 'shutdown'))
  }
}
