import { fixture, runChild, runNode, zcTest } from './helpers'

// The opt-in loop driver (ZEROCOPY_SOCKET_DRIVER=loop): the engine's ring on the JS thread's own
// event loop, no engine thread. The same child fixtures as the engine thread's tests, under it.
const LOOP = { ZEROCOPY_SOCKET_DRIVER: 'loop' }

const THREADS = `
const net = require('node:net')
const fs = require('node:fs')
const server = net.createServer((s) => { let n = 0; s.on('data', (d) => (n += d.length)); s.on('end', () => { s.end(); server.close(); done(n) }) })
let threads = []
function done(received) { console.log(JSON.stringify({ threads, received })) }
server.listen(0, '127.0.0.1', async () => {
  const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port })
  await zs.write(Buffer.alloc(1 << 20, 7))
  threads = fs.readdirSync('/proc/self/task').map((t) => fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim())
  await zs.end()
})`

zcTest('loop driver: no engine thread, and the bytes arrive (the engine thread exists otherwise)', async (t) => {
  const loop = await runChild(THREADS, LOOP)
  t.is(loop.code, 0, loop.stderr)
  const l = loop.json as { threads: string[]; received: number }
  t.is(l.received, 1 << 20)
  t.false(l.threads.includes('zerocopy-engine'), l.threads.join(','))
  const thread = await runChild(THREADS)
  t.is(thread.code, 0, thread.stderr)
  t.true((thread.json as { threads: string[] }).threads.includes('zerocopy-engine'))
})

zcTest('loop driver: writes around a sendFile arrive byte for byte in every mode', async (t) => {
  for (const mode of ['auto', 'always', 'never']) {
    const { code, json, stderr } = await runNode(fixture('transfer.cjs'), ['300', '9', mode], LOOP, 60_000)
    t.is(code, 0, `${mode}: ${stderr}`)
    const r = json as { sent: { sha256: string; bytes: number }; received: { sha256: string; bytes: number } }
    t.is(r.received.bytes, r.sent.bytes, mode)
    t.is(r.received.sha256, r.sent.sha256, mode)
  }
})

zcTest('loop driver: worker threads that end mid-transfer close every connection and leave no descriptor', async (t) => {
  const { code, json, stderr } = await runNode(fixture('workers.cjs'), ['6'], LOOP, 60_000)
  t.is(code, 0, `no crash when a worker's loop closes: ${stderr}`)
  const r = json as { outcomes: { peer: string }[]; fdsBefore: number; fdsAfter: number }
  t.is(r.outcomes.length, 6)
  for (const [i, o] of r.outcomes.entries()) t.is(o.peer, 'closed', `worker ${i}`)
  t.true(r.fdsAfter <= r.fdsBefore, `descriptors before ${r.fdsBefore}, after ${r.fdsAfter}`)
})

zcTest('loop driver: a failed ring fails pending writes with ERR_ZC_ENGINE_FAILED and later sockets fall back', async (t) => {
  const { code, json, stderr } = await runNode(fixture('engine-failure.cjs'), [], LOOP, 60_000)
  t.is(code, 0, `no crash: ${stderr}`)
  const r = json as { pending: string[]; failure: string | null; later: { capable: boolean; same: boolean }; unhandled: string[] }
  t.true(r.pending.includes('ERR_ZC_ENGINE_FAILED'), JSON.stringify(r.pending))
  t.truthy(r.failure)
  t.false(r.later.capable)
  t.true(r.later.same)
  t.deepEqual(r.unhandled, [])
})

zcTest('loop driver: the process waits for a pending write, and exits by itself once a destroyed one is released', async (t) => {
  for (const [mode, settled] of [
    ['settle', 'fulfilled'],
    ['destroy', 'ERR_STREAM_DESTROYED'],
  ]) {
    const { code, json, stderr } = await runNode(fixture('exit-after-write.cjs'), [mode], LOOP, 60_000)
    t.is(code, 0, `${mode}: ${stderr}`)
    const r = json as { settled: string | null; unreleased: number }
    t.is(r.settled, settled, mode)
    t.is(r.unreleased, 0, mode)
  }
})

const BLOCKED = `
const net = require('node:net')
const { createHash } = require('node:crypto')
const got = createHash('sha256')
let received = 0
const server = net.createServer((s) => {
  s.on('data', (d) => { received += d.length; got.update(d) })
  s.on('end', () => { s.end(); server.close(); report() })
})
let sent = null
function report() { if (sent && server.listening === false) console.log(JSON.stringify({ sent, received: { bytes: received, sha256: got.digest('hex') } })) }
server.listen(0, '127.0.0.1', async () => {
  const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port })
  const h = createHash('sha256')
  const window = []
  let bytes = 0
  for (let i = 0; i < 96; i++) {
    const b = Buffer.alloc(1 << 20, i & 0xff)
    h.update(b)
    bytes += b.length
    window.push(zs.write(b))
    if (window.length === 8) await window.shift()
    if (i === 40) { const until = Date.now() + 200; while (Date.now() < until); } // the JS thread blocks
  }
  await Promise.all(window)
  await zs.end()
  sent = { bytes, sha256: h.digest('hex') }
  report()
})`

zcTest('loop driver: a 200 ms synchronous block of the JS thread mid-transfer loses no byte and no completion', async (t) => {
  const { code, json, stderr } = await runChild(BLOCKED, LOOP)
  t.is(code, 0, stderr)
  const r = json as { sent: { bytes: number; sha256: string }; received: { bytes: number; sha256: string } }
  t.is(r.sent.bytes, 96 << 20)
  t.deepEqual(r.received, r.sent)
})
