// The framework modules where the body cannot go page-cache-to-socket: over TLS (Fastify,
// Koa) and HTTP/2 (Hono on @hono/node-server): byte-exact, streamed, and saying why.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http2 from 'node:http2'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'
import Fastify from 'fastify'
import Koa from 'koa'
import { Hono, type Context } from 'hono'
import { serve as honoServe } from '@hono/node-server'
import type fastifyStaticType from '@fastify/static'

import { FileBody } from '../src/frameworks/file-body'
import { serve as koaServe } from '../src/frameworks/koa'
import { fileResult, serveStatic as honoStatic } from '../src/frameworks/hono'
import { http2Get, makeFixture } from './frameworks-helpers'

const fx = makeFixture()
const zcFastify = createRequire(import.meta.url)('../dist/src/frameworks/fastify.js') as typeof fastifyStaticType

async function selfSigned(): Promise<{ key: Buffer; cert: Buffer }> {
  const dir = mkdtempSync(join(tmpdir(), 'zc-tls-'))
  try {
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')]
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ])
    return { key: readFileSync(key), cert: readFileSync(cert) }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function httpsGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, headers, rejectUnauthorized: false, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
    })
    req.setTimeout(20_000, () => req.destroy(new Error(`no answer to ${path} in 20 s`)))
    req.once('error', reject)
  })
}

test('Fastify and Koa over TLS: streamed through TLS, byte-exact, with the reason', async (t) => {
  const tls = await selfSigned()
  const fastify = Fastify({ https: tls })
  const fastifyBodies: FileBody[] = []
  fastify.addHook('onSend', async (_req, _reply, payload) => {
    if (payload instanceof FileBody) fastifyBodies.push(payload)
    return payload
  })
  await fastify.register(zcFastify as never, { root: fx.root })
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => fastify.close())

  const koa = new Koa()
  const koaBodies: unknown[] = []
  koa.use(async (ctx, next) => {
    await next()
    koaBodies.push(ctx.body)
  })
  koa.use(koaServe(fx.root))
  const server = https.createServer(tls, koa.callback())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))

  for (const [name, port, bodies] of [
    ['fastify', (fastify.server.address() as AddressInfo).port, fastifyBodies],
    ['koa', (server.address() as AddressInfo).port, koaBodies],
  ] as const) {
    const full = await httpsGet(port, '/big.bin')
    t.is(full.status, 200, name)
    t.true(full.body.equals(fx.big), name)
    const part = await httpsGet(port, '/big.bin', { range: 'bytes=7-70006' })
    t.is(part.status, 206, name)
    t.true(part.body.equals(fx.big.subarray(7, 70_007)), name)
    const files = (bodies as unknown[]).filter((b): b is FileBody => b instanceof FileBody)
    t.is(files.length, 2, name)
    for (const body of files) t.regex(body.result?.fallbackReason ?? '', /TLS/, name)
  }
})

test('Hono over HTTP/2 (@hono/node-server with node:http2): streamed, byte-exact, with the reason', async (t) => {
  const app = new Hono()
  const contexts: Context[] = []
  app.use(async (c, next) => {
    await next()
    contexts.push(c)
  })
  app.use('/*', honoStatic({ root: fx.root }))
  const server = await new Promise<ReturnType<typeof honoServe>>((resolve) => {
    const s = honoServe({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', createServer: http2.createServer }, () => resolve(s))
  })
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { status, body } = await http2Get((server.address() as AddressInfo).port, '/big.bin')
  t.is(status, 200)
  t.true(body.equals(fx.big))
  t.is(contexts.length, 1)
  t.regex(fileResult(contexts[0])?.fallbackReason ?? '', /HTTP\/2/)
})
