// Seeded random sessions against the three framework modules on @hono/node-server, Koa and
// Fastify: GET, HEAD, ranges (satisfiable or not), If-Modified-Since, Accept-Encoding, on
// one keep-alive connection with bursts on fresh ones, each answer checked against the file
// itself (status, Content-Length, bytes) and every request under a deadline (fetchRaw's).
// Reproduce a failure with ZC_TEST_SEED=<seed>.
import { statSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { createRequire } from 'node:module'

import test from 'ava'
import Fastify from 'fastify'
import Koa from 'koa'
import { Hono } from 'hono'
import { serve as honoServe } from '@hono/node-server'
import type fastifyStaticType from '@fastify/static'

import { serve as koaServe } from '../src/frameworks/koa'
import { serveStatic as honoStatic } from '../src/frameworks/hono'
import { rng, SEED } from './helpers'
import { fetchRaw, makeFixture, type Answer } from './frameworks-helpers'

const fx = makeFixture()
const zcFastify = createRequire(import.meta.url)('../dist/src/frameworks/fastify.js') as typeof fastifyStaticType
const FILES: Record<string, Buffer> = { 'small.bin': fx.small, 'big.bin': fx.big, 'empty.txt': Buffer.alloc(0), 'page.txt': Buffer.from(fx.text) }

interface Step {
  path: string
  method: 'GET' | 'HEAD'
  headers: Record<string, string>
  file: Buffer
  range: [number, number] | 'unsatisfiable' | null
  encoded: boolean
}

function randomStep(next: () => number): Step {
  const names = Object.keys(FILES)
  const name = names[Math.floor(next() * names.length)]
  const file = FILES[name]
  const headers: Record<string, string> = {}
  const method = next() < 0.15 ? 'HEAD' : 'GET'
  let range: Step['range'] = null
  const encoded = name === 'page.txt' && next() < 0.4
  if (encoded) headers['accept-encoding'] = next() < 0.5 ? 'gzip, deflate, br, zstd' : 'gzip'
  else if (file.length > 0 && next() < 0.35) {
    if (next() < 0.15) {
      range = 'unsatisfiable'
      headers.range = `bytes=${file.length + Math.floor(next() * 1000)}-`
    } else {
      const start = Math.floor(next() * file.length)
      const end = Math.min(file.length - 1, start + Math.floor(next() * 300_000))
      range = [start, end]
      headers.range = `bytes=${start}-${end}`
    }
  } else if (next() < 0.1) headers['if-modified-since'] = statSync(join(fx.root, name)).mtime.toUTCString()
  return { path: `/${name}`, method, headers, file, range, encoded }
}

/** The answer `step` must get, checked against the file. */
function check(t: import('ava').ExecutionContext, step: Step, answer: Answer, what: string): void {
  if (step.headers['if-modified-since']) {
    t.is(answer.status, 304, what)
    t.is(answer.body.length, 0, what)
    return
  }
  if (step.method === 'HEAD' && step.range !== null && answer.status === 200) {
    // Range is defined for GET only (RFC 9110 14.2): Hono's serveStatic ignores it on a HEAD.
    t.is(answer.headers['content-length'], String(step.file.length), what)
    return
  }
  if (step.range === 'unsatisfiable') {
    t.is(answer.status, 416, what)
    return
  }
  let expected = step.file
  if (step.range !== null) {
    t.is(answer.status, 206, what)
    expected = step.file.subarray(step.range[0], step.range[1] + 1)
  } else t.is(answer.status, 200, what)
  if (step.encoded) {
    if (step.method === 'HEAD') return void t.is(answer.body.length, 0, what)
    const encoding = answer.headers['content-encoding']
    const body = encoding === 'br' ? brotliDecompressSync(answer.body) : encoding === 'gzip' ? gunzipSync(answer.body) : answer.body
    t.true(body.equals(step.file), `${what}: decoded body`)
    return
  }
  t.is(answer.headers['content-length'], String(expected.length), what)
  if (step.method === 'HEAD') t.is(answer.body.length, 0, what)
  else t.true(answer.body.equals(expected), `${what}: body`)
}

async function session(t: import('ava').ExecutionContext, port: number, seed: number): Promise<void> {
  const next = rng(seed)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let i = 0; i < 80; i++) {
    if (next() < 0.1) {
      // A burst on fresh connections, alongside.
      const burst = Array.from({ length: 4 }, () => randomStep(next))
      const answers = await Promise.all(burst.map((s) => fetchRaw(port, s.path, { method: s.method, headers: s.headers })))
      burst.forEach((s, j) => check(t, s, answers[j], `burst ${i}.${j} ${s.method} ${s.path} ${JSON.stringify(s.headers)}`))
      continue
    }
    const step = randomStep(next)
    const answer = await fetchRaw(port, step.path, { method: step.method, headers: step.headers, agent })
    check(t, step, answer, `step ${i} ${step.method} ${step.path} ${JSON.stringify(step.headers)}`)
  }
  t.is(Object.values(agent.freeSockets).flat().length, 1, 'one keep-alive connection served the session')
}

test(`zerocopy-socket/fastify: 80 seeded random requests, keep-alive and bursts (seed ${SEED})`, async (t) => {
  const app = Fastify()
  await app.register(zcFastify, { root: fx.root, preCompressed: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  await session(t, (app.server.address() as AddressInfo).port, SEED)
})

test(`zerocopy-socket/koa: 80 seeded random requests, keep-alive and bursts (seed ${SEED})`, async (t) => {
  const app = new Koa()
  app.use(koaServe(fx.root))
  const server = http.createServer(app.callback())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  await session(t, (server.address() as AddressInfo).port, SEED + 1)
})

test(`zerocopy-socket/hono: 80 seeded random requests, keep-alive and bursts (seed ${SEED})`, async (t) => {
  const app = new Hono()
  app.use('/*', honoStatic({ root: fx.root, precompressed: true }))
  const server = await new Promise<ReturnType<typeof honoServe>>((resolve) => {
    const s = honoServe({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s))
  })
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  await session(t, (server.address() as AddressInfo).port, SEED + 2)
})
