import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import test, { type ExecutionContext } from 'ava'

import { fixture, patternBytes, zcTest } from './helpers'

const CLI = fileURLToPath(new URL('../dist/cli/zerocopy-socket.js', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'zc-cli-'))
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

interface Done {
  code: number | null
  stdout: string[]
  stderr: string
}

function cli(args: string[], onLine?: (line: string) => void, opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Done> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd, env: { ...process.env, ...opts.env } })
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
    t.true(
      send.stdout.some((l) => l === `peer confirmed ${data.length} bytes, sha256 ${sha}`),
      send.stdout.join('\n'),
    )
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
    [['bench', '--reps', 'x'], /^error: option '--reps <n>' argument 'x' is invalid\. expected a count, got 'x' \(run with --help for usage\)$/],
    [
      ['bench', '--chunks', '1024,-5'],
      /^error: option '--chunks <sizes>' argument '1024,-5' is invalid\. expected a size in bytes from 1 to 67108864, got '-5' \(run with --help for usage\)$/,
    ],
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
  t.is(r.code, 2, 'doctor exits 2: the fallback')
  const text = r.stdout.join('\n')
  t.regex(text, /Zero-copy is OFF: .*ZEROCOPY_SOCKET_DISABLE/)
  t.regex(text, /self-test: +4 MiB went out through the fallback/)
})

/** A failed run: non-zero exit, exactly one line on stderr matching `message`, no stack trace. */
function failsWithOneLine(t: ExecutionContext, r: Done, message: RegExp, what: string): void {
  t.not(r.code, 0, `${what}: exit code`)
  const lines = r.stderr.replace(/\n$/, '').split('\n')
  t.is(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr}`)
  t.regex(lines[0], message, what)
  t.false(
    lines.some((l) => l.startsWith('    at ')),
    `${what}: no stack trace`,
  )
}

test('recv --out that cannot be written (a directory, a missing directory) fails before listening, with one line', async (t) => {
  const missing = join(dir, 'no-such-dir', 'out.bin')
  const cases: [string, RegExp][] = [
    [dir, /^zerocopy-socket: is a directory: .*zc-cli-\w+ \(EISDIR\)$/],
    [missing, /^zerocopy-socket: cannot create .*no-such-dir\/out\.bin: its directory does not exist \(ENOENT\)$/],
  ]
  for (const [out, message] of cases) {
    // Were it to listen anyway (as it used to), a sender connects: the failure must not wait for one.
    const r = await cli(['recv', '--port', '0', '--out', out, '--quiet'], (l) => {
      const m = /listening on .*:(\d+)$/.exec(l)
      if (m)
        net.connect(Number(m[1]), '127.0.0.1', function (this: net.Socket) {
          this.on('error', () => {}).end('raw bytes')
        })
    })
    failsWithOneLine(t, r, message, `--out ${out}`)
    t.false(
      r.stdout.some((l) => l.startsWith('listening on')),
      'it did not listen',
    )
  }
})

for (const mode of ['file', 'auto', 'always', 'never']) {
  test(`send --mode ${mode} to a receiver that dies mid-transfer: one line, exit 1`, async (t) => {
    const file = join(dir, 'dying.bin')
    if (!existsSync(file)) writeFileSync(file, Buffer.alloc(32 << 20, 0x5a))
    const receiver = spawn(process.execPath, [fixture('dying-receiver.cjs'), String(1 << 20)], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => receiver.kill())
    const [port] = await new Promise<string[]>((resolve) => createInterface({ input: receiver.stdout }).once('line', (l) => resolve([l])))
    const r = await cli(['send', file, '--to', `127.0.0.1:${port}`, '--mode', mode, '--quiet'])
    failsWithOneLine(
      t,
      r,
      new RegExp(`^zerocopy-socket: the receiver at 127\\.0\\.0\\.1:${port} closed the connection after \\d+ of ${32 << 20} bytes \\(\\w+\\)$`),
      mode,
    )
    t.is(r.code, 1)
  })
}

test('send --to without a usable port (0, missing) fails with one line before connecting', async (t) => {
  for (const to of ['127.0.0.1:0', '127.0.0.1:', '[::1]', 'localhost:65536']) {
    const r = await cli(['send', CLI, '--to', to])
    failsWithOneLine(
      t,
      r,
      new RegExp(`^zerocopy-socket: --to must be HOST:PORT with a port from 1 to 65535, got '${to.replace(/[[\].]/g, '\\$&')}' \\(ERR_INVALID_ARG_VALUE\\)$`),
      to,
    )
  }
})

test('bench rejects sizes it cannot run and unknown variants with one line, before any child starts', async (t) => {
  const cases: [string[], RegExp][] = [
    [
      ['--chunks', '99999999999999'],
      /^error: option '--chunks <sizes>' argument '99999999999999' is invalid\. expected a size in bytes from 1 to 67108864, got '99999999999999' \(run with --help for usage\)$/,
    ],
    [
      ['--only', 'nosuch'],
      /^error: option '--only <variants>' argument 'nosuch' is invalid\. unknown variant 'nosuch' \(known: node_write, .*, c_splice, sink\) \(run with --help for usage\)$/,
    ],
    [['--only', 'zc_auto,nosuch'], /^error: option '--only <variants>' argument 'zc_auto,nosuch' is invalid\. unknown variant 'nosuch' /],
  ]
  for (const [args, message] of cases) {
    const cwd = mkdtempSync(join(dir, 'bench-cwd-'))
    const scratch = mkdtempSync(join(dir, 'bench-tmp-'))
    const r = await cli(['bench', ...args], undefined, { cwd, env: { TMPDIR: scratch } })
    failsWithOneLine(t, r, message, args.join(' '))
    t.deepEqual(readdirSync(scratch), [], 'no scratch directory was even made')
  }
})

test('bench keeps its scratch files in a temporary directory, removed after a run and after a failure, never in the checkout or the cwd', async (t) => {
  // Versions before this one left `.bench/` in the checkout; start from none.
  rmSync(join(ROOT, '.bench'), { recursive: true, force: true })
  const run = async (env: Record<string, string>): Promise<Done> => {
    const cwd = mkdtempSync(join(dir, 'bench-cwd-'))
    const scratch = mkdtempSync(join(dir, 'bench-tmp-'))
    const r = await cli(['bench', '--quick', '--only', 'zc_auto', '--chunks', '65536', '--total', String(1 << 20)], undefined, {
      cwd,
      env: { TMPDIR: scratch, ...env },
    })
    t.false(existsSync(join(cwd, '.bench')), 'no .bench/ in the cwd')
    t.false(existsSync(join(ROOT, '.bench')), 'no .bench/ in the checkout')
    t.deepEqual(readdirSync(scratch), [], 'the scratch directory is gone')
    return r
  }
  const ok = await run({})
  t.is(ok.code, 0, ok.stderr)
  t.true(
    ok.stdout.some((l) => l.startsWith('zc_auto')),
    ok.stdout.join('\n'),
  )
  // No compiler on PATH: the harness fails after making its scratch directory.
  const noGcc = mkdtempSync(join(dir, 'bin-'))
  const failed = await run({ PATH: noGcc })
  failsWithOneLine(t, failed, /^zerocopy-socket: gcc is not installed: the benchmark compiles its C receiver \(ENOENT\)$/, 'without gcc')
})
