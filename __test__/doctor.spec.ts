// Issue 19 item 4: `zerocopy-socket doctor` (--json, versions, the HTTP body path, exit status)
// and `zerocopy-socket --version`.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { release } from 'node:os'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { NO_ADDON } from './helpers'
import { probe } from '../index'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = `${ROOT}dist/cli/zerocopy-socket.js`
const PKG = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { name: string; version: string }

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c))
  child.stderr.on('data', (c: Buffer) => (stderr += c))
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
}

/** The keys `doctor --json` promises (README "doctor"); more may come, none may go. */
const KEYS = [
  'arch',
  'binding',
  'exitCode',
  'fileCache',
  'http',
  'ioUring',
  'kernel',
  'memlockLimit',
  'node',
  'ops',
  'package',
  'platform',
  'reason',
  'registeredBuffers',
  'reportUsage',
  'schema',
  'selfTest',
  'triple',
  'zeroCopy',
]

const supported = probe().supported

test('zerocopy-socket --version prints the package version', async (t) => {
  for (const flag of ['--version', '-V']) {
    const r = await cli([flag])
    t.is(r.code, 0, r.stderr)
    t.is(r.stdout.trim(), PKG.version)
  }
})

test('doctor --json: stable keys, versions, the HTTP body path, and the exit status it reports', async (t) => {
  const r = await cli(['doctor', '--json'])
  const d = JSON.parse(r.stdout)
  t.deepEqual(Object.keys(d).sort(), KEYS)
  t.is(d.schema, 1)
  t.is(r.code, d.exitCode)
  t.is(d.exitCode, supported ? 0 : 2)
  t.is(d.zeroCopy, supported)
  t.deepEqual(d.package, { name: PKG.name, version: PKG.version })
  t.is(d.node, process.version)
  t.is(d.kernel, release())
  t.deepEqual(Object.keys(d.binding).sort(), ['loadErrors', 'loaded', 'package', 'source', 'version'])
  t.true(d.binding.loaded)
  t.is(d.binding.source, 'local') // the checkout's own build
  t.is(d.binding.version, PKG.version)
  t.deepEqual(d.binding.loadErrors, [])
  t.is(d.binding.package, `@zerocopy-socket/binding-${d.triple}`)
  t.deepEqual(Object.keys(d.http).sort(), ['body', 'cachestat', 'inlineSendfile'])
  t.deepEqual(d.fileCache, {
    maxEntries: 256,
    freshMs: 1000,
    maxBodyBytes: 16 << 20,
    checkMs: 10,
    bodyMax: 64 * 1024,
    loopbackBodyMax: 1 << 20,
    keepsBodies: true,
  })
  t.is(typeof d.ops.sendZc, 'boolean')
  t.is(d.selfTest.bytes, 4 << 20)
  if (supported) {
    t.is(d.http.body, 'engine')
    t.true(d.selfTest.zeroCopy)
    t.true(d.selfTest.zeroCopySends > 0)
    t.is(d.reason, null)
  }
})

test('doctor in words: sendFile is sendfile(2), versions on top, the exit status explained', async (t) => {
  const r = await cli(['doctor'])
  t.is(r.code, supported ? 0 : 2, r.stderr)
  t.regex(r.stdout, new RegExp(`^zerocopy-socket: +${PKG.version.replace(/\./g, '\\.')} \\(Node\\.js ${process.version}\\)$`, 'm'))
  t.regex(r.stdout, /^HTTP file bodies: /m)
  t.regex(
    r.stdout,
    /^HTTP file cache: +up to 256 descriptors, each reused for 1000 ms; bytes of files up to 64\.0 KiB kept \(1\.0 MiB for loopback peers; 16\.0 MiB in all\), checked every 10 ms$/m,
  )
  t.regex(r.stdout, /^Exit status \d \(0 zero-copy, 2 fallback, 3 no native binding\)\.$/m)
  if (supported) t.regex(r.stdout, /sendFile\(\) moves file bytes page-cache-to-socket with sendfile\(2\)/)
  t.notRegex(r.stdout, /sendFile\(\)[^.]*SEND_ZC/)
})

test('doctor with io_uring switched off: exit 2, reason disabled-by-env', async (t) => {
  const r = await cli(['doctor', '--json'], { ZEROCOPY_SOCKET_DISABLE: '1' })
  const d = JSON.parse(r.stdout)
  t.is(r.code, 2)
  t.is(d.exitCode, 2)
  t.false(d.zeroCopy)
  t.is(d.reason.code, 'disabled-by-env')
  t.is(d.http.body, 'stream')
  t.false(d.selfTest.zeroCopy)
})

test('doctor without a binding: exit 3, the message once, ops unknown, the loader’s errors in --json', async (t) => {
  const text = await cli(['doctor'], { NAPI_RS_NATIVE_LIBRARY_PATH: NO_ADDON })
  t.is(text.code, 3, text.stderr)
  const message = `npm install @zerocopy-socket/binding-`
  t.is(text.stdout.split(message).length - 1, 1, `the fix appears once:\n${text.stdout}`)
  t.is((text.stdout + text.stderr).split('ZC_NO_BINDING').length - 1, 0, 'no warning on top of the report')
  t.regex(text.stdout, /^IORING_OP_SEND_ZC: +unknown \(no native binding to ask\)$/m)
  t.regex(text.stdout, /^io_uring allowed: +unknown/m)
  t.notRegex(text.stdout, /wasm32|npm\/cli\/issues/)

  const json = await cli(['doctor', '--json'], { NAPI_RS_NATIVE_LIBRARY_PATH: NO_ADDON })
  t.is(json.code, 3)
  const d = JSON.parse(json.stdout)
  t.deepEqual(Object.keys(d).sort(), KEYS)
  t.is(d.exitCode, 3)
  t.false(d.binding.loaded)
  t.is(d.binding.source, null)
  t.is(d.reason.code, 'no-binding')
  for (const v of Object.values(d.ops)) t.is(v, null)
  t.is(d.ioUring.allowed, null)
  t.is(d.reportUsage, null)
  t.false(d.http.inlineSendfile)
  t.false(d.fileCache.keepsBodies)
  t.true(
    d.binding.loadErrors.some((l: string) => l.includes(NO_ADDON)),
    d.binding.loadErrors.join('\n'),
  )
  t.false(d.selfTest.zeroCopy)
  t.is(d.selfTest.bytes, 4 << 20)
})
