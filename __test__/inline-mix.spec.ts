// Inline copy sends (src/socket.ts, `#mayInline`) mixed with everything that must not be overtaken,
// under seeded random schedules against a peer that pauses at random: writes of 1 B to 800 KB,
// writes with a signal (which never go inline), zero-byte writes, writes issued from inside
// another write's callback, sendFile ranges and a sendFile of a missing file, ended by end() or
// release(); every promise under a deadline, every byte checked in order. And a reset while a
// partial inline send's rest is with the engine and writes wait in JS: all of them reject.

import { ZeroCopySocket, type ZeroCopyMode } from '../index'
import { deadline, hashReceived, loopbackPair, patternBytes, rng, SEED, sha256, scratchFile, zcSerial } from './helpers'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

zcSerial('inline sends in a seeded random mix with signals, chained writes, sendFile, end() or release(): every byte in order', async (t) => {
  const fileBytes = patternBytes(2 << 20, 77)
  const file = scratchFile(t, 'zc-inline-mix-', fileBytes)
  const runs = Number(process.env.ZC_MIX_RUNS ?? 8)
  for (let k = 0; k < runs; k++) {
    const mode: ZeroCopyMode = k % 2 === 0 ? 'never' : 'auto'
    const seed = SEED + k
    const random = rng(seed)
    const useRelease = k % 4 >= 2
    const what = `seed ${seed}, ${mode}, ${useRelease ? 'release' : 'end'}`
    const { client, server, close } = await loopbackPair()
    const received = hashReceived(server)
    const pauser = setInterval(() => {
      if (random() < 0.6) server.resume()
      else server.pause()
    }, 2)
    const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
    const expected: Uint8Array[] = []
    const ops: Promise<unknown>[] = []
    const ac = new AbortController() // never aborted
    let n = 0
    const issue = (depth: number): Promise<unknown> => {
      const i = n++
      const r = random()
      if (r < 0.08) {
        const offset = Math.floor(random() * (fileBytes.length - 1))
        const length = 1 + Math.floor(random() * Math.min(fileBytes.length - offset, 300_000))
        expected.push(fileBytes.subarray(offset, offset + length))
        return zs.sendFile(file, { offset, length, signal: random() < 0.5 ? ac.signal : undefined }).then((res) => t.is(res.bytes, length, what))
      }
      if (r < 0.12) return zs.write(new Uint8Array(0))
      if (r < 0.15)
        return zs.sendFile(file + '.missing').then(
          () => t.fail('missing file sent'),
          (e) => t.is((e as { code?: string }).code, 'ENOENT'),
        )
      const size = r < 0.5 ? 1 + Math.floor(random() * 4096) : r < 0.8 ? 16_000 + Math.floor(random() * 60_000) : 200_000 + Math.floor(random() * 600_000)
      const data = patternBytes(size, seed * 10000 + i)
      expected.push(data)
      const signal = random() < 0.25 ? ac.signal : undefined
      const chain = depth < 2 && random() < 0.3
      const p = zs.write(data, { signal }).then((res) => {
        t.is(res.bytes, size, what)
        // A write issued from inside the callback of another.
        if (chain) ops.push(issue(depth + 1))
      })
      return p
    }
    for (let i = 0; i < 200; i++) {
      const op = issue(0)
      ops.push(op)
      const next = random()
      if (next < 0.15) await deadline(op, 20_000, `${what}: op ${i}`)
      else if (next < 0.4) await new Promise((resolve) => setImmediate(resolve))
      else if (next < 0.45) await sleep(1)
      else if (next < 0.55) await Promise.resolve()
    }
    // Let chained ones be issued.
    await deadline(Promise.all(ops), 30_000, `${what}: ops`)
    await deadline(Promise.all(ops), 30_000, `${what}: ops (chained)`)
    if (useRelease) {
      const s = await deadline(zs.release(), 20_000, `${what}: release`)
      s.end()
    } else {
      await deadline(zs.end(), 20_000, `${what}: end`)
    }
    clearInterval(pauser)
    server.resume()
    const got = await deadline(received, 20_000, `${what}: peer`)
    const total = expected.reduce((m, e) => m + e.byteLength, 0)
    t.is(got.bytes, total, what)
    t.is(got.sha256, sha256(...expected), `${what}: every byte, in order`)
    t.is(zs.stats.inFlightBytes, 0, what)
    close()
  }
})

for (const mode of ['never', 'auto'] as ZeroCopyMode[]) {
  zcSerial(`a reset after a partial inline send with writes waiting rejects them all (${mode})`, async (t) => {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    server.pause()
    const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
    const first = zs.write(patternBytes(16 << 20, 1))
    const waiting = Array.from({ length: 5 }, (_, i) => zs.write(patternBytes(100_000, 2 + i)))
    const small = zs.write(Buffer.alloc(100, 3))
    const ended = zs.end()
    await sleep(30)
    server.resetAndDestroy()
    const settled = await deadline(Promise.allSettled([first, ...waiting, small, ended]), 10_000, 'settle after reset')
    t.log(settled.map((s) => (s.status === 'rejected' ? (s.reason as { code?: string }).code : 'ok')).join(' '))
    for (const s of settled) t.is(s.status, 'rejected')
    t.is(zs.stats.inFlightBytes, 0)
  })
}
