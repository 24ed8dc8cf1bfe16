/**
 * HTTP/1.1 file responses for node:http: `respondWithFile` writes the status and headers
 * through the `ServerResponse`, sends the body page-cache-to-socket, hands the socket back to
 * node:http and finishes the response, so keep-alive and pipelining go on.
 * @module
 */
import * as http from 'node:http'
import type { OutgoingHttpHeaders } from 'node:http'
import { Http2ServerResponse } from 'node:http2'
import { fstatSync } from 'node:fs'
import type * as net from 'node:net'

import { bodyPath, forbidsBody } from './body-path'
import { answerFromCache } from './cached-answer'
import { cancelledResult, decideHead, headersSentError, validateHeadOptions, type HeadOptions } from './conditional'
import { readNow, sendfileNow } from './direct'
import { abortError, codedError, invalidArgType } from './errors'
import { closeWithServer, prepareServedFile } from './file-cache'
import { prepareFile, readChunks, takeFile, validateSendFile, type FileSource, type PreparedFile, type SendFileOptions } from './file'
import { respondHttp2 } from './http2'
import { countDrainAsActivity, markHeaderBlockSent, pendingHeaderBlock, refreshIdleTimer, socketFd, socketWrite } from './net-internals'
import type { RespondWithFileOptions, RespondWithFileResult } from './respond-types'
import { ZeroCopySocket } from './socket'
import { StagedHead } from './staged-head'
import { ResponseHold } from './takeover'
import { validateOptions } from './validate'

export type { RequestHead, RespondWithFileOptions, RespondWithFileResult } from './respond-types'

/** Responses a `respondWithFile` call is answering: a second call on one of them rejects. */
const answering = new WeakSet<http.ServerResponse>()

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
function bufferedBody(file: PreparedFile): Buffer | null {
  if (file.length === 0 || file.length > BUFFERED_BODY_MAX) return null
  const body = readNow(file.fd, file.offset, file.length)
  if (body === null) return null
  const now = fstatSync(file.fd)
  const { stats } = file
  return now.size === stats.size && now.mtimeMs === stats.mtimeMs && now.ctimeMs === stats.ctimeMs ? body : null
}

/**
 * Resolves with the socket once node:http attached `res` to it (a pipelined response waits for
 * the ones before it). Rejects when the wait can never end: `res` closed, the connection closed
 * (node gives a queued response neither 'socket' nor 'close' then; its request's socket closes),
 * or `signal` aborted.
 */
function attachedSocket(res: http.ServerResponse, signal: AbortSignal | undefined): Promise<net.Socket> {
  if (res.socket) return Promise.resolve(res.socket)
  const connection = res.req?.socket as net.Socket | undefined
  return new Promise((resolve, reject) => {
    let unwatch = (): void => {}
    const done = (): void => {
      res.off('socket', onSocket)
      res.off('close', onGone)
      unwatch()
      signal?.removeEventListener('abort', onAbort)
    }
    const onSocket = (socket: net.Socket): void => (done(), resolve(socket))
    const onGone = (): void => (done(), reject(codedError('ERR_STREAM_DESTROYED', 'The connection closed before the response could be sent')))
    const onAbort = (): void => (done(), reject(abortError(signal)))
    res.on('socket', onSocket)
    res.on('close', onGone)
    if (connection) unwatch = onConnectionClose(connection, onGone)
    signal?.addEventListener('abort', onAbort)
    if (connection?.destroyed || res.destroyed) onGone()
  })
}

/** Queued responses waiting on each connection: one 'close' listener per connection, however deep the pipeline. */
const waiting = new WeakMap<net.Socket, Set<() => void>>()

/** Calls `fn` when `connection` closes; returns the function that cancels it. */
function onConnectionClose(connection: net.Socket, fn: () => void): () => void {
  let fns = waiting.get(connection)
  if (fns === undefined) {
    const all = new Set<() => void>()
    fns = all
    waiting.set(connection, all)
    connection.once('close', () => {
      waiting.delete(connection)
      for (const f of all) f()
    })
  }
  const mine = fns
  mine.add(fn)
  return () => void mine.delete(fn)
}

/** Fully uncorks `socket` (a `res.cork()` before the call left the headers in it; `res.end()` does the same). */
function uncork(socket: net.Socket): void {
  // A test double (inject()) may have no cork count at all.
  while ((socket.writableCorked ?? 0) > 0) socket.uncork()
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
 * A file of up to 64 KiB answered recently is answered at once from the bytes the descriptor
 * cache keeps (one `res.end()`, no `await`; see `configureFileCache()` for the freshness
 * rule). Small bodies whose pages are cached go out with one non-blocking `sendfile(2)` right on this
 * thread; the rest goes through the io_uring engine ({@link ZeroCopySocket.sendFile}), which
 * never blocks the event loop. The body goes to the socket only when the final header block
 * (after every `on-headers` hook) frames it as exactly `Content-Length: <length>` with no
 * `Content-Encoding`/`Transfer-Encoding` on a kernel TCP socket without TLS (see
 * src/body-path.ts); otherwise — `compression()`, TLS, a test double such as `inject()`, no
 * engine — it is streamed through `res` with its backpressure, and the result says why.
 * `204`, `304` and `1xx` (set on `res` before the call) get no body.
 *
 * A pipelined response waiting for its turn is left untouched until node:http attaches it to
 * the socket; if the connection dies or `signal` aborts meanwhile it rejects at once, and if
 * something else answered it meanwhile (a timeout middleware) it rejects
 * `ERR_HTTP_HEADERS_SENT` and sends nothing. While the body goes, the handler's `res.write()`
 * and `res.end(data)` send nothing (their callback gets `ERR_ZC_SOCKET_OWNED`; nothing is
 * thrown) and `res.end()` takes effect once the body is out.
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
 *   with a descriptor) synchronously for bad arguments. Rejects with `ERR_HTTP_HEADERS_SENT`
 *   (headers already sent, answered by someone else while queued, or another call already
 *   answering `res`); with `res` untouched: the file's errors (`ENOENT`, `EISDIR`,
 *   `ERR_OUT_OF_RANGE`), `AbortError`, `ERR_STREAM_DESTROYED` (the connection closed while the
 *   response was queued); and, once the header block is out, the socket's error (a client
 *   that went away) or `onProgress`'s, after which the connection is destroyed and the server
 *   goes on (HTTP/2: the stream is reset, `ERR_STREAM_DESTROYED`, and the session goes on).
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
  let headOptions: HeadOptions = NO_OPTIONS
  let sendOptions: SendFileOptions | undefined
  if (options !== undefined) {
    const { range, req, conditional, etag, lastModified, contentType, attachment, statCheck, ...rest } = options
    headOptions = { range, req, conditional, etag, lastModified, contentType, attachment, statCheck }
    sendOptions = rest
  }
  validateSendFile(file, sendOptions)
  const path = typeof file === 'string' ? file : undefined
  if (headOptions !== NO_OPTIONS) validateHeadOptions(headOptions, path)
  if (res.headersSent) return Promise.reject(headersSentError())
  if (h2) {
    let taken
    try {
      taken = takeFile(file)
    } catch (e) {
      return Promise.reject(e)
    }
    return respondHttp2(res, prepare(taken, path, sendOptions), { ...headers }, path, headOptions, sendOptions ?? {})
  }
  if (answering.has(res)) return Promise.reject(headersSentError())
  if (path !== undefined && sendOptions?.signal === undefined && sendOptions?.onProgress === undefined) {
    try {
      const answered = answerFromCache(res, path, headers, headOptions, sendOptions)
      if (answered !== undefined) return Promise.resolve(answered)
    } catch (e) {
      return Promise.reject(e)
    }
  }
  let taken
  try {
    taken = takeFile(file)
  } catch (e) {
    return Promise.reject(e)
  }
  answering.add(res)
  const answered = respond(res, prepare(taken, path, sendOptions), { ...headers }, path, headOptions, sendOptions ?? {})
  return answered.finally(() => answering.delete(res))
}

/** The head options of a call without options. */
const NO_OPTIONS: HeadOptions = Object.freeze({})

/** A path through the descriptor cache (src/file-cache.ts); a descriptor or handle as taken. */
function prepare(taken: ReturnType<typeof takeFile>, path: string | undefined, options: Parameters<typeof prepareFile>[1]): Promise<PreparedFile> {
  return path !== undefined ? prepareServedFile(path, options) : prepareFile(taken, options)
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
    // The head is decided now (statCheck, preconditions, range), but on a stage: nothing is set
    // on `res` until node:http attaches it to the socket. Until then it may be aborted, its
    // connection may die, or someone else (a timeout middleware) may answer it.
    const stage = new StagedHead(res)
    const decided = decideHead(stage, file, headers, path, headOptions, signal)
    if (decided === null) return cancelledResult()
    const socket = await attachedSocket(res, signal)
    if (signal?.aborted) throw abortError(signal)
    if (res.headersSent || res.writableEnded) throw headersSentError()
    stage.apply(res)
    return await answer(res, socket, { ...file, offset: decided.offset, length: decided.length }, decided.status, options)
  } finally {
    await file.close()
  }
}

/**
 * Sends the response on its attached socket: the header block, then the body by the path
 * {@link bodyPath} chose. Runs to the header block without waiting, so nothing else can touch
 * `res` in between. Once the header block is stored, a failure destroys the response (the
 * connection cannot carry a response cut short).
 */
async function answer(
  res: http.ServerResponse,
  socket: net.Socket,
  body: PreparedFile,
  status: number,
  options: Pick<RespondWithFileOptions, 'signal' | 'onProgress'>,
): Promise<RespondWithFileResult> {
  const { length } = body
  const bodiless = forbidsBody(status) || res.req?.method === 'HEAD'
  // No body, no framing (RFC 9110 8.6: no Content-Length in a 204 or 1xx); a Transfer-Encoding
  // set by the caller frames the body itself (node:http then streams it in chunks).
  if (forbidsBody(status) || res.hasHeader('transfer-encoding')) res.removeHeader('content-length')
  // The header block is fixed here, after every on-headers hook (compression decides now). From
  // here the body is ours: the handler's res.write()/res.end() are held until it is complete.
  res.writeHead(status)
  // A res.cork() before the call would keep the headers (and a streamed body's backpressure)
  // in the socket for good; res.end() uncorks fully too.
  uncork(socket)
  const hold = new ResponseHold(res)
  closeWithServer((socket as { server?: net.Server }).server)
  try {
    const path = bodyPath(res, socket, length)
    const fallbackReason = path.kind === 'engine' ? null : path.reason
    if (bodiless || length === 0) {
      hold.finish()
      return { status, bytes: 0, zeroCopy: path.kind !== 'stream' && fallbackReason === null, fallbackReason }
    }
    // A small body goes through res whatever the path: one write with the header block, seen
    // by every wrapper of res.write, counted by node:http.
    const small = bufferedBody(body)
    if (small !== null) {
      hold.write(small)
      hold.finish()
      options.onProgress?.(length, length)
      return { status, bytes: length, zeroCopy: false, fallbackReason: fallbackReason ?? SMALL_BODY }
    }
    if (path.kind === 'stream') {
      await streamBody(res, hold, body, 0, options)
      hold.finish()
      return { status, bytes: length, zeroCopy: false, fallbackReason }
    }
    // Body bytes go to the socket from here; node:http counts none of them.
    res.strictContentLength = false
    const inline = sendNow(res, socket, body, options)
    if (inline < length && path.kind === 'inline-then-stream') {
      // No engine here (io_uring blocked, another platform): the rest through the response.
      await streamBody(res, hold, body, inline, options)
      hold.finish()
      return { status, bytes: length, zeroCopy: false, fallbackReason }
    }
    if (inline < length) await sendRest(socket, body, inline, options)
    hold.finish()
    return { status, bytes: length, zeroCopy: true, fallbackReason: null }
  } catch (e) {
    // The header block is out (or stored): a response cut short cannot be finished on this connection.
    hold.release()
    res.destroy()
    throw e
  }
}

/**
 * The body after `from`, read in chunks and written through `res` (through whatever wraps its
 * `write`, e.g. compression) with its backpressure: after a `write()` that returns `false` it
 * waits for `'drain'`. Rejects when `res` closes first or `signal` aborts.
 */
async function streamBody(
  res: http.ServerResponse,
  hold: ResponseHold,
  file: PreparedFile,
  from: number,
  options: Pick<RespondWithFileOptions, 'signal' | 'onProgress'>,
): Promise<void> {
  const { signal } = options
  let wake: ((err?: Error) => void) | null = null
  const onDrain = (): void => wake?.()
  const onClose = (): void => wake?.(codedError('ERR_STREAM_DESTROYED', 'The response closed before its body was sent'))
  const onAbort = (): void => wake?.(abortError(signal))
  // One listener each for the whole body (compression keeps 'drain' listeners on its own stream).
  res.on('drain', onDrain)
  res.on('close', onClose)
  signal?.addEventListener('abort', onAbort)
  try {
    let sent = from
    for await (const chunk of readChunks({ ...file, offset: file.offset + from, length: file.length - from }, 64 * 1024)) {
      if (signal?.aborted) throw abortError(signal)
      if (res.destroyed) throw codedError('ERR_STREAM_DESTROYED', 'The response closed before its body was sent')
      const more = hold.write(chunk)
      sent += chunk.length
      options.onProgress?.(sent, file.length)
      if (!more)
        await new Promise<void>((resolve, reject) => {
          wake = (err) => (err ? reject(err) : resolve())
        })
      wake = null
    }
  } finally {
    res.off('drain', onDrain)
    res.off('close', onClose)
    signal?.removeEventListener('abort', onAbort)
  }
}

/**
 * Sends what it can of the body right now on this thread, when nothing is queued ahead of it:
 * the stored header block and one non-blocking `sendfile(2)` of cached pages in one segment
 * (see src/direct.ts); `0` body bytes when it cannot (the header block then goes through the
 * socket, before anything the engine sends). A failure destroys the socket (the response is
 * broken) and throws the socket's error.
 */
function sendNow(res: http.ServerResponse, socket: net.Socket, file: PreparedFile, options: Pick<RespondWithFileOptions, 'onProgress'>): number {
  const fd = socketFd(socket)
  const block = pendingHeaderBlock(res)
  if (socket.writableLength > 0 || socket.writableCorked > 0 || socket.connecting || fd < 0 || block === null) {
    res.flushHeaders()
    return 0
  }
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
 * socket back to node:http. The headers are in the socket (or in its buffer, which `from()`
 * waits to drain) before any body byte. A failure destroys the connection.
 */
async function sendRest(socket: net.Socket, file: PreparedFile, sent: number, options: Pick<RespondWithFileOptions, 'signal' | 'onProgress'>): Promise<void> {
  const zs = ZeroCopySocket.from(socket)
  const onProgress = options.onProgress
  // The engine's progress events come from its event dispatch: a throwing onProgress must not
  // escape there; it ends the response with its error instead.
  let progressFailed = null as { error: unknown } | null
  const progress =
    onProgress &&
    ((n: number): void => {
      if (progressFailed) return
      try {
        onProgress(sent + n, file.length)
      } catch (error) {
        progressFailed = { error }
        zs.destroy()
      }
    })
  const stopWatching = countDrainAsActivity(socket)
  try {
    try {
      await zs.sendFile(file.fd, { offset: file.offset + sent, length: file.length - sent, signal: options.signal, onProgress: progress })
    } catch (e) {
      zs.destroy()
      throw progressFailed ? progressFailed.error : e
    }
    if (progressFailed) throw progressFailed.error
    try {
      await zs.release()
    } catch (e) {
      // The whole body is with the kernel; a client that closed the connection right after it
      // (curl after its last URL) does not make the response fail.
      if (!socket.destroyed) throw e
    }
  } finally {
    stopWatching()
  }
}
