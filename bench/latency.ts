/**
 * Write latency: sequential awaited writes of one size, p50 and p99 of the time from the call
 * to the moment the caller may go on (the promise settles for a `ZeroCopySocket`, the write
 * callback runs for a `net.Socket`). The receiver is another process that reads and discards.
 * Variants alternate, each in its own child process (the driver is chosen per process).
 *
 * `node dist/bench/latency.js [--size 4096] [--count 5000] [--warmup 500] [--rounds 3]`
 * prints one table: p50 / p99 in µs, and process CPU µs per write.
 */
import { spawn } from 'node:child_process'
import net from 'node:net'
import { parseArgs } from 'node:util'

import { ZeroCopySocket } from '../index'

/** The variants: how the sender writes, and in which driver. */
const VARIANTS = ['net_socket', 'zc_thread', 'zc_loop'] as const
type Variant = (typeof VARIANTS)[number]

/** One sender run's numbers. */
interface Run {
  variant: Variant
  p50: number
  p99: number
  cpuPerWrite: number
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]
}

/** The sender: connects to `port`, times `count` awaited writes after `warmup` untimed ones. */
async function sender(variant: Variant, port: number, size: number, count: number, warmup: number): Promise<Run> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' })
    s.once('connect', () => resolve(s)).once('error', reject)
  })
  const zs = variant === 'net_socket' ? null : ZeroCopySocket.from(socket)
  const buf = Buffer.alloc(size, 0x5a)
  const write: () => Promise<unknown> = zs
    ? () => zs.write(buf)
    : () => new Promise<void>((resolve, reject) => socket.write(buf, (err) => (err ? reject(err) : resolve())))
  for (let i = 0; i < warmup; i++) await write()
  const times: number[] = []
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint()
    await write()
    times.push(Number(process.hrtime.bigint() - t0) / 1e3)
  }
  const cpu = process.cpuUsage(cpu0)
  if (zs) await zs.end()
  else socket.end()
  socket.destroy()
  times.sort((a, b) => a - b)
  return { variant, p50: percentile(times, 50), p99: percentile(times, 99), cpuPerWrite: (cpu.user + cpu.system) / count }
}

/** Runs `argv` as a child Node process of this script and returns its last stdout line. */
function child(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [__filename, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    c.stdout.on('data', (d: Buffer) => (out += d))
    c.on('close', (code) => (code === 0 ? resolve(out.trim().split('\n').pop() ?? '') : reject(new Error(`${args[0]} exited ${code}`))))
  })
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      role: { type: 'string' },
      variant: { type: 'string' },
      port: { type: 'string' },
      size: { type: 'string', default: '4096' },
      count: { type: 'string', default: '5000' },
      warmup: { type: 'string', default: '500' },
      rounds: { type: 'string', default: '3' },
    },
  })
  const [size, count, warmup] = [Number(values.size), Number(values.count), Number(values.warmup)]
  if (values.role === 'receiver') {
    const server = net.createServer((s) => s.resume().on('error', () => {}))
    server.listen(0, '127.0.0.1', () => console.log((server.address() as net.AddressInfo).port))
    return
  }
  if (values.role === 'sender') {
    console.log(JSON.stringify(await sender(values.variant as Variant, Number(values.port), size, count, warmup)))
    return
  }
  const receiver = spawn(process.execPath, [__filename, '--role', 'receiver'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<string>((resolve) => receiver.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())))
  const runs: Run[] = []
  try {
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const variant of VARIANTS) {
        const env = { ...process.env, ZEROCOPY_SOCKET_DRIVER: variant === 'zc_loop' ? 'loop' : 'thread' }
        const args = ['--role', 'sender', '--variant', variant, '--port', port, '--size', String(size), '--count', String(count), '--warmup', String(warmup)]
        runs.push(JSON.parse(await child(args, env)) as Run)
      }
    }
  } finally {
    receiver.kill()
  }
  console.log(`${size}-byte awaited writes, ${count} timed after ${warmup}, ${values.rounds} round(s): p50 / p99 µs (range over rounds); CPU µs/write`)
  for (const variant of VARIANTS) {
    const rs = runs.filter((r) => r.variant === variant)
    const range = (f: (r: Run) => number): string => `${Math.min(...rs.map(f)).toFixed(1)}-${Math.max(...rs.map(f)).toFixed(1)}`
    console.log(`${variant.padEnd(12)} p50 ${range((r) => r.p50).padStart(11)}  p99 ${range((r) => r.p99).padStart(13)}  cpu ${range((r) => r.cpuPerWrite)}`)
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e)
    process.exit(1)
  })
}
