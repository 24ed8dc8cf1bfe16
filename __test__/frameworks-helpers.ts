// Shared by the framework adapter specs: a fixture tree, a raw HTTP client, and the comparison
// of two servers' answers to the same request (status, headers, bytes).
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { patternBytes } from './helpers'

/** What came back for one request. */
export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One request on a fresh connection (or on `agent`'s), with a deadline. */
export function fetchRaw(
  port: number,
  path: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; agent?: http.Agent } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false })
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer to ${options.method ?? 'GET'} ${path} in 20 s`)))
    req.once('error', reject)
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('error', reject)
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.end()
  })
}

/** The fixture tree the adapter specs serve. */
export interface Fixture {
  root: string
  small: Buffer
  big: Buffer
  text: string
}

/** A root with `small.bin` (4 KiB), `big.bin` (3 MiB + 5), `empty.txt`, `sub/index.html`, `page.txt` (+ `.br`, `.gz`), `.hidden`. */
export function makeFixture(): Fixture {
  const root = mkdtempSync(join(tmpdir(), 'zc-frameworks-'))
  const small = patternBytes(4096, 7)
  const big = patternBytes(3 * 1024 * 1024 + 5, 11)
  const text = 'precompressed text '.repeat(5000)
  writeFileSync(join(root, 'small.bin'), small)
  writeFileSync(join(root, 'big.bin'), big)
  writeFileSync(join(root, 'page.txt'), text)
  writeFileSync(join(root, 'page.txt.br'), brotliCompressSync(text))
  writeFileSync(join(root, 'page.txt.gz'), gzipSync(text))
  writeFileSync(join(root, '.hidden'), 'hidden')
  writeFileSync(join(root, 'empty.txt'), '')
  mkdirSync(join(root, 'sub'))
  writeFileSync(join(root, 'sub', 'index.html'), '<h1>sub</h1>\n')
  return { root, small, big, text }
}

/** Headers that differ between any two answers (the clock, the connection). */
const VOLATILE = new Set(['date', 'connection', 'keep-alive'])

/** `headers` without the volatile ones, for deep comparison. */
export function stableHeaders(headers: http.IncomingHttpHeaders): Record<string, unknown> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !VOLATILE.has(name)))
}

/** A GET whose client goes away as soon as the first body bytes arrive. */
export function abortMidBody(port: number, path: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve()
      })
    })
    req.on('error', () => {})
  })
}

/** One HTTP/2 (h2c) request on a fresh session to 127.0.0.1:`port`, with a deadline. */
export function http2Get(port: number, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; body: Buffer }> {
  const client = http2.connect(`http://127.0.0.1:${port}`)
  return new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    const req = client.request({ ':path': path, ...headers })
    const chunks: Buffer[] = []
    let status = 0
    req.setTimeout(20_000, () => req.close(http2.constants.NGHTTP2_CANCEL))
    req.on('response', (head) => (status = Number(head[':status'])))
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve({ status, body: Buffer.concat(chunks) }))
    req.on('close', () => reject(new Error(`HTTP/2 ${path}: closed before the end`)))
    req.on('error', reject)
    req.end()
  }).finally(() => client.close())
}
