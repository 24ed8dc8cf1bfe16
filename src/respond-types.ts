/**
 * The options and result of `respondWithFile`, shared by its HTTP/1.1 path (src/http.ts), its
 * HTTP/2 path (src/http2.ts) and the response-head decisions (src/conditional.ts), so that
 * none of those modules imports another for its types.
 * @module
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { Stats } from 'node:fs'

/**
 * The request a response answers, as far as `respondWithFile` reads it: its method and its
 * headers. An `http.IncomingMessage`, an `Http2ServerRequest`, or a framework's request
 * object with `method` and `headers` (Fastify's `request`) all fit.
 */
export interface RequestHead {
  /** `'GET'`, `'HEAD'`, ...; a request without one is taken as a GET. */
  method?: string | undefined
  /** The request's headers, names in lower case (as node:http and node:http2 give them). */
  headers: IncomingHttpHeaders
}

/** Options for `respondWithFile`. */
export interface RespondWithFileOptions {
  /** Bytes; where the response's body starts in the file. **Default:** `0`. */
  offset?: number | undefined
  /** Bytes of body. **Default:** the rest of the file after `offset`. */
  length?: number | undefined
  /**
   * A `Range` request header value (`req.headers.range`), applied to the body window: one
   * satisfiable byte range answers `206 Partial Content` with `Content-Range`; an unsatisfiable
   * one answers `416` with `Content-Range: bytes *\/size` and no body; a malformed header, or
   * several ranges, answer the whole window with the status already set (as `send` does). A
   * unit other than `bytes`, or a status other than `200` set on `res`, ignores it (RFC 9110).
   *
   * The request's `If-Range` is always honoured: when it names neither the `ETag` nor the
   * `Last-Modified` the response sends (from `headers`, `res`, `etag`/`lastModified` or
   * `statCheck`), the range is ignored and the whole window goes with the status already set,
   * so a client resuming a changed file gets the new file, never a spliced one.
   */
  range?: string | undefined
  /**
   * The request whose `If-Range`, conditional headers and method are read.
   * **Default:** `res.req` (set by node:http and by node:http2's compatibility API).
   */
  req?: RequestHead | undefined
  /**
   * Answer conditional requests as `send` (and so `express.static`) does, against the `ETag`
   * and `Last-Modified` the response sends: `If-Match` that names no current `ETag`, or
   * `If-Unmodified-Since` older than `Last-Modified`, answers `412` with no body;
   * then (for a `2xx` status) `If-None-Match`/`If-Modified-Since` that the response satisfies
   * (the `fresh` module) answers `304` with no body and without the `Content-*` headers
   * (a method other than GET/HEAD gets `412` there). **Default:** `false`.
   */
  conditional?: boolean | undefined
  /** Send a weak `ETag` made from the file's size and mtime (the `etag` module, as `send`), unless one is set. **Default:** `false`. */
  etag?: boolean | undefined
  /** Send `Last-Modified` from the file's mtime, unless one is set. **Default:** `false`. */
  lastModified?: boolean | undefined
  /**
   * Send `Content-Type` looked up from a file name's extension (the `mime-types` module, as
   * `send`; `application/octet-stream` when unknown), unless one is set: `true` for the name
   * of the file's path, or a file name or extension (`'report.pdf'`, `'json'`). Needs a string
   * with a descriptor or `FileHandle`. Set a literal type through `headers` instead.
   * **Default:** `false`.
   */
  contentType?: boolean | string | undefined
  /**
   * Send `Content-Disposition: attachment` (the `content-disposition` module, as Express's
   * `res.download`), so a browser saves the file, unless one is set: `true` names it after the
   * file's path (no name for a descriptor), a string names it so (any Unicode; a non-Latin-1
   * name also gets `filename*`). **Default:** `false`.
   */
  attachment?: boolean | string | undefined
  /** Aborts the response: before the headers are sent, `res` is untouched; after, the connection (HTTP/2: the stream) is destroyed. */
  signal?: AbortSignal | undefined
  /** Called as body bytes go out, with bytes sent so far and the body's length. */
  onProgress?: ((sent: number, total: number) => void) | undefined
  /**
   * Called with the file's `Stats` and the headers about to be sent (with those `etag`,
   * `lastModified`, `contentType` and `attachment` add; before `Content-Length` and
   * `Content-Range`), before anything is sent, as node:http2's `statCheck`: it may add or
   * change headers (`Last-Modified`, `ETag`), which `conditional` and `If-Range` then use, and
   * returning `false` cancels the response (`res` untouched, the result's `status` is `0`).
   */
  statCheck?: ((stats: Stats, headers: OutgoingHttpHeaders) => boolean | void) | undefined
}

/** How `respondWithFile` answered. */
export interface RespondWithFileResult {
  /** The status code sent (`200`, `206`, `304`, `412`, `416`, ...), or `0` when `statCheck` cancelled. */
  status: number
  /** Body bytes sent (`0` for `HEAD`, `304`, `412`, `416` and cancelled responses). */
  bytes: number
  /** The body went from the page cache to the socket without passing through JavaScript. */
  zeroCopy: boolean
  /** Why the body was not sent page-cache-to-socket (TLS, HTTP/2, no io_uring, a body transform such as compression, no kernel socket), or `null`. */
  fallbackReason: string | null
}
