/**
 * A raw HTTP/1.1 client for tests: pipelined requests written in one go on one socket, and a
 * strict parser of the byte stream that comes back, so a response that carries another's bytes
 * (or too many, or too few) shows as a parse error or a wrong body, not as a retry.
 */
import net from 'node:net'

import { clearFileCache } from '../index'

/** One parsed response. */
export interface WireResponse {
  status: number
  headers: Record<string, string | undefined>
  body: Buffer
}

/** A request line and headers; `method` defaults to GET. */
export interface WireRequest {
  path: string
  method?: string
  headers?: Record<string, string>
}

/** The bytes of `requests`, pipelined, for host `127.0.0.1`. */
export function requestBytes(requests: WireRequest[]): Buffer {
  let out = ''
  for (const r of requests) {
    out += `${r.method ?? 'GET'} ${r.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
    for (const [k, v] of Object.entries(r.headers ?? {})) out += `${k}: ${v}\r\n`
    out += '\r\n'
  }
  return Buffer.from(out, 'latin1')
}

/**
 * Parses responses from `data` in order, one per request (a `HEAD` request's response has no
 * body); stops at the first incomplete one. Throws on a malformed stream.
 * @returns The complete responses, and how many bytes they took.
 */
export function parseResponses(data: Buffer, requests: WireRequest[]): { responses: WireResponse[]; used: number } {
  const responses: WireResponse[] = []
  let at = 0
  for (const req of requests) {
    const end = data.indexOf('\r\n\r\n', at, 'latin1')
    if (end < 0) break
    const lines = data.subarray(at, end).toString('latin1').split('\r\n')
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] + ' ')
    if (!m) throw new Error(`not a status line at byte ${at}: ${JSON.stringify(lines[0].slice(0, 80))}`)
    const status = Number(m[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon <= 0) throw new Error(`bad header line ${JSON.stringify(line)}`)
      const name = line.slice(0, colon).toLowerCase()
      if (name in headers && name !== 'set-cookie' && name !== 'vary') throw new Error(`header ${name} twice`)
      headers[name] = line.slice(colon + 1).trim()
    }
    let p = end + 4
    let body: Buffer
    if (req.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) body = Buffer.alloc(0)
    else if (headers['transfer-encoding'] !== undefined) {
      if (headers['content-length'] !== undefined) throw new Error('both Content-Length and Transfer-Encoding')
      const chunks: Buffer[] = []
      let complete = false
      for (;;) {
        const lineEnd = data.indexOf('\r\n', p, 'latin1')
        if (lineEnd < 0) break
        const size = parseInt(data.subarray(p, lineEnd).toString('latin1'), 16)
        if (!Number.isFinite(size)) throw new Error(`bad chunk size at byte ${p}`)
        if (lineEnd + 2 + size + 2 > data.length) break
        chunks.push(data.subarray(lineEnd + 2, lineEnd + 2 + size))
        p = lineEnd + 2 + size + 2
        if (size === 0) {
          complete = true
          break
        }
      }
      if (!complete) break
      body = Buffer.concat(chunks)
    } else {
      const length = Number(headers['content-length'] ?? 'NaN')
      if (!Number.isInteger(length)) throw new Error(`status ${status} without Content-Length`)
      if (p + length > data.length) break
      body = data.subarray(p, p + length)
      p += length
    }
    responses.push({ status, headers, body })
    at = p
  }
  return { responses, used: at }
}

/** A raw connection: what it received so far, and a promise of the end (or reset) of the stream. */
export interface WireClient {
  socket: net.Socket
  received(): Buffer
  closed: Promise<void>
}

/** Connects to `port`, writes `requests` pipelined, and collects what comes back; `paused` starts without reading. */
export async function pipeline(port: number, requests: WireRequest[], paused = false): Promise<WireClient> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  if (paused) socket.pause()
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('error', () => {})
  socket.write(requestBytes(requests))
  return { socket, received: () => Buffer.concat(chunks), closed }
}

/** Reads until `n` responses parsed (or the stream closed), within `ms`. */
export async function responses(client: WireClient, requests: WireRequest[], n = requests.length, ms = 20_000): Promise<WireResponse[]> {
  client.socket.resume()
  const deadline = Date.now() + ms
  for (;;) {
    const { responses: got } = parseResponses(client.received(), requests)
    if (got.length >= n) return got
    if (client.socket.destroyed || Date.now() > deadline) return got
    await new Promise((r) => setTimeout(r, 10))
  }
}

/**
 * The descriptors of this process open on `path` (Linux: `/proc/self/fd`), after the descriptor
 * cache closed its idle ones (they are not leaks; one still used by a response counts).
 */
export async function openDescriptors(path: string): Promise<number> {
  const { readdir, readlink } = await import('node:fs/promises')
  clearFileCache()
  let n = 0
  for (const fd of await readdir('/proc/self/fd')) {
    try {
      if ((await readlink(`/proc/self/fd/${fd}`)) === path) n++
    } catch {
      // closed meanwhile
    }
  }
  return n
}

/** `p` within `ms`, or a rejection naming `what`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms))),
  ])
}
