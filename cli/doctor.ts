/**
 * `zerocopy-socket doctor`: what this machine allows, in plain words or as JSON, a live
 * self-test, and an exit code scripts can use ({@link DoctorExitCode}).
 * @module
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs'
import { once } from 'node:events'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { BufferPool, ZeroCopySocket, probe, type ProbeOps, type ProbeReport } from '../index'
import { ROOT } from '../bench/root'
import { readNow, sendfileNow } from '../src/direct'
import { BODY_MAX, fileCacheStats } from '../src/file-cache'
import { binding, loadError, native, suppressNoBindingWarning, triple } from '../src/native'
import { humanBytes } from './format'

/**
 * `doctor`'s exit status, for scripts (`zerocopy-socket doctor --json; echo $?`):
 * - `0`: zero-copy sends are available (`zeroCopy: true`);
 * - `2`: the package works, through the fallback (platform, kernel, sysctl, seccomp, env switch);
 * - `3`: no native binding loaded (`reason.code: 'no-binding'`): an install problem that
 *   `npm install @zerocopy-socket/binding-<triple>` fixes, or a platform without a prebuilt binary.
 * `1` stays what it is for every command: the doctor itself failed, or bad arguments.
 */
export const DoctorExitCode = { zeroCopy: 0, fallback: 2, noBinding: 3 } as const

/** The JSON `doctor --json` prints. Keys are stable: new ones may be added, none renamed or removed. */
export interface DoctorReport {
  /** Version of this JSON layout (1). */
  schema: 1
  /** `true` when sockets send with io_uring zero-copy (`probe().supported`). */
  zeroCopy: boolean
  /** The process exit status `doctor` ends with ({@link DoctorExitCode}). */
  exitCode: number
  /** This package: name and version. */
  package: { name: string; version: string }
  /** `process.version`. */
  node: string
  /** `process.platform`. */
  platform: string
  /** `process.arch`. */
  arch: string
  /** The napi-rs platform triple the binding package is named after (`linux-x64-gnu`). */
  triple: string
  /** Kernel release (`uname -r`), or `null` off Linux. */
  kernel: string | null
  /** The native binding: whether it loaded, from where, its version, and the loader's errors when not. */
  binding: {
    loaded: boolean
    /** The platform package that provides it: `@zerocopy-socket/binding-<triple>`. */
    package: string
    /** `'local'` (a `.node` file in the package folder, as a checkout builds), `'package'`, `'env'` (`NAPI_RS_NATIVE_LIBRARY_PATH`), or `null` when none loaded. */
    source: 'local' | 'package' | 'env' | null
    /** The binding's version (the platform package's, or this package's for a local build), or `null`. */
    version: string | null
    /** The loader's errors, one line each (empty when it loaded). */
    loadErrors: string[]
  }
  /** Why zero-copy is off (`probe().reason`), or `null`. */
  reason: ProbeReport['reason']
  /** io_uring itself: allowed (`null`: no binding to ask), `kernel.io_uring_disabled`, seccomp mode. */
  ioUring: { allowed: boolean | null; ioUringDisabled: number | null; seccomp: number | null }
  /** Supported io_uring opcodes; each `null` when there is no binding to ask. */
  ops: { [K in keyof ProbeOps]: boolean | null }
  /** `IORING_SEND_ZC_REPORT_USAGE` (copy reports); `null` when unknown. */
  reportUsage: boolean | null
  /** Soft `RLIMIT_MEMLOCK` in bytes, `null` when unlimited or unknown (no binding). */
  memlockLimit: number | null
  /** Whether a `BufferPool` registers its memory with the ring (only tried when zero-copy is on). */
  registeredBuffers: { registered: boolean; reason: string | null } | null
  /**
   * How `respondWithFile`/`serveStatic` bodies go: `inlineSendfile` (cached pages sent at once
   * on the JS thread with `sendfile(2)`, which needs `cachestat(2)`: tried live), then the
   * engine's `sendfile(2)` (`engine`), or streamed through `res` (`'stream'`, the fallback).
   */
  http: { inlineSendfile: boolean; cachestat: boolean; body: 'engine' | 'stream' }
  /**
   * The HTTP descriptor cache's limits (`fileCacheStats()`, src/file-cache.ts, including
   * `loopbackBodyMax` as configured), `bodyMax` (the largest file whose bytes it keeps for any
   * peer), and `keepsBodies`: whether this platform can keep them
   * (an `fstat` without `Stats` and a read that never waits for the disk: tried live).
   */
  fileCache: { maxEntries: number; freshMs: number; maxBodyBytes: number; checkMs: number; bodyMax: number; loopbackBodyMax: number; keepsBodies: boolean }
  /** 4 MiB sent to ourselves over loopback through a `ZeroCopySocket` with `zeroCopy: 'always'`. */
  selfTest: { bytes: number; zeroCopy: boolean; zeroCopySends: number; notifications: number; copiedNotifications: number; fallbackReason: string | null }
}

function packageJson(dir: string): { name: string; version: string } {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string; version: string }
}

/** Where the binding came from, as binding.js looks: the env override, a local file, the platform package. */
function bindingSource(pkg: { version: string }): Pick<DoctorReport['binding'], 'source' | 'version'> {
  if (native === null) return { source: null, version: null }
  if (process.env.NAPI_RS_NATIVE_LIBRARY_PATH) return { source: 'env', version: null }
  if (existsSync(join(ROOT, `zerocopy-socket.${triple()}.node`))) return { source: 'local', version: pkg.version }
  try {
    const main = require.resolve(`@zerocopy-socket/binding-${triple()}/package.json`, { paths: [ROOT] })
    return { source: 'package', version: (JSON.parse(readFileSync(main, 'utf8')) as { version: string }).version }
  } catch {
    return { source: 'package', version: null }
  }
}

/** Sends 4 MiB through a ZeroCopySocket to ourselves. */
async function selfTest(): Promise<DoctorReport['selfTest']> {
  const server = net.createServer((s) => s.resume())
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, zeroCopy: 'always' })
    const r = await zs.write(Buffer.alloc(4 << 20, 1))
    await zs.end()
    zs.destroy()
    const s = zs.stats
    return {
      bytes: r.bytes,
      zeroCopy: r.zeroCopy,
      zeroCopySends: s.zeroCopySends,
      notifications: s.notifications,
      copiedNotifications: s.copiedNotifications,
      fallbackReason: s.fallbackReason,
    }
  } finally {
    server.close()
  }
}

/**
 * Tries the HTTP path's inline send live: a fresh (so cached, and ours) 64 KiB file sent with
 * `sendfileNow` to a loopback socket. It sends only when `cachestat(2)` says every page is
 * cached, so a send proves both.
 */
async function inlineSendfile(): Promise<boolean> {
  if (native === null || process.platform !== 'linux') return false
  const dir = mkdtempSync(join(tmpdir(), 'zc-doctor-'))
  const server = net.createServer((s) => s.resume())
  try {
    const path = join(dir, 'probe.bin')
    writeFileSync(path, Buffer.alloc(64 * 1024, 7))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    await once(client, 'connect')
    const fd = openSync(path, 'r')
    try {
      const sockFd = (client as unknown as { _handle: { fd: number } })._handle.fd
      return sendfileNow(sockFd, fd, 0, 64 * 1024) > 0
    } catch {
      return false
    } finally {
      closeSync(fd)
      client.destroy()
    }
  } finally {
    server.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Whether small files' bytes can be kept here: the binding's `fileIdentity` and `readNow`, tried on a fresh file. */
function keepsBodies(): boolean {
  if (native === null || process.platform !== 'linux') return false
  const dir = mkdtempSync(join(tmpdir(), 'zc-doctor-'))
  try {
    const path = join(dir, 'kept.bin')
    writeFileSync(path, Buffer.alloc(4096, 7))
    const fd = openSync(path, 'r')
    try {
      return binding.fileIdentity(fd, new Float64Array(8)) === 0 && readNow(fd, 0, 4096)?.[4095] === 7
    } catch {
      return false
    } finally {
      closeSync(fd)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Gathers everything `doctor` reports (runs the self-tests). */
export async function doctorReport(): Promise<DoctorReport> {
  // The report says it itself: no ZC_NO_BINDING warning on top from the self-test's socket.
  suppressNoBindingWarning()
  const r = probe()
  const noBinding = r.reason?.code === 'no-binding'
  const pkg = packageJson(ROOT)
  const unknown = <T>(v: T): T | null => (noBinding ? null : v)
  const ops = Object.fromEntries(Object.entries(r.ops).map(([k, v]) => [k, unknown(v)])) as DoctorReport['ops']
  let registeredBuffers: DoctorReport['registeredBuffers'] = null
  if (r.supported) {
    const pool = new BufferPool({ size: 64 * 1024, count: 4 })
    registeredBuffers = { registered: pool.registered, reason: pool.registered ? null : pool.reason }
  }
  const inline = await inlineSendfile()
  const cache = fileCacheStats()
  const exitCode = r.supported ? DoctorExitCode.zeroCopy : noBinding ? DoctorExitCode.noBinding : DoctorExitCode.fallback
  return {
    schema: 1,
    zeroCopy: r.supported,
    exitCode,
    package: { name: pkg.name, version: pkg.version },
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    triple: triple(),
    kernel: r.kernel || null,
    binding: {
      loaded: !noBinding,
      package: `@zerocopy-socket/binding-${triple()}`,
      ...bindingSource(pkg),
      loadErrors: loadError === null ? [] : loadError.split('; '),
    },
    reason: r.reason,
    ioUring: { allowed: unknown(r.ioUring), ioUringDisabled: r.ioUringDisabled, seccomp: r.seccomp },
    ops,
    reportUsage: unknown(r.reportUsage),
    memlockLimit: r.memlockLimit,
    registeredBuffers,
    http: { inlineSendfile: inline, cachestat: inline, body: r.supported ? 'engine' : 'stream' },
    fileCache: {
      maxEntries: cache.maxEntries,
      freshMs: cache.freshMs,
      maxBodyBytes: cache.maxBodyBytes,
      checkMs: cache.checkMs,
      bodyMax: BODY_MAX,
      loopbackBodyMax: cache.loopbackBodyMax,
      keepsBodies: keepsBodies(),
    },
    selfTest: await selfTest(),
  }
}

const yesNo = (b: boolean | null): string => (b === null ? 'unknown (no native binding to ask)' : b ? 'yes' : 'no')

function verdict(d: DoctorReport): string {
  if (d.zeroCopy) {
    return 'Zero-copy is ON: large writes go out as io_uring zero-copy sends (IORING_OP_SEND_ZC), pipelined one per socket, small writes are coalesced into plain sends, and sendFile() moves file bytes page-cache-to-socket with sendfile(2).'
  }
  return `Zero-copy is OFF: ZeroCopySocket writes through net.Socket with the same API. Why: ${d.reason?.message}`
}

/** The report as text, one fact a line; the reason's message appears once. */
export function formatDoctor(d: DoctorReport): string {
  const noBinding = !d.binding.loaded
  const lines = [
    `zerocopy-socket:          ${d.package.version} (Node.js ${d.node})`,
    `platform:                 ${d.platform} ${d.arch} (${d.triple})${d.kernel ? `, kernel ${d.kernel}` : ''}`,
    `native binding:           ${noBinding ? `none (no-binding): ${d.binding.package} did not load` : `loaded (${d.binding.source}${d.binding.version ? ` ${d.binding.version}` : ''})`}`,
    `io_uring allowed:         ${d.ioUring.allowed === false ? `no (${d.reason?.code})` : yesNo(d.ioUring.allowed)}`,
    `kernel.io_uring_disabled: ${d.ioUring.ioUringDisabled ?? (noBinding ? yesNo(null) : 'n/a (no such sysctl)')}${d.ioUring.ioUringDisabled === 1 ? ' (root and io_uring_group only)' : d.ioUring.ioUringDisabled === 2 ? ' (off for everyone)' : ''}`,
    `seccomp:                  ${d.ioUring.seccomp === null ? 'unknown' : d.ioUring.seccomp === 0 ? 'none' : d.ioUring.seccomp === 2 ? 'filter active (may block io_uring, as Docker’s default does)' : 'strict'}`,
    `IORING_OP_SEND_ZC:        ${yesNo(d.ops.sendZc)}`,
    `IORING_OP_SENDMSG_ZC:     ${yesNo(d.ops.sendmsgZc)}`,
    `SEND_ZC_REPORT_USAGE:     ${yesNo(d.reportUsage)}${d.reportUsage === false ? ' (cannot tell when the kernel copies anyway)' : ''}`,
    `IORING_OP_POLL_ADD:       ${yesNo(d.ops.pollAdd)}`,
    `IORING_OP_SPLICE:         ${yesNo(d.ops.splice)}`,
    `RLIMIT_MEMLOCK:           ${d.memlockLimit === null ? (noBinding ? yesNo(null) : 'unlimited') : humanBytes(d.memlockLimit)} (registered buffers and in-flight zero-copy pages count against it without CAP_IPC_LOCK)`,
  ]
  if (d.registeredBuffers !== null) lines.push(`registered buffers:       ${d.registeredBuffers.registered ? 'yes' : `no: ${d.registeredBuffers.reason}`}`)
  lines.push(
    `HTTP file bodies:         ${d.http.inlineSendfile ? 'cached pages inline with sendfile(2) (cachestat works), the rest' : `no inline sendfile (${noBinding ? 'it needs the binding' : 'cachestat(2) unavailable or refused'}), all`} ${d.http.body === 'engine' ? 'by the io_uring engine’s sendfile(2)' : 'streamed through res'}`,
  )
  const c = d.fileCache
  lines.push(
    `HTTP file cache:          up to ${c.maxEntries} descriptors, each reused for ${c.freshMs} ms; ${c.keepsBodies && c.maxBodyBytes > 0 ? `bytes of files up to ${humanBytes(c.bodyMax)} kept (${c.loopbackBodyMax > c.bodyMax ? `${humanBytes(c.loopbackBodyMax)} for loopback peers; ` : ''}${humanBytes(c.maxBodyBytes)} in all), checked every ${c.checkMs} ms` : 'no file bytes kept'}`,
  )
  const t = d.selfTest
  lines.push(
    `self-test:                ${t.zeroCopy ? `4 MiB sent as IORING_OP_SEND_ZC, ${t.notifications} notifications${t.copiedNotifications > 0 ? ' (the kernel copied: always so on loopback)' : ''}` : '4 MiB went out through the fallback'}`,
  )
  lines.push('', verdict(d), `Exit status ${d.exitCode} (0 zero-copy, 2 fallback, 3 no native binding).`)
  return lines.join('\n')
}
