/**
 * `respondWithFile` and `serveStatic` under node:http2's compatibility API, h2c and TLS, with
 * Node's http2 client: bytes, statuses, headers and the result's reason checked, side by side
 * with serve-static where it answers the same request.
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, truncateSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import http2 from 'node:http2'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import Fastify from 'fastify'
import serveStaticOriginal from 'serve-static'
import test from 'ava'

import { clearFileCache, respondWithFile, serveStatic, type RespondWithFileOptions, type RespondWithFileResult } from '../index'
import { patternBytes, rng, SEED } from './helpers'

const BIG = 3 * (1 << 20) + 7 // past every default flow-control window
const SMALL = 10_000

let dir: string
let tls: { key: Buffer; cert: Buffer }
const files = new Map<string, Buffer>()

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-http2-'))
  for (const [name, size, seed] of [
    ['big.bin', BIG, 3],
    ['small.txt', SMALL, 4],
  ] as const) {
    const bytes = patternBytes(size, seed)
    files.set(name, bytes)
    await writeFile(join(dir, name), bytes)
  }
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'])
  tls = { key: await readFile(key), cert: await readFile(cert) }
})

test.after.always(() => rm(dir, { recursive: true, force: true }))

type Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void

interface Served {
  url: string
  client: http2.ClientHttp2Session
  close(): Promise<void>
}

/** An h2c or TLS server with `handler`, and a client session to it. */
async function serve(secure: boolean, handler: Handler): Promise<Served> {
  const server = secure ? http2.createSecureServer(tls, handler) : http2.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `${secure ? 'https' : 'http'}://localhost:${(server.address() as net.AddressInfo).port}`
  const client = http2.connect(url, secure ? { ca: tls.cert } : {})
  client.on('error', () => {})
  return {
    url,
    client,
    close: async () => {
      client.close()
      server.close()
      await once(server, 'close')
    },
  }
}

interface Answer {
  status: number
  headers: http2.IncomingHttpHeaders
  body: Buffer
}

/** One request on the session; the whole answer. */
async function request(client: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}, method = 'GET'): Promise<Answer> {
  const req = client.request({ ':path': path, ':method': method, ...headers }, { endStream: true })
  const [responseHeaders] = (await once(req, 'response')) as [http2.IncomingHttpHeaders]
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return { status: Number(responseHeaders[':status']), headers: responseHeaders, body: Buffer.concat(chunks) }
}

/** A handler answering `/name` with `respondWithFile(res, dir/name, headers, options)`, recording results and errors. */
function fileHandler(results: (RespondWithFileResult | Error)[], options: (req: http2.Http2ServerRequest) => RespondWithFileOptions = () => ({})): Handler {
  return (req, res) => {
    const name = decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1))
    respondWithFile(res, join(dir, name), { 'content-type': 'application/octet-stream' }, { range: req.headers.range, ...options(req) }).then(
      (r) => results.push(r),
      (e: NodeJS.ErrnoException) => {
        results.push(e)
        if (!res.headersSent) {
          res.statusCode = e.code === 'ENOENT' ? 404 : 500
          res.end(String(e.code))
        }
      },
    )
  }
}

for (const secure of [false, true]) {
  const kind = secure ? 'TLS' : 'h2c'

  test(`${kind}: respondWithFile answers an Http2ServerResponse: whole file, ranges, HEAD, If-Range, 304, 404`, async (t) => {
    const results: (RespondWithFileResult | Error)[] = []
    const s = await serve(
      secure,
      fileHandler(results, () => ({ etag: true, lastModified: true, conditional: true })),
    )
    try {
      const big = files.get('big.bin')!
      const whole = await request(s.client, '/big.bin')
      t.is(whole.status, 200)
      t.is(whole.headers['content-length'], String(BIG))
      t.is(whole.headers['content-type'], 'application/octet-stream')
      t.truthy(whole.headers['date'])
      t.true(whole.body.equals(big))
      const etag = whole.headers['etag'] as string
      t.regex(etag, /^W\/"/)

      const range = await request(s.client, '/big.bin', { range: 'bytes=100-1048675' })
      t.is(range.status, 206)
      t.is(range.headers['content-range'], `bytes 100-1048675/${BIG}`)
      t.true(range.body.equals(big.subarray(100, 1048676)))

      const tail = await request(s.client, '/big.bin', { range: 'bytes=-5' })
      t.is(tail.status, 206)
      t.true(tail.body.equals(big.subarray(BIG - 5)))

      const unsatisfiable = await request(s.client, '/big.bin', { range: `bytes=${BIG}-` })
      t.is(unsatisfiable.status, 416)
      t.is(unsatisfiable.headers['content-range'], `bytes */${BIG}`)
      t.is(unsatisfiable.body.length, 0)

      const head = await request(s.client, '/big.bin', {}, 'HEAD')
      t.is(head.status, 200)
      t.is(head.headers['content-length'], String(BIG))
      t.is(head.body.length, 0)

      const fresh = await request(s.client, '/big.bin', { range: 'bytes=0-9', 'if-range': etag })
      t.is(fresh.status, 206)
      t.true(fresh.body.equals(big.subarray(0, 10)))
      const stale = await request(s.client, '/big.bin', { range: 'bytes=0-9', 'if-range': 'W/"stale"' })
      t.is(stale.status, 200)
      t.true(stale.body.equals(big))

      const notModified = await request(s.client, '/big.bin', { 'if-none-match': etag })
      t.is(notModified.status, 304)
      t.is(notModified.body.length, 0)
      t.is(notModified.headers['content-type'], undefined)

      const missing = await request(s.client, '/nope.bin')
      t.is(missing.status, 404)
      t.is(missing.body.toString(), 'ENOENT')

      const ok = results.filter((r): r is RespondWithFileResult => !(r instanceof Error))
      t.deepEqual(
        ok.map((r) => [r.status, r.bytes]),
        [
          [200, BIG],
          [206, 1048576],
          [206, 5],
          [416, 0],
          [200, 0],
          [206, 10],
          [200, BIG],
          [304, 0],
        ],
      )
      for (const r of ok) {
        t.false(r.zeroCopy)
        t.regex(r.fallbackReason ?? '', /^HTTP\/2: /)
      }
    } finally {
      await s.close()
    }
  })

  test(`${kind}: serveStatic answers as serve-static does (200, 206, 304, HEAD, 404 to next)`, async (t) => {
    const ours = serveStatic(dir)
    const theirs = serveStaticOriginal(dir)
    const handlerOf =
      (middleware: (req: never, res: never, next: (err?: unknown) => void) => void): Handler =>
      (req, res) =>
        middleware(req as never, res as never, () => {
          res.statusCode = 404
          res.end('next')
        })
    const a = await serve(secure, handlerOf(ours))
    const b = await serve(secure, handlerOf(theirs))
    try {
      const small = files.get('small.txt')!
      const cases: [string, http2.OutgoingHttpHeaders, string?][] = [
        ['/small.txt', {}],
        ['/big.bin', {}],
        ['/small.txt', { range: 'bytes=10-19' }],
        ['/small.txt', { range: `bytes=${SMALL}-` }],
        ['/small.txt', {}, 'HEAD'],
        ['/missing.txt', {}],
      ]
      for (const [path, headers, method] of cases) {
        const [mine, reference] = [await request(a.client, path, headers, method), await request(b.client, path, headers, method)]
        const label = `${method ?? 'GET'} ${path} ${JSON.stringify(headers)}`
        t.is(mine.status, reference.status, label)
        for (const name of ['content-length', 'content-range', 'content-type', 'etag', 'last-modified', 'accept-ranges', 'cache-control']) {
          t.is(mine.headers[name], reference.headers[name], `${label}: ${name}`)
        }
        t.true(mine.body.equals(reference.body), label)
      }
      const first = await request(a.client, '/small.txt')
      t.true(first.body.equals(small))
      const revalidated = await request(a.client, '/small.txt', { 'if-none-match': first.headers['etag'] as string })
      t.is(revalidated.status, 304)
    } finally {
      await a.close()
      await b.close()
    }
  })
}

test('h2c: a wrapped res.write/end gets the whole body through it', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const inner = fileHandler(results)
  let wrappedBytes = 0
  const s = await serve(false, (req, res) => {
    const write = res.write.bind(res) as (chunk: Buffer) => boolean
    const end = res.end.bind(res) as (chunk?: Buffer) => void
    // A body-changing wrapper (as compression is): every chunk reversed byte-wise.
    res.write = ((chunk: Buffer) => ((wrappedBytes += chunk.length), write(Buffer.from(chunk).reverse()))) as typeof res.write
    res.end = ((chunk?: Buffer) => (chunk ? end(Buffer.from(chunk).reverse()) : end())) as typeof res.end
    inner(req, res)
  })
  try {
    const answer = await request(s.client, '/small.txt')
    t.is(answer.status, 200)
    t.true(answer.body.equals(Buffer.from(files.get('small.txt')!).reverse()))
    t.is(wrappedBytes, SMALL)
    const [r] = results as RespondWithFileResult[]
    t.deepEqual([r.status, r.bytes, r.zeroCopy], [200, SMALL, false])
    t.regex(r.fallbackReason ?? '', /^HTTP\/2: /)
  } finally {
    await s.close()
  }
})

test('h2c: a client that resets mid-body rejects with ERR_STREAM_DESTROYED and the session goes on', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const s = await serve(false, fileHandler(results))
  try {
    const req = s.client.request({ ':path': '/big.bin' }, { endStream: true })
    await once(req, 'response')
    await once(req, 'data')
    req.close(http2.constants.NGHTTP2_CANCEL)
    await once(req, 'close')
    while (results.length === 0) await new Promise((r) => setTimeout(r, 10))
    t.is((results[0] as NodeJS.ErrnoException).code, 'ERR_STREAM_DESTROYED')
    const again = await request(s.client, '/small.txt')
    t.is(again.status, 200)
    t.true(again.body.equals(files.get('small.txt')!))
  } finally {
    await s.close()
  }
})

test('h2c: an AbortSignal after the headers cancels the stream and rejects AbortError', async (t) => {
  const results: (RespondWithFileResult | Error)[] = []
  const controller = new AbortController()
  const s = await serve(
    false,
    fileHandler(results, () => ({ signal: controller.signal })),
  )
  try {
    const req = s.client.request({ ':path': '/big.bin' }, { endStream: true })
    req.on('error', () => {})
    await once(req, 'response')
    controller.abort()
    await once(req, 'close')
    while (results.length === 0) await new Promise((r) => setTimeout(r, 10))
    t.is((results[0] as Error).name, 'AbortError')
    t.is(req.rstCode, http2.constants.NGHTTP2_CANCEL)
  } finally {
    await s.close()
  }
})

test('Fastify({ http2: true }): respondWithFile(reply.raw) after reply.hijack()', async (t) => {
  const app = Fastify({ http2: true })
  const results: RespondWithFileResult[] = []
  const progress: [number, number][] = []
  app.get('/f', async (request, reply) => {
    reply.hijack()
    const onProgress = (sent: number, total: number): number => progress.push([sent, total])
    results.push(await respondWithFile(reply.raw, join(dir, 'big.bin'), {}, { range: request.headers.range, contentType: true, onProgress }))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = http2.connect(`http://localhost:${(app.server.address() as net.AddressInfo).port}`)
  try {
    const whole = await request(client, '/f')
    t.is(whole.status, 200)
    t.is(whole.headers['content-type'], 'application/octet-stream')
    t.true(whole.body.equals(files.get('big.bin')!))
    const part = await request(client, '/f', { range: 'bytes=5-14' })
    t.is(part.status, 206)
    t.true(part.body.equals(files.get('big.bin')!.subarray(5, 15)))
    t.deepEqual(
      results.map((r) => [r.status, r.bytes, r.zeroCopy]),
      [
        [200, BIG, false],
        [206, 10, false],
      ],
    )
    // Progress rises to the body's length, in 64 KiB steps, for each response.
    t.deepEqual(progress.at(-1), [10, 10])
    const first = progress.filter(([, total]) => total === BIG).map(([sent]) => sent)
    t.is(first.length, Math.ceil(BIG / 65536))
    t.is(first.at(-1), BIG)
    t.true(first.every((sent, i) => i === 0 || sent > first[i - 1]))
  } finally {
    client.close()
    await app.close()
  }
})

test('h2c: a file that shrinks before its body is sent rejects ERR_ZC_FILE_SHRANK and the client sees a broken stream, not a short file', async (t) => {
  const path = join(dir, 'shrinking.bin')
  const results: (RespondWithFileResult | Error)[] = []
  const s = await serve(false, (_req, res) => {
    respondWithFile(res, path, {}, { statCheck: () => void truncateSync(path, 1 << 20) }).then(
      (r) => results.push(r),
      (e: Error) => results.push(e),
    )
  })
  try {
    await writeFile(path, files.get('big.bin')!)
    const req = s.client.request({ ':path': '/' }, { endStream: true })
    const errored = once(req, 'error')
    let received = 0
    req.on('data', (chunk: Buffer) => (received += chunk.length))
    const [err] = (await errored) as [NodeJS.ErrnoException]
    t.is(err.code, 'ERR_HTTP2_STREAM_ERROR')
    t.true(received <= 1 << 20)
    while (results.length === 0) await new Promise((r) => setTimeout(r, 10))
    t.is((results[0] as NodeJS.ErrnoException).code, 'ERR_ZC_FILE_SHRANK')
  } finally {
    await s.close()
  }
})

/** Resolves with `promise`, or rejects after `ms`: no step of a randomized session may hang. */
function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))),
  ])
}

test.serial(
  `h2c: 40 seeded requests reset at random points, through plain and wrapped responses, all settle and leave no descriptor (seed ${SEED})`,
  async (t) => {
    const random = rng(SEED)
    const results: (RespondWithFileResult | Error)[] = []
    const inner = fileHandler(results)
    const s = await serve(false, (req, res) => {
      if (req.headers['x-wrap']) {
        const write = res.write.bind(res) as (chunk: Buffer) => boolean
        res.write = ((chunk: Buffer) => write(chunk)) as typeof res.write
      }
      inner(req, res)
    })
    // Cached descriptors are not leaks: closed first (one still in use by a response stays open and counts).
    const fds = (): number => (clearFileCache(), readdirSync('/proc/self/fd').length)
    try {
      await request(s.client, '/small.txt') // warm up the session, so its own descriptors are counted
      const before = fds()
      const big = files.get('big.bin')!
      for (let i = 0; i < 40; i++) {
        const wrap = random() < 0.5
        const resetAfter = Math.floor(random() * 60) // DATA chunks; past the end means no reset
        const label = `#${i} wrap=${wrap} resetAfter=${resetAfter}`
        const at = results.length
        const req = s.client.request({ ':path': '/big.bin', ...(wrap ? { 'x-wrap': '1' } : {}) }, { endStream: true })
        req.on('error', () => {})
        const chunks: Buffer[] = []
        let reset = false
        req.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          if (chunks.length === resetAfter) {
            reset = true
            req.close(http2.constants.NGHTTP2_CANCEL)
          }
        })
        await deadline(once(req, 'close'), 10_000, `${label} client close`)
        await deadline(
          (async () => {
            while (results.length <= at) await new Promise((r) => setTimeout(r, 5))
          })(),
          10_000,
          `${label} server result`,
        )
        const result = results[at]
        if (!reset) {
          t.true(Buffer.concat(chunks).equals(big), label)
          t.false(result instanceof Error, label)
        } else if (Buffer.concat(chunks).length < BIG) {
          // Reset before the whole body arrived: the server cannot have finished it.
          t.is((result as NodeJS.ErrnoException).code, 'ERR_STREAM_DESTROYED', label)
        } else {
          // Reset on the last chunk: the server may have handed it all over first.
          t.true(result instanceof Error ? (result as NodeJS.ErrnoException).code === 'ERR_STREAM_DESTROYED' : result.bytes === BIG, label)
        }
      }
      const again = await request(s.client, '/small.txt')
      t.true(again.body.equals(files.get('small.txt')!))
      t.is(fds(), before)
    } finally {
      await s.close()
    }
  },
)
