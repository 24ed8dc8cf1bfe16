/**
 * `respondWithFile` under seeded random load: 1,000 keep-alive requests of random files and
 * ranges through Node's client and through curl, clients that reset mid-body at random points
 * (no descriptor left behind), and the fallback with io_uring switched off.
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'

import { clearFileCache, respondWithFile } from '../index'
import { patternBytes, rng, runChild, SEED, sha256, zcSerial } from './helpers'

const run = promisify(execFile)

interface Corpus {
  dir: string
  files: Buffer[]
}

/** 24 files of sizes from 0 B to 8 MiB, log-spread (most small, some large). */
async function corpus(random: () => number): Promise<Corpus> {
  const dir = await mkdtemp(join(tmpdir(), 'zc-http-random-'))
  const files: Buffer[] = []
  for (let i = 0; i < 24; i++) {
    const size = i === 0 ? 0 : i === 23 ? 8 << 20 : Math.floor(2 ** (random() * 23))
    const bytes = patternBytes(size, i + 7)
    files.push(bytes)
    await writeFile(join(dir, `${i}`), bytes)
  }
  return { dir, files }
}

/** A random request: a file, and sometimes a satisfiable range of it. */
function pick(random: () => number, c: Corpus): { index: number; range?: [number, number] } {
  const index = Math.floor(random() * c.files.length)
  const size = c.files[index].length
  if (size === 0 || random() < 0.5) return { index }
  const start = Math.floor(random() * size)
  const end = Math.min(size - 1, start + Math.floor(random() * 3 * (1 << 20)))
  return { index, range: [start, end] }
}

async function server(c: Corpus): Promise<{ port: number; close: () => void; connections: () => number; errors: string[] }> {
  let connections = 0
  const errors: string[] = []
  const s = http.createServer((req, res) => {
    respondWithFile(res, join(c.dir, req.url!.slice(1)), {}, { range: req.headers.range }).catch((e: NodeJS.ErrnoException) =>
      errors.push(`${req.url}: ${e.code ?? e.message}`),
    )
  })
  s.on('connection', () => connections++)
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  return { port: (s.address() as net.AddressInfo).port, close: () => s.close(), connections: () => connections, errors }
}

zcSerial(`1,000 keep-alive requests of random files and ranges through http.Agent, one connection, every body hash-checked (seed ${SEED})`, async (t) => {
  const random = rng(SEED)
  const c = await corpus(random)
  const { port, close, connections, errors } = await server(c)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(async () => (agent.destroy(), close(), await rm(c.dir, { recursive: true, force: true })))
  for (let i = 0; i < 1000; i++) {
    const { index, range } = pick(random, c)
    const expected = range ? c.files[index].subarray(range[0], range[1] + 1) : c.files[index]
    const r = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: `/${index}`, agent, headers: range ? { range: `bytes=${range[0]}-${range[1]}` } : {} }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (b: Buffer) => chunks.push(b)).on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }))
      })
      req.setTimeout(20_000, () => req.destroy(new Error(`request ${i} stalled (seed ${SEED})`)))
      req.on('error', reject)
    })
    if (r.status !== (range ? 206 : 200) || sha256(r.body) !== sha256(expected)) {
      t.fail(`request ${i}: /${index} ${range ?? ''} gave ${r.status}, ${r.body.length} bytes (expected ${expected.length}); seed ${SEED}`)
      return
    }
  }
  t.is(connections(), 1, 'one connection throughout')
  t.deepEqual(errors, [], 'every response promise resolved')
})

zcSerial(`1,000 random requests through one curl process on one connection (seed ${SEED})`, async (t) => {
  const random = rng(SEED + 1)
  const c = await corpus(random)
  const { port, close, connections, errors } = await server(c)
  t.teardown(async () => (close(), await rm(c.dir, { recursive: true, force: true })))
  const out = await mkdtemp(join(tmpdir(), 'zc-curl-'))
  t.teardown(() => rm(out, { recursive: true, force: true }))
  const asked = Array.from({ length: 1000 }, () => pick(random, c))
  const config = asked
    .map(({ index, range }, i) =>
      [`url = "http://127.0.0.1:${port}/${index}"`, `output = "${join(out, String(i))}"`, range ? `range = "${range[0]}-${range[1]}"` : ''].join('\n'),
    )
    .join('\nnext\n')
  await writeFile(join(out, 'config'), config)
  await run('curl', ['-sS', '--fail', '--config', join(out, 'config')], { maxBuffer: 1 << 20 })
  for (const [i, { index, range }] of asked.entries()) {
    const expected = range ? c.files[index].subarray(range[0], range[1] + 1) : c.files[index]
    const got = await readFile(join(out, String(i)))
    if (sha256(got) !== sha256(expected)) {
      t.fail(`curl request ${i}: /${index} ${range ?? ''}: ${got.length} bytes, expected ${expected.length}; seed ${SEED}`)
      return
    }
  }
  t.is(connections(), 1, 'curl kept one connection for all 1,000')
  await new Promise((r) => setTimeout(r, 100)) // the last response's promise, after curl hung up
  t.deepEqual(errors, [], 'every response promise resolved, even the last one curl closed right after')
})

zcSerial(`clients that reset mid-body at random points: every promise settles, no descriptor is left, the server goes on (seed ${SEED})`, async (t) => {
  const random = rng(SEED + 2)
  const dir = await mkdtemp(join(tmpdir(), 'zc-http-reset-'))
  const big = patternBytes(24 << 20, 5)
  await writeFile(join(dir, 'big'), big)
  const outcomes: string[] = []
  const s = http.createServer((_req, res) => {
    respondWithFile(res, join(dir, 'big')).then(
      () => outcomes.push('ok'),
      (e: NodeJS.ErrnoException) => outcomes.push(e.code ?? 'error'),
    )
  })
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as net.AddressInfo).port
  t.teardown(async () => (s.close(), await rm(dir, { recursive: true, force: true })))
  // Cached descriptors are not leaks: closed first (one still in use by a response stays open and counts).
  const fds = async (): Promise<number> => (clearFileCache(), (await readdir('/proc/self/fd')).length)
  // One warm-up, so the engine and its descriptors exist before the baseline.
  await fetchAll(port)
  await new Promise((r) => setTimeout(r, 100))
  const before = await fds()
  const rounds = 30
  for (let i = 0; i < rounds; i++) {
    const cut = Math.floor(random() * big.length)
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n')
    let got = 0
    await new Promise<void>((resolve) => {
      socket.on('data', (b: Buffer) => {
        got += b.length
        if (got >= cut) {
          socket.resetAndDestroy()
          resolve()
        }
      })
      socket.on('close', () => resolve())
    })
  }
  const until = Date.now() + 20_000
  while (outcomes.length < rounds + 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
  t.is(outcomes.length, rounds + 1, 'every response promise settled')
  t.true(
    outcomes.slice(1).every((o) => ['ok', 'ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED'].includes(o)),
    outcomes.join(','),
  )
  t.true(
    outcomes.slice(1).some((o) => o !== 'ok'),
    'some resets landed mid-body',
  )
  const body = await fetchAll(port)
  t.is(sha256(body), sha256(big), 'the server still serves, byte-exact')
  await new Promise((r) => setTimeout(r, 200))
  t.is(await fds(), before, 'no descriptor left behind')
})

function fetchAll(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (b: Buffer) => chunks.push(b)).on('end', () => resolve(Buffer.concat(chunks)))
      })
      .on('error', reject)
  })
}

test('io_uring switched off (ZEROCOPY_SOCKET_DISABLE=1): responses are byte-exact, keep-alive goes on, the result says why', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'zc-http-fallback-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const files = [patternBytes(5 << 20, 1), patternBytes(4096, 2), patternBytes(1 << 20, 3)]
  for (const [i, f] of files.entries()) await writeFile(join(dir, String(i)), f)
  const script = `
    const http = require('node:http')
    const crypto = require('node:crypto')
    const results = []
    const server = http.createServer((req, res) => {
      zc.respondWithFile(res, ${JSON.stringify(dir)} + req.url).then((r) => results.push(r), (e) => results.push({ error: e.code }))
    })
    server.listen(0, '127.0.0.1', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const hashes = []
      for (const i of [0, 1, 2, 0]) {
        hashes.push(await new Promise((resolve) => http.get({ port: server.address().port, host: '127.0.0.1', path: '/' + i, agent }, (res) => {
          const h = crypto.createHash('sha256'); res.on('data', (c) => h.update(c)); res.on('end', () => resolve(h.digest('hex')))
        })))
      }
      while (results.length < 4) await new Promise((r) => setTimeout(r, 5))
      agent.destroy(); server.close()
      console.log(JSON.stringify({ hashes, results, probe: zc.probe().reason }))
    })`
  const { code, json, stderr } = await runChild(script, { ZEROCOPY_SOCKET_DISABLE: '1' })
  t.is(code, 0, stderr)
  const o = json as { hashes: string[]; results: { bytes: number; zeroCopy: boolean; fallbackReason: string | null }[]; probe: { code: string } }
  t.deepEqual(
    o.hashes,
    [0, 1, 2, 0].map((i) => sha256(files[i])),
  )
  t.is(o.results.length, 4)
  t.true(
    o.results.every((r) => typeof r.fallbackReason === 'string' || r.zeroCopy),
    JSON.stringify(o.results),
  )
  t.true(
    o.results.some((r) => /ZEROCOPY_SOCKET_DISABLE/.test(r.fallbackReason ?? '')),
    JSON.stringify(o.results),
  )
})
