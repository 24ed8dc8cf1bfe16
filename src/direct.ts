/**
 * Sending a file range inline, on the JS thread, without ever blocking: for small HTTP bodies
 * that should not pay the engine's cross-thread round trip.
 * @module
 */
import { binding } from './native'
import { normalizeBindingError } from './errors'
import { validateInteger } from './validate'

/**
 * Sends up to `length` bytes of the file `fileFd` from `offset` on the socket `sockFd` now,
 * with non-blocking `sendfile(2)` calls on this thread, but only if every page of the range is
 * in the page cache (checked with `cachestat(2)`, Linux 6.5+), so the call never waits for the
 * disk; the socket must be non-blocking (Node's are; a blocking one gets 0), so it never waits
 * for the peer either.
 *
 * Returns the bytes sent, which the caller must account for:
 * - `0`: nothing went: not cached (or `cachestat` unavailable, or the file not owned or
 *   writable by this process on Linux 6.14+), not a regular file, `offset` at or past the end
 *   of the file, a socket in blocking mode, the socket full, or not Linux. Send the range
 *   another way (e.g. the engine's `sendFile`).
 * - less than `length`: the socket filled up, the file ended early, the per-call limit of
 *   1 MiB was reached, or an error came after some bytes went (the next call reports it).
 *   Send the rest another way or call again.
 *
 * Nobody else may write to the socket during the call (e.g. a running `ZeroCopySocket` send),
 * or bytes interleave.
 *
 * @param sockFd - A connected, non-blocking stream socket's descriptor (`socket._handle.fd`).
 * @param fileFd - A regular file's descriptor, open for reading.
 * @param offset - Where in the file to start, in bytes.
 * @param length - How many bytes at most.
 * @param head - Bytes to send first (an HTTP header block), in one segment with the body's
 *   first bytes (`MSG_MORE`); sent only if body bytes go too. They count in the result: a
 *   result below `head.length` means only that much of the head went (the socket filled up).
 * @returns The bytes sent, from 0 to `length` (plus `head.length`).
 * @throws A Node-style errno error (`code`, `errno`, `syscall: 'sendfile'`) when the first
 * `sendfile` fails with nothing sent: `EBADF`, `EPIPE`, `ECONNRESET`, ...;
 * `ERR_INVALID_ARG_TYPE`/`ERR_OUT_OF_RANGE` for bad arguments.
 */
export function sendfileNow(sockFd: number, fileFd: number, offset: number, length: number, head?: Uint8Array): number {
  validateInteger(sockFd, 'sockFd', 0, 2 ** 31 - 1)
  validateInteger(fileFd, 'fileFd', 0, 2 ** 31 - 1)
  validateInteger(offset, 'offset')
  validateInteger(length, 'length')
  try {
    return binding.sendfileNow(sockFd, fileFd, offset, length, head)
  } catch (e) {
    throw normalizeBindingError(e)
  }
}

/**
 * Reads `length` bytes of the file `fd` at `offset` into a new buffer now, on this thread,
 * only from the page cache (`preadv2(RWF_NOWAIT)`: never waits for the disk).
 * @param own - A buffer of its own (to be kept long), not one cut from a shared slab.
 * @returns The bytes, or `null` when they are not all cached, the file is shorter, or this
 *   platform cannot read without waiting (then read them another way).
 * @throws A Node-style errno error (`syscall: 'read'`) when the read fails (`EBADF`, ...).
 */
export function readNow(fd: number, offset: number, length: number, own = false): Buffer | null {
  const buf = own ? Buffer.allocUnsafeSlow(length) : slice(length)
  let n: number
  try {
    n = binding.readNow(fd, buf, offset)
  } catch (e) {
    throw normalizeBindingError(e)
  }
  return n === length ? buf : null
}

/** Bytes of one slab {@link slice} cuts buffers from. */
const SLAB = 256 * 1024
let slab = Buffer.allocUnsafeSlow(0)
let used = 0

/**
 * A new buffer of `length` bytes (at most {@link SLAB}), cut from a slab as `Buffer.allocUnsafe`
 * cuts from its 8 KiB pool: one `ArrayBuffer` for 64 bodies of 4 KiB instead of one for two,
 * which the garbage collector tracks one by one. A slab lives as long as any buffer cut from it.
 */
function slice(length: number): Buffer {
  if (length > SLAB) return Buffer.allocUnsafeSlow(length)
  if (used + length > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB)
    used = 0
  }
  const buf = slab.subarray(used, used + length)
  used += (length + 7) & ~7
  return buf
}
