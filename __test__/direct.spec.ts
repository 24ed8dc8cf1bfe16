import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs'
import { release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { sendfileNow } from '../src/direct'
import { STUB_ADDON, collect, fdOf, loopbackPair, patternBytes, runChild } from './helpers'

const dir = mkdtempSync(join(tmpdir(), 'zc-direct-'))
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

// cachestat(2) came in Linux 6.5; before it (and off Linux) sendfileNow always returns 0.
const [major = 0, minor = 0] = release().split('.').map(Number)
const inline = process.platform === 'linux' && (major > 6 || (major === 6 && minor >= 5))
const inlineTest = inline ? test : test.skip

/** A freshly written (so page-cached) temp file, opened for reading. */
function cachedFile(t: { teardown(fn: () => void): void }, name: string, size: number, seed: number): { fd: number; data: Buffer } {
  const path = join(dir, name)
  const data = patternBytes(size, seed)
  writeFileSync(path, data)
  const fd = openSync(path, 'r')
  t.teardown(() => closeSync(fd))
  return { fd, data }
}

for (const size of [1, 4096, 100_001]) {
  inlineTest(`a cached ${size}-byte file goes inline, byte for byte`, async (t) => {
    const { fd, data } = cachedFile(t, `whole${size}`, size, size)
    const { client, server, close } = await loopbackPair()
    t.teardown(close)
    const received = collect(server)
    t.is(sendfileNow(fdOf(client), fd, 0, size), size, 'loopback takes it in one call')
    client.end()
    t.true((await received).equals(data))
  })
}

inlineTest('a window sends exactly its bytes; past the end sends nothing', async (t) => {
  const { fd, data } = cachedFile(t, 'window', 50_000, 7)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  t.is(sendfileNow(fdOf(client), fd, 4095, 10_000), 10_000)
  t.is(sendfileNow(fdOf(client), fd, 45_000, 10_000), 5000, 'a short file: the shorter count')
  t.is(sendfileNow(fdOf(client), fd, 50_000, 1), 0)
  t.is(sendfileNow(fdOf(client), fd, 0, 0), 0)
  client.end()
  t.true((await received).equals(Buffer.concat([data.subarray(4095, 14_095), data.subarray(45_000)])))
})

inlineTest('a peer that does not read: returns less than asked, at once, and what went is the start', async (t) => {
  const size = 64 * 1024 * 1024
  const { fd, data } = cachedFile(t, 'full', size, 3)
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  server.pause()
  const started = process.hrtime.bigint()
  let total = 0
  for (let calls = 0; ; calls++) {
    t.true(calls < 1000, 'the socket fills up')
    const n = sendfileNow(fdOf(client), fd, total, size - total)
    t.true(n <= 1024 * 1024, 'at most 1 MiB a call')
    if (n === 0) break
    total += n
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  t.true(ms < 1000, `returned without waiting for the peer (${ms} ms)`)
  t.true(total > 0 && total < size, `${total} of ${size} bytes`)
  const received = collect(server)
  server.resume()
  client.end()
  t.true((await received).equals(data.subarray(0, total)))
})

test('errors are Node-style: a bad socket is EBADF from sendfile; bad arguments throw', async (t) => {
  const { fd } = cachedFile(t, 'err', 100, 1)
  const { client, close } = await loopbackPair()
  t.teardown(close)
  const closedSock = openSync(join(dir, 'err'), 'r')
  closeSync(closedSock)
  if (inline) {
    const err = t.throws(() => sendfileNow(closedSock, fd, 0, 100)) as NodeJS.ErrnoException
    t.is(err.code, 'EBADF')
    t.is(err.errno, -9)
    t.is(err.syscall, 'sendfile')
  } else {
    t.is(sendfileNow(closedSock, fd, 0, 100), 0, 'never inline here')
  }
  t.is(sendfileNow(fdOf(client), closedSock, 0, 100), 0, 'no file: nothing inline, no error')
  t.throws(() => sendfileNow(fdOf(client), fd, -1, 1), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => sendfileNow(fdOf(client), fd, 0, 1.5), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => sendfileNow('3' as unknown as number, fd, 0, 1), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('stub addon (macOS, Windows): never sends inline, returns 0 and no error', async (t) => {
  const direct = fileURLToPath(new URL('../dist/src/direct.js', import.meta.url))
  const script = `
    const { sendfileNow } = require(${JSON.stringify(direct)})
    const file = require('node:fs').openSync(${JSON.stringify(direct)}, 'r') // regular, cached
    let r
    try { r = sendfileNow(999999, file, 0, 100) } catch (e) { r = e.code } // Linux: EBADF
    console.log(JSON.stringify(r))`
  const { code, json, stderr } = await runChild(script, { NAPI_RS_NATIVE_LIBRARY_PATH: STUB_ADDON })
  t.is(code, 0, stderr)
  t.is(json, 0)
})
