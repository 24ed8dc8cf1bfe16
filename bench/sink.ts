/**
 * The stretch measurement: zero-copy where the kernel really does not copy. Loopback always
 * copies on delivery (every notification reports `ZC_COPIED`), so this sends UDP datagrams
 * from a private network namespace to a packet sink: an `ifb` device, which drops every packet
 * it is handed without delivering it anywhere (this kernel has no `dummy` driver; `ifb` plays
 * that role). Nothing leaves the namespace. SEND_ZC (this package's core primitive) and plain
 * io_uring SEND alternate, one datagram in flight each, from 256 MiB of rotating buffers.
 * Needs root (to create the namespace and the device); otherwise it is skipped with the reason.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

import { ROOT } from './root'

/** The sink's address is 10.77.0.1/24 on the device; datagrams go to .2, which is nobody. */
const SETUP = 'ip link add zc0 type ifb && ip link set zc0 mtu 65535 up && ip addr add 10.77.0.1/24 dev zc0'

/** One sender run into the sink. */
export interface SinkRun {
  mode: 'zc' | 'send'
  bytes: number
  secs: number
  cpuSecs: number
  notifications: number
  copied: number
}

/** What the sink measurement produced, or why it did not run. */
export type SinkResult = { datagram: number; runs: SinkRun[] } | { skipped: string }

/** Builds the Rust sender (`crates/zerocopy-core/examples/udp_sink.rs`) and runs it `reps` times per mode. */
export function runSink(total: number, reps: number, log: (line: string) => void): SinkResult {
  if (process.platform !== 'linux') return { skipped: 'not Linux' }
  if (process.getuid?.() !== 0) return { skipped: 'needs root to create a network namespace and a sink device' }
  const source = join(ROOT, 'crates', 'zerocopy-core', 'examples', 'udp_sink.rs')
  if (!existsSync(source)) return { skipped: 'the Rust sources are not here (an installed package): run it from a checkout' }
  for (const tool of ['unshare', 'ip', 'cargo']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return { skipped: `\`${tool}\` is not installed` }
  }
  const check = spawnSync('unshare', ['--net', 'sh', '-c', SETUP], { encoding: 'utf8' })
  if (check.status !== 0) return { skipped: `cannot create the sink device in a private namespace: ${check.stderr.trim()}` }
  log('building the UDP sink sender (cargo build --release --example udp_sink) ...')
  execFileSync('cargo', ['build', '--quiet', '--release', '-p', 'zerocopy-core', '--example', 'udp_sink'], { cwd: ROOT, stdio: 'inherit' })
  const bin = join(ROOT, 'target', 'release', 'examples', 'udp_sink')
  const datagram = 64000
  const runs: SinkRun[] = []
  for (let rep = 0; rep < reps; rep++) {
    for (const mode of rep % 2 ? (['send', 'zc'] as const) : (['zc', 'send'] as const)) {
      const out = execFileSync('unshare', ['--net', 'sh', '-c', `${SETUP} && exec "$0" "$@"`, bin, mode, String(total), String(datagram), '10.77.0.2'], {
        encoding: 'utf8',
      })
      const run = JSON.parse(out.trim().split('\n').pop()!) as SinkRun
      runs.push(run)
      log(
        `sink rep ${rep + 1}/${reps} ${mode.padEnd(4)} ${(run.bytes / run.secs / 1e9).toFixed(2)} GB/s, ${(run.cpuSecs / (run.bytes / 1e9)).toFixed(3)} CPU s/GB, ${run.copied}/${run.notifications} copied`,
      )
    }
  }
  return { datagram, runs }
}
