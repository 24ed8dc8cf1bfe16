import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'

import test from 'ava'

import { ZeroCopySocket, type ZeroCopyMode } from '../index'
import { eventDeliveries, unreleasedRequests } from '../src/engine'
import { collect, hashReceived, loopbackPair, patternBytes, sha256, zcSerial, zcTest } from './helpers'

/** Writes of random sizes, many of them close to the 16 KiB threshold on either side. */
function randomWrites(count: number, seed: number): Buffer[] {
  let x = seed
  const next = (): number => {
    x = (x * 1103515245 + 12345) >>> 0
    return x
  }
  const out: Buffer[] = []
  for (let i = 0; i < count; i++) {
    const r = next() % 4
    const size = r === 0 ? 1 + (next() % 512) : r === 1 ? 16384 - 64 + (next() % 128) : r === 2 ? 1 + (next() % 70000) : 200000 + (next() % 100000)
    out.push(patternBytes(size, next()))
  }
  return out
}

async function transfer(t: import('ava').ExecutionContext, mode: ZeroCopyMode, writes: Buffer[]): Promise<ZeroCopySocket> {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
  const results = await Promise.all(writes.map((w) => zs.write(w)))
  await zs.end()
  const got = await received
  const total = writes.reduce((n, w) => n + w.length, 0)
  t.is(got.bytes, total)
  t.is(got.sha256, sha256(...writes), 'every byte, in order')
  t.deepEqual(
    results.map((r) => r.bytes),
    writes.map((w) => w.length),
  )
  t.is(zs.stats.bytesSent, total)
  t.is(zs.stats.inFlightBytes, 0)
  return zs
}

for (const mode of ['auto', 'always', 'never'] as const) {
  zcTest(`${mode}: 2000 pipelined writes of random sizes arrive in order, byte for byte`, async (t) => {
    const zs = await transfer(t, mode, randomWrites(2000, 42))
    const s = zs.stats
    t.is(s.writes, 2000)
    t.is(s.fallbackReason === null || s.fallbackReason.includes('ZC_COPIED'), true, String(s.fallbackReason))
    if (mode === 'never') t.is(s.zeroCopySends, 0)
    if (mode === 'always') {
      t.is(s.copySends, 0)
      t.is(s.notifications, s.zeroCopySends, 'one notification per zero-copy request')
    }
    if (mode === 'always') t.true(s.zeroCopySends > 0, 'some requests went out as SEND_ZC')
    if (mode === 'auto') {
      // A loopback peer: the kernel copies zero-copy sends there, so auto sends plain from the
      // first byte (only its periodic probe, one per 1024 plain requests, goes zero-copy).
      t.true(s.fallbackReason?.includes('ZC_COPIED'), String(s.fallbackReason))
      t.true(s.zeroCopySends <= 1 + s.copySends / 1024, `${s.zeroCopySends} zero-copy of ${s.copySends} plain`)
      t.is(s.notifications, s.zeroCopySends)
    }
  })
}

zcTest('a buffer may be reused right after await write()', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const buf = Buffer.alloc(256 * 1024)
  const expected: Buffer[] = []
  for (let i = 0; i < 64; i++) {
    buf.fill(i)
    expected.push(Buffer.from(buf))
    const r = await zs.write(buf)
    t.true(r.zeroCopy)
  }
  await zs.end()
  t.true((await received).equals(Buffer.concat(expected)))
})

zcSerial('buffers dropped by JavaScript survive GC until their notification', async (t) => {
  const gc = (globalThis as { gc?: () => void }).gc
  t.truthy(gc, 'run with --expose-gc')
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const pending: Promise<unknown>[] = []
  const hashes: Buffer[] = []
  for (let i = 0; i < 400; i++) {
    const b = patternBytes(32 * 1024 + i, i + 1)
    hashes.push(b)
    pending.push(zs.write(new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))))
    if (i % 50 === 0) gc?.()
  }
  gc?.()
  await Promise.all(pending)
  await zs.end()
  const got = await received
  t.is(got.sha256, sha256(...hashes))
  t.is(unreleasedRequests(), 0, 'no request left pinned in the kernel')
})

zcTest('peer reset mid-stream rejects pending writes with ECONNRESET/EPIPE and destroys the socket', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const zs = ZeroCopySocket.from(client)
  const chunk = Buffer.alloc(1 << 20, 1)
  let got = 0
  server.on('data', (c: Buffer) => {
    got += c.length
    if (got > 4 << 20) server.resetAndDestroy()
  })
  const settled = await Promise.allSettled(Array.from({ length: 64 }, () => zs.write(chunk)))
  const rejected = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected')
  t.true(rejected.length > 0, 'writes after the reset fail')
  for (const r of rejected) t.true(['ECONNRESET', 'EPIPE'].includes(r.reason.code), r.reason.code)
  // The first failure the connection saw: the engine's send, or the socket's own read.
  t.true(typeof rejected[0].reason.errno === 'number', 'errno')
  t.true(['sendZc', 'read', 'write'].includes(rejected[0].reason.syscall), String(rejected[0].reason.syscall))
  // Resolved writes form a prefix: nothing after a failure succeeded.
  const firstFail = settled.findIndex((s) => s.status === 'rejected')
  t.true(settled.slice(firstFail).every((s) => s.status === 'rejected'))
  await new Promise((resolve) => setImmediate(resolve))
  t.true(zs.socket.destroyed)
  await t.throwsAsync(zs.write(chunk), { code: rejected[0].reason.code })
})

zcTest('adopts a server-side socket from net.createServer', async (t) => {
  const data = patternBytes(3 << 20, 9)
  const srv = net.createServer((s) => {
    const zs = ZeroCopySocket.from(s)
    zs.write(data).then(() => zs.end())
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => srv.close())
  const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1')
  t.true((await collect(c)).equals(data))
})

zcTest('adopts a client that is still connecting, and waits for its own pending writes', async (t) => {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => srv.close())
  const accepted = new Promise<net.Socket>((resolve) => srv.once('connection', resolve))
  const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1')
  const first = patternBytes(2 << 20, 1)
  c.write(first) // queued in the socket itself before adoption
  const zs = ZeroCopySocket.from(c)
  const second = patternBytes(1 << 20, 2)
  const received = collect(await accepted)
  await zs.write(second)
  await zs.end()
  t.true((await received).equals(Buffer.concat([first, second])), 'socket.write() bytes precede the engine bytes')
  t.throws(() => c.write('late'), { code: 'ERR_ZC_SOCKET_OWNED' })
})

zcTest('end() half-closes: the peer sees EOF and can still answer', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.on('end', () => server.end('pong'))
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  const reply = collect(client)
  await zs.write(Buffer.from('ping'))
  await zs.end()
  t.is((await received).toString(), 'ping')
  t.is((await reply).toString(), 'pong')
})

zcTest('write after end() and after destroy() reject with stream codes', async (t) => {
  const { client, close } = await loopbackPair()
  t.teardown(close)
  const zs = ZeroCopySocket.from(client)
  const ending = zs.end()
  await t.throwsAsync(zs.write(Buffer.from('x')), { code: 'ERR_STREAM_WRITE_AFTER_END' })
  await ending
  zs.destroy()
  await t.throwsAsync(zs.write(Buffer.from('x')), { code: 'ERR_STREAM_DESTROYED' })
  t.is(zs.stats.bytesSent, 0)
})

zcTest('AbortSignal: an aborted write is withdrawn or finished whole, and rejects with AbortError', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause() // the peer stops reading: writes queue up behind a full socket buffer
  const zs = ZeroCopySocket.from(client)
  const big = Buffer.alloc(8 << 20, 1)
  const blocked = zs.write(big)
  const ac = new AbortController()
  const queued = zs.write(Buffer.alloc(100, 2), { signal: ac.signal })
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  await t.throwsAsync(queued, { name: 'AbortError', code: 'ABORT_ERR' })
  await t.throwsAsync(zs.write(Buffer.from('x'), { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' })
  const received = collect(server)
  server.resume()
  await blocked
  await zs.end()
  const got = await received
  t.is(got.length, big.length, 'the withdrawn write never reached the wire')
  t.true(got.equals(big))
})

zcSerial('destroy() with writes pinned in the kernel rejects them only after release', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const zs = ZeroCopySocket.from(client)
  const writes = Array.from({ length: 8 }, () => zs.write(Buffer.alloc(4 << 20, 3)))
  await new Promise((resolve) => setTimeout(resolve, 50))
  zs.destroy()
  const settled = await Promise.allSettled(writes)
  for (const s of settled) if (s.status === 'rejected') t.is(s.reason.code, 'ERR_STREAM_DESTROYED')
  t.true(settled.some((s) => s.status === 'rejected'))
  t.is(unreleasedRequests(), 0, 'every pinned request was released before the writes rejected')
})

zcTest('createWriteStream() through stream.pipeline from a file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-pipe-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'data.bin')
  const data = patternBytes(9 * 1024 * 1024 + 123, 5)
  writeFileSync(file, data)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  await pipeline(createReadStream(file), zs.createWriteStream({ highWaterMark: 256 * 1024 }))
  t.true((await received).equals(data))
  t.true(zs.stats.writes > 1)
})

zcTest('the Writable honours highWaterMark and drain', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client)
  const ws = zs.createWriteStream({ highWaterMark: 64 * 1024 })
  t.is(ws.writableHighWaterMark, 64 * 1024)
  const chunk = Buffer.alloc(48 * 1024, 4)
  t.true(ws.write(chunk))
  t.false(ws.write(chunk), 'over highWaterMark: write() returns false')
  await new Promise((resolve) => ws.once('drain', resolve))
  ws.end()
  await new Promise((resolve) => ws.once('finish', resolve))
  t.is((await received).bytes, 2 * chunk.length)
})

zcTest('AF_UNIX: EOPNOTSUPP switches the socket to plain sends without losing a byte', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 's.sock')
  const accepted = new Promise<net.Socket>((resolve) => {
    const srv = net.createServer(resolve)
    srv.listen(path)
    t.teardown(() => srv.close())
  })
  const c = net.connect(path)
  await new Promise((resolve) => c.once('connect', resolve))
  const received = collect(await accepted)
  const zs = ZeroCopySocket.from(c, { zeroCopy: 'always' })
  const writes = randomWrites(50, 3)
  await Promise.all(writes.map((w) => zs.write(w)))
  await zs.end()
  t.true((await received).equals(Buffer.concat(writes)))
  t.regex(zs.stats.fallbackReason ?? '', /EOPNOTSUPP/)
})

test('connect(): refused connections reject with ECONNREFUSED; signal aborts', async (t) => {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as net.AddressInfo
  await new Promise((resolve) => srv.close(resolve))
  await t.throwsAsync(ZeroCopySocket.connect({ host: '127.0.0.1', port }), { code: 'ECONNREFUSED' })
  await t.throwsAsync(ZeroCopySocket.connect({ port, signal: AbortSignal.abort() }), { code: 'ABORT_ERR' })
  t.throws(() => ZeroCopySocket.connect({ port: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => ZeroCopySocket.connect({ port: 80, zeroCopy: 'sometimes' as ZeroCopyMode }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => ZeroCopySocket.from({} as net.Socket), { code: 'ERR_INVALID_ARG_TYPE' })
})

zcTest('small writes are copied and acknowledged early, but never ahead of a larger write still pending', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const zs = ZeroCopySocket.from(client)
  const small = Buffer.from('small write')
  // Idle socket: the small write resolves once copied; the caller may reuse the buffer.
  await zs.write(small)
  small.fill(0) // reusing it must not change what is sent
  server.pause()
  const big = zs.write(Buffer.alloc(16 << 20, 1)) // stays pending: the peer does not read
  let smallDone = false
  const after = zs.write(Buffer.from('after')).then(() => (smallDone = true))
  await new Promise((r) => setTimeout(r, 50))
  t.false(smallDone, 'not acknowledged while an earlier, larger write is pending')
  const received = collect(server)
  server.resume()
  await big
  await after
  await zs.end()
  const got = await received
  t.is(got.subarray(0, 11).toString(), 'small write')
  t.is(got.subarray(got.length - 5).toString(), 'after')
  t.is(got.length, 11 + (16 << 20) + 5)
})

zcTest('a busy engine cannot starve the event loop: at most a few event batches per loop turn', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client)
  // Like a sender that keeps ~1 MiB of 1 KiB writes in flight: completions arrive while the
  // JS thread is busy issuing writes. Each batch used to be its own threadsafe call, which
  // Node dispatches up to 1000 at a time before returning to timers.
  const chunks = Array.from({ length: 1024 }, (_, i) => patternBytes(1024, i))
  let maxPerTurn = 0
  let last = eventDeliveries()
  const start = last
  let running = true
  const turn = (): void => {
    const now = eventDeliveries()
    maxPerTurn = Math.max(maxPerTurn, now - last)
    last = now
    if (running) setImmediate(turn)
  }
  setImmediate(turn)
  const window: Promise<unknown>[] = []
  const total = 64 * 1024
  for (let i = 0; i < total; i++) {
    if (window.length === chunks.length) await window.shift()
    window.push(zs.write(chunks[i % chunks.length]))
  }
  await Promise.all(window)
  await zs.end()
  running = false
  const got = await received
  t.is(got.bytes, total * 1024)
  t.is(got.sha256, sha256(...Array.from({ length: total / chunks.length }, () => chunks).flat()))
  t.true(eventDeliveries() - start >= 8, `the engine delivered events (${eventDeliveries() - start} batches)`)
  t.true(maxPerTurn <= 3, `batches handled between two loop turns: ${maxPerTurn}`)
})
