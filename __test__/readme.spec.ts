// The README's framework examples, run as written: each `<!-- readme-example: name -->` block
// is written to a temporary directory whose node_modules links this package (as
// 'zerocopy-socket') and its dev dependencies, started with PORT set, and asked for files.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, brotliDecompressSync } from 'node:zlib'

import test from 'ava'

import { fetchRaw, type Answer } from './frameworks-helpers'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')

function example(name: string): string {
  const match = new RegExp(`<!-- readme-example: ${name} -->\\n\\n?\`\`\`js\\n([\\s\\S]*?)\`\`\``).exec(README)
  if (match === null) throw new Error(`README has no example "${name}"`)
  return match[1]
}

const HELLO = 'hello from public/\n'.repeat(200)
const REPORT = 'quarterly report\n'.repeat(500)

/** A directory with the example, `public/` and a node_modules that resolves its imports. */
function project(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'zc-readme-'))
  mkdirSync(join(dir, 'node_modules'))
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (!entry.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', entry), join(dir, 'node_modules', entry))
  }
  symlinkSync(ROOT, join(dir, 'node_modules', 'zerocopy-socket'))
  mkdirSync(join(dir, 'public'))
  writeFileSync(join(dir, 'public', 'hello.txt'), HELLO)
  writeFileSync(join(dir, 'public', 'hello.txt.br'), brotliCompressSync(HELLO))
  writeFileSync(join(dir, 'public', 'report.txt'), REPORT)
  writeFileSync(join(dir, 'example.mjs'), source)
  return dir
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Runs the example and hands its port to `check`; the process is killed however it ends. */
async function run(name: string, check: (get: (path: string, headers?: Record<string, string>) => Promise<Answer>) => Promise<void>): Promise<void> {
  const dir = project(example(name))
  const port = await freePort()
  const child = spawn(process.execPath, ['example.mjs'], {
    cwd: dir,
    env: { ...process.env, PORT: String(port), NODE_OPTIONS: '' },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`example ${name} exited with ${code}`))))
  try {
    const get = (path: string, headers?: Record<string, string>) => fetchRaw(port, path, { headers })
    const deadline = Date.now() + 20_000
    for (;;) {
      const up = await Promise.race([
        get('/').then(
          () => true,
          () => false,
        ),
        exited,
      ])
      if (up) break
      if (Date.now() > deadline) throw new Error(`example ${name} did not listen on ${port} in 20 s`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    await check(get)
  } finally {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

test('README: the Fastify example', async (t) => {
  await run('fastify', async (get) => {
    const hello = await get('/static/hello.txt')
    t.is(hello.status, 200)
    t.is(hello.body.toString(), HELLO)
    const br = await get('/static/hello.txt', { 'accept-encoding': 'gzip, deflate, br, zstd' })
    t.is(br.headers['content-encoding'], 'br')
    t.is(brotliDecompressSync(br.body).toString(), HELLO)
    const report = await get('/report')
    t.is(report.headers['content-disposition'], 'attachment; filename=report.txt')
    t.is(report.body.toString(), REPORT)
  })
})

test('README: the Koa example', async (t) => {
  await run('koa', async (get) => {
    const hello = await get('/hello.txt')
    t.is(hello.status, 200)
    t.is(hello.headers['cache-control'], 'max-age=60')
    t.is(hello.body.toString(), HELLO)
    const part = await get('/hello.txt', { range: 'bytes=0-4' })
    t.is(part.status, 206)
    t.is(part.body.toString(), 'hello')
    const report = await get('/report')
    t.is(report.headers['content-disposition'], 'attachment; filename="report.txt"')
    t.is(report.body.toString(), REPORT)
  })
})

test('README: the Hono example', async (t) => {
  await run('hono', async (get) => {
    const hello = await get('/static/hello.txt', { origin: 'http://example.com' })
    t.is(hello.status, 200)
    t.is(hello.headers['access-control-allow-origin'], '*')
    t.is(hello.body.toString(), HELLO)
    const br = await get('/static/hello.txt', { 'accept-encoding': 'gzip, deflate, br' })
    t.is(br.headers['content-encoding'], 'br')
    t.is(brotliDecompressSync(br.body).toString(), HELLO)
  })
})
