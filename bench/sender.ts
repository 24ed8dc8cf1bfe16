/**
 * One benchmark sender run, in its own process so CPU time, RSS and event-loop delay are its
 * own: `node bench/sender.js <variant> <port> <chunk> <total> [file]`. Connects to the
 * receiver on 127.0.0.1, sends `total` bytes, half-closes, waits for the receiver's 8-byte
 * count, and prints one JSON line with what it measured.
 */
import { createReadStream } from 'node:fs'
import net from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'

import { BufferPool, ZeroCopySocket, type SocketStats } from '../index'

/** Variants this script runs. */
export const NODE_VARIANTS = [
  'node_write',
  'zc_auto',
  'zc_always',
  'zc_never',
  'zc_pool',
  'node_pipe',
  'node_pipe_default',
  'zc_sendfile',
  'zc_auto_loop',
  'zc_sendfile_loop',
] as const
export type NodeVariant = (typeof NODE_VARIANTS)[number]

/** What one run reports. */
export interface SenderResult {
  variant: string
  chunk: number
  bytes: number
  secs: number
  cpuSecs: number
  maxRssMiB: number
  eventLoopP99Ms: number
  notifications: number
  copied: number
  ok: boolean
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' })
    s.once('connect', () => resolve(s)).once('error', reject)
  })
}

/** Half-closes and waits for the receiver's 8-byte byte count; true when it matches. */
function finish(socket: net.Socket, total: number, end: () => void): Promise<boolean> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => {
      const ack = Buffer.concat(chunks)
      resolve(ack.length === 8 && ack.readBigUInt64LE(0) === BigInt(total))
      socket.destroy()
    })
    end()
  })
}

/** How many writes a sender keeps in flight: ~1 MiB worth, at least 8. */
function windowOf(chunk: number): number {
  return Math.max(8, Math.ceil((1 << 20) / chunk))
}

/** Buffers to rotate through, one per write in flight. */
function buffers(chunk: number): Buffer[] {
  const count = windowOf(chunk)
  return Array.from({ length: count }, () => Buffer.alloc(chunk, 0x5a))
}

async function zcWrites(zs: ZeroCopySocket, bufs: Uint8Array[], total: number, onSettled?: (b: Uint8Array) => void): Promise<void> {
  // One slot per buffer: a buffer is reused only once its previous write settled. (A ring, not
  // `shift()`: at 1 KiB that is 1,024 promises, and `shift()` moves them all on every write.)
  const window: (Promise<unknown> | undefined)[] = Array.from({ length: bufs.length })
  let i = 0
  for (let sent = 0; sent < total; sent += bufs[0].length) {
    const slot = i++ % bufs.length
    if (window[slot] !== undefined) await window[slot]
    const b = bufs[slot]
    window[slot] = onSettled ? zs.write(b).then(() => onSettled(b)) : zs.write(b)
  }
  await Promise.all(window)
}

async function run(name: NodeVariant, port: number, chunk: number, total: number, file?: string): Promise<SenderResult> {
  // `_loop` variants: the same sender on the loop driver (the ring on this thread's event loop).
  if (name.endsWith('_loop')) process.env.ZEROCOPY_SOCKET_DRIVER = 'loop'
  const variant = name.replace(/_loop$/, '')
  const socket = await connect(port)
  // Adopt before measuring: starting the engine (a thread and a ring) happens once per
  // process, not during a transfer, and P4 is about the event loop during the transfer.
  const mode = variant === 'zc_always' ? 'always' : variant === 'zc_never' ? 'never' : 'auto'
  const zs = variant.startsWith('zc_') ? ZeroCopySocket.from(socket, { zeroCopy: mode }) : null
  const eld = monitorEventLoopDelay({ resolution: 1 })
  eld.enable()
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  let stats: SocketStats | null = null
  let ok: boolean
  if (variant === 'node_write') {
    const bufs = buffers(chunk)
    let i = 0
    let sent = 0
    await new Promise<void>((resolve) => {
      const pump = (): void => {
        while (sent < total) {
          sent += chunk
          if (!socket.write(bufs[i++ % bufs.length])) return void socket.once('drain', pump)
        }
        resolve()
      }
      pump()
    })
    ok = await finish(socket, total, () => socket.end())
  } else if (variant === 'node_pipe' || variant === 'node_pipe_default') {
    let sent = 0
    while (sent < total) {
      const rs = createReadStream(file!, variant === 'node_pipe' ? { highWaterMark: chunk } : {})
      await new Promise<void>((resolve, reject) => {
        rs.on('data', (c) => (sent += c.length))
        rs.on('end', resolve).on('error', reject)
        rs.pipe(socket, { end: false })
      })
    }
    total = sent
    ok = await finish(socket, total, () => socket.end())
  } else if (zs !== null) {
    if (variant === 'zc_pool') {
      const count = windowOf(chunk)
      const pool = new BufferPool({ size: chunk, count })
      const bufs = Array.from({ length: count }, () => pool.acquire().fill(0x5a))
      await zcWrites(zs, bufs, total)
    } else if (variant === 'zc_sendfile') {
      let sent = 0
      while (sent < total) sent += (await zs.sendFile(file!)).bytes
      total = sent
    } else {
      await zcWrites(zs, buffers(chunk), total)
    }
    ok = await finish(socket, total, () => void zs.end())
    stats = zs.stats
  } else {
    throw new Error(`unknown variant ${variant}`)
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  eld.disable()
  return {
    variant: name,
    chunk,
    bytes: total,
    secs,
    cpuSecs: (cpu.user + cpu.system) / 1e6,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    eventLoopP99Ms: eld.percentile(99) / 1e6,
    notifications: stats?.notifications ?? 0,
    copied: stats?.copiedNotifications ?? 0,
    ok,
  }
}

if (require.main === module) {
  const [variant, port, chunk, total, file] = process.argv.slice(2)
  if (!NODE_VARIANTS.includes(variant as NodeVariant)) {
    console.error(`unknown variant ${variant}`)
    process.exit(2)
  }
  setTimeout(() => {
    console.error('sender deadline exceeded')
    process.exit(4)
  }, 300_000).unref()
  run(variant as NodeVariant, Number(port), Number(chunk), Number(total), file).then(
    (r) => console.log(JSON.stringify(r)),
    (e) => {
      console.error(e)
      process.exit(1)
    },
  )
}
