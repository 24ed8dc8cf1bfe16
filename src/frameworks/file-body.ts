/**
 * `FileBody`: a file response body for frameworks that write stream bodies with
 * `body.pipe(res)` (Fastify's `reply.send(stream)`, Koa's `ctx.body = stream`).
 *
 * It is an ordinary `Readable` of a window of a file, opened only when first read, so anything
 * between the handler and the socket (`@fastify/compress`, an `onSend` hook, Koa middleware
 * that wraps `ctx.body`) reads the bytes through the framework as from any stream. When the
 * framework pipes it straight into its own request's `ServerResponse` on a kernel TCP socket,
 * `pipe()` answers with {@link respondWithFile} instead: the status and the headers the
 * framework has set on `res` go out as they are, the body page-cache-to-socket.
 *
 * Frameworks watch the body with `finished()` and destroy it when `res` finishes. For the
 * zero-copy path the body must therefore look like a stream that ended: `destroy()` without an
 * error after the response finished ends it quietly (`'end'`, then the normal auto-destroy),
 * so the framework sees a complete body, not a premature close. A failure before the headers
 * went out is emitted as the body's `'error'`, which the framework turns into its own error
 * response (Fastify's error handler, Koa's `ctx.onerror`), as a failing file stream would be;
 * after them (a client gone) the body just stops, as a file stream piped into a dead response.
 * @module
 */
import { createReadStream, type ReadStream } from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import { Readable } from 'node:stream'
import * as tls from 'node:tls'

import { respondWithFile, type RespondWithFileResult } from '../http'
import { socketFd } from '../net-internals'

/** How a {@link FileBody} went out, once it did. */
export interface FileBodyResult {
  /** The body went page-cache-to-socket. */
  zeroCopy: boolean
  /** Why it was streamed instead, or `null`. */
  fallbackReason: string | null
}

/** Where a {@link FileBody}'s bytes are: `length` bytes at `offset` of the file at `path`. */
export interface FileWindow {
  /** The file's path. */
  path: string
  /** Bytes; where the body starts in the file. */
  offset: number
  /** **Default:** the rest of the file. */
  length?: number | undefined
  /** Read size of the streamed path. **Default:** `fs.createReadStream`'s. */
  highWaterMark?: number | undefined
}

/** Why `res` cannot take a body page-cache-to-socket, or `null` when it can. */
export function streamReason(res: http.ServerResponse): string | null {
  if (res.headersSent) return 'the headers were already sent, so the body is streamed through the framework'
  if (res.hasHeader('trailer') || res.hasHeader('transfer-encoding')) return 'the response is chunked (trailers), so the body is streamed through the framework'
  const socket = res.socket
  // A pipelined response waits for its socket; node:http's own sockets are kernel sockets.
  if (socket === null) return null
  if (socket instanceof tls.TLSSocket) return 'TLS socket: bytes must go through TLS, so the body is streamed through the framework'
  if (!(socket instanceof net.Socket) || socketFd(socket) < 0) return 'no kernel socket (e.g. fastify.inject()), so the body is streamed through the framework'
  return null
}

/**
 * A window of a file as a `Readable` that goes page-cache-to-socket when piped straight into
 * its own request's `ServerResponse` (see the module doc).
 */
export class FileBody extends Readable {
  readonly #req: http.IncomingMessage | null
  readonly #file: FileWindow
  #inner: ReadStream | null = null
  #res: http.ServerResponse | null = null
  #endingQuietly = false
  /** How the body went out: `null` until it did (or while it is streaming). */
  result: FileBodyResult | null = null
  /** The file's path, as `fs.ReadStream#path` (what `onSend` hooks look at). */
  readonly path: string
  /** The first byte's offset in the file, as `fs.ReadStream#start`. */
  readonly start: number
  /** The last byte's offset (inclusive), as `fs.ReadStream#end`: `start - 1` for an empty body, `Infinity` for the rest of the file. */
  readonly end: number

  /**
   * @param req - The request this body answers: only a pipe into its own response is direct
   *   (`null`: into any `ServerResponse`).
   * @param file - The window of the file.
   */
  constructor(req: http.IncomingMessage | null, file: FileWindow) {
    super()
    this.#req = req
    this.#file = file
    this.path = file.path
    this.start = file.offset
    this.end = file.length === undefined ? Infinity : file.offset + file.length - 1
  }

  override _read(): void {
    if (this.#inner !== null) {
      this.#inner.resume()
      return
    }
    const { path, offset, length, highWaterMark } = this.#file
    if (length === 0) {
      this.push(null)
      return
    }
    this.result ??= { zeroCopy: false, fallbackReason: 'the body is read by a stream between the handler and the response (a body transform)' }
    const inner = createReadStream(path, { start: offset, end: length === undefined ? undefined : offset + length - 1, highWaterMark })
    inner.on('data', (chunk) => {
      if (!this.push(chunk)) inner.pause()
    })
    inner.once('end', () => this.push(null))
    inner.once('error', (err) => this.destroy(err))
    this.#inner = inner
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#inner?.destroy()
    callback(err)
  }

  override destroy(error?: Error): this {
    // The framework destroys the body once `res` finished: after a direct response that is
    // a complete body, so it ends as one (see the module doc). (The body ends before `res`
    // does, so this is a guard for a framework that destroys it another way.)
    if (error === undefined && this.#res?.writableFinished === true && !this.readableEnded && !this.destroyed) {
      this.#endQuietly()
      return this
    }
    return super.destroy(error)
  }

  /** Ends the body of a direct response: `'end'` with no data, then the usual auto-destroy. */
  #endQuietly(): void {
    if (this.#endingQuietly) return
    this.#endingQuietly = true
    this.push(null)
    this.resume()
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    const res = destination as unknown as http.ServerResponse
    const own = res instanceof http.ServerResponse && (this.#req === null || res.req === this.#req)
    if (!own || this.#inner !== null || this.#res !== null) {
      return super.pipe(destination, options)
    }
    const reason = streamReason(res)
    if (reason !== null) {
      this.result = { zeroCopy: false, fallbackReason: reason }
      return super.pipe(destination, options)
    }
    this.#res = res
    this.#respond(res)
    return destination
  }

  #respond(res: http.ServerResponse): void {
    const { path, offset, length } = this.#file
    this.#endAfterBody(res)
    respondWithFile(res, path, {}, { offset, length }).then(
      (result: RespondWithFileResult) => {
        this.result = { zeroCopy: result.zeroCopy, fallbackReason: result.fallbackReason }
      },
      (err: Error) => {
        // Before the headers: the framework's error response. After: the client is gone and
        // respondWithFile has destroyed the connection; the body stops as a file stream piped
        // into a dead response does (the framework sees a premature close, not EPIPE).
        if (res.headersSent) super.destroy()
        else super.destroy(err)
      },
    )
  }

  /**
   * Makes `respondWithFile`'s `res.end()` wait for this body's `'end'`: a framework that
   * watches both (`stream.pipeline(body, res)` in Koa 3) sees the body end before `res`
   * finishes and closes, as with a piped stream, not a premature close. The `'end'` (or a
   * `'close'`, if the body is destroyed meanwhile) always follows, so `res` always ends.
   */
  #endAfterBody(res: http.ServerResponse): void {
    const end = res.end
    res.end = ((...args: Parameters<typeof end>) => {
      res.end = end
      if (this.readableEnded || this.destroyed) return end.apply(res, args)
      // A body handed to end() (a small file written with its headers in one write) goes now;
      // only the end waits, and it carries no data (the framework may have ended `res` by then).
      const chunk: unknown = args[0]
      const callback = args.find((a): a is () => void => typeof a === 'function')
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') res.write(chunk as Uint8Array)
      let ended = false
      const endRes = () => {
        if (ended) return
        ended = true
        ;(end as (this: http.ServerResponse, cb?: () => void) => unknown).call(res, callback)
      }
      this.once('end', endRes).once('close', endRes)
      this.#endQuietly()
      return res
    }) as typeof end
  }
}
