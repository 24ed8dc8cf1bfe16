// Loading without any native binding: the package must load, report `no-binding` and fall back.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { NO_ADDON, runChild } from './helpers'

const env = { NAPI_RS_NATIVE_LIBRARY_PATH: NO_ADDON }
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** The triple napi-rs names this platform's package after (binding.js looks for it). */
function expectedTriple(): string {
  if (process.platform === 'win32') return `win32-${process.arch}-msvc`
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime
  return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c))
  child.stderr.on('data', (c: Buffer) => (stderr += c))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

test('require() succeeds; probe() says no-binding with the triple and the loader’s own message', async (t) => {
  const { code, json, stderr } = await runChild('console.log(JSON.stringify(zc.probe()))', env)
  t.is(code, 0, stderr)
  const r = json as { supported: boolean; ioUring: boolean; ops: { sendZc: boolean }; reason: { code: string; errno: null; message: string } }
  t.false(r.supported)
  t.false(r.ioUring)
  t.false(r.ops.sendZc)
  t.is(r.reason.code, 'no-binding')
  t.is(r.reason.errno, null)
  // What is missing and the command that fixes it; the loader's own errors are the warning's
  // `cause` and doctor's `binding.loadErrors` (usability-warning.spec.ts, doctor.spec.ts).
  t.true(r.reason.message.includes(`npm install @zerocopy-socket/binding-${expectedTriple()}`), r.reason.message)
})

test('ESM import of the package succeeds and names the same exports', async (t) => {
  const src = `import { ZeroCopySocket, BufferPool, probe, sendZcSync } from ${JSON.stringify(`${ROOT}dist/index.js`)}
    console.log(JSON.stringify([typeof ZeroCopySocket.connect, typeof BufferPool, typeof sendZcSync, probe().reason.code]))`
  const { code, stdout, stderr } = await run(['--input-type=module', '-e', src])
  t.is(code, 0, stderr)
  t.deepEqual(JSON.parse(stdout.trim()), ['function', 'function', 'function', 'no-binding'])
})

test('sendZcSync throws ERR_ZC_UNSUPPORTED (arguments still validated); BufferPool works unregistered', async (t) => {
  const script = `
    const codes = []
    for (const data of [Buffer.from('x'), 'nope']) {
      try { zc.sendZcSync(1, data); codes.push('no error') } catch (e) { codes.push(e.code) }
    }
    const pool = new zc.BufferPool({ size: 4096, count: 3 })
    const bufs = [pool.acquire(), pool.acquire(), pool.acquire()]
    let exhausted = null
    try { pool.acquire() } catch (e) { exhausted = e.code }
    pool.release(bufs[1])
    console.log(JSON.stringify({ codes, registered: pool.registered, reason: pool.reason, lengths: bufs.map((b) => b.length),
      distinct: new Set(bufs.map((b) => b.buffer)).size, exhausted, again: pool.acquire() === bufs[1] }))`
  const { code, json, stderr } = await runChild(script, env)
  t.is(code, 0, stderr)
  const r = json as { codes: string[]; registered: boolean; reason: string; lengths: number[]; distinct: number; exhausted: string; again: boolean }
  t.deepEqual(r.codes, ['ERR_ZC_UNSUPPORTED', 'ERR_INVALID_ARG_TYPE'])
  t.false(r.registered)
  t.regex(r.reason, /native binding .* did not load/)
  t.deepEqual(r.lengths, [4096, 4096, 4096])
  t.is(r.distinct, 3)
  t.is(r.exhausted, 'ERR_ZC_POOL_EXHAUSTED')
  t.true(r.again)
})

test('sendFile of a caller’s fd works without a binding (no dup: the caller’s own descriptor is read)', async (t) => {
  const script = `
    const fs = require('node:fs'), os = require('node:os'), path = require('node:path'), crypto = require('node:crypto')
    const { hashServer } = require(${JSON.stringify(`${ROOT}__test__/fixtures/hash-server.cjs`)})
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-nobinding-'))
    const data = crypto.randomBytes(3 * 1024 * 1024 + 5)
    fs.writeFileSync(path.join(dir, 'f'), data)
    const fd = fs.openSync(path.join(dir, 'f'), 'r')
    const server = hashServer(async (received) => {
      fs.closeSync(fd)
      fs.rmSync(dir, { recursive: true })
      const sent = crypto.createHash('sha256').update(data.subarray(11)).digest('hex')
      console.log(JSON.stringify({ received, sent, bytes: data.length - 11, result }))
    })
    let result
    server.listen(0, '127.0.0.1', async () => {
      const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port })
      result = await zs.sendFile(fd, { offset: 11 })
      await zs.end()
    })`
  const { code, json, stderr } = await runChild(script, env)
  t.is(code, 0, stderr)
  const r = json as { received: { bytes: number; sha256: string }; sent: string; bytes: number; result: { bytes: number } }
  t.is(r.received.bytes, r.bytes)
  t.is(r.received.sha256, r.sent)
  t.is(r.result.bytes, r.bytes)
})

test('zerocopy-socket doctor prints the no-binding reason and exits 3', async (t) => {
  const { code, stdout, stderr } = await run(['dist/cli/zerocopy-socket.js', 'doctor'])
  t.is(code, 3, stderr)
  t.regex(stdout, /^native binding: +none \(no-binding\): @zerocopy-socket\/binding-\S+ did not load/m)
  t.regex(stdout, /^self-test: +4 MiB went out through the fallback/m)
  t.regex(stdout, /^Zero-copy is OFF/m)
})
