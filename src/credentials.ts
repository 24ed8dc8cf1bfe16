/**
 * The process credentials this thread's io_uring engine was started under, and whether they
 * changed since. A ring keeps the credentials of the task that created it for work the kernel
 * does on its behalf (io-wq workers are created from it and keep its credentials; the class
 * of CVE-2024-22017, which made Node switch libuv's io_uring off by default). So once the
 * process drops (or changes) privileges with `setuid`/`setgid` after the engine started, new
 * sockets and responses do not use that ring: they take the plain path and say why.
 * @module
 */

interface Credentials {
  uid: number
  euid: number
  gid: number
  egid: number
}

function current(): Credentials | null {
  // Not on Windows (no engine there anyway).
  if (typeof process.geteuid !== 'function' || typeof process.getegid !== 'function') return null
  return { uid: process.getuid!(), euid: process.geteuid(), gid: process.getgid!(), egid: process.getegid() }
}

let atStart: Credentials | null = null

/**
 * Whether a `process.set*id`/`setgroups`/`initgroups` call ran since the credentials were last
 * read. Reading them costs four calls into Node's binding (about 8 µs, 15 % of a 4 KiB
 * response), and from JavaScript they change only through those functions, which are wrapped
 * once to raise this flag; so they are read again only after such a call.
 */
let maybeChanged = true
let lastAnswer: string | null = null
for (const name of ['setuid', 'seteuid', 'setgid', 'setegid', 'setgroups', 'initgroups'] as const) {
  const own = (process as unknown as Record<string, unknown>)[name] as ((...args: unknown[]) => unknown) | undefined
  if (typeof own !== 'function') continue
  Object.defineProperty(process, name, {
    configurable: true,
    writable: true,
    value: function (this: unknown, ...args: unknown[]) {
      maybeChanged = true
      return own.apply(this, args)
    },
  })
}

/** Records the credentials the engine of this thread starts under (call once, when it starts). */
export function recordEngineCredentials(): void {
  atStart = current()
  maybeChanged = true
}

/**
 * Why this thread's engine must not take new work because the process credentials changed
 * since it started, or `null` when they did not (or it has not started).
 */
export function credentialsChanged(): string | null {
  if (atStart === null) return null
  if (!maybeChanged) return lastAnswer
  maybeChanged = false
  lastAnswer = compare(atStart)
  return lastAnswer
}

function compare(atStart: Credentials): string | null {
  const now = current()
  if (now === null) return null
  const changed = (Object.keys(atStart) as (keyof Credentials)[]).filter((k) => atStart![k] !== now[k])
  if (changed.length === 0) return null
  return `the process changed its credentials (${changed.map((k) => `${k} ${atStart![k]}→${now[k]}`).join(', ')}) after this thread's io_uring engine started, and a ring keeps the credentials it was created with; new sockets use plain sends. Drop privileges before the first ZeroCopySocket, respondWithFile, serveStatic response or BufferPool`
}
