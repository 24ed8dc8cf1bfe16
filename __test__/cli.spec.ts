import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { patternBytes, zcTest } from './helpers'

const CLI = fileURLToPath(new URL('../cli/zerocopy-socket.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'zc-cli-'))
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

interface Done {
  code: number | null
  stdout: string[]
  stderr: string
}

function cli(args: string[], onLine?: (line: string) => void): Promise<Done> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const stdout: string[] = []
    let stderr = ''
    createInterface({ input: child.stdout }).on('line', (l) => {
      stdout.push(l)
      onLine?.(l)
    })
    child.stderr.on('data', (c: Buffer) => (stderr += c))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

async function roundTrip(mode: string, data: Buffer): Promise<{ send: Done; recv: Done; out: Buffer }> {
  const file = join(dir, `in-${mode}.bin`)
  const out = join(dir, `out-${mode}.bin`)
  writeFileSync(file, data)
  let listening: (port: number) => void = () => {}
  const port = new Promise<number>((resolve) => (listening = resolve))
  const recv = cli(['recv', '--port', '0', '--out', out, '--quiet'], (l) => {
    const m = /listening on .*:(\d+)$/.exec(l)
    if (m) listening(Number(m[1]))
  })
  const send = await cli(['send', file, '--to', `127.0.0.1:${await port}`, '--mode', mode, '--quiet'])
  return { send, recv: await recv, out: readFileSync(out) }
}

for (const mode of ['file', 'auto', 'always', 'never']) {
  zcTest(`send --mode ${mode} → recv through real processes: SHA-256 matches on both ends`, async (t) => {
    const data = patternBytes(20 * 1024 * 1024 + 17, mode.length)
    const sha = createHash('sha256').update(data).digest('hex')
    const { send, recv, out } = await roundTrip(mode, data)
    t.is(send.code, 0, send.stderr)
    t.is(recv.code, 0, recv.stderr)
    t.true(out.equals(data), 'the received file is identical')
    t.true(recv.stdout.includes(`sha256 ${sha}`), recv.stdout.join('\n'))
    t.true(send.stdout.some((l) => l === `peer confirmed ${data.length} bytes, sha256 ${sha}`), send.stdout.join('\n'))
    t.regex(send.stdout[0], new RegExp(`^sent ${data.length} bytes .* GB/s \\(mode ${mode}\\)$`))
    t.true(send.stdout.some((l) => /zero-copy sends: +\d+/.test(l)))
    t.true(send.stdout.some((l) => /^ {2}fallback: /.test(l)))
  })
}

test('errors exit non-zero with one line and no stack trace', async (t) => {
  const cases: [string[], RegExp][] = [
    [['send', join(dir, 'missing.bin'), '--to', '127.0.0.1:9'], /^zerocopy-socket: no such file: .*missing\.bin \(ENOENT\)$/],
    [['send', CLI, '--to', '127.0.0.1:1'], /^zerocopy-socket: cannot connect to 127\.0\.0\.1:1: connection refused \(ECONNREFUSED\)$/],
    [['send', CLI, '--to', 'no-port'], /^zerocopy-socket: --to must be HOST:PORT/],
    [['send', CLI, '--to', '127.0.0.1:9', '--mode', 'sometimes'], /^error: option .*--mode.* argument 'sometimes' is invalid/],
    [['recv', '--port', '70000'], /^error: option .*--port.* argument '70000' is invalid/],
    [['send', dir, '--to', '127.0.0.1:9'], /^zerocopy-socket: is a directory: .* \(EISDIR\)$/],
    [['frobnicate'], /^error: unknown command 'frobnicate'/],
    [['bench', '--reps', 'x'], /^error: option '--reps <n>' argument 'x' is invalid\. expected a count, got 'x'$/],
    [['bench', '--chunks', '1024,-5'], /^error: option '--chunks <sizes>' argument '1024,-5' is invalid\. expected a size in bytes, got '-5'$/],
  ]
  for (const [args, message] of cases) {
    const r = await cli(args)
    t.not(r.code, 0, args.join(' '))
    t.regex(r.stderr.trim().split('\n')[0], message, args.join(' '))
    t.notRegex(r.stderr, /\n\s+at /, 'no stack trace')
  }
})

test('doctor explains this machine and exits 0', async (t) => {
  const r = await cli(['doctor'])
  t.is(r.code, 0, r.stderr)
  const text = r.stdout.join('\n')
  for (const label of ['io_uring allowed:', 'IORING_OP_SEND_ZC:', 'SEND_ZC_REPORT_USAGE:', 'IORING_OP_SPLICE:', 'RLIMIT_MEMLOCK:', 'self-test:']) {
    t.true(text.includes(label), label)
  }
})

test('doctor explains an io_uring switched off, and still self-tests through the fallback', async (t) => {
  const r = await new Promise<Done>((resolve) => {
    const child = spawn(process.execPath, [CLI, 'doctor'], { env: { ...process.env, ZEROCOPY_SOCKET_DISABLE: '1' } })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c))
    child.on('close', (code) => resolve({ code, stdout: out.split('\n'), stderr: '' }))
  })
  t.is(r.code, 0)
  const text = r.stdout.join('\n')
  t.regex(text, /Zero-copy is OFF: .*ZEROCOPY_SOCKET_DISABLE/)
  t.regex(text, /self-test: +4 MiB went out through the fallback/)
})
