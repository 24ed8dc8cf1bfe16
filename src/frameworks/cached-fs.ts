/**
 * The `fs` a privately loaded `send`-like module (@fastify/send, koa-send, @hono/node-server's
 * serveStatic) gets: node's, with `stat` and `statSync` of a path the descriptor cache holds
 * answered by one `fstat` of that descriptor (src/file-cache.ts, `cachedStats`) — no round trip
 * through the thread pool, whose wait was most of a small file's response in those modules.
 * Any other path, and any other call, is node's own, so errors (`ENOENT`, `ENOTDIR`) and
 * directories are exactly what the module saw before. The cache's freshness rule applies: a
 * file deleted or replaced is seen at most `freshMs` (1 s) later, as by every response that
 * reuses the descriptor (the module's headers and the body now come from the same file).
 * @module
 */
import * as fs from 'node:fs'
import { isAbsolute, normalize, sep } from 'node:path'

import { cachedStats } from '../file-cache'

/**
 * The stats the cache gives for a plain path argument, or `undefined`. Only an absolute path
 * already in normal form: node resolves `.` and `..` on the disk (`a.txt/.` is ENOTDIR,
 * `link/..` follows the link), where the cache's key is made from the text. A trailing
 * separator asks for a directory: node's stat answers that too (ENOTDIR for a file).
 */
function fromCache(path: unknown): fs.Stats | undefined {
  return typeof path === 'string' && isAbsolute(path) && !path.endsWith(sep) && normalize(path) === path ? cachedStats(path) : undefined
}

/** node's `fs` with cached `stat`/`statSync`, and `overrides` (e.g. a lazy `createReadStream`). */
export function cachedStatFs(overrides: Partial<typeof fs> = {}): typeof fs {
  const stat = (path: fs.PathLike, ...rest: unknown[]): void => {
    const stats = rest.length === 1 ? fromCache(path) : undefined // options given: node's own
    if (stats === undefined) return (fs.stat as (...args: unknown[]) => void)(path, ...rest)
    // Asynchronous as node's is: the callback never runs inside the call.
    process.nextTick(rest[0] as (err: null, stats: fs.Stats) => void, null, stats)
  }
  const statSync = (path: fs.PathLike, ...rest: unknown[]): unknown =>
    (rest.length === 0 ? fromCache(path) : undefined) ?? (fs.statSync as (...args: unknown[]) => unknown)(path, ...rest)
  const props: PropertyDescriptorMap = { stat: { value: stat }, statSync: { value: statSync } }
  for (const [name, value] of Object.entries(overrides)) props[name] = { value }
  return Object.create(fs, props) as typeof fs
}
