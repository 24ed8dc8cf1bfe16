/**
 * Which way a file response's body goes: page-cache-to-socket through the engine, or streamed
 * through the `ServerResponse` (with its backpressure). One function, {@link bodyPath}, decides
 * it once the header block is fixed (after `res.writeHead()` ran every `on-headers` hook) and
 * before any body byte is sent.
 *
 * The rule: the engine writes the file's bytes to the kernel socket behind node:http's back, so
 * it may only do so when what goes on the wire is exactly what node:http would send for those
 * bytes written through `res`:
 * - the response's socket is a kernel TCP socket without TLS (a test double such as Fastify's
 *   `inject()` has no descriptor; TLS must encrypt) and the engine is available;
 * - the header block frames the body as `Content-Length: <length>` and nothing else: exactly one
 *   `Content-Length` with the body's length, no `Transfer-Encoding` (node:http would frame
 *   chunks), and no `Content-Encoding` other than `identity`.
 *
 * A middleware that changes the body has to say so in the header block, because the client
 * reads the body by it: compression sets `Content-Encoding` and drops `Content-Length`
 * (node:http then frames chunks), injectors drop `Content-Length`. Those responses are streamed
 * through `res`, so their `res.write` wrapper gets every byte. A wrapper that leaves the header
 * block alone — express-session's `res.end`, morgan and response-time (`on-headers`),
 * on-finished, and compression itself when it decides not to compress (below its threshold, an
 * incompressible type) — keeps the engine path: the bytes on the wire are then the file's under
 * either path, and `res.end()` is still called once, with no data, after the body, as a stream
 * would call it.
 * @module
 */
import type * as http from 'node:http'
import * as net from 'node:net'
import * as tls from 'node:tls'

import { engineAvailable, engineFailure } from './engine'
import { socketFd } from './net-internals'
import { probeReason } from './probe'

/**
 * How the body goes:
 * - `'engine'`: to the kernel socket, inline `sendfile(2)` for cached pages, the engine for the rest;
 * - `'inline-then-stream'`: the engine is unavailable (`reason`): cached pages inline, the rest
 *   streamed through `res`;
 * - `'stream'`: all of it streamed through `res`, for `reason`.
 */
export type BodyPath = { kind: 'engine' } | { kind: 'inline-then-stream' | 'stream'; reason: string }

/** The framing fields of a header block: every `Content-Length`, `Transfer-Encoding` and `Content-Encoding` value. */
interface Framing {
  contentLength: string[]
  transferEncoding: string[]
  contentEncoding: string[]
}

/**
 * The framing fields of `res`'s header block as it will go on the wire: `res._header` once
 * `writeHead()` stored it (it is what node:http writes), else the headers set so far.
 */
function framing(res: http.ServerResponse): Framing {
  const out: Framing = { contentLength: [], transferEncoding: [], contentEncoding: [] }
  const block = (res as unknown as { _header?: unknown })._header
  if (typeof block === 'string') {
    for (const line of block.split('\r\n').slice(1)) {
      const colon = line.indexOf(':')
      if (colon <= 0) continue
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      if (name === 'content-length') out.contentLength.push(value)
      else if (name === 'transfer-encoding') out.transferEncoding.push(value)
      else if (name === 'content-encoding') out.contentEncoding.push(value)
    }
    return out
  }
  const values = (name: string): string[] => {
    const v = res.getHeader(name)
    return v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)]
  }
  return { contentLength: values('content-length'), transferEncoding: values('transfer-encoding'), contentEncoding: values('content-encoding') }
}

/** Why the header block does not frame the body as exactly `length` identity bytes, or `null`. */
function transformReason(res: http.ServerResponse, length: number): string | null {
  const f = framing(res)
  const coding = f.contentEncoding.join(',').trim().toLowerCase()
  if (coding !== '' && coding !== 'identity')
    return `the response is content-encoded (Content-Encoding: ${coding}, e.g. by compression()), so the body is streamed through it`
  if (f.transferEncoding.length > 0)
    return `the response has Transfer-Encoding: ${f.transferEncoding.join(', ')}, so node:http frames the body, which is streamed through it`
  if ((res as unknown as { chunkedEncoding?: boolean }).chunkedEncoding === true)
    return 'node:http frames the body in chunks, so it is streamed through the response'
  if (f.contentLength.length !== 1 || f.contentLength[0] !== String(length))
    return `the response's Content-Length (${f.contentLength.join(', ') || 'none'}) is not the body's ${length} bytes (a middleware changes the body), so the body is streamed through it`
  return null
}

/**
 * Whether the body of `res` (of `length` bytes) goes through the engine on `socket`, or is
 * streamed through `res`, and why; see the module doc for the rule. Call it after
 * `res.writeHead()` and before any body byte.
 * @param res - The response, its header block stored.
 * @param socket - The socket node:http attached to `res`.
 * @param length - The body's length in bytes.
 */
export function bodyPath(res: http.ServerResponse, socket: unknown, length: number): BodyPath {
  if (!(socket instanceof net.Socket) || socketFd(socket) < 0)
    return { kind: 'stream', reason: 'the response has no kernel socket (a test double such as inject()), so the body is streamed through it' }
  if (socket instanceof tls.TLSSocket) return { kind: 'stream', reason: 'TLS socket: bytes must go through TLS, so the body is streamed through the response' }
  const transformed = transformReason(res, length)
  if (transformed !== null) return { kind: 'stream', reason: transformed }
  if (!engineAvailable()) return { kind: 'inline-then-stream', reason: engineFailure() ?? probeReason() }
  return { kind: 'engine' }
}

/** node:http's rule (and RFC 9110's): these statuses never carry a body. */
export function forbidsBody(status: number): boolean {
  return status === 204 || status === 304 || (status >= 100 && status <= 199)
}
