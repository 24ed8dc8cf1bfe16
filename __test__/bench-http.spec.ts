import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

// The harness is CommonJS compiled by `npm run build`.
const require = createRequire(import.meta.url)
const { runHttpBench } = require('../dist/bench/http.js') as typeof import('../bench/http')
const { httpBenchCommand, parseSize } = require('../dist/bench/http-options.js') as typeof import('../bench/http-options')
const { HTTP_SERVERS } = require('../dist/bench/http-server.js') as typeof import('../bench/http-server')
type HttpBenchResult = import('../bench/http').HttpBenchResult

/** Loud, not silent: in the test's log and on stderr. */
function skipped(t: { log(...values: unknown[]): void }, what: string): void {
  t.log(`SKIPPED: ${what}`)
  console.error(`\n!!! bench:http smoke test SKIPPED a part: ${what}\n`)
}

test('bench:http smoke run: every server serves every file byte-exact, and wrk completes requests against each (counts only, no timing)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zc-bench-http-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const json = join(dir, 'quick.json')
  const log = console.log
  console.log = () => {} // the table goes to stdout; keep the test output clean
  try {
    await runHttpBench({ quick: true, verbose: false, json })
  } finally {
    console.log = log
  }
  const result = JSON.parse(readFileSync(json, 'utf8')) as HttpBenchResult
  t.deepEqual(result.options.sizes, [4096, 65536])
  const nginxMissing = result.skipped.find((s) => s.startsWith('nginx is not installed'))
  const wrkMissing = result.skipped.find((s) => s.startsWith('wrk is not installed'))
  const runtimeMissing = (name: string): string | undefined => result.skipped.find((s) => s.startsWith(`${name} cannot run here`))
  const expected = HTTP_SERVERS.map((s) => s.name).filter((s) => !(s === 'nginx' && nginxMissing) && !runtimeMissing(s))
  if (nginxMissing) skipped(t, nginxMissing)
  for (const name of ['bun', 'deno']) if (runtimeMissing(name)) skipped(t, runtimeMissing(name)!)
  t.deepEqual(
    result.checks.map((c) => c.server),
    expected,
    'every server was checked',
  )
  for (const c of result.checks) t.true(c.ok, `${c.server} served every file byte-exact: ${c.detail}`)

  if (wrkMissing) {
    skipped(t, wrkMissing)
    t.is(result.runs.length, 0)
    return
  }
  for (const server of expected) {
    for (const size of result.options.sizes) {
      const runs = result.runs.filter((r) => r.server === server && r.size === size)
      t.is(runs.length, 1, `${server} at ${size} bytes measured once`)
      for (const r of runs) {
        t.true(r.requests > 0, `${server} at ${size} bytes: wrk completed ${r.requests} requests`)
        // wrk prints bytes read with three significant digits or so ("1.04GB"): within 1 %.
        t.true(r.bodyBytes >= 0.99 * r.requests * size, `${server} at ${size} bytes: ${r.bodyBytes} body bytes for ${r.requests} responses`)
        t.is(r.errors, 0, `${server} at ${size} bytes: no socket errors or non-2xx responses`)
      }
    }
  }
  t.is(result.rows.length, expected.length * result.options.sizes.length)
})

test('bench:http options: sizes with units, and clear errors for bad values before anything runs', (t) => {
  t.is(parseSize('4096'), 4096)
  t.is(parseSize('64K'), 65536)
  t.is(parseSize('1MiB'), 1 << 20)
  t.is(parseSize('256m'), 256 << 20)
  const parse = (...args: string[]) => {
    const errors: string[] = []
    const cmd = httpBenchCommand()
      .exitOverride()
      .configureOutput({ writeErr: (s) => errors.push(s), writeOut: () => {} })
    try {
      cmd.parse(args, { from: 'user' })
    } catch {
      // commander's exit, turned into a throw by exitOverride
    }
    return { opts: cmd.opts(), error: errors.join('') }
  }
  t.deepEqual(parse('--sizes', '4K,1M', '--duration', '2', '--reps', '5', '--only', 'nginx,send').opts, {
    sizes: [4096, 1 << 20],
    duration: 2,
    reps: 5,
    only: ['nginx', 'send'],
  })
  t.regex(parse('--sizes', '4K,0').error, /expected a file size .* got '0'/)
  t.regex(parse('--sizes', '2G').error, /expected a file size from 1 byte to 1 GiB/)
  t.regex(parse('--duration', '0.3').error, /expected whole seconds from 1 to 600, got '0.3'/)
  t.regex(parse('--reps', '-1').error, /expected a count/)
  t.regex(
    parse('--only', 'nginx,apache').error,
    /unknown server 'apache' \(known: nginx, bun, deno, node-memory, respondWithFile, pipe, send, fastify-static, zc-fastify, koa-static, zc-koa, hono-static, zc-hono, serve-static, serveStatic\)/,
  )
})
