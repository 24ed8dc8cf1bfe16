/**
 * The fallback transport ({@link Transport}): where the engine cannot be used (no io_uring,
 * TLS, a socket it refuses), writes and file sends go through the socket's own `net.Socket`
 * write, in order, settling each pending operation from its write callback.
 * @module
 */
import net from 'node:net'

import { socketWrite as write } from './net-internals'
import { abortError, destroyedError, type ZeroCopyError } from './errors'
import { readChunks, type PreparedFile } from './file'
import type { PendingOps } from './pending'
import type { OwnEnd } from './takeover'
import type { SocketHooks, Transport, TransportStats } from './transport'

/** One socket's fallback sends, and their counters. */
export class FallbackTransport implements Transport {
  /** The socket's own writes: never zero-copy. */
  readonly zeroCopyCapable = false
  /** The socket coalesces small writes itself. */
  readonly batches = false
  /** No route check: nothing is sent zero-copy. */
  readonly copiesAnyway = false
  /** Bytes the socket's write callbacks confirmed. */
  #bytesSent = 0
  /** Socket writes issued. */
  #writes = 0
  readonly #socket: net.Socket
  readonly #pending: PendingOps
  readonly #hooks: SocketHooks
  readonly #ownEnd: OwnEnd
  readonly #reason: string

  /**
   * @param socket - The socket to write through.
   * @param reason - Why the engine is not used, for `stats.fallbackReason`.
   * @param ownEnd - The socket's own `end`.
   */
  constructor(socket: net.Socket, reason: string, ownEnd: OwnEnd, pending: PendingOps, hooks: SocketHooks) {
    this.#socket = socket
    this.#reason = reason
    this.#ownEnd = ownEnd
    this.#pending = pending
    this.#hooks = hooks
  }

  /** The socket's own writes already try the send inline (libuv's `uv_try_write`). */
  sendsInline(): boolean {
    return false
  }

  /** Never called ({@link sendsInline} is false): sends nothing. */
  sendNow(): number {
    return 0
  }

  /** What the socket's write callbacks confirmed, and why the engine is not used. */
  stats(): TransportStats {
    return {
      bytesSent: this.#bytesSent,
      zeroCopySends: 0,
      copySends: this.#writes,
      sendfileCalls: 0,
      sendfileBytes: 0,
      notifications: 0,
      copiedNotifications: 0,
      fallbackReason: this.#reason,
    }
  }

  /** Writes `data` for pending operation `id`; it settles from the write's callback. */
  write(id: number, data: Uint8Array): void {
    this.#writes++
    write.call(this.#socket, data, (err) => {
      this.#pending.settle(id, (p) => {
        if (err) return p.reject(err)
        this.#bytesSent += data.byteLength
        if (p.aborted) return p.reject(abortError(p.signal))
        p.resolve({ bytes: data.byteLength, zeroCopy: false, copied: false })
      })
    })
  }

  /** Reads the file in chunks and writes them through the socket, honouring its backpressure. */
  async sendFile(id: number, file: PreparedFile): Promise<void> {
    let sent = 0
    try {
      for await (const chunk of readChunks(file, 256 * 1024)) {
        const p = this.#pending.get(id)
        if (p === undefined || this.#hooks.destroyed()) break
        if (p.aborted) throw abortError(p.signal)
        this.#writes++
        const ok = write.call(this.#socket, chunk, (err) => {
          if (err) return
          sent += chunk.length
          this.#bytesSent += chunk.length
          this.#pending.get(id)?.onProgress?.(sent, file.length)
          if (sent === file.length)
            this.#pending.settle(id, (q) => (q.aborted ? q.reject(abortError(q.signal)) : q.resolve({ bytes: sent, zeroCopy: false, copied: false })))
        })
        if (!ok) await this.#drained()
      }
    } catch (e) {
      // The bytes already written stay written; the stream is broken mid-file.
      this.#pending.settle(id, (p) => p.reject(e))
      if ((e as ZeroCopyError).code === 'ERR_ZC_FILE_SHRANK') queueMicrotask(() => this.#hooks.destroy())
    } finally {
      await file.close()
    }
  }

  /** Nothing to withdraw: the write's callback sees the mark and rejects it. */
  abort(): void {}

  /**
   * The socket's own `end()`; rejects with the socket's error (or `ERR_STREAM_DESTROYED`) if
   * the socket is destroyed before the FIN went out, as the engine path rejects then.
   */
  async end(): Promise<void> {
    const failure = (): Error => this.#hooks.error() ?? destroyedError()
    await new Promise<void>((resolve, reject) => {
      this.#ownEnd.call(this.#socket, ((err?: Error | null) => {
        if (err || this.#hooks.destroyed()) reject(failure())
        else resolve()
      }) as () => void)
    })
    await this.#pending.idle()
    const err = this.#hooks.error()
    if (this.#hooks.destroyed() && err) throw err
  }

  /** Every pending operation rejects with `err` at once: the socket's writes die with it. */
  destroy(err: Error): void {
    for (const id of this.#pending.ids()) this.#pending.settle(id, (p) => p.reject(err))
  }

  /** Nothing to hand back: the socket wrote everything itself. */
  detach(): Promise<void> {
    return Promise.resolve()
  }

  /**
   * Resolves on the socket's next 'drain', or once it closed: a socket destroyed while full
   * never drains, and waiting for 'drain' alone left the file send (and its file) behind forever.
   */
  #drained(): Promise<void> {
    const s = this.#socket
    if (s.destroyed) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        s.off('drain', done)
        s.off('close', done)
        resolve()
      }
      s.on('drain', done)
      s.on('close', done)
    })
  }
}
