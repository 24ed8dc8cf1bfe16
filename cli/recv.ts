/** `zerocopy-socket recv`: accept one connection, store or discard it, report its SHA-256. */
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { open, type FileHandle } from 'node:fs/promises'
import net from 'node:net'

import { gbps, humanBytes, progressBar } from './format'
import { HEADER_BYTES, ackLine, errorLine, parseHeader } from './protocol'

/** Options of `recv`. */
export interface RecvOptions {
  port: number
  host: string
  out?: string
  quiet: boolean
}

/** The exit statuses of `recv`, for its `--help` and the README. */
export const RECV_EXIT_HELP = `
Exit status:
  0  the transfer is complete: every byte the sender announced (or, without an announcement,
     every byte until it ended) arrived and was written; the sender got their count and SHA-256
  1  anything else, with one line on stderr: --out cannot be written, writing it failed
     (ENOSPC, EFBIG), fewer bytes arrived than announced (ERR_ZC_SHORT_TRANSFER), or the
     connection broke; the sender is told why, so its send fails too`

/** How long a failed receiver keeps reading (and dropping) what still arrives, so its answer is not lost to a reset. */
const DRAIN_MS = 10_000

/**
 * Tells the sender why the transfer failed, then waits (at most {@link DRAIN_MS}) for it to stop
 * while dropping what still arrives: closing with unread bytes would reset the connection, and
 * the reset could destroy the answer before the sender read it.
 */
async function tellSender(socket: net.Socket, err: unknown): Promise<void> {
  if (socket.destroyed || !socket.writable) return
  const e = err as { code?: unknown; message?: unknown }
  socket.on('error', () => {}) // a sender that resets once it read the answer
  socket.write(errorLine(typeof e.code === 'string' ? e.code : 'ERR_ZC_RECEIVER', String(e.message ?? err)))
  socket.resume()
  if (!socket.readableEnded) await firstOf(socket, ['end', 'close'], DRAIN_MS)
  socket.end()
  if (!socket.closed) await firstOf(socket, ['close'], DRAIN_MS)
  socket.destroy()
}

/** Resolves on the first of `events` on `socket`, or after `ms`. */
function firstOf(socket: net.Socket, events: string[], ms: number): Promise<void> {
  return new Promise((resolve) => {
    const finish = (): void => {
      clearTimeout(timer)
      for (const e of events) socket.off(e, finish)
      resolve()
    }
    const timer = setTimeout(finish, ms)
    for (const e of events) socket.once(e, finish)
  })
}

/** Opens (creates or truncates) `path` for writing; a missing directory says so. */
async function openOut(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'w')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    throw Object.assign(new Error(`cannot create ${path}: its directory does not exist`, { cause: e }), { code: 'ENOENT' })
  }
}

/** Runs `recv`; resolves with the byte count and SHA-256 once the sender has finished. */
export async function recv(opts: RecvOptions): Promise<{ bytes: number; sha256: string }> {
  // Opened before listening: an --out that cannot be written fails before any sender connects.
  const handle = opts.out ? await openOut(opts.out) : null
  // Half-open: after the sender's FIN we still answer with the confirmation line.
  const server = net.createServer({ allowHalfOpen: true })
  server.listen(opts.port, opts.host)
  await once(server, 'listening')
  const addr = server.address() as net.AddressInfo
  console.log(`listening on ${addr.address}:${addr.port}`)
  const [socket] = (await once(server, 'connection')) as [net.Socket]
  server.close()

  const out = handle?.createWriteStream() ?? null
  const hash = createHash('sha256')
  let bytes = 0
  let announced: number | null = null
  let head: Buffer | null = Buffer.alloc(0)
  let bar = progressBar(null, opts.quiet)
  const started = process.hrtime.bigint()

  // Set once the transfer failed: what still arrives is dropped (see tellSender).
  let failure: unknown = null
  const take = (chunk: Buffer): void => {
    if (chunk.length === 0 || failure !== null) return
    bytes += chunk.length
    hash.update(chunk)
    bar.update(bytes)
    if (out && !out.write(chunk)) {
      socket.pause()
      out.once('drain', () => socket.resume())
    }
  }
  socket.on('data', (chunk: Buffer) => {
    if (head !== null) {
      // Collect the first bytes until we know whether they are our header.
      head = Buffer.concat([head, chunk])
      if (head.length < HEADER_BYTES) return
      announced = parseHeader(head)
      const rest = announced === null ? head : head.subarray(HEADER_BYTES)
      head = null
      if (announced !== null) {
        bar.stop()
        bar = progressBar(announced, opts.quiet)
      }
      take(rest)
      return
    }
    take(chunk)
  })
  const ended = once(socket, 'end')
  // A failing write to --out (a full disk) fails the command like a failing socket does.
  const failed = new Promise<never>((_, reject) => {
    socket.once('error', reject)
    out?.once('error', (e: NodeJS.ErrnoException) => reject(Object.assign(new Error(`cannot write ${opts.out}: ${e.message}`, { cause: e }), { code: e.code })))
  })
  try {
    await Promise.race([ended, failed])
    if (head !== null && head.length > 0) take(head) // a raw stream shorter than a header
    if (out) {
      out.end()
      await Promise.race([once(out, 'finish'), failed])
    }
    if (announced !== null && announced !== bytes) {
      throw Object.assign(new Error(`short transfer: the sender announced ${announced} bytes, ${bytes} arrived`), { code: 'ERR_ZC_SHORT_TRANSFER' })
    }
  } catch (e) {
    failure = e
    bar.stop()
    out?.destroy()
    await tellSender(socket, e)
    throw e
  }
  bar.stop()
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const sha256 = hash.digest('hex')
  socket.end(ackLine(bytes, sha256))
  console.log(`received ${bytes} bytes (${humanBytes(bytes)}) in ${seconds.toFixed(2)} s, ${gbps(bytes, seconds)} GB/s${opts.out ? ` into ${opts.out}` : ''}`)
  console.log(`sha256 ${sha256}`)
  return { bytes, sha256 }
}
