/**
 * `zerocopy-socket/koa`: `serve(root, opts)` in the shape of koa-static and `send(ctx, path,
 * opts)` in the shape of koa-send, with file bodies sent page-cache-to-socket, ranges and 304.
 *
 * `send` is koa-send 5 (a peer dependency): its path resolution under `root`, hidden files,
 * index, extensions, `.br`/`.gz` variants (`brotli`, `gzip`), `setHeaders`, `Content-Type`,
 * `Last-Modified`, `Cache-Control` and errors, loaded as a private instance whose
 * `fs.createReadStream` returns a {@link FileBody} that is not opened yet. Then, in Koa's own
 * terms: `Vary: Accept-Encoding` (with `brotli` or `gzip` on), `Accept-Ranges`, a 304
 * when `ctx.fresh`, and a 206/416 for a `Range` (honouring `If-Range`), which koa-send leaves
 * to other middleware. The body stays `ctx.body`, so Koa sets the status (not its initial 404),
 * middleware before and after sees and may replace it, and only when Koa itself pipes it into
 * `ctx.res` does it go through `respondWithFile`. `serve` follows koa-static 5 (MIT, © 2015
 * Koa contributors): GET and HEAD only, `defer`, fall through to `next()` on a 404.
 * @module
 */
import * as fs from 'node:fs'
import type * as http from 'node:http'
import { resolve } from 'node:path'

import parseRange from 'range-parser'

import { cachedStatFs } from './cached-fs'
import { FileBody } from './file-body'
import { loadPrivateModule, resolvePeer } from './private-module'

/** The parts of a Koa context this module uses (Koa 2 and 3). */
export interface KoaContext {
  /** The node:http request. */
  req: http.IncomingMessage
  /** The node:http response the body is piped into. */
  res: http.ServerResponse
  /** The request method. */
  method: string
  /** The request path (what `serve` looks up under `root`). */
  path: string
  /** The response body: a {@link FileBody} once a file is sent. */
  body: unknown
  /** The response status (Koa's starts at 404 and becomes 200 when a body is set). */
  status: number
  /** Whether the request's validators match the response's (`If-Modified-Since`, `If-None-Match`). */
  readonly fresh: boolean
  /** A request header. */
  get(field: string): string
  /** Sets a response header. */
  set(field: string, value: string): void
  /** Adds a field to the response's `Vary`. */
  vary(field: string): void
  /** The best of `encodings` the request accepts, or `false`. */
  acceptsEncodings(...encodings: string[]): string | false
  /** The response, for reading headers set on it. */
  response: { get(field: string): unknown }
}

/** Koa's `next`. */
export type KoaNext = () => Promise<unknown>

/** A Koa middleware. */
export type KoaMiddleware = (ctx: KoaContext, next: KoaNext) => Promise<void>

/** Options of {@link send}: koa-send's, plus `acceptRanges`. */
export interface SendOptions {
  /** Root directory to restrict file access to. **Default:** `''`. */
  root?: string | undefined
  /** Index file served for a directory, or `false`. **Default:** none (`serve`: `'index.html'`). */
  index?: string | false | undefined
  /** `Cache-Control` max-age in milliseconds. **Default:** `0`. */
  maxage?: number | undefined
  /** Same as `maxage`. */
  maxAge?: number | undefined
  /** Add `immutable` to `Cache-Control`. **Default:** `false`. */
  immutable?: boolean | undefined
  /** Serve hidden files (a path segment starting with a dot). **Default:** `false`. */
  hidden?: boolean | undefined
  /** Serve `/dir` as `/dir/` (with `index`) without a redirect. **Default:** `true`. */
  format?: boolean | undefined
  /** Extensions tried for a path without one, e.g. `['html']`. **Default:** `false`. */
  extensions?: string[] | false | undefined
  /** Serve `file.br` when the client accepts `br` and it exists. **Default:** `true`. */
  brotli?: boolean | undefined
  /** Serve `file.gz` when the client accepts `gzip` and it exists. **Default:** `true`. */
  gzip?: boolean | undefined
  /** Called before the body is set, to set custom headers on `res`. */
  setHeaders?: ((res: http.ServerResponse, path: string, stats: fs.Stats) => void) | undefined
  /** Answer `Range` requests (206/416, `Accept-Ranges: bytes`). **Default:** `true`. */
  acceptRanges?: boolean | undefined
}

/** Options of {@link serve}: koa-static's. */
export interface ServeOptions extends SendOptions {
  /** Let downstream middleware answer first; serve only if none did. **Default:** `false`. */
  defer?: boolean | undefined
}

type KoaSend = (ctx: KoaContext, path: string, opts?: SendOptions) => Promise<string | undefined>

let koaSend: KoaSend | undefined

/** koa-send, privately loaded with a `fs` whose `createReadStream` makes unopened {@link FileBody}s. */
function loadKoaSend(): KoaSend {
  const entry = resolvePeer('koa-send', 'zerocopy-socket/koa', 'koa-send@5')
  const lazyFs = cachedStatFs({ createReadStream: ((path: string) => new FileBody(null, { path, offset: 0 })) as unknown as typeof fs.createReadStream })
  return loadPrivateModule(entry, (id, load) => (id === 'fs' ? lazyFs : load(id))) as KoaSend
}

/** Whether `If-Range` (if any) still names this representation, as `send` decides it. */
function rangeFresh(ctx: KoaContext): boolean {
  const ifRange = ctx.get('If-Range')
  if (!ifRange) return true
  if (ifRange.includes('"')) {
    const etag = ctx.response.get('ETag')
    return typeof etag === 'string' && etag !== '' && ifRange.includes(etag)
  }
  const lastModified = Date.parse(String(ctx.response.get('Last-Modified')))
  return !Number.isNaN(lastModified) && lastModified <= Date.parse(ifRange)
}

/**
 * Sends the file at `path` (under `opts.root`) as `ctx.body`, as koa-send does, plus ranges,
 * 304 and `Vary` (see the module doc).
 * @returns The path of the file served, or `undefined` when nothing was (a hidden file, a
 *   directory without index).
 * @throws koa-send's errors: 404 (`status`) for a missing file, 400 for a malformed path,
 *   403 for a path outside `root`, 500 for other file errors.
 */
export async function send(ctx: KoaContext, path: string, opts: SendOptions = {}): Promise<string | undefined> {
  koaSend ??= loadKoaSend()
  const served = await koaSend(ctx, path, opts)
  const placeholder = ctx.body
  const size = Number(ctx.response.get('Content-Length'))
  // Anything else (another koa-send) stays as koa-send answered.
  if (typeof served !== 'string' || !(placeholder instanceof FileBody) || !Number.isSafeInteger(size)) return served
  // koa-send chose between the file and its variants by Accept-Encoding (as @fastify/static
  // does with preCompressed, on every response: no extra lookups for clients without one).
  if (opts.brotli !== false || opts.gzip !== false) ctx.vary('Accept-Encoding')
  const ranges = opts.acceptRanges !== false
  if (ranges) ctx.set('Accept-Ranges', 'bytes')
  if (ctx.fresh) {
    ctx.status = 304
    return served
  }
  const range = ranges ? ctx.get('Range') : ''
  const parsed = range && rangeFresh(ctx) ? parseRange(size, range, { combine: true }) : -2
  if (parsed === -1) {
    ctx.body = null
    ctx.status = 416
    ctx.set('Content-Range', `bytes */${size}`)
    return served
  }
  let offset = 0
  let length = size
  if (parsed !== -2 && parsed.type === 'bytes' && parsed.length === 1) {
    offset = parsed[0].start
    length = parsed[0].end - parsed[0].start + 1
  }
  // Replacing a stream body makes Koa drop Content-Length: set it (and the status) after.
  ctx.body = new FileBody(ctx.req, { path: served, offset, length })
  ctx.set('Content-Length', String(length))
  if (length !== size) {
    ctx.status = 206
    ctx.set('Content-Range', `bytes ${offset}-${offset + length - 1}/${size}`)
  }
  return served
}

/**
 * Static-file middleware in the shape of koa-static: `app.use(serve(root, opts))`.
 * @param root - The directory to serve.
 * @param opts - koa-send's options (`index` defaults to `'index.html'`), `defer`, `acceptRanges`.
 */
export function serve(root: string, opts: ServeOptions = {}): KoaMiddleware {
  if (typeof root !== 'string' || root === '') throw new TypeError('root directory is required to serve files')
  // Loaded now, not by the first request (as the other framework modules load theirs).
  koaSend ??= loadKoaSend()
  const options: ServeOptions = { ...opts, root: resolve(root) }
  if (options.index !== false) options.index = options.index || 'index.html'
  const sendOrFallThrough = async (ctx: KoaContext): Promise<boolean> => {
    try {
      return (await send(ctx, ctx.path, options)) !== undefined
    } catch (err) {
      if ((err as { status?: number }).status !== 404) throw err
      return false
    }
  }
  if (!options.defer) {
    return async function serveStatic(ctx, next) {
      const done = (ctx.method === 'HEAD' || ctx.method === 'GET') && (await sendOrFallThrough(ctx))
      if (!done) await next()
    }
  }
  return async function serveStatic(ctx, next) {
    await next()
    if (ctx.method !== 'HEAD' && ctx.method !== 'GET') return
    // Already answered downstream.
    if (ctx.body != null || ctx.status !== 404) return
    await sendOrFallThrough(ctx)
  }
}

export default serve
