/**
 * `release()`: the engine hands the socket back, the owner writes on it again, and a later
 * `from()` adopts it again; the socket's idle timeout counts the engine's progress.
 */
import { writeFile, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { ZeroCopySocket } from '../index'
import { collect, loopbackPair, patternBytes, zcSerial } from './helpers'

async function tempFile(t: { teardown(fn: () => Promise<void>): void }, bytes: Buffer): Promise<string> {
  const path = join(tmpdir(), `zc-release-${process.pid}-${Math.random().toString(36).slice(2)}`)
  await writeFile(path, bytes)
  t.teardown(() => rm(path, { force: true }))
  return path
}

/** Rejects after `ms`: every await in these tests has a deadline. */
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))),
  ])
}

zcSerial('adopt, send, release, write on the socket, adopt again: 30 rounds, in order, byte-exact', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const body = patternBytes(300_000, 3)
  const path = await tempFile(t, body)
  const received = collect(server)
  const expected: Buffer[] = []
  for (let round = 0; round < 30; round++) {
    const zs = ZeroCopySocket.from(client)
    t.true(zs.zeroCopyCapable)
    const head = Buffer.from(`round ${round} head\n`)
    const big = patternBytes(100_000 + round, round)
    void zs.write(head)
    void zs.write(big)
    void zs.sendFile(path, { offset: round, length: body.length - round })
    const socket = await deadline(zs.release(), 10_000, 'release')
    t.is(socket, client)
    await t.throwsAsync(zs.write(Buffer.from('late')), { code: 'ERR_ZC_SOCKET_RELEASED' })
    await t.throwsAsync(zs.sendFile(path), { code: 'ERR_ZC_SOCKET_RELEASED' })
    await t.throwsAsync(zs.end(), { code: 'ERR_ZC_SOCKET_RELEASED' })
    t.is(zs.release(), zs.release(), 'release() again returns the same promise')
    const tail = Buffer.from(`round ${round} through socket.write\n`)
    t.true(typeof client.write(tail) === 'boolean', 'socket.write is the socket’s own again')
    expected.push(head, big, body.subarray(round), tail)
  }
  client.end()
  const got = await deadline(received, 20_000, 'peer')
  t.is(got.length, Buffer.concat(expected).length)
  t.true(got.equals(Buffer.concat(expected)), 'every byte in order')
})

zcSerial('release() waits for a write the kernel still holds: pending until the peer reads', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const zs = ZeroCopySocket.from(client)
  const big = patternBytes(32 << 20, 9)
  const write = zs.write(big)
  let released = false
  const release = zs.release().then((s) => ((released = true), s))
  await new Promise((r) => setTimeout(r, 300))
  t.false(released, 'the socket is not handed back while the kernel holds bytes')
  const received = collect(server)
  server.resume()
  await deadline(write, 20_000, 'write')
  const socket = await deadline(release, 20_000, 'release')
  socket.end(Buffer.from('!'))
  const got = await deadline(received, 20_000, 'peer')
  t.true(got.equals(Buffer.concat([big, Buffer.from('!')])))
})

zcSerial('destroy() during release() rejects it; the socket is not handed back', async (t) => {
  for (let i = 0; i < 20; i++) {
    const { client, server, close } = await loopbackPair()
    server.pause()
    const zs = ZeroCopySocket.from(client)
    const write = zs.write(patternBytes(8 << 20, i))
    write.catch(() => {})
    const release = zs.release()
    await new Promise((r) => setTimeout(r, i % 5))
    zs.destroy()
    const err = await deadline(
      release.then(
        () => null,
        (e: unknown) => e as { code?: string },
      ),
      10_000,
      'release',
    )
    t.truthy(err, `round ${i}: release rejects`)
    t.is(err?.code, 'ERR_STREAM_DESTROYED')
    t.true(client.destroyed)
    close()
  }
})

zcSerial('the engine’s progress counts as activity for socket.setTimeout; idleness still times out', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const body = patternBytes(64 << 20, 5)
  const path = await tempFile(t, body)
  let timeouts = 0
  // Not much shorter: on a loaded machine a starved event loop fires any timeout late and at once.
  client.setTimeout(1500, () => timeouts++)
  // A peer that reads slowly but steadily: the whole body takes well over the timeout.
  let bytes = 0
  server.on('data', (c: Buffer) => {
    bytes += c.length
    server.pause()
    setTimeout(() => server.resume(), 8)
  })
  const zs = ZeroCopySocket.from(client)
  const started = Date.now()
  await deadline(zs.sendFile(path), 60_000, 'sendFile')
  const took = Date.now() - started
  await deadline(zs.release(), 10_000, 'release')
  t.is(timeouts, 0, `no timeout during a ${took} ms body`)
  t.true(took > 3000, `the body took ${took} ms, longer than two timeouts`)
  await new Promise((r) => setTimeout(r, 2500))
  t.true(timeouts >= 1, 'an idle socket still times out after release')
  t.true(bytes > 0)
})

zcSerial('socket.end() while release() runs is not lost: the socket ends once it is handed back', async (t) => {
  // node:http calls socket.end() when a keep-alive client leaves; if that came while the last
  // body's release was running, the call was dropped and the connection stayed open for good.
  for (let i = 0; i < 10; i++) {
    const { client, server, close } = await loopbackPair()
    const received = collect(server)
    const zs = ZeroCopySocket.from(client)
    const data = patternBytes(2 << 20, i)
    void zs.write(data)
    const releasing = zs.release()
    client.end(Buffer.from('!'))
    const socket = await deadline(releasing, 10_000, 'release')
    t.is(socket, client)
    const got = await deadline(received, 10_000, `round ${i}: the peer sees the end`)
    t.true(got.equals(Buffer.concat([data, Buffer.from('!')])), `round ${i}: every byte, then the FIN`)
    close()
  }
})

zcSerial('from() on a socket whose own small write is still queued adopts it once that write is flushed (no drain event comes)', async (t) => {
  // 'drain' follows only a write() that returned false. A socket whose pending write stayed
  // under its highWaterMark (a full send buffer; after release() and a direct write) never
  // emits it, and adoption used to wait for it forever.
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const client = net.connect({ port: (listener.address() as net.AddressInfo).port, host: '127.0.0.1', writableHighWaterMark: 64 << 20 } as net.NetConnectOpts)
  await new Promise<void>((resolve) => client.once('connect', resolve))
  const server = await accepted
  listener.close()
  t.teardown(() => (client.destroy(), server.destroy()))
  server.pause()
  const own = patternBytes(8 << 20, 1)
  t.true(client.write(own), 'under its highWaterMark: write() returned true, so no drain will come')
  await new Promise((r) => setTimeout(r, 50))
  t.true(client.writableLength > 0, 'the socket still holds some of its own write')
  const zs = ZeroCopySocket.from(client)
  const data = patternBytes(100_000, 2)
  const written = zs.write(data)
  const received = collect(server)
  setTimeout(() => server.resume(), 100)
  await deadline(written, 10_000, 'the write after adoption')
  await zs.end()
  const got = await deadline(received, 10_000, 'peer')
  t.true(got.equals(Buffer.concat([own, data])), 'the socket’s own bytes first, then the engine’s')
})
