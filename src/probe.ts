/**
 * What this process can do: the probe report, its types, and the fallback reason it implies.
 * The report's types are the binding's generated ones (binding.d.ts, from the `#[napi(object)]`
 * structs of crates/zerocopy-node), narrowed where the public report says more.
 * @module
 */
import { release } from 'node:os'

import type * as Generated from '../binding.js'
import { binding, loadError, noBindingMessage, warnNoBinding } from './native'

/** io_uring opcodes the running kernel supports, from `IORING_REGISTER_PROBE`. */
export type ProbeOps = Generated.ProbeOps

/**
 * Stable codes for why zero-copy sends are unavailable. Declared here, not generated: the
 * binding reports its codes as strings, and `'no-binding'` is only ever found by JavaScript.
 */
export type ProbeReasonCode =
  /** Not Linux, or an addon built with the `force-unsupported` feature. */
  | 'platform'
  /** Switched off with the `ZEROCOPY_SOCKET_DISABLE` environment variable. */
  | 'disabled-by-env'
  /** `kernel.io_uring_disabled` forbids io_uring for this process. */
  | 'sysctl'
  /** A seccomp filter blocks `io_uring_setup` (Docker's default profile does). */
  | 'seccomp'
  /** The kernel has no io_uring at all. */
  | 'enosys'
  /** `io_uring_setup` failed for another reason. */
  | 'setup-failed'
  /** io_uring works, but the kernel predates `IORING_OP_SEND_ZC` (Linux 6.0). */
  | 'kernel-too-old'
  /**
   * No native binding could be loaded: no prebuilt binary for this platform triple, an install
   * without optional dependencies (`--omit=optional`), or a damaged addon. The message names
   * the triple and carries the loader's own message.
   */
  | 'no-binding'

/**
 * Why zero-copy sends are unavailable in this process. The binding's own fields, except
 * those it leaves out when absent (napi `Option`), which the public report gives as `null`.
 */
export interface ProbeReason extends Omit<Generated.ProbeReason, 'code' | 'errno'> {
  /** Machine-readable cause. */
  code: ProbeReasonCode
  /** The errno name `io_uring_setup` failed with (`'EPERM'`, `'ENOSYS'`), or `null`. */
  errno: string | null
}

/** What this process can do, as found by {@link probe}; absent values are `null`, as in {@link ProbeReason}. */
export interface ProbeReport extends Omit<Generated.BindingProbeReport, 'ioUringDisabled' | 'seccomp' | 'reason' | 'memlockLimit'> {
  /** Value of `kernel.io_uring_disabled` (0 allowed, 1 privileged only, 2 off), or `null` if absent. */
  ioUringDisabled: number | null
  /** Seccomp mode of this process (0 none, 1 strict, 2 filter), or `null` if unknown. */
  seccomp: number | null
  /** Why `supported` is `false`; `null` when it is `true`. */
  reason: ProbeReason | null
  /**
   * Soft `RLIMIT_MEMLOCK` in bytes, or `null` when unlimited. `BufferPool` registrations and
   * in-flight unregistered zero-copy sends are charged to it (unless the process has
   * CAP_IPC_LOCK); beyond it zero-copy falls back to plain sends.
   */
  memlockLimit: number | null
}

/**
 * Reports whether this process can use io_uring zero-copy sends, and if not, why.
 * The kernel is asked once per process; later calls return a copy of the same answer.
 * @returns The probe report.
 * @example
 * ```ts
 * const report = probe()
 * if (!report.supported) console.warn(`plain sends only: ${report.reason?.message}`)
 * ```
 */
export function probe(): ProbeReport {
  if (loadError !== null) return noBindingReport()
  const r = binding.probe()
  return {
    supported: r.supported,
    ioUring: r.ioUring,
    platform: r.platform,
    kernel: r.kernel,
    ops: { ...r.ops },
    reportUsage: r.reportUsage,
    ioUringDisabled: r.ioUringDisabled ?? null,
    seccomp: r.seccomp ?? null,
    memlockLimit: r.memlockLimit ?? null,
    reason: r.reason ? { code: r.reason.code as ProbeReasonCode, errno: r.reason.errno ?? null, message: r.reason.message } : null,
  }
}

/** The report without a native binding: nothing is known of io_uring, nothing is used. */
function noBindingReport(): ProbeReport {
  const ops = { send: false, sendmsg: false, sendZc: false, sendmsgZc: false, splice: false, readFixed: false, pollAdd: false }
  return {
    supported: false,
    ioUring: false,
    platform: process.platform,
    kernel: process.platform === 'linux' ? release() : '',
    ops,
    reportUsage: false,
    ioUringDisabled: null,
    seccomp: null,
    memlockLimit: null,
    reason: { code: 'no-binding', errno: null, message: noBindingMessage() },
  }
}

/**
 * The sentence explaining why zero-copy is unavailable, for `stats.fallbackReason`: called when
 * a socket or a response falls back, so the first `no-binding` fallback also emits the
 * process's one `ZC_NO_BINDING` warning.
 */
export function probeReason(): string {
  const reason = probe().reason
  if (reason?.code === 'no-binding') warnNoBinding()
  return reason?.message ?? 'zero-copy sends are unavailable'
}
