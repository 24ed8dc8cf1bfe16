import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

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
