/**
 * The rule the product rests on: a write settles only once the kernel released its buffer,
 * not when it accepted the bytes. Loopback copies on delivery, so the only way to see the
 * difference is a peer that stops reading: the bytes sit in our send queue, accepted but not
 * released, and the write must stay pending until the peer reads.
 */
import { once } from 'node:events'

import { ZeroCopySocket } from '../index'
import { unreleasedRequests } from '../src/engine'
import { collect, loopbackPair, patternBytes, zcSerial } from './helpers'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

zcSerial('a write the kernel accepted but has not released stays pending until the peer reads', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  // Fill the peer's receive window through the socket itself, so that what follows is
  // accepted into our send queue but cannot be delivered (and so not released).
  const filler = patternBytes(512 << 10, 1)
  if (!client.write(filler)) await once(client, 'drain')
  await sleep(100)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const data = patternBytes(16 << 10, 2)
  let settled: string | null = null
  const write = zs.write(data).then(
    (r) => (settled = `resolved ${JSON.stringify(r)}`),
    (e: { code?: string }) => (settled = `rejected ${e.code}`),
  )
  const until = Date.now() + 5000
  while (zs.stats.bytesSent < data.length && Date.now() < until) await sleep(10)
  t.is(zs.stats.bytesSent, data.length, 'the kernel accepted every byte of the write')
  await sleep(300)
  t.true(unreleasedRequests() > 0, 'its request is not released: the kernel may still read the buffer')
  t.is(settled, null, 'so the write is still pending')
  t.is(zs.stats.inFlightBytes, data.length)
  const received = collect(server)
  server.resume()
  await Promise.race([write, sleep(10_000)])
  t.regex(settled ?? 'still pending after the peer read', /^resolved/)
  await zs.end()
  const got = await received
  t.true(got.equals(Buffer.concat([filler, data])), 'the peer got every byte, in order')
})
