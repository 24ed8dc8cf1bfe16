/** `zerocopy-socket doctor`: what this machine allows, in plain words, and a live self-test. */
import net from 'node:net'
import { once } from 'node:events'

import { BufferPool, ZeroCopySocket, probe, type ProbeReport } from '../index'
import { humanBytes } from './format'

const yes = (b: boolean): string => (b ? 'yes' : 'no')

/** Sends 4 MiB through a ZeroCopySocket to ourselves and reports how it went out. */
async function selfTest(): Promise<string> {
  const server = net.createServer((s) => s.resume())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, zeroCopy: 'always' })
    const r = await zs.write(Buffer.alloc(4 << 20, 1))
    await zs.end()
    zs.destroy()
    if (!r.zeroCopy) return `4 MiB went out through the fallback: ${zs.stats.fallbackReason}`
    return `4 MiB sent as IORING_OP_SEND_ZC, ${zs.stats.notifications} notifications${r.copied ? ' (the kernel copied: always so on loopback)' : ''}`
  } finally {
    server.close()
  }
}

function verdict(r: ProbeReport): string {
  if (r.supported) {
    return 'Large writes and sendFile() go out as io_uring zero-copy sends (IORING_OP_SEND_ZC), pipelined one per socket; small writes are coalesced into plain sends.'
  }
  return `Zero-copy is OFF: ZeroCopySocket writes through net.Socket with the same API. Why: ${r.reason?.message}`
}

/** The doctor's report. */
export async function doctor(): Promise<string> {
  const r = probe()
  const noBinding = r.reason?.code === 'no-binding'
  const lines = [
    `platform:                 ${r.platform}${r.kernel ? ` (kernel ${r.kernel})` : ''}`,
    `native binding:           ${noBinding ? `none (no-binding): ${r.reason?.message}` : 'loaded'}`,
    `io_uring allowed:         ${r.ioUring ? 'yes' : noBinding ? 'unknown (no native binding to ask)' : `no: ${r.reason?.message}`}`,
    `kernel.io_uring_disabled: ${r.ioUringDisabled ?? 'n/a (no such sysctl)'}${r.ioUringDisabled === 1 ? ' (root and io_uring_group only)' : r.ioUringDisabled === 2 ? ' (off for everyone)' : ''}`,
    `seccomp:                  ${r.seccomp === null ? 'unknown' : r.seccomp === 0 ? 'none' : r.seccomp === 2 ? 'filter active (may block io_uring, as Docker’s default does)' : 'strict'}`,
    `IORING_OP_SEND_ZC:        ${yes(r.ops.sendZc)}`,
    `IORING_OP_SENDMSG_ZC:     ${yes(r.ops.sendmsgZc)}`,
    `SEND_ZC_REPORT_USAGE:     ${yes(r.reportUsage)}${r.reportUsage ? '' : ' (cannot tell when the kernel copies anyway)'}`,
    `IORING_OP_SPLICE:         ${yes(r.ops.splice)}`,
    `RLIMIT_MEMLOCK:           ${r.memlockLimit === null ? 'unlimited' : humanBytes(r.memlockLimit)} (registered buffers and in-flight zero-copy pages count against it without CAP_IPC_LOCK)`,
  ]
  if (r.supported) {
    const pool = new BufferPool({ size: 64 * 1024, count: 4 })
    lines.push(`registered buffers:       ${pool.registered ? 'yes' : `no: ${pool.reason}`}`)
  }
  lines.push(`self-test:                ${await selfTest()}`)
  lines.push('', verdict(r))
  return lines.join('\n')
}
