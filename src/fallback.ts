/**
 * The fallback transport: where the engine cannot be used (no io_uring, TLS, a socket it
 * refuses), writes and file sends go through the socket's own `net.Socket` write, in order,
 * settling each pending operation from its write callback.
 * @module
 */
import net from 'node:net'

import { socketWrite as write } from './net-internals'
import { abortError, type ZeroCopyError } from './errors'
import { readChunks, type PreparedFile } from './file'
import type { PendingOps } from './pending'

/** One socket's fallback sends, and their counters. */
export class FallbackTransport {
  /** Bytes the socket's write callbacks confirmed. */
  bytesSent = 0
  /** Socket writes issued. */
  writes = 0
  readonly #socket: net.Socket
  readonly #pending: PendingOps
  readonly #destroyed: () => boolean
  /** Tears the socket down (a file that shrank breaks the stream mid-file). */
  readonly #destroy: () => void

  constructor(socket: net.Socket, pending: PendingOps, destroyed: () => boolean, destroy: () => void) {
    this.#socket = socket
    this.#pending = pending
    this.#destroyed = destroyed
    this.#destroy = destroy
  }

  /** Writes `data` for pending operation `id`; it settles from the write's callback. */
  write(id: number, data: Uint8Array): void {
    this.writes++
    write.call(this.#socket, data, (err) => {
      this.#pending.settle(id, (p) => {
        if (err) return p.reject(err)
        this.bytesSent += data.byteLength
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
        if (p === undefined || this.#destroyed()) break
        if (p.aborted) throw abortError(p.signal)
        this.writes++
        const ok = write.call(this.#socket, chunk, (err) => {
          if (err) return
          sent += chunk.length
          this.bytesSent += chunk.length
          this.#pending.get(id)?.onProgress?.(sent, file.length)
          if (sent === file.length)
            this.#pending.settle(id, (q) => (q.aborted ? q.reject(abortError(q.signal)) : q.resolve({ bytes: sent, zeroCopy: false, copied: false })))
        })
        if (!ok) await this.#drained()
      }
    } catch (e) {
      // The bytes already written stay written; the stream is broken mid-file.
      this.#pending.settle(id, (p) => p.reject(e))
      if ((e as ZeroCopyError).code === 'ERR_ZC_FILE_SHRANK') queueMicrotask(this.#destroy)
    } finally {
      await file.close()
    }
  }

  /**
   * The socket's own `end()`; rejects with `failure()` if the socket is destroyed before the
   * FIN went out, as the engine path rejects then.
   */
  end(origEnd: (this: net.Socket, cb?: () => void) => net.Socket, failure: () => Error): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      origEnd.call(this.#socket, ((err?: Error | null) => {
        if (err || this.#destroyed()) reject(failure())
        else resolve()
      }) as () => void)
    })
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
