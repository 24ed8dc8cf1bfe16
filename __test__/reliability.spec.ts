import { execFileSync, spawn } from 'node:child_process'
import { closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { ZeroCopySocket, probe, sendZcSync } from '../index'
import { unreleasedRequests } from '../src/engine'
import { fixture, hashReceived, loopbackPair, patternBytes, runNode, sha256, zcSerial, zcTest } from './helpers'

/** `text` as a literal pattern. */
function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

const ROOT = fileURLToPath(new URL('..', import.meta.url))

zcTest('peer resets at random points: pending writes reject with ECONNRESET/EPIPE, resolved ones are a prefix, no fd leaks', async (t) => {
  const { code, json, stderr } = await runNode(fixture('resets.cjs'), ['24', '7'])
  t.is(code, 0, `the process exits normally: ${stderr}`)
  const r = json as {
    results: { fulfilled: number; prefix: boolean; rxIsPrefix: boolean; codes: string[] }[]
    before: number
    after: number
    unhandled: string[]
  }
  t.is(r.results.length, 24)
  for (const run of r.results) {
    t.true(run.prefix, 'no write succeeded after one failed')
    t.true(run.rxIsPrefix, 'the peer got a prefix of the stream: nothing lost in the middle, reordered or repeated')
    for (const c of run.codes) t.true(['ECONNRESET', 'EPIPE'].includes(c), c)
  }
  t.true(
    r.results.some((run) => run.codes.length > 0),
    'resets hit writes in flight',
  )
  t.deepEqual(r.unhandled, [], 'no unhandled rejections')
  t.is(r.after, r.before, 'no fd left open')
})

zcSerial('GC storm: thousands of writes whose buffers are dropped at once, gc() between them', async (t) => {
  const gc = (globalThis as { gc?: () => void }).gc!
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const expected: Buffer[] = []
  const pending: Promise<unknown>[] = []
  for (let i = 0; i < 3000; i++) {
    const size = 1 + ((i * 2654435761) % 40000)
    expected.push(patternBytes(size, i + 1))
    pending.push(zs.write(patternBytes(size, i + 1))) // no reference kept to the buffer
    if (i % 100 === 0) gc()
  }
  gc()
  await Promise.all(pending)
  await zs.end()
  t.is((await received).sha256, sha256(...expected))
  t.is(unreleasedRequests(), 0)
})

for (const chunkBytes of [256 * 1024, 4 * 1024])
  zcTest(`a receiver that stops reading (${chunkBytes / 1024} KiB chunks): no busy loop, in-flight bytes bounded by highWaterMark, resumes`, async (t) => {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    server.pause()
    const zs = ZeroCopySocket.from(client)
    const hwm = chunkBytes < 16384 ? 64 * 1024 : 1 << 20
    const ws = zs.createWriteStream({ highWaterMark: hwm })
    const chunk = Buffer.alloc(chunkBytes, 3)
    let written = 0
    let maxInFlight = 0
    const total = 64 << 20
    const done = (async () => {
      while (written < total) {
        written += chunk.length
        maxInFlight = Math.max(maxInFlight, zs.stats.inFlightBytes)
        if (!ws.write(chunk)) await new Promise((r) => ws.once('drain', r))
      }
      ws.end()
      await new Promise((r) => ws.once('finish', r))
    })()
    await new Promise((r) => setTimeout(r, 300)) // socket buffers full by now
    const cpu0 = process.cpuUsage()
    const t0 = Date.now()
    await new Promise((r) => setTimeout(r, 500))
    const cpu = process.cpuUsage(cpu0)
    const busy = (cpu.user + cpu.system) / 1000 / (Date.now() - t0)
    t.true(busy < 0.2, `CPU while stalled: ${(busy * 100).toFixed(1)}% of a core`)
    t.true(written < total, 'the writer is held back by backpressure')
    t.true(maxInFlight <= hwm + chunk.length, `inFlightBytes ${maxInFlight} stayed within highWaterMark`)
    const received = hashReceived(server)
    server.resume()
    await done
    t.is((await received).bytes, total)
  })

zcTest('a file descriptor where a socket is expected: sendZcSync fails with ENOTSOCK, nothing is written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-notsock-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'file')
  const fd = openSync(path, 'w')
  t.teardown(() => closeSync(fd))
  t.throws(() => sendZcSync(fd, Buffer.from('not for a file')), { code: 'ENOTSOCK' })
  t.is(statSync(path).size, 0)
})

test('a FIFO passed as a socket: the engine refuses it (ENOTSOCK) and writes go through it unchanged', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-fifo-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fifo = join(dir, 'pipe')
  execFileSync('mkfifo', [fifo])
  const fd = openSync(fifo, 'r+') // read-write: opening does not wait for a reader
  const reader = createReadStream(fifo)
  const chunks: Buffer[] = []
  reader.on('data', (c) => chunks.push(c as Buffer))
  const pipe = new net.Socket({ fd, readable: false, writable: true })
  const zs = ZeroCopySocket.from(pipe)
  const data = patternBytes(1 << 20, 11)
  await zs.write(data)
  await new Promise((r) => setTimeout(r, 100))
  zs.destroy()
  reader.destroy()
  t.true(Buffer.concat(chunks).equals(data))
  t.false(zs.zeroCopyCapable)
  t.regex(zs.stats.fallbackReason ?? '', probe().supported ? /ENOTSOCK/ : new RegExp(escapeRegExp(probe().reason?.message ?? 'no reason')))
})

const NO_URING = `${ROOT}build/tools/no-io-uring`
function buildLauncher(): void {
  if (existsSync(NO_URING)) return
  mkdirSync(`${ROOT}build/tools`, { recursive: true })
  execFileSync('gcc', ['-O2', '-Wall', '-o', NO_URING, `${ROOT}tools/no-io-uring.c`])
}

function underSeccomp(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  buildLauncher()
  return new Promise((resolve) => {
    const child = spawn(NO_URING, [process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c))
    child.stderr.on('data', (c: Buffer) => (stderr += c))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

;(process.platform === 'linux' ? test : test.skip)(
  'io_uring blocked by a seccomp filter (as Docker does): probe says why, transfers fall back byte-exact',
  async (t) => {
    const r = await underSeccomp([fixture('transfer.cjs'), '200', '5'])
    t.is(r.code, 0, r.stderr)
    const o = JSON.parse(r.stdout.trim().split('\n').pop()!)
    t.false(o.probe.supported)
    t.is(o.probe.reason.code, 'seccomp')
    t.is(o.probe.reason.errno, 'EPERM')
    t.is(o.probe.seccomp, 2)
    t.regex(o.sent.stats.fallbackReason, /seccomp/)
    t.is(o.received.sha256, o.sent.sha256)
    t.is(o.received.bytes, o.sent.bytes)
  },
)

;(process.platform === 'linux' ? test : test.skip)('doctor under the seccomp filter explains it', async (t) => {
  const r = await underSeccomp([`${ROOT}dist/cli/zerocopy-socket.js`, 'doctor'])
  t.is(r.code, 2, r.stderr)
  t.regex(r.stdout, /io_uring allowed: +no \(seccomp\)/)
  t.regex(r.stdout, /Zero-copy is OFF/)
  t.regex(r.stdout, /self-test: +4 MiB went out through the fallback/)
})

const DEBUG_ADDON = `${ROOT}build/debug/zerocopy-socket.node`

;(existsSync(DEBUG_ADDON) ? zcTest : test.skip)(
  'debug-assertion build: destroy() and aborts during in-flight SEND_ZC settle every write and leave nothing pinned',
  async (t) => {
    const { code, json, stderr } = await runNode(fixture('destroy-abort.cjs'), [], { NAPI_RS_NATIVE_LIBRARY_PATH: DEBUG_ADDON })
    t.is(code, 0, `no crash or failed debug assertion: ${stderr}`)
    const r = json as { outcomes: Record<string, number>; unreleased: number; unhandled: string[] }
    const total = Object.values(r.outcomes).reduce((a, b) => a + b, 0)
    t.is(total, 20 * 12, 'every write settled')
    for (const code of Object.keys(r.outcomes)) t.true(['fulfilled', 'ABORT_ERR', 'ERR_STREAM_DESTROYED'].includes(code), code)
    t.true((r.outcomes.ABORT_ERR ?? 0) > 0 && (r.outcomes.ERR_STREAM_DESTROYED ?? 0) > 0, JSON.stringify(r.outcomes))
    t.is(r.unreleased, 0, 'the Rust-side count of pinned requests is back to zero')
    t.deepEqual(r.unhandled, [])
  },
)

zcTest('the process does not exit while the engine holds a write, though nothing of node:net keeps it alive', async (t) => {
  const { code, json, stderr } = await runNode(fixture('exit-after-write.cjs'), ['settle'], {}, 60_000)
  t.is(code, 0, `exits by itself: ${stderr}`)
  const r = json as { settled: string | null; zeroCopyCapable: boolean; unreleased: number }
  t.true(r.zeroCopyCapable)
  t.is(r.settled, 'fulfilled', 'the write settled before the process exited')
  t.is(r.unreleased, 0)
})

zcTest('a socket destroyed under a write to a peer that never reads: the write rejects and the process still exits', async (t) => {
  const { code, json, stderr } = await runNode(fixture('exit-after-write.cjs'), ['destroy'], {}, 60_000)
  t.is(code, 0, `exits by itself once everything is released: ${stderr}`)
  const r = json as { settled: string | null; unreleased: number }
  t.is(r.settled, 'ERR_STREAM_DESTROYED')
  t.is(r.unreleased, 0, 'nothing left pinned')
})

zcTest('worker threads that end mid-transfer: every connection ends for its peer, and no descriptor, ring or thread is left', async (t) => {
  const env: Record<string, string> = existsSync(DEBUG_ADDON) ? { NAPI_RS_NATIVE_LIBRARY_PATH: DEBUG_ADDON } : {}
  const { code, json, stderr } = await runNode(fixture('workers.cjs'), ['6'], env)
  t.is(code, 0, `no crash or failed debug assertion: ${stderr}`)
  const r = json as { outcomes: { stalled: boolean; peer: string }[]; fdsBefore: number; fdsAfter: number }
  t.is(r.outcomes.length, 6)
  for (const [i, o] of r.outcomes.entries()) t.is(o.peer, 'closed', `worker ${i} (${o.stalled ? 'peer not reading' : 'peer reading'})`)
  // Each ended worker used to leave its engine's dups, ring and eventfd open.
  t.true(r.fdsAfter <= r.fdsBefore, `descriptors before ${r.fdsBefore}, after ${r.fdsAfter}`)
})
