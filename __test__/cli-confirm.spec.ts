// `zerocopy-socket send` exits 0 only when the receiver confirmed the file's byte count and
// SHA-256, and `recv` tells the sender why it failed (issue 23, item 10): real processes, real
// write failures (a file size limit, EFBIG; a full tmpfs, ENOSPC, where this runs as root),
// files that are not regular refused before connecting, and receivers that lie.
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

import test, { type ExecutionContext } from 'ava'

import { patternBytes } from './helpers'

const CLI = fileURLToPath(new URL('../dist/cli/zerocopy-socket.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'zc-confirm-'))

const data = patternBytes((3 << 20) + 5, 9)
const file = join(dir, 'three-mb.bin')
writeFileSync(file, data)
const sha = createHash('sha256').update(data).digest('hex')

interface Done {
  code: number | null
  stdout: string[]
  stderr: string
}

/** Runs `zerocopy-socket ...args` (through `sh -c '<prefix>; exec node ...'` when `prefix` is given); killed after 60 s. */
function cli(args: string[], opts: { prefix?: string; onLine?: (line: string) => void } = {}): Promise<Done> {
  return new Promise((resolve) => {
    const [command, argv] = opts.prefix
      ? ['sh', ['-c', `${opts.prefix} && exec "$0" "$@"`, process.execPath, CLI, ...args]]
      : [process.execPath, [CLI, ...args]]
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
    const stdout: string[] = []
    let stderr = ''
    createInterface({ input: child.stdout }).on('line', (l) => {
      stdout.push(l)
      opts.onLine?.(l)
    })
    child.stderr.on('data', (c: Buffer) => (stderr += c))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** `recv --out out` (under `prefix`), and the port it listens on. */
function receiver(out: string, prefix?: string): { port: Promise<number>; done: Promise<Done> } {
  let listening: (port: number) => void = () => {}
  const port = new Promise<number>((resolve) => (listening = resolve))
  const done = cli(['recv', '--port', '0', '--out', out, '--quiet'], {
    prefix,
    onLine: (l) => {
      const m = /listening on .*:(\d+)$/.exec(l)
      if (m) listening(Number(m[1]))
    },
  })
  void done.then(() => listening(0))
  return { port, done }
}

function oneLine(t: ExecutionContext, r: Done, message: RegExp, what: string): void {
  t.is(r.code, 1, `${what}: exit status; stderr: ${r.stderr}`)
  const lines = r.stderr.replace(/\n$/, '').split('\n')
  t.is(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr}`)
  t.regex(lines[0], message, what)
}

for (const mode of ['file', 'auto']) {
  test.serial(
    `--mode ${mode}: a receiver whose write fails (RLIMIT_FSIZE 1 MiB: EFBIG) makes both exit 1, the sender with the receiver's reason`,
    async (t) => {
      const out = join(dir, `efbig-${mode}.bin`)
      const recv = receiver(out, 'ulimit -f 2048')
      const send = await cli(['send', file, '--to', `127.0.0.1:${await recv.port}`, '--mode', mode, '--quiet'])
      const got = await recv.done
      oneLine(t, got, /^zerocopy-socket: cannot write .*efbig-\w+\.bin: EFBIG: file too large, write$/, 'recv')
      oneLine(t, send, /^zerocopy-socket: the receiver at 127\.0\.0\.1:\d+ failed: cannot write .*: EFBIG: file too large, write$/, 'send')
      t.false(
        send.stdout.some((l) => l.startsWith('peer confirmed')),
        send.stdout.join('\n'),
      )
    },
  )
}

/** A 1 MiB tmpfs this process mounted, or why it cannot (not root, no mount(8), a container without CAP_SYS_ADMIN). */
function smallTmpfs(): { path: string } | { why: string } {
  const path = join(dir, 'tmpfs')
  mkdirSync(path)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', path], { stdio: 'pipe' })
    return { path }
  } catch (e) {
    return { why: String((e as { stderr?: Buffer }).stderr ?? e).trim() }
  }
}
const tmpfs = smallTmpfs()
test.after.always(() => {
  if ('path' in tmpfs) execFileSync('umount', [tmpfs.path])
  rmSync(dir, { recursive: true, force: true })
})
if (!('path' in tmpfs)) console.warn(`cli-confirm.spec.ts: the ENOSPC test cannot run here: mounting a tmpfs failed (${tmpfs.why})`)

;('path' in tmpfs ? test.serial : test.serial.skip)('a receiver on a full disk (1 MiB tmpfs: ENOSPC) makes both exit 1, the sender with ENOSPC', async (t) => {
  const out = join((tmpfs as { path: string }).path, 'copy.bin')
  const recv = receiver(out)
  const send = await cli(['send', file, '--to', `127.0.0.1:${await recv.port}`, '--quiet'])
  const got = await recv.done
  oneLine(t, got, /^zerocopy-socket: cannot write .*copy\.bin: ENOSPC: no space left on device, write$/, 'recv')
  oneLine(t, send, /^zerocopy-socket: the receiver at 127\.0\.0\.1:\d+ failed: cannot write .*copy\.bin: ENOSPC: no space left on device, write$/, 'send')
})

test.serial('send refuses /dev/zero and a FIFO before connecting: exit 1, no connection made', async (t) => {
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  let connections = 0
  const server = net.createServer((s) => {
    connections++
    s.destroy()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const { port } = server.address() as net.AddressInfo
  for (const path of ['/dev/zero', fifo]) {
    const r = await cli(['send', path, '--to', `127.0.0.1:${port}`, '--quiet'])
    oneLine(t, r, /^zerocopy-socket: not a regular file: .* \(a FIFO, device or socket has no size to announce\) \(ERR_INVALID_ARG_VALUE\)$/, path)
  }
  t.is(connections, 0)
})

/**
 * A receiver that reads the header and the body, then answers with `reply(bytes, sha256)` of
 * what it got (`null`: closes without a word); `failAfter` bytes: answers `ZCS1 ERR` at once
 * instead and drops the rest.
 */
async function fakeReceiver(
  reply: (bytes: number, sha256: string) => string | null,
  failAfter?: number,
): Promise<{ port: number; close(): void; got: Promise<number> }> {
  let got!: (n: number) => void
  const gotP = new Promise<number>((r) => (got = r))
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const hash = createHash('sha256')
    let n = 0
    let head = 12
    let failed = false
    s.on('error', () => {})
    s.on('data', (c: Buffer) => {
      const body = c.subarray(Math.min(head, c.length))
      head -= c.length - body.length
      n += body.length
      hash.update(body)
      if (failAfter !== undefined && n >= failAfter && !failed) {
        failed = true
        s.write('ZCS1 ERR ENOSPC cannot write copy.bin: ENOSPC: no space left on device, write\n')
      }
    })
    s.on('end', () => {
      got(n)
      const line = failed ? null : reply(n, hash.digest('hex'))
      if (line === null) s.end()
      else s.end(line)
    })
    s.on('close', () => got(n))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close(), got: gotP }
}

test.serial("send checks the confirmation: count and SHA-256 must be the file's, and one must come", async (t) => {
  const cases: [string, (bytes: number, sha256: string) => string | null, RegExp | null][] = [
    ['a true confirmation', (n, h) => `ZCS1 OK ${n} ${h}\n`, null],
    [
      'one byte short',
      (n, h) => `ZCS1 OK ${n - 1} ${h}\n`,
      /confirmed 3145732 bytes with sha256 \w{64}, but 3145733 bytes with sha256 \w{64} were sent \(ERR_ZC_CONFIRMATION_MISMATCH\)$/,
    ],
    [
      'another hash',
      (n) => `ZCS1 OK ${n} ${'0'.repeat(64)}\n`,
      /confirmed 3145733 bytes with sha256 0{64}, but .* were sent \(ERR_ZC_CONFIRMATION_MISMATCH\)$/,
    ],
    ['no answer', () => null, /closed the connection without confirming the transfer of 3145733 bytes \(ERR_ZC_NO_CONFIRMATION\)$/],
    [
      'a failure line',
      () => 'ZCS1 ERR ERR_ZC_SHORT_TRANSFER short transfer: the sender announced 9 bytes, 3 arrived\n',
      /failed: short transfer: the sender announced 9 bytes, 3 arrived \(ERR_ZC_SHORT_TRANSFER\)$/,
    ],
  ]
  for (const [what, reply, message] of cases) {
    const fake = await fakeReceiver(reply)
    const r = await cli(['send', file, '--to', `127.0.0.1:${fake.port}`, '--quiet'])
    fake.close()
    if (message === null) {
      t.is(r.code, 0, `${what}: ${r.stderr}`)
      t.true(r.stdout.includes(`peer confirmed ${data.length} bytes, sha256 ${sha}`), r.stdout.join('\n'))
    } else oneLine(t, r, new RegExp(`^zerocopy-socket: the receiver at 127\\.0\\.0\\.1:${fake.port} ${message.source}`), what)
  }
})

test.serial("a receiver that fails mid-transfer stops the sender: it exits 1 with the receiver's code without sending the rest", async (t) => {
  const big = join(dir, 'big.bin')
  writeFileSync(big, patternBytes(64 << 20, 3))
  for (const mode of ['file', 'never']) {
    const fake = await fakeReceiver(() => null, 1 << 20)
    const r = await cli(['send', big, '--to', `127.0.0.1:${fake.port}`, '--mode', mode, '--quiet'])
    const received = await fake.got
    fake.close()
    oneLine(t, r, /^zerocopy-socket: the receiver at 127\.0\.0\.1:\d+ failed: cannot write copy\.bin: ENOSPC: no space left on device, write$/, mode)
    t.true(received < 64 << 20, `${mode}: ${received} bytes arrived`)
  }
})
