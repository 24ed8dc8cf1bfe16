/**
 * `respondWithFile`'s head over node:http: `If-Range` against the validators it sends, the
 * conditional requests (304/412), `Content-Type` from the file name and `Content-Disposition`,
 * side by side with `send` (the module under `express.static` and `res.sendFile`) on the same
 * requests, with Node's http client.
 */
import { once } from 'node:events'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import send from 'send'
import test from 'ava'

import { respondWithFile, type RespondWithFileOptions, type RespondWithFileResult } from '../index'
import { patternBytes } from './helpers'

const SIZE = 70_000
let dir: string
let bytes: Buffer

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-conditional-'))
  bytes = patternBytes(SIZE, 7)
  await writeFile(join(dir, 'notes.txt'), bytes)
  await writeFile(join(dir, 'data.unknownext'), bytes)
})

test.after.always(() => rm(dir, { recursive: true, force: true }))

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

function get(port: number, path: string, headers: http.OutgoingHttpHeaders = {}, method = 'GET'): Promise<Answer> {
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

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

async function listen(handler: Handler): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** `/ours/name` answers with respondWithFile(options(req)); `/send/name` with send. */
async function sideBySide(
  results: (RespondWithFileResult | Error)[],
  options: (req: http.IncomingMessage) => RespondWithFileOptions,
  headers: http.OutgoingHttpHeaders = {},
): Promise<{ port: number; close(): Promise<void> }> {
  return listen((req, res) => {
    const [, which, name] = new URL(req.url!, 'http://x').pathname.split('/')
    const path = join(dir, name)
    if (which === 'send') return void send(req, path, { cacheControl: false, acceptRanges: true }).pipe(res)
    res.setHeader('accept-ranges', 'bytes')
    respondWithFile(res, path, headers, { range: req.headers.range, ...options(req) }).then(
      (r) => results.push(r),
      (e: Error) => {
        results.push(e)
        res.destroy()
      },
    )
  })
}

const CONDITIONAL: RespondWithFileOptions = { conditional: true, etag: true, lastModified: true, contentType: true }

test('conditional: the same status, validators, Content-* headers and body as send on 21 requests', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const server = await sideBySide(results, () => CONDITIONAL)
  try {
    const first = await get(server.port, '/send/notes.txt')
    const etag = first.headers['etag']!
    const lastModified = first.headers['last-modified']!
    const before = new Date(Date.parse(lastModified) - 60_000).toUTCString()
    const after = new Date(Date.parse(lastModified) + 60_000).toUTCString()
    const cases: [http.OutgoingHttpHeaders, string?][] = [
      [{}],
      [{}, 'HEAD'],
      [{ range: 'bytes=0-9' }],
      [{ range: 'bytes=0-9', 'if-range': etag }],
      [{ range: 'bytes=0-9', 'if-range': 'W/"stale"' }],
      [{ range: 'bytes=0-9', 'if-range': lastModified }],
      [{ range: 'bytes=0-9', 'if-range': before }],
      [{ range: `bytes=${SIZE}-`, 'if-range': 'W/"stale"' }],
      [{ range: `bytes=${SIZE}-` }],
      [{ 'if-none-match': etag }],
      [{ 'if-none-match': `"other", ${etag}` }],
      [{ 'if-none-match': 'W/"other"' }],
      [{ 'if-none-match': etag, 'cache-control': 'no-cache' }],
      [{ 'if-modified-since': lastModified }],
      [{ 'if-modified-since': before }],
      [{ 'if-none-match': etag }, 'HEAD'],
      [{ 'if-none-match': etag, range: 'bytes=0-9' }],
      [{ 'if-match': etag }],
      [{ 'if-match': '*' }],
      [{ 'if-match': 'W/"other"' }],
      [{ 'if-unmodified-since': before }],
      [{ 'if-unmodified-since': after, range: 'bytes=5-9' }],
    ]
    for (const [headers, method] of cases) {
      const label = `${method ?? 'GET'} ${JSON.stringify(headers)}`
      const reference = await get(server.port, '/send/notes.txt', headers, method)
      const mine = await get(server.port, '/ours/notes.txt', headers, method)
      t.is(mine.status, reference.status, label)
      // send's 412 and 416 are HTML error pages without the file's headers; ours have no body.
      const errorPage = reference.status === 412 || reference.status === 416
      const names = errorPage ? ['content-range'] : ['etag', 'last-modified', 'content-range', 'accept-ranges', 'content-type', 'content-length']
      for (const name of names) t.is(mine.headers[name], reference.headers[name], `${label}: ${name}`)
      if (errorPage) t.is(mine.body.length, 0, label)
      else t.true(mine.body.equals(reference.body), label)
    }
    t.deepEqual(
      results.map((r) => (r instanceof Error ? r.message : r.status)),
      [200, 200, 206, 206, 200, 206, 200, 200, 416, 304, 304, 200, 200, 304, 200, 304, 304, 200, 200, 412, 412, 206],
    )
  } finally {
    await server.close()
  }
})

test('If-Range is honoured without `conditional`, against an ETag from headers or a Last-Modified from statCheck', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const etagServer = await sideBySide(results, () => ({}), { etag: '"v2"' })
  const dateServer = await sideBySide(results, () => ({ statCheck: (stats, headers) => void (headers['Last-Modified'] = stats.mtime.toUTCString()) }))
  try {
    const stale = await get(etagServer.port, '/ours/notes.txt', { range: 'bytes=0-9', 'if-range': '"v1"' })
    t.is(stale.status, 200)
    t.true(stale.body.equals(bytes))
    const current = await get(etagServer.port, '/ours/notes.txt', { range: 'bytes=0-9', 'if-range': '"v2"' })
    t.is(current.status, 206)
    t.true(current.body.equals(bytes.subarray(0, 10)))
    // `conditional` is off: a matching If-None-Match still gets the file.
    const unconditional = await get(etagServer.port, '/ours/notes.txt', { 'if-none-match': '"v2"' })
    t.is(unconditional.status, 200)

    const lastModified = (await get(dateServer.port, '/ours/notes.txt')).headers['last-modified']!
    const older = new Date(Date.parse(lastModified) - 1000).toUTCString()
    t.is((await get(dateServer.port, '/ours/notes.txt', { range: 'bytes=0-9', 'if-range': lastModified })).status, 206)
    const changed = await get(dateServer.port, '/ours/notes.txt', { range: 'bytes=0-9', 'if-range': older })
    t.is(changed.status, 200)
    t.true(changed.body.equals(bytes))
    // An If-Range with nothing to compare it to (no ETag, no Last-Modified) is not fresh.
    const bare = await sideBySide(results, () => ({}))
    try {
      const blind = await get(bare.port, '/ours/notes.txt', { range: 'bytes=0-9', 'if-range': '"v2"' })
      t.is(blind.status, 200)
      t.true(blind.body.equals(bytes))
    } finally {
      await bare.close()
    }
  } finally {
    await etagServer.close()
    await dateServer.close()
  }
})

test('options.req replaces res.req: its If-Range and conditional headers decide', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const server = await sideBySide(results, (req) => ({ ...CONDITIONAL, req: { method: 'GET', headers: { ...req.headers, 'if-none-match': '*' } } }))
  try {
    const answer = await get(server.port, '/ours/notes.txt')
    t.is(answer.status, 304)
    t.is(answer.body.length, 0)
    t.deepEqual(
      results.map((r) => (r instanceof Error ? r.message : [r.status, r.bytes])),
      [[304, 0]],
    )
  } finally {
    await server.close()
  }
})

test('a method other than GET/HEAD whose If-None-Match matches answers 412', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const server = await sideBySide(results, () => CONDITIONAL)
  try {
    const etag = (await get(server.port, '/ours/notes.txt')).headers['etag']!
    const answer = await get(server.port, '/ours/notes.txt', { 'if-none-match': etag }, 'POST')
    t.is(answer.status, 412)
    t.is(answer.headers['content-length'], '0')
    t.is(answer.headers['content-type'], undefined)
  } finally {
    await server.close()
  }
})

test('contentType and attachment: send/mime-types types, content-disposition names, never over a header already set', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const server = await listen((req, res) => {
    const url = new URL(req.url!, 'http://x')
    const options: RespondWithFileOptions = JSON.parse(url.searchParams.get('o') ?? '{}')
    if (url.searchParams.has('preset')) res.setHeader('Content-Type', 'text/x-preset')
    respondWithFile(res, join(dir, url.pathname.slice(1)), {}, options).then(
      (r) => results.push(r),
      (e: Error) => (results.push(e), res.destroy()),
    )
  })
  const ask = async (path: string, options: RespondWithFileOptions, preset = false): Promise<http.IncomingHttpHeaders> => {
    const answer = await get(server.port, `${path}?o=${encodeURIComponent(JSON.stringify(options))}${preset ? '&preset' : ''}`)
    t.is(answer.status, 200)
    t.true(answer.body.equals(bytes))
    return answer.headers
  }
  try {
    t.is((await ask('/notes.txt', { contentType: true }))['content-type'], 'text/plain; charset=utf-8')
    t.is((await ask('/data.unknownext', { contentType: true }))['content-type'], 'application/octet-stream')
    t.is((await ask('/notes.txt', { contentType: 'report.pdf' }))['content-type'], 'application/pdf')
    t.is((await ask('/notes.txt', { contentType: 'json' }))['content-type'], 'application/json; charset=utf-8')
    t.is((await ask('/notes.txt', { contentType: true }, true))['content-type'], 'text/x-preset')
    t.is((await ask('/notes.txt', {}))['content-type'], undefined)
    t.is((await ask('/notes.txt', { attachment: true }))['content-disposition'], 'attachment; filename="notes.txt"')
    t.is(
      (await ask('/notes.txt', { attachment: 'report €.txt' }))['content-disposition'],
      `attachment; filename="report ?.txt"; filename*=UTF-8''report%20%E2%82%AC.txt`,
    )
    t.is((await ask('/notes.txt', {}))['content-disposition'], undefined)
    t.is(results.filter((r) => r instanceof Error).length, 0)
  } finally {
    await server.close()
  }
})

test('attachment with a descriptor has no file name; contentType: true with a descriptor, and bad option types, throw synchronously', async (t) => {
  const handle = await open(join(dir, 'notes.txt'))
  const server = await listen((_req, res) => {
    respondWithFile(res, handle, {}, { attachment: true, contentType: 'notes.txt' }).catch(() => res.destroy())
  })
  try {
    const answer = await get(server.port, '/')
    t.is(answer.headers['content-disposition'], 'attachment')
    t.is(answer.headers['content-type'], 'text/plain; charset=utf-8')
    t.true(answer.body.equals(bytes))
    const res = new http.ServerResponse(new http.IncomingMessage(null as unknown as net.Socket))
    t.throws(() => respondWithFile(res, handle, {}, { contentType: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /options\.contentType/ })
    t.throws(() => respondWithFile(res, handle, {}, { conditional: 'yes' as unknown as boolean }), { code: 'ERR_INVALID_ARG_TYPE' })
    t.throws(() => respondWithFile(res, handle, {}, { attachment: 3 as unknown as string }), { code: 'ERR_INVALID_ARG_TYPE' })
    t.throws(() => respondWithFile(res, handle, {}, { attachment: '' }), { code: 'ERR_INVALID_ARG_VALUE' })
    t.throws(() => respondWithFile(res, handle, {}, { req: {} as never }), { code: 'ERR_INVALID_ARG_TYPE' })
    t.false(res.headersSent)
  } finally {
    await server.close()
    await handle.close()
  }
})
