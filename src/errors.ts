/**
 * Error shapes of zerocopy-socket, and the one place where native errors become Node-style ones.
 *
 * Match on `err.code`, not on `instanceof`: errors from the native binding, from Node's own
 * `net.Socket` (fallback path) and from argument checks all carry a `code`.
 * @module
 */
import { constants } from 'node:os'

/** Errno names the kernel reports for socket sends, connects and file opens, as Node spells them. */
export type ErrnoCode =
  | 'EPIPE'
  | 'ECONNRESET'
  | 'ECONNABORTED'
  | 'ENOTCONN'
  | 'ENOTSOCK'
  | 'EOPNOTSUPP'
  | 'EBADF'
  | 'EINVAL'
  | 'ENOMEM'
  | 'ENOBUFS'
  | 'EMSGSIZE'
  | 'ETIMEDOUT'
  | 'ECANCELED'
  | 'EPERM'
  | 'ENOSYS'
  /** `connect()`: nothing listens there. */
  | 'ECONNREFUSED'
  /** `connect()`: no route to the host or network. */
  | 'EHOSTUNREACH'
  | 'ENETUNREACH'
  /** `sendFile()`/`respondWithFile()`: the file may not be opened for reading. */
  | 'EACCES'

/** Every `code` this package puts on an error it throws or rejects with. */
export type ZeroCopyErrorCode =
  | ErrnoCode
  /** Zero-copy sends are unavailable here (see `probe().reason`); only thrown by the low-level `sendZcSync`. */
  | 'ERR_ZC_UNSUPPORTED'
  /** An internal failure of the native engine; please report it. */
  | 'ERR_ZC_INTERNAL'
  /** An argument has the wrong type (a `TypeError`). */
  | 'ERR_INVALID_ARG_TYPE'
  /** An argument has the right type but an unusable value (a `TypeError`). */
  | 'ERR_INVALID_ARG_VALUE'
  /** A number is outside its allowed range (a `RangeError`). */
  | 'ERR_OUT_OF_RANGE'
  /** The operation was aborted through an `AbortSignal` (an `AbortError`). */
  | 'ABORT_ERR'
  /** Written after `end()`. */
  | 'ERR_STREAM_WRITE_AFTER_END'
  /** Written after `destroy()`, or the socket was destroyed with writes pending. */
  | 'ERR_STREAM_DESTROYED'
  /** The underlying socket is closed or not connected. */
  | 'ERR_SOCKET_CLOSED'
  /** `socket.write()` was called directly on a socket the engine owns. */
  | 'ERR_ZC_SOCKET_OWNED'
  /** `respondWithFile`: the response's headers were already sent. */
  | 'ERR_HTTP_HEADERS_SENT'
  /** Written, sent or ended after `release()` handed the socket back. */
  | 'ERR_ZC_SOCKET_RELEASED'
  /** `BufferPool.acquire()`: every buffer is acquired or still in flight. */
  | 'ERR_ZC_POOL_EXHAUSTED'
  /** `sendFile`: the file ended before the requested range (it shrank while being sent). */
  | 'ERR_ZC_FILE_SHRANK'
  /**
   * This thread's io_uring engine failed for good (`io_uring_enter` returned an error): every
   * write of its sockets fails with this, and later sockets use plain sends.
   */
  | 'ERR_ZC_ENGINE_FAILED'
  /** `sendFile`: a path names a directory. */
  | 'EISDIR'
  /** `sendFile`: a path names no file. */
  | 'ENOENT'

/**
 * An `Error` carrying a Node-style `code`, and for kernel failures `errno` and `syscall`.
 * `code` is one of {@link ZeroCopyErrorCode} (which editors complete) or another code Node's
 * own socket and file APIs report through us (`ECONNREFUSED`, ...); use
 * {@link isZeroCopyError} with a code to have the compiler check its spelling.
 */
export interface ZeroCopyError extends Error {
  /**
   * Stable identifier of the failure; match on this. (`string & {}` keeps the literal union
   * for completion instead of collapsing it into `string`.)
   */
  code: ZeroCopyErrorCode | (string & {})
  /** Negative errno for kernel failures (as in node:net), e.g. `-32` for `EPIPE`. */
  errno?: number
  /** The operation that failed, e.g. `'sendZc'` or `'write'`. */
  syscall?: string
}

/**
 * Whether `e` is an `Error` with a string `code` (every error this package throws or rejects
 * with is), and with `code` given, that code. The `code` argument only accepts
 * {@link ZeroCopyErrorCode}s, so a misspelt code does not compile.
 * @param e - Anything caught.
 * @param code - The code to match, e.g. `'ENOENT'`.
 * @returns `true` when `e` is such an error; narrows `e.code` to `code`.
 * @example
 * ```ts
 * try {
 *   await zs.sendFile(path)
 * } catch (e) {
 *   if (isZeroCopyError(e, 'ENOENT')) console.log(`no such file: ${path}`)
 *   else throw e
 * }
 * ```
 */
export function isZeroCopyError(e: unknown): e is ZeroCopyError
export function isZeroCopyError<C extends ZeroCopyErrorCode>(e: unknown, code: C): e is ZeroCopyError & { code: C }
export function isZeroCopyError(e: unknown, code?: ZeroCopyErrorCode): boolean {
  if (!(e instanceof Error)) return false
  const actual = (e as { code?: unknown }).code
  return typeof actual === 'string' && (code === undefined || actual === code)
}

function withCode<E extends Error>(err: E, code: string): E & ZeroCopyError {
  return Object.assign(err, { code })
}

/**
 * Builds the error Node's own sockets would report for a failed syscall: message
 * `"<syscall> <CODE>"`, `code`, negative `errno` and `syscall`.
 */
export function errnoError(code: string, syscall: string): ZeroCopyError {
  const errno = (constants.errno as Record<string, number>)[code]
  const err = withCode(new Error(`${syscall} ${code}`), code)
  err.syscall = syscall
  if (errno !== undefined) err.errno = -errno
  return err
}

/** `TypeError` with `code: 'ERR_INVALID_ARG_TYPE'`, worded like Node's. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError & ZeroCopyError {
  return withCode(new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_TYPE')
}

/** `TypeError` with `code: 'ERR_INVALID_ARG_VALUE'`. */
export function invalidArgValue(name: string, reason: string, actual: unknown): TypeError & ZeroCopyError {
  return withCode(new TypeError(`The argument '${name}' ${reason}. Received ${describe(actual)}`), 'ERR_INVALID_ARG_VALUE')
}

/** `RangeError` with `code: 'ERR_OUT_OF_RANGE'`, worded like Node's. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError & ZeroCopyError {
  return withCode(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`), 'ERR_OUT_OF_RANGE')
}

/** An error with just a `code` and a message (stream-state errors and our own codes). */
export function codedError(code: ZeroCopyErrorCode, message: string): ZeroCopyError {
  return withCode(new Error(message), code)
}

/** The `AbortError` Node's APIs reject with (`name: 'AbortError'`, `code: 'ABORT_ERR'`). */
export function abortError(signal?: AbortSignal): ZeroCopyError {
  const err = withCode(new Error('The operation was aborted', { cause: signal?.reason }), 'ABORT_ERR')
  err.name = 'AbortError'
  return err
}

/**
 * Normalises an error thrown by the native binding: the binding puts the code on `err.code`
 * and starts the message with the syscall (`"sendZc EPIPE (Broken pipe)"`); this adds
 * `syscall` and the negative `errno`, like node:net errors have.
 */
export function normalizeBindingError(e: unknown): unknown {
  if (!(e instanceof Error)) return e
  const err = e as ZeroCopyError
  const code = typeof err.code === 'string' ? err.code : undefined
  if (code === undefined) return withCode(err, 'ERR_ZC_INTERNAL')
  const syscall = /^(\w+) /.exec(err.message)?.[1]
  if (syscall !== undefined && err.syscall === undefined && !code.startsWith('ERR_')) err.syscall = syscall
  const errno = (constants.errno as Record<string, number>)[code]
  if (errno !== undefined && err.errno === undefined) err.errno = -errno
  if (code === 'ERR_INVALID_ARG_VALUE' && !(err instanceof TypeError)) Object.setPrototypeOf(err, TypeError.prototype)
  return err
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name
    return name ? `an instance of ${name}` : 'an object'
  }
  let shown = String(value)
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  if (typeof value === 'string') shown = `'${shown}'`
  return `type ${typeof value} (${shown})`
}

/** A write, end or release of a destroyed socket: `ERR_STREAM_DESTROYED`, as node:net words it. */
export function destroyedError(): ZeroCopyError {
  return codedError('ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed')
}

/** An operation after `release()` handed the socket back: `ERR_ZC_SOCKET_RELEASED`. */
export function releasedError(): ZeroCopyError {
  return codedError(
    'ERR_ZC_SOCKET_RELEASED',
    'This ZeroCopySocket has handed its socket back (release()): write on the socket, or adopt it again with ZeroCopySocket.from()',
  )
}

/** Writing after the peer's FIN ended the socket, worded as node:net's `writeAfterFIN`. */
export function peerEndedError(): ZeroCopyError {
  return codedError('EPIPE', 'This socket has been ended by the other party')
}
