/**
 * Open descriptors of files served over HTTP, kept for a short while so that a response for a
 * file that was just served needs no `open` on the thread pool (a round trip through libuv's
 * threads costs a small response more than its body). nginx's `open_file_cache`, for Node.
 *
 * # Freshness rule
 * - A descriptor is reused for at most {@link FileCacheOptions.freshMs} (default 1 s) after it
 *   was opened; the first request after that opens the path again. So a file **replaced** (a new
 *   file renamed over the path) or **deleted** is seen at most that long after the change; until
 *   then the old file is served, whole.
 * - Every response that reads the file (not answered from kept bytes, below) takes a fresh `fstat`
 *   of the descriptor (never waits for the disk), so for it a file **changed in place**
 *   (truncated, appended to, rewritten) is seen at once: sizes, `ETag` and `Last-Modified` come
 *   from that `fstat`, and a body read is checked against it (src/http.ts).
 *
 * # Bounds and lifetime
 * At most {@link FileCacheOptions.maxEntries} descriptors (least recently used first out). A
 * descriptor is closed when its entry is evicted or expires and no response is using it; expired
 * entries are closed by an unreferenced timer (it never keeps the process alive); every entry is
 * closed when a server whose responses used the cache closes. A worker thread's cache is its own,
 * and Node closes the descriptors a worker opened when it ends (__test__/file-cache.spec.ts).
 *
 * # Small bodies
 * An entry may also keep the whole contents of a file of at most {@link BODY_MAX} bytes, read
 * from the page cache without waiting for the disk (`preadv2(RWF_NOWAIT)`), with the identity
 * the file had both before and after that read (device, inode, size, mtime and ctime, to the
 * nanosecond): a read that raced a write that began meanwhile is not kept. A write already
 * under way when the read began cannot be seen that way (the kernel stamps the times when a
 * write begins), so only a file unchanged for {@link SETTLED_MS} (its ctime) is kept: a
 * file being written is read for each response, as any server reads it. So kept bytes are one
 * whole version of the file, and the headers sent with them (length, `ETag`, `Last-Modified`)
 * are made from that same version. (Writers through a shared `mmap` change pages without
 * stamping the times; no server can see those.)
 * - Kept bytes are checked against a fresh `fstat` of the descriptor when a response wants them
 *   and the last check is {@link FileCacheOptions.checkMs} (default 10 ms) old or more; a change
 *   in place drops them (the next response reads the file again). So a file **changed in place**
 *   is served whole-old for at most `checkMs` after the change, then whole-new; never mixed.
 *   `checkMs: 0` checks on every response. (That check is an `fstat` system call, the largest
 *   cost of a 4 KiB answer after the socket write itself: bench/http-analysis.md.)
 * - Bytes live no longer than their descriptor ({@link FileCacheOptions.freshMs}).
 * - All kept bytes together stay under {@link FileCacheOptions.maxBodyBytes} (least recently
 *   used bodies are dropped first), besides the entries bound.
 * - For a loopback peer, files up to {@link FileCacheOptions.loopbackBodyMax} (1 MiB) are kept
 *   the same way: there the kernel copies whatever it delivers, and writing from memory costs
 *   less than `sendfile(2)` (bench/http-analysis.md). Such a body is only read when it fits the
 *   budget without dropping others, so a larger set of them falls back to `sendfile`, not to a
 *   read per response.
 * @module
 */
import { closeSync, fstatSync, open as openCb, type Stats } from 'node:fs'
import type { Server } from 'node:net'
import { resolve } from 'node:path'
import { promisify } from 'node:util'

import { readNow } from './direct'
import { checkFile, OPEN_FLAGS, type PreparedFile, type SendFileOptions } from './file'
import { binding } from './native'
import { validateInteger, validateOptions } from './validate'

const open = promisify(openCb)

/** Limits of the descriptor cache. */
export interface FileCacheOptions {
  /** Most descriptors kept open. **Default:** `256`. */
  maxEntries: number
  /** Milliseconds a descriptor is reused after its `open`. **Default:** `1000`. */
  freshMs: number
  /**
   * Most bytes of kept files' contents, all together (`0`: none).
   * **Default:** `16777216` (16 MiB).
   */
  maxBodyBytes: number
  /**
   * Milliseconds kept bytes are served without looking at the file again (then an `fstat`
   * tells whether they are still the file's). **Default:** `10`.
   */
  checkMs: number
  /**
   * Largest file whose contents are kept for responses to a **loopback** peer (127.0.0.0/8,
   * `::1`: a reverse proxy on the same host, a local client), where the kernel copies what it
   * delivers anyway and a write from memory costs the server about half of `sendfile(2)`'s
   * system time (docs/benchmarks-http.md). Files up to {@link BODY_MAX} are kept for every
   * peer; bytes of a larger file are read and kept only when they fit in `maxBodyBytes` without
   * dropping others (later small bodies may still push them out). `0` (or anything up to {@link BODY_MAX}): no larger files.
   * **Default:** `1048576` (1 MiB).
   */
  loopbackBodyMax: number
}

/** Largest file whose contents an entry keeps for any peer. */
export const BODY_MAX = 64 * 1024

/**
 * How long a file must have been unchanged (its ctime, against the wall clock) before its
 * contents are kept: far longer than one `read(2)` of the largest kept file takes.
 */
export const SETTLED_MS = 1000

/** A kept file's whole contents, with the identity the file had while they were read. */
interface Body {
  data: Buffer
  /** The file's `fstat` when it was read, for the headers made from it. */
  stats: Stats
  /** Its identity then ({@link identityOf}). */
  id: Float64Array
  /** When the file was last seen to still have that identity (`performance.now()`). */
  checkedAt: number
}

/** One cached descriptor. */
export interface CachedFile {
  readonly fd: number
  readonly path: string
}

interface Entry extends CachedFile {
  openedAt: number
  /** Responses using the descriptor now. */
  users: number
  /** Out of the map: closed once `users` is 0. */
  retired: boolean
  /** The file's contents, for a kept file that was served through {@link cachedBody}. */
  body: Body | null
  /** No read of the contents is tried again before this (`performance.now()`): one failed. */
  bodyRetryAt: number
}

/** What {@link fileCacheStats} reports. */
export interface FileCacheStats {
  /** Descriptors open in the cache now (including retired ones still in use). */
  open: number
  /**
   * Lookups answered from the cache (a response's descriptor, or a send-like module's `stat`:
   * src/frameworks/cached-fs.ts), and responses' lookups that had to open the path.
   */
  hits: number
  misses: number
  /** Bytes of kept files' contents now, and answers given from them. */
  bodyBytes: number
  bodyHits: number
  maxEntries: number
  freshMs: number
  maxBodyBytes: number
  checkMs: number
  loopbackBodyMax: number
}

const options: FileCacheOptions = { maxEntries: 256, freshMs: 1000, maxBodyBytes: 16 * 1024 * 1024, checkMs: 10, loopbackBodyMax: 1024 * 1024 }
/** Fresh entries by absolute path, least recently used first (a hit moves its entry to the end). */
const entries = new Map<string, Entry>()
let openCount = 0
let hits = 0
let misses = 0
let bodyBytes = 0
let bodyHits = 0
let sweeper: NodeJS.Timeout | undefined
const watchedServers = new WeakSet<Server>()

/** The absolute path an entry is kept under; `resolve()` only when `path` may not be one already. */
function keyOf(path: string): string {
  const plain = path.charCodeAt(0) === 47 /* / */ && !path.includes('/.') && !path.includes('//') && path.charCodeAt(path.length - 1) !== 47
  return plain ? path : resolve(path)
}

function closeEntry(e: Entry): void {
  openCount--
  try {
    closeSync(e.fd)
  } catch {
    // already gone: nothing to release
  }
}

function dropBody(e: Entry): void {
  if (e.body === null) return
  bodyBytes -= e.body.data.length
  e.body = null
}

function retire(e: Entry): void {
  if (e.retired) return
  e.retired = true
  dropBody(e)
  if (entries.get(e.path) === e) entries.delete(e.path)
  if (e.users === 0) closeEntry(e)
}

function sweep(): void {
  const now = performance.now()
  for (const e of entries.values()) if (now - e.openedAt >= options.freshMs) retire(e)
  if (entries.size === 0 && sweeper) {
    clearInterval(sweeper)
    sweeper = undefined
  }
}

/**
 * A fresh cached descriptor of `path` for one response (call {@link releaseFile} when done), or
 * `undefined` when the cache has none: then {@link openFile}.
 */
export function cachedFile(path: string): CachedFile | undefined {
  return lookup(path, true)
}

/** {@link cachedFile}; `countMiss`: a lookup that finds nothing counts as a miss. */
function lookup(path: string, countMiss: boolean): CachedFile | undefined {
  const key = keyOf(path)
  const e = entries.get(key)
  if (e === undefined || performance.now() - e.openedAt >= options.freshMs) {
    if (e) retire(e)
    if (countMiss) misses++
    return undefined
  }
  hits++
  entries.delete(key)
  entries.set(key, e)
  e.users++
  return e
}

/**
 * Opens `path` (read-only, on the thread pool) for one response and caches the descriptor.
 * Rejects with the open's error (`ENOENT`, ...); nothing is cached then.
 */
export async function openFile(path: string): Promise<CachedFile> {
  const key = keyOf(path)
  const fd = await open(key, OPEN_FLAGS)
  // Opened without blocking (a FIFO's open would wait for a writer); a regular file gets its
  // blocking mode back at once, as prepareFile does, so the engine's reads wait for the disk.
  // Anything else stays as it is: the caller's check refuses it and forgets the entry.
  try {
    if (fstatSync(fd).isFile()) binding.setBlocking(fd)
  } catch (e) {
    closeSync(fd)
    throw e
  }
  openCount++
  const e: Entry = { fd, path: key, openedAt: performance.now(), users: 1, retired: false, body: null, bodyRetryAt: 0 }
  const old = entries.get(key)
  if (old) retire(old)
  entries.set(key, e)
  while (entries.size > options.maxEntries) retire(entries.values().next().value!)
  sweeper ??= setInterval(sweep, options.freshMs).unref()
  return e
}

/**
 * The stats of `path` from a fresh cached descriptor (one `fstat`, which never waits for the
 * disk, instead of a `stat` on the thread pool), or `undefined` when the cache holds no fresh
 * descriptor of it (or it is not a regular file): then stat the path as usual. What `send`-like
 * modules ask before answering (src/static.ts, src/frameworks/cached-fs.ts); the freshness
 * rule above applies to them as to every response. A stat the cache answers counts as a hit;
 * one it cannot answer is not a miss (nothing is opened for it: a module's probes for
 * variants and directories would count otherwise).
 */
export function cachedStats(path: string): Stats | undefined {
  const file = lookup(path, false)
  if (file === undefined) return undefined
  try {
    const stats = fstatSync(file.fd)
    return stats.isFile() ? stats : undefined
  } catch {
    return undefined // not expected of a descriptor the cache holds: the caller's own stat decides
  } finally {
    releaseFile(file)
  }
}

/** Ends one response's use of a descriptor from {@link cachedFile} or {@link openFile}. */
export function releaseFile(file: CachedFile): void {
  const e = file as Entry
  e.users--
  if (e.retired && e.users === 0) closeEntry(e)
}

/**
 * Marks a descriptor as not to be reused (its file was found not to be a regular file, or
 * failed): it is closed once no response uses it.
 */
export function forgetFile(file: CachedFile): void {
  retire(file as Entry)
}

/** Closes every cached descriptor (those in use once their responses end). */
export function clearFileCache(): void {
  for (const e of entries.values()) retire(e) // deleting the visited entry is safe in a Map iteration
}

/** Closes the cache with `server`, the first time a response of `server` uses it. */
export function closeWithServer(server: Server | null | undefined): void {
  if (!server || watchedServers.has(server)) return
  watchedServers.add(server)
  // A server can listen again after it closed: watch it again from its next response.
  server.once('close', () => {
    watchedServers.delete(server)
    clearFileCache()
  })
}

/** The cache's counts and limits. */
export function fileCacheStats(): FileCacheStats {
  return { open: openCount, hits, misses, bodyBytes, bodyHits, ...options }
}

/**
 * Sets the cache's limits (`maxEntries` 0 turns it off: every response opens its file). Entries
 * over a new limit are closed, and kept contents over a lowered `maxBodyBytes` or
 * `loopbackBodyMax` are let go at once.
 * @throws `ERR_OUT_OF_RANGE` unless each given limit is an integer from 0 to 2^31-1;
 *   `ERR_INVALID_ARG_TYPE` for a limit that is not a number. Nothing changes then.
 */
export function configureFileCache(limits: Partial<FileCacheOptions>): void {
  validateOptions(limits, 'limits')
  // Integers only: a negative or NaN bound would break the eviction loop, and setInterval
  // clamps a period over 2^31-1 ms (or NaN) to 1 ms.
  if (limits.maxEntries !== undefined) validateInteger(limits.maxEntries, 'limits.maxEntries', 0, 2 ** 31 - 1)
  if (limits.freshMs !== undefined) validateInteger(limits.freshMs, 'limits.freshMs', 0, 2 ** 31 - 1)
  if (limits.maxBodyBytes !== undefined) validateInteger(limits.maxBodyBytes, 'limits.maxBodyBytes', 0, Number.MAX_SAFE_INTEGER)
  if (limits.checkMs !== undefined) validateInteger(limits.checkMs, 'limits.checkMs', 0, 2 ** 31 - 1)
  if (limits.loopbackBodyMax !== undefined) validateInteger(limits.loopbackBodyMax, 'limits.loopbackBodyMax', 0, 2 ** 31 - 1)
  if (limits.maxEntries !== undefined) options.maxEntries = limits.maxEntries
  if (limits.freshMs !== undefined) options.freshMs = limits.freshMs
  if (limits.maxBodyBytes !== undefined) options.maxBodyBytes = limits.maxBodyBytes
  if (limits.checkMs !== undefined) options.checkMs = limits.checkMs
  if (limits.loopbackBodyMax !== undefined) options.loopbackBodyMax = limits.loopbackBodyMax
  while (entries.size > options.maxEntries) retire(entries.values().next().value!)
  // Bodies over a lowered loopbackBodyMax are let go now, not when their descriptors expire.
  const keepMax = Math.max(BODY_MAX, options.loopbackBodyMax)
  for (const e of entries.values()) if (e.body !== null && e.body.data.length > keepMax) dropBody(e)
  trimBodies()
  if (sweeper) {
    clearInterval(sweeper)
    sweeper = entries.size > 0 ? setInterval(sweep, options.freshMs).unref() : undefined
  }
}

/**
 * {@link prepareFile} for a path served over HTTP, through the cache: the descriptor is the
 * cache's (no thread-pool `open` when it has a fresh one), checked by a fresh `fstat`; the
 * result's `close()` hands it back. Rejects as `prepareFile` does.
 */
export async function prepareServedFile(path: string, options: SendFileOptions | undefined): Promise<PreparedFile> {
  const file = cachedFile(path) ?? (await openFile(path))
  let released = false
  try {
    return await checkFile(file.fd, path, options, async () => {
      if (released) return
      released = true
      releaseFile(file)
    })
  } catch (e) {
    forgetFile(file)
    throw e
  }
}

/** Drops the least recently used bodies until the kept ones fit {@link FileCacheOptions.maxBodyBytes}. */
function trimBodies(): void {
  if (bodyBytes <= options.maxBodyBytes) return
  for (const e of entries.values()) {
    dropBody(e)
    if (bodyBytes <= options.maxBodyBytes) return
  }
}

/** Where {@link identityOf} writes: device, inode, size, mtime (s, ns), ctime (s, ns), regular. */
const current = new Float64Array(8)

/** `fstat` of `fd` into {@link current} without a `Stats` object; `false` when it fails (or no binding). */
function identityOf(fd: number): boolean {
  return binding.fileIdentity(fd, current) === 0
}

function unchanged(id: Float64Array): boolean {
  for (let i = 0; i < 8; i++) if (id[i] !== current[i]) return false
  return true
}

/** A regular file served from memory: its fresh `fstat` and its whole contents. */
export interface CachedBody {
  readonly stats: Stats
  readonly data: Buffer
}

/**
 * The largest file whose bytes {@link cachedBody} keeps for a response to a peer on
 * `remoteAddress`: {@link FileCacheOptions.loopbackBodyMax} for a loopback address, else
 * {@link BODY_MAX}.
 */
export function keptBodyMax(remoteAddress: string | undefined): number {
  if (options.loopbackBodyMax <= BODY_MAX || remoteAddress === undefined) return BODY_MAX
  const loopback = remoteAddress.startsWith('127.') || remoteAddress === '::1' || remoteAddress.startsWith('::ffff:127.')
  return loopback ? options.loopbackBodyMax : BODY_MAX
}

/**
 * The whole contents of `path` from the cache, synchronously, when the cache holds a fresh
 * descriptor of it and the file is regular and at most `limit` bytes ({@link keptBodyMax}): the
 * kept bytes while a fresh `fstat` shows the file unchanged since they were read, else read now
 * from the page cache (and kept). `undefined` when the cache cannot answer without waiting: no
 * fresh descriptor, not a regular file, too large, pages not cached, a writer raced the read, or
 * (over {@link BODY_MAX}) no room left in {@link FileCacheOptions.maxBodyBytes}. The result is
 * valid until the caller next yields to the event loop (nothing is held).
 */
export function cachedBody(path: string, limit = BODY_MAX): CachedBody | undefined {
  if (options.maxBodyBytes === 0) return undefined
  const e = entries.get(keyOf(path))
  const t = performance.now()
  if (e === undefined || t - e.openedAt >= options.freshMs) return undefined
  let body = e.body
  // Kept for a loopback peer; this response's peer is sent the file by the general path.
  if (body !== null && body.data.length > limit) return undefined
  entries.delete(e.path)
  entries.set(e.path, e)
  // A read that failed (pages not cached, a file not settled or being written) is not tried
  // again for checkMs: up to 1 MiB read and thrown away per response otherwise.
  if (body === null && t < e.bodyRetryAt) return undefined
  if (body === null || t - body.checkedAt >= options.checkMs) {
    if (!identityOf(e.fd) || current[7] !== 1 || current[2] > limit) {
      dropBody(e)
      return undefined
    }
    if (body !== null && unchanged(body.id)) body.checkedAt = t
    else {
      dropBody(e)
      // A larger file is read only when it can be kept without dropping other bodies: a set of
      // them beyond the budget is sent by sendfile rather than read for every response.
      if (current[2] > BODY_MAX && bodyBytes + current[2] > options.maxBodyBytes) return undefined
      body = readBody(e.fd, t)
      if (body === null) {
        e.bodyRetryAt = t + options.checkMs
        return undefined
      }
      if (body.data.length <= options.maxBodyBytes) {
        e.body = body
        bodyBytes += body.data.length
        trimBodies()
      }
    }
  }
  hits++
  bodyHits++
  return body
}

/**
 * The whole file `fd`, whose identity is in {@link current}: read from the page cache, and
 * `null` unless the file has been unchanged for {@link SETTLED_MS}, its bytes are all cached,
 * and it kept that identity through the read.
 */
function readBody(fd: number, t: number): Body | null {
  if (Date.now() - (current[5] * 1000 + current[6] / 1e6) < SETTLED_MS) return null
  const id = current.slice()
  const stats = fstatSync(fd)
  // A buffer of its own: a slice of readNow's shared slab would keep the whole slab alive.
  const data = id[2] === 0 ? Buffer.alloc(0) : readNow(fd, 0, id[2], true)
  if (data === null || stats.size !== id[2] || !identityOf(fd) || !unchanged(id)) return null
  return { data, stats, id, checkedAt: t }
}
