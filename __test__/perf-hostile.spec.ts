// Hostile tests of the perf branch (issue 21): the descriptor cache's limits and lifetime, the
// header block sent with MSG_MORE, the small-body path, and serveStatic's answers without send,
// each side by side with what serve-static 2.2.1 / send 1.2.1 do. Real loopback sockets, real
// clients; every wait has a deadline.
import { mkdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'

import test from 'ava'
import compression from 'compression'
import express from 'express'

import { configureFileCache, respondWithFile, serveStatic } from '../index'
import { cacheScratch, deadline, fdsUnder, patternBytes, rng, SEED } from './helpers'

interface Got {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

function request(port: number, path: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders } = {}): Promise<Got> {
  return deadline(
    new Promise((resolve, reject) => {
      http
        .request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
          res.once('error', reject)
        })
        .once('error', reject)
        .end()
    }),
    10_000,
    `${opts.method ?? 'GET'} ${path}`,
  )
}

async function listen(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections()
  return deadline(new Promise((resolve) => server.close(() => resolve())), 5_000, 'server.close')
}

const scratch = (t: { teardown(fn: () => void): void }): string => cacheScratch(t, 'zc-perf-hostile-')

/** Headers that differ between two servers for reasons of their own. */
const VOLATILE = new Set(['date', 'connection', 'keep-alive', 'x-powered-by'])
function comparable(got: Got): { status: number; headers: Record<string, unknown>; body: string } {
  const headers: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(got.headers)) if (!VOLATILE.has(k)) headers[k] = v
  return { status: got.status, headers, body: got.body.toString('base64') }
}

test.serial('configureFileCache refuses edge values with ERR_OUT_OF_RANGE and keeps its limits', (t) => {
  scratch(t)
  for (const bad of [{ maxEntries: -1 }, { maxEntries: Number.NaN }, { freshMs: -1 }, { freshMs: Number.NaN }, { freshMs: Infinity }, { maxEntries: 1.5 }]) {
    const err = t.throws(() => configureFileCache(bad), undefined, JSON.stringify(bad))
    t.is((err as NodeJS.ErrnoException | undefined)?.code, 'ERR_OUT_OF_RANGE', String(Object.keys(bad)))
  }
  configureFileCache({ maxEntries: 0 })
  configureFileCache({ maxEntries: 256, freshMs: 1000 })
  t.pass()
})

test.serial('a server closed, listening again and closed again closes the cached descriptors again', async (t) => {
  const dir = scratch(t)
  writeFileSync(join(dir, 'a.bin'), patternBytes(100_000))
  configureFileCache({ freshMs: 60_000 })
  const server = http.createServer((_req, res) => {
    respondWithFile(res, join(dir, 'a.bin')).catch(() => res.destroy())
  })
  for (let round = 0; round < 2; round++) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const got = await request((server.address() as AddressInfo).port, '/')
    t.is(got.body.length, 100_000)
    t.true(fdsUnder(dir) > 0, 'the descriptor is cached while the server runs')
    await close(server)
    await new Promise((r) => setTimeout(r, 50))
    t.is(fdsUnder(dir), 0, `round ${round}: every cached descriptor is closed with the server`)
  }
})

test.serial('serveStatic under compression: a gzip body that unzips to the file, as express.static', async (t) => {
  const dir = scratch(t)
  const text = Buffer.from('hello compressible world\n'.repeat(8_000)) // 200 KB: not the small-body path
  writeFileSync(join(dir, 'big.txt'), text)
  writeFileSync(join(dir, 'small.txt'), text.subarray(0, 4_000))
  const app = express()
  app.use(compression())
  app.use('/zc', serveStatic(dir))
  app.use('/ss', express.static(dir))
  const { server, port } = await listen(app)
  t.teardown(() => close(server))
  for (const name of ['small.txt', 'big.txt']) {
    for (let i = 0; i < 2; i++) {
      const ours = await request(port, `/zc/${name}`, { headers: { 'accept-encoding': 'gzip' } })
      const theirs = await request(port, `/ss/${name}`, { headers: { 'accept-encoding': 'gzip' } })
      t.is(ours.headers['content-encoding'], theirs.headers['content-encoding'], `${name} #${i}`)
      const body = ours.headers['content-encoding'] === 'gzip' ? gunzipSync(ours.body) : ours.body
      t.true(body.equals(name === 'big.txt' ? text : text.subarray(0, 4_000)), `${name} #${i}: the body is the file`)
    }
  }
})

test.serial('serveStatic answers again as serve-static: GET, repeat, HEAD, query, earlier headers, status, mounts', async (t) => {
  const dir = scratch(t)
  writeFileSync(join(dir, 'a.txt'), 'alpha\n')
  writeFileSync(join(dir, 'b.js'), patternBytes(40_000))
  writeFileSync(join(dir, 'page.html'), '<p>page</p>\n')
  writeFileSync(join(dir, '.secret'), 'dot\n')
  mkdirSync(join(dir, 'sub'))
  writeFileSync(join(dir, 'sub', 'index.html'), '<p>index</p>\n')
  const make = (mw: typeof serveStatic | typeof express.static) => {
    const app = express()
    app.use((req, res, next) => {
      if (req.query.cc) res.setHeader('Cache-Control', 'no-store')
      if (req.query.ct) res.setHeader('Content-Type', 'text/x-custom')
      if (req.query.status) res.status(Number(req.query.status))
      if (req.query.etag) res.setHeader('ETag', '"mine"')
      next()
    })
    app.use('/m', (mw as typeof serveStatic)(dir, { extensions: ['html'], maxAge: '1h' }))
    app.use((mw as typeof serveStatic)(dir, { dotfiles: 'allow', etag: false, lastModified: false, acceptRanges: false }))
    return app
  }
  const a = await listen(make(serveStatic))
  const b = await listen(make(express.static))
  t.teardown(() => Promise.all([close(a.server), close(b.server)]))
  const paths = [
    '/a.txt',
    '/a.txt',
    '/a.txt?x=1',
    '/a.txt?cc=1',
    '/a.txt?ct=1',
    '/a.txt?status=201',
    '/a.txt?status=404',
    '/a.txt?etag=1',
    '/b.js',
    '/b.js',
    '/b.js?cc=1',
    '/m/a.txt',
    '/m/a.txt',
    '/m/page',
    '/m/page',
    '/m/page?ct=1',
    '/.secret',
    '/.secret',
    '/m/.secret',
    '/sub/',
    '/sub/',
    '/m/sub/',
    '/m/sub/',
    '/m/sub',
    '/sub',
    '/A.TXT',
    '/m/b.js',
    '/m/b.js?status=500',
  ]
  for (const method of ['GET', 'HEAD', 'GET']) {
    for (const path of paths) {
      const ours = comparable(await request(a.port, path, { method }))
      const theirs = comparable(await request(b.port, path, { method }))
      t.deepEqual(ours, theirs, `${method} ${path}`)
    }
  }
})

test.serial('pipelined keep-alive requests over one raw socket get their files in order, byte for byte', async (t) => {
  const dir = scratch(t)
  const sizes = [100, 20_000, 300_000, 5, 70_000]
  sizes.forEach((n, i) => writeFileSync(join(dir, `f${i}`), patternBytes(n + i)))
  const { server, port } = await listen((req, res) => {
    respondWithFile(res, join(dir, req.url!.slice(1))).catch(() => res.destroy())
  })
  t.teardown(() => close(server))
  const order = [0, 1, 2, 3, 4, 2, 1, 0, 4, 4, 2]
  const sock = net.connect(port, '127.0.0.1')
  const raw: Buffer[] = []
  sock.on('data', (c: Buffer) => raw.push(c))
  sock.write(order.map((i) => `GET /f${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''))
  // A slow reader: pause, so the server's socket fills up, then read.
  sock.pause()
  await new Promise((r) => setTimeout(r, 200))
  sock.resume()
  const expectedLength = order.reduce((n, i) => n + sizes[i] + i, 0)
  await deadline(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (Buffer.concat(raw).length >= expectedLength) resolve()
        else setTimeout(check, 20)
      }
      check()
    }),
    10_000,
    'all pipelined responses',
  )
  await new Promise((r) => setTimeout(r, 100))
  sock.destroy()
  let all = Buffer.concat(raw)
  for (const i of order) {
    const end = all.indexOf('\r\n\r\n')
    t.true(end > 0, `a header block for f${i}`)
    const head = all.subarray(0, end).toString('latin1')
    t.regex(head, /^HTTP\/1\.1 200 OK\r\n/)
    const m = /content-length: (\d+)/i.exec(head)
    t.is(Number(m?.[1]), sizes[i] + i, head)
    const body = all.subarray(end + 4, end + 4 + sizes[i] + i)
    t.true(body.equals(patternBytes(sizes[i] + i)), `f${i}: the body is the file`)
    all = all.subarray(end + 4 + sizes[i] + i)
  }
  t.is(all.length, 0, 'nothing after the last response')
})

/** Sends `requests` on one raw connection and returns what came back once `until` says so. */
async function rawExchange(port: number, requests: string, until: (all: Buffer) => boolean, what: string): Promise<Buffer> {
  const sock = net.connect(port, '127.0.0.1')
  const raw: Buffer[] = []
  sock.on('data', (c: Buffer) => raw.push(c))
  sock.on('error', () => {})
  sock.write(requests)
  try {
    await deadline(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if (until(Buffer.concat(raw)) || sock.destroyed) resolve()
          else setTimeout(check, 10)
        }
        check()
      }),
      10_000,
      what,
    )
    await new Promise((r) => setTimeout(r, 100))
  } finally {
    sock.destroy()
  }
  return Buffer.concat(raw)
}

test.serial('a response corked by the application still completes (no hang)', async (t) => {
  const dir = scratch(t)
  const data = patternBytes(200_000)
  writeFileSync(join(dir, 'c.bin'), data)
  const { server, port } = await listen((_req, res) => {
    res.cork()
    respondWithFile(res, join(dir, 'c.bin')).catch(() => res.destroy())
  })
  t.teardown(() => close(server))
  const got = await request(port, '/')
  t.is(got.status, 200)
  t.true(got.body.equals(data))
})

for (const preset of [204, 304]) {
  test.serial(`status ${preset} set before: the next response on the connection is intact (small and large files)`, async (t) => {
    const dir = scratch(t)
    writeFileSync(join(dir, 'small'), patternBytes(1_000))
    writeFileSync(join(dir, 'large'), patternBytes(100_000))
    writeFileSync(join(dir, 'next'), 'NEXT-BODY')
    const { server, port } = await listen((req, res) => {
      if (req.url !== '/next') res.statusCode = preset
      respondWithFile(res, join(dir, req.url!.slice(1))).catch(() => res.destroy())
    })
    t.teardown(() => close(server))
    for (const name of ['small', 'large']) {
      const all = await rawExchange(
        port,
        `GET /${name} HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n`,
        (b) => b.includes('NEXT-BODY'),
        `${preset} then next (${name})`,
      )
      const first = all.indexOf('\r\n\r\n')
      t.regex(all.subarray(0, first).toString('latin1'), new RegExp(`^HTTP/1\\.1 ${preset} `), name)
      const rest = all.subarray(first + 4)
      t.true(rest.subarray(0, 9).toString('latin1') === 'HTTP/1.1 ', `${name}: the next response starts right after the ${preset} head, not after body bytes`)
    }
  })
}

test.serial('a header block larger than the socket buffer, to a client that reads late: head and body whole', async (t) => {
  const dir = scratch(t)
  const data = patternBytes(300_000)
  writeFileSync(join(dir, 'h.bin'), data)
  const big = 'v'.repeat(4 * 1024 * 1024)
  const { server, port } = await listen((_req, res) => {
    res.setHeader('X-Big', big)
    respondWithFile(res, join(dir, 'h.bin')).catch(() => res.destroy())
  })
  t.teardown(() => close(server))
  const sock = net.connect(port, '127.0.0.1')
  const raw: Buffer[] = []
  let n = 0
  sock.on('data', (c: Buffer) => {
    raw.push(c)
    n += c.length
  })
  sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  sock.pause()
  await new Promise((r) => setTimeout(r, 300))
  sock.resume()
  await deadline(
    new Promise<void>((resolve) => {
      const check = (): void => (n >= big.length + data.length ? resolve() : void setTimeout(check, 20))
      check()
    }),
    10_000,
    'a big head and its body',
  )
  await new Promise((r) => setTimeout(r, 100))
  sock.destroy()
  const all = Buffer.concat(raw)
  const end = all.indexOf('\r\n\r\n')
  t.true(
    all.subarray(0, end).toString('latin1').includes(`x-big: ${big}`.slice(0, 100)) ||
      all.subarray(0, end).toString('latin1').includes(`X-Big: ${big}`.slice(0, 100)),
  )
  t.is(all.length - end - 4, data.length)
  t.true(all.subarray(end + 4).equals(data))
})

test.serial('after freshMs, serveStatic answers as serve-static: a file turned directory, a symlink retargeted, a name shadowing an extension', async (t) => {
  const dir = scratch(t)
  configureFileCache({ freshMs: 100 })
  const { symlinkSync, unlinkSync } = await import('node:fs')
  writeFileSync(join(dir, 'x'), 'file x\n')
  writeFileSync(join(dir, 't1'), 'target one\n')
  writeFileSync(join(dir, 't2'), 'target two, longer\n')
  symlinkSync(join(dir, 't1'), join(dir, 'link'))
  writeFileSync(join(dir, 'page.html'), '<p>html</p>\n')
  const make = (mw: typeof serveStatic) => {
    const app = express()
    app.use(mw(dir, { extensions: ['html'] }))
    return app
  }
  const a = await listen(make(serveStatic))
  const b = await listen(make(express.static as unknown as typeof serveStatic))
  t.teardown(() => Promise.all([close(a.server), close(b.server)]))
  const paths = ['/x', '/link', '/page']
  const same = async (when: string): Promise<void> => {
    for (const path of paths) {
      const ours = comparable(await request(a.port, path))
      const theirs = comparable(await request(b.port, path))
      t.deepEqual(ours, theirs, `${when} ${path}`)
    }
  }
  await same('before')
  await same('again (known)')
  unlinkSync(join(dir, 'x'))
  mkdirSync(join(dir, 'x'))
  unlinkSync(join(dir, 'link'))
  symlinkSync(join(dir, 't2'), join(dir, 'link'))
  writeFileSync(join(dir, 'page'), 'no extension\n')
  await new Promise((r) => setTimeout(r, 250))
  await same('after freshMs')
})

test.serial('res.strictContentLength: a body sent past node:http is not a content-length mismatch', async (t) => {
  const dir = scratch(t)
  const data = patternBytes(100_000)
  writeFileSync(join(dir, 's.bin'), data)
  const results: string[] = []
  const { server, port } = await listen((_req, res) => {
    res.strictContentLength = true
    respondWithFile(res, join(dir, 's.bin')).then(
      () => results.push('ok'),
      (e: NodeJS.ErrnoException) => {
        results.push(String(e.code))
        res.destroy()
      },
    )
  })
  t.teardown(() => close(server))
  for (let i = 0; i < 2; i++) {
    const got = await request(port, '/')
    t.true(got.body.equals(data))
  }
  await new Promise((r) => setTimeout(r, 50))
  t.deepEqual(results, ['ok', 'ok'])
})

test.serial('an HTTP/2 server that closes closes the descriptors its responses cached', async (t) => {
  const dir = scratch(t)
  const data = patternBytes(50_000)
  writeFileSync(join(dir, 'h2.bin'), data)
  configureFileCache({ freshMs: 60_000 })
  const http2 = await import('node:http2')
  const server = http2.createServer((_req, res) => {
    respondWithFile(res, join(dir, 'h2.bin')).catch(() => res.stream.close())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  client.on('error', () => {})
  const body = await deadline(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const req = client.request({ ':path': '/' })
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => resolve(Buffer.concat(chunks)))
      req.on('error', reject)
      req.end()
    }),
    10_000,
    'h2 GET',
  )
  t.true(body.equals(data))
  t.true(fdsUnder(dir) > 0, 'cached while the server runs')
  client.close()
  await deadline(new Promise<void>((resolve) => server.close(() => resolve())), 5_000, 'h2 server.close')
  await new Promise((r) => setTimeout(r, 50))
  t.is(fdsUnder(dir), 0, 'closed with the server')
})

/** Splits what came back for `methods` (in order) into responses: status line and headers (lower-cased, volatile ones out) and body. */
function splitResponses(all: Buffer, methods: string[]): { head: string; body: string }[] {
  const out: { head: string; body: string }[] = []
  let rest = all
  for (const method of methods) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) break
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n')
    const status = lines[0]
    const headers = lines
      .slice(1)
      .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])
      .filter(([k]) => !VOLATILE.has(k))
      .sort(([a], [b]) => (a < b ? -1 : 1))
    const cl = Number(headers.find(([k]) => k === 'content-length')?.[1] ?? 0)
    const code = Number(status.split(' ')[1])
    const bodyLength = method === 'HEAD' || code === 304 || code === 204 ? 0 : cl
    out.push({ head: [status, ...headers.map(([k, v]) => `${k}: ${v}`)].join('\n'), body: rest.subarray(end + 4, end + 4 + bodyLength).toString('base64') })
    rest = rest.subarray(end + 4 + bodyLength)
  }
  return out
}

test.serial(`seeded pipelined sessions: serveStatic and express.static send the same bytes (seed ${SEED})`, async (t) => {
  const dir = scratch(t)
  const sizes = [0, 10, 16_384, 16_385, 70_000, 1_000_000]
  sizes.forEach((n, i) => writeFileSync(join(dir, `f${i}.bin`), patternBytes(n, i + 3)))
  writeFileSync(join(dir, 'page.html'), '<p>x</p>\n'.repeat(3000))
  const make = (mw: typeof serveStatic) => {
    const app = express()
    app.set('env', 'production') // error pages without a stack trace (it differs between the two)
    app.use(mw(dir, { maxAge: 1000 }))
    return app
  }
  const a = await listen(make(serveStatic))
  const b = await listen(make(express.static as unknown as typeof serveStatic))
  t.teardown(() => Promise.all([close(a.server), close(b.server)]))
  const random = rng(SEED)
  const names = [...sizes.map((_, i) => `/f${i}.bin`), '/page.html', '/missing', '/f1.bin?q=1']
  // Learn the validators once (the same file, the same ETag on both).
  const etagOf = new Map<string, string>()
  for (const name of names) etagOf.set(name, String((await request(a.port, name)).headers.etag ?? ''))
  for (let session = 0; session < 12; session++) {
    const methods: string[] = []
    let requests = ''
    const count = 2 + Math.floor(random() * 8)
    for (let i = 0; i < count; i++) {
      const name = names[Math.floor(random() * names.length)]
      const method = random() < 0.2 ? 'HEAD' : 'GET'
      let extra = ''
      const r = random()
      if (r < 0.15) extra = `Range: bytes=${Math.floor(random() * 20)}-${Math.floor(random() * 30_000)}\r\n`
      else if (r < 0.25) extra = `If-None-Match: ${etagOf.get(name)}\r\n`
      else if (r < 0.3) extra = 'If-Modified-Since: Thu, 01 Jan 2099 00:00:00 GMT\r\n'
      methods.push(method)
      requests += `${method} ${name} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`
    }
    const done = (all: Buffer): boolean => splitResponses(all, methods).length === methods.length
    const ours = splitResponses(await rawExchange(a.port, requests, done, `ours, session ${session}`), methods)
    const theirs = splitResponses(await rawExchange(b.port, requests, done, `serve-static, session ${session}`), methods)
    t.is(ours.length, methods.length, `session ${session}: every response`)
    t.deepEqual(ours, theirs, `session ${session}:\n${requests}`)
  }
})

test.serial('a server whose only file response was pipelined behind a slow one still closes the cache', async (t) => {
  const dir = scratch(t)
  writeFileSync(join(dir, 'p.bin'), 'PIPELINED-FILE')
  configureFileCache({ freshMs: 60_000 })
  const { server, port } = await listen((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('SLOW'), 100)
    else respondWithFile(res, join(dir, 'p.bin')).catch(() => res.destroy())
  })
  const all = await rawExchange(
    port,
    'GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /p HTTP/1.1\r\nHost: x\r\n\r\n',
    (b) => b.includes('PIPELINED-FILE'),
    'slow then file',
  )
  t.true(all.includes('PIPELINED-FILE'))
  await close(server)
  await new Promise((r) => setTimeout(r, 50))
  t.is(fdsUnder(dir), 0, 'closed with the server')
})
