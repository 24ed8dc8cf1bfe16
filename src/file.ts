/**
 * The file side of `sendFile`: argument checks, opening and checking the file, and reading it
 * in chunks for the fallback path. The engine path reads on the engine's own thread.
 * @module
 */
import { closeSync, constants as fsConstants, fstatSync, open as openCb, read as readCb, type Stats } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { promisify } from 'node:util'

import { binding } from './native'
import { codedError, errnoError, invalidArgType, invalidArgValue, outOfRange, type ZeroCopyError } from './errors'
import { validateAbortSignal, validateInteger, validateOptions } from './validate'

const open = promisify(openCb)
const read = promisify(readCb)

/** What `sendFile` sends: a path, a file descriptor, or an open `FileHandle`. */
export type FileSource = string | number | FileHandle

/** Options for `sendFile`. */
export interface SendFileOptions {
  /** Bytes; where in the file to start. **Default:** `0`. */
  offset?: number | undefined
  /** Bytes to send. **Default:** the rest of the file after `offset`. */
  length?: number | undefined
  /** Aborts the send: if it has not started it is withdrawn; otherwise it stops after the current request. Rejects with `AbortError`. */
  signal?: AbortSignal | undefined
  /** Called as bytes go out, with bytes sent so far and the total. */
  onProgress?: ((sent: number, total: number) => void) | undefined
}

/** A file opened, checked and ready to send: `length` bytes at `offset` of `fd`. */
export interface PreparedFile {
  fd: number
  offset: number
  length: number
  /** The file's `fstat`, taken when it was checked. */
  stats: Stats
  /** Closes what `sendFile` opened (a path) or duplicated (a caller's fd or handle). */
  close(): Promise<void>
}

function isFileHandle(value: unknown): value is FileHandle {
  return typeof value === 'object' && value !== null && typeof (value as FileHandle).stat === 'function' && typeof (value as FileHandle).fd === 'number'
}

/** Synchronous checks of `sendFile`'s arguments (types and signs); throws coded errors. */
export function validateSendFile(file: unknown, options: SendFileOptions | undefined): asserts file is FileSource {
  if (typeof file === 'number') validateInteger(file, 'file', 0, 0x7fffffff)
  else if (typeof file !== 'string' && !isFileHandle(file)) throw invalidArgType('file', 'of type string or number, or a FileHandle', file)
  if (typeof file === 'string' && (file.length === 0 || file.includes('\0'))) throw invalidArgValue('file', 'must be a non-empty path without null bytes', file)
  validateOptions(options, 'options')
  if (options?.offset !== undefined) validateInteger(options.offset, 'options.offset', 0)
  if (options?.length !== undefined) validateInteger(options.length, 'options.length', 0)
  validateAbortSignal(options?.signal, 'options.signal')
  if (options?.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw invalidArgType('options.onProgress', 'of type function', options.onProgress)
  }
}

function withPath(err: ZeroCopyError, path: string | undefined): ZeroCopyError {
  if (path !== undefined) Object.assign(err, { path, message: `${err.message} '${path}'` })
  return err
}

/**
 * The caller's file, taken synchronously when `sendFile` is called: a path (opened later), or a
 * duplicate of the caller's descriptor (of a number or a `FileHandle`), which stays valid and
 * names the same file whatever the caller does with its own descriptor once the call returned.
 */
export type TakenFile = { path: string } | { fd: number; owned: boolean }

/**
 * Takes `file` for a later {@link prepareFile}. Throws `EBADF` (with `syscall: 'sendFile'`) for
 * a closed descriptor or `FileHandle`. Where descriptors cannot be duplicated (Windows), the
 * caller's own is used, and must stay open until the send settles.
 */
export function takeFile(file: FileSource): TakenFile {
  if (typeof file === 'string') return { path: file }
  const fd = typeof file === 'number' ? file : file.fd
  if (fd < 0) throw errnoError('EBADF', 'sendFile')
  try {
    return { fd: binding.dupFd(fd), owned: true }
  } catch (e) {
    const code = (e as ZeroCopyError).code
    if (code === 'ENOSYS') return { fd, owned: false }
    throw errnoError(code ?? 'EBADF', 'sendFile')
  }
}

/** Closes what {@link takeFile} took, for a send that will not happen. */
export function releaseTaken(taken: TakenFile): void {
  if ('fd' in taken && taken.owned) binding.closeFd(taken.fd)
}

/**
 * How a path is opened. `O_NONBLOCK`: a FIFO's `open` would otherwise wait for a writer, for
 * ever, holding one of libuv's four threads (four such requests stall every `fs` call of the
 * process). The descriptor is then `fstat`ed and refused unless it is a regular file, whose
 * flag is cleared again before anything reads it. This is race-free where "stat the path, then
 * open it" is not: the file checked is the one opened, while a path checked first can be
 * replaced by a FIFO before the open. `O_NOCTTY`: a terminal given as the file does not become
 * the process's controlling terminal.
 */
export const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0) | (fsConstants.O_NOCTTY ?? 0)

/**
 * Opens (for a path) and checks the taken file, and resolves the byte range. Rejects with
 * `ENOENT` and the other open errors, `EISDIR` for a directory, `ERR_INVALID_ARG_VALUE` for
 * something that is not a regular file (a FIFO, a device, a socket: never blocking on it),
 * and `RangeError` `ERR_OUT_OF_RANGE` for a range past the end. The result's `close()` closes what was opened or duplicated (never the caller's own).
 */
export async function prepareFile(taken: TakenFile, options: SendFileOptions | undefined): Promise<PreparedFile> {
  // Only the open goes to the thread pool: a path lookup can wait for the disk. `fstat` of an
  // open descriptor and `close` of a read-only one never do, and each thread-pool round trip
  // cost a small HTTP response more than its body (measured with bench:http at 4 KiB).
  let opened: number | undefined
  let fd: number
  let dup: number | undefined
  const path = 'path' in taken ? taken.path : undefined
  if ('path' in taken) {
    opened = await open(taken.path, OPEN_FLAGS)
    fd = opened
  } else {
    fd = taken.fd
    if (taken.owned) dup = fd
  }
  const close = async (): Promise<void> => {
    if (opened !== undefined) closeSync(opened)
    opened = undefined
    if (dup !== undefined) binding.closeFd(dup)
    dup = undefined
  }
  return checkFile(fd, path, options, close, opened !== undefined)
}

/**
 * Checks an open descriptor (`fstat`: a regular file, the range inside it) and makes it a
 * {@link PreparedFile} whose `close()` is `close`; on failure calls `close` and throws as
 * {@link prepareFile} rejects. `unblock`: clear the `O_NONBLOCK` a path was opened with, once it
 * is known to be a regular file (see {@link OPEN_FLAGS}).
 */
export async function checkFile(
  fd: number,
  path: string | undefined,
  options: SendFileOptions | undefined,
  close: () => Promise<void>,
  unblock = false,
): Promise<PreparedFile> {
  try {
    let stats: Stats
    try {
      stats = fstatSync(fd)
    } catch (e) {
      throw withPath(errnoError((e as ZeroCopyError).code ?? 'EBADF', 'fstat'), path)
    }
    if (stats.isDirectory()) throw withPath(errnoError('EISDIR', 'sendFile'), path)
    if (!stats.isFile()) throw invalidArgValue('file', 'must be a regular file', path ?? fd)
    if (unblock) binding.setBlocking(fd)
    const offset = options?.offset ?? 0
    if (offset > stats.size) throw outOfRange('options.offset', `<= ${stats.size} (the file size)`, offset)
    const length = options?.length ?? stats.size - offset
    if (offset + length > stats.size) throw outOfRange('options.length', `<= ${stats.size - offset} (the bytes after offset)`, length)
    return { fd, offset, length, stats, close }
  } catch (e) {
    await close()
    throw e
  }
}

/** The error for a file that ended before the range did (it shrank while being sent). */
export function fileShrankError(): ZeroCopyError {
  return codedError('ERR_ZC_FILE_SHRANK', 'The file ended before the requested range: it shrank while being sent')
}

/** Reads the prepared range in fresh `chunkSize` buffers (each one is owned by its consumer). */
export async function* readChunks(file: PreparedFile, chunkSize: number): AsyncGenerator<Buffer> {
  let position = file.offset
  const end = file.offset + file.length
  while (position < end) {
    const size = Math.min(chunkSize, end - position)
    const buffer = Buffer.allocUnsafe(size)
    let filled = 0
    while (filled < size) {
      const { bytesRead } = await read(file.fd, buffer, filled, size - filled, position + filled)
      if (bytesRead === 0) throw fileShrankError()
      filled += bytesRead
    }
    position += size
    yield buffer
  }
}
