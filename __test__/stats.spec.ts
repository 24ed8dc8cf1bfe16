// Issue 19 item 4: `stats` counts file bytes sent page-cache-to-socket (sendfile(2)) apart from
// memory sends, so a sendFile-only socket does not look like zero-copy failed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { hashReceived, loopbackPair, patternBytes, runChild, sha256, zcTest } from './helpers'
import { ZeroCopySocket } from '../index'

const dir = mkdtempSync(join(tmpdir(), 'zc-stats-'))
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

zcTest('sendFile counts sendfileCalls/sendfileBytes, not copySends; writes count as sends', async (t) => {
  const file = patternBytes(3 << 20, 5)
  const path = join(dir, 'three-mib.bin')
  writeFileSync(path, file)
  const { client, server, close } = await loopbackPair()
  try {
    const received = hashReceived(server)
    const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
    await zs.sendFile(path)
    const afterFile = zs.stats
    t.is(afterFile.sendfileBytes, file.length)
    t.true(afterFile.sendfileCalls >= 1, `${afterFile.sendfileCalls} sendfile calls`)
    t.is(afterFile.copySends, 0, 'a sendfile call is not a copying send')
    t.is(afterFile.zeroCopySends, 0)
    t.is(afterFile.bytesSent, file.length)
    t.is(afterFile.fallbackReason, null)

    const chunk = patternBytes(256 * 1024, 6)
    await zs.write(chunk)
    await zs.end()
    const s = zs.stats
    t.is(s.sendfileBytes, file.length, 'writes are not sendfile bytes')
    t.is(s.sendfileCalls, afterFile.sendfileCalls)
    t.true(s.zeroCopySends >= 1)
    t.is(s.bytesSent, file.length + chunk.length)
    const got = await received
    t.is(got.bytes, file.length + chunk.length)
    t.is(got.sha256, sha256(file, chunk))
  } finally {
    close()
  }
})

test('the fallback (io_uring switched off) counts file chunks as copySends, no sendfile calls', async (t) => {
  const path = join(dir, 'small.bin')
  writeFileSync(path, patternBytes(200_000, 7))
  const script = `
    const net = require('node:net')
    const server = net.createServer((s) => s.resume()).listen(0, '127.0.0.1', async () => {
      const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port })
      await zs.sendFile(${JSON.stringify(path)})
      await zs.end()
      console.log(JSON.stringify(zs.stats))
      zs.destroy()
      server.close()
    })`
  const { code, json, stderr } = await runChild(script, { ZEROCOPY_SOCKET_DISABLE: '1' })
  t.is(code, 0, stderr)
  const s = json as { sendfileCalls: number; sendfileBytes: number; copySends: number; zeroCopySends: number; bytesSent: number; fallbackReason: string }
  t.is(s.sendfileCalls, 0)
  t.is(s.sendfileBytes, 0)
  t.true(s.copySends >= 1)
  t.is(s.zeroCopySends, 0)
  t.is(s.bytesSent, 200_000)
  t.regex(s.fallbackReason, /ZEROCOPY_SOCKET_DISABLE/)
})
