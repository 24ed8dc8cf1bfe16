/**
 * zerocopy-socket: io_uring zero-copy TCP sends (`IORING_OP_SEND_ZC`) for Node.js, with a
 * transparent fallback to ordinary socket writes wherever the kernel or platform says no.
 *
 * - {@link ZeroCopySocket}: the socket class (src/socket.ts).
 * - {@link probe}: what this process can do, and why not (src/probe.ts).
 * - {@link respondWithFile}: file responses for node:http (src/http.ts) and node:http2 (src/http2.ts).
 * - {@link serveStatic}: a drop-in for `express.static` (src/static.ts; also `zerocopy-socket/static`).
 * - {@link fileCacheStats}, {@link configureFileCache}, {@link clearFileCache}: the descriptors
 *   kept for HTTP file responses (src/file-cache.ts).
 * - {@link FileBody}: the file body of the framework modules (`zerocopy-socket/fastify`, `/koa`, `/hono`; src/frameworks/).
 * - {@link BufferPool}: Buffers registered with the ring (src/pool.ts).
 * - {@link sendZcSync}: a blocking one-shot send for tests and diagnostics.
 * @module
 */
import { binding } from './src/native'
import { normalizeBindingError } from './src/errors'
import { validateInteger, validateUint8Array } from './src/validate'

export { probe } from './src/probe'
export type { ProbeOps, ProbeReason, ProbeReasonCode, ProbeReport } from './src/probe'
export { ZeroCopySocket } from './src/socket'
export { respondWithFile } from './src/http'
export type { RequestHead, RespondWithFileOptions, RespondWithFileResult } from './src/http'
export { clearFileCache, configureFileCache, fileCacheStats } from './src/file-cache'
export type { FileCacheOptions, FileCacheStats } from './src/file-cache'
export { serveStatic } from './src/static'
export type { ServeStaticOptions, StaticMiddleware } from './src/static'
export { FileBody } from './src/frameworks/file-body'
export type { FileBodyResult, FileWindow } from './src/frameworks/file-body'
export { BufferPool } from './src/pool'
export type { BufferPoolOptions } from './src/pool'
export type { ConnectOptions, SendFileResult, SocketStats, WriteOptions, WriteResult, WriteStreamOptions, ZeroCopyMode, ZeroCopyOptions } from './src/socket'
export type { FileSource, SendFileOptions } from './src/file'
export { isZeroCopyError } from './src/errors'
export type { ErrnoCode, ZeroCopyError, ZeroCopyErrorCode } from './src/errors'

/**
 * Sends all of `data` on the socket file descriptor `fd` with blocking `IORING_OP_SEND_ZC`
 * calls, each waited for until the kernel's notification. It blocks the event loop: it exists
 * for tests and diagnostics. Use `ZeroCopySocket` for transfers.
 * @param fd - A connected TCP or UDP socket's file descriptor.
 * @param data - The bytes to send; must not be empty.
 * @returns The number of bytes sent (always `data.byteLength`).
 * @throws `TypeError` `ERR_INVALID_ARG_TYPE` for a non-integer `fd` or non-`Uint8Array` `data`;
 *   `ERR_INVALID_ARG_VALUE` for empty `data`; `ERR_ZC_UNSUPPORTED` when {@link probe} says no;
 *   the kernel's errno (`EOPNOTSUPP` for AF_UNIX sockets, `EPIPE`, `ECONNRESET`, `ENOTSOCK`, ...)
 *   with `syscall: 'sendZc'`.
 */
export function sendZcSync(fd: number, data: Uint8Array): number {
  validateInteger(fd, 'fd', 0, 0x7fffffff)
  validateUint8Array(data, 'data')
  try {
    return binding.sendZcSync(fd, data)
  } catch (e) {
    throw normalizeBindingError(e)
  }
}
