// Regression tests for the defects found by adversarial testing (issue "Trust: no hang, no
// crash, no wrong byte"), one or more per defect. Each failed on the code before its fix.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { ZeroCopySocket, type ZeroCopyMode } from '../index'
import { collect, deadline, fixture, loopbackPair, patternBytes, runChild, runNode, zcTest } from './helpers'

const MODES: ZeroCopyMode[] = ['auto', 'always', 'never']

function scratch(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'zc-trust-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

zcTest('1: back-to-back file sends all settle: the repro 1,000 times in a row, plus a big file then a small one in every mode', async (t) => {
  const dir = scratch(t)
  const data = patternBytes(100, 3)
  const file = join(dir, 'f')
  writeFileSync(file, data)
  const big = patternBytes(16 << 20, 4)
  const bigFile = join(dir, 'big')
  writeFileSync(bigFile, big)
  for (let i = 0; i < 1000; i++) {
    const { client, server, close } = await loopbackPair()
    const got = collect(server)
    const zs = ZeroCopySocket.from(client)
    const fd1 = openSync(file, 'r')
    const fd2 = openSync(file, 'r')
    try {
      await deadline(Promise.all([zs.sendFile(fd1, { offset: 10, length: 10 }), zs.sendFile(fd2, { offset: 20, length: 10 }), zs.end()]), 5000, `run ${i}`)
    } finally {
      closeSync(fd1)
      closeSync(fd2)
    }
    t.deepEqual(await got, data.subarray(10, 30), `run ${i}`)
    close()
  }
  for (const mode of MODES) {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    const got = collect(server)
    const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
    await deadline(Promise.all([zs.sendFile(bigFile), zs.sendFile(file, { offset: 90, length: 10 }), zs.end()]), 20000, mode)
    t.true((await got).equals(Buffer.concat([big, data.subarray(90)])), mode)
  }
})

zcTest('1: a file after a withdrawn (aborted) operation still starts', async (t) => {
  const dir = scratch(t)
  const file = join(dir, 'f')
  writeFileSync(file, patternBytes(1000, 5))
  for (let i = 0; i < 20; i++) {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    const got = collect(server)
    const zs = ZeroCopySocket.from(client)
    const ac = new AbortController()
    const first = zs.sendFile(file, { length: 10 })
    const withdrawn = zs.write(Buffer.alloc(100_000, 1), { signal: ac.signal })
    ac.abort()
    const second = zs.sendFile(file, { offset: 10, length: 10 })
    const settled = await deadline(Promise.allSettled([first, withdrawn, second, zs.end()]), 5000, `run ${i}`)
    t.is(settled[0].status, 'fulfilled')
    t.is(settled[2].status, 'fulfilled')
    t.is(settled[3].status, 'fulfilled')
    const bytes = await got
    t.true(bytes.length === 20 || bytes.length === 100_020, `${bytes.length}`)
  }
})

test('2: destroy() or a failed connection while end() waits never crashes the process, and end() rejects', async (t) => {
  // No unhandledRejection handler: an internal rejection nobody listens to kills the child.
  const { code, json, stderr } = await runChild(`
    const fs = require('node:fs'), net = require('node:net'), os = require('node:os'), path = require('node:path')
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'zc-end-')), 'f')
    fs.writeFileSync(file, Buffer.alloc(4 << 20, 1))
    const server = net.createServer((s) => { s.pause(); s.on('error', () => {}) })
    const outcomes = []
    server.listen(0, '127.0.0.1', async () => {
      const { port } = server.address()
      for (let i = 0; i < 40; i++) {
        // from() on a connecting socket, end(), then destroy() after 0..5 ms.
        const zs = zc.ZeroCopySocket.from(net.connect({ port, host: '127.0.0.1' }))
        // It may also complete: the kernel can buffer all 4 MiB before the destroy.
        const sent = zs.sendFile(file).then(() => 'ok', (e) => e.code)
        const ended = zs.end().then(() => 'ok', (e) => e.code)
        await new Promise((r) => setTimeout(r, i % 6))
        zs.destroy()
        outcomes.push(await ended, await sent)
      }
      // A refused connection while end() waits behind a write.
      const dead = net.createServer(); await new Promise((r) => dead.listen(0, '127.0.0.1', r))
      const deadPort = dead.address().port; dead.close()
      const zs = zc.ZeroCopySocket.from(net.connect({ port: deadPort, host: '127.0.0.1' }))
      const w = zs.write(Buffer.alloc(1000)).catch((e) => e.code)
      outcomes.push(await zs.end().then(() => 'ok', (e) => e.code), await w)
      server.close()
      setTimeout(() => console.log(JSON.stringify(outcomes)), 100)
    })
  `)
  t.is(code, 0, `the process survived: ${stderr}`)
  const outcomes = json as string[]
  t.is(outcomes.length, 82)
  for (const o of outcomes.slice(0, 80)) t.true(['ok', 'ERR_STREAM_DESTROYED', 'ECONNRESET', 'EPIPE'].includes(o), o)
  t.true(outcomes.slice(0, 80).includes('ERR_STREAM_DESTROYED'))
  t.deepEqual(outcomes.slice(80), ['ECONNREFUSED', 'ECONNREFUSED'])
})

for (const mode of MODES) {
  zcTest(`3 (${mode}): a queued write whose ArrayBuffer is transferred away still sends its own bytes`, async (t) => {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    server.pause() // the window fills: the next write stays queued
    const zs = ZeroCopySocket.from(client, { zeroCopy: mode })
    const blocker = Buffer.alloc(8 << 20, 0x11)
    const first = zs.write(blocker)
    const mine = patternBytes(100_000, 9)
    const expected = Buffer.from(mine)
    const second = zs.write(mine)
    await new Promise((r) => setTimeout(r, 50))
    // Move the memory to a new owner, drop it and collect: the write must not follow it.
    let moved: unknown = structuredClone(mine.buffer, { transfer: [mine.buffer as ArrayBuffer] })
    moved = null
    void moved
    for (let i = 0; i < 3; i++) globalThis.gc?.()
    for (let i = 0; i < 50; i++) Buffer.alloc(100_000, 0xee) // reuse freed memory if any
    const got = collect(server)
    server.resume()
    await deadline(Promise.all([first, second, zs.end()]), 10000, 'writes')
    const bytes = await got
    t.is(bytes.length, blocker.length + expected.length)
    t.true(bytes.subarray(blocker.length).equals(expected), 'the queued write sent its own bytes')
  })
}

test('3: views of a resizable ArrayBuffer are refused up front with ERR_INVALID_ARG_VALUE', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const got = collect(server)
  const zs = ZeroCopySocket.from(client)
  const ab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(1 << 20, { maxByteLength: 2 << 20 })
  t.throws(() => zs.write(new Uint8Array(ab)), { code: 'ERR_INVALID_ARG_VALUE' })
  await zs.write(Buffer.from('ok'))
  await zs.end()
  t.is((await got).toString(), 'ok', 'nothing of the refused write was sent')
})

zcTest('4: sendFile(fd) sends that file even if the caller closes the fd at once and the number is reused', async (t) => {
  const dir = scratch(t)
  const right = patternBytes(64 * 1024, 11)
  const wrong = Buffer.alloc(64 * 1024, 0x77)
  writeFileSync(join(dir, 'right'), right)
  writeFileSync(join(dir, 'wrong'), wrong)
  for (let i = 0; i < 30; i++) {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    const got = collect(server)
    const zs = ZeroCopySocket.from(client)
    const useHandle = i % 2 === 1
    const handle = useHandle ? await open(join(dir, 'right'), 'r') : null
    const fd = handle ? handle.fd : openSync(join(dir, 'right'), 'r')
    const sent = zs.sendFile(handle ?? fd)
    if (handle) await handle.close()
    else closeSync(fd)
    const other = openSync(join(dir, 'wrong'), 'r') // likely takes the same number
    await deadline(Promise.all([sent, zs.end()]), 5000, `run ${i}`)
    closeSync(other)
    t.true((await got).equals(right), `run ${i} (${useHandle ? 'FileHandle' : 'fd'})`)
  }
})

zcTest('5: aborting a running sendFile to a peer that does not read takes effect promptly', async (t) => {
  const dir = scratch(t)
  const file = join(dir, 'big')
  writeFileSync(file, Buffer.alloc(64 << 20, 1))
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const zs = ZeroCopySocket.from(client)
  const ac = new AbortController()
  const sent = zs.sendFile(file, { signal: ac.signal })
  await new Promise((r) => setTimeout(r, 200)) // the socket is full: the send waits for room
  const started = Date.now()
  ac.abort()
  const err = await deadline(
    sent.then(
      () => null,
      (e: { code?: string }) => e,
    ),
    3000,
    'aborted sendFile',
  )
  t.is(err?.code, 'ABORT_ERR')
  t.true(Date.now() - started < 2000, `took ${Date.now() - started} ms`)
})

test('6: on the fallback path end() then destroy() rejects ERR_STREAM_DESTROYED, as the engine path does', async (t) => {
  const script = `
    const net = require('node:net')
    const server = net.createServer((s) => { s.pause(); s.on('error', () => {}) })
    server.listen(0, '127.0.0.1', async () => {
      const out = []
      for (let i = 0; i < 20; i++) {
        const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port })
        const w = zs.write(Buffer.alloc(8 << 20, 1)).then(() => 'ok', (e) => e.code)
        const ended = zs.end().then(() => 'ok', (e) => e.code)
        zs.destroy()
        out.push([zs.zeroCopyCapable, await ended, await w])
      }
      server.close()
      console.log(JSON.stringify(out))
    })`
  for (const env of [{ ZEROCOPY_SOCKET_DISABLE: '1' }, {}] as Record<string, string>[]) {
    const { code, json, stderr } = await runChild(script, env)
    t.is(code, 0, stderr)
    const rows = json as [boolean, string, string][]
    t.is(rows.length, 20)
    for (const [capable, ended, written] of rows) {
      if (env.ZEROCOPY_SOCKET_DISABLE) t.false(capable)
      t.is(ended, 'ERR_STREAM_DESTROYED', `end() (engine: ${capable})`)
      t.is(written, 'ERR_STREAM_DESTROYED', `write() (engine: ${capable})`)
    }
  }
})

test('7: from() refuses a socket another ZeroCopySocket owns (ERR_ZC_SOCKET_OWNED)', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const got = collect(server)
  const zs = ZeroCopySocket.from(client)
  t.throws(() => ZeroCopySocket.from(client), { code: 'ERR_ZC_SOCKET_OWNED' })
  await zs.write(Buffer.from('only one owner'))
  await zs.end()
  t.is((await got).toString(), 'only one owner')
})

test('8: a write after the peer ended the connection rejects EPIPE, as net.Socket does', async (t) => {
  for (const adopt of [true, false]) {
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    const zs = adopt ? ZeroCopySocket.from(client) : null
    const ended = new Promise((r) => client.once('end', r))
    server.end()
    await ended
    await new Promise((r) => setImmediate(r))
    const err = await new Promise<{ code?: string; message: string }>((resolve) => {
      if (zs) zs.write(Buffer.from('late')).then(() => resolve({ message: 'resolved' }), resolve)
      else {
        client.on('error', () => {})
        client.write('late', (e) => resolve(e ?? { message: 'resolved' }))
      }
    })
    t.is(err.code, 'EPIPE', `${adopt ? 'ZeroCopySocket' : 'net.Socket'}: ${err.message}`)
    t.is(err.message, 'This socket has been ended by the other party')
  }
})

zcTest('10: an io_uring_enter failure fails every pending write with ERR_ZC_ENGINE_FAILED, no crash, later sockets fall back', async (t) => {
  const { code, json, stderr } = await runNode(fixture('engine-failure.cjs'))
  t.is(code, 0, `no crash: ${stderr}`)
  const r = json as {
    pending: string[]
    ended: string
    failure: string | null
    later: { capable: boolean; reason: string; same: boolean }
    unhandled: string[]
  }
  t.true(r.pending.length > 0)
  for (const c of r.pending) t.true(c === 'ok' || c === 'ERR_ZC_ENGINE_FAILED', c)
  t.true(r.pending.includes('ERR_ZC_ENGINE_FAILED'), JSON.stringify(r.pending))
  t.true(r.ended === 'ERR_ZC_ENGINE_FAILED' || r.ended === 'ERR_STREAM_DESTROYED', r.ended)
  t.truthy(r.failure, 'the binding reports the errno')
  t.false(r.later.capable, 'a socket adopted afterwards falls back')
  t.regex(r.later.reason, /engine failed/)
  t.true(r.later.same, 'byte-exact through the fallback')
  t.deepEqual(r.unhandled, [])
})

test('net.Socket cross-check: the socket refuses direct writes while owned', async (t) => {
  const { client, close } = await loopbackPair()
  t.teardown(close)
  ZeroCopySocket.from(client)
  t.throws(() => (client as net.Socket).write('x'), { code: 'ERR_ZC_SOCKET_OWNED' })
})
