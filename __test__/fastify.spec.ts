// zerocopy-socket/fastify inside Fastify, side by side with @fastify/static on the same
// requests over real connections; Fastify's lifecycle around it (hooks, plugins, the error and
// not-found handlers, @fastify/compress, inject); and @fastify/static's own test suite run
// against it (see fastify-static-suite/run.mjs and the README's "Fastify" section).
import { createRequire } from 'node:module'
import http from 'node:http'
import { gunzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

import test from 'ava'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import fastifyCompress from '@fastify/compress'
import fastifyCors from '@fastify/cors'
import upstreamStatic from '@fastify/static'

import { FileBody } from '../src/frameworks/file-body'
import { zcTest, zeroCopyUnavailable } from './helpers'
import { abortMidBody, fetchRaw, http2Get, makeFixture, stableHeaders } from './frameworks-helpers'

const fx = makeFixture()

type Plugin = typeof upstreamStatic
// CommonJS `export =` (what `require('zerocopy-socket/fastify')` returns), loaded as users load it.
const zcStatic = createRequire(import.meta.url)('../dist/src/frameworks/fastify.js') as Plugin

/** A listening Fastify with `plugin` under `/static/` on the fixture, plus `setup`. */
async function serve(
  plugin: Plugin,
  setup?: (app: FastifyInstance) => void | Promise<void>,
  options: Record<string, unknown> = {},
  logs?: string[],
): Promise<{ app: FastifyInstance; port: number }> {
  const app = Fastify(logs ? { logger: { level: 'debug', stream: { write: (line: string) => void logs.push(line) } } } : {})
  await setup?.(app)
  await app.register(plugin, { root: fx.root, prefix: '/static/', ...options })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: (app.server.address() as { port: number }).port }
}

/** Records every file body Fastify sent, to read how it went out once the response is done. */
function captureBodies(app: FastifyInstance): FileBody[] {
  const bodies: FileBody[] = []
  app.addHook('onSend', async (_req, _reply, payload) => {
    if (payload instanceof FileBody) bodies.push(payload)
    return payload
  })
  return bodies
}

const SIDE_BY_SIDE: [string, { method?: string; headers?: http.OutgoingHttpHeaders }][] = [
  ['/static/small.bin', {}],
  ['/static/empty.txt', {}],
  ['/static/empty.txt', { method: 'HEAD' }],
  ['/static/big.bin', {}],
  ['/static/big.bin', { method: 'HEAD' }],
  ['/static/big.bin', { headers: { range: 'bytes=100-199' } }],
  ['/static/big.bin', { headers: { range: 'bytes=-10' } }],
  ['/static/big.bin', { headers: { range: 'bytes=1000000-' } }],
  ['/static/big.bin', { headers: { range: 'bytes=99999999-' } }],
  ['/static/big.bin', { headers: { range: 'bytes=0-1,5-9' } }],
  ['/static/small.bin', { headers: { 'if-modified-since': new Date(Date.now() + 60_000).toUTCString() } }],
  ['/static/missing.bin', {}],
  ['/static/.hidden', {}],
  ['/static/sub', {}],
  ['/static/sub/', {}],
  ['/static/../package.json', {}],
  ['/static/page.txt', { headers: { 'accept-encoding': 'gzip, deflate, br, zstd' } }],
]

for (const preCompressed of [false, true]) {
  test(`same status, headers and bytes as @fastify/static (preCompressed: ${preCompressed})`, async (t) => {
    const upstream = await serve(upstreamStatic, undefined, { preCompressed })
    const ours = await serve(zcStatic, undefined, { preCompressed })
    t.teardown(() => Promise.all([upstream.app.close(), ours.app.close()]))
    for (const [path, options] of SIDE_BY_SIDE) {
      const expected = await fetchRaw(upstream.port, path, options)
      const actual = await fetchRaw(ours.port, path, options)
      const what = `${options.method ?? 'GET'} ${path} ${JSON.stringify(options.headers ?? {})}`
      t.is(actual.status, expected.status, what)
      t.deepEqual(stableHeaders(actual.headers), stableHeaders(expected.headers), what)
      t.true(actual.body.equals(expected.body), `${what}: body`)
    }
    // A 304 needs the validator the first answer carried.
    const { headers } = await fetchRaw(ours.port, '/static/big.bin')
    const conditional = { headers: { 'if-none-match': headers.etag as string } }
    const [expected, actual] = await Promise.all([fetchRaw(upstream.port, '/static/big.bin', conditional), fetchRaw(ours.port, '/static/big.bin', conditional)])
    t.is(actual.status, 304)
    t.deepEqual(stableHeaders(actual.headers), stableHeaders(expected.headers))
  })
}

zcTest('bodies go page-cache-to-socket on real connections, byte-exact, keep-alive kept, nothing logged', async (t) => {
  let bodies: FileBody[] = []
  const logs: string[] = []
  const { app, port } = await serve(
    zcStatic,
    (app) => {
      bodies = captureBodies(app)
    },
    {},
    logs,
  )
  t.teardown(() => app.close())
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let i = 0; i < 6; i++) {
    const big = await fetchRaw(port, '/static/big.bin', { agent })
    t.is(big.status, 200)
    t.true(big.body.equals(fx.big))
    const part = await fetchRaw(port, '/static/big.bin', { agent, headers: { range: `bytes=${i * 1000}-${i * 1000 + 70_000}` } })
    t.is(part.status, 206)
    t.true(part.body.equals(fx.big.subarray(i * 1000, i * 1000 + 70_001)))
    const small = await fetchRaw(port, '/static/small.bin', { agent })
    t.true(small.body.equals(fx.small))
  }
  t.is(bodies.length, 18)
  // The small file goes with its headers through node:http in one write (respondWithFile's
  // small-body path: read now, or kept by the file cache once the file has settled); the
  // others page-cache-to-socket.
  t.deepEqual(
    bodies.map((b) => ({ ...b.result, fallbackReason: b.result?.fallbackReason?.replace(/ \(.*/, '') ?? null })),
    bodies.map((_, i) => (i % 3 === 2 ? { zeroCopy: false, fallbackReason: 'small body' } : { zeroCopy: true, fallbackReason: null })),
  )
  // One connection served all of them.
  t.is(Object.values(agent.freeSockets).flat().length, 1)
  // Fastify saw complete bodies: no "stream closed prematurely", no errors, 18 completions.
  const records = logs.map((line) => JSON.parse(line) as { msg: string; level: number; res?: { statusCode: number } })
  t.deepEqual(
    records.filter((r) => r.level >= 40 || /prematurely|error/i.test(r.msg)),
    [],
  )
  t.deepEqual(
    records.filter((r) => r.msg === 'request completed').map((r) => r.res?.statusCode),
    [200, 206, 200, 200, 206, 200, 200, 206, 200, 200, 206, 200, 200, 206, 200, 200, 206, 200],
  )
})

test('inject() streams the body through Fastify, and says why', async (t) => {
  const app = Fastify()
  const bodies = captureBodies(app)
  await app.register(zcStatic, { root: fx.root })
  const res = await app.inject('/big.bin')
  t.is(res.statusCode, 200)
  t.true(res.rawPayload.equals(fx.big))
  t.is(bodies.length, 1)
  t.false(bodies[0].result?.zeroCopy)
  t.regex(bodies[0].result?.fallbackReason ?? '', /inject/)
  const range = await app.inject({ url: '/big.bin', headers: { range: 'bytes=5-14' } })
  t.is(range.statusCode, 206)
  t.true(range.rawPayload.equals(fx.big.subarray(5, 15)))
  await app.close()
})

test('headers from hooks and plugins are kept, hooks see the real status', async (t) => {
  const seen: number[] = []
  const { app, port } = await serve(zcStatic, async (app) => {
    await app.register(fastifyCors, { origin: '*', exposedHeaders: ['x-hook'] })
    app.addHook('onRequest', async (_req, reply) => {
      reply.header('x-hook', 'on-request')
    })
    app.addHook('onResponse', async (_req, reply) => {
      seen.push(reply.statusCode)
    })
  })
  t.teardown(() => app.close())
  const full = await fetchRaw(port, '/static/big.bin', { headers: { origin: 'http://example.com' } })
  t.is(full.status, 200)
  t.is(full.headers['x-hook'], 'on-request')
  t.is(full.headers['access-control-allow-origin'], '*')
  t.is(full.headers['access-control-expose-headers'], 'x-hook')
  t.true(full.body.equals(fx.big))
  const part = await fetchRaw(port, '/static/big.bin', { headers: { range: 'bytes=0-99' } })
  t.is(part.status, 206)
  t.is(part.headers['x-hook'], 'on-request')
  const missing = await fetchRaw(port, '/static/nope.bin')
  t.is(missing.status, 404)
  t.deepEqual(seen, [200, 206, 404])
})

test("a missing file is Fastify's 404 (its not-found handler), the route prefix kept on redirects", async (t) => {
  const { app, port } = await serve(
    zcStatic,
    (app) => {
      app.setNotFoundHandler((req, reply) => reply.code(404).send(`custom 404 for ${req.url}`))
      app.get('/download/:name', (req, reply) => reply.sendFile((req.params as { name: string }).name))
    },
    { prefix: '/assets/', redirect: true },
  )
  t.teardown(() => app.close())
  const viaRoute = await fetchRaw(port, '/download/nope.txt')
  t.is(viaRoute.status, 404)
  t.is(viaRoute.body.toString(), 'custom 404 for /download/nope.txt')
  const viaPrefix = await fetchRaw(port, '/assets/nope.txt')
  t.is(viaPrefix.status, 404)
  t.is(viaPrefix.body.toString(), 'custom 404 for /assets/nope.txt')
  const redirect = await fetchRaw(port, '/assets/sub')
  t.is(redirect.status, 301)
  t.is(redirect.headers.location, '/assets/sub/')
  const found = await fetchRaw(port, '/download/small.bin')
  t.is(found.status, 200)
  t.true(found.body.equals(fx.small))
})

test("a file that fails to open after the headers were decided reaches Fastify's error handler", async (t) => {
  const errors: string[] = []
  const app = Fastify()
  app.setErrorHandler((err: NodeJS.ErrnoException, _req, reply: FastifyReply) => {
    errors.push(err.code ?? '')
    return reply.code(500).send('handled')
  })
  // The window names a file that is gone, as when it is deleted between the stat and the open.
  app.get('/gone', (req, reply) =>
    reply.header('x-set', '1').send(new FileBody(req.raw, { path: fileURLToPath(new URL('./no-such-file', import.meta.url)), offset: 0, length: 10 })),
  )
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const res = await fetchRaw(port, '/gone')
  t.is(res.status, 500)
  t.is(res.body.toString(), 'handled')
  t.deepEqual(errors, ['ENOENT'])
  const injected = await app.inject('/gone')
  t.is(injected.statusCode, 500)
  t.deepEqual(errors, ['ENOENT', 'ENOENT'])
})

test('@fastify/compress gets the body through Fastify and it decodes to the file', async (t) => {
  let bodies: FileBody[] = []
  const { app, port } = await serve(zcStatic, async (app) => {
    await app.register(fastifyCompress, { threshold: 0 })
    bodies = captureBodies(app)
  })
  t.teardown(() => app.close())
  const res = await fetchRaw(port, '/static/page.txt', { headers: { 'accept-encoding': 'gzip' } })
  t.is(res.status, 200)
  t.is(res.headers['content-encoding'], 'gzip')
  t.is(gunzipSync(res.body).toString(), fx.text)
  t.true(bodies.length >= 1)
  t.false(bodies[bodies.length - 1].result?.zeroCopy)
  // No transform asked for: straight to the socket.
  const plain = await fetchRaw(port, '/static/big.bin', { headers: { 'accept-encoding': 'identity' } })
  t.true(plain.body.equals(fx.big))
  if (zeroCopyUnavailable === null) t.true(bodies[bodies.length - 1].result?.zeroCopy)
})

test('a client that goes away mid-body does not stop the server', async (t) => {
  const { app, port } = await serve(zcStatic)
  t.teardown(() => app.close())
  await abortMidBody(port, '/static/big.bin')
  const after = await fetchRaw(port, '/static/big.bin')
  t.is(after.status, 200)
  t.true(after.body.equals(fx.big))
})

test('the plugin is a private instance: the application’s own @fastify/static is untouched', (t) => {
  const require = createRequire(import.meta.url)
  t.not(zcStatic, require('@fastify/static'))
  t.is(typeof zcStatic, 'function')
  t.is((zcStatic as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')], '@fastify/static')
})

// @fastify/static's own suite, run against @fastify/static and against this plugin.
test.serial("@fastify/static's own test suite passes against the plugin", async (t) => {
  const suite = (name: string) => import(new URL(`./fastify-static-suite/${name}`, import.meta.url).href)
  const { runSuite } = (await suite('run.mjs')) as {
    runSuite: (plugin: string) => { id: string; status: 'pass' | 'fail' | 'skip'; error?: string }[]
  }
  const { DIFFERENCES } = (await suite('differences.mjs')) as { DIFFERENCES: Record<string, string> }
  const keyed = (records: ReturnType<typeof runSuite>) => {
    const seen = new Map<string, number>()
    return new Map(
      records.map((r) => {
        const n = (seen.get(r.id) ?? 0) + 1
        seen.set(r.id, n)
        return [n > 1 ? `${r.id} #${n}` : r.id, r] as const
      }),
    )
  }
  const upstream = keyed(runSuite('upstream'))
  const ours = keyed(runSuite('zerocopy'))
  const passing = [...upstream].filter(([, r]) => r.status === 'pass').map(([id]) => id)
  t.true(passing.length > 350, `the suite ran (${passing.length} passing against @fastify/static)`)
  const differing = passing.filter((id) => ours.get(id)?.status !== 'pass')
  const passed = passing.length - differing.length
  t.log(`@fastify/static suite: ${passed}/${passing.length} of the tests passing against @fastify/static pass against zerocopy-socket/fastify`)
  t.true(passed / passing.length >= 0.95)
  // The README lists every difference (from differences.mjs): the list must stay exact.
  t.deepEqual(
    Object.fromEntries(differing.map((id) => [id, ours.get(id)?.error ?? 'missing'])),
    Object.fromEntries(Object.keys(DIFFERENCES).map((id) => [id, ours.get(id)?.error ?? 'missing'])),
  )
})

test('over HTTP/2 the body is streamed through Fastify, byte-exact', async (t) => {
  const app = Fastify({ http2: true })
  const bodies = captureBodies(app as unknown as FastifyInstance)
  await app.register(zcStatic, { root: fx.root })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { status, body } = await http2Get((app.server.address() as { port: number }).port, '/big.bin', { range: 'bytes=10-200009' })
  t.is(status, 206)
  t.true(body.equals(fx.big.subarray(10, 200_010)))
  t.is(bodies.length, 1)
  t.false(bodies[0].result?.zeroCopy)
})
