/**
 * The synchronous answer from kept bytes (src/cached-answer.ts) against the general path of
 * respondWithFile: for each request, the same status, headers (all but Date), body and result
 * status/bytes, whether the answer came from memory or from the file. For a small file (kept
 * for every peer) and a larger one (kept for a loopback peer, as the tests' peers are).
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { configureFileCache, respondWithFile, type RespondWithFileOptions, type RespondWithFileResult } from '../index'
import { CACHED_BODY, LOOPBACK_BODY } from '../src/cached-answer'
import { BODY_MAX, cachedBody, fileCacheStats, keptBodyMax, SETTLED_MS } from '../src/file-cache'
import { deadline, patternBytes } from './helpers'

/** A small file, and one over BODY_MAX that only a loopback peer gets from kept bytes. */
const FILES = { 'notes.txt': patternBytes(40_000, 11), 'large.bin': patternBytes(300_000, 12), 'other.bin': patternBytes(300_000, 13) }
let dir: string

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-cached-answer-'))
  for (const [name, bytes] of Object.entries(FILES)) await writeFile(join(dir, name), bytes)
  await writeFile(join(dir, 'empty.bin'), Buffer.alloc(0))
  // Only files unchanged for SETTLED_MS have their bytes kept.
  await new Promise((r) => setTimeout(r, SETTLED_MS + 50))
})

test.after.always(async () => {
  configureFileCache({ maxBodyBytes: 16 * 1024 * 1024, freshMs: 1000, loopbackBodyMax: 1 << 20 })
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

function calls(size: number, etag: string, lastModified: string): Call[] {
  const before = new Date(Date.parse(lastModified) - 60_000).toUTCString()
  const conditional: [http.OutgoingHttpHeaders, string?][] = [
    [{}],
    [{}, 'HEAD'],
    [{ range: 'bytes=0-9' }],
    [{ range: 'bytes=0-9', 'if-range': etag }],
    [{ range: 'bytes=0-9', 'if-range': 'W/"stale"' }],
    [{ range: 'bytes=0-9', 'if-range': before }],
    [{ range: `bytes=${size}-` }],
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
    { label: 'window to the end', options: { offset: size - 7 } },
    { label: 'window past the end', options: { offset: 10, length: size } },
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

/** Listens on loopback until the test ends; the port. */
async function listen(t: ExecutionContext, server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return (server.address() as net.AddressInfo).port
}

/** Asks every call twice, by the general path and from kept bytes, and compares the answers. */
async function compare(t: ExecutionContext, file: keyof typeof FILES, reason: string): Promise<void> {
  configureFileCache({ freshMs: 60_000 })
  const bytes = FILES[file]
  const results: (RespondWithFileResult | string)[] = []
  let current: Call = { label: '' }
  const server = http.createServer((_req, res) => {
    current.before?.(res)
    const path = join(dir, current.file ?? file)
    respondWithFile(res, path, current.headers, current.options).then(
      (r) => results.push(r),
      (e: NodeJS.ErrnoException) => {
        results.push(String(e.code))
        if (!res.headersSent) res.writeHead(500, { 'x-error': String(e.code) }).end()
        else res.destroy()
      },
    )
  })
  const port = await listen(t, server)
  const ask = (call: Call): Promise<Answer> =>
    deadline(request(port, '/', call.reqHeaders ?? {}, call.method ?? 'GET'), 10_000, call.label).then((a) => {
      delete a.headers.date
      return a
    })
  configureFileCache({ maxBodyBytes: 0 })
  current = { label: 'validators', options: CONDITIONAL }
  const head = await ask(current)
  t.true(head.body.equals(bytes))
  let fromMemory = 0
  for (const call of calls(bytes.length, head.headers.etag!, head.headers['last-modified']!)) {
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
      if (k.fallbackReason === (call.file === undefined ? reason : CACHED_BODY)) fromMemory++
      else t.deepEqual(k, g, `${call.label}: a bodiless answer says what the general path says`)
    }
  }
  t.log(`${fromMemory} answers from kept bytes`)
  t.true(fromMemory >= 12, 'the body-carrying answers came from kept bytes')
}

test.serial('answers from kept bytes are the general path answers: status, headers, body and result, on 28 calls', async (t) => {
  await compare(t, 'notes.txt', CACHED_BODY)
})

test.serial('a loopback peer: a 300 KB file from kept bytes answers as the general path does, on 28 calls', async (t) => {
  await compare(t, 'large.bin', LOOPBACK_BODY)
})

test.serial('over 64 KiB: kept only for loopback peers, only within the budget without dropping others', async (t) => {
  t.is(keptBodyMax('127.0.0.1'), 1 << 20)
  t.is(keptBodyMax('127.8.9.10'), 1 << 20)
  t.is(keptBodyMax('::1'), 1 << 20)
  t.is(keptBodyMax('::ffff:127.0.0.1'), 1 << 20)
  for (const remote of ['10.0.0.1', '192.168.1.2', '::ffff:10.0.0.1', 'fe80::1', '2001:db8::127', undefined])
    t.is(keptBodyMax(remote), BODY_MAX, String(remote))
  configureFileCache({ loopbackBodyMax: 0 })
  t.is(keptBodyMax('127.0.0.1'), BODY_MAX, 'loopbackBodyMax 0: no larger files')
  configureFileCache({ loopbackBodyMax: 1 << 20 })

  const results: RespondWithFileResult[] = []
  const server = http.createServer((req, res) => {
    respondWithFile(res, join(dir, req.url!.slice(1))).then((r) => results.push(r))
  })
  const port = await listen(t, server)
  const get = async (name: keyof typeof FILES): Promise<RespondWithFileResult> => {
    results.length = 0
    const a = await deadline(request(port, `/${name}`, {}, 'GET'), 10_000, name)
    t.true(a.body.equals(FILES[name]), name)
    for (const until = Date.now() + 5000; results.length === 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 5))
    return results[0]
  }
  // Room for one 300 KB body: the first file is kept, the second is sent by sendfile (not read
  // for each response), and the first stays kept.
  configureFileCache({ freshMs: 60_000, maxBodyBytes: 400_000 })
  await get('large.bin')
  await get('other.bin')
  t.is((await get('large.bin')).fallbackReason, LOOPBACK_BODY)
  t.is(fileCacheStats().bodyBytes, 300_000)
  for (let i = 0; i < 3; i++) t.not((await get('other.bin')).fallbackReason, LOOPBACK_BODY, 'no room: not read')
  t.is((await get('large.bin')).fallbackReason, LOOPBACK_BODY, 'still kept')
  t.is(fileCacheStats().bodyBytes, 300_000)
  // Kept for a loopback peer, not given to another one (whose limit is 64 KiB), nor dropped.
  const { bodyHits } = fileCacheStats()
  t.is(cachedBody(join(dir, 'large.bin')), undefined)
  t.is(cachedBody(join(dir, 'large.bin'), keptBodyMax('192.0.2.7')), undefined)
  t.deepEqual([fileCacheStats().bodyBytes, fileCacheStats().bodyHits], [300_000, bodyHits])
  t.is(cachedBody(join(dir, 'large.bin'), keptBodyMax('127.0.0.1'))?.data.length, 300_000)
  // loopbackBodyMax 0: the kept larger body is let go at once, and not read again.
  configureFileCache({ loopbackBodyMax: 0 })
  t.is(fileCacheStats().bodyBytes, 0)
  t.not((await get('large.bin')).fallbackReason, LOOPBACK_BODY)
  t.is(fileCacheStats().bodyBytes, 0)
  configureFileCache({ loopbackBodyMax: 1 << 20, maxBodyBytes: 16 * 1024 * 1024 })
})
