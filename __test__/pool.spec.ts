import test from 'ava'

import { BufferPool, ZeroCopySocket } from '../index'
import { unreleasedRequests } from '../src/engine'
import { collect, fixture, hashReceived, loopbackPair, patternBytes, sha256, zcSerial, zcTest } from './helpers'

zcTest('a pool registers its memory with the ring and hands out each buffer once', (t) => {
  const pool = new BufferPool({ size: 4096, count: 3 })
  t.true(pool.registered, pool.reason ?? '')
  t.is(pool.reason, null)
  const bufs = [pool.acquire(), pool.acquire(), pool.acquire()]
  t.true(bufs.every((b) => b.length === 4096))
  t.is(new Set(bufs.map((b) => b.buffer)).size, 3, 'distinct memory')
  t.is(pool.available, 0)
  t.throws(() => pool.acquire(), { code: 'ERR_ZC_POOL_EXHAUSTED' })
  pool.release(bufs[1])
  pool.release(bufs[1]) // twice: no-op
  t.is(pool.available, 1)
  t.is(pool.acquire(), bufs[1])
  t.throws(() => pool.release(Buffer.alloc(4096)), { code: 'ERR_INVALID_ARG_VALUE' })
})

zcTest('writes of pool buffers (fixed-buffer SEND_ZC) arrive byte for byte', async (t) => {
  const pool = new BufferPool({ size: 64 * 1024, count: 8 })
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const sent: Buffer[] = []
  const window: Promise<unknown>[] = []
  for (let i = 0; i < 200; i++) {
    if (window.length === 8) await window.shift()
    const buf = pool.acquire()
    const len = 1 + ((i * 7919) % buf.length)
    patternBytes(len, i + 1).copy(buf)
    sent.push(Buffer.from(buf.subarray(0, len)))
    window.push(zs.write(buf.subarray(0, len)).then((r) => (t.true(r.zeroCopy), pool.release(buf))))
  }
  await Promise.all(window)
  await zs.end()
  t.is((await received).sha256, sha256(...sent))
  t.is(pool.available, 8)
})

zcTest('a buffer released while its write is in flight is not handed out until the write settles', async (t) => {
  const pool = new BufferPool({ size: 1 << 20, count: 1 })
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const filler = zs.write(Buffer.alloc(16 << 20, 9)) // fills the socket buffers
  const buf = pool.acquire()
  buf.fill(5)
  const w = zs.write(buf)
  pool.release(buf)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.is(pool.available, 0, 'still in the kernel')
  t.throws(() => pool.acquire(), { code: 'ERR_ZC_POOL_EXHAUSTED' })
  const received = collect(server)
  server.resume()
  await filler
  await w
  t.is(pool.available, 1)
  await zs.end()
  const got = await received
  t.true(got.subarray(16 << 20).equals(Buffer.alloc(1 << 20, 5)))
})

zcSerial('pool buffers survive GC of the pool while their writes are in flight', async (t) => {
  const gc = (globalThis as { gc?: () => void }).gc
  t.truthy(gc, 'run with --expose-gc')
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = hashReceived(server)
  const zs = ZeroCopySocket.from(client, { zeroCopy: 'always' })
  const expected: Buffer[] = []
  const writes: Promise<unknown>[] = []
  for (let round = 0; round < 5; round++) {
    let pool: BufferPool | null = new BufferPool({ size: 128 * 1024, count: 4 })
    for (let i = 0; i < 4; i++) {
      const buf = pool.acquire()
      buf.fill(round * 4 + i)
      expected.push(Buffer.from(buf))
      writes.push(zs.write(buf))
    }
    pool = null
    gc?.()
  }
  gc?.()
  await Promise.all(writes)
  await zs.end()
  t.is((await received).sha256, sha256(...expected))
  t.is(unreleasedRequests(), 0)
})

const POOL_CHILD = fixture('pool-memlock.cjs')

const isRoot = process.getuid?.() === 0
if (!isRoot) console.error('\n!!! not root: the RLIMIT_MEMLOCK pool test is SKIPPED (it drops CAP_IPC_LOCK with setpriv)\n')

;(isRoot ? test : test.skip)('with a low RLIMIT_MEMLOCK and no CAP_IPC_LOCK the pool falls back to ordinary memory and says why', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync('setpriv', ['--bounding-set=-ipc_lock', 'prlimit', '--memlock=65536:65536', process.execPath, POOL_CHILD], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  t.is(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null')
  t.false(out.registered)
  t.regex(out.reason, /ENOMEM.*RLIMIT_MEMLOCK: 65536 bytes/)
  t.true(out.match, 'bytes identical through ordinary memory')
})
