/**
 * The seam between @fastify/static and this package: {@link zeroCopySend} wraps
 * @fastify/send's `send()` so a GET for a file answers with a {@link FileBody}, and
 * {@link loadFastifyStatic} loads a private instance of @fastify/static's module with it (see
 * `zerocopy-socket/fastify`, src/frameworks/fastify.ts, for the whole argument).
 * @module
 */
import { readFileSync } from 'node:fs'
import type http from 'node:http'
import Module, { createRequire } from 'node:module'
import { dirname } from 'node:path'
import type { Readable } from 'node:stream'

import type fastifyStaticModule = require('@fastify/static')

import { FileBody, type FileWindow } from './file-body'

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
  const requireHere = createRequire(__filename)
  let entry: string
  try {
    entry = requireHere.resolve('@fastify/static')
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    err.message = `zerocopy-socket/fastify is @fastify/static with zero-copy bodies and needs it installed: npm install @fastify/static@10\n${err.message}`
    throw err
  }
  const imports = requireFn ?? createRequire(entry)
  const send = zeroCopySend(imports('@fastify/send') as Send)
  const ModuleClass = Module as unknown as {
    new (id: string, parent?: NodeModule): NodeModule & { _compile(source: string, filename: string): void }
    _nodeModulePaths(dir: string): string[]
  }
  const mod = new ModuleClass(entry, module)
  mod.filename = entry
  mod.paths = ModuleClass._nodeModulePaths(dirname(entry))
  const requireOwn = requireFn ?? mod.require.bind(mod)
  // The module's `require` calls `mod.require`, so this replaces exactly one of its imports.
  mod.require = ((id: string) => (id === '@fastify/send' ? send : requireOwn(id))) as NodeJS.Require
  mod._compile(readFileSync(entry, 'utf8'), entry)
  mod.loaded = true
  return mod.exports as FastifyStatic
}
