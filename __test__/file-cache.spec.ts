import { appendFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { configureFileCache, fileCacheStats, respondWithFile, serveStatic } from '../index'
import { SETTLED_MS } from '../src/file-cache'
import { cacheScratch, deadline, fdsUnder, patternBytes, rng, SEED } from './helpers'

// One cache per thread: these tests change its limits, so they run one at a time.

interface Got {
  status: number
  length: number | null
  body: Buffer
}

function get(port: number, path: string, agent: http.Agent): Promise<Got> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.once('end', () => {
          const cl = res.headers['content-length']
          resolve({ status: res.statusCode ?? 0, length: cl === undefined ? null : Number(cl), body: Buffer.concat(chunks) })
        })
        res.once('error', reject)
      })
      .once('error', reject)
  })
}

async function listen(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

/** Descriptors of this process open on files under `dir`. */
const scratch = (t: { teardown(fn: () => void): void }): string => cacheScratch(t, 'zc-file-cache-')

const serveFrom =
  (dir: string): http.RequestListener =>
  (req, res) => {
    respondWithFile(res, join(dir, req.url!.slice(1))).catch(() => {
      if (!res.headersSent) res.writeHead(404).end()
      else res.destroy()
    })
  }

test.serial('a file served again within freshMs is not opened again, and the descriptor is closed with the server', async (t) => {
  const dir = scratch(t)
  const sizes = [4096, 64 * 1024, 1 << 20]
  for (const size of sizes) writeFileSync(join(dir, `f${size}`), patternBytes(size, size))
  configureFileCache({ freshMs: 60_000 })
  const { server, port } = await listen(serveFrom(dir))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const before = fileCacheStats()
  for (let i = 0; i < 30; i++) {
    const size = sizes[i % sizes.length]
    const got = await deadline(get(port, `/f${size}`, agent), 10_000, `GET ${i}`)
    t.is(got.status, 200)
    t.true(got.body.equals(patternBytes(size, size)), `response ${i} (${size} bytes) byte-exact`)
  }
  const after = fileCacheStats()
  t.is(after.misses - before.misses, sizes.length, 'each file opened once')
  t.is(after.hits - before.hits, 30 - sizes.length, 'every other response used the cached descriptor')
  t.is(fdsUnder(dir), sizes.length, 'one descriptor per file')
  agent.destroy()
  await close(server)
  t.is(fdsUnder(dir), 0, 'server.close() closed the cached descriptors')
})

test.serial('the cache is bounded: least recently used descriptors are closed first', async (t) => {
  const dir = scratch(t)
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, `f${i}`), patternBytes(1000 + i, i))
  configureFileCache({ maxEntries: 5, freshMs: 60_000 })
  const { server, port } = await listen(serveFrom(dir))
  t.teardown(() => close(server))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let i = 0; i < 20; i++) {
    const got = await deadline(get(port, `/f${i}`, agent), 10_000, `GET f${i}`)
    t.true(got.body.equals(patternBytes(1000 + i, i)))
    t.true(fdsUnder(dir) <= 5, `at most 5 descriptors open after ${i + 1} files`)
  }
  t.is(fileCacheStats().open, 5)
  configureFileCache({ maxEntries: 0 })
  t.is(fdsUnder(dir), 0, 'maxEntries 0 closes every idle descriptor')
  const got = await deadline(get(port, '/f3', agent), 10_000, 'GET with the cache off')
  t.true(got.body.equals(patternBytes(1003, 3)))
  t.is(fdsUnder(dir), 0, 'with the cache off nothing stays open')
})

/**
 * Versions of one path, each all one byte value and of its own length: a body is "whole" when
 * its length is the header's and one version's, and every byte is that version's.
 */
function versionOf(got: Got, versions: Buffer[]): number {
  if (got.length !== got.body.length) return -1
  return versions.findIndex((v) => v.equals(got.body))
}

test.serial(`a file replaced (renamed over) under load is served whole-old or whole-new, and the new one within freshMs (seed ${SEED})`, async (t) => {
  const dir = scratch(t)
  const random = rng(SEED)
  // Around the buffered limit and the inline/engine sizes.
  const versions = [3000, 16 * 1024, 70_000, 300_000, 2 << 20].map((n, i) => Buffer.alloc(n, 0x41 + i))
  const path = join(dir, 'file')
  writeFileSync(path, versions[0])
  configureFileCache({ freshMs: 20 })
  const { server, port } = await listen(serveFrom(dir))
  t.teardown(() => close(server))
  let writing = true
  let replaced = 0
  const writer = (async () => {
    while (writing) {
      const tmp = join(dir, `tmp${replaced}`)
      writeFileSync(tmp, versions[Math.floor(random() * versions.length)])
      renameSync(tmp, path)
      replaced++
      await new Promise((r) => setTimeout(r, 1 + Math.floor(random() * 5)))
    }
  })()
  const seen = new Set<number>()
  const clients = Array.from({ length: 6 }, async (_, c) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      for (let i = 0; i < 40; i++) {
        const got = await deadline(get(port, '/file', agent), 20_000, `client ${c} GET ${i}`)
        const v = versionOf(got, versions)
        t.true(v >= 0, `client ${c} response ${i}: ${got.body.length} bytes for Content-Length ${got.length}, whole of one version`)
        seen.add(v)
      }
    } finally {
      agent.destroy()
    }
  })
  await deadline(Promise.all(clients), 60_000, 'clients')
  writing = false
  await writer
  t.true(replaced > 10, `the file was replaced ${replaced} times meanwhile`)
  t.true(seen.size > 1, `more than one version was served (${[...seen].join(', ')})`)
  // Within the freshness rule: the current version, once freshMs has passed.
  writeFileSync(join(dir, 'last'), versions[4])
  renameSync(join(dir, 'last'), path)
  await new Promise((r) => setTimeout(r, 40))
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  t.is(versionOf(await deadline(get(port, '/file', agent), 20_000, 'GET after the rule'), versions), 4)
})

/**
 * Grows or shrinks one file in place while 6 clients fetch it, and checks every response with
 * `check`; a response cut short (the file shrank under the body) is an error at the client.
 */
async function underInPlaceChanges(
  t: import('ava').ExecutionContext,
  seed: number,
  truncate: boolean,
  check: (got: Got, content: Buffer, what: string) => void,
): Promise<void> {
  const dir = scratch(t)
  const random = rng(seed)
  const content = patternBytes(4 << 20, 7)
  const path = join(dir, 'file')
  writeFileSync(path, content.subarray(0, 1000))
  configureFileCache({ freshMs: 60_000 })
  const { server, port } = await listen(serveFrom(dir))
  t.teardown(() => close(server))
  let writing = true
  let size = 1000
  let changes = 0
  const writer = (async () => {
    while (writing) {
      if (truncate && random() < 0.3) {
        size = Math.floor(random() * size)
        truncateSync(path, size)
      } else {
        if (size === content.length) size = 0
        const next = Math.min(content.length, size + 1 + Math.floor(random() * 100_000))
        if (size === 0) truncateSync(path, 0)
        appendFileSync(path, content.subarray(size, next))
        size = next
      }
      changes++
      await new Promise((r) => setTimeout(r, Math.floor(random() * 3)))
    }
  })()
  let complete = 0
  let cut = 0
  const clients = Array.from({ length: 6 }, async (_, c) => {
    for (let i = 0; i < 40; i++) {
      const agent = new http.Agent({ keepAlive: false })
      try {
        const got = await deadline(get(port, '/file', agent), 20_000, `client ${c} GET ${i}`)
        t.is(got.status, 200)
        complete++
        t.is(got.body.length, got.length ?? -1, `client ${c} response ${i}: the body is as long as its Content-Length`)
        check(got, content, `client ${c} response ${i} (${got.body.length} bytes)`)
      } catch (e) {
        if ((e as Error).message.endsWith('(hang)')) throw e
        cut++ // the client saw an error, not a response
      } finally {
        agent.destroy()
      }
    }
  })
  await deadline(Promise.all(clients), 90_000, 'clients')
  writing = false
  await writer
  t.log(`${changes} changes, ${complete} complete responses, ${cut} cut short`)
  t.true(changes > 10)
  t.true(complete > 0)
}

test.serial(`a file appended to under load: every response is the file at one moment, never mixed (seed ${SEED})`, async (t) => {
  await underInPlaceChanges(t, SEED + 1, false, (got, content, what) => {
    t.true(got.body.equals(content.subarray(0, got.body.length)), `${what}: the file's first bytes`)
  })
})

test.serial(`a file truncated in place under load: bytes are the file's, or zeros where it was cut (as nginx; README) (seed ${SEED})`, async (t) => {
  await underInPlaceChanges(t, SEED + 2, true, (got, content, what) => {
    let foreign = 0
    for (let i = 0; i < got.body.length; i++) if (got.body[i] !== content[i] && got.body[i] !== 0) foreign++
    t.is(foreign, 0, `${what}: no byte that was never at its place in the file`)
  })
})

test.serial('serveStatic answers a cached file without a stat on the thread pool, header for header as before', async (t) => {
  const dir = scratch(t)
  writeFileSync(join(dir, 'a.txt'), 'hello world\n')
  configureFileCache({ freshMs: 60_000 })
  const middleware = serveStatic(dir)
  const { server, port } = await listen((req, res) => middleware(req, res, () => res.writeHead(404).end()))
  t.teardown(() => close(server))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const first = await deadline(get(port, '/a.txt', agent), 10_000, 'first GET')
  const hits = fileCacheStats().hits
  const second = await deadline(get(port, '/a.txt', agent), 10_000, 'second GET')
  t.is(first.body.toString(), 'hello world\n')
  t.deepEqual(second, first)
  t.true(fileCacheStats().hits >= hits + 2, "send's stat and the body's open both came from the cache")
})

test.serial('a worker thread that served files leaves no descriptor behind when it ends', async (t) => {
  const dir = scratch(t)
  writeFileSync(join(dir, 'w'), patternBytes(5000, 3))
  const worker = new Worker(
    `
    const http = require('node:http')
    const { respondWithFile } = require(${JSON.stringify(join(process.cwd(), 'dist', 'index.js'))})
    const { parentPort, workerData } = require('node:worker_threads')
    const server = http.createServer((req, res) => respondWithFile(res, workerData.path))
    server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port))
    `,
    { eval: true, workerData: { path: join(dir, 'w') } },
  )
  const port = await deadline(new Promise<number>((r) => worker.once('message', r)), 10_000, 'worker listening')
  const agent = new http.Agent({ keepAlive: true })
  const got = await deadline(get(port, '/', agent), 10_000, 'GET from the worker')
  agent.destroy()
  t.true(got.body.equals(patternBytes(5000, 3)))
  t.is(fdsUnder(dir), 1, "the worker's cache holds the file")
  await deadline(worker.terminate(), 10_000, 'worker terminate')
  t.is(fdsUnder(dir), 0, 'closed when the worker ended')
})

// Kept bytes of small files (src/file-cache.ts, "Small bodies"; src/cached-answer.ts).

const DEFAULT_LIMITS = { maxEntries: 256, freshMs: 1000, maxBodyBytes: 16 * 1024 * 1024, checkMs: 10, loopbackBodyMax: 1024 * 1024 }

/**
 * Serves `dir` with respondWithFile (a query string is ignored), counting the results'
 * fallbackReasons, and recording each URL's in `byUrl`.
 */
function countingServer(dir: string, reasons: Map<string, number>, byUrl?: Map<string, string>): http.RequestListener {
  return (req, res) => {
    respondWithFile(res, join(dir, req.url!.slice(1).split('?')[0])).then(
      (r) => {
        reasons.set(String(r.fallbackReason), (reasons.get(String(r.fallbackReason)) ?? 0) + 1)
        byUrl?.set(req.url!, String(r.fallbackReason))
      },
      () => (res.headersSent ? res.destroy() : res.writeHead(404).end()),
    )
  }
}

/** Waits until files written now count as settled (kept bytes are only of files unchanged that long). */
const settled = (): Promise<void> => new Promise((r) => setTimeout(r, SETTLED_MS + 50))

const fromMemory = (reasons: Map<string, number>): number =>
  [...reasons].filter(([r]) => r.includes('kept with its cached descriptor')).reduce((n, [, c]) => n + c, 0)

// 40 KB: kept for every peer; 400 KB: kept for a loopback peer (this test's), a longer read.
for (const SIZE of [40_000, 400_000])
  test.serial(
    `a ${SIZE / 1000} KB file rewritten in place by another thread: never kept while written, so kept bytes never mix versions (seed ${SEED})`,
    async (t) => {
      t.teardown(() => configureFileCache(DEFAULT_LIMITS))
      const dir = scratch(t)
      const path = join(dir, 'small')
      writeFileSync(path, Buffer.alloc(SIZE, 0x40))
      configureFileCache({ freshMs: 60_000, checkMs: 0 })
      const reasons = new Map<string, number>()
      const byUrl = new Map<string, string>()
      const { server, port } = await listen(countingServer(dir, reasons, byUrl))
      t.teardown(() => close(server))
      // The writer: one pwrite of the whole file per version, as fast as it can, in a worker thread,
      // so that reads of the server's thread race it.
      const writer = new Worker(
        `
    const { openSync, writeSync, closeSync } = require('node:fs')
    const { parentPort, workerData } = require('node:worker_threads')
    const fd = openSync(workerData.path, 'r+')
    const versions = Array.from({ length: 16 }, (_, i) => Buffer.alloc(workerData.size, 0x41 + i))
    let stop = false
    parentPort.on('message', () => (stop = true))
    let n = 0
    const loop = () => {
      for (let i = 0; i < 200 && !stop; i++) writeSync(fd, versions[n++ % 16], 0, workerData.size, 0)
      if (stop) { closeSync(fd); parentPort.postMessage(n) } else setImmediate(loop)
    }
    loop()
    `,
        { eval: true, workerData: { path, size: SIZE } },
      )
      const random = rng(SEED)
      const mixed: string[] = []
      const clients = Array.from({ length: 6 }, async (_, c) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
        try {
          for (let i = 0; i < 80; i++) {
            if (random() < 0.2) await new Promise((r) => setTimeout(r, 1))
            const url = `/small?c=${c}&i=${i}`
            const got = await deadline(get(port, url, agent), 20_000, `client ${c} GET ${i}`)
            t.is(got.length, SIZE)
            t.is(got.body.length, SIZE)
            const first = got.body[0]
            const at = got.body.findIndex((b) => b !== first)
            if (at !== -1) mixed.push(`${url}: byte ${at} is ${got.body[at]}, byte 0 is ${first}`)
          }
        } finally {
          agent.destroy()
        }
      })
      await deadline(Promise.all(clients), 60_000, 'clients')
      writer.postMessage('stop')
      const writes = await deadline(new Promise<number>((r) => writer.once('message', r)), 10_000, 'writer stop')
      await writer.terminate()
      t.log(`${writes} rewrites; results: ${JSON.stringify([...reasons])}`)
      // A file being written is read for each response, as any server reads it: those bodies may mix
      // versions (the writer's pwrite is not atomic for readers). Kept bytes never do.
      const kept = mixed.filter((m) => byUrl.get(m.split(':')[0])!.includes('kept with its cached descriptor'))
      t.log(`${mixed.length} mixed bodies read while written (as any server reads them)`)
      t.deepEqual(kept, [], 'no body from kept bytes mixes two versions')
      t.true(writes > 100, `the file was rewritten ${writes} times`)
      // Settled, the file is kept again.
      await new Promise((r) => setTimeout(r, SETTLED_MS + 100))
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      t.teardown(() => agent.destroy())
      for (const i of [1, 2]) {
        const got = await deadline(get(port, `/small?settled=${i}`, agent), 10_000, `settled GET ${i}`)
        t.is(
          got.body.findIndex((b) => b !== got.body[0]),
          -1,
        )
      }
      t.regex(byUrl.get('/small?settled=2')!, /kept with its cached descriptor/)
    },
  )

test.serial('kept bytes: an in-place change is seen within checkMs (at once with checkMs 0), never before the change', async (t) => {
  t.teardown(() => configureFileCache(DEFAULT_LIMITS))
  const dir = scratch(t)
  const path = join(dir, 'f')
  writeFileSync(path, Buffer.alloc(3000, 0x61))
  await settled()
  configureFileCache({ freshMs: 60_000, checkMs: 0 })
  const reasons = new Map<string, number>()
  const { server, port } = await listen(countingServer(dir, reasons))
  t.teardown(() => close(server))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const fetchByte = async (what: string): Promise<number> => {
    const got = await deadline(get(port, '/f', agent), 10_000, what)
    t.is(got.body.length, 3000)
    return got.body[0]
  }
  t.is(await fetchByte('first'), 0x61)
  t.is(await fetchByte('second'), 0x61)
  t.is(fromMemory(reasons), 1, 'the second came from kept bytes')
  for (let v = 0x62; v < 0x6a; v++) {
    writeFileSync(path, Buffer.alloc(3000, v)) // in place: same inode
    t.is(await fetchByte(`after change ${v}`), v, 'checkMs 0: seen at once')
  }
  t.is(fromMemory(reasons), 1, 'a file just written is read for each response, not kept')
  await settled()
  configureFileCache({ checkMs: 200 })
  t.is(await fetchByte('check'), 0x69)
  t.is(await fetchByte('kept'), 0x69)
  writeFileSync(path, Buffer.alloc(3000, 0x7a))
  const early = await fetchByte('within checkMs')
  t.true(early === 0x69 || early === 0x7a, 'whole-old or whole-new')
  await new Promise((r) => setTimeout(r, 250))
  t.is(await fetchByte('after checkMs'), 0x7a, 'seen once checkMs passed')
  t.true(fromMemory(reasons) >= 1)
})

test.serial('kept bytes are bounded by maxBodyBytes and counted in fileCacheStats', async (t) => {
  t.teardown(() => configureFileCache(DEFAULT_LIMITS))
  const dir = scratch(t)
  const files = Array.from({ length: 8 }, (_, i) => patternBytes(40_000 + i, i + 1))
  files.forEach((f, i) => writeFileSync(join(dir, `f${i}`), f))
  await settled()
  configureFileCache({ freshMs: 60_000, maxBodyBytes: 100_000 })
  const reasons = new Map<string, number>()
  const { server, port } = await listen(countingServer(dir, reasons))
  t.teardown(() => close(server))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let round = 0; round < 3; round++)
    for (let i = 0; i < files.length; i++) {
      const got = await deadline(get(port, `/f${i}`, agent), 10_000, `GET f${i}`)
      t.true(got.body.equals(files[i]), `f${i} round ${round}`)
      t.true(fileCacheStats().bodyBytes <= 100_000, `kept ${fileCacheStats().bodyBytes} bytes`)
    }
  t.true(fileCacheStats().bodyBytes > 0)
  t.true(fromMemory(reasons) > 0)
  configureFileCache({ maxBodyBytes: 0 })
  t.is(fileCacheStats().bodyBytes, 0, 'a lower limit drops kept bytes at once')
  const before = fromMemory(reasons)
  const got = await deadline(get(port, '/f3', agent), 10_000, 'GET with nothing kept')
  t.true(got.body.equals(files[3]))
  t.is(fromMemory(reasons), before, 'maxBodyBytes 0: nothing answered from memory')
})
