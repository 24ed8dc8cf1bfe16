// The inline send (src/socket.ts `#mayInline`, core `direct::send_now`): a write that would be a
// copy send anyway goes out with one non-blocking send(2) on the JS thread when nothing of the
// socket is queued with the engine; only the rest goes to the engine. These tests check that
// the bytes stay in order whatever mix of inline and engine sends a schedule produces, that a
// full socket hands the rest to the engine, and that errors take the engine's shape.

import { ZeroCopySocket, type WriteResult, type ZeroCopyMode } from '../index'
import { binding } from '../src/native'
import { deadline, fixture, hashReceived, loopbackPair, patternBytes, rng, runNode, SEED, sha256, scratchFile, zcSerial } from './helpers'

/** Counts what the inline sends did: calls, short counts (the socket filled), failures. */
interface Spy {
  calls: number
  short: number
  failed: number
}

/** Wraps `binding.sendNow` for the duration of the test (the tests of this file run serially). */
function spyOnSendNow(t: import('ava').ExecutionContext): Spy {
  const spy: Spy = { calls: 0, short: 0, failed: 0 }
  const real = binding.sendNow
  binding.sendNow = (fd: number, data: Uint8Array): number => {
    const n = real(fd, data)
    spy.calls++
    if (n >= 0 && n < data.byteLength) spy.short++
    if (n < 0) spy.failed++
    return n
  }
  t.teardown(() => {
    binding.sendNow = real
  })
  return spy
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

zcSerial('a seeded random schedule of writes, file sends and end() arrives byte for byte, inline and engine sends mixed', async (t) => {
  const fileBytes = patternBytes(3 << 20, 77)
  const file = scratchFile(t, 'zc-inline-', fileBytes)
  const spy = spyOnSendNow(t)
  for (const [k, mode] of (['never', 'auto', 'never', 'auto'] as ZeroCopyMode[]).entries()) {
    const seed = SEED + k
    const random = rng(seed)
    const what = `seed ${seed} (ZC_TEST_SEED=${SEED}), ${mode}`
    const { client, server, close } = await loopbackPair()
    const received = hashReceived(server)
    // The peer pauses at random, so the socket fills and the rest of a write goes to the engine.
    let reading = true
    const pauser = setInterval(() => {
      reading = random() < 0.6
      if (reading) server.resume()
      else server.pause()
    }, 3)
    const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
    const expected: Uint8Array[] = []
    const ops: Promise<unknown>[] = []
    for (let i = 0; i < 250; i++) {
      const r = random()
      let op: Promise<unknown>
      if (r < 0.1) {
        const offset = Math.floor(random() * (fileBytes.length - 1))
        const length = 1 + Math.floor(random() * Math.min(fileBytes.length - offset, 400_000))
        expected.push(fileBytes.subarray(offset, offset + length))
        op = zs.sendFile(file, { offset, length }).then((res) => t.is(res.bytes, length, what))
      } else {
        const size = r < 0.5 ? 1 + Math.floor(random() * 4096) : r < 0.8 ? 16_000 + Math.floor(random() * 60_000) : 200_000 + Math.floor(random() * 900_000)
        const data = patternBytes(size, seed * 1000 + i)
        expected.push(data)
        op = zs.write(data).then((res: WriteResult) => t.is(res.bytes, size, what))
      }
      op = deadline(op, 20_000, `${what}: op ${i}`)
      ops.push(op)
      const next = random()
      if (next < 0.15) await op
      else if (next < 0.45) await new Promise((resolve) => setImmediate(resolve))
      else if (next < 0.5) await sleep(1)
    }
    const ended = deadline(zs.end(), 20_000, `${what}: end`)
    await Promise.all(ops)
    await ended
    clearInterval(pauser)
    server.resume()
    const got = await deadline(received, 20_000, `${what}: peer`)
    const total = expected.reduce((n, e) => n + e.byteLength, 0)
    t.is(got.bytes, total, what)
    t.is(got.sha256, sha256(...expected), `${what}: every byte, in order`)
    const stats = zs.stats
    t.is(stats.bytesSent, total, `${what}: bytesSent counts inline sends too`)
    if (mode === 'never') t.is(stats.zeroCopySends, 0, what)
    close()
  }
  t.true(spy.calls > 0, 'writes went inline')
  t.log(`inline sends: ${spy.calls}, short: ${spy.short}`)
})

zcSerial('a full socket: the inline send takes what fits, the engine sends the rest once the peer reads', async (t) => {
  const spy = spyOnSendNow(t)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause() // the peer reads nothing yet
  const received = hashReceived(server)
  server.pause()
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'never' })
  const big = patternBytes(16 << 20, 5)
  const small = Array.from({ length: 20 }, (_, i) => patternBytes(100 + i * 50, 100 + i))
  const after = patternBytes(1 << 20, 6)
  const first = zs.write(big)
  // Nothing is pending before the first write: it went inline, and the socket filled.
  t.is(spy.calls, 1)
  t.is(spy.short, 1, 'the inline send was short: the socket is full')
  // Later writes queue behind the rest, with the engine: none of them may go inline now.
  const rest = [...small.map((s) => zs.write(s)), zs.write(after)]
  t.is(spy.calls, 1, 'no inline send while the engine holds the rest of the first write')
  await sleep(50)
  t.true(zs.stats.inFlightBytes > 0)
  server.resume()
  const results = await deadline(Promise.all([first, ...rest]), 20_000, 'writes')
  t.deepEqual(
    results.map((r) => r.bytes),
    [big.length, ...small.map((s) => s.length), after.length],
    'each write reports all its bytes, inline part included',
  )
  await deadline(zs.end(), 20_000, 'end')
  const got = await deadline(received, 20_000, 'peer')
  t.is(got.sha256, sha256(big, ...small, after), 'every byte, in order')
  t.is(zs.stats.bytesSent, got.bytes)
  // Once everything settled, writes go inline again.
})

zcSerial('after everything settled, writes go inline again; copySends counts them, zeroCopySends does not', async (t) => {
  const spy = spyOnSendNow(t)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'never' })
  const chunk = patternBytes(32 << 10, 3)
  for (let i = 0; i < 20; i++) await deadline(zs.write(chunk), 10_000, `write ${i}`)
  t.is(spy.calls, 20, 'each awaited write went inline')
  const s = zs.stats
  t.is(s.zeroCopySends, 0)
  t.true(s.copySends >= 20, String(s.copySends))
  t.is(s.bytesSent, 20 * chunk.length)
  await zs.end()
  t.is((await received).bytes, 20 * chunk.length)
})

for (const mode of ['never', 'always'] as const) {
  zcSerial(`a reset peer: the failed send rejects with the engine's code and syscall, and destroys the socket (${mode})`, async (t) => {
    const spy = spyOnSendNow(t)
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    // The client stops reading (its buffer is past highWaterMark, so node:net stops the
    // handle): only a send can see the reset, and the error is the send's.
    client.pause()
    server.write(Buffer.alloc(4 << 20))
    await sleep(50)
    const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
    await deadline(zs.write(Buffer.alloc(1000, 1)), 10_000, 'first write')
    const gone = new Promise((resolve) => server.once('close', resolve))
    server.resetAndDestroy()
    await gone
    await sleep(20)
    const err = await t.throwsAsync(deadline(zs.write(Buffer.alloc(64 << 10, 2)), 10_000, 'write after the reset'))
    const e = err as Error & { code?: string; syscall?: string; errno?: number }
    t.true(['ECONNRESET', 'EPIPE'].includes(e.code ?? ''), e.code)
    t.is(e.syscall, 'sendZc', 'the same syscall name whichever path sent')
    t.is(typeof e.errno, 'number')
    if (mode === 'never') t.is(spy.failed, 1, 'the inline send saw the reset')
    else t.is(spy.calls, 0, "'always' never sends inline")
    await new Promise((resolve) => setImmediate(resolve))
    t.true(zs.socket.destroyed, 'the socket is destroyed')
    await t.throwsAsync(zs.write(Buffer.alloc(10)), { code: e.code })
    await t.throwsAsync(zs.end(), { code: e.code })
  })
}

zcSerial('worker threads: each sends inline on its own thread, byte for byte', async (t) => {
  const { code, json, stderr } = await runNode(fixture('inline-workers.cjs'), [String(SEED)], {}, 60_000)
  t.is(code, 0, stderr)
  const r = json as { connections: { expected: string; got: string; bytes: number; inline: number }[] }
  t.is(r.connections.length, 4)
  for (const c of r.connections) {
    t.is(c.got, c.expected, 'every byte, in order')
    t.true(c.inline > 0, 'the worker sent inline')
  }
})

zcSerial('writes waiting in JS behind the engine: destroy() rejects each of them, nothing hangs', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'never' })
  const first = zs.write(patternBytes(16 << 20, 1)) // fills the socket: its rest goes to the engine
  const waiting = Array.from({ length: 5 }, (_, i) => zs.write(patternBytes(100_000, 2 + i)))
  const small = zs.write(Buffer.alloc(100, 3)) // batched, then waits too
  await sleep(20)
  t.true(zs.stats.inFlightBytes > 5 * 100_000)
  zs.destroy()
  const settled = await deadline(Promise.allSettled([first, ...waiting, small]), 10_000, 'settle after destroy')
  for (const s of settled) {
    t.is(s.status, 'rejected')
    if (s.status === 'rejected') t.is((s.reason as { code?: string }).code, 'ERR_STREAM_DESTROYED')
  }
  t.is(zs.stats.inFlightBytes, 0)
})

for (const driver of ['thread', 'loop']) {
  zcSerial(`a 200 ms synchronous block of the JS thread during a 1 GiB transfer loses no byte and no completion (${driver} driver)`, async (t) => {
    const { code, json, stderr } = await runNode(fixture('blocked-transfer.cjs'), ['1024', 'auto'], { ZEROCOPY_SOCKET_DRIVER: driver }, 150_000)
    t.is(code, 0, stderr)
    const r = json as { sent: { bytes: number; sha256: string }; received: { bytes: number; sha256: string }; inFlightBytes: number; bytesSent: number }
    t.is(r.sent.bytes, 1 << 30)
    t.deepEqual(r.received, r.sent, 'every byte, in order')
    t.is(r.bytesSent, 1 << 30)
    t.is(r.inFlightBytes, 0, 'every write settled')
  })
}
