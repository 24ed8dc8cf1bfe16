/**
 * Precompressed variants: `file.br` / `file.gz` next to `file`, served in its place to a
 * client that accepts the encoding. The negotiation (q-values, `*`, `identity`, `br;q=0`) is
 * `negotiator`'s, the module Express's `req.acceptsEncodings()` is built on; among encodings
 * the client rates equally, brotli goes first.
 * @module
 */
import type { IncomingMessage } from 'node:http'
import { stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'

import Negotiator from 'negotiator'

/** The encodings served from precompressed files, best first, and their files' suffixes. */
export const PRECOMPRESSED_SUFFIXES = { br: '.br', gzip: '.gz' } as const

/** A content coding with a precompressed variant. */
export type PrecompressedEncoding = keyof typeof PRECOMPRESSED_SUFFIXES

const ENCODINGS = Object.keys(PRECOMPRESSED_SUFFIXES) as PrecompressedEncoding[]

/** negotiator 1.x's `encodings()`, whose `preferred` option @types/negotiator (0.6) lacks. */
type Encodings = (available: readonly string[], options: { preferred: readonly string[] }) => string[]

/** A variant found on disk. */
export interface Variant {
  encoding: PrecompressedEncoding
  path: string
  stats: Stats
}

/**
 * The best variant of `path` that `req` accepts and that exists as a regular file, or `null`
 * (serve `path` itself). Encodings the client refuses (`q=0`) are never chosen; when the
 * client accepts none or no variant exists the file itself is the answer, even under
 * `identity;q=0`, as @fastify/static, Hono and koa-send do.
 */
export async function findVariant(req: IncomingMessage, path: string): Promise<Variant | null> {
  if (!req.headers['accept-encoding']) return null
  const negotiator = new Negotiator(req)
  const accepted = (negotiator.encodings as Encodings).call(negotiator, ENCODINGS, { preferred: ENCODINGS }) as PrecompressedEncoding[]
  for (const encoding of accepted) {
    const variant = path + PRECOMPRESSED_SUFFIXES[encoding]
    const stats = await stat(variant).catch(() => null)
    if (stats?.isFile()) return { encoding, path: variant, stats }
  }
  return null
}
