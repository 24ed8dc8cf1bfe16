/**
 * `ZeroCopySocket`: ordered, pipelined io_uring sends for a `net.Socket`, with a transparent
 * fallback to the socket's own writes. This module holds the public API, its result types and
 * its lifecycle (adopt, end, release, destroy) over one transport (src/transport.ts); options
 * are in src/options.ts, operations held in JS in src/held.ts, and the takeover of the socket's
 * own `write`/`end` in src/takeover.ts.
 * @module
 */
import * as net from 'node:net'
import { Writable } from 'node:stream'
import { markAsUntransferable } from 'node:worker_threads'

import { WriteBatcher } from './batch'
import { engineStartFailures } from './engine'
import { EngineTransport, engineUnusable } from './engine-transport'
import { FallbackTransport } from './fallback'
import { HeldOps } from './held'
import { refreshIdleTimer, socketFd } from './net-internals'
import { BatchLimit, sendPolicy, validateConnectOptions, validateZeroCopyOptions, type SendPolicy } from './options'
import type { ConnectOptions, WriteOptions, WriteStreamOptions, ZeroCopyOptions } from './options'
import { PendingOps, type Pending } from './pending'
import { trackWrite } from './pool'
import { prepareFile, takeFile, validateSendFile, type FileSource, type SendFileOptions, type TakenFile } from './file'
import { abortError, codedError, destroyedError, invalidArgType, normalizeBindingError, peerEndedError, releasedError, type ZeroCopyError } from './errors'
import { Takeover, whenWritable } from './takeover'
import type { SocketHooks, Transport } from './transport'
import { validateAbortSignal, validateInteger, validateOptions, validateSendable, validateUint8Array } from './validate'

export type { ConnectOptions, WriteOptions, WriteStreamOptions, ZeroCopyMode, ZeroCopyOptions } from './options'

/**
 * How one write went out. Read-only: the result of an early-acknowledged small write is one
 * frozen object shared by writes of the same size (it saves an allocation per write).
 */
export interface WriteResult {
  /** Bytes written (the whole buffer). */
  readonly bytes: number
  /** At least part of it went out as `IORING_OP_SEND_ZC`. */
  readonly zeroCopy: boolean
  /** The kernel reported it copied the data anyway (`IORING_NOTIF_USAGE_ZC_COPIED`; always on loopback). */
  readonly copied: boolean
}

/**
 * Counters of one {@link ZeroCopySocket}. How bytes left: memory writes as zero-copy sends
 * (`zeroCopySends`) or plain copying sends (`copySends`); file sends page-cache-to-socket with
 * `sendfile(2)` (`sendfileCalls`, `sendfileBytes`), which copy no user memory and are neither.
 * On the fallback path every write and file chunk is a socket write, counted in `copySends`.
 */
export interface SocketStats {
  /** Bytes the kernel accepted, from writes and file sends alike. */
  bytesSent: number
  /** Calls to `write()` (including those of the stream). */
  writes: number
  /**
   * Kernel requests sent as `IORING_OP_SEND_ZC`: memory writes (and staged file chunks) the
   * NIC reads from the pages in place.
   */
  zeroCopySends: number
  /**
   * Kernel requests sent as plain, copying sends (`IORING_OP_SEND`/`SENDMSG`: small or batched
   * writes, `zeroCopy: 'never'`, or `'auto'` on a route that copies anyway), and on the fallback
   * path the socket writes. Not `sendfile(2)` calls: those are `sendfileCalls`.
   */
  copySends: number
  /** `sendfile(2)` calls of `sendFile()`: file bytes moved from the page cache to the socket. */
  sendfileCalls: number
  /** Bytes those `sendfile(2)` calls sent (included in `bytesSent`). */
  sendfileBytes: number
  /** Zero-copy notifications received (one per `IORING_OP_SEND_ZC` the kernel released). */
  notifications: number
  /** Of those, how many reported that the kernel copied anyway (`ZC_COPIED`; always on loopback). */
  copiedNotifications: number
  /** Why this socket does not use zero-copy sends, or `null` when it does. */
  fallbackReason: string | null
  /** Bytes of writes that have not settled yet (the kernel may hold them). */
  inFlightBytes: number
  /**
   * Times this thread's send engine failed to start so far. Failures for want of descriptors
   * or memory (`EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN`) are retried by sockets adopted after a
   * back-off (100 ms, doubling, at most 30 s); a socket adopted meanwhile says so in `fallbackReason`.
   */
  engineStartFailures: number
}

/** Result of {@link ZeroCopySocket.sendFile}. */
export interface SendFileResult {
  /** Bytes sent (the whole requested range). */
  bytes: number
}

/**
 * Writes from this size on go out inline on their own when they may (see `#mayInline`) rather
 * than being copied into a batch first: one send(2) either way, without the extra copy. Smaller
 * writes are still batched, one send(2) for many of them.
 */
const INLINE_ALONE = 16 * 1024
/** Sockets a {@link ZeroCopySocket} owns: a second one would interleave its bytes. */
const owned = new WeakSet<net.Socket>()

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
  /** Engine or fallback sends; `null` while the socket is not adopted yet (see {@link #adopt}). */
  #transport: Transport | null = null
  #pending = new PendingOps()
  #writes = 0
  /** Operations waiting in JS: until the socket is adopted, and behind a file being opened. */
  #held: HeldOps
  /** Small writes copied and waiting to go to the engine together (src/batch.ts). */
  #batcher = new WriteBatcher((data, settled) => this.#sendBatch(data, settled))
  #batchLimit: BatchLimit
  /**
   * Copy writes (and batches) waiting in JS, in order, while the transport still has an
   * operation of this socket: they go inline once it has none ({@link #sendWaiting}), or to the
   * transport, in order, before any operation that cannot wait ({@link #waitingToTransport}).
   * Each has its pending entry (counted in `pending.waiting`). `total`: the write's whole size.
   */
  #waiting: { id: number; data: Uint8Array; total: number }[] = []
  /** A {@link #sendWaiting} is scheduled. */
  #waitingScheduled = false
  #ending: Promise<void> | null = null
  #destroyed = false
  /** The peer's FIN ended the socket (no half-open): later writes fail with `EPIPE`, as node:net's. */
  #peerEnded = false
  #error: Error | null = null
  /** The socket's own `write`/`end`, taken over while the engine sends. */
  #takeover: Takeover
  /** What the transports need of this socket. */
  #hooks: SocketHooks = {
    error: () => this.#error,
    fail: (err) => {
      if (this.#error === null) this.#error = err
    },
    destroyed: () => this.#destroyed,
    destroy: () => this.destroy(),
    touch: () => refreshIdleTimer(this.socket), // the engine's progress counts as activity for setTimeout
    fd: () => socketFd(this.socket),
  }
  /** Our listeners on {@link socket}, removed when it is handed back. */
  #listeners: [event: string, fn: (...args: never[]) => void][] = []
  #releasing: Promise<net.Socket> | null = null
  /** {@link release} finished: the socket is its owner's again. */
  #released = false

  private constructor(socket: net.Socket, options: ZeroCopyOptions | undefined) {
    this.socket = socket
    owned.add(socket)
    this.#takeover = new Takeover(socket)
    // Waiting copy writes go inline once the transport settled everything issued before them.
    // A microtask, so that settle() is never re-entered from inside its own callback.
    this.#pending.onIssuedIdle = () => {
      if (this.#waitingScheduled) return
      this.#waitingScheduled = true
      queueMicrotask(() => {
        this.#waitingScheduled = false
        this.#sendWaiting()
      })
    }
    const policy = sendPolicy(options)
    this.#batchLimit = new BatchLimit(policy)
    const unusable = engineUnusable(socket)
    this.#held = new HeldOps(unusable === null, this.#pending, () => this.#transport)
    if (unusable !== null) this.#transport = this.#fallback(unusable)
    else {
      this.#takeover.take({ destroyed: () => this.#destroyed, releasing: () => this.#releasing, end: () => this.end() })
      whenWritable(socket, () => this.#adopt(policy))
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
    validateConnectOptions(options)
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
    return this.#transport?.zeroCopyCapable ?? true
  }

  /** Current counters; see {@link SocketStats}. */
  get stats(): SocketStats {
    const t = this.#transport?.stats()
    return {
      bytesSent: t?.bytesSent ?? 0,
      writes: this.#writes,
      zeroCopySends: t?.zeroCopySends ?? 0,
      copySends: t?.copySends ?? 0,
      sendfileCalls: t?.sendfileCalls ?? 0,
      sendfileBytes: t?.sendfileBytes ?? 0,
      notifications: t?.notifications ?? 0,
      copiedNotifications: t?.copiedNotifications ?? 0,
      fallbackReason: t?.fallbackReason ?? null,
      inFlightBytes: this.#pending.inFlightBytes,
      engineStartFailures: engineStartFailures(),
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
      return this.#pending.idle().then(() => ({ bytes: 0, zeroCopy: false, copied: false }))
    }
    const t = this.#transport
    const batchBelow = t?.batches ? this.#batchLimit.below(t) : 0
    const alone = bytes >= INLINE_ALONE && this.#batcher.empty && this.#mayInline(t)
    if (bytes < batchBelow && signal === undefined && !this.#held.holding && !alone) {
      this.#pending.inFlightBytes += bytes
      return this.#batcher.add(data, earlyAck && this.#pending.large === 0)
    }
    this.#batcher.flush()
    const inline = signal === undefined && this.#copiesInline(t)
    // Something of the socket is pending: wait in JS for it (libuv's write queue), to go inline after it.
    const wait = inline && this.#pending.size > 0
    let sentNow = 0
    if (inline && !wait) {
      try {
        sentNow = t.sendNow(data)
      } catch (e) {
        return Promise.reject(e)
      }
      if (sentNow === bytes) return Promise.resolve({ bytes, zeroCopy: false, copied: false })
    } else if (!inline) this.#waitingToTransport()
    // The rest goes to the transport (or waits), after the bytes sent inline.
    const rest = sentNow === 0 ? data : data.subarray(sentNow)
    pin(data) // held from here until the kernel released it
    const id = this.#pending.nextId()
    return new Promise<WriteResult>((resolve, reject) => {
      const untrack = trackWrite(data)
      const done = sentNow === 0 ? resolve : (r: WriteResult) => resolve({ ...r, bytes })
      const p: Pending = {
        resolve: untrack ? (r) => (untrack(), done(r)) : done,
        reject: untrack ? (e) => (untrack(), reject(e)) : reject,
        bytes: rest.byteLength,
        aborted: false,
        signal,
        syscall: 'sendZc',
      }
      this.#add(id, p)
      this.#pending.inFlightBytes += rest.byteLength
      if (wait) this.#wait(id, rest)
      else if (this.#held.holding) this.#held.push({ kind: 'write', id, data: rest })
      else this.#transport!.write(id, rest)
    })
  }

  /** Queues pending entry `id` (already added) in {@link #waiting}. */
  #wait(id: number, data: Uint8Array): void {
    this.#waiting.push({ id, data, total: data.byteLength })
    this.#pending.waiting++
  }

  /**
   * The last issued operation settled and copy writes wait: sends them inline in order while
   * nothing else is pending, until one does not fit; the rest of that one goes to the transport
   * (which waits for room), the others wait for it. If they may no longer go inline (the route
   * changed, an error), they all go to the transport, in order.
   */
  #sendWaiting(): void {
    const t = this.#transport
    while (this.#waiting.length > 0 && this.#pending.size === this.#waiting.length) {
      if (!this.#copiesInline(t)) return this.#waitingToTransport()
      const w = this.#waiting[0]
      let sentNow: number
      try {
        sentNow = t.sendNow(w.data)
      } catch (e) {
        // The socket is being destroyed (sendNow queued it), which rejects the others.
        this.#waiting.shift()
        this.#pending.waiting--
        return this.#pending.settle(w.id, (p) => p.reject(e))
      }
      this.#waiting.shift()
      this.#pending.waiting--
      if (sentNow === w.data.byteLength) {
        this.#pending.settle(w.id, (p) => p.resolve({ bytes: w.total, zeroCopy: false, copied: false }))
        continue
      }
      const p = this.#pending.get(w.id)!
      if (sentNow > 0) {
        p.bytes -= sentNow
        this.#pending.inFlightBytes -= sentNow
        const resolve = p.resolve
        p.resolve = (r) => resolve({ ...r, bytes: w.total })
      }
      return t.write(w.id, w.data.subarray(sentNow))
    }
  }

  /** Hands every waiting copy write to the transport, in order: before anything that cannot wait in JS. */
  #waitingToTransport(): void {
    const waiting = this.#waiting
    if (waiting.length === 0) return
    this.#waiting = []
    this.#pending.waiting -= waiting.length
    for (const w of waiting) this.#transport!.write(w.id, w.data)
  }

  /** Flushes the batch, then the waiting writes: what must precede an operation that does not batch or wait. */
  #flushCopies(): void {
    this.#batcher.flush()
    this.#waitingToTransport()
  }

  /**
   * Whether the next bytes may be sent inline on this thread now (`transport.sendNow`), as
   * libuv's `uv_try_write` does for net.Socket. The transport must allow it (a copy send
   * anyway: never in `'always'`), and nothing of this socket may be queued or in flight with
   * it, or the inline bytes could overtake queued ones. That is sufficient because:
   * - every operation handed to the transport (write, batch, file send, the remainder of an
   *   inline send) has a pending entry from before it is issued until the transport reports it
   *   settled, and the engine reports a write or file send settled only once all its bytes
   *   went to the kernel or were withdrawn (abort): no pending entry, no bytes left to send;
   * - operations not handed over yet are held (behind a file being opened, or before the
   *   socket is adopted): `held.holding`; small writes waiting in the batcher are flushed
   *   before any other write, and the batch itself is sent through here;
   * - after `end()` or `release()` no write is accepted, so nothing goes after the FIN or
   *   around a detach; after a failure (`error`) or `destroy()` nothing goes at all, and the
   *   descriptor is read from the live handle each time (`-1` once the socket closed it), so a
   *   reused descriptor number is never written to;
   * - everything runs on this thread: a socket and its engine belong to one thread (a worker
   *   has its own), and the engine sends on a duplicate of the same socket, so the kernel
   *   orders the inline bytes after everything the engine sent before.
   */
  #mayInline(t: Transport | null): t is Transport {
    return this.#pending.size === 0 && this.#copiesInline(t)
  }

  /**
   * Writes of this socket are copy sends that may go inline when nothing is pending, and wait
   * in JS ({@link #waiting}) otherwise: the transport allows it, nothing is held, no error.
   */
  #copiesInline(t: Transport | null): t is Transport {
    return t !== null && !this.#held.holding && this.#error === null && !this.#destroyed && t.sendsInline()
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
    this.#flushCopies()
    const id = this.#pending.nextId()
    const prepared = prepareFile(taken, options)
    prepared.catch(() => {}) // settled through the held queue
    return new Promise<SendFileResult>((resolve, reject) => {
      this.#add(id, {
        resolve: (r) => resolve({ bytes: r.bytes }),
        reject,
        bytes: 0,
        aborted: false,
        signal,
        onProgress: options?.onProgress,
        syscall: 'sendFile',
      })
      this.#held.push({ kind: 'file', id, file: prepared })
      void this.#held.drain()
    })
  }

  /** Registers pending operation `id`, and its abort listener. */
  #add(id: number, p: Pending): void {
    this.#pending.add(id, p)
    if (p.signal) {
      p.onAbort = () => {
        p.aborted = true
        if (!this.#held.withdraw(id)) this.#transport?.abort(id)
      }
      p.signal.addEventListener('abort', p.onAbort, { once: true })
    }
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
    this.#flushCopies()
    this.#releasing = this.#release()
    this.#releasing.catch(() => {})
    return this.#releasing
  }

  async #release(): Promise<net.Socket> {
    const ending = this.#ending
    if (ending) await ending
    await this.#held.done()
    await this.#pending.idle()
    if (!this.#destroyed) await this.#transport?.detach()
    if (this.#destroyed) throw this.#error ?? destroyedError()
    const s = this.socket
    for (const [event, fn] of this.#listeners) s.off(event, fn as (...args: unknown[]) => void)
    this.#listeners = []
    this.#takeover.restore()
    owned.delete(s)
    this.#released = true
    // A destroy() that came after the detach and before here found nothing to close.
    return s
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
    this.#flushCopies()
    this.#ending = this.#end()
    // end() may be called for its side effect only (socket.end() routes here): never leave an
    // unhandled rejection behind; callers that await it still see the error.
    this.#ending.catch(() => {})
    return this.#ending
  }

  async #end(): Promise<void> {
    await this.#held.done()
    if (this.#destroyed) throw this.#error ?? destroyedError()
    await this.#transport!.end()
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
    const err = this.#error ?? destroyedError()
    this.#pending.inFlightBytes -= this.#batcher.discard(err)
    const waiting = this.#waiting
    this.#waiting = []
    this.#pending.waiting -= waiting.length
    for (const w of waiting) this.#pending.settle(w.id, (p) => p.reject(err))
    this.#held.discard(err)
    this.#transport?.destroy(err)
    if (!this.socket.destroyed) this.socket.destroy(error)
  }

  /** Why a new write or file send cannot be queued now, or `null`; as node:net words it. */
  #refusal(signal: AbortSignal | undefined): Error | null {
    if (this.#destroyed) return this.#error ?? destroyedError()
    if (this.#releasing) return releasedError()
    if (this.#ending) return this.#peerEnded ? peerEndedError() : codedError('ERR_STREAM_WRITE_AFTER_END', 'write after end')
    if (signal?.aborted) return abortError(signal)
    return null
  }

  /**
   * Sends a flushed batch of small writes: inline as far as it fits when it may (see
   * {@link #mayInline}), the rest as one engine write.
   */
  #sendBatch(data: Uint8Array, settled: { resolve(r: WriteResult): void; reject(e: unknown): void }): void {
    const t = this.#transport
    let rest = data
    const inline = this.#copiesInline(t)
    const wait = inline && this.#pending.size > 0
    if (inline && !wait) {
      let sentNow: number
      try {
        sentNow = t.sendNow(data)
      } catch (e) {
        this.#pending.inFlightBytes -= data.byteLength
        return settled.reject(e)
      }
      this.#pending.inFlightBytes -= sentNow
      if (sentNow === data.byteLength) return settled.resolve({ bytes: sentNow, zeroCopy: false, copied: false })
      rest = data.subarray(sentNow)
    } else if (!inline) this.#waitingToTransport()
    const id = this.#pending.nextId()
    this.#pending.add(id, { ...settled, bytes: rest.byteLength, aborted: false, syscall: 'sendZc', batch: true })
    if (wait) this.#wait(id, rest)
    else this.#transport!.write(id, rest)
  }

  /** The fallback transport, for `reason`. */
  #fallback(reason: string): Transport {
    return new FallbackTransport(this.socket, reason, this.#takeover.ownEnd, this.#pending, this.#hooks)
  }

  /** Chooses the transport once the socket is writable: the engine, or the fallback if it refuses the socket. */
  #adopt(policy: SendPolicy): void {
    if (this.#destroyed) return
    try {
      this.#transport = new EngineTransport(socketFd(this.socket), policy, this.#pending, this.#hooks)
    } catch (e) {
      // Not a stream socket the engine can use: write through the socket, in order.
      const err = normalizeBindingError(e) as ZeroCopyError
      this.#transport = this.#fallback(`engine refused the socket: ${err.code ?? err.message}`)
      this.#takeover.giveUp()
    }
    void this.#held.drain()
  }
}
