/**
 * `respondWithFile` under node:http, Express and Fastify, with real clients (Node's http
 * client, curl, raw pipelined requests): bytes, statuses, headers and keep-alive checked.
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import express from 'express'
import Fastify from 'fastify'
import test from 'ava'

import { respondWithFile, type RespondWithFileResult } from '../index'
import { LOOPBACK_BODY } from '../src/cached-answer'
import { patternBytes, sha256, zcSerial } from './helpers'

const run = promisify(execFile)
const SIZES = [0, 1, 4096, 65_536 + 3, 1 << 20, 5 * (1 << 20) + 11]

interface Site {
  dir: string
  files: Map<string, Buffer>
  cleanup(): Promise<void>
}

async function site(): Promise<Site> {
  const dir = await mkdtemp(join(tmpdir(), 'zc-http-'))
  const files = new Map<string, Buffer>()
  for (const [i, size] of SIZES.entries()) {
    const bytes = patternBytes(size, i + 1)
    files.set(`f${size}.bin`, bytes)
    await writeFile(join(dir, `f${size}.bin`), bytes)
  }
  return { dir, files, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

async function listen(server: http.Server | https.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as net.AddressInfo).port
}

/** A node:http server answering `/name` with `respondWithFile`, recording each result. */
async function fileServer(s: Site, results: RespondWithFileResult[] = []): Promise<{ port: number; server: http.Server; connections: () => number }> {
  let connections = 0
  const handler: Handler = (req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1))
    respondWithFile(res, join(s.dir, name), { 'content-type': 'application/octet-stream' }, { range: req.headers.range }).then(
      (r) => results.push(r),
      (e: NodeJS.ErrnoException) => {
        if (!res.headersSent) {
          res.statusCode = e.code === 'ENOENT' ? 404 : 500
          res.end(e.code)
        }
      },
    )
  }
  const server = http.createServer(handler)
  server.on('connection', () => connections++)
  return { port: await listen(server), server, connections: () => connections }
}

/** GET (or another method) with Node's client; the whole body. */
function get(
  agent: http.Agent,
  port: number,
  path: string,
  headers: http.OutgoingHttpHeaders = {},
  method = 'GET',
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent, headers, method }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(20_000, () => req.destroy(new Error(`${path}: no answer in 20 s`)))
    req.end()
  })
}

zcSerial('keep-alive: 60 responses of every size on one connection, byte-exact, through the engine', async (t) => {
  const s = await site()
  const results: RespondWithFileResult[] = []
  const { port, server, connections } = await fileServer(s, results)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(async () => (agent.destroy(), server.close(), await s.cleanup()))
  for (let i = 0; i < 60; i++) {
    const size = SIZES[i % SIZES.length]
    const r = await get(agent, port, `/f${size}.bin`)
    t.is(r.status, 200)
    t.is(r.headers['content-length'], String(size))
    t.is(r.headers['content-type'], 'application/octet-stream')
    t.true(r.body.equals(s.files.get(`f${size}.bin`)!), `response ${i} (${size} bytes) differs`)
  }
  t.is(connections(), 1, 'one connection served them all')
  // The last promise settles just after its response (the file is closed after the body).
  for (const until = Date.now() + 5000; results.length < 60 && Date.now() < until;) await new Promise((r) => setTimeout(r, 5))
  t.is(results.length, 60)
  // Bodies up to 16 KiB go with the headers through node:http (src/http.ts, bufferedBody); up
  // to 64 KiB as well once the file cache keeps their bytes (files settled for a second, which a
  // slow run reaches), and up to 1 MiB for this loopback peer; the rest zero-copy.
  const small = (r: RespondWithFileResult): boolean => !r.zeroCopy && (r.fallbackReason ?? '').startsWith('small body')
  const kept = (r: RespondWithFileResult): boolean => !r.zeroCopy && r.fallbackReason === LOOPBACK_BODY
  const zeroCopy = (r: RespondWithFileResult): boolean => r.zeroCopy && r.fallbackReason === null
  for (const r of results) {
    if (r.bytes > 0 && r.bytes <= 16 * 1024) t.true(small(r), JSON.stringify(r))
    else if (r.bytes > 0 && r.bytes <= 64 * 1024) t.true(small(r) || zeroCopy(r), JSON.stringify(r))
    else if (r.bytes <= 1 << 20) t.true(kept(r) || zeroCopy(r), JSON.stringify(r))
    else t.true(zeroCopy(r), JSON.stringify(r))
  }
})

zcSerial('pipelining: 12 requests written at once are answered in order, byte-exact', async (t) => {
  const s = await site()
  const { port, server } = await fileServer(s)
  t.teardown(async () => (server.close(), await s.cleanup()))
  const names = Array.from({ length: 12 }, (_, i) => `f${SIZES[(i * 5) % SIZES.length]}.bin`)
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(names.map((n) => `GET /${n} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''))
  const chunks: Buffer[] = []
  let bytes = 0
  const expectedBytes = names.reduce((n, name) => n + s.files.get(name)!.length, 0)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('pipelined responses stalled')), 30_000)
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      bytes += c.length
      if (bytes >= expectedBytes + names.length * 100) {
        // Parse once enough arrived: each response's head, then exactly Content-Length bytes.
        const all = Buffer.concat(chunks)
        let at = 0
        let ok = 0
        for (const name of names) {
          const end = all.indexOf('\r\n\r\n', at)
          if (end < 0) return
          const head = all.subarray(at, end).toString()
          const length = Number(/content-length: (\d+)/i.exec(head)?.[1])
          if (all.length < end + 4 + length) return
          t.true(all.subarray(end + 4, end + 4 + length).equals(s.files.get(name)!), `${name} differs`)
          at = end + 4 + length
          ok++
        }
        if (ok === names.length) {
          clearTimeout(timer)
          t.is(at, all.length, 'nothing after the last response')
          resolve()
        }
      }
    })
  })
  socket.destroy()
})

zcSerial('curl: several URLs on one connection, ranges, HEAD', async (t) => {
  const s = await site()
  const { port, server, connections } = await fileServer(s)
  t.teardown(async () => (server.close(), await s.cleanup()))
  const base = `http://127.0.0.1:${port}`
  const out = join(s.dir, 'out')
  const names = ['f4096.bin', 'f5242891.bin', 'f1.bin', 'f65539.bin']
  const args = names.flatMap((n, i) => [`${base}/${n}`, '-o', `${out}${i}`])
  await run('curl', ['-sS', '--fail', ...args])
  for (const [i, n] of names.entries()) {
    const got = await open(`${out}${i}`).then(async (h) => {
      const b = await h.readFile()
      await h.close()
      return b
    })
    t.is(sha256(got), sha256(s.files.get(n)!), `${n} via curl`)
  }
  t.is(connections(), 1, 'curl reused its connection for every URL')
  const { stdout: ranged } = await run('curl', ['-sS', '-r', '100-199', `${base}/f65539.bin`], { encoding: 'buffer' })
  t.true(ranged.equals(s.files.get('f65539.bin')!.subarray(100, 200)))
  const { stdout: head } = await run('curl', ['-sS', '-I', `${base}/f1048576.bin`])
  t.regex(head, /^HTTP\/1\.1 200/)
  t.regex(head, /content-length: 1048576/i)
})

zcSerial('ranges: 206 with Content-Range, 416 when unsatisfiable, multiple ranges answer 200', async (t) => {
  const s = await site()
  const { port, server } = await fileServer(s)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(async () => (agent.destroy(), server.close(), await s.cleanup()))
  const file = s.files.get('f1048576.bin')!
  const a = await get(agent, port, '/f1048576.bin', { range: 'bytes=1000-70999' })
  t.is(a.status, 206)
  t.is(a.headers['content-range'], `bytes 1000-70999/${file.length}`)
  t.true(a.body.equals(file.subarray(1000, 71000)))
  const b = await get(agent, port, '/f1048576.bin', { range: 'bytes=-10' })
  t.is(b.status, 206)
  t.true(b.body.equals(file.subarray(file.length - 10)))
  const c = await get(agent, port, '/f1048576.bin', { range: 'bytes=2000000-' })
  t.is(c.status, 416)
  t.is(c.headers['content-range'], `bytes */${file.length}`)
  t.is(c.body.length, 0)
  const d = await get(agent, port, '/f1048576.bin', { range: 'bytes=0-9,500-509' })
  t.is(d.status, 200)
  t.true(d.body.equals(file))
  const e = await get(agent, port, '/f1048576.bin', { range: 'lines=1-2' })
  t.is(e.status, 200)
  const h = await get(agent, port, '/f5242891.bin', {}, 'HEAD')
  t.is(h.status, 200)
  t.is(h.headers['content-length'], String(5 * (1 << 20) + 11))
  t.is(h.body.length, 0)
  // The connection is still good after all of that.
  const after = await get(agent, port, '/f4096.bin')
  t.true(after.body.equals(s.files.get('f4096.bin')!))
})

test('a missing file, a directory or a range past the end reject before anything is sent; headers already sent reject ERR_HTTP_HEADERS_SENT', async (t) => {
  const s = await site()
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    if (req.url === '/sent') {
      res.writeHead(200)
      res.write('x')
      respondWithFile(res, join(s.dir, 'f1.bin')).catch((e: NodeJS.ErrnoException) => {
        seen.push(e.code!)
        res.end()
      })
      return
    }
    const target = req.url === '/dir' ? s.dir : join(s.dir, 'missing.bin')
    const options = req.url === '/past' ? { offset: 10 } : {}
    respondWithFile(res, req.url === '/past' ? join(s.dir, 'f1.bin') : target, {}, options).catch((e: NodeJS.ErrnoException) => {
      seen.push(e.code!)
      t.false(res.headersSent, 'res untouched')
      res.statusCode = 404
      res.end('not here')
    })
  })
  const port = await listen(server)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(async () => (agent.destroy(), server.close(), await s.cleanup()))
  const r = await get(agent, port, '/missing')
  t.is(r.status, 404)
  t.is(r.body.toString(), 'not here')
  await get(agent, port, '/sent')
  t.is((await get(agent, port, '/dir')).status, 404, 'a directory: res untouched')
  t.is((await get(agent, port, '/past')).status, 404, 'an offset past the end: res untouched')
  t.deepEqual(seen, ['ENOENT', 'ERR_HTTP_HEADERS_SENT', 'EISDIR', 'ERR_OUT_OF_RANGE'])
  t.throws(() => respondWithFile({} as http.ServerResponse, 'x'), { code: 'ERR_INVALID_ARG_TYPE' })
})

zcSerial('statCheck adds headers or cancels; a client that disconnects mid-body rejects and the server goes on', async (t) => {
  const s = await site()
  const big = join(s.dir, 'big.bin')
  await writeFile(big, patternBytes(64 << 20, 77))
  const errors: string[] = []
  const server = http.createServer((req, res) => {
    if (req.url === '/cancel') {
      respondWithFile(res, big, {}, { statCheck: () => false }).then((r) => {
        t.is(r.status, 0)
        res.statusCode = 304
        res.end()
      })
    } else if (req.url === '/big') {
      respondWithFile(res, big).catch((e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message))
    } else {
      respondWithFile(res, join(s.dir, 'f4096.bin'), {}, { statCheck: (stats, headers) => void (headers['last-modified'] = stats.mtime.toUTCString()) })
    }
  })
  const port = await listen(server)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(async () => (agent.destroy(), server.close(), await s.cleanup()))
  const c = await get(agent, port, '/cancel')
  t.is(c.status, 304)
  const m = await get(agent, port, '/small')
  t.truthy(m.headers['last-modified'])
  t.true(m.body.equals(s.files.get('f4096.bin')!))
  // A client that reads a little of a 64 MiB body and goes away.
  await new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/big' }, (res) => {
      res.once('data', () => {
        req.destroy()
        resolve()
      })
    })
    req.on('error', () => {})
  })
  const until = Date.now() + 10_000
  while (errors.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
  t.is(errors.length, 1, 'the response promise rejected')
  t.true(['ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED'].includes(errors[0]), errors[0])
  const again = await get(new http.Agent(), port, '/small')
  t.true(again.body.equals(s.files.get('f4096.bin')!), 'the server still serves')
})

zcSerial('server.keepAliveTimeout does not cut a long body, and still closes an idle connection', async (t) => {
  const s = await site()
  const big = join(s.dir, 'big.bin')
  const bytes = patternBytes(64 << 20, 3)
  await writeFile(big, bytes)
  const outcomes: string[] = []
  const server = http.createServer((_req, res) => {
    respondWithFile(res, big).then(
      () => outcomes.push('ok'),
      (e: NodeJS.ErrnoException) => outcomes.push(e.code ?? e.message),
    )
  })
  // Not much shorter: on a loaded machine a starved event loop fires any timeout late and at once.
  server.keepAliveTimeout = 1500
  server.timeout = 1500
  const port = await listen(server)
  t.teardown(async () => (server.close(), await s.cleanup()))
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  let got = 0
  const started = Date.now()
  socket.on('data', (c: Buffer) => {
    got += c.length
    socket.pause()
    setTimeout(() => socket.resume(), 8) // slow, steady reader
  })
  await once(socket, 'close')
  const took = Date.now() - started
  t.true(got > bytes.length, `the whole body arrived (${got} bytes in ${took} ms) before the idle close`)
  t.true(took > 3000, `the body outlasted two timeouts (${took} ms)`)
  t.deepEqual(outcomes, ['ok'])
})

test('TLS: the body is streamed through the response, byte-exact, and the result says why', async (t) => {
  const s = await site()
  const key = join(s.dir, 'key.pem')
  const cert = join(s.dir, 'cert.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'])
  const { readFile } = await import('node:fs/promises')
  const results: RespondWithFileResult[] = []
  const server = https.createServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    void respondWithFile(res, join(s.dir, req.url!.slice(1))).then((r) => results.push(r))
  })
  const port = await listen(server)
  t.teardown(async () => (server.close(), await s.cleanup()))
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false })
  for (const name of ['f5242891.bin', 'f4096.bin']) {
    const body = await new Promise<Buffer>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: `/${name}`, agent }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks)))
        })
        .on('error', reject)
    })
    t.true(body.equals(s.files.get(name)!), name)
  }
  agent.destroy()
  for (const until = Date.now() + 5000; results.length < 2 && Date.now() < until;) await new Promise((r) => setTimeout(r, 5))
  t.is(results.length, 2)
  t.false(results[0].zeroCopy)
  t.regex(results[0].fallbackReason ?? '', /TLS/)
})

zcSerial('Express and Fastify (reply.hijack + reply.raw): keep-alive responses byte-exact', async (t) => {
  const s = await site()
  const app = express()
  app.get('/:name', (req, res, next) => {
    respondWithFile(res, join(s.dir, req.params.name)).catch(next)
  })
  const expressServer = http.createServer(app)
  const expressPort = await listen(expressServer)
  const fastify = Fastify()
  fastify.get('/:name', async (req, reply) => {
    reply.hijack()
    await respondWithFile(reply.raw, join(s.dir, (req.params as { name: string }).name))
  })
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const fastifyPort = (fastify.server.address() as net.AddressInfo).port
  t.teardown(async () => (expressServer.close(), await fastify.close(), await s.cleanup()))
  for (const port of [expressPort, fastifyPort]) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    for (let i = 0; i < 12; i++) {
      const name = `f${SIZES[i % SIZES.length]}.bin`
      const r = await get(agent, port, `/${name}`)
      t.is(r.status, 200)
      t.true(r.body.equals(s.files.get(name)!), `${port === expressPort ? 'express' : 'fastify'} ${name}`)
    }
    agent.destroy()
  }
})
