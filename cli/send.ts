/** `zerocopy-socket send`: send a file through ZeroCopySocket and report how it went out. */
import { createHash } from 'node:crypto'
import { read as readCb } from 'node:fs'
import type net from 'node:net'
import { promisify } from 'node:util'

import { BufferPool, ZeroCopySocket, type SocketStats, type ZeroCopyMode } from '../index'
import { prepareFile, readChunks, takeFile, type PreparedFile } from '../src/file'
import { gbps, humanBytes, progressBar } from './format'
import { header, parseReply } from './protocol'

const read = promisify(readCb)

/** How `send` moves the file: `file` = `sendFile()`; the others read it into a `BufferPool` and `write()` with that policy. */
export type SendMode = 'file' | ZeroCopyMode

/** Options of `send`. */
export interface SendOptions {
  host: string
  port: number
  mode: SendMode
  quiet: boolean
}

/** What `send` reports. */
export interface SendReport {
  bytes: number
  seconds: number
  stats: SocketStats
  /** What the receiver confirmed: always the same as `bytes` and the file's SHA-256 (otherwise `send` rejects). */
  peer: { bytes: number; sha256: string }
}

/** The exit statuses of `send`, for its `--help` and the README. */
export const SEND_EXIT_HELP = `
Exit status:
  0  the receiver confirmed the transfer: the same byte count and SHA-256 as the file here
  1  anything else, with one line on stderr: the file cannot be opened or is not a regular
     file (checked before connecting), no connection, the connection broke, the receiver
     reported a failure (with its code, e.g. ENOSPC), or its confirmation is missing or
     does not match (ERR_ZC_NO_CONFIRMATION, ERR_ZC_CONFIRMATION_MISMATCH)`

/** Splits `HOST:PORT` (`[::1]:PORT` for IPv6); PORT must be 1 to 65535 (0 is no port to connect to). */
export function parseTarget(to: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(to)
  const port = m ? Number(m[3]) : 0
  if (!m || port < 1 || port > 65535) {
    throw Object.assign(new Error(`--to must be HOST:PORT with a port from 1 to 65535, got '${to}'`), { code: 'ERR_INVALID_ARG_VALUE' })
  }
  return { host: m[1] ?? m[2], port }
}

/**
 * Codes a transfer fails with when the receiver went away (reset, closed, died). `send` calls
 * `end()` only after its last write has settled, so a write-after-end can only be the peer's FIN.
 */
const RECEIVER_GONE = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ENOTCONN',
  'ETIMEDOUT',
  'ERR_SOCKET_CLOSED',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
])

/** A failure of the connection as one sentence with the original code; any other error as it is. */
function receiverGone(e: unknown, where: string, sent: number, size: number): unknown {
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !RECEIVER_GONE.has(code)) return e
  return coded(`${where} closed the connection after ${sent} of ${size} bytes`, code, e)
}

/** Reads `size` bytes of `fd` into a `BufferPool` and writes them, up to the pool's count in flight. */
async function writeFromPool(zs: ZeroCopySocket, fd: number, size: number, onBytes: (n: number) => void): Promise<void> {
  const pool = new BufferPool({ size: 256 * 1024, count: 8 })
  const inFlight: Promise<unknown>[] = []
  let sent = 0
  for (let position = 0; position < size;) {
    // Every unsettled write holds one buffer, so a full window means none is free.
    if (inFlight.length === pool.count) await inFlight.shift()
    const buf = pool.acquire()
    const { bytesRead } = await read(fd, buf, 0, Math.min(buf.length, size - position), position)
    if (bytesRead === 0) throw new Error('the file shrank while being sent')
    position += bytesRead
    const written = zs
      .write(buf.subarray(0, bytesRead))
      .then(() => onBytes((sent += bytesRead)))
      .finally(() => pool.release(buf))
    // Each write is awaited in turn (shift, or Promise.all); when the receiver dies, the later
    // ones reject while an earlier one is awaited, or after a failure ended the loop. Marked
    // handled here, so the first failure is the one reported and none escapes as unhandled.
    written.catch(() => {})
    inFlight.push(written)
  }
  await Promise.all(inFlight)
}

/** The SHA-256 of the file's range, as the receiver computes it of what arrived. */
async function hashFile(file: PreparedFile): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of readChunks(file, 1 << 20)) hash.update(chunk)
  return hash.digest('hex')
}

/** How long `send` waits for the receiver's answer after its last byte. */
const REPLY_TIMEOUT_MS = 120_000

/** Resolves once `socket` closed, or after `ms` (then `false`). */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.closed) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    socket.once('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

function coded(message: string, code: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code })
}

/**
 * Runs `send`: opens and checks the file before connecting (a FIFO, a device or a socket is
 * refused, never waited on), sends it, and resolves only when the receiver confirmed the same
 * byte count and SHA-256 as the file here; rejects otherwise (see {@link SEND_EXIT_HELP}).
 */
export async function send(path: string, opts: SendOptions): Promise<SendReport> {
  let file: PreparedFile
  try {
    file = await prepareFile(takeFile(path), undefined)
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_INVALID_ARG_VALUE') throw e
    throw coded(`not a regular file: ${path} (a FIFO, device or socket has no size to announce)`, 'ERR_INVALID_ARG_VALUE', e)
  }
  try {
    return await sendFile(file, opts)
  } finally {
    await file.close()
  }
}

async function sendFile(file: PreparedFile, opts: SendOptions): Promise<SendReport> {
  const size = file.length
  const where = `the receiver at ${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`
  const zs = await ZeroCopySocket.connect({ host: opts.host, port: opts.port, zeroCopy: opts.mode === 'file' ? 'auto' : opts.mode })
  let answer = ''
  let refusal: Error | null = null
  zs.socket.on('data', (c: Buffer) => {
    answer += c.toString('latin1')
    const reply = parseReply(answer)
    if (reply !== null && !reply.ok && refusal === null) {
      // The receiver failed (a full disk): stop sending what it cannot take.
      refusal = coded(`${where} failed: ${reply.message}`, reply.code)
      zs.destroy()
    }
  })
  const bar = progressBar(size, opts.quiet)
  let sent = 0
  const progress = (bytes: number): void => {
    sent = bytes
    bar.update(bytes)
  }
  const started = process.hrtime.bigint()
  try {
    await zs.write(header(size))
    if (opts.mode === 'file') await zs.sendFile(file.fd, { length: size, onProgress: progress })
    else await writeFromPool(zs, file.fd, size, progress)
    await zs.end()
  } catch (e) {
    zs.destroy()
    throw refusal ?? receiverGone(e, where, sent, size)
  } finally {
    bar.stop()
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  // Hashed while the receiver finishes writing: compared with its confirmation below.
  const [sha256, closed] = await Promise.all([hashFile(file), closedWithin(zs.socket, REPLY_TIMEOUT_MS)])
  zs.destroy()
  const reply = parseReply(answer)
  if (reply === null) {
    const why = closed ? 'closed the connection' : `did not answer within ${REPLY_TIMEOUT_MS / 1000} s`
    throw coded(`${where} ${why} without confirming the transfer of ${size} bytes`, 'ERR_ZC_NO_CONFIRMATION')
  }
  if (!reply.ok) throw coded(`${where} failed: ${reply.message}`, reply.code)
  if (reply.bytes !== size || reply.sha256 !== sha256) {
    throw coded(
      `${where} confirmed ${reply.bytes} bytes with sha256 ${reply.sha256}, but ${size} bytes with sha256 ${sha256} were sent`,
      'ERR_ZC_CONFIRMATION_MISMATCH',
    )
  }
  return { bytes: size, seconds, stats: zs.stats, peer: { bytes: reply.bytes, sha256: reply.sha256 } }
}

/** The human-readable report of a send. */
export function formatReport(r: SendReport, mode: SendMode): string {
  const s = r.stats
  const lines = [
    `sent ${r.bytes} bytes (${humanBytes(r.bytes)}) in ${r.seconds.toFixed(2)} s: ${gbps(r.bytes, r.seconds)} GB/s (mode ${mode})`,
    `  zero-copy sends:       ${s.zeroCopySends}`,
    `  copied notifications:  ${s.copiedNotifications} of ${s.notifications}${s.notifications > 0 && s.copiedNotifications === s.notifications ? ' (the kernel copied: expected on loopback)' : ''}`,
    `  plain (copying) sends: ${s.copySends}`,
    `  fallback:              ${s.fallbackReason ?? 'none'}`,
    `peer confirmed ${r.peer.bytes} bytes, sha256 ${r.peer.sha256}`,
  ]
  return lines.join('\n')
}
