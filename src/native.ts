/**
 * The native binding, loaded so that loading never throws. Where no addon can be loaded (no
 * prebuilt binary for this platform, an install without optional dependencies, a damaged
 * file), the package still loads: {@link binding} is then a stand-in that answers like the
 * non-Linux stub build does (no engine, an unregistered `BindingPool`, `ERR_ZC_UNSUPPORTED`
 * from `sendZcSync`), so every socket takes the `net.Socket` fallback and `probe()` reports
 * `no-binding` with {@link loadError}.
 * @module
 */
import type * as Generated from '../binding.js'
import { codedError, errnoError } from './errors'

/** What the generated loader (`binding.js`) exports. */
export type NativeBinding = typeof Generated

let loaded: NativeBinding | null = null
let thrown: unknown = null
try {
  // `binding.js` throws when neither a local `.node` file nor the platform package loads.
  loaded = require('../binding.js') as NativeBinding
} catch (e) {
  thrown = e
}

/** The loaded native binding, or `null` when none could be loaded. */
export const native: NativeBinding | null = loaded

/**
 * What the generated loader threw when no binding loaded (its own errors are on `cause`), or
 * `null`. Kept whole, as the `cause` of the `no-binding` warning and of `ERR_ZC_UNSUPPORTED`.
 */
export const loadFailure: unknown = thrown

/**
 * The loader's errors, one line each without require stacks or repeats (the `cause` chain of what
 * it threw: its own top line is advice about npm that does not apply here), or `null`.
 */
export const loadError: string | null = thrown === null ? null : describeLoadError((thrown as { cause?: unknown }).cause ?? thrown)

/**
 * Platform triples with a prebuilt `@zerocopy-socket/binding-<triple>` package (the `npm/`
 * folders); `__test__/usability-warning.spec.ts` checks this list against them.
 */
export const PREBUILT_TRIPLES: readonly string[] = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc']

/**
 * The one sentence `probe()` reports as the `no-binding` reason: what is missing and the one
 * command that fixes it (or, for a platform without a prebuilt binary, that there is none).
 */
export function noBindingMessage(): string {
  const t = triple()
  if (!PREBUILT_TRIPLES.includes(t)) {
    return `No prebuilt zerocopy-socket binding exists for ${t}, so sends use plain net.Socket writes.`
  }
  return `The native binding @zerocopy-socket/binding-${t} did not load, so sends use plain net.Socket writes; install it with \`npm install @zerocopy-socket/binding-${t}\`.`
}

/** `code` of the warning emitted the first time a socket falls back for `no-binding`. */
export const NO_BINDING_WARNING = 'ZC_NO_BINDING'

let warned = false

/**
 * Emits the `no-binding` warning (type `ZeroCopySocketWarning`, code {@link NO_BINDING_WARNING},
 * the loader's error as `cause`) the first time this is called in this thread; later calls do
 * nothing. Node's own switches silence it: `--no-warnings`, `NODE_NO_WARNINGS=1`,
 * `--disable-warning=ZC_NO_BINDING` (or `=ZeroCopySocketWarning`).
 */
export function warnNoBinding(): void {
  if (warned || thrown === null) return
  warned = true
  const warning = new Error(noBindingMessage(), { cause: thrown })
  warning.name = 'ZeroCopySocketWarning'
  ;(warning as Error & { code: string }).code = NO_BINDING_WARNING
  process.emitWarning(warning)
}

/** For `doctor`, which prints the message itself: the warning is not emitted in this process. */
export function suppressNoBindingWarning(): void {
  warned = true
}

function unavailable(): never {
  const err = codedError('ERR_ZC_UNSUPPORTED', `io_uring zero-copy sends are not available: ${noBindingMessage()}`)
  err.cause = thrown
  throw err
}

/** `BufferPool`'s memory without a binding: ordinary Buffers, one allocation each, never registered. */
class UnregisteredPool {
  readonly registered = false
  readonly reason: string = noBindingMessage()
  #buffers: Buffer[]
  constructor(size: number, count: number) {
    // One allocation a buffer: BufferPool tells its buffers apart by their ArrayBuffer.
    this.#buffers = Array.from({ length: count }, () => Buffer.alloc(size))
  }
  buffer(index: number): Buffer {
    return this.#buffers[index]
  }
}

const standIn = {
  __napiBindingTarget: 'native',
  BindingPool: UnregisteredPool as unknown as NativeBinding['BindingPool'],
  BindingSocket: unavailable as unknown as NativeBinding['BindingSocket'],
  closeFd: unavailable,
  // Like Windows: descriptors cannot be duplicated, so sendFile uses the caller's own.
  dupFd: (): never => {
    throw errnoError('ENOSYS', 'dup')
  },
  engineArm: () => new Float64Array(0),
  engineFailure: () => null,
  engineStart: () => false,
  engineUnreleased: () => 0,
  probe: unavailable,
  sendZcSync: unavailable,
  // Files are then read with pread, which ignores O_NONBLOCK on a regular file.
  setBlocking: () => {},
  // Cached pages cannot be sent inline without the addon: nothing sent, the caller goes on.
  sendfileNow: () => 0,
  readNow: () => 0,
  // No engine without the addon, so nothing asks; were it asked, nothing would be sent.
  sendNow: () => 0,
  fileIdentity: () => 38, // ENOSYS
  unackedBytes: () => -1,
} satisfies Omit<NativeBinding, ProtocolConstant>

/**
 * The engine's event protocol (crates/zerocopy-node/src/protocol.rs). The stand-in has none of
 * them: only the engine's event records and results are read with them, and there is no engine.
 */
type ProtocolConstant = `RECORD_${string}` | `FLAG_${string}` | `ERRNO_${string}`

/** The native binding, or where none loaded the stand-in described above. */
export const binding: NativeBinding = loaded ?? (standIn as unknown as NativeBinding)

// Lets `binding.BindingSocket` name the class's instance type too, as with
// `import * as binding from '../binding.js'`.
export declare namespace binding {
  export type BindingPool = Generated.BindingPool
  export type BindingSocket = Generated.BindingSocket
}

/** The error's message and its `cause` chain, one line each, without require stacks or repeats. */
function describeLoadError(e: unknown): string {
  const lines: string[] = []
  const seen = new Set<unknown>()
  for (let cur: unknown = e; cur !== null && cur !== undefined && !seen.has(cur) && lines.length < 8; cur = (cur as { cause?: unknown }).cause) {
    seen.add(cur)
    const line = (cur instanceof Error ? cur.message : String(cur)).split('\n')[0]
    if (!lines.includes(line)) lines.push(line)
  }
  return lines.join('; ')
}

let cachedTriple: string | undefined

/**
 * This process's platform triple as napi-rs names its packages (`linux-x64-gnu`,
 * `linux-x64-musl`, `darwin-arm64`, `win32-x64-msvc`): the binary it looks for is
 * `@zerocopy-socket/binding-<triple>`.
 */
export function triple(): string {
  cachedTriple ??= platformTriple()
  return cachedTriple
}

function platformTriple(): string {
  const { platform, arch } = process
  if (platform === 'win32') return `win32-${arch}-msvc`
  if (platform !== 'linux') return `${platform}-${arch}`
  // As binding.js decides: a glibc runtime version in the process report means gnu.
  ;(process.report as { excludeNetwork?: boolean }).excludeNetwork = true
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
  const libc = header?.glibcVersionRuntime ? 'gnu' : 'musl'
  return arch === 'arm' ? `linux-arm-${libc}eabihf` : `linux-${arch}-${libc}`
}
