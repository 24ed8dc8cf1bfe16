/**
 * The head of a file response, decided before anything is sent: the headers a download
 * endpoint would otherwise write by hand (`ETag`, `Last-Modified`, `Content-Type`,
 * `Content-Disposition`, from the `etag`, `mime-types` and `content-disposition` modules), the
 * caller's `statCheck`, the preconditions (`412`, and `304` through the `fresh` module), and
 * the byte range with its `If-Range` (`206`/`416`, through `range-parser`). Shared by the
 * HTTP/1.1 (src/http.ts) and HTTP/2 (src/http2.ts) paths of `respondWithFile`.
 *
 * The decisions follow `send` 1.2.1 (MIT, © 2012 TJ Holowaychuk, 2014-2022 Douglas
 * Christopher Wilson), the module under `express.static` and `res.sendFile`, so both answer
 * the same requests the same way: `isPreconditionFailure`, `isCachable`/`isFresh`,
 * `isRangeFresh` and `removeContentHeaderFields`.
 * @module
 */
import type { OutgoingHttpHeader, OutgoingHttpHeaders } from 'node:http'
import type { Stats } from 'node:fs'
import { basename, extname } from 'node:path'

import contentDisposition from 'content-disposition'
import makeEtag from 'etag'
import fresh from 'fresh'
import { contentType as lookupContentType } from 'mime-types'
import parseRange from 'range-parser'

import { abortError, codedError, invalidArgType, invalidArgValue } from './errors'
import type { PreparedFile } from './file'
import type { RequestHead, RespondWithFileOptions, RespondWithFileResult } from './respond-types'

/** What `decideHead` reads and writes of a response: `ServerResponse` and `Http2ServerResponse` both fit. */
export interface ResponseHeaders {
  statusCode: number
  readonly headersSent: boolean
  /** The request, where the server set it (node:http, node:http2's compatibility API). */
  readonly req?: RequestHead | undefined
  getHeader(name: string): OutgoingHttpHeader | undefined
  setHeader(name: string, value: OutgoingHttpHeader): unknown
  removeHeader(name: string): void
}

/** The options {@link decideHead} reads. */
export type HeadOptions = Pick<RespondWithFileOptions, 'range' | 'req' | 'conditional' | 'etag' | 'lastModified' | 'contentType' | 'attachment' | 'statCheck'>

/** The response decided: its status and the body window in the file (`length` `0`: no body). */
export interface Head {
  status: number
  offset: number
  length: number
}

/** Synchronous checks of the head options; `path` is the file's path, if it was given by one. */
export function validateHeadOptions(options: HeadOptions, path: string | undefined): void {
  const { range, req, statCheck, contentType, attachment } = options
  if (range !== undefined && typeof range !== 'string') throw invalidArgType('options.range', 'of type string', range)
  if (statCheck !== undefined && typeof statCheck !== 'function') throw invalidArgType('options.statCheck', 'of type function', statCheck)
  if (req !== undefined && (req === null || typeof req !== 'object' || typeof req.headers !== 'object' || req.headers === null)) {
    throw invalidArgType('options.req', 'a request with headers', req)
  }
  for (const name of ['conditional', 'etag', 'lastModified'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') throw invalidArgType(`options.${name}`, 'of type boolean', options[name])
  }
  for (const [name, value] of [
    ['contentType', contentType],
    ['attachment', attachment],
  ] as const) {
    if (value !== undefined && typeof value !== 'boolean' && typeof value !== 'string')
      throw invalidArgType(`options.${name}`, 'of type boolean or string', value)
    if (value === '') throw invalidArgValue(`options.${name}`, 'must be a non-empty file name', value)
  }
  if (contentType === true && path === undefined) {
    throw invalidArgValue('options.contentType', 'must be a file name (or extension) when the file is a descriptor or FileHandle', contentType)
  }
}

/** The header `name` from `headers` (any case), else from `res`. */
function headerOf(headers: OutgoingHttpHeaders, res: ResponseHeaders, name: string): OutgoingHttpHeader | undefined {
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name && headers[key] !== undefined) return headers[key]
  return res.getHeader(name)
}

/** Adds what `etag`, `lastModified`, `contentType` and `attachment` ask for, where neither `headers` nor `res` has it. */
function addFileHeaders(res: ResponseHeaders, headers: OutgoingHttpHeaders, stats: Stats, path: string | undefined, options: HeadOptions): void {
  const add = (name: string, value: () => string): void => {
    if (headerOf(headers, res, name) === undefined) headers[name] = value()
  }
  if (options.etag) add('etag', () => makeEtag(stats))
  if (options.lastModified) add('last-modified', () => stats.mtime.toUTCString())
  const { contentType, attachment } = options
  if (contentType) {
    const name = contentType === true ? path! : contentType
    add('content-type', () => lookupContentType(extname(name) || name) || 'application/octet-stream')
  }
  if (attachment) {
    const name = attachment === true ? (path === undefined ? undefined : basename(path)) : attachment
    add('content-disposition', () => contentDisposition(name, { type: 'attachment' }))
  }
}

function parseHttpDate(date: unknown): number {
  const timestamp = typeof date === 'string' ? Date.parse(date) : NaN
  return Number.isNaN(timestamp) ? NaN : timestamp
}

/** The comma-separated entity tags of an `If-Match`. */
function parseTokenList(value: string): string[] {
  return value
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '')
}

/** `If-Match` / `If-Unmodified-Since` fail against the response's validators (send's `isPreconditionFailure`). */
function preconditionFails(req: RequestHead, etag: unknown, lastModified: unknown): boolean {
  const match = req.headers['if-match']
  if (match) {
    if (typeof etag !== 'string') return true
    return match !== '*' && parseTokenList(match).every((tag) => tag !== etag && tag !== 'W/' + etag && 'W/' + tag !== etag)
  }
  const unmodifiedSince = parseHttpDate(req.headers['if-unmodified-since'])
  if (!Number.isNaN(unmodifiedSince)) {
    const modified = parseHttpDate(lastModified)
    return Number.isNaN(modified) || modified > unmodifiedSince
  }
  return false
}

/**
 * The request's `If-Range` names the response's current representation (send's
 * `isRangeFresh`): an entity tag must be the `ETag` sent, a date at least the `Last-Modified`
 * sent. No `If-Range` is fresh; an `If-Range` with nothing to compare it to is not.
 */
function rangeIsFresh(req: RequestHead | undefined, etag: unknown, lastModified: unknown): boolean {
  const ifRange = req?.headers['if-range']
  if (!ifRange) return true
  if (ifRange.includes('"')) return typeof etag === 'string' && ifRange.includes(etag)
  return parseHttpDate(lastModified) <= parseHttpDate(ifRange)
}

/** Headers a `304` does not carry (send's `removeContentHeaderFields`). */
const CONTENT_HEADERS = ['content-encoding', 'content-language', 'content-length', 'content-range', 'content-type']

/**
 * Decides the response's head and sets it on `res` — but only after every check that can
 * still leave `res` untouched: throws `AbortError` for an aborted `signal`; returns `null`
 * (nothing set) when `statCheck` cancels; throws `ERR_HTTP_HEADERS_SENT` when the headers went
 * out meanwhile, and whatever `beforeSet` throws, just before the first write.
 * `file`'s `offset`/`length` are the body window in the file (the options applied).
 */
export function decideHead(
  res: ResponseHeaders,
  file: Pick<PreparedFile, 'stats' | 'offset' | 'length'>,
  headers: OutgoingHttpHeaders,
  path: string | undefined,
  options: HeadOptions,
  signal: AbortSignal | undefined,
  beforeSet?: () => void,
): Head | null {
  if (signal?.aborted) throw abortError(signal)
  const { stats } = file
  addFileHeaders(res, headers, stats, path, options)
  if (options.statCheck?.(stats, headers) === false) return null
  if (res.headersSent) throw headersSentError()
  beforeSet?.()
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value)
  const req = options.req ?? res.req
  const etag = res.getHeader('etag')
  const lastModified = res.getHeader('last-modified')
  let status = res.statusCode
  let { offset, length } = file
  if (options.conditional && req !== undefined) {
    const cachable = (status >= 200 && status < 300) || status === 304
    const safe = req.method === 'GET' || req.method === 'HEAD' || req.method === undefined
    const notModified =
      cachable && (req.headers['if-none-match'] || req.headers['if-modified-since']) && fresh(req.headers, { etag, 'last-modified': lastModified })
    const failed = preconditionFails(req, etag, lastModified) || (notModified && !safe)
    if (failed || notModified) {
      for (const name of CONTENT_HEADERS) res.removeHeader(name)
      if (failed) res.setHeader('content-length', 0)
      res.statusCode = failed ? 412 : 304
      return { status: res.statusCode, offset, length: 0 }
    }
  }
  // A unit other than bytes is ignored, as send and RFC 9110 14.2 do; so is a range of anything but a 200.
  if (options.range !== undefined && status === 200 && /^ *bytes=/.test(options.range)) {
    let ranges = parseRange(length, options.range, { combine: true })
    if (!rangeIsFresh(req, etag, lastModified)) ranges = -2
    if (ranges === -1) {
      status = 416
      res.setHeader('content-range', `bytes */${length}`)
      length = 0
    } else if (ranges !== -2 && ranges.type === 'bytes' && ranges.length === 1) {
      status = 206
      res.setHeader('content-range', `bytes ${ranges[0].start}-${ranges[0].end}/${length}`)
      offset += ranges[0].start
      length = ranges[0].end - ranges[0].start + 1
    }
  }
  res.setHeader('content-length', length)
  res.statusCode = status
  return { status, offset, length }
}

/** `respondWithFile` was called, or its head decided, after the response's headers went out. */
export function headersSentError(): Error {
  return codedError('ERR_HTTP_HEADERS_SENT', 'Cannot respond with a file after the headers are sent to the client')
}

/** The result of a response that `statCheck` cancelled: nothing sent. */
export function cancelledResult(): RespondWithFileResult {
  return { status: 0, bytes: 0, zeroCopy: false, fallbackReason: null }
}
