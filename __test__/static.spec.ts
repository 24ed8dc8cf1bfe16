/**
 * `serveStatic` against the reference, `serve-static` 2.2.1: a differential suite modelled on
 * serve-static's own tests (every case runs against both middlewares with the same options on
 * real node:http servers, asserts upstream's expectation on each and that status, body and the
 * relevant headers are identical), traversal and malformed paths, errors that must not crash
 * the process, a seeded keep-alive mix checked byte by byte, large bodies with io_uring off,
 * and the Fastify hijack recipe the README mentions.
 *
 * The table's requests go through node:http's client with the path sent as written: supertest
 * (superagent) parses URLs with WHATWG `URL`, which resolves `..` and `%2e%2e` segments before
 * sending, so the traversal cases would never reach the server. supertest drives the Express
 * tests below.
 */
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import test from 'ava'
import express from 'express'
import Fastify from 'fastify'
import request from 'supertest'

import { serveStatic, type ServeStaticOptions, type StaticMiddleware } from '../index'
import { patternBytes, rng, runChild, SEED, sha256 } from './helpers'

type Factory = (root: string, options?: ServeStaticOptions) => StaticMiddleware
const reference = createRequire(import.meta.url)('serve-static') as Factory
const IMPLEMENTATIONS: [string, Factory][] = [
  ['serve-static', reference],
  ['serveStatic', serveStatic],
]

/** The headers whose values must be identical between the two. */
const COMPARED = [
  'content-type',
  'content-length',
  'content-range',
  'accept-ranges',
  'cache-control',
  'etag',
  'last-modified',
  'location',
  'allow',
  'content-security-policy',
  'x-content-type-options',
  'x-custom',
]

const SECRET = 'TOP SECRET outside root'
/** The keep-alive corpus: 0 B to 4 MiB. */
const KA_SIZES = [0, 1, 777, 65_537, 200 * 1024, (1 << 20) + 3, 4 << 20]
const KA = KA_SIZES.map((size, i) => patternBytes(size, 100 + i))
const BIG = patternBytes(3 * (1 << 20) + 5, 7)
const MID = patternBytes(200 * 1024, 8)

// ---------------------------------------------------------------------------------------------
// The site: upstream's fixtures, large files, a directory outside root and links into it.

const base = await mkdtemp(join(tmpdir(), 'zc-static-'))
const ROOT = join(base, 'site')
const FILES: Record<string, string | Buffer> = {
  'todo.txt': '- groceries',
  'todo.html': '<li>groceries</li>',
  'users/tobi.txt': 'ferret',
  'users/index.html': '<p>tobi, loki, jane</p>',
  'foo bar': 'baz',
  '.hidden': 'I am hidden',
  '.private/inside.txt': 'dot directory',
  'nums.txt': '123456789',
  'empty.txt': '',
  'snow ☃/index.html': '<p>snow</p>',
  'big.bin': BIG,
  'mid.bin': MID,
}
for (const [i, bytes] of KA.entries()) FILES[`ka/${i}.bin`] = bytes
for (const dir of ['users', '.private', 'pets', 'snow ☃', 'ka']) await mkdir(join(ROOT, dir), { recursive: true })
for (const [name, content] of Object.entries(FILES)) await writeFile(join(ROOT, name), content)
await mkdir(join(base, 'outside'))
await writeFile(join(base, 'outside', 'secret.txt'), SECRET)
await mkdir(join(base, 'site-evil'))
await writeFile(join(base, 'site-evil', 'x.txt'), SECRET)
await symlink(join(base, 'outside', 'secret.txt'), join(ROOT, 'outside-link.txt'))
await symlink(join(base, 'outside'), join(ROOT, 'outside-dir'))
test.after.always(() => rm(base, { recursive: true, force: true }))

/** The weak ETag `send` gives a file (the `etag` module's stat tag). */
async function etagOf(name: string): Promise<string> {
  const s = await stat(join(ROOT, name))
  return `W/"${s.size.toString(16)}-${s.mtime.getTime().toString(16)}"`
}

// ---------------------------------------------------------------------------------------------
// Servers: upstream's createServer, once per configuration and implementation.

type Before = (req: http.IncomingMessage & { originalUrl?: string }, res: http.ServerResponse) => void

/** A server configuration: root (relative to the site), options, and what runs before the middleware. */
interface Config {
  root?: string
  opts?: ServeStaticOptions
  before?: Before
}

/** Mounted under its first path segment, as a router would (`/static/x` reaches the middleware as `/x`). */
const mountFirst: Before = (req) => {
  req.originalUrl = req.url
  req.url = '/' + req.url!.split('/').slice(2).join('/')
}
/** Mounted at the whole request path (the middleware sees `/`). */
const mountAll: Before = (req) => {
  req.originalUrl = req.url
  req.url = '/'
}

const servers = new Map<Config, Promise<number[]>>()
const opened: http.Server[] = []
test.after.always(() => opened.forEach((s) => s.close()))

function upstreamServer(middleware: StaticMiddleware, before?: Before): http.Server {
  return http.createServer((req, res) => {
    before?.(req, res)
    middleware(req, res, (err?: unknown) => {
      const e = err as { status?: number; stack?: string } | undefined
      res.statusCode = e ? (e.status ?? 500) : 404
      res.end(e ? e.stack : 'sorry!')
    })
  })
}

async function listen(server: http.Server | https.Server): Promise<number> {
  opened.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as net.AddressInfo).port
}

/** The ports of the reference and of ours for `config`. */
function ports(config: Config): Promise<number[]> {
  let p = servers.get(config)
  if (!p) {
    const root = config.root ?? ROOT
    p = Promise.all(IMPLEMENTATIONS.map(([, make]) => listen(upstreamServer(make(root, config.opts), config.before))))
    servers.set(config, p)
  }
  return p
}

interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
}

/** One request with node:http's client, the path sent exactly as written; a connection of its own unless `agent` is given. */
function fetchRaw(port: number, path: string, headers: http.OutgoingHttpHeaders = {}, method = 'GET', agent?: http.Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: agent ?? false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path}: no answer in 20 s`)))
    req.end()
  })
}

/** What must be identical: the status, the compared headers and the body (an error page's first line: its stacks name different files). */
function signature(r: Reply): Record<string, unknown> {
  const error = r.status >= 400 && /^\w*Error: [^\n]*/.exec(r.body.toString('latin1'))
  const headers = Object.fromEntries(COMPARED.filter((h) => !(error && h === 'content-length')).map((h) => [h, r.headers[h]]))
  return { status: r.status, headers, body: error ? error[0] : sha256(r.body) + ` (${r.body.length} bytes)` }
}

/** The compared headers in the order they were sent. */
function headerOrder(r: Reply): string[] {
  return r.rawHeaders
    .filter((_, i) => i % 2 === 0)
    .map((h) => h.toLowerCase())
    .filter((h) => COMPARED.includes(h))
}

// ---------------------------------------------------------------------------------------------
// The table.

const DEFAULT: Config = {}
const NO_FALLTHROUGH: Config = { opts: { fallthrough: false } }
const cfg = (opts: ServeStaticOptions, extra: Omit<Config, 'opts'> = {}): Config => ({ opts, ...extra })
const RANGES_OFF = cfg({ acceptRanges: false })
const RANGES_ON = cfg({ acceptRanges: true })
const CACHE_OFF = cfg({ cacheControl: false })
const CACHE_OFF_MAXAGE = cfg({ cacheControl: false, maxAge: 1000 })
const CACHE_ON = cfg({ cacheControl: true })
const EXT_HTML = cfg({ extensions: ['html'] })
const EXT_STRING = cfg({ extensions: 'html' })
const EXT_LIST = cfg({ extensions: ['htm', 'txt', 'html'] })
const EXT_MISS = cfg({ extensions: ['htm'] })
const EXT_FALSE = cfg({ extensions: false })
const LONG_ROOT = { root: ROOT + '/foobar'.repeat(9999) }
const LONG_ROOT_FT = { ...LONG_ROOT, opts: { fallthrough: true } }
const LONG_ROOT_NO_FT = { ...LONG_ROOT, opts: { fallthrough: false } }
const NO_REDIRECT = cfg({ redirect: false })
const NO_REDIRECT_NO_FT = cfg({ redirect: false, fallthrough: false })
const DOT_ALLOW = cfg({ dotfiles: 'allow' })
const DOT_DENY = cfg({ dotfiles: 'deny' })
const DOT_DENY_NO_FT = cfg({ dotfiles: 'deny', fallthrough: false })
const IMMUTABLE = cfg({ immutable: true })
const IMMUTABLE_1H = cfg({ immutable: true, maxAge: '1h' })
const NO_LAST_MODIFIED = cfg({ lastModified: false })
const NO_ETAG = cfg({ etag: false })
const MAXAGE_30D = cfg({ maxAge: '30d' })
const MAXAGE_INFINITY = cfg({ maxAge: Infinity })
const MAXAGE_MS = cfg({ maxage: 1500 })
const SET_HEADERS = cfg({ setHeaders: (res) => res.setHeader('x-custom', 'set') })
const MISSING_ROOT = { root: join(ROOT, 'does-not-exist') }
const MOUNTED = { before: mountFirst }
const MOUNTED_USERS = { root: join(ROOT, 'users'), before: mountFirst }
const MOUNTED_ALL = { before: mountAll }
const FILE_ROOT = { root: join(ROOT, 'todo.txt') }
const FILE_ROOT_MOUNTED = { root: join(ROOT, 'todo.txt'), before: mountAll }
const STATUS_501: Config = { before: (_req, res) => void (res.statusCode = 501) }
const NO_INDEX = cfg({ index: false })
const NO_INDEX_MOUNTED = cfg({ index: false }, { before: mountFirst })
const INDEX_LIST = cfg({ index: ['missing.html', 'tobi.txt'] })

type Expected = string | RegExp | null
interface Case {
  name: string
  config: Config
  path: string
  method?: string
  headers?: () => Promise<http.OutgoingHttpHeaders> | http.OutgoingHttpHeaders
  status: number
  /** The body: bytes, text, a pattern, or an error page's name. */
  body?: Buffer | string | RegExp
  /** Headers: a value, a pattern, or `null` for absent. */
  expect?: Record<string, Expected>
  /** Must never appear in the body. */
  secret?: boolean
}

const range = (value: string) => () => ({ range: value })
const sorry = 'sorry!'
const TEXT = 'text/plain; charset=utf-8'
const REDIRECT_HEADERS = { 'content-type': 'text/html; charset=UTF-8', 'content-security-policy': "default-src 'none'", 'x-content-type-options': 'nosniff' }

const CASES: Case[] = [
  // basic operations
  {
    name: 'serves a file',
    config: DEFAULT,
    path: '/todo.txt',
    status: 200,
    body: '- groceries',
    expect: {
      'content-type': TEXT,
      'content-length': '11',
      'accept-ranges': 'bytes',
      etag: /^W\/"b-/,
      'last-modified': / GMT$/,
      'cache-control': 'public, max-age=0',
    },
  },
  { name: 'serves nested files', config: DEFAULT, path: '/users/tobi.txt', status: 200, body: 'ferret' },
  {
    name: 'sets Content-Type from the extension',
    config: DEFAULT,
    path: '/todo.html',
    status: 200,
    body: '<li>groceries</li>',
    expect: { 'content-type': 'text/html; charset=utf-8' },
  },
  { name: 'urlencoded pathnames', config: DEFAULT, path: '/foo%20bar', status: 200, body: 'baz' },
  { name: 'auth-looking URL //todo@txt', config: DEFAULT, path: '//todo@txt', status: 404, body: sorry },
  {
    name: 'index.html for a directory',
    config: DEFAULT,
    path: '/users/',
    status: 200,
    body: '<p>tobi, loki, jane</p>',
    expect: { 'content-type': 'text/html; charset=utf-8' },
  },
  { name: '../ inside root', config: DEFAULT, path: '/users/../todo.txt', status: 200, body: '- groceries' },
  {
    name: 'HEAD: headers, no body',
    config: DEFAULT,
    method: 'HEAD',
    path: '/todo.txt',
    status: 200,
    body: '',
    expect: { 'content-length': '11', 'content-type': TEXT },
  },
  { name: 'HEAD of a large file', config: DEFAULT, method: 'HEAD', path: '/big.bin', status: 200, body: '', expect: { 'content-length': String(BIG.length) } },
  { name: 'POST is skipped (next)', config: DEFAULT, method: 'POST', path: '/todo.txt', status: 404, body: sorry },
  {
    name: 'If-None-Match with the ETag: 304',
    config: DEFAULT,
    path: '/todo.txt',
    headers: async () => ({ 'if-none-match': await etagOf('todo.txt') }),
    status: 304,
    body: '',
  },
  {
    name: 'If-None-Match another ETag: 200',
    config: DEFAULT,
    path: '/todo.txt',
    headers: () => ({ 'if-none-match': 'W/"nope"' }),
    status: 200,
    body: '- groceries',
  },
  {
    name: 'If-Modified-Since in the future: 304',
    config: DEFAULT,
    path: '/todo.txt',
    headers: () => ({ 'if-modified-since': new Date(Date.now() + 86_400_000).toUTCString() }),
    status: 304,
    body: '',
  },
  {
    name: 'If-Match mismatch: 412',
    config: DEFAULT,
    path: '/todo.txt',
    headers: () => ({ 'if-match': '"nope"' }),
    status: 412,
    body: 'PreconditionFailedError: Precondition Failed',
  },
  {
    name: 'If-Match the ETag: 200',
    config: DEFAULT,
    path: '/todo.txt',
    headers: async () => ({ 'if-match': await etagOf('todo.txt') }),
    status: 200,
    body: '- groceries',
  },
  {
    name: 'If-Unmodified-Since in the past: 412',
    config: DEFAULT,
    path: '/todo.txt',
    headers: () => ({ 'if-unmodified-since': new Date(86_400_000).toUTCString() }),
    status: 412,
    body: 'PreconditionFailedError: Precondition Failed',
  },
  { name: 'zero-length file', config: DEFAULT, path: '/empty.txt', status: 200, body: '', expect: { 'content-length': '0' } },
  { name: 'hidden files ignored', config: DEFAULT, path: '/.hidden', status: 404, body: sorry },
  { name: 'large file, whole', config: DEFAULT, path: '/big.bin', status: 200, body: BIG, expect: { 'content-type': 'application/octet-stream' } },
  { name: 'missing file: next()', config: DEFAULT, path: '/nope.txt', status: 404, body: sorry },
  // acceptRanges
  {
    name: 'acceptRanges false: whole file, no Accept-Ranges',
    config: RANGES_OFF,
    path: '/nums.txt',
    headers: range('bytes=0-4'),
    status: 200,
    body: '123456789',
    expect: { 'accept-ranges': null },
  },
  {
    name: 'acceptRanges true: 206',
    config: RANGES_ON,
    path: '/nums.txt',
    headers: range('bytes=0-4'),
    status: 206,
    body: '12345',
    expect: { 'accept-ranges': 'bytes' },
  },
  // cacheControl
  { name: 'cacheControl false: no Cache-Control', config: CACHE_OFF, path: '/todo.txt', status: 200, body: '- groceries', expect: { 'cache-control': null } },
  { name: 'cacheControl false ignores maxAge', config: CACHE_OFF_MAXAGE, path: '/todo.txt', status: 200, expect: { 'cache-control': null } },
  { name: 'cacheControl true', config: CACHE_ON, path: '/todo.txt', status: 200, expect: { 'cache-control': 'public, max-age=0' } },
  // etag, lastModified
  { name: 'etag false: no ETag', config: NO_ETAG, path: '/todo.txt', status: 200, expect: { etag: null } },
  { name: 'lastModified false: no Last-Modified', config: NO_LAST_MODIFIED, path: '/todo.txt', status: 200, expect: { 'last-modified': null } },
  // extensions
  { name: 'extensions off by default', config: DEFAULT, path: '/todo', status: 404, body: sorry },
  { name: 'extensions [html]', config: EXT_HTML, path: '/todo', status: 200, body: '<li>groceries</li>' },
  { name: "extensions 'html' (a string)", config: EXT_STRING, path: '/todo', status: 200, body: '<li>groceries</li>' },
  { name: 'extensions tried in order', config: EXT_LIST, path: '/todo', status: 200, body: '- groceries' },
  { name: 'extensions: 404 when none exists', config: EXT_MISS, path: '/todo', status: 404, body: sorry },
  { name: 'extensions false', config: EXT_FALSE, path: '/todo', status: 404, body: sorry },
  // fallthrough: true (the default)
  { name: 'fallthrough: OPTIONS → next', config: DEFAULT, method: 'OPTIONS', path: '/todo.txt', status: 404, body: sorry },
  { name: 'fallthrough: malformed /%', config: DEFAULT, path: '/%', status: 404, body: sorry },
  { name: 'fallthrough: traversal past root', config: DEFAULT, path: '/users/../../todo.txt', status: 404, body: sorry },
  { name: 'fallthrough: name too long', config: LONG_ROOT_FT, path: '/', status: 404, body: sorry },
  { name: 'fallthrough: directory redirect', config: DEFAULT, path: '/pets', status: 301, expect: { location: '/pets/' } },
  { name: 'fallthrough: directory, redirect false', config: NO_REDIRECT, path: '/pets', status: 404, body: sorry },
  { name: 'directory with slash, no index', config: DEFAULT, path: '/pets/', status: 404, body: sorry },
  // fallthrough: false
  {
    name: 'no fallthrough: POST → 405 with Allow',
    config: NO_FALLTHROUGH,
    method: 'POST',
    path: '/todo.txt',
    status: 405,
    body: '',
    expect: { allow: 'GET, HEAD', 'content-length': '0' },
  },
  { name: 'no fallthrough: malformed → 400', config: NO_FALLTHROUGH, path: '/%', status: 400, body: 'BadRequestError: Bad Request' },
  { name: 'no fallthrough: traversal → 403', config: NO_FALLTHROUGH, path: '/users/../../todo.txt', status: 403, body: 'ForbiddenError: Forbidden' },
  { name: 'no fallthrough: ENAMETOOLONG → 404', config: LONG_ROOT_NO_FT, path: '/', status: 404, body: /^Error: ENAMETOOLONG/ },
  { name: 'no fallthrough: missing → 404', config: NO_FALLTHROUGH, path: '/nope.txt', status: 404, body: /^Error: ENOENT/ },
  { name: 'no fallthrough: directory → 301', config: NO_FALLTHROUGH, path: '/pets', status: 301, expect: { location: '/pets/' } },
  { name: 'no fallthrough: directory, redirect false → 404', config: NO_REDIRECT_NO_FT, path: '/pets', status: 404, body: 'NotFoundError: Not Found' },
  // dotfiles
  { name: 'dotfiles allow', config: DOT_ALLOW, path: '/.hidden', status: 200, body: 'I am hidden' },
  { name: 'dotfiles allow: file in a dot directory', config: DOT_ALLOW, path: '/.private/inside.txt', status: 200, body: 'dot directory' },
  { name: 'dotfiles ignore: file in a dot directory', config: DEFAULT, path: '/.private/inside.txt', status: 404, body: sorry },
  { name: 'dotfiles deny (fallthrough): next', config: DOT_DENY, path: '/.hidden', status: 404, body: sorry },
  { name: 'dotfiles deny: 403', config: DOT_DENY_NO_FT, path: '/.hidden', status: 403, body: 'ForbiddenError: Forbidden' },
  { name: 'dotfiles deny: dot directory 403', config: DOT_DENY_NO_FT, path: '/.private/inside.txt', status: 403, body: 'ForbiddenError: Forbidden' },
  // immutable, maxAge
  { name: 'immutable', config: IMMUTABLE, path: '/todo.txt', status: 200, expect: { 'cache-control': 'public, max-age=0, immutable' } },
  { name: "immutable with maxAge '1h'", config: IMMUTABLE_1H, path: '/todo.txt', status: 200, expect: { 'cache-control': 'public, max-age=3600, immutable' } },
  { name: "maxAge '30d'", config: MAXAGE_30D, path: '/todo.txt', status: 200, expect: { 'cache-control': 'public, max-age=2592000' } },
  { name: 'maxAge Infinity: one year', config: MAXAGE_INFINITY, path: '/todo.txt', status: 200, expect: { 'cache-control': 'public, max-age=31536000' } },
  { name: 'maxage (lowercase) in ms', config: MAXAGE_MS, path: '/todo.txt', status: 200, expect: { 'cache-control': 'public, max-age=1' } },
  // redirect
  {
    name: 'redirect: trailing slash',
    config: DEFAULT,
    path: '/users',
    status: 301,
    body: /Redirecting to \/users\//,
    expect: { location: '/users/', ...REDIRECT_HEADERS },
  },
  { name: 'redirect keeps the query string', config: DEFAULT, path: '/users?name=john', status: 301, expect: { location: '/users/?name=john' } },
  { name: 'redirect never protocol-relative', config: DEFAULT, path: '//users', status: 301, expect: { location: '/users/' } },
  { name: 'redirect encodes', config: DEFAULT, path: '/snow%20%E2%98%83', status: 301, expect: { location: '/snow%20%E2%98%83/' } },
  { name: 'redirected encoded directory is served', config: DEFAULT, path: '/snow%20%E2%98%83/', status: 200, body: '<p>snow</p>' },
  { name: '/ is not redirected', config: DEFAULT, path: '/', status: 404, body: sorry },
  { name: 'redirect false', config: NO_REDIRECT, path: '/users', status: 404, body: sorry },
  // setHeaders
  { name: 'setHeaders when sending a file', config: SET_HEADERS, path: '/todo.txt', status: 200, body: '- groceries', expect: { 'x-custom': 'set' } },
  { name: 'setHeaders not on 404', config: SET_HEADERS, path: '/nope.txt', status: 404, expect: { 'x-custom': null } },
  { name: 'setHeaders not on redirect', config: SET_HEADERS, path: '/users', status: 301, expect: { 'x-custom': null } },
  // a root that does not exist
  { name: 'missing root: 404', config: MISSING_ROOT, path: '/todo.txt', status: 404, body: sorry },
  { name: 'missing root: no traversal', config: MISSING_ROOT, path: '/../todo.txt', status: 404, body: sorry },
  // traversal
  { name: 'encoded traversal %2e%2e → 403', config: NO_FALLTHROUGH, path: '/users/%2e%2e/%2e%2e/todo.txt', status: 403, body: 'ForbiddenError: Forbidden' },
  { name: 'root path disclosure → 403', config: NO_FALLTHROUGH, path: '/users/../../site/todo.txt', status: 403, body: 'ForbiddenError: Forbidden' },
  // Range
  {
    name: 'Range 0-4',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=0-4'),
    status: 206,
    body: '12345',
    expect: { 'content-range': 'bytes 0-4/9', 'content-length': '5' },
  },
  {
    name: 'Range 0-0 is inclusive',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=0-0'),
    status: 206,
    body: '1',
    expect: { 'content-range': 'bytes 0-0/9' },
  },
  {
    name: 'Range -3 (suffix)',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=-3'),
    status: 206,
    body: '789',
    expect: { 'content-range': 'bytes 6-8/9' },
  },
  {
    name: 'Range 3- (open)',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=3-'),
    status: 206,
    body: '456789',
    expect: { 'content-range': 'bytes 3-8/9' },
  },
  {
    name: 'Range last-byte-pos past the end',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=2-50'),
    status: 206,
    body: '3456789',
    expect: { 'content-range': 'bytes 2-8/9', 'content-length': '7' },
  },
  {
    name: 'Range first-byte-pos past the end → 416',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=9-50'),
    status: 416,
    body: 'RangeNotSatisfiableError: Range Not Satisfiable',
    expect: { 'content-range': 'bytes */9' },
  },
  { name: 'Range syntactically invalid → 200', config: DEFAULT, path: '/nums.txt', headers: range('asdf'), status: 200, body: '123456789' },
  { name: 'Range several → 200 whole', config: DEFAULT, path: '/nums.txt', headers: range('bytes=0-1,4-5'), status: 200, body: '123456789' },
  {
    name: 'Range overlapping → combined 206',
    config: DEFAULT,
    path: '/nums.txt',
    headers: range('bytes=0-1,1-3'),
    status: 206,
    body: '1234',
    expect: { 'content-range': 'bytes 0-3/9' },
  },
  {
    name: 'Range with a fresh If-Range',
    config: DEFAULT,
    path: '/nums.txt',
    headers: async () => ({ range: 'bytes=1-2', 'if-range': await etagOf('nums.txt') }),
    status: 206,
    body: '23',
  },
  {
    name: 'Range with a stale If-Range → 200',
    config: DEFAULT,
    path: '/nums.txt',
    headers: () => ({ range: 'bytes=1-2', 'if-range': 'W/"old"' }),
    status: 200,
    body: '123456789',
  },
  {
    name: 'Range of a 200 KiB file',
    config: DEFAULT,
    path: '/mid.bin',
    headers: range('bytes=1000-150000'),
    status: 206,
    body: MID.subarray(1000, 150_001),
    expect: { 'content-range': `bytes 1000-150000/${MID.length}` },
  },
  {
    name: 'Range of the tail of a 3 MiB file',
    config: DEFAULT,
    path: '/big.bin',
    headers: range('bytes=-1048583'),
    status: 206,
    body: BIG.subarray(BIG.length - 1_048_583),
  },
  {
    name: 'Range on a zero-length file → 416',
    config: DEFAULT,
    path: '/empty.txt',
    headers: range('bytes=0-0'),
    status: 416,
    expect: { 'content-range': 'bytes */0' },
  },
  {
    name: 'HEAD with a Range',
    config: DEFAULT,
    method: 'HEAD',
    path: '/nums.txt',
    headers: range('bytes=0-4'),
    status: 206,
    body: '',
    expect: { 'content-length': '5' },
  },
  // mount points
  { name: 'index at mount point: redirect', config: MOUNTED_USERS, path: '/users', status: 301, expect: { location: '/users/' } },
  { name: 'index at mount point: served', config: MOUNTED_USERS, path: '/users/', status: 200, body: '<p>tobi, loki, jane</p>' },
  { name: 'mounted: redirect relative to originalUrl', config: MOUNTED, path: '/static/users', status: 301, expect: { location: '/static/users/' } },
  { name: 'mounted: file', config: MOUNTED, path: '/static/users/tobi.txt', status: 200, body: 'ferret' },
  { name: 'mounted: //todo@txt not protocol-relative', config: MOUNTED_ALL, path: '//todo@txt', status: 301, expect: { location: '/todo@txt/' } },
  // root is a file
  { name: 'root a file: / → 404', config: FILE_ROOT, path: '/', status: 404, body: sorry },
  { name: 'root a file: below it → 404', config: FILE_ROOT, path: '/foo', status: 404, body: sorry },
  { name: 'root a file, mounted: served', config: FILE_ROOT_MOUNTED, path: '/todo', status: 200, body: '- groceries' },
  // a status set before
  { name: 'non-2xx status set before: as-is', config: STATUS_501, path: '/todo.txt', status: 501, body: '- groceries' },
  { name: 'non-2xx status set before, large file', config: STATUS_501, path: '/mid.bin', status: 501, body: MID },
  // index
  { name: 'index false: directory → next', config: NO_INDEX, path: '/users/', status: 404, body: sorry },
  { name: 'index false: redirect at mount point', config: NO_INDEX_MOUNTED, path: '/static/users', status: 301, expect: { location: '/static/users/' } },
  { name: 'index list: first that exists', config: INDEX_LIST, path: '/users/', status: 200, body: 'ferret' },
  // security: never outside root, and agreement on how each is refused
  ...(
    [
      ['..', '/../outside/secret.txt', 403],
      ['%2e%2e', '/%2e%2e/outside/secret.txt', 403],
      ['%2E%2E%2F', '/%2E%2E%2Foutside%2Fsecret.txt', 403],
      ['.%2e', '/users/.%2e/.%2e/outside/secret.txt', 403],
      ['..%2f to a sibling with the same prefix', '/..%2fsite-evil%2fx.txt', 403],
      ['..%5c backslashes (send treats \\ as a separator too)', '/..%5c..%5coutside%5csecret.txt', 403],
      ['raw backslashes', '/..\\..\\outside\\secret.txt', 403],
      ['//etc/passwd', '//etc/passwd', 404],
      ['/%2Fetc%2Fpasswd', '/%2Fetc%2Fpasswd', 404],
      ['null byte', '/todo.txt%00', 400],
      ['null byte before ..', '/%00/../outside/secret.txt', 400],
    ] as const
  ).map(([what, path, status]): Case => ({ name: `security: ${what}`, config: NO_FALLTHROUGH, path, status, secret: true })),
  // symlinks are followed, as send does: root containment is by path, not by link target
  { name: 'symlink to a file outside root is followed', config: DEFAULT, path: '/outside-link.txt', status: 200, body: SECRET },
  { name: 'symlink to a directory outside root is followed', config: DEFAULT, path: '/outside-dir/secret.txt', status: 200, body: SECRET },
]

function check(t: import('ava').ExecutionContext, c: Case, impl: string, r: Reply): void {
  const at = `${impl}: ${c.method ?? 'GET'} ${c.path}`
  t.is(r.status, c.status, at)
  const text = r.body.toString('utf8')
  if (Buffer.isBuffer(c.body)) t.true(r.body.equals(c.body), `${at}: body bytes differ`)
  else if (c.body instanceof RegExp) t.regex(text, c.body, at)
  else if (typeof c.body === 'string' && /^\w+Error: /.test(c.body)) t.is(text.split('\n')[0], c.body, at)
  else if (typeof c.body === 'string') t.is(text, c.body, at)
  for (const [name, want] of Object.entries(c.expect ?? {})) {
    const got = r.headers[name]
    if (want === null) t.is(got, undefined, `${at}: ${name}`)
    else if (want instanceof RegExp) t.regex(String(got), want, `${at}: ${name}`)
    else t.is(got, want, `${at}: ${name}`)
  }
  if (c.secret) t.false(text.includes(SECRET), `${at}: served a file outside root`)
}

for (const c of CASES) {
  test(`same as serve-static: ${c.name}`, async (t) => {
    const [refPort, ourPort] = await ports(c.config)
    const headers = (await c.headers?.()) ?? {}
    const ref = await fetchRaw(refPort, c.path, headers, c.method)
    check(t, c, 'serve-static', ref)
    // Three times: a whole file answered once is answered again without send (src/static.ts,
    // knownFileResponse), and must not differ in any way.
    for (let i = 1; i <= 3; i++) {
      const ours = await fetchRaw(ourPort, c.path, headers, c.method)
      check(t, c, `serveStatic (request ${i})`, ours)
      t.deepEqual(signature(ours), signature(ref), `request ${i} differs from serve-static`)
      t.deepEqual(headerOrder(ours), headerOrder(ref), `request ${i}: the headers in another order than serve-static's`)
    }
  })
}

test('both refuse a missing root and a setHeaders that is not a function, with the same TypeError', (t) => {
  for (const [, make] of IMPLEMENTATIONS) {
    t.throws(() => make(''), { instanceOf: TypeError, message: 'root path required' })
    t.throws(() => make(42 as unknown as string), { instanceOf: TypeError, message: 'root path must be a string' })
    t.throws(() => make(ROOT, { setHeaders: 'x' as unknown as ServeStaticOptions['setHeaders'] }), {
      instanceOf: TypeError,
      message: 'option setHeaders must be function',
    })
  }
})

// ---------------------------------------------------------------------------------------------
// Errors inside the middleware never end the process.

test('a setHeaders that throws: a 500 through next(), and the server goes on (serve-static: the process dies)', async (t) => {
  const boom: ServeStaticOptions = {
    setHeaders: () => {
      throw new Error('boom from setHeaders')
    },
  }
  const port = await listen(upstreamServer(serveStatic(ROOT, boom)))
  for (let i = 0; i < 3; i++) {
    const r = await fetchRaw(port, '/todo.txt')
    t.is(r.status, 500)
    t.is(r.body.toString().split('\n')[0], 'Error: boom from setHeaders')
    t.is((await fetchRaw(port, '/users/')).status, 500, 'the index goes through setHeaders too')
  }
  t.is((await fetchRaw(port, '/nope.txt')).status, 404, 'no setHeaders on a 404: the server still answers')
  // The reference, in a child process: the exception escapes from send's fs callback.
  const child = await runChild(
    `const http = require('node:http'); const mw = require('serve-static')(process.env.ZC_ROOT, { setHeaders() { throw new Error('boom') } })
     const server = http.createServer((req, res) => mw(req, res, () => res.end())).listen(0, '127.0.0.1', () => http.get({ host: '127.0.0.1', port: server.address().port, path: '/todo.txt' }).on('error', () => {}))`,
    { ZC_ROOT: ROOT },
  )
  t.not(child.code, 0, 'serve-static ends the process on a throwing setHeaders')
  t.regex(child.stderr, /Error: boom/)
})

test('a file deleted between stat and open: the same 404 as serve-static, then business as usual', async (t) => {
  const file = join(ROOT, 'vanishing.txt')
  const vanish: ServeStaticOptions = { setHeaders: (_res, path) => path === file && unlinkSync(path) }
  const replies: Reply[] = []
  for (const [, make] of IMPLEMENTATIONS) {
    const middleware = make(ROOT, vanish)
    // As upstream's createServer, but dropping the Content-Length send had set for the file (as
    // finalhandler does): the error page is longer.
    const server = http.createServer((req, res) =>
      middleware(req, res, (err) => {
        res.removeHeader('content-length')
        res.statusCode = (err as { status: number }).status
        res.end((err as Error).stack)
      }),
    )
    const port = await listen(server)
    writeFileSync(file, 'here, then gone')
    utimesSync(file, 1e9, 1e9) // the same ETag and Last-Modified both times
    replies.push(await fetchRaw(port, '/vanishing.txt'))
    t.is((await fetchRaw(port, '/todo.txt')).body.toString(), '- groceries')
  }
  t.is(replies[1].status, 404)
  t.regex(replies[1].body.toString(), /^Error: ENOENT/)
  t.deepEqual(signature(replies[1]), signature(replies[0]))
})

/** Asks for `path` on a raw connection and resets it after `after` body-ish bytes arrived. */
async function resetMidBody(port: number, path: string, after: number): Promise<number> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
  let got = 0
  await new Promise<void>((resolve) => {
    socket.on('data', (c: Buffer) => {
      got += c.length
      if (got >= after) {
        socket.resetAndDestroy()
        resolve()
      }
    })
    socket.on('close', () => resolve())
    socket.on('error', () => resolve())
  })
  return got
}

test('clients that reset mid-body: the server keeps serving, byte-exact', async (t) => {
  const [refPort, ourPort] = await ports(DEFAULT)
  for (const port of [refPort, ourPort]) {
    for (let i = 0; i < 8; i++) {
      const got = await resetMidBody(port, i % 2 ? '/big.bin' : '/ka/6.bin', 1 + i * 40_000)
      t.true(got > 0)
      const r = await fetchRaw(port, '/mid.bin', { range: 'bytes=7-70000' })
      t.is(r.status, 206)
      t.true(r.body.equals(MID.subarray(7, 70_001)), `port ${port}: range after reset ${i}`)
    }
  }
})

// ---------------------------------------------------------------------------------------------
// Keep-alive: a seeded random mix on one connection, every byte checked.

interface Step {
  method: string
  path: string
  headers: http.OutgoingHttpHeaders
  status: number
  body: Buffer
}

async function randomSteps(count: number, random: () => number): Promise<Step[]> {
  const steps: Step[] = []
  for (let n = 0; n < count; n++) {
    const i = Math.floor(random() * KA.length)
    const file = KA[i]
    const path = `/ka/${i}.bin`
    const kind = Math.floor(random() * 5)
    if (kind === 0) steps.push({ method: 'GET', path, headers: { 'if-none-match': await etagOf(`ka/${i}.bin`) }, status: 304, body: Buffer.alloc(0) })
    else if (kind === 1) steps.push({ method: 'HEAD', path, headers: {}, status: 200, body: Buffer.alloc(0) })
    else if (kind === 2 && file.length > 0) {
      const start = Math.floor(random() * file.length)
      const end = start + Math.floor(random() * (file.length - start))
      steps.push({ method: 'GET', path, headers: { range: `bytes=${start}-${end}` }, status: 206, body: file.subarray(start, end + 1) })
    } else if (kind === 3)
      steps.push({ method: 'GET', path, headers: { range: `bytes=${file.length + Math.floor(random() * 10)}-` }, status: 416, body: Buffer.alloc(0) })
    else steps.push({ method: 'GET', path, headers: {}, status: 200, body: file })
  }
  return steps
}

test(`keep-alive: 120 seeded random 200/206/304/416/HEAD responses on one connection, byte-exact, as serve-static (seed ${SEED})`, async (t) => {
  const steps = await randomSteps(120, rng(SEED))
  for (const [impl, make] of IMPLEMENTATIONS) {
    let connections = 0
    const server = upstreamServer(make(ROOT))
    server.on('connection', () => connections++)
    const port = await listen(server)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    for (const [n, step] of steps.entries()) {
      const r = await fetchRaw(port, step.path, step.headers, step.method, agent)
      const at = `${impl} step ${n}: ${step.method} ${step.path} ${JSON.stringify(step.headers)} (seed ${SEED})`
      t.is(r.status, step.status, at)
      if (step.status === 416) t.regex(r.body.toString(), /^RangeNotSatisfiableError/, at)
      else t.true(r.body.equals(step.body), `${at}: body differs`)
      if (step.method === 'HEAD') t.is(r.headers['content-length'], String(KA[Number(step.path.slice(4, -4))].length), at)
    }
    agent.destroy()
    t.is(connections, 1, `${impl}: one connection served them all`)
  }
})

// ---------------------------------------------------------------------------------------------
// Large bodies: byte-exact with io_uring on and off (child processes), never through send's ReadStream.

const CHILD = `
const fs = require('node:fs'), http = require('node:http'), crypto = require('node:crypto')
let readStreams = 0
const createReadStream = fs.createReadStream
fs.createReadStream = function (...args) { readStreams++; return createReadStream.apply(this, args) }
const make = process.env.ZC_IMPL === 'reference' ? require('serve-static') : zc.serveStatic
const mw = make(process.env.ZC_ROOT)
const server = http.createServer((req, res) => mw(req, res, () => { res.statusCode = 404; res.end() }))
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
const get = (path, headers = {}) => new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port: server.address().port, path, headers, agent }, (res) => {
  const h = crypto.createHash('sha256'); let bytes = 0
  res.on('data', (c) => { h.update(c); bytes += c.length })
  res.on('end', () => resolve({ status: res.statusCode, bytes, sha256: h.digest('hex'), range: res.headers['content-range'] ?? null }))
}).on('error', reject))
server.listen(0, '127.0.0.1', async () => {
  const out = []
  for (let round = 0; round < 2; round++) {
    out.push(await get('/big.bin'), await get('/mid.bin', { range: 'bytes=1000-150000' }), await get('/ka/6.bin', { range: 'bytes=5-' }), await get('/nums.txt', { range: 'bytes=2-4' }))
  }
  console.log(JSON.stringify({ supported: zc.probe().supported, readStreams, out }))
  agent.destroy(); server.close()
})`

const LARGE_EXPECTED = (() => {
  const one = (status: number, body: Buffer, range: string | null) => ({ status, bytes: body.length, sha256: sha256(body), range })
  const round = [
    one(200, BIG, null),
    one(206, MID.subarray(1000, 150_001), `bytes 1000-150000/${MID.length}`),
    one(206, KA[6].subarray(5), `bytes 5-${KA[6].length - 1}/${KA[6].length}`),
    one(206, Buffer.from('345'), 'bytes 2-4/9'),
  ]
  return [...round, ...round]
})()

for (const [what, env] of [
  ['io_uring on', {}],
  ['ZEROCOPY_SOCKET_DISABLE=1', { ZEROCOPY_SOCKET_DISABLE: '1' }],
] as const) {
  test(`large bodies and ranges, ${what}: byte-exact, and send's ReadStream never used (serve-static uses one per body)`, async (t) => {
    const [ours, ref] = await Promise.all(['ours', 'reference'].map((impl) => runChild(CHILD, { ...env, ZC_ROOT: ROOT, ZC_IMPL: impl })))
    const o = ours.json as { supported: boolean; readStreams: number; out: unknown[] } | null
    const r = ref.json as typeof o
    t.truthy(o, ours.stderr)
    t.truthy(r, ref.stderr)
    t.deepEqual(o!.out, LARGE_EXPECTED)
    t.deepEqual(r!.out, LARGE_EXPECTED)
    t.is(o!.readStreams, 0, 'every body went through respondWithFile')
    t.is(r!.readStreams, LARGE_EXPECTED.length, 'the spy sees the reference read each body')
    if ('ZEROCOPY_SOCKET_DISABLE' in env) t.false(o!.supported)
  })
}

// ---------------------------------------------------------------------------------------------
// Express (through supertest) and Fastify.

/** supertest: the body as bytes, whatever its type. */
function bytes(res: request.Response, done: (err: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = []
  res.on('data', (c: Buffer) => chunks.push(c))
  res.on('end', () => done(null, Buffer.concat(chunks)))
}

test('Express: app.use(prefix, serveStatic(root)) answers as express.static does (supertest)', async (t) => {
  const apps = [express().use('/static', express.static(ROOT)), express().use('/static', serveStatic(ROOT))]
  const cases: [string, Record<string, string>, number, Buffer | null][] = [
    ['/static/users', {}, 301, null],
    ['/static/users/', {}, 200, Buffer.from('<p>tobi, loki, jane</p>')],
    ['/static/big.bin', {}, 200, BIG],
    ['/static/mid.bin', { range: 'bytes=100-200099' }, 206, MID.subarray(100, 200_100)],
    ['/static/nums.txt', { range: 'bytes=20-' }, 416, null],
    ['/static/nope', {}, 404, null],
  ]
  for (const [path, headers, status, body] of cases) {
    const [ref, ours] = await Promise.all(apps.map((app) => request(app).get(path).set(headers).buffer(true).parse(bytes)))
    t.is(ours.status, status, path)
    t.is(ref.status, status, path)
    if (body) t.true((ours.body as Buffer).equals(body), `${path}: body`)
    // Express's error pages carry stacks (file paths): their lengths differ.
    for (const h of COMPARED) if (!(status >= 400 && h === 'content-length')) t.is(ours.headers[h], ref.headers[h], `${path}: ${h}`)
    if (status === 301) t.is(ours.headers.location, '/static/users/')
  }
})

test('Fastify: a route that hijacks the reply and hands it to serveStatic, keep-alive, byte-exact', async (t) => {
  const app = Fastify()
  const files = serveStatic(ROOT)
  app.get('/*', (req, reply) => {
    reply.hijack()
    files(req.raw, reply.raw, (err) => {
      reply.raw.statusCode = err ? ((err as { statusCode?: number }).statusCode ?? 500) : 404
      reply.raw.end()
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  let connections = 0
  app.server.on('connection', () => connections++)
  const port = (app.server.address() as net.AddressInfo).port
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let round = 0; round < 3; round++) {
    const big = await fetchRaw(port, '/big.bin', {}, 'GET', agent)
    t.is(big.status, 200)
    t.true(big.body.equals(BIG))
    const part = await fetchRaw(port, '/mid.bin', { range: 'bytes=10-100009' }, 'GET', agent)
    t.is(part.status, 206)
    t.is(part.headers['content-range'], `bytes 10-100009/${MID.length}`)
    t.true(part.body.equals(MID.subarray(10, 100_010)))
    const cached = await fetchRaw(port, '/todo.txt', { 'if-none-match': await etagOf('todo.txt') }, 'GET', agent)
    t.is(cached.status, 304)
    const head = await fetchRaw(port, '/ka/5.bin', {}, 'HEAD', agent)
    t.is(head.status, 200)
    t.is(head.headers['content-length'], String(KA[5].length))
    t.is(head.body.length, 0)
    t.is((await fetchRaw(port, '/nope.txt', {}, 'GET', agent)).status, 404)
    t.is((await fetchRaw(port, '/users', {}, 'GET', agent)).headers.location, '/users/')
  }
  t.is(connections, 1)
})

test('https: the body is streamed through TLS, byte-exact, keep-alive, same headers as serve-static', async (t) => {
  const key = join(base, 'key.pem')
  const cert = join(base, 'cert.pem')
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'])
  const tlsOptions = { key: await readFile(key), cert: await readFile(cert) }
  const replies: Reply[][] = []
  for (const [, make] of IMPLEMENTATIONS) {
    const middleware = make(ROOT)
    const port = await listen(https.createServer(tlsOptions, (req, res) => middleware(req, res, () => ((res.statusCode = 404), res.end()))))
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false })
    const get = (path: string, headers: http.OutgoingHttpHeaders = {}) =>
      new Promise<Reply>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
            const chunks: Buffer[] = []
            res.on('data', (c: Buffer) => chunks.push(c))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }))
          })
          .on('error', reject)
      })
    replies.push([await get('/big.bin'), await get('/mid.bin', { range: 'bytes=3-150002' }), await get('/todo.txt')])
    agent.destroy()
  }
  const [ref, ours] = replies
  t.true(ours[0].body.equals(BIG))
  t.is(ours[1].status, 206)
  t.true(ours[1].body.equals(MID.subarray(3, 150_003)))
  t.is(ours[2].body.toString(), '- groceries')
  t.deepEqual(ours.map(signature), ref.map(signature))
})
