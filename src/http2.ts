/**
 * `respondWithFile` for node:http2's compatibility API (`Http2ServerResponse`, what
 * `http2.createServer`/`createSecureServer` handlers and `Fastify({ http2: true })` get).
 *
 * HTTP/2 frames every body byte (DATA frames under flow control, often inside TLS), and
 * nghttp2 owns the socket, so the page cache cannot go to the socket directly: the result
 * says `zeroCopy: false` with the reason. The head (status, `Content-Length`, ranges,
 * `If-Range`, conditionals) is decided by src/conditional.ts exactly as on HTTP/1.1; the body
 * is read in chunks and written through `res` with its backpressure, so a wrapper that changes
 * the body (a compression middleware) gets every byte.
 *
 * Not node:http2's own file path (`stream.respondWithFD`/`respondWithFile`): on Node 20 it
 * crashes the process (SIGSEGV) when a client resets the stream while the file is being read,
 * 1 run in 3 of 200 random resets (docs/http2.md has the reproduction). A client must never be
 * able to take the server down.
 * @module
 */
import { constants, type Http2ServerResponse } from 'node:http2'
import type { OutgoingHttpHeaders } from 'node:http'
import type { Server } from 'node:net'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { cancelledResult, decideHead, type HeadOptions } from './conditional'
import { abortError, codedError } from './errors'
import { closeWithServer } from './file-cache'
import { readChunks, type PreparedFile } from './file'
import type { RespondWithFileOptions, RespondWithFileResult } from './respond-types'

type BodyOptions = Pick<RespondWithFileOptions, 'signal' | 'onProgress'>

/** The result's `fallbackReason` on HTTP/2. */
const HTTP2_REASON = 'HTTP/2: node:http2 frames every body byte, so the body is streamed through the response'

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
    // The session's socket (a proxy of it) names the server the cache closes with.
    closeWithServer((res.stream.session?.socket as { server?: Server } | undefined)?.server)
    const fallbackReason = HTTP2_REASON
    if (res.req?.method === 'HEAD' || length === 0) {
      res.end()
      return { status, bytes: 0, zeroCopy: false, fallbackReason }
    }
    const body = { ...file, offset, length }
    await streamBody(res, body, options)
    return { status, bytes: length, zeroCopy: false, fallbackReason }
  } finally {
    await file.close()
  }
}

/**
 * The body read in chunks and written through `res` (and so through whatever wraps it), with
 * its backpressure; settles once the stream closed. node's compatibility layer emits the
 * response's 'finish' when the stream closes, reset or not, so success is checked: `res` was
 * ended (all of the body written) and the stream closed without an error code.
 */
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
  // An abort resets the stream with CANCEL, as a client's own cancel would.
  const onAbort = (): void => void res.stream.close(constants.NGHTTP2_CANCEL)
  signal?.addEventListener('abort', onAbort, { once: true })
  let failure: unknown
  try {
    await pipeline(chunks, res)
  } catch (e) {
    failure = e
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
  if (signal?.aborted) throw abortError(signal)
  // A read error (ERR_ZC_FILE_SHRANK) destroyed the stream; it is the reason.
  if (failure !== undefined && (failure as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw failure
  const code = res.stream.rstCode
  if (failure !== undefined || !res.writableEnded || (code !== undefined && code !== constants.NGHTTP2_NO_ERROR)) throw streamGoneError(code)
}
