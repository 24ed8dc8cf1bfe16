import { mkdtempSync, openSync, closeSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { ZeroCopySocket } from '../index'
import { collect, fixture, loopbackPair, patternBytes, runNode, zcTest } from './helpers'

const dir = mkdtempSync(join(tmpdir(), 'zc-sendfile-'))
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

function makeFile(name: string, size: number, seed: number): { path: string; data: Buffer } {
  const path = join(dir, name)
  const data = patternBytes(size, seed)
  writeFileSync(path, data)
  return { path, data }
}

for (const size of [0, 1, 4095, 4097, 12345, 300_001]) {
  zcTest(`sendFile of ${size} bytes arrives byte for byte`, async (t) => {
    const { path, data } = makeFile(`f${size}`, size, size + 1)
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    const received = collect(server)
    const zs = ZeroCopySocket.from(client)
    t.deepEqual(await zs.sendFile(path), { bytes: size })
    await zs.end()
    t.true((await received).equals(data))
  })
}

zcTest('sendFile of 64 MiB, with progress reports that end at the total', async (t) => {
  const { path, data } = makeFile('big', 64 * 1024 * 1024, 3)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  const seen: number[] = []
  const r = await zs.sendFile(path, { onProgress: (sent, total) => (t.is(total, data.length), seen.push(sent)) })
  await zs.end()
  t.is(r.bytes, data.length)
  t.true((await received).equals(data))
  t.true(seen.length > 1, 'several progress reports')
  t.deepEqual(
    [...seen].sort((a, b) => a - b),
    seen,
    'progress never goes back',
  )
  t.is(seen.at(-1), data.length)
})

zcTest('offset/length windows, from a path, an fd and a FileHandle', async (t) => {
  const { path, data } = makeFile('win', 1_000_003, 4)
  const fd = openSync(path, 'r')
  t.teardown(() => closeSync(fd))
  const handle = await open(path)
  t.teardown(() => handle.close())
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  const windows: [string | number | typeof handle, number, number][] = [
    [path, 0, 10],
    [fd, 4096, 4096],
    [handle, 999_999, 4],
    [path, 12_345, 500_000],
    [fd, 1_000_003, 0],
  ]
  const results = await Promise.all(windows.map(([f, offset, length]) => zs.sendFile(f, { offset, length })))
  await zs.end()
  t.deepEqual(
    results.map((r) => r.bytes),
    windows.map(([, , length]) => length),
  )
  const expected = Buffer.concat(windows.map(([, offset, length]) => data.subarray(offset, offset + length)))
  t.true((await received).equals(expected))
  await t.notThrowsAsync(handle.stat(), 'the caller’s handle stays open')
})

zcTest('sendFile interleaved with writes keeps their order', async (t) => {
  const { path, data } = makeFile('inter', 2_000_000, 5)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  const parts: Buffer[] = []
  const ops: Promise<unknown>[] = []
  for (let i = 0; i < 10; i++) {
    const header = Buffer.from(`header ${i}\n`)
    parts.push(header, data.subarray(i * 1000, i * 1000 + 150_000))
    ops.push(zs.write(header), zs.sendFile(path, { offset: i * 1000, length: 150_000 }))
  }
  await Promise.all(ops)
  await zs.end()
  t.true((await received).equals(Buffer.concat(parts)))
})

zcTest('bad files: ENOENT, EISDIR, ranges past the end and non-regular files reject and send nothing (argument types: arguments.spec.ts)', async (t) => {
  const { path } = makeFile('small', 1000, 6)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  await t.throwsAsync(zs.sendFile(join(dir, 'missing')), { code: 'ENOENT' })
  await t.throwsAsync(zs.sendFile(dir), { code: 'EISDIR' })
  await t.throwsAsync(zs.sendFile(path, { offset: 1001 }), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
  await t.throwsAsync(zs.sendFile(path, { offset: 10, length: 991 }), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError })
  await t.throwsAsync(zs.sendFile('/dev/null'), { code: 'ERR_INVALID_ARG_VALUE' })
  await zs.end()
  t.is((await received).length, 0, 'nothing reached the peer')
})

zcTest('a file that shrinks while queued fails with ERR_ZC_FILE_SHRANK, never hangs', async (t) => {
  const { path } = makeFile('shrink', 4 * 1024 * 1024, 7)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause() // keep the file queued behind a large write
  const zs = ZeroCopySocket.from(client)
  const blocker = zs.write(Buffer.alloc(16 * 1024 * 1024, 1))
  // A descriptor is taken and checked (its size read) within the call; a path's open could still
  // be on the thread pool 100 ms later on a loaded machine, and would then see the shrunk file.
  const fd = openSync(path, 'r')
  t.teardown(() => closeSync(fd))
  const sending = zs.sendFile(fd)
  await new Promise((resolve) => setTimeout(resolve, 100))
  truncateSync(path, 1024 * 1024)
  server.resume()
  server.on('data', () => {})
  await t.throwsAsync(sending, { code: 'ERR_ZC_FILE_SHRANK' })
  await blocker
  await new Promise((resolve) => setImmediate(resolve))
  t.true(zs.socket.destroyed, 'the stream broke mid-file: the socket is destroyed')
})

zcTest('AbortSignal withdraws a queued sendFile', async (t) => {
  const { path, data } = makeFile('abort', 1_000_000, 8)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const zs = ZeroCopySocket.from(client)
  const first = zs.write(Buffer.alloc(8 * 1024 * 1024, 2))
  const ac = new AbortController()
  const aborted = zs.sendFile(path, { signal: ac.signal })
  const after = zs.sendFile(path, { offset: 0, length: 10 })
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  await t.throwsAsync(aborted, { code: 'ABORT_ERR' })
  const received = collect(server)
  server.resume()
  await first
  await after
  await zs.end()
  const got = await received
  t.is(got.length, 8 * 1024 * 1024 + 10)
  t.true(got.subarray(8 * 1024 * 1024).equals(data.subarray(0, 10)))
})

zcTest('a throwing onProgress is reported as an uncaught exception and loses nothing', async (t) => {
  const { code, json, stderr } = await runNode(fixture('throwing-progress.cjs'))
  t.is(code, 0, stderr)
  const r = json as { caught: string[]; bytes: number; match: boolean; progressCalls: number }
  t.true(r.match, 'the writes and the file arrived whole, in order')
  t.is(r.bytes, 100000 + (32 << 20) + 300000)
  t.true(r.progressCalls > 0)
  t.is(r.caught.length, r.progressCalls, 'every throw surfaced, once')
})
