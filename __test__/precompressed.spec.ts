// Precompressed variants in serveStatic (Express): `file.br` / `file.gz` for clients that
// accept them, over real connections with real browsers' Accept-Encoding strings, q-values,
// identity;q=0, a missing variant, ranges and validators on the variant.
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib'
import { readFileSync } from 'node:fs'

import test from 'ava'
import express from 'express'

import { serveStatic } from '../index'
import { fetchRaw, makeFixture } from './frameworks-helpers'

const fx = makeFixture()
const ONLY_GZ = 'only gzip here '.repeat(3000)
writeFileSync(join(fx.root, 'only-gz.txt'), ONLY_GZ)
writeFileSync(join(fx.root, 'only-gz.txt.gz'), gzipSync(ONLY_GZ))
const BR = readFileSync(join(fx.root, 'page.txt.br'))
const GZ = readFileSync(join(fx.root, 'page.txt.gz'))

async function listen(precompressed: boolean): Promise<{ port: number; close: () => Promise<void> }> {
  const app = express()
  app.use(serveStatic(fx.root, { precompressed }))
  const server = http.createServer(app)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

const CHROME = 'gzip, deflate, br, zstd'
const FIREFOX = 'gzip, deflate, br, zstd'
const SAFARI = 'gzip, deflate, br'
const CURL = 'deflate, gzip, br, zstd'
const OLD_IE = 'gzip, deflate'

/** Accept-Encoding → the encoding served for page.txt (which has both variants). */
const NEGOTIATION: [string | undefined, 'br' | 'gzip' | undefined][] = [
  [CHROME, 'br'],
  [FIREFOX, 'br'],
  [SAFARI, 'br'],
  [CURL, 'br'],
  [OLD_IE, 'gzip'],
  ['gzip;q=1, br;q=0.5', 'gzip'],
  ['br;q=0, *', 'gzip'],
  ['*', 'br'],
  ['*;q=0', undefined],
  ['identity;q=0', undefined],
  ['identity', undefined],
  ['deflate', undefined],
  ['', undefined],
  [undefined, undefined],
]

test('negotiation: browsers, q-values, *, identity;q=0', async (t) => {
  const { port, close } = await listen(true)
  t.teardown(close)
  for (const [acceptEncoding, expected] of NEGOTIATION) {
    const res = await fetchRaw(port, '/page.txt', { headers: acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding } })
    const what = `Accept-Encoding: ${acceptEncoding}`
    t.is(res.status, 200, what)
    t.is(res.headers['content-encoding'], expected, what)
    t.is(res.headers.vary, 'Accept-Encoding', what)
    t.is(res.headers['content-type'], 'text/plain; charset=utf-8', what)
    const raw = expected === 'br' ? BR : expected === 'gzip' ? GZ : Buffer.from(fx.text)
    t.is(res.headers['content-length'], String(raw.length), what)
    t.true(res.body.equals(raw), what)
    const text = expected === 'br' ? brotliDecompressSync(res.body) : expected === 'gzip' ? gunzipSync(res.body) : res.body
    t.is(text.toString(), fx.text, what)
  }
})

test('a missing variant: the next accepted one, else the file itself', async (t) => {
  const { port, close } = await listen(true)
  t.teardown(close)
  const gz = await fetchRaw(port, '/only-gz.txt', { headers: { 'accept-encoding': CHROME } })
  t.is(gz.headers['content-encoding'], 'gzip')
  t.is(gunzipSync(gz.body).toString(), ONLY_GZ)
  const brOnly = await fetchRaw(port, '/only-gz.txt', { headers: { 'accept-encoding': 'br' } })
  t.is(brOnly.headers['content-encoding'], undefined)
  t.is(brOnly.headers.vary, 'Accept-Encoding')
  t.is(brOnly.body.toString(), ONLY_GZ)
  const none = await fetchRaw(port, '/small.bin', { headers: { 'accept-encoding': CHROME } })
  t.is(none.headers['content-encoding'], undefined)
  t.true(none.body.equals(fx.small))
  const missing = await fetchRaw(port, '/nope.txt', { headers: { 'accept-encoding': CHROME } })
  t.is(missing.status, 404)
})

test('ranges, ETag, 304 and HEAD on the variant', async (t) => {
  const { port, close } = await listen(true)
  t.teardown(close)
  const headers = { 'accept-encoding': CHROME }
  const full = await fetchRaw(port, '/page.txt', { headers })
  const identity = await fetchRaw(port, '/page.txt')
  t.truthy(full.headers.etag)
  t.not(full.headers.etag, identity.headers.etag)
  const part = await fetchRaw(port, '/page.txt', { headers: { ...headers, range: 'bytes=10-29' } })
  t.is(part.status, 206)
  t.is(part.headers['content-encoding'], 'br')
  t.is(part.headers['content-range'], `bytes 10-29/${BR.length}`)
  t.true(part.body.equals(BR.subarray(10, 30)))
  const notModified = await fetchRaw(port, '/page.txt', { headers: { ...headers, 'if-none-match': full.headers.etag as string } })
  t.is(notModified.status, 304)
  t.is(notModified.body.length, 0)
  // The identity ETag does not validate the variant.
  const other = await fetchRaw(port, '/page.txt', { headers: { ...headers, 'if-none-match': identity.headers.etag as string } })
  t.is(other.status, 200)
  t.true(other.body.equals(BR))
  const head = await fetchRaw(port, '/page.txt', { method: 'HEAD', headers })
  t.is(head.headers['content-encoding'], 'br')
  t.is(head.headers['content-length'], String(BR.length))
  t.is(head.body.length, 0)
})

test('off by default: serve-static behaviour, no Vary', async (t) => {
  const { port, close } = await listen(false)
  t.teardown(close)
  const res = await fetchRaw(port, '/page.txt', { headers: { 'accept-encoding': CHROME } })
  t.is(res.headers['content-encoding'], undefined)
  t.is(res.headers.vary, undefined)
  t.is(res.body.toString(), fx.text)
})
