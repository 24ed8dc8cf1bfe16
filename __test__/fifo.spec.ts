// A FIFO (or another file that is not regular) given to sendFile or respondWithFile is refused
// with ERR_INVALID_ARG_VALUE at once, without blocking in open(): four blocked opens would take
// all of libuv's threads and stall every fs call of the process (issue 23, item 9).
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { ZeroCopySocket, respondWithFile } from '../index'
import { collect, deadline, loopbackPair, patternBytes } from './helpers'

const dir = mkdtempSync(join(tmpdir(), 'zc-fifo-'))
const fifo = join(dir, 'fifo')
execFileSync('mkfifo', [fifo])
const regular = join(dir, 'regular')
const data = patternBytes(300_000, 5)
writeFileSync(regular, data)

test.after.always(() => {
  // Wakes any open() still blocked on the FIFO (a build without the fix), so the process can end:
  // a non-blocking open for writing succeeds once a reader waits.
  for (let i = 0; i < 16; i++) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK))
    } catch {
      break // ENXIO: no reader left
    }
  }
  rmSync(dir, { recursive: true, force: true })
})

test.serial('sendFile(fifo) rejects ERR_INVALID_ARG_VALUE at once, sends nothing, and the socket goes on', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const zs = ZeroCopySocket.from(client)
  const received = collect(server)
  const err = await deadline(
    zs.sendFile(fifo).then(
      (): NodeJS.ErrnoException | null => null,
      (e: NodeJS.ErrnoException) => e,
    ),
    5000,
    'sendFile(fifo)',
  )
  t.is(err?.code, 'ERR_INVALID_ARG_VALUE')
  t.true(err instanceof TypeError)
  // Nothing of it went out, and the next send is whole.
  await deadline(zs.sendFile(regular), 10_000, 'sendFile(regular)')
  await deadline(zs.end(), 10_000, 'end()')
  t.true((await deadline(received, 10_000, 'peer')).equals(data))
})

test.serial("eight concurrent sendFile(fifo) leave libuv's threads free: fs calls and a regular file send go on", async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const zs = ZeroCopySocket.from(client)
  const received = collect(server)
  const refused = Array.from({ length: 8 }, () =>
    zs.sendFile(fifo).then(
      () => 'sent',
      (e: NodeJS.ErrnoException) => e.code,
    ),
  )
  // With eight opens blocked on the FIFO these never run (libuv has four threads).
  t.true((await deadline(readFile(regular), 5000, 'fs.readFile while FIFO sends are pending')).equals(data))
  t.deepEqual(await deadline(Promise.all(refused), 5000, 'the FIFO sends'), Array(8).fill('ERR_INVALID_ARG_VALUE'))
  await deadline(zs.sendFile(regular), 10_000, 'sendFile(regular)')
  await deadline(zs.end(), 10_000, 'end()')
  t.true((await deadline(received, 10_000, 'peer')).equals(data))
})

test.serial('respondWithFile(res, fifo) rejects ERR_INVALID_ARG_VALUE with res untouched; the handler answers 500', async (t) => {
  const server = http.createServer((_req, res) => {
    deadline(respondWithFile(res, fifo), 5000, 'respondWithFile(fifo)').then(
      () => res.destroy(),
      (e: NodeJS.ErrnoException) => {
        res.statusCode = 500
        res.end(`refused ${e.code} headersSent=${res.headersSent}`)
      },
    )
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const { port } = server.address() as net.AddressInfo
  const answer = await deadline(
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ port, host: '127.0.0.1', agent: false }, (r) => {
          let body = ''
          r.setEncoding('latin1')
          r.on('data', (c: string) => (body += c))
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }))
        })
        .on('error', reject)
    }),
    10_000,
    'the HTTP answer',
  )
  t.deepEqual(answer, { status: 500, body: 'refused ERR_INVALID_ARG_VALUE headersSent=false' })
})

test.serial('a regular file opened by path is read with O_NONBLOCK cleared, and sent whole, in every mode', async (t) => {
  const big = join(dir, 'big')
  const bigData = patternBytes(24 << 20, 6)
  writeFileSync(big, bigData)
  for (const zeroCopy of ['auto', 'always', 'never'] as const) {
    const { client, server, close } = await loopbackPair()
    const zs = ZeroCopySocket.from(client, { zeroCopy })
    server.pause() // the send waits for the reader, holding its descriptor of the file
    // Looked at once bytes went out: before, the open may have returned on libuv's thread
    // while this thread has not yet checked the file (and cleared the flag).
    let progressed!: () => void
    const going = new Promise<void>((r) => (progressed = r))
    const sent = deadline(zs.sendFile(big, { offset: 7, onProgress: () => progressed() }), 20_000, `sendFile ${zeroCopy}`)
    await deadline(going, 10_000, 'the first progress')
    const flags = descriptorFlags(big)
    t.true(flags.length > 0, `${zeroCopy}: a descriptor of the file is open while the send waits`)
    for (const f of flags) t.is(f & constants.O_NONBLOCK, 0, `${zeroCopy}: flags ${f.toString(8)} of ${flags.length}`)
    const received = collect(server)
    server.resume()
    await sent
    await deadline(zs.end(), 10_000, 'end()')
    t.true((await deadline(received, 20_000, 'peer')).equals(bigData.subarray(7)), zeroCopy)
    close()
  }
})

/** The status flags of this process's descriptors open on `path` (from /proc/self/fdinfo). */
function descriptorFlags(path: string): number[] {
  const out: number[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== path) continue
      const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))
      if (m) out.push(parseInt(m[1], 8))
    } catch {
      // closed meanwhile
    }
  }
  return out
}
