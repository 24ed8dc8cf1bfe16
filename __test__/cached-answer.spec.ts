/**
 * The synchronous answer from kept bytes (src/cached-answer.ts) against the general path of
 * respondWithFile: for each request, the same status, headers (all but Date), body and result
 * status/bytes, whether the answer came from memory or from the file.
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { configureFileCache, respondWithFile, type RespondWithFileOptions, type RespondWithFileResult } from '../index'
import { CACHED_BODY } from '../src/cached-answer'
import { SETTLED_MS } from '../src/file-cache'
import { deadline, patternBytes } from './helpers'

const SIZE = 40_000
let dir: string
let bytes: Buffer

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-cached-answer-'))
  bytes = patternBytes(SIZE, 11)
  await writeFile(join(dir, 'notes.txt'), bytes)
  await writeFile(join(dir, 'empty.bin'), Buffer.alloc(0))
  // Only files unchanged for SETTLED_MS have their bytes kept.
  await new Promise((r) => setTimeout(r, SETTLED_MS + 50))
})

test.after.always(async () => {
  configureFileCache({ maxBodyBytes: 16 * 1024 * 1024, freshMs: 1000 })
  await rm(dir, { recursive: true, force: true })
})

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

function request(port: number, path: string, headers: http.OutgoingHttpHeaders, method: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, method, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** One way of calling respondWithFile, as a handler would. */
interface Call {
  label: string
  file?: string
  method?: string
  reqHeaders?: http.OutgoingHttpHeaders
  headers?: http.OutgoingHttpHeaders
  options?: RespondWithFileOptions
  /** Runs on `res` before the call. */
  before?: (res: http.ServerResponse) => void
}

const CONDITIONAL: RespondWithFileOptions = { conditional: true, etag: true, lastModified: true, contentType: true }

function calls(etag: string, lastModified: string): Call[] {
  const before = new Date(Date.parse(lastModified) - 60_000).toUTCString()
  const conditional: [http.OutgoingHttpHeaders, string?][] = [
    [{}],
    [{}, 'HEAD'],
    [{ range: 'bytes=0-9' }],
    [{ range: 'bytes=0-9', 'if-range': etag }],
    [{ range: 'bytes=0-9', 'if-range': 'W/"stale"' }],
    [{ range: 'bytes=0-9', 'if-range': before }],
    [{ range: `bytes=${SIZE}-` }],
    [{ range: 'bytes=-5' }],
    [{ range: 'items=0-5' }],
    [{ 'if-none-match': etag }],
    [{ 'if-none-match': etag }, 'HEAD'],
    [{ 'if-modified-since': lastModified }],
    [{ 'if-match': 'W/"other"' }],
    [{ 'if-none-match': etag }, 'POST'],
  ]
  return [
    { label: 'plain GET' },
    { label: 'plain HEAD', method: 'HEAD' },
    { label: 'empty file', file: 'empty.bin' },
    { label: 'window', options: { offset: 100, length: 1000 } },
    { label: 'window to the end', options: { offset: SIZE - 7 } },
    { label: 'window past the end', options: { offset: 10, length: SIZE } },
    { label: 'headers', headers: { 'Content-Type': 'text/plain', 'X-A': ['1', '2'], 'cache-control': 'no-store' } },
    { label: 'invalid header value', headers: { 'x-bad': 'a\nb' } },
    { label: 'a status set before', before: (res) => (res.statusCode = 404) },
    { label: '204 set before', before: (res) => (res.statusCode = 204) },
    { label: 'headers set before', before: (res) => res.setHeader('ETag', '"mine"'), options: CONDITIONAL, reqHeaders: { 'if-none-match': '"mine"' } },
    { label: 'a Transfer-Encoding from the caller', headers: { 'transfer-encoding': 'chunked' } },
    { label: 'corked before', before: (res) => res.cork() },
    { label: 'contentType and attachment', options: { contentType: true, attachment: 'report card.txt' } },
    ...conditional.map(([reqHeaders, method]) => ({
      label: `conditional ${method ?? 'GET'} ${JSON.stringify(reqHeaders)}`,
      method,
      reqHeaders,
      options: { ...CONDITIONAL, range: reqHeaders.range as string | undefined },
    })),
  ]
}

test.serial('answers from kept bytes are the general path answers: status, headers, body and result, on 28 calls', async (t) => {
  configureFileCache({ freshMs: 60_000 })
  const results: (RespondWithFileResult | string)[] = []
  let current: Call = { label: '' }
  const server = http.createServer((_req, res) => {
    current.before?.(res)
    const path = join(dir, current.file ?? 'notes.txt')
    respondWithFile(res, path, current.headers, current.options).then(
      (r) => results.push(r),
      (e: NodeJS.ErrnoException) => {
        results.push(String(e.code))
        if (!res.headersSent) res.writeHead(500, { 'x-error': String(e.code) }).end()
        else res.destroy()
      },
    )
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const port = (server.address() as net.AddressInfo).port
  const ask = (call: Call): Promise<Answer> =>
    deadline(request(port, '/', call.reqHeaders ?? {}, call.method ?? 'GET'), 10_000, call.label).then((a) => {
      delete a.headers.date
      return a
    })
  configureFileCache({ maxBodyBytes: 0 })
  current = { label: 'validators', options: CONDITIONAL }
  const head = await ask(current)
  const first = head
  t.true(first.body.equals(bytes))
  let fromMemory = 0
  for (const call of calls(head.headers.etag!, head.headers['last-modified']!)) {
    current = call
    configureFileCache({ maxBodyBytes: 0 })
    results.length = 0
    const general = await ask(call)
    configureFileCache({ maxBodyBytes: 1 << 20 })
    const kept = await ask(call)
    t.is(kept.status, general.status, `${call.label}: status`)
    t.deepEqual(kept.headers, general.headers, `${call.label}: headers`)
    t.true(kept.body.equals(general.body), `${call.label}: body`)
    const [g, k] = results
    if (typeof g === 'string' || typeof k === 'string') t.is(k, g, `${call.label}: the same error`)
    else {
      t.is(k.status, g.status, `${call.label}: result status`)
      t.is(k.bytes, g.bytes, `${call.label}: result bytes`)
      if (k.fallbackReason === CACHED_BODY) fromMemory++
      else t.deepEqual(k, g, `${call.label}: a bodiless answer says what the general path says`)
    }
  }
  t.log(`${fromMemory} answers from kept bytes`)
  t.true(fromMemory >= 12, 'the body-carrying answers came from kept bytes')
})
