// Issue 19 item 6, README "Security": a ring keeps the credentials it was created with (the
// class of CVE-2024-22017). A server that drops privileges must do it before its first use of
// the engine; one that drops them after gets plain sends for its new sockets, and is told why.
// Runs root children that call process.setgid/setuid(nobody) before or after the first socket.
import test from 'ava'

import { runChild, zeroCopyUnavailable } from './helpers'

const NOBODY = 65534
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0
if (!isRoot) console.error('\n!!! privileges.spec.ts needs root (it drops privileges in a child): SKIPPED\n')
const rootTest = isRoot && zeroCopyUnavailable === null ? test : test.skip

/** The child's helpers: a sink server, one socket's transfer, the uids of every thread. */
const PRELUDE = `
const net = require('node:net'), fs = require('node:fs')
const server = net.createServer((s) => { let n = 0; s.on('data', (c) => (n += c.length)); s.on('end', () => s.end(String(n))) })
const listening = new Promise((r) => server.listen(0, '127.0.0.1', r))
async function transfer() {
  await listening
  const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port, zeroCopy: 'always' })
  const reply = new Promise((r) => { let b = ''; zs.socket.on('data', (c) => (b += c)); zs.socket.on('end', () => r(Number(b))) })
  await zs.write(Buffer.alloc(1 << 20, 3))
  await zs.end()
  const received = await reply
  const s = zs.stats
  zs.destroy()
  return { received, zeroCopySends: s.zeroCopySends, fallbackReason: s.fallbackReason }
}
function threadUids() {
  const uids = new Set()
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const status = fs.readFileSync('/proc/self/task/' + tid + '/status', 'utf8')
    uids.add(Number(/^Uid:\\s+(\\d+)/m.exec(status)[1]))
  }
  return [...uids]
}
function drop() {
  process.setgroups([])
  process.setgid(${NOBODY})
  process.setuid(${NOBODY})
}
`

rootTest('privileges dropped before the first socket: zero-copy runs as the new user, every thread too', async (t) => {
  const { code, json, stderr } = await runChild(
    `${PRELUDE}
    ;(async () => {
      const probed = zc.probe().supported // the probe's throwaway ring is closed at once
      drop()
      const sent = await transfer()
      console.log(JSON.stringify({ probed, sent, uid: process.getuid(), threads: threadUids() }))
      server.close()
    })()`,
  )
  t.is(code, 0, stderr)
  const r = json as { probed: boolean; sent: { received: number; zeroCopySends: number; fallbackReason: string | null }; uid: number; threads: number[] }
  t.true(r.probed)
  t.is(r.uid, NOBODY)
  t.deepEqual(r.threads, [NOBODY], 'the engine thread (and any io_uring worker) runs as nobody')
  t.is(r.sent.received, 1 << 20)
  t.true(r.sent.zeroCopySends > 0)
  t.is(r.sent.fallbackReason, null)
})

rootTest('privileges dropped after the first socket: later sockets use plain sends and say why', async (t) => {
  const { code, json, stderr } = await runChild(
    `${PRELUDE}
    ;(async () => {
      const asRoot = await transfer() // starts this thread's engine: its ring has root's credentials
      drop()
      const afterDrop = await transfer()
      console.log(JSON.stringify({ asRoot, afterDrop }))
      server.close()
    })()`,
  )
  t.is(code, 0, stderr)
  const r = json as {
    asRoot: { received: number; zeroCopySends: number }
    afterDrop: { received: number; zeroCopySends: number; fallbackReason: string | null }
  }
  t.is(r.asRoot.received, 1 << 20)
  t.true(r.asRoot.zeroCopySends > 0)
  t.is(r.afterDrop.received, 1 << 20, 'the bytes still arrive, through the fallback')
  t.is(r.afterDrop.zeroCopySends, 0)
  t.regex(
    r.afterDrop.fallbackReason ?? '',
    /changed its credentials \(uid 0→65534, euid 0→65534, gid 0→65534, egid 0→65534\).*Drop privileges before the first ZeroCopySocket/,
  )
})
