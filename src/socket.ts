/**
 * `ZeroCopySocket`: ordered, pipelined io_uring sends for a `net.Socket`, with a transparent
 * fallback to the socket's own writes.
 * @module
 */
import net from 'node:net'
import { Writable } from 'node:stream'
import tls from 'node:tls'
import { markAsUntransferable } from 'node:worker_threads'

import { WriteBatcher } from './batch'
import { engineAvailable, engineFailure } from './engine'
import { EngineTransport } from './engine-transport'
import { FallbackTransport } from './fallback'
import { refreshIdleTimer, socketFd, socketWrite } from './net-internals'
import { PendingOps, type Pending } from './pending'
import { trackWrite } from './pool'
import { prepareFile, takeFile, validateSendFile, type FileSource, type PreparedFile, type SendFileOptions, type TakenFile } from './file'
import { abortError, codedError, invalidArgType, normalizeBindingError, type ZeroCopyError } from './errors'
import { probeReason } from './probe'
import { validateAbortSignal, validateInteger, validateOneOf, validateOptions, validateSendable, validateUint8Array } from './validate'

/** How a socket chooses between plain and zero-copy sends. */
export type ZeroCopyMode = 'auto' | 'always' | 'never'

/** Options for {@link ZeroCopySocket.from} and {@link ZeroCopySocket.connect}. */
export interface ZeroCopyOptions {
  /**
   * `'auto'`: zero-copy for writes of at least `threshold` bytes, plain (coalesced) sends below.
   * `'always'`: zero-copy for every write. `'never'`: plain sends only.
   * **Default:** `'auto'`.
   */
  zeroCopy?: ZeroCopyMode
  /** Bytes; in `'auto'`, writes at least this large go out zero-copy. **Default:** `16384`. */
  threshold?: number
  /**
   * Bytes; the largest single zero-copy request. Larger writes are split into pieces of this
   * size (in order, one in flight). Measured on loopback: 64 KiB pieces ran 3.0–3.2 GB/s,
   * 1 MiB pieces 1.65 GB/s. **Default:** `65536`.
   */
  zeroCopyChunk?: number
}

/** Options for {@link ZeroCopySocket.connect}: where to connect, plus {@link ZeroCopyOptions}. */
export interface ConnectOptions extends ZeroCopyOptions {
  /** Host name or address. **Default:** `'localhost'`. */
  host?: string
  /** TCP port, 0–65535. Required. */
  port: number
  /** Aborts the connection attempt (rejects with `AbortError`). */
  signal?: AbortSignal
}

/** Options for {@link ZeroCopySocket.write}. */
export interface WriteOptions {
  /**
   * Aborts the write: if none of its bytes reached the kernel it is withdrawn; otherwise it
   * completes (a half-written chunk would corrupt the stream). Either way the promise rejects
   * with `AbortError`, once the kernel no longer uses the buffer.
   */
  signal?: AbortSignal
}

/** How one write went out. */
export interface WriteResult {
  /** Bytes written (the whole buffer). */
  bytes: number
  /** At least part of it went out as `IORING_OP_SEND_ZC`. */
  zeroCopy: boolean
  /** The kernel reported it copied the data anyway (`IORING_NOTIF_USAGE_ZC_COPIED`; always on loopback). */
  copied: boolean
}

/** Counters of one {@link ZeroCopySocket}. */
export interface SocketStats {
  /** Bytes the kernel accepted. */
  bytesSent: number
  /** Calls to `write()` (including those of the stream). */
  writes: number
  /** Kernel requests sent as `IORING_OP_SEND_ZC`. */
  zeroCopySends: number
  /** Kernel requests (or fallback socket writes) sent as plain, copying sends. */
  copySends: number
  /** Zero-copy notifications received. */
  notifications: number
  /** Of those, how many reported that the kernel copied anyway. */
  copiedNotifications: number
  /** Why this socket does not use zero-copy sends, or `null` when it does. */
  fallbackReason: string | null
  /** Bytes of writes that have not settled yet (the kernel may hold them). */
  inFlightBytes: number
}

/** Options for {@link ZeroCopySocket.createWriteStream}. */
export interface WriteStreamOptions {
  /** Bytes buffered before `write()` returns `false`. **Default:** `1048576` (1 MiB). */
  highWaterMark?: number
}

/** Result of {@link ZeroCopySocket.sendFile}. */
export interface SendFileResult {
  /** Bytes sent (the whole requested range). */
  bytes: number
}

/** An operation waiting in JavaScript for its turn (socket not ready, or a file being opened). */
type HeldOp = { kind: 'write'; id: number; data: Uint8Array } | { kind: 'file'; id: number; file: Promise<PreparedFile> }

const MODES: readonly ZeroCopyMode[] = ['auto', 'always', 'never']
/**
 * Writes smaller than this (and, in `'auto'`, than `threshold`: those would be plain sends
 * anyway) are copied into a shared batch buffer and handed to the engine together (see
 * lib/batch.ts); never in `'always'`.
 */
const SMALL_WRITE = 16 * 1024
/**
 * In `'auto'`, once the kernel reports that it copies zero-copy sends on this route anyway
 * (loopback), writes up to this size are batched too: zero-copy buys nothing there, and one
 * copy into a batch is cheaper than a native call and an engine round trip per write.
 */
const COPYING_ROUTE_BATCH = 64 * 1024

const EMPTY = new Uint8Array(0)

/** Sockets a {@link ZeroCopySocket} owns: a second one would interleave its bytes. */
const owned = new WeakSet<net.Socket>()

function destroyedError(): ZeroCopyError {
  return codedError('ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed')
}

function releasedError(): ZeroCopyError {
  return codedError(
    'ERR_ZC_SOCKET_RELEASED',
    'This ZeroCopySocket has handed its socket back (release()): write on the socket, or adopt it again with ZeroCopySocket.from()',
  )
}

/** Writing after the peer's FIN ended the socket, worded as node:net's `writeAfterFIN`. */
function peerEndedError(): ZeroCopyError {
  return codedError('EPIPE', 'This socket has been ended by the other party')
}

/**
 * Keeps `data`'s memory where it is while the kernel may read it: an `ArrayBuffer` marked
 * untransferable is copied, not moved, by `postMessage`/`structuredClone` transfers, so a
 * transfer can no longer free the memory of a queued write under the kernel (the mark stays on
 * the buffer). Shared memory cannot be transferred at all.
 */
function pin(data: Uint8Array): void {
  if (data.buffer instanceof ArrayBuffer) markAsUntransferable(data.buffer)
}

/**
 * A TCP socket whose writes go out through io_uring `IORING_OP_SEND_ZC`, in order and
 * pipelined: the next send starts as soon as the kernel took the previous one, without waiting
 * for the zero-copy notification. Where io_uring is unavailable (other platforms, seccomp,
 * sysctl, TLS sockets) the same API writes through the socket itself; `stats.fallbackReason`
 * says why.
 *
 * Reading, events and lifecycle stay Node's: use {@link ZeroCopySocket.socket}. While the
 * engine owns the socket, `socket.write()` throws `ERR_ZC_SOCKET_OWNED` (it could not be
 * ordered with the engine's sends) and `socket.end()` is routed through {@link end}.
 *
 * Do not modify a buffer until its `write()` promise settles: the kernel may read it until then.
 *
 * @example
 * ```ts
 * import { ZeroCopySocket } from 'zerocopy-socket'
 *
 * const zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port: 9000 })
 * const chunk = Buffer.alloc(1 << 20, 7)
 * for (let i = 0; i < 64; i++) await zs.write(chunk) // safe to reuse `chunk` after each await
 * await zs.end()
 * console.log(zs.stats) // { bytesSent: 67108864, zeroCopySends: 1024, ... }
 * ```
 */
export class ZeroCopySocket {
  /** The adopted socket: read from it and listen to its events as usual. */
  readonly socket: net.Socket
  /** The engine connection, once adopted (see lib/engine-transport.ts). */
  #engine: EngineTransport | null = null
  #fallbackReason: string | null = null
  #pending = new PendingOps()
  #writes = 0
  /** Sends through the socket's own write where the engine is not used (see lib/fallback.ts). */
  #fallback: FallbackTransport
  /**
   * Operations waiting in JS, in order: until the socket is connected and its own buffer has
   * drained, and behind a file that is still being opened. `null` when nothing waits.
   */
  #held: HeldOp[] | null = null
  /**
   * `#drain` is running. A second call returns at once without losing work: the running one
   * loops until `#held` is empty, and every push to `#held` happens on this thread before that
   * loop's next look (it only yields at `await`s, after which it looks again).
   */
  #draining = false
  /** Small writes copied and waiting to go to the engine together; see {@link SMALL_WRITE}. */
  #batcher = new WriteBatcher((data, settled) => this.#sendBatch(data, settled))
  /** Writes below this many bytes are batched (0: never). */
  #batchBelow: number
  #mode: ZeroCopyMode
  #threshold: number
  #writesSinceRouteCheck = 0
  #heldWaiters: (() => void)[] = []
  #ending: Promise<void> | null = null
  #destroyed = false
  /** The peer's FIN ended the socket (no half-open): later writes fail with `EPIPE`, as node:net's. */
  #peerEnded = false
  #error: Error | null = null
  #origEnd: (this: net.Socket, cb?: () => void) => net.Socket
  /** The socket's own `write`/`end` properties before {@link #takeOver}, to put back on release. */
  #ownMethods: { write?: PropertyDescriptor; end?: PropertyDescriptor } = {}
  /** Our listeners on {@link socket}, removed when it is handed back. */
  #listeners: [event: string, fn: (...args: never[]) => void][] = []
  #releasing: Promise<net.Socket> | null = null
  /** {@link release} finished: the socket is its owner's again. */
  #released = false

  private constructor(socket: net.Socket, options: ZeroCopyOptions | undefined) {
    this.socket = socket
    this.#fallback = new FallbackTransport(
      socket,
      this.#pending,
      () => this.#destroyed,
      () => this.destroy(),
    )
    owned.add(socket)
    this.#origEnd = socket.end as (this: net.Socket, cb?: () => void) => net.Socket
    const mode = options?.zeroCopy ?? 'auto'
    const threshold = options?.threshold ?? 16384
    const chunk = options?.zeroCopyChunk ?? 65536
    this.#mode = mode
    this.#threshold = threshold
    this.#batchBelow = mode === 'always' ? 0 : mode === 'auto' ? Math.min(threshold, SMALL_WRITE) : SMALL_WRITE
    this.#fallbackReason = this.#nativeUnusable()
    if (this.#fallbackReason === null) {
      this.#held = []
      this.#takeOver()
      this.#whenWritable(() => this.#adopt(mode, threshold, chunk))
    }
    // Errors reach callers through rejected writes and end(); without this listener an
    // EPIPE/ECONNRESET would also be thrown as an uncaught 'error' event.
    this.#listen('error', (err: Error) => {
      if (this.#error === null) this.#error = err
    })
    // Registered after the socket's own 'end' handler, which schedules the automatic end().
    this.#listen('end', () => {
      if (!socket.allowHalfOpen) this.#peerEnded = true
    })
    this.#listen('close', () => {
      const cause = (socket as unknown as { errored?: Error | null }).errored
      if (cause && this.#error === null) this.#error = cause
      this.destroy()
    })
  }

  #listen(event: string, fn: (...args: never[]) => void): void {
    this.socket.on(event, fn as (...args: unknown[]) => void)
    this.#listeners.push([event, fn])
  }

  /**
   * Adopts a connected (or connecting) `net.Socket`, client- or server-side. Sends start once
   * the socket is connected and its own pending writes have drained, so earlier
   * `socket.write()` data always precedes the engine's.
   * @param socket - The socket to send on.
   * @param options - Sending policy.
   * @returns The wrapper; the socket stays usable for reading.
   * @throws `TypeError` `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE`, `RangeError`
   *   `ERR_OUT_OF_RANGE` for bad options; `ERR_SOCKET_CLOSED` for a destroyed socket.
   */
  static from(socket: net.Socket, options?: ZeroCopyOptions): ZeroCopySocket {
    if (!(socket instanceof net.Socket)) throw invalidArgType('socket', 'an instance of net.Socket', socket)
    validateZeroCopyOptions(options)
    if (socket.destroyed) throw codedError('ERR_SOCKET_CLOSED', 'Socket is closed')
    if (owned.has(socket))
      throw codedError('ERR_ZC_SOCKET_OWNED', 'This socket is already owned by a ZeroCopySocket: use that one (two would interleave their bytes)')
    return new ZeroCopySocket(socket, options)
  }

  /**
   * Opens a TCP connection and adopts it.
   * @param options - Where to connect, sending policy and an optional `signal`.
   * @returns The connected socket.
   * @throws Rejects with the connection error (`ECONNREFUSED`, `ENOTFOUND`, ...), `AbortError`
   *   (`ABORT_ERR`) when `signal` aborts, and argument errors as {@link from} does.
   */
  static connect(options: ConnectOptions): Promise<ZeroCopySocket> {
    validateOptions(options, 'options')
    if (options === undefined) throw invalidArgType('options', 'of type object', options)
    validateInteger(options.port, 'options.port', 0, 65535)
    if (options.host !== undefined && typeof options.host !== 'string') throw invalidArgType('options.host', 'of type string', options.host)
    validateAbortSignal(options.signal, 'options.signal')
    validateZeroCopyOptions(options)
    const { signal } = options
    if (signal?.aborted) return Promise.reject(abortError(signal))
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: options.host ?? 'localhost', port: options.port })
      const onAbort = (): void => {
        socket.destroy()
        reject(abortError(signal))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      socket.once('error', (err) => {
        signal?.removeEventListener('abort', onAbort)
        reject(err)
      })
      socket.once('connect', () => {
        signal?.removeEventListener('abort', onAbort)
        socket.removeAllListeners('error')
        resolve(new ZeroCopySocket(socket, options))
      })
    })
  }

  /** `true` when writes go through the io_uring engine, `false` on the fallback path. */
  get zeroCopyCapable(): boolean {
    return this.#fallbackReason === null
  }

  /** Current counters; see {@link SocketStats}. */
  get stats(): SocketStats {
    const n = this.#engine?.stats
    return {
      bytesSent: n ? n.bytesSent : this.#fallback.bytesSent,
      writes: this.#writes,
      zeroCopySends: n ? n.zeroCopySends : 0,
      copySends: n ? n.copySends : this.#fallback.writes,
      notifications: n ? n.notifications : 0,
      copiedNotifications: n ? n.copiedNotifications : 0,
      fallbackReason: n?.zeroCopyUnsupported
        ? 'EOPNOTSUPP: this socket type has no zero-copy path; sending plain through io_uring'
        : n?.copiesAnyway
          ? 'the kernel reports it copies zero-copy sends on this route (ZC_COPIED, e.g. loopback): auto sends plain'
          : this.#fallbackReason,
      inFlightBytes: this.#pending.inFlightBytes,
    }
  }

  /**
   * Sends `data` after every earlier write. Resolves once the kernel has the bytes *and* has
   * released the buffer, so `data` may be reused right after `await`. Writes below 16 KiB (below
   * `threshold` in `'auto'`, or up to 64 KiB once the kernel reports that it copies on this route
   * anyway; never in `'always'`) are copied into a batch instead: they resolve as
   * soon as they are copied while less than 1 MiB of such copies waits to be sent and no larger
   * write is pending ahead of them (as net.Socket acknowledges buffered data); a later failure of
   * those bytes is reported by the next write and by `end()`.
   * @param data - The bytes; not to be modified until the promise settles.
   * @param options - An optional `signal`.
   * @returns How the write went out.
   * @throws `TypeError` `ERR_INVALID_ARG_TYPE` synchronously for a non-`Uint8Array`. Rejects with
   *   `ERR_STREAM_WRITE_AFTER_END` after {@link end}, `ERR_STREAM_DESTROYED` after
   *   {@link destroy}, `AbortError` (`ABORT_ERR`) when `signal` aborts, and the kernel's
   *   `EPIPE` / `ECONNRESET` (with `errno` and `syscall`) when the peer goes away, after which
   *   the socket is destroyed and every pending write rejects the same way.
   */
  write(data: Uint8Array, options?: WriteOptions): Promise<WriteResult> {
    return this.#write(data, options, true)
  }

  /** `write()`; `earlyAck` false for the Writable, whose own buffer already bounds memory. */
  #write(data: Uint8Array, options: WriteOptions | undefined, earlyAck: boolean): Promise<WriteResult> {
    validateUint8Array(data, 'data')
    validateSendable(data, 'data')
    validateOptions(options, 'options')
    const signal = options?.signal
    validateAbortSignal(signal, 'options.signal')
    const refused = this.#refusal(signal)
    if (refused) return Promise.reject(refused)
    this.#writes++
    const bytes = data.byteLength
    if (bytes === 0) {
      this.#batcher.flush()
      return this.#afterPending({ bytes: 0, zeroCopy: false, copied: false })
    }
    if (this.#mode === 'auto' && this.#engine !== null && (++this.#writesSinceRouteCheck & 63) === 0) {
      this.#batchBelow = this.#engine.copiesAnyway ? COPYING_ROUTE_BATCH + 1 : Math.min(this.#threshold, SMALL_WRITE)
    }
    if (bytes < this.#batchBelow && signal === undefined && this.#engine !== null && this.#held === null) {
      this.#pending.inFlightBytes += bytes
      return this.#batcher.add(data, earlyAck && this.#pending.large === 0)
    }
    this.#batcher.flush()
    pin(data) // held from here until the kernel released it
    const id = this.#pending.nextId()
    return new Promise<WriteResult>((resolve, reject) => {
      const untrack = trackWrite(data)
      const p: Pending = {
        resolve: untrack ? (r) => (untrack(), resolve(r)) : resolve,
        reject: untrack ? (e) => (untrack(), reject(e)) : reject,
        bytes,
        aborted: false,
        signal,
        syscall: 'sendZc',
      }
      this.#pending.add(id, p)
      this.#pending.inFlightBytes += bytes
      if (signal) {
        p.onAbort = () => this.#abort(id, p)
        signal.addEventListener('abort', p.onAbort, { once: true })
      }
      if (this.#held !== null) this.#held.push({ kind: 'write', id, data })
      else this.#issueWrite(id, data)
    })
  }

  /**
   * Sends bytes of a file, after every earlier write and before every later one, without
   * passing them through JavaScript: the engine thread moves them from the page cache to the
   * socket with non-blocking `sendfile(2)` (waiting for room with io_uring `POLL_ADD`), or for
   * files `sendfile` cannot read, through staging buffers registered with the ring. On the
   * fallback path the file is read in chunks and written through the socket. The event loop is
   * never blocked.
   * @param file - A path, a file descriptor or a `FileHandle` of a regular file. A path is
   *   opened and closed by `sendFile`; descriptors and handles stay the caller's.
   * @param options - `offset`, `length` (bytes), `signal`, `onProgress(sent, total)`.
   * @returns The bytes sent.
   * @throws `TypeError` `ERR_INVALID_ARG_TYPE` synchronously for bad argument types, `RangeError`
   *   `ERR_OUT_OF_RANGE` for a negative or non-integer offset/length. Rejects, with nothing
   *   sent, with `ENOENT` (and other open errors), `EISDIR`, `ERR_INVALID_ARG_VALUE` (not a
   *   regular file), `ERR_OUT_OF_RANGE` (range past the end of the file); and with
   *   `ERR_ZC_FILE_SHRANK` if the file ends early while being sent (the socket is then
   *   destroyed: the stream is broken mid-file), plus every error {@link write} can give.
   */
  sendFile(file: FileSource, options?: SendFileOptions): Promise<SendFileResult> {
    validateSendFile(file, options)
    const signal = options?.signal
    const refused = this.#refusal(signal)
    if (refused) return Promise.reject(refused)
    // The caller may close its descriptor as soon as this returns: take a duplicate now.
    let taken: TakenFile
    try {
      taken = takeFile(file)
    } catch (e) {
      return Promise.reject(e)
    }
    this.#writes++
    this.#batcher.flush()
    const id = this.#pending.nextId()
    const prepared = prepareFile(taken, options)
    prepared.catch(() => {}) // settled through the held queue
    return new Promise<SendFileResult>((resolve, reject) => {
      const p: Pending = {
        resolve: (r) => resolve({ bytes: r.bytes }),
        reject,
        bytes: 0,
        aborted: false,
        signal,
        onProgress: options?.onProgress,
        syscall: 'sendFile',
      }
      this.#pending.add(id, p)
      if (signal) {
        p.onAbort = () => this.#abort(id, p)
        signal.addEventListener('abort', p.onAbort, { once: true })
      }
      ;(this.#held ??= []).push({ kind: 'file', id, file: prepared })
      void this.#drain()
    })
  }

  /**
   * A `stream.Writable` whose chunks go through {@link write}: `pipeline(file, zs.createWriteStream())`.
   * It honours `highWaterMark` and `'drain'`, hands buffered chunks to the engine together
   * (`_writev`) so they pipeline, ends the socket on `end()`, and destroys the socket on error.
   * @param options - `highWaterMark` in bytes.
   * @returns A new Writable.
   */
  createWriteStream(options?: WriteStreamOptions): Writable {
    validateOptions(options, 'options')
    const highWaterMark = options?.highWaterMark ?? 1 << 20
    validateInteger(highWaterMark, 'options.highWaterMark', 1)
    let finished = false
    return new Writable({
      highWaterMark,
      write: (chunk: Buffer, _encoding, callback) => {
        this.#write(chunk, undefined, false).then(() => callback(), callback)
      },
      writev: (chunks, callback) => {
        Promise.all(chunks.map(({ chunk }) => this.#write(chunk as Buffer, undefined, false))).then(() => callback(), callback)
      },
      final: (callback) => {
        this.end().then(() => {
          finished = true
          callback()
        }, callback)
      },
      destroy: (err, callback) => {
        if (err || !finished) this.destroy()
        callback(err)
      },
    })
  }

  /**
   * Hands the socket back: waits until every queued write and file send has settled (the
   * kernel released their memory), detaches the engine (its duplicate of the descriptor is
   * closed; nothing of the socket is left in the ring), restores the socket's own `write` and
   * `end`, removes this wrapper's listeners, and resolves with the socket, which its owner
   * (node:http, for example) keeps using as before. The socket may be adopted again later with
   * {@link ZeroCopySocket.from}. Calling it again returns the same promise.
   *
   * After `release()`, {@link write}, {@link sendFile} and {@link end} reject with
   * `ERR_ZC_SOCKET_RELEASED`, and {@link destroy} leaves the socket alone once it is handed back.
   * @returns The socket, once it is its owner's again.
   * @throws Rejects with `ERR_STREAM_DESTROYED` or the socket's error when the socket is
   *   destroyed before everything settled (it is not handed back then).
   */
  release(): Promise<net.Socket> {
    if (this.#releasing) return this.#releasing
    if (this.#destroyed) return Promise.reject(this.#error ?? destroyedError())
    this.#batcher.flush()
    this.#releasing = this.#release()
    this.#releasing.catch(() => {})
    return this.#releasing
  }

  async #release(): Promise<net.Socket> {
    const ending = this.#ending
    if (ending) await ending
    await this.#heldDone()
    await this.#pending.idle()
    if (!this.#destroyed && this.#engine) await this.#engine.close('detach')
    if (this.#destroyed) throw this.#error ?? destroyedError()
    const s = this.socket
    for (const [event, fn] of this.#listeners) s.off(event, fn as (...args: unknown[]) => void)
    this.#listeners = []
    for (const key of ['write', 'end'] as const) {
      const own = this.#ownMethods[key]
      if (own) Object.defineProperty(s, key, own)
      else delete (s as Partial<net.Socket>)[key]
    }
    owned.delete(s)
    this.#released = true
    // A destroy() that came after the detach and before here found nothing to close.
    return s
  }

  /** Counts the engine's progress as activity for the socket's idle timeout (`setTimeout`). */
  #touch(): void {
    refreshIdleTimer(this.socket)
  }

  /** Settles once no operation waits in JS (`#held` is null), or the socket was destroyed. */
  async #heldDone(): Promise<void> {
    // Every wake-up of these waiters comes from `#drain` finishing or from `destroy`, the only
    // two places that set `#held` to null; the loop re-checks, so a stale wake-up is harmless.
    while (this.#held !== null && !this.#destroyed) await new Promise<void>((resolve) => this.#heldWaiters.push(resolve))
  }

  /**
   * Flushes every queued byte, then half-closes the connection (sends FIN). The reading side
   * is untouched. Resolves once every write has settled and the FIN was sent; calling it again
   * returns the same promise.
   * @returns Settles when done.
   * @throws Rejects with `ERR_STREAM_DESTROYED` after {@link destroy}, or the socket's error.
   */
  end(): Promise<void> {
    if (this.#ending) return this.#ending
    if (this.#destroyed) return Promise.reject(this.#error ?? destroyedError())
    if (this.#releasing) return Promise.reject(releasedError())
    this.#batcher.flush()
    this.#ending = this.#end()
    // end() may be called for its side effect only (socket.end() routes here): never leave an
    // unhandled rejection behind; callers that await it still see the error.
    this.#ending.catch(() => {})
    return this.#ending
  }

  /**
   * Tears the connection down now. Writes not yet handed to the kernel reject at once with
   * `ERR_STREAM_DESTROYED`; writes the kernel holds reject once it has released their
   * buffers. Destroys {@link socket} (with `error`, which it then emits, as node:net does).
   * @param error - Optional cause, passed to `socket.destroy()`.
   */
  destroy(error?: Error): void {
    if (this.#destroyed) return
    this.#destroyed = true
    if (this.#released) return // the socket is its owner's again
    if (error && this.#error === null) this.#error = error
    this.#pending.inFlightBytes -= this.#batcher.discard(this.#error ?? destroyedError())
    const held = this.#held ?? []
    this.#held = null
    for (const op of held) {
      if (op.kind === 'file')
        op.file.then(
          (f) => f.close(),
          () => {},
        )
      this.#pending.settle(op.id, (p) => p.reject(this.#error ?? destroyedError()))
    }
    // `#held` is gone: whoever waits for it (end()) must look again, or it would wait forever.
    this.#wakeHeldWaiters()
    if (this.#fallbackReason !== null) {
      for (const id of this.#pending.ids()) this.#pending.settle(id, (p) => p.reject(this.#error ?? destroyedError()))
    }
    if (this.#engine) {
      void this.#engine.close('close')
      this.#engine.rejectEnd(this.#error ?? destroyedError())
    }
    if (!this.socket.destroyed) this.socket.destroy(error)
  }

  async #end(): Promise<void> {
    await this.#heldDone()
    if (this.#destroyed) throw this.#error ?? destroyedError()
    if (this.#fallbackReason !== null) {
      await this.#fallback.end(this.#origEnd, () => this.#error ?? destroyedError())
      await this.#pending.idle()
      if (this.#destroyed && this.#error) throw this.#error
      return
    }
    await this.#engine!.end()
    await this.#pending.idle()
    if (this.#error) throw this.#error
  }

  #wakeHeldWaiters(): void {
    const waiters = this.#heldWaiters
    this.#heldWaiters = []
    for (const w of waiters) w()
  }

  /** Why a new write or file send cannot be queued now, or `null`; as node:net words it. */
  #refusal(signal: AbortSignal | undefined): Error | null {
    if (this.#destroyed) return this.#error ?? destroyedError()
    if (this.#releasing) return releasedError()
    if (this.#ending) return this.#peerEnded ? peerEndedError() : codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end')
    if (signal?.aborted) return abortError(signal)
    return null
  }

  /** Sends a flushed batch of small writes as one engine write. */
  #sendBatch(data: Uint8Array, settled: { resolve(r: WriteResult): void; reject(e: unknown): void }): void {
    const id = this.#pending.nextId()
    this.#pending.add(id, { ...settled, bytes: data.byteLength, aborted: false, syscall: 'sendZc', batch: true })
    this.#engine!.write(id, data)
  }

  /** Resolves `result` once every write issued before it has settled. */
  #afterPending(result: WriteResult): Promise<WriteResult> {
    return this.#pending.idle().then(() => result)
  }

  #abort(id: number, p: Pending): void {
    p.aborted = true
    const i = this.#held?.findIndex((h) => h.id === id) ?? -1
    if (i >= 0) {
      const [op] = this.#held!.splice(i, 1)
      if (op.kind === 'file')
        op.file.then(
          (f) => f.close(),
          () => {},
        )
      this.#pending.settle(id, (q) => q.reject(abortError(q.signal)))
    } else if (this.#engine) {
      this.#engine.abort(id)
    }
  }

  /** Why the engine cannot be used for this socket, or `null` when it can. */
  #nativeUnusable(): string | null {
    if (!engineAvailable()) return engineFailure() ?? probeReason()
    if (this.socket instanceof tls.TLSSocket) return 'TLS socket: bytes must go through TLS, so the socket writes them itself'
    if (!this.socket.connecting && socketFd(this.socket) < 0) return 'the socket has no file descriptor (not a kernel TCP socket)'
    return null
  }

  /** Runs `fn` once the socket is connected and its own write buffer is empty. */
  #whenWritable(fn: () => void): void {
    const s = this.socket
    if (s.destroyed) return
    if (s.connecting) s.once('connect', () => this.#whenWritable(fn))
    else if (s.writableLength > 0) {
      // Not 'drain': it only comes after a write() that returned false, so a small write still
      // queued (a full send buffer) left adoption waiting forever. The callback of an empty
      // write runs once every earlier write has been flushed (or failed: then `destroyed`).
      socketWrite.call(s, EMPTY, () => this.#whenWritable(fn))
    } else fn()
  }

  /** Routes `socket.write()`/`end()` so they cannot overtake the engine's bytes. */
  #takeOver(): void {
    const s = this.socket
    this.#ownMethods = { write: Object.getOwnPropertyDescriptor(s, 'write'), end: Object.getOwnPropertyDescriptor(s, 'end') }
    s.write = (() => {
      throw codedError(
        'ERR_ZC_SOCKET_OWNED',
        'This socket is owned by a ZeroCopySocket: write through it (zs.write / zs.createWriteStream), not socket.write()',
      )
    }) as net.Socket['write']
    s.end = ((...args: unknown[]) => {
      const cb = args.find((a) => typeof a === 'function') as (() => void) | undefined
      if (this.#destroyed) return s
      if (this.#releasing) {
        // Being handed back (node:http ends a keep-alive socket whose client left while the
        // last body's release was still running): end it through its own end() once it is
        // its owner's again. Dropping the call left the connection open for good.
        this.#releasing.then(
          (socket) => socket.end(...(args as [])),
          () => cb?.(),
        )
        return s
      }
      this.end().then(
        () => this.#origEnd.call(s, cb),
        () => cb?.(),
      )
      return s
    }) as net.Socket['end']
  }

  #adopt(mode: ZeroCopyMode, threshold: number, chunk: number): void {
    if (this.#destroyed) return
    try {
      this.#engine = new EngineTransport(socketFd(this.socket), mode, threshold, chunk, this.#pending, {
        error: () => this.#error,
        fail: (err) => {
          if (this.#error === null) this.#error = err
        },
        destroyedError,
        destroy: () => this.destroy(),
        touch: () => this.#touch(),
      })
    } catch (e) {
      // Not a stream socket the engine can use: write through the socket, in order.
      const err = normalizeBindingError(e) as ZeroCopyError
      this.#fallbackReason = `engine refused the socket: ${err.code ?? err.message}`
      this.socket.write = net.Socket.prototype.write
      this.socket.end = this.#origEnd as net.Socket['end']
    }
    void this.#drain()
  }

  /** Whether operations can be issued (engine adopted the socket, or the fallback is chosen). */
  #ready(): boolean {
    return this.#engine !== null || this.#fallbackReason !== null
  }

  /** Issues held operations in order, waiting for each file to be opened and checked. */
  async #drain(): Promise<void> {
    if (this.#draining || !this.#ready()) return
    this.#draining = true
    try {
      while (this.#held !== null && this.#held.length > 0) {
        const op = this.#held[0]
        if (op.kind === 'write') {
          this.#held.shift()
          this.#issueWrite(op.id, op.data)
          continue
        }
        let file: PreparedFile
        try {
          file = await op.file
        } catch (e) {
          if (this.#held?.[0] === op) this.#held.shift()
          this.#pending.settle(op.id, (p) => p.reject(e))
          continue
        }
        if (this.#held?.[0] !== op) {
          await file.close() // aborted or destroyed while opening
          continue
        }
        this.#held.shift()
        const p = this.#pending.get(op.id)
        if (p) p.bytes = file.length
        this.#pending.inFlightBytes += file.length
        await this.#issueFile(op.id, file)
      }
      this.#held = null
    } finally {
      this.#draining = false
      this.#wakeHeldWaiters()
    }
  }

  #issueWrite(id: number, data: Uint8Array): void {
    if (this.#fallbackReason !== null) this.#fallback.write(id, data)
    else this.#engine!.write(id, data)
  }

  async #issueFile(id: number, file: PreparedFile): Promise<void> {
    if (file.length === 0) {
      await file.close()
      this.#pending.settle(id, (p) => p.resolve({ bytes: 0, zeroCopy: false, copied: false }))
      return
    }
    if (this.#fallbackReason !== null) {
      await this.#fallback.sendFile(id, file)
      return
    }
    try {
      this.#engine!.sendFile(id, file)
    } finally {
      await file.close() // the engine works on its own dup
    }
  }
}

function validateZeroCopyOptions(options: ZeroCopyOptions | undefined): void {
  validateOptions(options, 'options')
  validateOneOf(options?.zeroCopy, 'options.zeroCopy', MODES)
  if (options?.threshold !== undefined) validateInteger(options.threshold, 'options.threshold', 0, 0xffffffff)
  if (options?.zeroCopyChunk !== undefined) validateInteger(options.zeroCopyChunk, 'options.zeroCopyChunk', 4096, 0x7fffffff)
}
