/**
 * Body transforms (issue 19, item 1): Express 5 with `compression()` in front of `serveStatic`
 * and `respondWithFile`. Every body a client decodes is the file's bytes; a compressed body goes
 * through `res` (the result says why); wrappers that leave the body alone keep zero-copy.
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import zlib from 'node:zlib'

import test from 'ava'
import compression from 'compression'
import express from 'express'

import { configureFileCache, respondWithFile, type RespondWithFileResult } from '../index'
import { serveStatic } from '../src/static'
import { patternBytes } from './helpers'

/** Compressible text (> 1 MiB), a text file under compression's 1 KiB threshold, and an image. */
const FILES: Record<string, Buffer> = {
  'big.txt': Buffer.from(
    patternBytes(3 << 19, 5)
      .toString('base64')
      .slice(0, 1_500_000),
  ),
  'small.txt': Buffer.from('tiny text, under the threshold\n'.repeat(20)),
  'image.png': patternBytes(300_000, 6),
}
let dir: string
let port: number
let server: http.Server
const results: RespondWithFileResult[] = []
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

test.before(async () => {
  // The zero-copy assertions here are about files over 64 KiB going page-cache-to-socket; on a
  // loopback peer the cache may keep such a file once it settled (cached-answer.spec.ts).
  configureFileCache({ loopbackBodyMax: 0 })
  dir = await mkdtemp(join(tmpdir(), 'zc-http-transforms-'))
  for (const [name, bytes] of Object.entries(FILES)) await writeFile(join(dir, name), bytes)
  const app = express()
  app.use(compression())
  // express-session's kind of wrapper: it runs code before the real end() and keeps the body.
  app.use('/session', (_req, res, next) => {
    const end = res.end
    res.end = function (this: http.ServerResponse, ...args: unknown[]) {
      res.locals.ended = true
      return (end as (...a: unknown[]) => http.ServerResponse).apply(this, args)
    } as typeof res.end
    next()
  })
  const file = (req: express.Request, res: express.Response): void => {
    respondWithFile(
      res,
      join(dir, req.params.name as string),
      { 'content-type': (req.params.name as string).endsWith('.png') ? 'image/png' : 'text/plain; charset=utf-8' },
      { range: req.headers.range },
    ).then(
      (r) => results.push(r),
      (e: Error) => res.destroy(e),
    )
  }
  app.get('/respond/:name', file)
  app.head('/respond/:name', file)
  app.get('/session/:name', file)
  app.use('/static', serveStatic(dir))
  server = http.createServer(app)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  port = (server.address() as net.AddressInfo).port
})
test.after.always(async () => {
  agent.destroy()
  server.close()
  await rm(dir, { recursive: true, force: true })
})

interface Got {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** GETs (or HEADs) `path` on the keep-alive connection and decodes the body by its Content-Encoding. */
function get(path: string, headers: Record<string, string>, method = 'GET'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const raw = Buffer.concat(chunks)
        const coding = res.headers['content-encoding']
        const body =
          coding === 'gzip' ? zlib.gunzipSync(raw) : coding === 'br' ? zlib.brotliDecompressSync(raw) : coding === 'deflate' ? zlib.inflateSync(raw) : raw
        resolve({ status: res.statusCode!, headers: res.headers, body })
      })
      res.on('error', reject)
    })
    req.setTimeout(20_000, () => req.destroy(new Error(`${path} stalled`)))
    req.on('error', reject)
    req.end()
  })
}

const lastResult = (): RespondWithFileResult | undefined => results.at(-1)

/** Waits until `n` respondWithFile calls settled (the client may see the body end before the call resolves). */
async function settled(n: number): Promise<void> {
  for (let i = 0; i < 1000 && results.length < n; i++) await new Promise((resolve) => setTimeout(resolve, 5))
}

for (const encoding of ['gzip', 'br', 'deflate', 'identity']) {
  for (const via of ['respond', 'static']) {
    test.serial(`compression(), ${encoding}, ${via}: a 1.5 MB text file decodes to its bytes`, async (t) => {
      results.length = 0
      const r = await get(`/${via}/big.txt`, { 'accept-encoding': encoding })
      t.is(r.status, 200)
      t.is(r.headers['content-encoding'], encoding === 'identity' ? undefined : encoding)
      t.true(r.body.equals(FILES['big.txt']), `${r.body.length} bytes decoded`)
      if (via === 'respond') {
        await settled(1)
        t.is(lastResult()?.zeroCopy, encoding === 'identity')
        if (encoding !== 'identity') t.regex(lastResult()?.fallbackReason ?? '', /Content-Encoding/)
      }
    })
  }
}

for (const via of ['respond', 'static']) {
  test.serial(`compression(), gzip, ${via}: a range decodes to the slice`, async (t) => {
    results.length = 0
    const r = await get(`/${via}/big.txt`, { 'accept-encoding': 'gzip', range: 'bytes=1000-1200999' })
    t.is(r.status, 206)
    t.is(r.headers['content-range'], `bytes 1000-1200999/${FILES['big.txt'].length}`)
    t.true(r.body.equals(FILES['big.txt'].subarray(1000, 1201000)))
    if (via === 'respond') await settled(1) // nothing of this test's lands in the next one's results
  })

  test.serial(`compression(), gzip, ${via}: HEAD has the headers and no body`, async (t) => {
    results.length = 0
    const r = await get(`/${via}/big.txt`, { 'accept-encoding': 'gzip' }, 'HEAD')
    t.is(r.status, 200)
    t.is(r.body.length, 0)
    t.is(r.headers['content-length'], String(FILES['big.txt'].length))
    // The connection is still in step.
    const next = await get(`/${via}/small.txt`, { 'accept-encoding': 'gzip' })
    t.true(next.body.equals(FILES['small.txt']))
    if (via === 'respond') await settled(2)
  })

  test.serial(`compression(), gzip, ${via}: a file under the threshold and an image are not compressed, and keep zero-copy`, async (t) => {
    results.length = 0
    for (const name of ['small.txt', 'image.png']) {
      const r = await get(`/${via}/${name}`, { 'accept-encoding': 'gzip' })
      t.is(r.status, 200)
      t.is(r.headers['content-encoding'], undefined)
      t.is(r.headers['content-length'], String(FILES[name].length))
      t.true(r.body.equals(FILES[name]))
    }
    if (via === 'respond') await settled(2)
    // Not streamed through compression: zero-copy, or (up to 16 KiB) the small-body path,
    // one write with the headers through res.
    if (via === 'respond')
      t.deepEqual(
        results.map((r) => r.zeroCopy || (r.fallbackReason ?? '').startsWith('small body')),
        [true, true],
      )
  })
}

test.serial('a body-preserving res.end wrapper (express-session style) keeps zeroCopy: true, byte-exact', async (t) => {
  results.length = 0
  for (const name of ['image.png', 'small.txt']) {
    const r = await get(`/session/${name}`, { 'accept-encoding': 'identity' })
    t.true(r.body.equals(FILES[name]))
  }
  await settled(2)
  // small.txt takes the small-body path (one write with the headers through res), which a
  // body-preserving wrapper keeps as well: not the streamed path.
  t.deepEqual(
    results.map((r) => [r.zeroCopy, r.fallbackReason?.replace(/ \(.*/, '') ?? null]),
    [
      [true, null],
      [false, 'small body'],
    ],
  )
})

test.serial('an on-headers hook that drops Content-Length: the body goes through res, framed by node:http', async (t) => {
  const s = http.createServer((_req, res) => {
    const writeHead = res.writeHead
    res.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
      res.removeHeader('content-length')
      return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args)
    } as typeof res.writeHead
    respondWithFile(res, join(dir, 'image.png')).then((r) => results.push(r))
  })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  t.teardown(() => s.close())
  results.length = 0
  const body = await new Promise<{ te: string | undefined; body: Buffer }>((resolve, reject) =>
    http
      .get({ host: '127.0.0.1', port: (s.address() as net.AddressInfo).port, path: '/' }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ te: res.headers['transfer-encoding'], body: Buffer.concat(chunks) }))
      })
      .on('error', reject),
  )
  t.is(body.te, 'chunked')
  t.true(body.body.equals(FILES['image.png']))
  await settled(1)
  t.false(results[0]?.zeroCopy)
})
