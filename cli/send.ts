/** `zerocopy-socket send`: send a file through ZeroCopySocket and report how it went out. */
import { open, stat } from 'node:fs/promises'

import { BufferPool, ZeroCopySocket, type SocketStats, type ZeroCopyMode } from '../index'
import { gbps, humanBytes, progressBar } from './format'
import { header, parseAck } from './protocol'

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
  peer: { bytes: number; sha256: string } | null
}

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
function receiverGone(e: unknown, opts: SendOptions, sent: number, size: number): unknown {
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !RECEIVER_GONE.has(code)) return e
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  return Object.assign(new Error(`the receiver at ${host}:${opts.port} closed the connection after ${sent} of ${size} bytes`, { cause: e }), { code })
}

async function writeFromPool(zs: ZeroCopySocket, path: string, size: number, onBytes: (n: number) => void): Promise<void> {
  const pool = new BufferPool({ size: 256 * 1024, count: 8 })
  const file = await open(path)
  try {
    const inFlight: Promise<unknown>[] = []
    let sent = 0
    for (let position = 0; position < size;) {
      // Every unsettled write holds one buffer, so a full window means none is free.
      if (inFlight.length === pool.count) await inFlight.shift()
      const buf = pool.acquire()
      const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, size - position), position)
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
  } finally {
    await file.close()
  }
}

/** Runs `send`. */
export async function send(path: string, opts: SendOptions): Promise<SendReport> {
  const st = await stat(path)
  if (st.isDirectory()) throw Object.assign(new Error(`is a directory: ${path}`), { code: 'EISDIR', path })
  const size = st.size
  const zs = await ZeroCopySocket.connect({ host: opts.host, port: opts.port, zeroCopy: opts.mode === 'file' ? 'auto' : opts.mode })
  const ack = new Promise<string>((resolve) => {
    let text = ''
    zs.socket.on('data', (c: Buffer) => (text += c.toString('latin1')))
    zs.socket.on('close', () => resolve(text))
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
    if (opts.mode === 'file') await zs.sendFile(path, { onProgress: progress })
    else await writeFromPool(zs, path, size, progress)
    await zs.end()
  } catch (e) {
    zs.destroy()
    throw receiverGone(e, opts, sent, size)
  } finally {
    bar.stop()
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const peer = parseAck(await ack)
  return { bytes: size, seconds, stats: zs.stats, peer }
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
    r.peer ? `peer confirmed ${r.peer.bytes} bytes, sha256 ${r.peer.sha256}` : 'peer sent no confirmation',
  ]
  return lines.join('\n')
}
