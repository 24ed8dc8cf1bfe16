/**
 * The seam between @fastify/static and this package: {@link zeroCopySend} wraps
 * @fastify/send's `send()` so a GET for a file answers with a {@link FileBody}, and
 * {@link loadFastifyStatic} loads a private instance of @fastify/static's module with it (see
 * `zerocopy-socket/fastify`, src/frameworks/fastify.ts, for the whole argument).
 * @module
 */
import type * as http from 'node:http'
import { createRequire } from 'node:module'
import type { Readable } from 'node:stream'

import type fastifyStaticModule = require('@fastify/static')

import { cachedStatFs } from './cached-fs'
import { FileBody, type FileWindow } from './file-body'
import { loadPrivateModule, resolvePeer } from './private-module'

/** What @fastify/send's `send()` resolves to (its public result). */
interface SendResult {
  statusCode: number
  headers: Record<string, string | number | undefined>
  stream: Readable
  type: 'file' | 'directory' | 'error'
  metadata: { path?: string }
}

interface SendOptions {
  start?: number
  highWaterMark?: number
}

type Send = ((req: http.IncomingMessage, path: string, options?: SendOptions) => Promise<SendResult>) & Record<string, unknown>

/** The window of the file a GET's answer sends, from the HEAD answer's headers, or `null`. */
function fileWindow(result: SendResult, options: SendOptions | undefined): FileWindow | null {
  const path = result.metadata?.path
  const length = Number(result.headers['Content-Length'])
  if (typeof path !== 'string' || !Number.isSafeInteger(length) || length < 0) return null
  let offset = options?.start ?? 0
  if (result.statusCode === 206) {
    const range = /^bytes (\d+)-\d+\/\d+$/.exec(String(result.headers['Content-Range']))
    if (range === null) return null
    offset += Number(range[1])
  }
  return { path, offset, length, highWaterMark: options?.highWaterMark }
}

/** @fastify/send's `send`, answering GETs for files with a {@link FileBody}. */
export function zeroCopySend(send: Send): Send {
  async function sendZeroCopy(req: http.IncomingMessage, path: string, options?: SendOptions): Promise<SendResult> {
    if (req.method !== 'GET') return send(req, path, options)
    // @fastify/send answers a HEAD exactly as a GET but with an empty stream (no file opened).
    const head = Object.create(req, { method: { value: 'HEAD', enumerable: true } }) as http.IncomingMessage
    const result = await send(head, path, options)
    if (result?.type !== 'file' || (result.statusCode !== 200 && result.statusCode !== 206)) return result
    const window = fileWindow(result, options)
    if (window === null) return send(req, path, options)
    result.stream.destroy()
    return { ...result, stream: new FileBody(req, window) }
  }
  return Object.assign(sendZeroCopy, send)
}

/** The plugin's type: @fastify/static's. */
export type FastifyStatic = typeof fastifyStaticModule

/**
 * Loads a private instance of @fastify/static's module (not the one in `require.cache`, so an
 * application's own `require('@fastify/static')` is untouched) with {@link zeroCopySend} as its
 * `@fastify/send`.
 * @param requireFn - Where the instance's other imports come from. **Default:** its own
 *   `require` (@fastify/static's dependencies). The @fastify/static suite run passes its
 *   stand-in module's `require`, so the suite's `proxyquire` stubs reach the instance.
 */
export function loadFastifyStatic(requireFn?: NodeJS.Require): FastifyStatic {
  const entry = resolvePeer('@fastify/static', 'zerocopy-socket/fastify', '@fastify/static@10')
  let send: Send | undefined
  return loadPrivateModule(
    entry,
    (id, load) => {
      if (id !== '@fastify/send') return load(id)
      send ??= zeroCopySend(cachedStatSend(entry, load(id) as Send))
      return send
    },
    requireFn,
  ) as FastifyStatic
}

/**
 * A private instance of @fastify/send whose `fs.stat` answers paths the descriptor cache holds
 * (src/frameworks/cached-fs.ts), when `loaded` is the installed @fastify/send; anything else
 * (a test's stub) is used as it is.
 */
function cachedStatSend(entry: string, loaded: Send): Send {
  const peer = createRequire(entry)
  const index = peer.resolve('@fastify/send')
  if (loaded !== peer(index)) return loaded
  const fs = cachedStatFs()
  const sendLib = loadPrivateModule(createRequire(index).resolve('./lib/send'), (id, load) => (id === 'node:fs' ? fs : load(id)))
  return loadPrivateModule(index, (id, load) => (id === './lib/send' ? sendLib : load(id))) as Send
}
