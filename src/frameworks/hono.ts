/**
 * `zerocopy-socket/hono`: a drop-in for `@hono/node-server/serve-static`'s `serveStatic`, with
 * file bodies sent page-cache-to-socket by @hono/node-server, plus 304.
 *
 * It is @hono/node-server's own `serveStatic` (a peer dependency: its path checks, index,
 * `precompressed`, `rewriteRequestPath`, `onFound`/`onNotFound`, ranges, headers), loaded as a
 * private instance whose `fs.createReadStream` returns an unopened {@link FileBody} and whose
 * `createStreamBody` turns it into a lazy web `ReadableStream`: the `Response` goes through
 * Hono like any other, so middleware before it (CORS) and after it (`hono/compress`, headers
 * appended after `next()`) see and change it. Then, in its own terms, a 304 for a GET or HEAD
 * whose `If-Modified-Since` is not older than `Last-Modified` (which Hono's `serveStatic`
 * does not answer).
 *
 * Zero-copy happens where @hono/node-server writes the response. For each file response on a
 * kernel TCP socket, `outgoing.writeHead` is wrapped once. @hono/node-server calls it with the
 * final status and headers, and takes the reader of the body it writes either just before
 * (when Hono rebuilt the response: its first read is then pending) or just after, in the same
 * synchronous run. The head is held (set on `outgoing`, not sent). If it is a 200 or 206 of
 * this body's length and this body's own reader is the one taken, the response is this
 * body's, and {@link respondWithFile} sends head and body; the stream, which produced nothing,
 * closes when that is done, and @hono/node-server's `end()` after it is a no-op. Otherwise
 * the held head goes out as node:http sends what is set on `outgoing`, and the body is
 * streamed to whoever reads it.
 *
 * Invariant (no hang, never a wrong byte): a read of the body waits for that decision at most
 * until the current run of microtasks ends (@hono/node-server writes the head within it); a
 * read through a transform (`pipeThrough`, `tee`) does not wait at all. Where there is no
 * `outgoing` to wait for (another runtime, `app.request()`, TLS, HTTP/2) it is streamed.
 * @module
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import { Readable } from 'node:stream'

import fresh from 'fresh'
import type { Context, Env, MiddlewareHandler } from 'hono'

import { cachedStatFs } from './cached-fs'
import { FileBody, streamReason, type FileBodyResult } from './file-body'
import { loadPrivateModule, resolvePeer } from './private-module'
import { respondWithFile } from '../http'

/** Options of {@link serveStatic}: those of `@hono/node-server/serve-static`. */
export interface ServeStaticOptions<E extends Env = Env> {
  /** Root directory; a relative one is from the working directory. */
  root?: string | undefined
  /** Serve this file whatever the request path. */
  path?: string | undefined
  /** Index file for a directory. **Default:** `'index.html'`. */
  index?: string | undefined
  /** Serve `file.br`, `file.zst` or `file.gz` when the client accepts it and it exists. **Default:** `false`. */
  precompressed?: boolean | undefined
  /** Allow `%` in the routed request path. **Default:** `false`. */
  allowPercentInPath?: boolean | undefined
  /** Maps the request path to a file path under `root`. */
  rewriteRequestPath?: ((path: string, c: Context<E>) => string) | undefined
  /** Called when a file was found, before the response. */
  onFound?: ((path: string, c: Context<E>) => void | Promise<void>) | undefined
  /** Called when no file matched (the middleware then calls `next()`). */
  onNotFound?: ((path: string, c: Context<E>) => void | Promise<void>) | undefined
}

type HonoServeStatic = <E extends Env>(options?: ServeStaticOptions<E>) => MiddlewareHandler<E>

/** Sets what `writeHead(status, [message], [headers])` would send, without sending it. */
function applyHead(res: http.ServerResponse, args: unknown[]): void {
  const [status, ...rest] = args as [number, ...unknown[]]
  res.statusCode = status
  if (typeof rest[0] === 'string') res.statusMessage = rest.shift() as string
  const headers = rest[0]
  if (Array.isArray(headers)) {
    const pairs: [string, unknown][] = Array.isArray(headers[0]) ? (headers as [string, unknown][]) : []
    if (!Array.isArray(headers[0])) for (let i = 0; i + 1 < headers.length; i += 2) pairs.push([headers[i] as string, headers[i + 1]])
    for (const [name, value] of pairs) res.setHeader(name, value as string)
  } else if (headers !== null && typeof headers === 'object') {
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value as string)
  }
}

/** The `Content-Length` a head sets, as a number, or `undefined`. */
function headLength(res: http.ServerResponse): number | undefined {
  const value = res.getHeader('content-length')
  return value === undefined ? undefined : Number(value)
}

/** One file response's body: the web stream Hono sees, and how it goes out. */
class DirectBody {
  readonly file: FileBody
  readonly stream: ReadableStream<Uint8Array>
  result: FileBodyResult | null = null
  /** The response's `Content-Length` as Hono's serveStatic set it (the body's length). */
  length: number | undefined
  #mode: 'waiting' | 'direct' | 'stream' = 'waiting'
  #outgoing: http.ServerResponse | null = null
  /** The stream's own `getReader()` was called (by @hono/node-server, or a body mixin). */
  #publicReader = false
  /** Wakes a read that waits for the head (see `#pullWaiting`). */
  #wake: (() => void) | null = null
  /** Set between a held head and the end of its synchronous run: the reader would be @hono/node-server's. */
  #onReader: (() => void) | null = null
  #sent: Promise<void> | null = null

  constructor(file: FileBody) {
    this.file = file
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null
    this.stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (this.#mode === 'waiting') await this.#pullWaiting()
          if (this.#mode === 'direct') {
            try {
              await this.#sent
            } catch (err) {
              // Before the head: @hono/node-server's error response. After: respondWithFile
              // has closed the connection (a client gone), and there is nothing to report.
              if (!this.#outgoing?.headersSent) throw err
            }
            controller.close()
            return
          }
          reader ??= (Readable.toWeb(this.file) as ReadableStream<Uint8Array>).getReader()
          const { done, value } = await reader.read()
          if (done) controller.close()
          else controller.enqueue(value)
        },
        cancel: async (reason) => {
          this.streamThrough('the body was cancelled')
          if (reader !== null) await reader.cancel(reason)
          else this.file.destroy()
        },
      },
      // Nothing is read before a consumer asks (a HEAD's or a 304's body is never opened).
      { highWaterMark: 0 },
    )
    const getReader = this.stream.getReader
    this.stream.getReader = ((...args: Parameters<typeof getReader>) => {
      const reader = getReader.apply(this.stream, args)
      this.#publicReader = true
      const onReader = this.#onReader
      this.#onReader = null
      onReader?.()
      return reader
    }) as typeof getReader
  }

  /**
   * A read before the head was written. Through the stream's own reader it may be
   * @hono/node-server's, which reads before it writes the head when the response was rebuilt
   * (headers changed after `next()`): it writes the head in the same run of microtasks, so
   * the read waits for the head until then, never longer. A read through a transform's
   * internal reader (`pipeThrough`, `tee`) is a transform's: streamed at once.
   */
  async #pullWaiting(): Promise<void> {
    if (this.#publicReader && this.#outgoing !== null) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve
        process.nextTick(resolve)
      })
      this.#wake = null
    }
    this.streamThrough('the body is read before the response is written (a body transform), so it is streamed through Hono')
  }

  /** Streams the body through whoever reads it, unless that was decided already. */
  streamThrough(reason: string): void {
    if (this.#mode !== 'waiting') return
    this.#mode = 'stream'
    this.result = { zeroCopy: false, fallbackReason: reason }
  }

  /** Whether the head set on `outgoing` is one this body answers (a 200 or 206 of its length). */
  #headFits(outgoing: http.ServerResponse): boolean {
    const length = headLength(outgoing)
    return (outgoing.statusCode === 200 || outgoing.statusCode === 206) && (length === undefined || length === this.length)
  }

  /** Waits for @hono/node-server to write the response on `outgoing` (see the module doc). */
  bind(outgoing: http.ServerResponse): void {
    this.#outgoing = outgoing
    const writeHead = outgoing.writeHead
    const hold = (res: http.ServerResponse, args: unknown[]): http.ServerResponse => {
      outgoing.writeHead = writeHead
      if (this.#mode !== 'waiting') return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(res, args)
      applyHead(outgoing, args)
      // @hono/node-server flushes the head right after writing it: held until this run ends.
      const flushHeaders = outgoing.flushHeaders
      let flushed = false
      outgoing.flushHeaders = () => void (flushed = true)
      const fits = this.#headFits(outgoing)
      if (this.#wake !== null && fits) {
        // Its read is waiting: the response being written is this body's.
        this.#respond(outgoing)
        this.#wake()
      } else if (fits) {
        // Otherwise it takes the reader of the body it writes in this same run.
        this.#onReader = () => this.#respond(outgoing)
      }
      queueMicrotask(() => {
        this.#onReader = null
        outgoing.flushHeaders = flushHeaders
        this.streamThrough('@hono/node-server wrote another response')
        if (this.#mode !== 'direct' && flushed && !outgoing.headersSent && !outgoing.writableEnded) outgoing.flushHeaders()
      })
      return res
    }
    outgoing.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
      return hold(this, args)
    } as typeof writeHead
    outgoing.once('close', () => {
      outgoing.writeHead = writeHead
      this.streamThrough('the connection closed first')
    })
  }

  #respond(outgoing: http.ServerResponse): void {
    this.#mode = 'direct'
    const { path, start, end } = this.file
    this.#sent = respondWithFile(outgoing, path, {}, { offset: start, length: end === Infinity ? undefined : end - start + 1 }).then((result) => {
      this.result = { zeroCopy: result.zeroCopy, fallbackReason: result.fallbackReason }
    })
    // The pending read reports a failure (@hono/node-server then ends the connection); a
    // stream cancelled meanwhile has no read left to report it to.
    this.#sent.catch(() => {})
  }
}

let honoServeStatic: HonoServeStatic | undefined
/** The body `createStreamBody` made last; `onFound` takes it in the same synchronous run. */
let created: DirectBody | null = null
const bodies = new WeakMap<Context, DirectBody>()
/** Contexts answered with a file (GET or HEAD). */
const found = new WeakSet<Context>()

/** @hono/node-server's serveStatic, privately loaded with unopened file bodies. */
function loadServeStatic(): HonoServeStatic {
  const entry = resolvePeer('@hono/node-server/serve-static', 'zerocopy-socket/hono', '@hono/node-server')
  const lazyFs = cachedStatFs({
    createReadStream: ((path: string, options?: { start?: number; end?: number }) => {
      const offset = options?.start ?? 0
      return new FileBody(null, { path, offset, length: options?.end === undefined ? undefined : options.end - offset + 1 })
    }) as unknown as typeof fs.createReadStream,
  })
  return (
    loadPrivateModule(entry, (id, load) => {
      if (id === 'node:fs') return lazyFs
      if (!/^\.\/utils\/stream\.c?js$/.test(id)) return load(id)
      const utils = load(id) as { createStreamBody: (stream: Readable) => ReadableStream }
      return {
        ...utils,
        createStreamBody: (stream: Readable) => {
          if (!(stream instanceof FileBody)) return utils.createStreamBody(stream)
          created = new DirectBody(stream)
          return created.stream
        },
      }
    }) as { serveStatic: HonoServeStatic }
  ).serveStatic
}

/** Whether the request's validators make a 200 with this `Last-Modified` a 304 (the `fresh` module, as `send`). */
function notModified(c: Context, lastModified: string | null): boolean {
  if (!lastModified || c.req.header('Range')) return false
  const header = (name: string) => c.req.header(name)
  return fresh(
    { 'if-modified-since': header('If-Modified-Since'), 'if-none-match': header('If-None-Match'), 'cache-control': header('Cache-Control') },
    { 'last-modified': lastModified },
  )
}

/**
 * Static-file middleware, a drop-in for `@hono/node-server/serve-static`'s `serveStatic`:
 * `app.use('/static/*', serveStatic({ root: './' }))`. Falls through to `next()` when no file
 * matches. On @hono/node-server over TCP the body goes page-cache-to-socket.
 * @param options - Those of `@hono/node-server/serve-static`.
 */
export function serveStatic<E extends Env = Env>(options: ServeStaticOptions<E> = { root: '' }): MiddlewareHandler<E> {
  honoServeStatic ??= loadServeStatic()
  const userOnFound = options.onFound
  const middleware = honoServeStatic<E>({
    ...options,
    onFound: (path, c) => {
      found.add(c)
      // A GET's body was made just before, in the same synchronous run (a HEAD has none).
      if (created !== null && created.file.path === path && c.req.method === 'GET') bodies.set(c, created)
      created = null
      return userOnFound?.(path, c)
    },
  })
  return async (c, next) => {
    const result = await middleware(c, next)
    // Only a file's answer (onFound was called), not what `next()` returned.
    if (!(result instanceof Response) || !found.has(c)) return result
    const body = bodies.get(c)
    if (result.status === 200 && notModified(c, result.headers.get('Last-Modified'))) {
      if (body !== undefined) void body.stream.cancel()
      for (const name of ['Content-Encoding', 'Content-Length', 'Content-Type']) c.header(name, undefined)
      return c.body(null, 304)
    }
    if (body === undefined) return result
    const outgoing = (c.env as { outgoing?: unknown } | undefined)?.outgoing
    if (!(outgoing instanceof http.ServerResponse)) {
      body.streamThrough('no node:http response (another runtime, app.request(), or HTTP/2), so the body is streamed through Hono')
      return result
    }
    const reason = streamReason(outgoing)
    body.length = Number(result.headers.get('Content-Length') ?? NaN)
    if (reason !== null) body.streamThrough(reason)
    else body.bind(outgoing)
    return result
  }
}

/**
 * How the file body of the response to `c` went out (`null` before it did, or when `c` was
 * not answered with a file): `zeroCopy`, or the `fallbackReason` it was streamed for.
 */
export function fileResult(c: Context): FileBodyResult | null {
  return bodies.get(c)?.result ?? null
}
