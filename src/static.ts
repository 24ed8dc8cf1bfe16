/**
 * `serveStatic`: a drop-in for Express's static middleware (`serve-static`) whose bodies go
 * page-cache-to-socket through {@link respondWithFile}.
 *
 * Everything but the body is `send`'s, the module `serve-static` and `express.static` are
 * built on: path resolution under `root`, dotfiles, index files, extensions, `ETag`,
 * `Last-Modified`, conditional requests (304/412), ranges (206/416), `Content-Type`,
 * `Cache-Control`, and the errors (400/403/404). `send` reads the body in one overridable
 * method, `SendStream#stream(path, { start, end })`, called once every header is set and only
 * for a GET with a body; this module replaces that method on each request's stream and nothing
 * else. The middleware around `send` follows serve-static 2.2 (MIT, © 2010 Sencha Inc., 2011
 * TJ Holowaychuk, 2014-2016 Douglas Christopher Wilson): method check, fallthrough, the
 * trailing-slash redirect, `setHeaders`.
 * @module
 */
import type * as http from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import { extname, resolve, sep } from 'node:path'
import { format } from 'node:url'

import encodeUrl from 'encodeurl'
import etag from 'etag'
import escapeHtml from 'escape-html'
import mime from 'mime-types'
import parseUrl from 'parseurl'
import send from 'send'
import vary from 'vary'

import { answerFromCache } from './cached-answer'
import { cachedBody, cachedStats, keptBodyMax } from './file-cache'
import { respondWithFile } from './http'
import { findVariant } from './precompressed'

/** Options of {@link serveStatic}: serve-static's, with the same defaults. */
export interface ServeStaticOptions {
  /** Answer `Range` requests (`Accept-Ranges: bytes`). **Default:** `true`. */
  acceptRanges?: boolean | undefined
  /** Send `Cache-Control`. **Default:** `true`. */
  cacheControl?: boolean | undefined
  /** `'allow'`, `'deny'` (403) or `'ignore'` (404) files and folders starting with a dot. **Default:** `'ignore'`. */
  dotfiles?: 'allow' | 'deny' | 'ignore' | undefined
  /** Send a weak `ETag`. **Default:** `true`. */
  etag?: boolean | undefined
  /** Extensions to try when a file is not found, e.g. `['html', 'htm']` (or one, `'html'`). **Default:** `false`. */
  extensions?: string[] | string | false | undefined
  /** Pass client errors (400, 403, 404) and non-GET/HEAD methods to `next()` instead of answering. **Default:** `true`. */
  fallthrough?: boolean | undefined
  /** Add `immutable` to `Cache-Control` (with `maxAge`). **Default:** `false`. */
  immutable?: boolean | undefined
  /** Index file(s) for a directory, or `false`. **Default:** `'index.html'`. */
  index?: string[] | string | false | undefined
  /** Send `Last-Modified`. **Default:** `true`. */
  lastModified?: boolean | undefined
  /** `Cache-Control` max-age, in ms or an `ms` string such as `'1d'`. **Default:** `0`. */
  maxAge?: number | string | undefined
  /** Same as `maxAge`. */
  maxage?: number | string | undefined
  /** Redirect a directory path without a trailing slash to one with it (301). **Default:** `true`. */
  redirect?: boolean | undefined
  /**
   * Serve `file.br` / `file.gz` in place of `file` to a client that accepts the encoding (see
   * src/precompressed.ts), with `Content-Encoding`, the variant's length, `ETag` and ranges,
   * and `Vary: Accept-Encoding` on every file response. Not in serve-static. **Default:** `false`.
   */
  precompressed?: boolean | undefined
  /** Called before the headers are sent, to set custom ones. */
  setHeaders?: ((res: http.ServerResponse, path: string, stat: import('node:fs').Stats) => void) | undefined
}

/**
 * A connect/Express middleware; it also answers node:http2's compatibility API
 * (`Http2ServerRequest`/`Http2ServerResponse`), as serve-static does.
 */
export type StaticMiddleware = (
  req: http.IncomingMessage | Http2ServerRequest,
  res: http.ServerResponse | Http2ServerResponse,
  next: (err?: unknown) => void,
) => void

interface SendStreamInternals extends NodeJS.EventEmitter {
  res: http.ServerResponse
  req: http.IncomingMessage
  /** The URL path it was made for. */
  path: string
  _acceptRanges: boolean
  _cacheControl: boolean
  _maxage: number
  _immutable: boolean
  _lastModified: boolean
  _etag: boolean
  /** The file's stats `send` answered with (set by {@link guardedSend}). */
  zcStat?: import('node:fs').Stats
  stream(path: string, options: { start: number; end: number }): void
  send(path: string, stat: import('node:fs').Stats): void
  sendFile(path: string): void
  type(path: string): void
  onStatError(err: Error): void
  error(status: number, err?: unknown): void
  hasTrailingSlash(): boolean
  pipe(res: http.ServerResponse): http.ServerResponse
}

/**
 * The body, once `send` has set every header: page-cache-to-socket through `respondWithFile`.
 * An error before anything was sent (the file vanished or shrank since `send`'s stat) goes
 * to `send`'s own handling, as a failed read would; after, the connection is already gone.
 * A whole-file answer to a plain request is remembered for the {@link knownFileResponse} path.
 */
function streamThroughEngine(this: SendStreamInternals, known: KnownFiles | null, path: string, options: { start: number }): void {
  const res = this.res
  const length = Number(res.getHeader('content-length'))
  if (known !== null) remember(this, known, path, options.start, length)
  respondWithFile(res, path, undefined, { offset: options.start, length }).then(
    () => this.emit('end'),
    // Someone else answered the response while it waited for its turn (a timeout middleware):
    // nothing is left to answer.
    (err: NodeJS.ErrnoException) => (err.code === 'ERR_HTTP_HEADERS_SENT' ? this.emit('end') : this.onStatError(err)),
  )
}

/** What `send` answered for a URL path with a whole file, to answer it again without `send`. */
interface KnownFile {
  file: string
  dev: number
  ino: number
  size: number
  mtimeMs: number
  ctimeMs: number
  /** The headers `send` sets when they are not set already, in its order. */
  headers: [string, string][]
}

/** A middleware's known files by the URL path it gave `send`, oldest first. */
type KnownFiles = Map<string, KnownFile>

/** Most URL paths a middleware remembers. */
const KNOWN_FILES_MAX = 4096

/** No `Range` and no precondition: `send` answers 200 with the whole file, or HEAD's head. */
function plainRequest(req: http.IncomingMessage): boolean {
  const h = req.headers
  return (
    h.range === undefined &&
    h['if-match'] === undefined &&
    h['if-none-match'] === undefined &&
    h['if-modified-since'] === undefined &&
    h['if-unmodified-since'] === undefined
  )
}

/**
 * Records how `send` answered a plain request for a whole file: the file, its identity, and the
 * default headers `send` computed from its options (`setHeader()` and `type()` in send 1.2).
 */
function remember(stream: SendStreamInternals, known: KnownFiles, file: string, start: number, length: number): void {
  const stat = stream.zcStat
  if (!stat || start !== 0 || length !== stat.size || stream.res.statusCode !== 200 || !plainRequest(stream.req)) return
  const headers: [string, string][] = []
  if (stream._acceptRanges) headers.push(['Accept-Ranges', 'bytes'])
  if (stream._cacheControl) headers.push(['Cache-Control', `public, max-age=${Math.floor(stream._maxage / 1000)}${stream._immutable ? ', immutable' : ''}`])
  if (stream._lastModified) headers.push(['Last-Modified', stat.mtime.toUTCString()])
  if (stream._etag) headers.push(['ETag', etag(stat)])
  headers.push(['Content-Type', mime.contentType(extname(file)) || 'application/octet-stream'])
  const { dev, ino, size, mtimeMs, ctimeMs } = stat
  known.delete(stream.path)
  known.set(stream.path, { file, dev, ino, size, mtimeMs, ctimeMs, headers })
  if (known.size > KNOWN_FILES_MAX) known.delete(known.keys().next().value!)
}

/**
 * Answers a plain GET or HEAD for a URL path `send` answered before with a whole file, without
 * `send`, when the file's cached descriptor still names that very file, unchanged (same device,
 * inode, size, mtime and ctime): the same headers `send` would set, from what it computed then.
 * Every decision `send` made from the URL path (decoding, dotfiles, index, extensions, root)
 * depends only on the path, the options and the file system, which the identity check covers
 * within the descriptor cache's freshness rule (src/file-cache.ts). Returns `false` when it does
 * not apply; if `respondWithFile` then fails before sending anything, `fallback` runs `send`.
 */
function knownFileResponse(known: KnownFile | undefined, req: http.IncomingMessage, res: http.ServerResponse, fallback: () => void): boolean {
  if (known === undefined || res.statusCode !== 200 || res.headersSent || !plainRequest(req)) return false
  // A kept file (small, or up to 1 MiB for a loopback peer): answered from memory now
  // (src/cached-answer.ts) while it is the one send saw.
  const body = res.socket ? cachedBody(known.file, keptBodyMax(res.socket.remoteAddress)) : undefined
  if (body !== undefined) {
    if (!isKnown(body.stats, known)) return false
    if (answerFromCache(res, known.file, knownHeaders(known, res), NO_OPTIONS, undefined, true, body) !== undefined) return true
  }
  const st = cachedStats(known.file)
  if (st === undefined || !isKnown(st, known)) return false
  respondWithFile(res, known.file, knownHeaders(known, res), { offset: 0, length: known.size }).catch(() => {
    // Nothing was sent (res untouched): send answers, errors and all. Otherwise the
    // connection is gone already.
    if (!res.headersSent && !res.writableEnded) fallback()
  })
  return true
}

/** The head options of a known file's answer: none (send decided the headers). */
const NO_OPTIONS = Object.freeze({})

/** Whether `st` is the file `send` answered. */
function isKnown(st: import('node:fs').Stats, known: KnownFile): boolean {
  return st.dev === known.dev && st.ino === known.ino && st.size === known.size && st.mtimeMs === known.mtimeMs && st.ctimeMs === known.ctimeMs
}

/** The known file's headers that `res` does not have yet (send sets only those). */
function knownHeaders(known: KnownFile, res: http.ServerResponse): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = {}
  for (const [name, value] of known.headers) if (!res.getHeader(name)) headers[name] = value
  return headers
}

/**
 * `send`'s step that sets the headers and starts the body, guarded: `send` runs it in an fs
 * callback, so an exception from inside it (a `setHeaders` that throws) would end the process,
 * as it does with serve-static. Here it becomes a 500 for the middleware's error handling.
 */
function guardedSend(this: SendStreamInternals, step: SendStreamInternals['send'], path: string, stat: import('node:fs').Stats): void {
  this.zcStat = stat
  try {
    step.call(this, path, stat)
  } catch (err) {
    if (this.res.headersSent) this.res.destroy(err as Error)
    else this.error(500, err)
  }
}

/**
 * `send`'s stat of the file, answered from the descriptor cache when it holds the path (an
 * `fstat`, no thread-pool round trip); otherwise `send`'s own `fs.stat`, extensions and all.
 */
function cachedSendFile(this: SendStreamInternals, step: SendStreamInternals['sendFile'], path: string): void {
  const stat = path.endsWith(sep) ? undefined : cachedStats(path)
  if (stat === undefined) return step.call(this, path)
  this.emit('file', path, stat)
  this.send(path, stat)
}

/**
 * `send`'s step for a file, given a precompressed variant when the client accepts one: the
 * variant's stat (length, `ETag`, `Last-Modified`, ranges) and body, the file's own
 * `Content-Type`, `Content-Encoding`, and `Vary: Accept-Encoding` either way.
 */
function precompressedSend(this: SendStreamInternals, step: SendStreamInternals['send'], path: string, stat: import('node:fs').Stats): void {
  vary(this.res, 'Accept-Encoding')
  findVariant(this.req, path).then(
    (variant) => {
      if (variant === null) return guardedSend.call(this, step, path, stat)
      this.type(path)
      this.res.setHeader('Content-Encoding', variant.encoding)
      guardedSend.call(this, step, variant.path, variant.stats)
    },
    (err: Error) => this.onStatError(err),
  )
}

function collapseLeadingSlashes(str: string): string {
  let i = 0
  while (i < str.length && str.charCodeAt(i) === 0x2f) i++
  return i > 1 ? '/' + str.slice(i) : str
}

function htmlDocument(title: string, body: string): string {
  return `<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>${title}</title>\n</head>\n<body>\n<pre>${body}</pre>\n</body>\n</html>\n`
}

function notFoundDirectory(this: SendStreamInternals): void {
  this.error(404)
}

function redirectDirectory(this: SendStreamInternals, res: http.ServerResponse): void {
  if (this.hasTrailingSlash()) {
    this.error(404)
    return
  }
  const originalUrl = parseUrl.original(this.req)!
  originalUrl.path = null
  originalUrl.pathname = collapseLeadingSlashes(originalUrl.pathname + '/')
  const loc = encodeUrl(format(originalUrl))
  const doc = htmlDocument('Redirecting', 'Redirecting to ' + escapeHtml(loc))
  res.statusCode = 301
  res.setHeader('Content-Type', 'text/html; charset=UTF-8')
  res.setHeader('Content-Length', Buffer.byteLength(doc))
  res.setHeader('Content-Security-Policy', "default-src 'none'")
  res.setHeader('X-Content-Type-Options', 'nosniff')
  res.setHeader('Location', loc)
  res.end(doc)
}

/**
 * Serves files under `root`, as `express.static(root, options)` / `serve-static` do, with
 * the same options and behaviour; only the body differs: it goes from the page cache to the
 * socket through {@link respondWithFile} (inline `sendfile(2)` or the io_uring engine; over
 * TLS, streamed through the response).
 *
 * One intended difference: an exception thrown by `setHeaders` goes to `next` as a 500 error,
 * where serve-static lets it escape from an fs callback and end the process.
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { serveStatic } from 'zerocopy-socket/static'
 *
 * const app = express()
 * app.use(serveStatic('public', { maxAge: '1d' })) // instead of express.static('public', ...)
 * ```
 * @param root - The directory to serve; requests can never read outside it (by path: symlinks
 *   inside it are followed, as serve-static follows them).
 * @param options - serve-static's options.
 * @returns A connect/Express middleware `(req, res, next)`.
 * @throws `TypeError` for a missing or non-string `root`, or a `setHeaders` that is not a function.
 */
export function serveStatic(root: string, options?: ServeStaticOptions): StaticMiddleware {
  if (!root) throw new TypeError('root path required')
  if (typeof root !== 'string') throw new TypeError('root path must be a string')
  const opts = Object.create(options ?? null) as ServeStaticOptions & { root: string }
  const fallthrough = opts.fallthrough !== false
  const redirect = opts.redirect !== false
  const setHeaders = opts.setHeaders
  const precompressed = opts.precompressed === true
  if (setHeaders && typeof setHeaders !== 'function') throw new TypeError('option setHeaders must be function')
  opts.maxage = opts.maxage || opts.maxAge || 0
  opts.root = resolve(root)
  const onDirectory = redirect ? redirectDirectory : notFoundDirectory
  const known: KnownFiles = new Map()

  // send and parseurl read only what http2's compatibility objects also have (url, headers, method, setHeader, ...).
  return function serveStatic(req: http.IncomingMessage, res: http.ServerResponse, next: (err?: unknown) => void) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      if (fallthrough) return next()
      res.statusCode = 405
      res.setHeader('Allow', 'GET, HEAD')
      res.setHeader('Content-Length', '0')
      res.end()
      return
    }
    let forwardError = !fallthrough
    const originalUrl = parseUrl.original(req)
    let path = parseUrl(req)?.pathname ?? '/'
    // Make sure the redirect happens at the mount point.
    if (path === '/' && !originalUrl?.pathname?.endsWith('/')) path = ''
    const answer = (): void => {
      const stream = send(req, path, opts) as unknown as SendStreamInternals
      stream.stream = streamThroughEngine.bind(stream, setHeaders || precompressed ? null : known)
      stream.send = (precompressed ? precompressedSend : guardedSend).bind(stream, stream.send)
      stream.sendFile = cachedSendFile.bind(stream, stream.sendFile)
      stream.on('directory', onDirectory)
      if (setHeaders) stream.on('headers', setHeaders)
      // Once a file is found, errors are always forwarded.
      if (fallthrough) stream.on('file', () => (forwardError = true))
      stream.on('error', (err: { statusCode?: number }) => {
        if (forwardError || !((err.statusCode ?? 500) < 500)) next(err)
        else next()
      })
      stream.pipe(res)
    }
    // setHeaders may change anything, or throw (send's error path), and a precompressed variant
    // is chosen per request: only send answers then.
    if (setHeaders || precompressed || !knownFileResponse(known.get(path), req, res, answer)) answer()
  } as StaticMiddleware
}
