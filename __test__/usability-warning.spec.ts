// Issue 19 item 4: a missing binding says so, once, in one sentence with the fix, and Node's
// own switches silence it.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { NO_ADDON, runChild } from './helpers'
import { PREBUILT_TRIPLES, triple } from '../src/native'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NO_BINDING = { NAPI_RS_NATIVE_LIBRARY_PATH: NO_ADDON }

/**
 * Two sockets and one respondWithFile fall back (each would warn if the warning were not once
 * per process); every `'warning'` event is recorded, and the last stdout line says what happened.
 */
const SCRIPT = `
const net = require('node:net'), http = require('node:http'), fs = require('node:fs'), os = require('node:os'), path = require('node:path')
const zc = require(${JSON.stringify(ROOT)})
const warnings = []
const chain = (e) => { const m = []; for (let c = e; c && m.length < 20; c = c.cause) m.push(c.message); return m.join(' | ') }
process.on('warning', (w) => warnings.push({ name: w.name, code: w.code, message: w.message, cause: chain(w.cause) }))
const probed = zc.probe().reason?.code
;(async () => {
  const server = net.createServer((s) => s.resume()).listen(0, '127.0.0.1')
  await new Promise((r) => server.once('listening', r))
  const stats = []
  for (let i = 0; i < 2; i++) {
    const zs = await zc.ZeroCopySocket.connect({ host: '127.0.0.1', port: server.address().port })
    await zs.write(Buffer.alloc(100000, i))
    await zs.end()
    stats.push(zs.stats.fallbackReason)
    zs.destroy()
  }
  server.close()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zc-warn-'))
  fs.writeFileSync(path.join(dir, 'f'), 'hello')
  const web = http.createServer((req, res) => zc.respondWithFile(res, path.join(dir, 'f')).catch(() => res.destroy())).listen(0, '127.0.0.1')
  await new Promise((r) => web.once('listening', r))
  const body = await new Promise((resolve) => http.get({ port: web.address().port, host: '127.0.0.1' }, (res) => { let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => resolve(b)) }))
  web.close()
  fs.rmSync(dir, { recursive: true })
  setImmediate(() => console.log(JSON.stringify({ probed, stats, body, warnings })))
})()
`

interface Outcome {
  code: number | null
  stderr: string
  result: { probed: string; stats: string[]; body: string; warnings: { name: string; code: string; message: string; cause: string }[] }
}

function run(nodeArgs: string[], env: Record<string, string>): Promise<Outcome> {
  const child = spawn(process.execPath, [...nodeArgs, '-e', SCRIPT], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c))
  child.stderr.on('data', (c: Buffer) => (stderr += c))
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code, stderr, result: JSON.parse(stdout.trim().split('\n').pop() || 'null') as Outcome['result'] })),
  )
}

/** Lines Node printed for our warning. */
const printed = (stderr: string): string[] => stderr.split('\n').filter((l) => l.includes('ZC_NO_BINDING'))

test('no binding: exactly one ZC_NO_BINDING warning for the whole process, with the loader’s error as cause', async (t) => {
  const { code, stderr, result } = await run([], NO_BINDING)
  t.is(code, 0, stderr)
  t.is(result.probed, 'no-binding')
  t.is(result.body, 'hello')
  t.is(result.warnings.length, 1, JSON.stringify(result.warnings))
  const [w] = result.warnings
  t.is(w.name, 'ZeroCopySocketWarning')
  t.is(w.code, 'ZC_NO_BINDING')
  t.is(w.message, result.stats[0])
  t.true(w.cause.includes(NO_ADDON), w.cause)
  const lines = printed(stderr)
  t.is(lines.length, 1, stderr)
  t.regex(lines[0], /^\(node:\d+\) \[ZC_NO_BINDING\] ZeroCopySocketWarning: The native binding /)
})

test('the no-binding message: one sentence, what is missing and the one command, no npm bug, no wasm32-wasi', async (t) => {
  const { result } = await run([], NO_BINDING)
  const message = result.stats[0]
  t.is(message, result.stats[1])
  t.true(message.includes(`\`npm install @zerocopy-socket/binding-${triple()}\``), message)
  t.false(/\n/.test(message))
  t.is(message.match(/[.;] [A-Z]/g), null, `one sentence: ${message}`)
  t.true(message.length < 200, `${message.length} characters`)
  t.notRegex(message, /wasm32|wasi|npm\/cli|npm has a bug|package-lock/i)
})

test('ERR_ZC_UNSUPPORTED from sendZcSync without a binding carries the loader’s error as cause', async (t) => {
  const { code, json, stderr } = await runChild(
    `try { zc.sendZcSync(1, Buffer.from('x')) } catch (e) {
      const causes = []; for (let c = e.cause; c && causes.length < 20; c = c.cause) causes.push(c.message)
      console.log(JSON.stringify({ code: e.code, message: e.message, causes })) }`,
    NO_BINDING,
  )
  t.is(code, 0, stderr)
  const r = json as { code: string; message: string; causes: string[] }
  t.is(r.code, 'ERR_ZC_UNSUPPORTED')
  t.true(r.message.includes(`npm install @zerocopy-socket/binding-${triple()}`), r.message)
  t.true(
    r.causes.some((m) => m.includes(NO_ADDON)),
    r.causes.join('\n'),
  )
})

for (const [what, args, env] of [
  ['--no-warnings', ['--no-warnings'], {}],
  ['NODE_NO_WARNINGS=1', [], { NODE_NO_WARNINGS: '1' }],
  ['--disable-warning=ZC_NO_BINDING', ['--disable-warning=ZC_NO_BINDING'], {}],
  ['--disable-warning=ZeroCopySocketWarning', ['--disable-warning=ZeroCopySocketWarning'], {}],
] as const) {
  test(`the warning is silenced by ${what}`, async (t) => {
    const { code, stderr, result } = await run([...args], { ...NO_BINDING, ...env })
    t.is(code, 0, stderr)
    t.is(result.body, 'hello')
    t.deepEqual(printed(stderr), [], stderr)
  })
}

test('with a binding, nothing is warned', async (t) => {
  const { code, stderr, result } = await run([], {})
  t.is(code, 0, stderr)
  t.deepEqual(result.warnings, [])
  t.deepEqual(printed(stderr), [])
})

test('loading the package and probe() alone do not warn (only a fallback does)', async (t) => {
  const child = spawn(process.execPath, ['-e', `const zc = require(${JSON.stringify(ROOT)}); console.log(zc.probe().reason.code)`], {
    env: { ...process.env, ...NO_BINDING },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => (out += c))
  child.stderr.on('data', (c: Buffer) => (err += c))
  await new Promise((r) => child.on('close', r))
  t.is(out.trim(), 'no-binding')
  t.deepEqual(printed(err), [])
})

test('the triples the message offers an install command for are the npm/ packages', (t) => {
  const dirs = readdirSync(new URL('../npm/', import.meta.url)).sort()
  t.deepEqual([...PREBUILT_TRIPLES].sort(), dirs)
})
