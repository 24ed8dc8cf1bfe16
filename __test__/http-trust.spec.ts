/**
 * `respondWithFile` against sloppy handlers and hostile clients (issue 23): pipelined requests
 * and resets, responses answered or aborted while queued, `res.end()` mid-body, bodiless
 * statuses, `res.cork()`, `strictContentLength`, a throwing `onProgress`, unknown range units,
 * a user `Transfer-Encoding`, and a response without a kernel socket (Fastify's `inject()`).
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'
import Fastify from 'fastify'
import inject from 'light-my-request'

import { respondWithFile, type RespondWithFileResult } from '../index'
import { serveStatic } from '../src/static'
import { patternBytes } from './helpers'
import { openDescriptors, pipeline, responses, within, type WireRequest } from './http-wire'

const BIG = patternBytes(8 << 20, 3)
const SMALL = patternBytes(1000, 4)
let dir: string
let bigPath: string
let smallPath: string

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zc-http-trust-'))
  bigPath = join(dir, 'big')
  smallPath = join(dir, 'small')
  await writeFile(bigPath, BIG)
  await writeFile(smallPath, SMALL)
})
test.after.always(async () => rm(dir, { recursive: true, force: true }))

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

async function serve(t: { teardown(fn: () => void): void }, handler: Handler): Promise<{ port: number; server: http.Server }> {
  const server = http.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => (server.closeAllConnections(), server.close()))
  return { port: (server.address() as net.AddressInfo).port, server }
}

/** Runs `fn` from a timer once `res`'s headers went out (the client reads nothing yet, so an 8 MiB body is still going). */
function whenBodyStarted(res: http.ServerResponse, fn: () => void): void {
  const timer = setInterval(() => {
    if (!res.headersSent) return
    clearInterval(timer)
    fn()
  }, 5)
}

const fileOf = (url: string | undefined): string => (url?.startsWith('/big') ? bigPath : smallPath)
const bytesOf = (path: string): Buffer => (path.startsWith('/big') ? BIG : SMALL)

test.serial('pipelined requests, then the client resets: every promise settles and every descriptor of the file closes', async (t) => {
  const settled: Promise<unknown>[] = []
  const { port } = await serve(t, (_req, res) => {
    settled.push(respondWithFile(res, bigPath).catch((e: NodeJS.ErrnoException) => e.code))
  })
  const warnings: string[] = []
  const onWarning = (w: Error): void => void warnings.push(w.name)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  const before = await openDescriptors(bigPath)
  for (let round = 0; round < 5; round++) {
    const requests: WireRequest[] = Array.from({ length: 20 }, () => ({ path: '/big' }))
    const client = await pipeline(port, requests, true)
    while (settled.length < (round + 1) * 20) await new Promise((r) => setTimeout(r, 5))
    client.socket.resetAndDestroy()
    await client.closed
  }
  const outcomes = await within(Promise.all(settled), 10_000, 'respondWithFile promises')
  t.is(outcomes.length, 100)
  for (const o of outcomes) t.true(typeof o === 'string', `a response to a reset client cannot succeed: ${JSON.stringify(o)}`)
  await new Promise((r) => setTimeout(r, 100)) // the engine closes its duplicates as it gets the socket's close
  t.is(await openDescriptors(bigPath), before)
  t.deepEqual(warnings, [], 'one close listener per connection, however deep the pipeline')
})

test.serial('called twice on a queued response: one answer, the other rejects ERR_HTTP_HEADERS_SENT; the connection stays in step', async (t) => {
  const outcomes: (string | number)[] = []
  const { port } = await serve(t, (req, res) => {
    const path = fileOf(req.url)
    const call = (): Promise<void> =>
      respondWithFile(res, path).then(
        (r) => void outcomes.push(r.bytes),
        (e: NodeJS.ErrnoException) => void outcomes.push(e.code!),
      )
    void call()
    if (req.url === '/small-twice') void call()
  })
  const requests: WireRequest[] = [{ path: '/big' }, { path: '/small-twice' }, { path: '/small' }]
  const client = await pipeline(port, requests, true)
  await new Promise((r) => setTimeout(r, 100))
  const got = await responses(client, requests)
  t.deepEqual(
    got.map((r) => [r.status, r.body.length]),
    [
      [200, BIG.length],
      [200, SMALL.length],
      [200, SMALL.length],
    ],
  )
  t.true(got[0].body.equals(BIG) && got[1].body.equals(SMALL) && got[2].body.equals(SMALL))
  client.socket.destroy()
  t.deepEqual(outcomes.sort(), [1000, 1000, BIG.length, 'ERR_HTTP_HEADERS_SENT'].sort())
})

test.serial('a queued response answered by a timeout middleware: its 503 goes out as written, the call rejects, nothing of the file follows', async (t) => {
  let outcome: unknown
  const { port } = await serve(t, (req, res) => {
    if (req.url !== '/timeout') return void respondWithFile(res, fileOf(req.url))
    respondWithFile(res, smallPath, { 'x-file': 'yes' }, { range: 'bytes=0-9' }).then(
      (r) => (outcome = r),
      (e: NodeJS.ErrnoException) => (outcome = e.code),
    )
    setTimeout(() => {
      res.statusCode = 503
      res.end('timeout')
    }, 50)
  })
  const requests: WireRequest[] = [{ path: '/big' }, { path: '/timeout' }, { path: '/small' }]
  const client = await pipeline(port, requests, true)
  await new Promise((r) => setTimeout(r, 200))
  const got = await responses(client, requests)
  client.socket.destroy()
  t.is(got.length, 3)
  t.true(got[0].body.equals(BIG))
  t.is(got[1].status, 503)
  t.is(got[1].body.toString(), 'timeout')
  t.is(got[1].headers['x-file'], undefined)
  t.is(got[1].headers['content-range'], undefined)
  t.true(got[2].body.equals(SMALL))
  t.is(outcome, 'ERR_HTTP_HEADERS_SENT')
})

test.serial('aborted while queued: rejects at once with ABORT_ERR and leaves res untouched for the caller’s own answer', async (t) => {
  let rejectedWhileQueued = false
  const { port } = await serve(t, (req, res) => {
    if (req.url !== '/abort') return void respondWithFile(res, fileOf(req.url))
    const ac = new AbortController()
    respondWithFile(res, smallPath, { 'x-file': 'yes' }, { range: 'bytes=0-9', signal: ac.signal }).catch((e: NodeJS.ErrnoException) => {
      rejectedWhileQueued = e.code === 'ABORT_ERR' && res.socket === null
      res.statusCode = 500
      res.end('error')
    })
    setTimeout(() => ac.abort(), 50)
  })
  const requests: WireRequest[] = [{ path: '/big' }, { path: '/abort' }, { path: '/small' }]
  const client = await pipeline(port, requests, true)
  await new Promise((r) => setTimeout(r, 200))
  const got = await responses(client, requests)
  client.socket.destroy()
  t.true(rejectedWhileQueued, 'the abort is seen while the response waits for its turn')
  t.is(got.length, 3)
  t.true(got[0].body.equals(BIG))
  t.is(got[1].status, 500)
  t.is(got[1].body.toString(), 'error')
  t.is(got[1].headers['content-range'], undefined)
  t.is(got[1].headers['x-file'], undefined)
  t.true(got[2].body.equals(SMALL))
})

test.serial(
  'res.end(), res.write() and res.end(data) mid-body with pipelined requests behind: nothing thrown, the body completes, the next responses follow it',
  async (t) => {
    const thrown: unknown[] = []
    const writeErrors: (string | undefined)[] = []
    let result: RespondWithFileResult | undefined
    const { port } = await serve(t, (req, res) => {
      if (req.url === '/plain') return void res.end('plain')
      if (req.url === '/big') return void respondWithFile(res, bigPath)
      if (req.url !== '/big-end') return void respondWithFile(res, smallPath)
      respondWithFile(res, bigPath).then((r) => (result = r))
      whenBodyStarted(res, () => {
        try {
          res.write('x', (e) => writeErrors.push((e as NodeJS.ErrnoException | undefined)?.code))
          res.end('data')
          res.end()
        } catch (e) {
          thrown.push(e)
        }
      })
    })
    const requests: WireRequest[] = [{ path: '/big-end' }, { path: '/plain' }, { path: '/small' }, { path: '/big' }]
    const client = await pipeline(port, requests, true)
    await new Promise((r) => setTimeout(r, 150))
    const got = await responses(client, requests)
    client.socket.destroy()
    t.deepEqual(thrown, [])
    t.deepEqual(
      got.map((r) => r.status),
      [200, 200, 200, 200],
    )
    t.true(got[0].body.equals(BIG))
    t.is(got[1].body.toString(), 'plain')
    t.true(got[2].body.equals(SMALL))
    t.true(got[3].body.equals(BIG))
    t.true(result?.zeroCopy)
    t.deepEqual(writeErrors, ['ERR_ZC_SOCKET_OWNED'])
  },
)

for (const status of [204, 304]) {
  test.serial(`status ${status} set before the call: no body and no Content-Length, the next response on the connection in step`, async (t) => {
    let result: RespondWithFileResult | undefined
    const { port } = await serve(t, (req, res) => {
      if (req.url === '/status') res.statusCode = status
      respondWithFile(res, smallPath).then((r) => (req.url === '/status' ? (result = r) : undefined))
    })
    const requests: WireRequest[] = [{ path: '/status' }, { path: '/small' }]
    const client = await pipeline(port, requests)
    const got = await responses(client, requests)
    client.socket.destroy()
    t.is(got.length, 2)
    t.is(got[0].status, status)
    t.is(got[0].headers['content-length'], undefined)
    t.is(got[1].status, 200)
    t.true(got[1].body.equals(SMALL))
    t.is(result?.bytes, 0)
    t.is(result?.status, status)
    const raw = client.received().toString('latin1')
    t.is(raw.indexOf('HTTP/1.1 200'), raw.indexOf('\r\n\r\n') + 4, 'the next response starts right after the header block')
  })
}

for (const [name, path] of [
  ['inline (small)', '/small'],
  ['engine (8 MiB)', '/big'],
] as const) {
  test.serial(`res.cork() before the call does not hang: ${name}`, async (t) => {
    const { port } = await serve(t, (req, res) => {
      res.cork()
      res.cork()
      void respondWithFile(res, fileOf(req.url))
    })
    const requests: WireRequest[] = [{ path }, { path }]
    const client = await pipeline(port, requests)
    const got = await responses(client, requests, 2, 10_000)
    client.socket.destroy()
    t.is(got.length, 2)
    for (const r of got) t.true(r.body.equals(bytesOf(path)))
  })

  test.serial(`res.strictContentLength = true: the response ends without ERR_HTTP_CONTENT_LENGTH_MISMATCH, keep-alive goes on: ${name}`, async (t) => {
    const errors: unknown[] = []
    const { port } = await serve(t, (req, res) => {
      res.strictContentLength = true
      respondWithFile(res, fileOf(req.url)).catch((e) => errors.push(e))
    })
    const requests: WireRequest[] = [{ path }, { path }]
    const client = await pipeline(port, requests)
    const got = await responses(client, requests, 2, 10_000)
    client.socket.destroy()
    t.deepEqual(errors, [])
    t.is(got.length, 2)
    for (const r of got) t.true(r.body.equals(bytesOf(path)))
  })
}

test.serial('res.cork() before the call does not hang: streamed (a user Transfer-Encoding, 8 MiB)', async (t) => {
  const { port } = await serve(t, (_req, res) => {
    res.cork()
    void respondWithFile(res, bigPath, { 'transfer-encoding': 'chunked' })
  })
  const requests: WireRequest[] = [{ path: '/big' }, { path: '/big' }]
  const client = await pipeline(port, requests)
  const got = await responses(client, requests, 2, 10_000)
  client.socket.destroy()
  t.is(got.length, 2)
  for (const r of got) t.true(r.body.equals(BIG))
})

test.serial('onProgress throwing on the inline path: the call rejects with its error and the connection is closed, not left waiting', async (t) => {
  let outcome: unknown
  const { port } = await serve(t, (_req, res) => {
    respondWithFile(res, smallPath, undefined, {
      onProgress: () => {
        throw new Error('progress failed')
      },
    }).catch((e: Error) => (outcome = e.message))
  })
  const client = await pipeline(port, [{ path: '/small' }])
  await within(client.closed, 5_000, 'the connection')
  t.is(outcome, 'progress failed')
})

for (const range of ['items=5000-6000', 'foo=abc', 'items=0-9']) {
  test.serial(`Range in an unknown unit (${range}) is ignored: 200 with the whole file`, async (t) => {
    const { port } = await serve(t, (_req, res) => void respondWithFile(res, smallPath, undefined, { range }))
    const requests: WireRequest[] = [{ path: '/small' }]
    const client = await pipeline(port, requests)
    const [r] = await responses(client, requests)
    client.socket.destroy()
    t.is(r.status, 200)
    t.is(r.headers['content-range'], undefined)
    t.true(r.body.equals(SMALL))
  })
}

for (const path of ['/small', '/big']) {
  test.serial(`a user Transfer-Encoding: chunked header: the body is framed by node:http, byte-exact (${path})`, async (t) => {
    let result: RespondWithFileResult | undefined
    const { port } = await serve(t, (req, res) => {
      respondWithFile(res, fileOf(req.url), { 'transfer-encoding': 'chunked' }).then((r) => (result = r))
    })
    const requests: WireRequest[] = [{ path }, { path }]
    const client = await pipeline(port, requests)
    const got = await responses(client, requests)
    client.socket.destroy()
    t.is(got.length, 2)
    for (const r of got) {
      t.is(r.headers['transfer-encoding'], 'chunked')
      t.true(r.body.equals(bytesOf(path)))
    }
    t.false(result?.zeroCopy)
    t.regex(result?.fallbackReason ?? '', /Transfer-Encoding/)
  })
}

test.serial('Fastify inject(): no kernel socket, so the body is streamed through res; inject resolves byte-exact and the result says why', async (t) => {
  let result: RespondWithFileResult | undefined
  const app = Fastify()
  app.get('/big', (_req, reply) => {
    reply.hijack()
    respondWithFile(reply.raw, bigPath).then((r) => (result = r))
  })
  t.teardown(() => app.close())
  const r = await within(app.inject({ method: 'GET', url: '/big' }), 10_000, 'inject()')
  while (result === undefined) await new Promise((r) => setTimeout(r, 5))
  t.is(r.statusCode, 200)
  t.true(r.rawPayload.equals(BIG))
  t.false(result?.zeroCopy)
  t.regex(result?.fallbackReason ?? '', /kernel socket/)
})

test.serial('serveStatic under light-my-request: 200 with the whole body, and a range', async (t) => {
  const mw = serveStatic(dir)
  const dispatch = (req: http.IncomingMessage, res: http.ServerResponse): void =>
    mw(req, res, () => {
      res.statusCode = 404
      res.end()
    })
  const whole = await within(inject(dispatch, { url: '/big' }), 10_000, 'inject()')
  t.is(whole.statusCode, 200)
  t.true(whole.rawPayload.equals(BIG))
  const part = await within(inject(dispatch, { url: '/small', headers: { range: 'bytes=10-19' } }), 10_000, 'inject()')
  t.is(part.statusCode, 206)
  t.true(part.rawPayload.equals(SMALL.subarray(10, 20)))
})

/** Reads the response to GET `path` at about `bytesPerTick` every `tickMs` (0: never reads); resolves with the bytes and whether the stream ended or was cut. */
async function slowRead(port: number, path: string, bytesPerTick: number, tickMs: number, ms: number): Promise<{ bytes: number; ended: boolean }> {
  const client = await pipeline(port, [{ path }], true)
  let bytes = 0
  let ended = false
  client.socket.on('end', () => (ended = true))
  const timer = setInterval(() => {
    if (bytesPerTick === 0) return
    let budget = bytesPerTick
    let chunk: Buffer | null
    while (budget > 0 && (chunk = client.socket.read(Math.min(budget, client.socket.readableLength) || undefined) as Buffer | null) !== null) {
      bytes += chunk.length
      budget -= chunk.length
    }
  }, tickMs)
  await within(client.closed, ms, 'the slow read').finally(() => clearInterval(timer))
  return { bytes, ended }
}

for (const how of ['server.timeout', 'res.setTimeout']) {
  test.serial(`${how} = 500 ms does not cut a slow but steady reader (64 KiB every 30 ms of 8 MiB), and still cuts one that stopped`, async (t) => {
    const outcomes: unknown[] = []
    const { port, server } = await serve(t, (_req, res) => {
      if (how === 'res.setTimeout') res.setTimeout(500)
      respondWithFile(res, bigPath).then(
        (r) => outcomes.push(r.bytes),
        (e: NodeJS.ErrnoException) => outcomes.push(e.code),
      )
    })
    if (how === 'server.timeout') server.timeout = 500
    server.keepAliveTimeout = 100 // the client closes the connection after the body
    const steady = await slowRead(port, '/big', 64 * 1024, 30, 30_000)
    t.true(steady.bytes > BIG.length, `${steady.bytes} bytes read before the connection closed`)
    t.is(outcomes[0], BIG.length)
    // A reader that stopped: it never sees the connection's end (it does not read), so watch the server's side.
    const stalled = await pipeline(port, [{ path: '/big' }], true)
    t.teardown(() => stalled.socket.destroy())
    await within(
      (async () => {
        while (outcomes.length < 2) await new Promise((r) => setTimeout(r, 10))
      })(),
      10_000,
      'the stalled response',
    )
    t.true(typeof outcomes[1] === 'string', `a cut response rejects: ${String(outcomes[1])}`)
  })
}

test.serial('res.end() mid-body on the streamed path (a user Transfer-Encoding): the body completes, then the next pipelined response', async (t) => {
  const { port } = await serve(t, (req, res) => {
    if (req.url === '/plain') return void res.end('plain')
    void respondWithFile(res, bigPath, { 'transfer-encoding': 'chunked' })
    whenBodyStarted(res, () => res.end())
  })
  const requests: WireRequest[] = [{ path: '/big' }, { path: '/plain' }]
  const client = await pipeline(port, requests, true)
  await new Promise((r) => setTimeout(r, 150))
  const got = await responses(client, requests)
  client.socket.destroy()
  t.is(got.length, 2)
  t.true(got[0].body.equals(BIG), `${got[0]?.body.length} bytes`)
  t.is(got[1].body.toString(), 'plain')
})
