/**
 * `respondWithFile` for node:http2's compatibility API (`Http2ServerResponse`, what
 * `http2.createServer`/`createSecureServer` handlers and `Fastify({ http2: true })` get).
 *
 * HTTP/2 frames every body byte (DATA frames under flow control, often inside TLS), and
 * nghttp2 owns the socket, so the page cache cannot go to the socket directly: the result
 * says `zeroCopy: false` with the reason. The body goes the best way left:
 * - node:http2's own file path, `stream.respondWithFD`, which reads the file in C++ into the
 *   session's DATA frames without a JavaScript chunk per read, when nothing wraps the
 *   response's `write`/`end`/`writeHead`;
 * - streamed through `res` with its backpressure otherwise, so a wrapper that changes the body
 *   (a compression middleware) gets every byte.
 * The head (status, `Content-Length`, ranges, `If-Range`, conditionals) is decided by
 * src/conditional.ts exactly as on HTTP/1.1.
 * @module
 */
import { fstatSync } from 'node:fs'
import { constants, Http2ServerResponse } from 'node:http2'
import type { OutgoingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { cancelledResult, decideHead, type HeadOptions } from './conditional'
import { abortError, codedError } from './errors'
import { fileShrankError, readChunks, type PreparedFile } from './file'
import type { RespondWithFileOptions, RespondWithFileResult } from './respond-types'

type BodyOptions = Pick<RespondWithFileOptions, 'signal' | 'onProgress'>

/** The `fallbackReason` when node:http2 sends the body from the file itself. */
const FD_REASON = 'HTTP/2: node:http2 frames the body, so it goes through its own file path (stream.respondWithFD), not page-cache-to-socket'
/** The `fallbackReason` when something wraps the response. */
const WRAPPED_REASON = "HTTP/2: the response's write/end/writeHead are wrapped (e.g. compression), so the body is streamed through the response"

const proto = Http2ServerResponse.prototype

/**
 * The response's body reaches the stream unchanged only when its writing methods are node's
 * own: a middleware that replaced `write`, `end` or `writeHead` (compression, an on-headers
 * user) may change the body or its headers, and must see every byte.
 */
function writesAreNodes(res: Http2ServerResponse): boolean {
  return res.write === proto.write && res.end === proto.end && res.writeHead === proto.writeHead
}

function streamGoneError(code: number | undefined): Error {
  return codedError('ERR_STREAM_DESTROYED', `The HTTP/2 stream was closed (code ${code ?? 'none'}) before the body was sent`)
}

/** The HTTP/2 counterpart of src/http.ts's `respond`: the same head, then the body as above. */
export async function respondHttp2(
  res: Http2ServerResponse,
  preparing: Promise<PreparedFile>,
  headers: OutgoingHttpHeaders,
  path: string | undefined,
  headOptions: HeadOptions,
  options: BodyOptions,
): Promise<RespondWithFileResult> {
  const file = await preparing
  try {
    const decided = decideHead(res, file, headers, path, headOptions, options.signal, () => {
      if (res.stream.destroyed || res.stream.closed) throw streamGoneError(res.stream.rstCode)
    })
    if (decided === null) return cancelledResult()
    const { status, offset, length } = decided
    const direct = writesAreNodes(res)
    const fallbackReason = direct ? FD_REASON : WRAPPED_REASON
    if (res.req?.method === 'HEAD' || length === 0) {
      res.end()
      return { status, bytes: 0, zeroCopy: false, fallbackReason }
    }
    const body = { ...file, offset, length }
    if (direct) await sendFd(res, body, status, options)
    else await streamBody(res, body, options)
    return { status, bytes: length, zeroCopy: false, fallbackReason }
  } finally {
    await file.close()
  }
}

/**
 * The head and body through `stream.respondWithFD`, resolved once the stream closed having sent
 * it all. node:http2 never closes the descriptor; the caller does, after this settles, which is
 * after the stream stopped reading it. The response's 'finish' follows from the stream's close
 * (node's compatibility layer emits it there), so `on-finished` users see the end.
 */
function sendFd(res: Http2ServerResponse, file: PreparedFile, status: number, options: BodyOptions): Promise<void> {
  const stream = res.stream
  const { signal, onProgress } = options
  return new Promise((resolve, reject) => {
    let failure: Error | undefined
    const onAbort = (): void => {
      failure ??= abortError(signal)
      stream.close(constants.NGHTTP2_CANCEL)
    }
    const onError = (err: Error): void => {
      failure ??= err
    }
    stream.on('error', onError)
    signal?.addEventListener('abort', onAbort, { once: true })
    stream.once('close', () => {
      signal?.removeEventListener('abort', onAbort)
      stream.off('error', onError)
      if (failure === undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR) failure = streamGoneError(stream.rstCode)
      // node:http2 ends the stream cleanly at the file's end, short of Content-Length, when the
      // file shrank meanwhile (the client sees the mismatch): that is not a sent body.
      if (failure === undefined && fstatSync(file.fd).size < file.offset + file.length) failure = fileShrankError()
      if (failure !== undefined) return reject(failure)
      onProgress?.(file.length, file.length)
      resolve()
    })
    try {
      stream.respondWithFD(file.fd, { ...res.getHeaders(), [constants.HTTP2_HEADER_STATUS]: status }, { offset: file.offset, length: file.length })
    } catch (e) {
      // Refused before anything was sent (an invalid header): the stream goes, the caller hears why.
      failure ??= e as Error
      stream.close(constants.NGHTTP2_INTERNAL_ERROR)
    }
  })
}

/** The body read in chunks and written through `res` (and so through whatever wraps it), with its backpressure. */
async function streamBody(res: Http2ServerResponse, file: PreparedFile, options: BodyOptions): Promise<void> {
  const { signal, onProgress } = options
  let sent = 0
  const chunks = Readable.from(
    (async function* () {
      for await (const chunk of readChunks(file, 64 * 1024)) {
        yield chunk
        sent += chunk.length
        onProgress?.(sent, file.length)
      }
    })(),
  )
  await pipeline(chunks, res, { signal })
  // node's compatibility layer emits 'finish' when the stream closes, reset or not.
  const code = res.stream.rstCode
  if (code !== undefined && code !== constants.NGHTTP2_NO_ERROR) throw streamGoneError(code)
}
