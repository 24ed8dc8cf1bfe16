// zerocopy-socket/koa inside Koa, side by side with koa-static on the same requests over real
// connections (status, headers, bytes), plus what koa-static leaves to other middleware:
// ranges, 304, Vary; and Koa's lifecycle around it (its initial 404, headers set before,
// fall-through, HEAD, errors).
import http from 'node:http'
import { brotliDecompressSync, createGzip, gunzipSync } from 'node:zlib'
import { createRequire } from 'node:module'

import test from 'ava'
import Koa from 'koa'
import koaStatic from 'koa-static'

import { send, serve } from '../src/frameworks/koa'
import { FileBody } from '../src/frameworks/file-body'
import { zcTest } from './helpers'
import { abortMidBody, fetchRaw, makeFixture, stableHeaders } from './frameworks-helpers'

const fx = makeFixture()

type Middleware = Koa.Middleware

/** A listening Koa app: a CORS-like header first, then `middleware`, then a fallback answer. */
async function listen(middleware: Middleware, record?: { bodies: unknown[]; errors: Error[] }): Promise<{ port: number; close: () => Promise<void> }> {
  const app = new Koa()
  app.on('error', (err: Error) => record?.errors.push(err))
  app.use(async (ctx, next) => {
    ctx.set('Access-Control-Allow-Origin', '*')
    await next()
    record?.bodies.push(ctx.body)
  })
  app.use(middleware)
  app.use(async (ctx) => {
    ctx.body = `fallback for ${ctx.path}`
  })
  const server = http.createServer(app.callback())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

const SIDE_BY_SIDE: [string, { method?: string; headers?: http.OutgoingHttpHeaders }][] = [
  ['/small.bin', {}],
  ['/empty.txt', {}],
  ['/empty.txt', { method: 'HEAD' }],
  ['/big.bin', {}],
  ['/big.bin', { method: 'HEAD' }],
  ['/missing.bin', {}],
  ['/.hidden', {}],
  ['/sub', {}],
  ['/sub/', {}],
  ['/%E0%A4%A', {}],
  ['/page.txt', {}],
  ['/page.txt', { headers: { 'accept-encoding': 'gzip, deflate, br, zstd' } }],
  ['/page.txt', { headers: { 'accept-encoding': 'gzip' } }],
  ['/page.txt', { headers: { 'accept-encoding': 'br;q=0, gzip;q=0.5' } }],
  ['/big.bin', { method: 'POST' }],
]

/** What this package adds to koa-static's answer, checked apart. */
const ADDED = new Set(['accept-ranges', 'vary'])

test('same status, headers and bytes as koa-static (but Accept-Ranges and Vary)', async (t) => {
  const upstream = await listen(koaStatic(fx.root))
  const ours = await listen(serve(fx.root))
  t.teardown(() => Promise.all([upstream.close(), ours.close()]))
  for (const [path, options] of SIDE_BY_SIDE) {
    const expected = await fetchRaw(upstream.port, path, options)
    const actual = await fetchRaw(ours.port, path, options)
    const what = `${options.method ?? 'GET'} ${path} ${JSON.stringify(options.headers ?? {})}`
    t.is(actual.status, expected.status, what)
    const strip = (h: http.IncomingHttpHeaders) => Object.fromEntries(Object.entries(stableHeaders(h)).filter(([name]) => !ADDED.has(name)))
    t.deepEqual(strip(actual.headers), strip(expected.headers), what)
    t.true(actual.body.equals(expected.body), `${what}: body`)
    if (actual.status === 200 && !actual.body.toString().startsWith('fallback')) {
      t.is(actual.headers['accept-ranges'], 'bytes', what)
    }
  }
})

zcTest('bodies go page-cache-to-socket, statuses right from Koa’s initial 404, keep-alive kept', async (t) => {
  const record = { bodies: [] as unknown[], errors: [] as Error[] }
  const { port, close } = await listen(serve(fx.root), record)
  t.teardown(close)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let i = 0; i < 4; i++) {
    const big = await fetchRaw(port, '/big.bin', { agent })
    t.is(big.status, 200)
    t.is(big.headers['access-control-allow-origin'], '*')
    t.is(big.headers['content-length'], String(fx.big.length))
    t.true(big.body.equals(fx.big))
    const part = await fetchRaw(port, '/big.bin', { agent, headers: { range: `bytes=${i}-${i + 100_000}` } })
    t.is(part.status, 206)
    t.is(part.headers['content-range'], `bytes ${i}-${i + 100_000}/${fx.big.length}`)
    t.is(part.headers['access-control-allow-origin'], '*')
    t.true(part.body.equals(fx.big.subarray(i, i + 100_001)))
  }
  await new Promise((resolve) => setImmediate(resolve))
  const files = record.bodies.filter((b): b is FileBody => b instanceof FileBody)
  t.is(files.length, 8)
  t.deepEqual(
    files.map((b) => b.result),
    files.map(() => ({ zeroCopy: true, fallbackReason: null })),
  )
  t.is(Object.values(agent.freeSockets).flat().length, 1)
  t.deepEqual(record.errors, [])
})

test('304, 416, If-Range, HEAD without errors, precompressed variant with Vary', async (t) => {
  const record = { bodies: [] as unknown[], errors: [] as Error[] }
  const { port, close } = await listen(serve(fx.root), record)
  t.teardown(close)
  const first = await fetchRaw(port, '/small.bin')
  const lastModified = first.headers['last-modified'] as string
  const notModified = await fetchRaw(port, '/small.bin', { headers: { 'if-modified-since': lastModified } })
  t.is(notModified.status, 304)
  t.is(notModified.body.length, 0)
  t.is(notModified.headers['access-control-allow-origin'], '*')
  const unsatisfiable = await fetchRaw(port, '/small.bin', { headers: { range: 'bytes=5000-' } })
  t.is(unsatisfiable.status, 416)
  t.is(unsatisfiable.headers['content-range'], `bytes */${fx.small.length}`)
  t.is(unsatisfiable.body.length, 0)
  const staleRange = await fetchRaw(port, '/small.bin', { headers: { range: 'bytes=0-9', 'if-range': 'Thu, 01 Jan 1970 00:00:00 GMT' } })
  t.is(staleRange.status, 200)
  t.true(staleRange.body.equals(fx.small))
  const freshRange = await fetchRaw(port, '/small.bin', { headers: { range: 'bytes=0-9', 'if-range': lastModified } })
  t.is(freshRange.status, 206)
  t.true(freshRange.body.equals(fx.small.subarray(0, 10)))
  const head = await fetchRaw(port, '/big.bin', { method: 'HEAD' })
  t.is(head.status, 200)
  t.is(head.headers['content-length'], String(fx.big.length))
  const br = await fetchRaw(port, '/page.txt', { headers: { 'accept-encoding': 'gzip, deflate, br' } })
  t.is(br.headers['content-encoding'], 'br')
  t.is(br.headers.vary, 'Accept-Encoding')
  t.is(brotliDecompressSync(br.body).toString(), fx.text)
  const brRange = await fetchRaw(port, '/page.txt', { headers: { 'accept-encoding': 'br', range: 'bytes=0-9' } })
  t.is(brRange.status, 206)
  t.true(brRange.body.equals(br.body.subarray(0, 10)))
  const identity = await fetchRaw(port, '/page.txt')
  t.is(identity.headers['content-encoding'], undefined)
  t.is(identity.headers.vary, 'Accept-Encoding')
  t.is(identity.body.toString(), fx.text)
  const noVariant = await fetchRaw(port, '/small.bin', { headers: { 'accept-encoding': 'br, gzip' } })
  t.is(noVariant.headers['content-encoding'], undefined)
  t.is(noVariant.headers.vary, 'Accept-Encoding')
  t.true(noVariant.body.equals(fx.small))
  t.deepEqual(record.errors, [])
})

test('send(ctx, path, opts) in a route, errors through Koa', async (t) => {
  const record = { bodies: [] as unknown[], errors: [] as Error[] }
  const { port, close } = await listen(async (ctx, next) => {
    if (ctx.path === '/download') {
      ctx.attachment('small.bin')
      await send(ctx, 'small.bin', { root: fx.root })
      return
    }
    if (ctx.path === '/nope') {
      await send(ctx, 'nope.bin', { root: fx.root })
      return
    }
    await next()
  }, record)
  t.teardown(close)
  const download = await fetchRaw(port, '/download')
  t.is(download.status, 200)
  t.is(download.headers['content-disposition'], 'attachment; filename="small.bin"')
  t.true(download.body.equals(fx.small))
  const missing = await fetchRaw(port, '/nope')
  t.is(missing.status, 404)
  // koa-send's 404, reported by Koa as for koa-send (and not logged: Koa logs no 404).
  t.deepEqual(
    record.errors.map((e) => (e as Error & { status?: number }).status),
    [404],
  )
})

test('the module loads as users load it, and koa-send stays koa-send', (t) => {
  const require = createRequire(import.meta.url)
  const mod = require('../dist/src/frameworks/koa.js') as { serve: unknown; send: unknown; default: unknown }
  t.is(mod.default, mod.serve)
  t.is(typeof mod.send, 'function')
  t.is(typeof require('koa-send'), 'function')
})

test('a client that goes away mid-body does not stop the server', async (t) => {
  const { port, close } = await listen(serve(fx.root))
  t.teardown(close)
  await abortMidBody(port, '/big.bin')
  const after = await fetchRaw(port, '/big.bin')
  t.is(after.status, 200)
  t.true(after.body.equals(fx.big))
})

test('a body transform (gzip middleware) gets the body through Koa and it decodes to the file', async (t) => {
  const record = { bodies: [] as unknown[], errors: [] as Error[] }
  const { port, close } = await listen(async (ctx, next) => {
    await serve(fx.root)(ctx, next)
    if (ctx.query.gzip === undefined || !(ctx.body instanceof FileBody)) return
    ctx.set('Content-Encoding', 'gzip')
    ctx.body = ctx.body.pipe(createGzip())
  }, record)
  t.teardown(close)
  const res = await fetchRaw(port, '/big.bin?gzip')
  t.is(res.status, 200)
  t.is(res.headers['content-encoding'], 'gzip')
  t.true(gunzipSync(res.body).equals(fx.big))
  t.deepEqual(record.errors, [])
})
