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
 * kernel TCP socket, `outgoing.writeHead` is wrapped once: when @hono/node-server calls it, the
 * status and headers are final. If the response it is writing still has this body (nothing
 * replaced it), the headers go on `outgoing` and {@link respondWithFile} sends them and the
 * body; the stream, which produced nothing, closes when the response is done, and
 * @hono/node-server's `end()` after it is a no-op. Otherwise the body is streamed, as by Hono.
 *
 * Invariant (no hang): the body's reads wait for that decision, and it is always made: by the
 * first `writeHead` on `outgoing`, by `outgoing` closing, or at once where there is no
 * `outgoing` to wait for (another runtime, `app.request()`, TLS, HTTP/2).
 * @module
 */
import * as fs from 'node:fs'
import http from 'node:http'
import { Readable } from 'node:stream'

import type { Context, Env, MiddlewareHandler } from 'hono'

import { FileBody, streamReason, type FileBodyResult } from './file-body'
import { loadPrivateModule, resolvePeer } from './private-module'
import { respondWithFile } from '../http'

/** Options of {@link serveStatic}: those of `@hono/node-server/serve-static`. */
export interface ServeStaticOptions<E extends Env = Env> {
  /** Root directory; a relative one is from the working directory. */
  root?: string
  /** Serve this file whatever the request path. */
  path?: string
  /** Index file for a directory. **Default:** `'index.html'`. */
  index?: string
  /** Serve `file.br`, `file.zst` or `file.gz` when the client accepts it and it exists. **Default:** `false`. */
  precompressed?: boolean
  /** Allow `%` in the routed request path. **Default:** `false`. */
  allowPercentInPath?: boolean
  /** Maps the request path to a file path under `root`. */
  rewriteRequestPath?: (path: string, c: Context<E>) => string
  /** Called when a file was found, before the response. */
  onFound?: (path: string, c: Context<E>) => void | Promise<void>
  /** Called when no file matched (the middleware then calls `next()`). */
  onNotFound?: (path: string, c: Context<E>) => void | Promise<void>
}

type HonoServeStatic = <E extends Env>(options?: ServeStaticOptions<E>) => MiddlewareHandler<E>

/** One file response's body: the web stream Hono sees, and how it goes out. */
class DirectBody {
  readonly file: FileBody
  readonly stream: ReadableStream<Uint8Array>
  result: FileBodyResult | null = null
  #decide!: (direct: boolean) => void
  readonly #decided = new Promise<boolean>((resolve) => (this.#decide = resolve))
  #sent: Promise<void> | null = null

  constructor(file: FileBody) {
    this.file = file
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null
    this.stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          if (await this.#decided) {
            await this.#sent
            controller.close()
            return
          }
          reader ??= (Readable.toWeb(this.file) as ReadableStream<Uint8Array>).getReader()
          const { done, value } = await reader.read()
          if (done) controller.close()
          else controller.enqueue(value)
        },
        cancel: async (reason) => {
          this.#decide(false)
          if (reader !== null) await reader.cancel(reason)
          else this.file.destroy()
        },
      },
      // Nothing is read before a consumer asks (a HEAD's or a 304's body is never opened).
      { highWaterMark: 0 },
    )
  }

  /** Streams the body through whoever reads it (no `outgoing`, or not one we can use). */
  streamThrough(reason: string): void {
    this.result = { zeroCopy: false, fallbackReason: reason }
    this.#decide(false)
  }

  /** Waits for @hono/node-server to write the response on `outgoing` (see the module doc). */
  bind(c: Context, outgoing: http.ServerResponse): void {
    const writeHead = outgoing.writeHead
    const restore = () => {
      if (outgoing.writeHead === wrapped) outgoing.writeHead = writeHead
    }
    const wrapped = function (this: http.ServerResponse, ...args: unknown[]) {
      restore()
      const ours = body.#isBodyOf(c.res)
      if (!ours) {
        body.streamThrough('a middleware replaced the body (a body transform), so it is streamed through Hono')
        return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args)
      }
      body.#respond(outgoing, args)
      return this
    } as typeof writeHead
    const body = this
    outgoing.writeHead = wrapped
    outgoing.once('close', () => {
      restore()
      this.#decide(false)
    })
  }

  #isBodyOf(res: Response): boolean {
    try {
      return res.body === this.stream
    } catch {
      return false
    }
  }

  #respond(outgoing: http.ServerResponse, args: unknown[]): void {
    const [status, ...rest] = args as [number, ...unknown[]]
    const headers = (typeof rest[0] === 'string' ? rest[1] : rest[0]) as http.OutgoingHttpHeaders | undefined
    outgoing.statusCode = status
    for (const [name, value] of Object.entries(headers ?? {})) if (value !== undefined) outgoing.setHeader(name, value)
    // @hono/node-server flushes the headers right after writeHead: not yet (respondWithFile does).
    const flushHeaders = outgoing.flushHeaders
    outgoing.flushHeaders = () => {}
    queueMicrotask(() => {
      outgoing.flushHeaders = flushHeaders
    })
    const { path, start, end } = this.file
    this.#sent = respondWithFile(outgoing, path, {}, { offset: start, length: end === Infinity ? undefined : end - start + 1 }).then((result) => {
      this.result = { zeroCopy: result.zeroCopy, fallbackReason: result.fallbackReason }
    })
    // The pending read reports a failure (@hono/node-server then ends the connection); a
    // stream cancelled meanwhile has no read left to report it to.
    this.#sent.catch(() => {})
    this.#decide(true)
  }
}

let honoServeStatic: HonoServeStatic | undefined
/** The body `createStreamBody` made last; `onFound` takes it in the same synchronous run. */
let created: DirectBody | null = null
const bodies = new WeakMap<Context, DirectBody>()

/** @hono/node-server's serveStatic, privately loaded with unopened file bodies. */
function loadServeStatic(): HonoServeStatic {
  const entry = resolvePeer('@hono/node-server/serve-static', 'zerocopy-socket/hono', '@hono/node-server')
  const lazyFs = Object.create(fs, {
    createReadStream: {
      value: (path: string, options?: { start?: number; end?: number }) => {
        const offset = options?.start ?? 0
        return new FileBody(null, { path, offset, length: options?.end === undefined ? undefined : options.end - offset + 1 })
      },
    },
  }) as typeof fs
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

/** Whether the client's `If-Modified-Since` makes a 200 for this `Last-Modified` a 304. */
function notModified(c: Context, lastModified: string | null): boolean {
  const since = c.req.header('If-Modified-Since')
  if (!since || !lastModified || c.req.header('If-None-Match') || c.req.header('Range')) return false
  const modified = Date.parse(lastModified)
  return !Number.isNaN(modified) && modified <= Date.parse(since)
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
      // A GET's body was made just before, in the same synchronous run (a HEAD has none).
      if (created !== null && created.file.path === path && c.req.method === 'GET') bodies.set(c, created)
      created = null
      return userOnFound?.(path, c)
    },
  })
  return async (c, next) => {
    const result = await middleware(c, next)
    const body = bodies.get(c)
    if (!(result instanceof Response) || body === undefined) return result
    if (result.status === 200 && notModified(c, result.headers.get('Last-Modified'))) {
      void body.stream.cancel()
      for (const name of ['Content-Encoding', 'Content-Length', 'Content-Type']) c.header(name, undefined)
      return c.body(null, 304)
    }
    const outgoing = (c.env as { outgoing?: unknown } | undefined)?.outgoing
    if (!(outgoing instanceof http.ServerResponse)) {
      body.streamThrough('no node:http response (another runtime, app.request(), or HTTP/2), so the body is streamed through Hono')
      return result
    }
    const reason = streamReason(outgoing)
    if (reason !== null) body.streamThrough(reason)
    else body.bind(c, outgoing)
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
