/**
 * HTTP/1.1 file responses for node:http: `respondWithFile` writes the status and headers
 * through the `ServerResponse`, sends the body page-cache-to-socket, hands the socket back to
 * node:http and finishes the response, so keep-alive and pipelining go on.
 * @module
 */
import * as http from 'node:http'
import type { OutgoingHttpHeaders } from 'node:http'
import { Http2ServerResponse } from 'node:http2'
import { once } from 'node:events'
import { fstatSync } from 'node:fs'
import type * as net from 'node:net'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import tls from 'node:tls'

import { readNow, sendfileNow } from './direct'
import { engineAvailable, engineFailure } from './engine'
import { cancelledResult, decideHead, headersSentError, validateHeadOptions, type HeadOptions } from './conditional'
import { abortError, codedError, invalidArgType } from './errors'
import { closeWithServer, prepareServedFile } from './file-cache'
import { prepareFile, readChunks, takeFile, validateSendFile, type FileSource, type PreparedFile } from './file'
import { probeReason } from './probe'
import { respondHttp2 } from './http2'
import { markHeaderBlockSent, pendingHeaderBlock, refreshIdleTimer, socketFd, socketWrite } from './net-internals'
import type { RespondWithFileOptions, RespondWithFileResult } from './respond-types'
import { ZeroCopySocket } from './socket'
import { validateOptions } from './validate'

export type { RequestHead, RespondWithFileOptions, RespondWithFileResult } from './respond-types'

/**
 * Bodies up to this many bytes go through node:http itself: read from the page cache without
 * waiting for the disk and written with the headers in one `writev` (Bun and lighttpd do the
 * same for small files): one segment to the peer, and every wrapper of `res` sees the body.
 */
const BUFFERED_BODY_MAX = 16 * 1024

/** The result's `fallbackReason` for such a body. */
const SMALL_BODY = `small body (up to ${BUFFERED_BODY_MAX / 1024} KiB): read from the page cache and written with the headers in one write`

/**
 * The body, read now from the page cache, when it is small and the file is as `file.stats`
 * said after the read (same size, mtime and ctime: not written meanwhile, so the body matches
 * the headers made from those stats); otherwise `null`.
 */
function bufferedBody(res: http.ServerResponse, file: PreparedFile, offset: number, length: number): Buffer | null {
  if (length === 0 || length > BUFFERED_BODY_MAX || res.req?.method === 'HEAD') return null
  const body = readNow(file.fd, offset, length)
  if (body === null) return null
  const now = fstatSync(file.fd)
  const { stats } = file
  return now.size === stats.size && now.mtimeMs === stats.mtimeMs && now.ctimeMs === stats.ctimeMs ? body : null
}

/** Resolves once node:http attached `res` to its socket (a pipelined response waits its turn). */
async function attachedSocket(res: http.ServerResponse): Promise<net.Socket> {
  if (res.socket) return res.socket
  const [socket] = (await Promise.race([once(res, 'socket'), once(res, 'close').then(() => [null])])) as [net.Socket | null]
  if (socket === null) throw codedError('ERR_STREAM_DESTROYED', 'The response was closed before it could be sent')
  return socket
}

/** Why the body cannot go through the engine on this socket, or `null` when it can. */
function fallbackReason(socket: net.Socket): string | null {
  if (socket instanceof tls.TLSSocket) return 'TLS socket: bytes must go through TLS, so the body is streamed through the response'
  if (!engineAvailable()) return engineFailure() ?? probeReason()
  return null
}

/**
 * Responds to an HTTP/1.1 request with (a window of) a file, named after node:http2's
 * `respondWithFile`. The file is opened and checked **before** anything is sent: a missing
 * file rejects with `ENOENT` and leaves `res` untouched, so the caller can still send a 404.
 * Then it sets `Content-Length` (and `Content-Range` for a `range`), writes the status
 * (`res.statusCode`, `206` or `416`) and headers through node:http, sends the body
 * page-cache-to-socket, hands the socket back to node:http and ends `res`, so keep-alive and
 * pipelined requests go on. `HEAD` requests get the headers only.
 *
 * Small bodies whose pages are cached go out with one non-blocking `sendfile(2)` right on this
 * thread; the rest goes through the io_uring engine ({@link ZeroCopySocket.sendFile}), which
 * never blocks the event loop. Over TLS, or where the engine is unavailable, the body is
 * streamed through `res` instead, and the result says so.
 *
 * Works with Express (`res` is a `ServerResponse`) and with Fastify through `reply.raw` after
 * `reply.hijack()`. An `Http2ServerResponse` (node:http2's compatibility API,
 * `Fastify({ http2: true })`) gets the same head, and its body through node:http2's own file
 * path (`stream.respondWithFD`), or streamed through `res` when something wraps its
 * `write`/`end`/`writeHead`; never zero-copy, and the result's `fallbackReason` says why.
 *
 * The request (`options.req`, else `res.req`) is read for `HEAD`, for `If-Range` (always
 * honoured: a stale one gets the whole window, never a spliced file) and, with
 * `conditional: true`, for `304`/`412` as `send` answers them. `etag`, `lastModified`,
 * `contentType` and `attachment` add the headers a download endpoint would write by hand.
 * @param res - The response; its headers must not have been sent.
 * @param file - A path, a file descriptor or a `FileHandle` of a regular file. Descriptors
 *   and handles stay the caller's (they may be closed as soon as this returns).
 * @param headers - Headers to send besides those already set on `res`.
 * @param options - `offset`, `length`, `range`, `req`, `conditional`, `etag`, `lastModified`,
 *   `contentType`, `attachment`, `signal`, `onProgress`, `statCheck`.
 * @returns How it answered.
 * @throws `TypeError` `ERR_INVALID_ARG_TYPE` (`ERR_INVALID_ARG_VALUE` for `contentType: true`
 *   with a descriptor) synchronously for bad arguments. Rejects with
 *   `ERR_HTTP_HEADERS_SENT`; the file's errors (`ENOENT`, `EISDIR`, `ERR_OUT_OF_RANGE`) with
 *   `res` untouched; `AbortError`; and, once the body started, the socket's error (a client
 *   that went away), after which the connection is destroyed and the server goes on (HTTP/2:
 *   the stream is reset, `ERR_STREAM_DESTROYED`, and the session goes on).
 */
export function respondWithFile(
  res: http.ServerResponse | Http2ServerResponse,
  file: FileSource,
  headers?: OutgoingHttpHeaders,
  options?: RespondWithFileOptions,
): Promise<RespondWithFileResult> {
  const h2 = res instanceof Http2ServerResponse
  if (!h2 && !(res instanceof http.ServerResponse)) throw invalidArgType('res', 'an instance of http.ServerResponse or http2.Http2ServerResponse', res)
  validateOptions(headers, 'headers')
  const { range, req, conditional, etag, lastModified, contentType, attachment, statCheck, ...sendOptions } = options ?? {}
  const headOptions: HeadOptions = { range, req, conditional, etag, lastModified, contentType, attachment, statCheck }
  validateSendFile(file, sendOptions)
  const path = typeof file === 'string' ? file : undefined
  validateHeadOptions(headOptions, path)
  if (res.headersSent) return Promise.reject(headersSentError())
  let taken
  try {
    taken = takeFile(file)
  } catch (e) {
    return Promise.reject(e)
  }
  const preparing = path !== undefined ? prepareServedFile(path, sendOptions) : prepareFile(taken, sendOptions)
  if (h2) return respondHttp2(res, preparing, { ...headers }, path, headOptions, sendOptions)
  return respond(res, preparing, { ...headers }, path, headOptions, sendOptions)
}

async function respond(
  res: http.ServerResponse,
  preparing: Promise<PreparedFile>,
  headers: OutgoingHttpHeaders,
  path: string | undefined,
  headOptions: HeadOptions,
  options: Pick<RespondWithFileOptions, 'signal' | 'onProgress'>,
): Promise<RespondWithFileResult> {
  const file = await preparing
  try {
    const { signal } = options
    const decided = decideHead(res, file, headers, path, headOptions, signal)
    if (decided === null) return cancelledResult()
    const { status, offset, length } = decided
    // res.socket is null while a pipelined response waits its turn; the request's socket is set.
    closeWithServer(((res.req?.socket ?? res.socket) as { server?: net.Server } | null | undefined)?.server)
    const buffered = bufferedBody(res, file, offset, length)
    if (buffered !== null) {
      res.end(buffered)
      options.onProgress?.(length, length)
      return { status, bytes: length, zeroCopy: false, fallbackReason: SMALL_BODY }
    }
    const socket = await attachedSocket(res)
    if (signal?.aborted) throw abortError(signal)
    const reason = fallbackReason(socket)
    const head = res.req?.method === 'HEAD'
    if (head || length === 0) {
      res.end()
      return { status, bytes: 0, zeroCopy: reason === null, fallbackReason: reason }
    }
    const body = { ...file, offset, length }
    if (socket instanceof tls.TLSSocket) {
      await streamBody(res, body, 0, options)
      return { status, bytes: length, zeroCopy: false, fallbackReason: reason }
    }
    res.writeHead(status)
    const inline = sendNow(res, socket, body, options)
    if (inline < length && reason !== null) {
      // No engine here (io_uring blocked, another platform): the rest through the response.
      await streamBody(res, body, inline, options)
      return { status, bytes: length, zeroCopy: false, fallbackReason: reason }
    }
    if (inline < length) await sendRest(res, socket, body, inline, options)
    else res.end()
    return { status, bytes: length, zeroCopy: true, fallbackReason: null }
  } finally {
    await file.close()
  }
}

/** The fallback: the body after `from` read in chunks and written through `res`, with its backpressure. */
async function streamBody(
  res: http.ServerResponse,
  file: PreparedFile,
  from: number,
  options: Pick<RespondWithFileOptions, 'signal' | 'onProgress'>,
): Promise<void> {
  let sent = from
  const rest = { ...file, offset: file.offset + from, length: file.length - from }
  const chunks = Readable.from(
    (async function* () {
      for await (const chunk of readChunks(rest, 64 * 1024)) {
        yield chunk
        sent += chunk.length
        options.onProgress?.(sent, file.length)
      }
    })(),
  )
  await pipeline(chunks, res, { signal: options.signal })
}

/**
 * Sends what it can of the body right now on this thread, when nothing is queued ahead of it:
 * one non-blocking `sendfile(2)` of cached pages (see src/direct.ts); `0` when it cannot.
 * A failure destroys the socket (the response is broken) and throws the socket's error.
 */
function sendNow(res: http.ServerResponse, socket: net.Socket, file: PreparedFile, options: Pick<RespondWithFileOptions, 'onProgress'>): number {
  const fd = socketFd(socket)
  const block = pendingHeaderBlock(res)
  if (socket.writableLength > 0 || socket.writableCorked > 0 || socket.connecting || fd < 0 || block === null) {
    res.flushHeaders()
    return 0
  }
  // The header block goes with the body's first bytes, in one segment (MSG_MORE), or not at all.
  const head = Buffer.from(block, 'latin1')
  let sent: number
  try {
    sent = sendfileNow(fd, file.fd, file.offset, file.length, head)
  } catch (e) {
    socket.destroy(e as Error)
    throw e
  }
  if (sent === 0) {
    res.flushHeaders()
    return 0
  }
  markHeaderBlockSent(res)
  refreshIdleTimer(socket)
  if (sent < head.length) {
    // The socket filled up within the head: the rest of it through the socket, then the body.
    socketWrite.call(socket, head.subarray(sent), () => {})
    return 0
  }
  sent -= head.length
  if (sent > 0) options.onProgress?.(sent, file.length)
  return sent
}

/**
 * The body after `sent` through the engine, which waits for room off this thread; then the
 * socket back to node:http and `res` ended. The headers are in the socket (or in its buffer,
 * which `from()` waits to drain) before any body byte.
 */
async function sendRest(
  res: http.ServerResponse,
  socket: net.Socket,
  file: PreparedFile,
  sent: number,
  options: Pick<RespondWithFileOptions, 'signal' | 'onProgress'>,
): Promise<void> {
  const zs = ZeroCopySocket.from(socket)
  const onProgress = options.onProgress
  try {
    await zs.sendFile(file.fd, {
      offset: file.offset + sent,
      length: file.length - sent,
      signal: options.signal,
      onProgress: onProgress && ((n) => onProgress(sent + n, file.length)),
    })
  } catch (e) {
    // A body cut short cannot be finished on this connection: it goes.
    zs.destroy()
    res.destroy()
    throw e
  }
  try {
    await zs.release()
  } catch (e) {
    // The whole body is with the kernel; a client that closed the connection right after it
    // (curl after its last URL) does not make the response fail.
    if (socket.destroyed) return void res.destroy()
    throw e
  }
  res.end()
}
