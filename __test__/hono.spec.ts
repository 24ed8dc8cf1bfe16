// zerocopy-socket/hono on @hono/node-server, side by side with @hono/node-server's own
// serveStatic on the same requests over real connections (status, headers, bytes); Hono's
// middleware around it (hono/cors, hono/compress, headers after next()), HEAD without errors,
// ranges, 304 (which Hono's serveStatic does not answer), fall-through.
import http from 'node:http'
import net from 'node:net'
import { gunzipSync } from 'node:zlib'

import test from 'ava'
import { Hono, type Context } from 'hono'
import { compress } from 'hono/compress'
import { cors } from 'hono/cors'
import { etag } from 'hono/etag'
import { serve, type ServerType } from '@hono/node-server'
import { serveStatic as honoServeStatic } from '@hono/node-server/serve-static'

import { fileResult, serveStatic } from '../src/frameworks/hono'
import { zcTest } from './helpers'
import { abortMidBody, fetchRaw, makeFixture, stableHeaders } from './frameworks-helpers'

const fx = makeFixture()

type Factory = typeof honoServeStatic

/** A listening @hono/node-server app: CORS, `extra`, the static middleware, a fallback route. */
async function listen(
  factory: Factory,
  options: { precompressed?: boolean; extra?: (app: Hono) => void } = {},
): Promise<{ port: number; contexts: Context[]; close: () => Promise<void> }> {
  const app = new Hono()
  const contexts: Context[] = []
  app.use(async (c, next) => {
    await next()
    contexts.push(c)
  })
  app.use(cors({ origin: (origin) => origin || null }))
  options.extra?.(app)
  app.use('/*', factory({ root: fx.root, precompressed: options.precompressed }))
  app.get('*', (c) => c.text(`fallback for ${c.req.path}`, 404))
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s))
  })
  return {
    port: (server.address() as { port: number }).port,
    contexts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** console.error and console.info calls during `run` (where @hono/node-server reports errors). */
async function consoleDuring<T>(run: () => Promise<T>): Promise<{ value: T; logged: unknown[][] }> {
  const logged: unknown[][] = []
  const { error, info } = console
  console.error = (...args: unknown[]) => void logged.push(args)
  console.info = (...args: unknown[]) => void logged.push(args)
  try {
    return { value: await run(), logged }
  } finally {
    console.error = error
    console.info = info
  }
}

const CHROME = 'gzip, deflate, br, zstd'
const FIREFOX = 'gzip, deflate, br, zstd'
const SAFARI = 'gzip, deflate, br'
const SIDE_BY_SIDE: [string, { method?: string; headers?: http.OutgoingHttpHeaders }][] = [
  ['/small.bin', {}],
  ['/empty.txt', {}],
  ['/empty.txt', { method: 'HEAD' }],
  ['/big.bin', { headers: { origin: 'http://example.com' } }],
  ['/big.bin', { method: 'HEAD' }],
  ['/big.bin', { headers: { range: 'bytes=100-199' } }],
  ['/big.bin', { headers: { range: 'bytes=-10' } }],
  ['/big.bin', { headers: { range: 'bytes=1000000-' } }],
  ['/big.bin', { headers: { range: 'bytes=99999999-' } }],
  ['/missing.bin', {}],
  ['/sub', {}],
  ['/sub/', {}],
  ['/a%2e%2e/small.bin', {}],
  ['/page.txt', {}],
  ['/page.txt', { headers: { 'accept-encoding': CHROME } }],
  ['/page.txt', { headers: { 'accept-encoding': FIREFOX, range: 'bytes=0-99' } }],
  ['/page.txt', { headers: { 'accept-encoding': SAFARI } }],
  ['/page.txt', { headers: { 'accept-encoding': 'gzip' } }],
  ['/page.txt', { method: 'HEAD', headers: { 'accept-encoding': CHROME } }],
  ['/small.bin', { headers: { 'accept-encoding': CHROME } }],
]

for (const precompressed of [false, true]) {
  test(`same status, headers and bytes as @hono/node-server's serveStatic (precompressed: ${precompressed})`, async (t) => {
    const upstream = await listen(honoServeStatic, { precompressed })
    const ours = await listen(serveStatic, { precompressed })
    t.teardown(() => Promise.all([upstream.close(), ours.close()]))
    const { logged } = await consoleDuring(async () => {
      for (const [path, options] of SIDE_BY_SIDE) {
        const expected = await fetchRaw(upstream.port, path, options)
        const actual = await fetchRaw(ours.port, path, options)
        const what = `${options.method ?? 'GET'} ${path} ${JSON.stringify(options.headers ?? {})}`
        t.is(actual.status, expected.status, what)
        t.deepEqual(stableHeaders(actual.headers), stableHeaders(expected.headers), what)
        t.true(actual.body.equals(expected.body), `${what}: body`)
      }
    })
    t.deepEqual(logged, [])
  })
}

zcTest('bodies go page-cache-to-socket, CORS headers kept, HEAD without errors, keep-alive kept', async (t) => {
  const { port, contexts, close } = await listen(serveStatic, {
    extra: (app) =>
      app.use(async (c, next) => {
        await next()
        c.header('X-After', 'set after next()')
      }),
  })
  t.teardown(close)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const { logged } = await consoleDuring(async () => {
    for (let i = 0; i < 4; i++) {
      const big = await fetchRaw(port, '/big.bin', { agent, headers: { origin: 'http://example.com' } })
      t.is(big.status, 200)
      t.is(big.headers['access-control-allow-origin'], 'http://example.com')
      t.is(big.headers.vary, 'Origin')
      t.is(big.headers['x-after'], 'set after next()')
      t.is(big.headers['content-length'], String(fx.big.length))
      t.true(big.body.equals(fx.big))
      const part = await fetchRaw(port, '/big.bin', { agent, headers: { range: `bytes=${i}-${i + 100_000}` } })
      t.is(part.status, 206)
      t.true(part.body.equals(fx.big.subarray(i, i + 100_001)))
      const head = await fetchRaw(port, '/big.bin', { agent, method: 'HEAD', headers: { origin: 'http://example.com' } })
      t.is(head.status, 200)
      t.is(head.headers['access-control-allow-origin'], 'http://example.com')
      t.is(head.headers['content-length'], String(fx.big.length))
    }
    await new Promise((resolve) => setImmediate(resolve))
  })
  t.deepEqual(logged, [])
  const gets = contexts.filter((c) => c.req.method === 'GET')
  t.is(gets.length, 8)
  t.deepEqual(
    gets.map((c) => fileResult(c)),
    gets.map(() => ({ zeroCopy: true, fallbackReason: null })),
  )
  t.is(Object.values(agent.freeSockets).flat().length, 1)
})

test('hono/compress gets the body through Hono and it decodes to the file', async (t) => {
  const { port, contexts, close } = await listen(serveStatic, { extra: (app) => app.use(compress()) })
  t.teardown(close)
  const res = await fetchRaw(port, '/page.txt', { headers: { 'accept-encoding': 'gzip' } })
  t.is(res.status, 200)
  t.is(res.headers['content-encoding'], 'gzip')
  t.is(gunzipSync(res.body).toString(), fx.text)
  await new Promise((resolve) => setImmediate(resolve))
  t.false(fileResult(contexts[contexts.length - 1])?.zeroCopy)
  const plain = await fetchRaw(port, '/big.bin')
  t.true(plain.body.equals(fx.big))
})

test('304 for If-Modified-Since, fall-through, app.request() streams', async (t) => {
  const { port, close } = await listen(serveStatic)
  t.teardown(close)
  const first = await fetchRaw(port, '/small.bin')
  const lastModified = first.headers['last-modified'] as string
  const notModified = await fetchRaw(port, '/small.bin', { headers: { 'if-modified-since': lastModified, origin: 'http://example.com' } })
  t.is(notModified.status, 304)
  t.is(notModified.body.length, 0)
  t.is(notModified.headers['last-modified'], lastModified)
  t.is(notModified.headers['content-length'], undefined)
  t.is(notModified.headers['access-control-allow-origin'], 'http://example.com')
  const headNotModified = await fetchRaw(port, '/small.bin', { method: 'HEAD', headers: { 'if-modified-since': lastModified } })
  t.is(headNotModified.status, 304)
  // A fall-through answer is the next handler's, whatever its validators.
  const fellThrough = await fetchRaw(port, '/missing.bin', { headers: { 'if-modified-since': lastModified } })
  t.is(fellThrough.status, 404)
  const stale = await fetchRaw(port, '/small.bin', { headers: { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' } })
  t.is(stale.status, 200)
  t.true(stale.body.equals(fx.small))
  const missing = await fetchRaw(port, '/missing.bin')
  t.is(missing.status, 404)
  t.is(missing.body.toString(), 'fallback for /missing.bin')

  const app = new Hono()
  let context: Context | undefined
  app.use(async (c, next) => {
    await next()
    context = c
  })
  app.use('/*', serveStatic({ root: fx.root }))
  const res = await app.request('/big.bin')
  t.is(res.status, 200)
  t.true(Buffer.from(await res.arrayBuffer()).equals(fx.big))
  t.regex(fileResult(context!)?.fallbackReason ?? '', /app\.request/)
})

test('a client that goes away mid-body does not stop the server, nothing logged', async (t) => {
  const { port, close } = await listen(serveStatic)
  t.teardown(close)
  const { logged } = await consoleDuring(async () => {
    for (let i = 0; i < 3; i++) await abortMidBody(port, '/big.bin')
    // Clients that send a request and reset at once: the body meets a closed socket.
    for (let i = 0; i < 20; i++) {
      const socket = net.connect(port, '127.0.0.1')
      socket.on('error', () => {})
      socket.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n', () => socket.resetAndDestroy())
    }
    const after = await fetchRaw(port, '/big.bin')
    t.is(after.status, 200)
    t.true(after.body.equals(fx.big))
    await new Promise((resolve) => setTimeout(resolve, 100))
  })
  t.deepEqual(logged, [])
})

test('middleware that reads the body first (hono/etag, c.res.text()) gets it, nothing hangs, no wrong byte', async (t) => {
  const { port, close } = await listen(serveStatic, {
    extra: (app) => {
      app.use(etag())
      app.use(async (c, next) => {
        await next()
        if (c.req.query('upper') === undefined) return
        const text = await c.res.text()
        c.res = new Response(text.toUpperCase(), { headers: { 'content-type': 'text/plain', 'x-rewritten': '1' } })
      })
    },
  })
  t.teardown(close)
  const tagged = await fetchRaw(port, '/small.bin')
  t.is(tagged.status, 200)
  t.truthy(tagged.headers.etag)
  t.true(tagged.body.equals(fx.small))
  const again = await fetchRaw(port, '/small.bin', { headers: { 'if-none-match': tagged.headers.etag as string } })
  t.is(again.status, 304)
  const upper = await fetchRaw(port, '/page.txt?upper')
  t.is(upper.status, 200)
  t.is(upper.headers['x-rewritten'], '1')
  t.is(upper.body.toString(), fx.text.toUpperCase())
  const big = await fetchRaw(port, '/big.bin')
  t.true(big.body.equals(fx.big))
})
