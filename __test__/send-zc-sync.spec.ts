import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { sendZcSync, type ZeroCopyError } from '../index'
import { collect, fdOf, loopbackPair, patternBytes, zcTest } from './helpers'

zcTest('sendZcSync sends 64 KiB over loopback TCP, byte for byte', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const data = patternBytes(64 * 1024, 7)
  const received = collect(server)
  t.is(sendZcSync(fdOf(client), data), data.length)
  client.end()
  t.true((await received).equals(data))
})

zcTest('sendZcSync on an AF_UNIX socket fails with EOPNOTSUPP', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 's.sock')
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(path, resolve))
  const client = net.connect(path)
  await new Promise<void>((resolve) => client.once('connect', resolve))
  t.teardown(() => {
    client.destroy()
    server.close()
  })
  const err = t.throws<ZeroCopyError>(() => sendZcSync(fdOf(client), Buffer.from('hello')), { code: 'EOPNOTSUPP' })
  t.is(err?.syscall, 'sendZc')
  t.is(err?.errno, -95)
})

test('sendZcSync rejects bad arguments synchronously and sends nothing', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const fd = fdOf(client)
  const bad: [unknown, unknown, string, ErrorConstructor][] = [
    ['3', Buffer.from('x'), 'ERR_INVALID_ARG_TYPE', TypeError],
    [1.5, Buffer.from('x'), 'ERR_OUT_OF_RANGE', RangeError],
    [-1, Buffer.from('x'), 'ERR_OUT_OF_RANGE', RangeError],
    [Number.NaN, Buffer.from('x'), 'ERR_OUT_OF_RANGE', RangeError],
    [fd, 'a string', 'ERR_INVALID_ARG_TYPE', TypeError],
    [fd, [1, 2, 3], 'ERR_INVALID_ARG_TYPE', TypeError],
    [fd, undefined, 'ERR_INVALID_ARG_TYPE', TypeError],
    [fd, new ArrayBuffer(4), 'ERR_INVALID_ARG_TYPE', TypeError],
  ]
  for (const [f, data, code, type] of bad) {
    t.throws(() => sendZcSync(f as number, data as Uint8Array), { code, instanceOf: type }, `${String(f)} / ${String(data)}`)
  }
  client.end()
  t.is((await received).length, 0, 'nothing reached the peer')
})

zcTest('sendZcSync refuses an empty buffer with ERR_INVALID_ARG_VALUE', async (t) => {
  const { client, close } = await loopbackPair()
  t.teardown(close)
  t.throws(() => sendZcSync(fdOf(client), Buffer.alloc(0)), { code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError })
})
