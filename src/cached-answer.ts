/**
 * `respondWithFile`'s synchronous answer for a file whose bytes the descriptor cache keeps (up
 * to 64 KiB, or 1 MiB for a loopback peer): no `await`, no thread-pool hop, no read when the
 * kept contents are still the file's (src/file-cache.ts, `cachedBody`). The head is decided by
 * the same `decideHead` as every other response, then status, headers and body go through
 * node:http in one `res.end()`, so every wrapper of `res` (compression, on-headers hooks) sees
 * them as it sees any body.
 *
 * It answers only what it can finish before returning: a response already attached to its
 * socket (not queued behind a pipelined one), a window inside the file, and no `signal`,
 * `onProgress` or `statCheck` (callbacks the general path calls at its own points). For
 * anything else it returns `undefined` having touched nothing, and the caller takes the general
 * path, which gives the same answer (status, headers, body, result) more slowly.
 * @module
 */
import type * as http from 'node:http'
import type { OutgoingHttpHeaders } from 'node:http'
import type * as net from 'node:net'

import { bodyPath, forbidsBody } from './body-path'
import { decideHead, type HeadOptions } from './conditional'
import { BODY_MAX, cachedBody, closeWithServer, keptBodyMax, type CachedBody } from './file-cache'
import type { RespondWithFileResult } from './respond-types'
import { StagedHead } from './staged-head'

/** The result's `fallbackReason` for a body answered from memory. */
export const CACHED_BODY = `small body (up to ${BODY_MAX / 1024} KiB): kept with its cached descriptor and written with the headers in one write`

/** The result's `fallbackReason` for a larger body answered from memory to a loopback peer. */
export const LOOPBACK_BODY =
  'loopback peer: the body kept with its cached descriptor and written with the headers (a copy costs less than sendfile on loopback)'

/**
 * Answers `res` now from the cache, or returns `undefined` with `res` untouched.
 * `trusted`: `headers` are known to be valid (made by this package), so they need no stage.
 * `kept`: the file's kept body when the caller already looked it up this turn (serveStatic),
 * so it is not looked up (and counted) twice.
 * @throws What deciding the head throws (an invalid header), with `res` untouched.
 */
export function answerFromCache(
  res: http.ServerResponse,
  path: string,
  headers: OutgoingHttpHeaders | undefined,
  headOptions: HeadOptions,
  window: { offset?: number | undefined; length?: number | undefined } | undefined,
  trusted = false,
  kept?: CachedBody,
): RespondWithFileResult | undefined {
  const socket = res.socket as net.Socket | null
  if (socket === null || headOptions.statCheck !== undefined) return undefined
  const cached = kept ?? cachedBody(path, keptBodyMax(socket.remoteAddress))
  if (cached === undefined) return undefined
  const { stats, data } = cached
  const offset = window?.offset ?? 0
  const length = window?.length ?? stats.size - offset
  if (offset + length > stats.size) return undefined // the general path reports ERR_OUT_OF_RANGE
  // Without caller headers (or with trusted ones), deciding cannot throw: it sets only values
  // made here from the file's stats (and reads the request), so it decides on `res` itself,
  // which nothing else can touch before this returns. Caller headers are checked on a stage
  // first, as on the general path.
  const stage = headers === undefined || trusted ? null : new StagedHead(res)
  const decided = decideHead(stage ?? res, { stats, offset, length }, { ...headers }, path, headOptions, undefined)!
  stage?.apply(res)
  const { status } = decided
  // As the general path frames it: no Content-Length without a body's framing (204, 1xx), nor
  // next to a Transfer-Encoding the caller set.
  if (forbidsBody(status) || res.hasHeader('transfer-encoding')) res.removeHeader('content-length')
  closeWithServer((socket as { server?: net.Server }).server)
  res.writeHead(status)
  if (decided.length === 0 || forbidsBody(status) || (headOptions.req ?? res.req)?.method === 'HEAD') {
    const way = bodyPath(res, socket, decided.length)
    const fallbackReason = way.kind === 'engine' ? null : way.reason
    res.end()
    return { status, bytes: 0, zeroCopy: way.kind !== 'stream' && fallbackReason === null, fallbackReason }
  }
  res.end(decided.offset === 0 && decided.length === data.length ? data : data.subarray(decided.offset, decided.offset + decided.length))
  return { status, bytes: decided.length, zeroCopy: false, fallbackReason: data.length > BODY_MAX ? LOOPBACK_BODY : CACHED_BODY }
}
