// Every ts/js sample of README.md runs here as written (issue 19 item 6), and the README's links
// work from the npm page.
//
// How a sample runs is said by its fence's info string, after the language:
//   ```ts                      run as an ES module in a fresh project; must exit 0
//   ```ts test=client          the same, with a receiver listening on process.env.PORT
//   ```ts test=socket          a fragment: runs with `zs` (connected to a receiver), every export
//                              of the package and `open` (node:fs/promises) in scope
//   ```js test=server id=NAME  a server listening on process.env.PORT: once it accepts
//                              connections, the check named NAME below requests it (a server
//                              with no check of its own must at least listen), then it is killed
// Fences in other languages (sh, console, json, ...) are not samples. TypeScript samples are
// also type-checked (strict) against the package's published types. The fresh project is a
// temporary directory holding the files the samples name (files/, public/, blob.bin, big.iso)
// and node_modules links to this checkout's dependencies and to the package itself.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, brotliDecompressSync } from 'node:zlib'

import test, { type ExecutionContext } from 'ava'

import { patternBytes } from './helpers'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; repository: { url: string } }
const ts = (await import(join(ROOT, 'node_modules', 'typescript', 'lib', 'typescript.js'))).default as typeof import('typescript')

/** One fenced sample of the README. */
interface Sample {
  /** 1-based line of its opening fence. */
  line: number
  lang: 'ts' | 'js'
  tags: Record<string, string>
  code: string
}

const LANGS: Record<string, 'ts' | 'js'> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' }

/** The README's ts/js fenced blocks, with their info-string tags (`key=value`). */
export function samples(markdown: string): Sample[] {
  const found: Sample[] = []
  // A fence may be indented (inside a list item); its lines lose that indentation.
  const fence = /^( {0,4})(`{3,}|~{3,})([^\n`]*)\n([\s\S]*?)^\1\2[ \t]*$/gm
  for (let m = fence.exec(markdown); m !== null; m = fence.exec(markdown)) {
    const [lang = '', ...words] = m[3].trim().split(/\s+/)
    const kind = LANGS[lang.toLowerCase()]
    if (kind === undefined) continue
    const tags = Object.fromEntries(words.map((w) => w.split('=') as [string, string]).map(([k, v]) => [k, v ?? '']))
    const code = m[4].replace(new RegExp(`^ {0,${m[1].length}}`, 'gm'), '')
    found.push({ line: markdown.slice(0, m.index).split('\n').length, lang: kind, tags, code })
  }
  return found
}

const SOCKET_PRELUDE = `import * as zc from 'zerocopy-socket'
import { open } from 'node:fs/promises'
const { ZeroCopySocket, BufferPool, probe, respondWithFile, serveStatic, isZeroCopyError, sendZcSync } = zc
void [BufferPool, probe, respondWithFile, serveStatic, isZeroCopyError, sendZcSync, open]
const zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port: Number(process.env.PORT) })
`
const SOCKET_POSTLUDE = `
await zs.end()
zs.destroy()
export {}
`

/** The module a sample runs as (before transpiling). */
function source(s: Sample): string {
  return s.tags.test === 'socket' ? `${SOCKET_PRELUDE}${s.code}${SOCKET_POSTLUDE}` : `${s.code}\nexport {}\n`
}

const all = samples(README)
const HELLO = 'hello from public/\n'.repeat(200)
const REPORT = 'quarterly report\n'.repeat(500)
const files = {
  'files/a.txt': Buffer.from('hello from files\n'),
  'files/.secret': Buffer.from('not for you\n'),
  'public/index.html': Buffer.from('<h1>hello</h1>\n'),
  'public/.env': Buffer.from('SECRET=1\n'),
  'public/hello.txt': Buffer.from(HELLO),
  'public/hello.txt.br': brotliCompressSync(HELLO),
  'public/report.txt': Buffer.from(REPORT),
  'blob.bin': patternBytes(1 << 20, 11),
  'big.iso': patternBytes(5 << 20, 12),
}

/** The fresh project: fixture files, node_modules links, and each sample as `sample-<line>.mjs` (and `.mts` to type-check). */
function project(): string {
  const dir = mkdtempSync(join(tmpdir(), 'zc-readme-'))
  chmodSync(dir, 0o755) // the privileges sample reads public/ as nobody
  for (const [name, bytes] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), bytes)
  }
  mkdirSync(join(dir, 'node_modules'))
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (entry.startsWith('.')) continue
    symlinkSync(join(ROOT, 'node_modules', entry), join(dir, 'node_modules', entry), 'dir')
  }
  symlinkSync(ROOT.replace(/\/$/, ''), join(dir, 'node_modules', PKG.name), 'dir')
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ private: true, type: 'module' }))
  const typed: string[] = []
  for (const s of all) {
    const src = source(s)
    const js = s.lang === 'ts' ? ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText : src
    writeFileSync(join(dir, `sample-${s.line}.mjs`), js)
    if (s.lang === 'ts') {
      writeFileSync(join(dir, `sample-${s.line}.mts`), src)
      typed.push(`sample-${s.line}.mts`)
    }
  }
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'ES2022',
        lib: ['ES2022'],
        types: ['node'],
        skipLibCheck: true,
      },
      files: typed,
    }),
  )
  return dir
}

const dir = project()
test.after.always(() => rmSync(dir, { recursive: true, force: true }))

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/** A receiver on a free port that counts and hashes what each connection sends. */
async function receiver(): Promise<{ port: number; received: () => { bytes: number; connections: number }; close: () => void }> {
  let bytes = 0
  let connections = 0
  const server = net.createServer((s) => {
    connections++
    s.on('data', (c: Buffer) => (bytes += c.length))
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, received: () => ({ bytes, connections }), close: () => server.close() }
}

function start(s: Sample, port: number): { child: ChildProcess; done: Promise<{ code: number | null; output: string }> } {
  const child = spawn(process.execPath, [`sample-${s.line}.mjs`], { cwd: dir, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (c: Buffer) => (output += c))
  child.stderr!.on('data', (c: Buffer) => (output += c))
  const done = new Promise<{ code: number | null; output: string }>((resolve) => child.on('close', (code) => resolve({ code, output })))
  return { child, done }
}

/** Runs a sample to its end, killed after `ms` (then the output says why). */
async function runToEnd(s: Sample, port: number, ms = 60_000): Promise<{ code: number | null; output: string }> {
  const { child, done } = start(s, port)
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    child.kill('SIGKILL')
  }, ms)
  try {
    const r = await done
    if (killed) r.output += `\n(killed after ${ms / 1000} s: a sample that keeps running is a server: tag its fence \`test=server id=NAME\`)`
    return r
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves once `port` accepts a connection; rejects if the child exits first or after 20 s. */
async function listening(port: number, exited: Promise<unknown>): Promise<void> {
  let gone = false
  void exited.then(() => (gone = true))
  const deadline = Date.now() + 20_000
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy()
        resolve(true)
      })
      c.on('error', () => resolve(false))
    })
    if (ok) return
    if (gone) throw new Error('the sample exited before it listened')
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after 20 s`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** One GET with a raw (not normalised) path. */
function get(port: number, path: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(20_000, () => req.destroy(new Error(`GET ${path}: no answer in 20 s`)))
  })
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Paths that climb out of the served directory towards files that exist there. */
const TRAVERSALS = ['/..%2Fblob.bin', '/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd', '/%2e%2e/blob.bin', '/..%5Cblob.bin']

/** Never the bytes of a file outside the served directory. */
async function refusesTraversal(t: ExecutionContext, port: number, prefix: string): Promise<void> {
  for (const p of TRAVERSALS) {
    const r = await get(port, `${prefix}${p}`)
    t.true(r.status >= 400 && r.status < 500, `${prefix}${p}: ${r.status}`)
    t.false(r.body.includes(Buffer.from('root:')), `${prefix}${p}: /etc/passwd`)
    t.false(r.body.includes(files['blob.bin'].subarray(0, 64)), `${prefix}${p}: blob.bin`)
  }
}

/** What the test asks of each server sample, by its `id`. */
const checks: Record<string, (t: ExecutionContext, port: number, pid: number) => Promise<void>> = {
  async adopt(t, port) {
    const socket = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    await new Promise((resolve, reject) => socket.on('end', resolve).on('error', reject))
    socket.destroy()
    t.is(sha(Buffer.concat(chunks)), sha(files['big.iso']))
  },
  async 'express-download'(t, port) {
    const whole = await get(port, '/files/a.txt')
    t.is(whole.status, 200)
    t.is(whole.body.toString(), 'hello from files\n')
    const part = await get(port, '/files/a.txt', { range: 'bytes=0-4' })
    t.is(part.status, 206)
    t.is(part.body.toString(), 'hello')
    t.is((await get(port, '/files/missing.txt')).status, 404)
    t.is((await get(port, '/files/.secret')).status, 404)
    t.is((await get(port, '/files/..')).status, 404)
    await refusesTraversal(t, port, '/files')
  },
  async 'express-static'(t, port) {
    const r = await get(port, '/index.html')
    t.is(r.status, 200)
    t.is(r.body.toString(), '<h1>hello</h1>\n')
    t.is((await get(port, '/.env')).status, 404)
    await refusesTraversal(t, port, '')
  },
  async privileges(t, port, pid) {
    const r = await get(port, '/index.html')
    t.is(r.status, 200)
    t.is(r.body.toString(), '<h1>hello</h1>\n')
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1])
    const ours = process.getuid?.() ?? 0
    t.is(uid, ours === 0 ? 65534 : ours, 'the server runs as nobody')
    await refusesTraversal(t, port, '')
  },
  async 'fastify-plugin'(t, port) {
    const r = await get(port, '/static/index.html')
    t.is(r.status, 200)
    t.is(r.body.toString(), '<h1>hello</h1>\n')
    const br = await get(port, '/static/hello.txt', { 'accept-encoding': 'gzip, deflate, br, zstd' })
    t.is(br.headers['content-encoding'], 'br')
    t.is(brotliDecompressSync(br.body).toString(), HELLO)
    const report = await get(port, '/report')
    t.is(report.headers['content-disposition'], 'attachment; filename=report.txt')
    t.is(report.body.toString(), REPORT)
    t.is((await get(port, '/static/missing.html')).status, 404)
    t.is((await get(port, '/static/.env')).status, 404)
    await refusesTraversal(t, port, '/static')
  },
  async 'koa-static'(t, port) {
    const r = await get(port, '/hello.txt')
    t.is(r.status, 200)
    t.is(r.headers['cache-control'], 'max-age=60')
    t.is(r.body.toString(), HELLO)
    const part = await get(port, '/hello.txt', { range: 'bytes=0-4' })
    t.is(part.status, 206)
    t.is(part.body.toString(), 'hello')
    const report = await get(port, '/report')
    t.is(report.headers['content-disposition'], 'attachment; filename="report.txt"')
    t.is(report.body.toString(), REPORT)
    t.is((await get(port, '/.env')).status, 404)
    await refusesTraversal(t, port, '')
  },
  async 'hono-static'(t, port) {
    const r = await get(port, '/static/hello.txt', { origin: 'http://example.com' })
    t.is(r.status, 200)
    t.is(r.headers['access-control-allow-origin'], '*')
    t.is(r.body.toString(), HELLO)
    const br = await get(port, '/static/hello.txt', { 'accept-encoding': 'gzip, deflate, br' })
    t.is(br.headers['content-encoding'], 'br')
    t.is(brotliDecompressSync(br.body).toString(), HELLO)
    t.is((await get(port, '/static/missing.txt')).status, 404)
    await refusesTraversal(t, port, '/static')
  },
}

test('the README has samples, and every one of them is tested below', (t) => {
  t.true(all.length >= 7, `${all.length} samples`)
  for (const s of all) {
    const kind = s.tags.test ?? 'run'
    t.true(['run', 'client', 'socket', 'server'].includes(kind), `README.md:${s.line}: unknown test=${kind}`)
  }
})

test('the TypeScript samples type-check (strict) against the published types', async (t) => {
  const child = spawn(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.', '--pretty', 'false'], { cwd: dir })
  let out = ''
  child.stdout.on('data', (c: Buffer) => (out += c))
  child.stderr.on('data', (c: Buffer) => (out += c))
  const code = await new Promise((resolve) => child.on('close', resolve))
  t.is(out.replace(/sample-(\d+)\.mts/g, 'README.md sample at line $1').trim(), '')
  t.is(code, 0)
})

for (const s of all) {
  const kind = s.tags.test ?? 'run'
  test.serial(`README.md:${s.line} (${s.lang}, ${kind}${s.tags.id ? ` ${s.tags.id}` : ''}) runs as written`, async (t) => {
    if (kind === 'server') {
      const port = await freePort()
      const { child, done } = start(s, port)
      try {
        await listening(port, done)
        const check = checks[s.tags.id ?? '']
        if (check) await check(t, port, child.pid!)
        else t.pass(`listens (no check named ${s.tags.id ?? '(no id)'})`)
      } finally {
        child.kill('SIGKILL')
        const { output } = await done
        if (!t.passed) t.log(output)
      }
      return
    }
    const sink = kind === 'client' || kind === 'socket' ? await receiver() : null
    try {
      const r = await runToEnd(s, sink?.port ?? (await freePort()))
      t.is(r.code, 0, r.output)
      if (sink) t.true(sink.received().connections > 0, 'the sample connected to the receiver')
    } finally {
      sink?.close()
    }
  })
}

test('README links work from the npm page: absolute, into the repository package.json names', (t) => {
  const repo = PKG.repository.url.replace(/^git\+/, '').replace(/\.git$/, '')
  t.is(repo, 'https://github.com/zerocopy-socket/zerocopy-socket')
  const links = [...README.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1])
  t.true(links.length > 0)
  for (const link of links) {
    t.true(/^(https?:\/\/|#)/.test(link), `relative link ${link}: use ${repo}/blob/main/${link}`)
    if (link.startsWith('https://github.com/zerocopy-socket/')) t.true(link.startsWith(`${repo}/`), link)
    // A link into the repository names a file that exists in this checkout.
    const inRepo = link.startsWith(`${repo}/blob/main/`) ? link.slice(`${repo}/blob/main/`.length).split('#')[0] : null
    if (inRepo !== null) t.true(existsSync(join(ROOT, inRepo)), `${link}: no ${inRepo} here`)
  }
})
