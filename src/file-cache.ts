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
 * - Every response still takes a fresh `fstat` of the descriptor (a few hundred nanoseconds, never
 *   waits for the disk), so a file **changed in place** (truncated, appended to, rewritten) is seen
 *   at once: sizes, `ETag` and `Last-Modified` come from that `fstat`, and a body read is checked
 *   against it (src/http.ts).
 *
 * # Bounds and lifetime
 * At most {@link FileCacheOptions.maxEntries} descriptors (least recently used first out). A
 * descriptor is closed when its entry is evicted or expires and no response is using it; expired
 * entries are closed by an unreferenced timer (it never keeps the process alive); every entry is
 * closed when a server whose responses used the cache closes. A worker thread's cache is its own,
 * and Node closes the descriptors a worker opened when it ends (__test__/file-cache.spec.ts).
 * No file contents are cached.
 * @module
 */
import { closeSync, fstatSync, open as openCb } from 'node:fs'
import type { Server } from 'node:net'
import { resolve } from 'node:path'
import { promisify } from 'node:util'

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
}

/** What {@link fileCacheStats} reports. */
export interface FileCacheStats {
  /** Descriptors open in the cache now (including retired ones still in use). */
  open: number
  /** Lookups answered from the cache, and lookups that had to open the path. */
  hits: number
  misses: number
  maxEntries: number
  freshMs: number
}

const options: FileCacheOptions = { maxEntries: 256, freshMs: 1000 }
/** Fresh entries by absolute path, least recently used first (a hit moves its entry to the end). */
const entries = new Map<string, Entry>()
let openCount = 0
let hits = 0
let misses = 0
let sweeper: NodeJS.Timeout | undefined
const watchedServers = new WeakSet<Server>()

function closeEntry(e: Entry): void {
  openCount--
  try {
    closeSync(e.fd)
  } catch {
    // already gone: nothing to release
  }
}

function retire(e: Entry): void {
  if (e.retired) return
  e.retired = true
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
  const key = resolve(path)
  const e = entries.get(key)
  if (e === undefined || performance.now() - e.openedAt >= options.freshMs) {
    if (e) retire(e)
    misses++
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
  const key = resolve(path)
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
  const e: Entry = { fd, path: key, openedAt: performance.now(), users: 1, retired: false }
  const old = entries.get(key)
  if (old) retire(old)
  entries.set(key, e)
  while (entries.size > options.maxEntries) retire(entries.values().next().value!)
  sweeper ??= setInterval(sweep, options.freshMs).unref()
  return e
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
  return { open: openCount, hits, misses, ...options }
}

/**
 * Sets the cache's limits (`maxEntries` 0 turns it off: every response opens its file). Entries
 * over a new limit are closed.
 * @throws `ERR_OUT_OF_RANGE` unless each given limit is an integer from 0 to 2^31-1;
 *   `ERR_INVALID_ARG_TYPE` for a limit that is not a number. Nothing changes then.
 */
export function configureFileCache(limits: Partial<FileCacheOptions>): void {
  validateOptions(limits, 'limits')
  // Integers only: a negative or NaN bound would break the eviction loop, and setInterval
  // clamps a period over 2^31-1 ms (or NaN) to 1 ms.
  if (limits.maxEntries !== undefined) validateInteger(limits.maxEntries, 'limits.maxEntries', 0, 2 ** 31 - 1)
  if (limits.freshMs !== undefined) validateInteger(limits.freshMs, 'limits.freshMs', 0, 2 ** 31 - 1)
  if (limits.maxEntries !== undefined) options.maxEntries = limits.maxEntries
  if (limits.freshMs !== undefined) options.freshMs = limits.freshMs
  while (entries.size > options.maxEntries) retire(entries.values().next().value!)
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
