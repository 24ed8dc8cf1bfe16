/**
 * `npm run stress:http -- --responses 100000`: a seeded random stress of `respondWithFile` and
 * `serveStatic` on node:http, to catch hangs, crashes, leaked descriptors and wrong bytes.
 *
 * Raw client connections (several at once) send batches of 1–6 requests, pipelined in one
 * write or one at a time (keep-alive), for random files (0 B to 8 MiB) and ranges (satisfiable,
 * unsatisfiable, unknown units, several), GET and HEAD; the client sometimes reads late, and
 * sometimes resets the connection at a random byte. Each request tells the handler what to do
 * besides answering: nothing, `res.end()` or `res.write()`+`res.end(data)` at a random moment,
 * a timeout middleware's 503, an abort, a second call, status 204/304 set first, `res.cork()`,
 * a `Transfer-Encoding: chunked` header, an `onProgress` that throws, serveStatic, or
 * `compression()` in front (the client accepts gzip and br and decodes before checking).
 *
 * Checked: every response the client completes is parsed strictly and its status and bytes are
 * one of the outcomes its action allows (the file's window, or the handler's own answer); a
 * connection may end early only at a response whose action may break it (abort, a throwing
 * onProgress) or where the client reset it; every promise settles within its deadline; no
 * uncaught exception or unhandled rejection; and afterwards the process's descriptors are back
 * to the baseline, none left on the files. A failure prints the connection's seed. Exit 0 when
 * all passed; the last stdout line is a JSON summary. `npm test` runs a short run
 * (`__test__/http-stress.spec.ts`).
 * @module
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import zlib from 'node:zlib'

import { Command, InvalidArgumentError } from 'commander'
import compression from 'compression'
import parseRange from 'range-parser'

import { clearFileCache, respondWithFile } from '../index'
import { serveStatic } from '../src/static'
import { ResponseParser, type WireResponse } from './http-wire'
import { Rng } from './rng'

/** How long a connection may go without a byte, or a promise stay pending after its connection closed. */
const DEADLINE_MS = 30_000
const FILE_SIZES = [0, 1, 999, 16_384, 65_539, 300_001, (1 << 20) + 3, 3 << 20, 8 << 20]

type Action = 'plain' | 'static' | 'end' | 'write' | 'timeout' | 'abort' | 'twice' | 'status204' | 'status304' | 'cork' | 'chunked' | 'throw' | 'compress'
/** Actions by weight: those that break the connection are rarer, so keep-alive runs deep. */
const ACTIONS: readonly Action[] = Object.entries({
  plain: 6,
  compress: 2,
  static: 4,
  end: 2,
  write: 2,
  timeout: 2,
  abort: 2,
  twice: 2,
  status204: 1,
  status304: 1,
  cork: 2,
  chunked: 1,
  throw: 1,
} satisfies Record<Action, number>).flatMap(([action, weight]) => Array<Action>(weight).fill(action as Action))

/** The file's bytes, from its index (the same on both sides). */
function fileBytes(index: number): Buffer {
  const out = Buffer.allocUnsafe(FILE_SIZES[index])
  let x = index * 2654435761 + 1
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

interface Planned {
  action: Action
  file: number
  head: boolean
  range: string | undefined
  delayMs: number
}

/** An outcome a response may have: its status, and its body (or `null` for any). */
type Outcome = { status: number; body: Buffer; what: string }

/** What the plain file response to `p` is: status and body, as send and RFC 9110 have it. */
function fileOutcome(p: Planned, bytes: Buffer, presetStatus = 200): Outcome {
  const empty = Buffer.alloc(0)
  if (presetStatus !== 200) return { status: presetStatus, body: empty, what: `${presetStatus}` }
  let status = 200
  let body = bytes
  // Ranges as send and respondWithFile read them: range-parser, bytes only, one range or none.
  if (p.range !== undefined && /^ *bytes=/.test(p.range)) {
    const ranges = parseRange(bytes.length, p.range, { combine: true })
    if (ranges === -1) {
      status = 416
      body = empty
    } else if (ranges !== -2 && ranges.length === 1) {
      status = 206
      body = bytes.subarray(ranges[0].start, ranges[0].end + 1)
    }
  }
  return { status, body: p.head ? empty : body, what: `file ${status}` }
}

/** Every outcome the response to `p` may have. */
function allowedOutcomes(p: Planned): Outcome[] {
  const bytes = fileBytes(p.file)
  const text = (status: number, s: string): Outcome => ({ status, body: p.head ? Buffer.alloc(0) : Buffer.from(s), what: `handler's ${status}` })
  switch (p.action) {
    case 'status204':
      return [fileOutcome(p, bytes, 204)]
    case 'status304':
      return [fileOutcome(p, bytes, 304)]
    case 'end':
      return [fileOutcome(p, bytes), text(200, '')]
    case 'write':
      return [fileOutcome(p, bytes), text(200, 'xy')]
    case 'timeout':
      return [fileOutcome(p, bytes), text(503, 'timeout')]
    case 'abort':
      return [fileOutcome(p, bytes), text(500, 'aborted')]
    default:
      return [fileOutcome(p, bytes)]
  }
}

/** Actions whose response may break the connection (the server destroys it mid-body). */
const MAY_BREAK: ReadonlySet<Action> = new Set(['abort', 'throw'])

function plan(rng: Rng): Planned {
  const file = rng.int(FILE_SIZES.length)
  const size = FILE_SIZES[file]
  const head = rng.chance(0.08)
  let range: string | undefined
  const r = rng.int(10)
  if (r < 3 && size > 0) {
    const a = rng.int(size)
    range = `bytes=${a}-${rng.chance(0.3) ? '' : a + rng.int(size - a + 3)}`
  } else if (r === 3) range = `bytes=${size + rng.int(10)}-`
  else if (r === 4) range = rng.pick(['items=0-5', 'foo=abc', `bytes=-${1 + rng.int(size + 2)}`, 'bytes=0-1,5-6', 'bytes=x-y'])
  return { action: rng.pick(ACTIONS), file, head, range, delayMs: rng.int(4) === 0 ? 0 : rng.int(30) }
}

function describe(p: Planned): string {
  return `${p.head ? 'HEAD ' : ''}${p.action} file ${p.file}${p.range === undefined ? '' : ` ${p.range}`} after ${p.delayMs} ms`
}

function requestText(p: Planned): string {
  let s = `${p.head ? 'HEAD' : 'GET'} /${p.action === 'static' ? 's/' : ''}${p.file}?a=${p.action}&d=${p.delayMs} HTTP/1.1\r\nHost: x\r\n`
  if (p.range !== undefined) s += `Range: ${p.range}\r\n`
  if (p.action === 'compress') s += 'Accept-Encoding: gzip, br\r\n'
  return s + '\r\n'
}

interface Counters {
  responses: number
  /** Responses that came content-encoded (compression()) and were decoded before the check. */
  compressed: number
  bytesChecked: number
  connections: number
  resets: number
  broken: number
  outcomes: Record<string, number>
  failures: string[]
}

/** The server: answers each request as its action says; returns the settled/pending bookkeeping. */
function makeServer(dir: string, counters: Counters): { server: http.Server; pending: Map<Promise<unknown>, string> } {
  const pending = new Map<Promise<unknown>, string>()
  const staticFiles = serveStatic(dir)
  const compressor = compression()
  let current = ''
  /** Per connection, what to settle when it closes (one listener each). */
  const closing = new WeakMap<net.Socket, (() => void)[]>()
  const track = (p: Promise<unknown>): void => {
    const settled = p.then(
      () => void (counters.outcomes.ok = (counters.outcomes.ok ?? 0) + 1),
      (e: NodeJS.ErrnoException) => void (counters.outcomes[e.code ?? e.message] = (counters.outcomes[e.code ?? e.message] ?? 0) + 1),
    )
    pending.set(settled, current)
    void settled.finally(() => pending.delete(settled))
  }
  const server = http.createServer((req, res) => {
    current = `${req.method} ${req.url} ${req.headers.range ?? ''}`
    const url = new URL(req.url!, 'http://x')
    const action = url.searchParams.get('a') as Action
    const delay = Number(url.searchParams.get('d'))
    const path = join(dir, url.pathname.replace(/^\/(s\/)?/, ''))
    const range = req.headers.range
    const later = (fn: () => void): void => void setTimeout(fn, delay)
    let chunked = action === 'chunked'
    switch (action) {
      case 'static':
        track(
          new Promise<void>((resolve, reject) => {
            // serveStatic returns nothing to wait on: its response is done when it closes, or when
            // the connection does (node gives a queued response no 'close').
            res.once('close', resolve)
            closing.get(req.socket)?.push(resolve)
            req.url = url.pathname.slice(2)
            // As finalhandler answers what send passes on (416 with its Content-Range), without a body.
            staticFiles(req, res, (err) => {
              const e = err as { statusCode?: number; headers?: Record<string, string> } | undefined
              if (res.headersSent) return void (res.destroy(), reject(err))
              res.statusCode = e?.statusCode ?? 404
              for (const [k, v] of Object.entries(e?.headers ?? {})) res.setHeader(k, v)
              res.setHeader('content-length', 0)
              res.end()
              resolve()
            })
          }),
        )
        return
      case 'status204':
      case 'status304':
        res.statusCode = action === 'status204' ? 204 : 304
        break
      case 'cork':
        res.cork()
        chunked = delay % 2 === 1 // half of them on the streamed path
        break
      case 'end':
        later(() => void (res.writableEnded || res.end()))
        break
      case 'write':
        later(() => {
          if (res.writableEnded || res.destroyed) return
          res.write('x', () => {})
          res.end('y')
        })
        break
      case 'timeout':
        later(() => {
          if (res.headersSent) return
          res.statusCode = 503
          res.end('timeout')
        })
        break
      case 'abort': {
        const ac = new AbortController()
        // A delay divisible by 3 (0 included) aborts right after the call returns, while the
        // file is still being prepared: an AbortError whatever the machine's speed (small cached
        // files are answered within a millisecond, before any timer could abort them).
        const now = delay % 3 === 0
        if (!now) later(() => ac.abort())
        track(
          respondWithFile(res, path, undefined, { range, signal: ac.signal }).catch((e: NodeJS.ErrnoException) => {
            if (!res.headersSent && !res.destroyed) {
              res.statusCode = 500
              res.end('aborted')
            }
            throw e
          }),
        )
        if (now) ac.abort()
        return
      }
      case 'throw':
        track(
          respondWithFile(res, path, undefined, {
            range,
            onProgress: () => {
              throw new Error('onProgress threw')
            },
          }),
        )
        return
      case 'compress':
        // Behind compression(), which compresses text at or above its 1 KiB threshold.
        compressor(req as never, res as never, () => track(respondWithFile(res, path, { 'content-type': 'text/plain' }, { range })))
        return
      case 'twice':
        track(respondWithFile(res, path, undefined, { range }))
        break
      default:
    }
    track(respondWithFile(res, path, chunked ? { 'transfer-encoding': 'chunked' } : undefined, { range }))
  })
  server.on('connection', (socket: net.Socket) => {
    const fns: (() => void)[] = []
    closing.set(socket, fns)
    socket.once('close', () => fns.forEach((f) => f()))
  })
  return { server, pending }
}

/** The response with its body decoded by its Content-Encoding (compression's gzip or br). */
function decoded(r: WireResponse): WireResponse {
  const coding = r.headers['content-encoding']
  if (coding === 'gzip') return { ...r, body: zlib.gunzipSync(r.body) }
  if (coding === 'br') return { ...r, body: zlib.brotliDecompressSync(r.body) }
  if (coding !== undefined) throw new Error(`Content-Encoding ${coding}`)
  return r
}

/**
 * One request through `compression()` for a compressible window (file 4, 64 KiB + 3, whole):
 * the run checks the compressed path every time, not only when its random plans reach it.
 */
async function compressedCheck(port: number, counters: Counters): Promise<void> {
  const expected = fileBytes(4)
  const r = await new Promise<{ coding: string | undefined; body: Buffer }>((resolve, reject) => {
    const req = http.get({ port, host: '127.0.0.1', path: '/4?a=compress&d=0', headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ coding: res.headers['content-encoding'], body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.setTimeout(DEADLINE_MS, () => req.destroy(new Error(`compressed check: no answer in ${DEADLINE_MS} ms`)))
    req.on('error', reject)
  }).catch((e: Error) => ({ coding: undefined, body: Buffer.from(e.message) }))
  if (r.coding !== 'gzip') return void counters.failures.push(`compressed check: Content-Encoding ${r.coding}, ${r.body.length} bytes`)
  if (!zlib.gunzipSync(r.body).equals(expected)) return void counters.failures.push('compressed check: the decoded body is not the file')
  counters.compressed++
  counters.bytesChecked += expected.length
}

/** One client connection: `batches` batches of requests; checks every complete response. */
async function connection(port: number, seed: number, batches: number, counters: Counters): Promise<void> {
  const rng = new Rng(seed)
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  counters.connections++
  const fail = (msg: string): void => void counters.failures.push(`connection --replay ${seed}:${batches}: ${msg}`)
  let previousMayBreak = false
  try {
    for (let b = 0; b < batches && !socket.destroyed; b++) {
      const planned = Array.from({ length: 1 + rng.int(6) }, () => plan(rng))
      const parser = new ResponseParser(planned.map((p) => p.head))
      const pipelined = rng.chance(0.6)
      const resetAt = rng.chance(0.08) ? rng.int(FILE_SIZES[planned[0].file] + 2000) : -1
      const lateMs = rng.chance(0.25) ? rng.int(60) : 0
      let received = 0
      let reset = false
      let error: Error | null = null
      const outcome = await new Promise<'done' | 'closed' | 'hang'>((resolve) => {
        let timer: NodeJS.Timeout
        const arm = (): void => {
          clearTimeout(timer)
          timer = setTimeout(() => finish('hang'), DEADLINE_MS)
        }
        const finish = (how: 'done' | 'closed' | 'hang'): void => {
          clearTimeout(timer)
          socket.off('data', onData)
          socket.off('close', onClose)
          resolve(how)
        }
        const onData = (chunk: Buffer): void => {
          arm()
          received += chunk.length
          try {
            const n = parser.push(chunk)
            if (!pipelined && n < planned.length && n === parser.done.length && sent === n) send()
            if (n === planned.length) return finish('done')
          } catch (e) {
            error = e as Error
            socket.destroy()
            return finish('closed')
          }
          if (resetAt >= 0 && received >= resetAt) {
            reset = true
            socket.resetAndDestroy()
            finish('closed')
          }
        }
        const onClose = (): void => finish('closed')
        let sent = 0
        const send = (): void => {
          const n = pipelined ? planned.length : sent + 1
          socket.write(planned.slice(sent, n).map(requestText).join(''))
          sent = n
        }
        socket.on('data', onData)
        socket.on('close', onClose)
        arm()
        if (lateMs > 0) {
          socket.pause()
          setTimeout(() => socket.resume(), lateMs)
        }
        send()
      })
      const done: WireResponse[] = parser.done
      if (error) fail(`batch ${b}: ${(error as Error).message} after ${done.length} responses (${planned.map((p) => p.action).join(',')})`)
      if (outcome === 'hang')
        return fail(
          `batch ${b}: no byte for ${DEADLINE_MS} ms after ${done.length}/${planned.length} responses (${planned.map((p) => `${p.action}:${p.file}`).join(',')})`,
        )
      for (let i = 0; i < done.length; i++) {
        let got: WireResponse
        try {
          got = decoded(done[i])
        } catch (e) {
          fail(`batch ${b} response ${i} (${describe(planned[i])}): ${(e as Error).message}`)
          continue
        }
        if (got !== done[i]) counters.compressed++
        const allowed = allowedOutcomes(planned[i])
        if (!allowed.some((o) => o.status === got.status && o.body.equals(got.body)))
          fail(
            `batch ${b} response ${i} (${planned[i].action} file ${planned[i].file} range ${planned[i].range} head ${planned[i].head}): status ${got.status}, ${got.body.length} bytes; allowed ${allowed.map((o) => `${o.what} (${o.body.length} B)`).join(' or ')}`,
          )
        else counters.bytesChecked += got.body.length
      }
      counters.responses += done.length
      const mayBreak = previousMayBreak
      previousMayBreak = planned.some((p) => MAY_BREAK.has(p.action))
      if (outcome === 'closed' && !error) {
        if (reset) counters.resets++
        // A response that may break the connection can do so after all of its bytes went, so
        // while the client already sends its next batch.
        else if (mayBreak || planned.slice(0, done.length + 1).some((p) => MAY_BREAK.has(p.action))) counters.broken++
        else fail(`batch ${b}: the connection closed after ${done.length}/${planned.length} responses (${planned.map(describe).join(', ')})`)
        return
      }
    }
  } finally {
    socket.destroy()
  }
}

function openDescriptors(): { all: number; files: number } {
  // The descriptor cache's idle descriptors are not leaks: closed first. One still used by a
  // response stays open and counts.
  clearFileCache()
  let all = 0
  let files = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    all++
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes('zc-http-stress-')) files++
    } catch {
      // closed meanwhile
    }
  }
  return { all, files }
}

/** `--replay`: one connection's seed and batch count, from a failure message. */
let replay: { seed: number; batches: number } | null = null

/** Runs the stress; returns the summary. */
export async function runHttpStress(opts: { responses: number; seed: number; concurrency: number; log?: (s: string) => void }): Promise<
  Counters & {
    seed: number
    descriptors: { baseline: number; after: number; onFiles: number }
    uncaught: number
    pendingAfterDeadline: number
    seconds: number
  }
> {
  const started = Date.now()
  const dir = mkdtempSync(join(tmpdir(), 'zc-http-stress-'))
  FILE_SIZES.forEach((_, i) => writeFileSync(join(dir, String(i)), fileBytes(i)))
  const counters: Counters = { responses: 0, compressed: 0, bytesChecked: 0, connections: 0, resets: 0, broken: 0, outcomes: {}, failures: [] }
  let uncaught = 0
  const onUncaught = (e: unknown): void => {
    uncaught++
    counters.failures.push(`uncaught: ${(e as Error)?.stack ?? String(e)}`)
  }
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
  // A listener leak (MaxListenersExceededWarning) or any other warning is a failure too.
  const onWarning = (w: Error): void => void counters.failures.push(`warning: ${w.name}: ${w.message}`)
  process.on('warning', onWarning)
  const { server, pending } = makeServer(dir, counters)
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1')
  await new Promise((r) => server.once('listening', r))
  const port = (server.address() as net.AddressInfo).port
  // Warm up (the engine's ring and threads start at first use), then take the baseline.
  await connection(port, 1, 1, { ...counters, outcomes: {}, failures: [] })
  await compressedCheck(port, counters)
  await new Promise((r) => setTimeout(r, 200))
  const baseline = openDescriptors().all
  const seeds = new Rng(opts.seed)
  let lastLog = Date.now()
  const worker = async (): Promise<void> => {
    if (replay) return connection(port, replay.seed, replay.batches, counters)
    while (counters.responses < opts.responses && counters.failures.length < 20) {
      await connection(port, seeds.next(), 1 + seeds.int(8), counters)
      if (opts.log && Date.now() - lastLog > 10_000) {
        lastLog = Date.now()
        opts.log(
          `${counters.responses} responses, ${counters.connections} connections, ${counters.failures.length} failures, ${Math.round((Date.now() - started) / 1000)} s`,
        )
      }
    }
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker))
  // Again, now that the files are older than the cache's settle time (kept bytes, if any).
  await compressedCheck(port, counters)
  server.closeAllConnections()
  const deadline = Date.now() + DEADLINE_MS
  while (pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  const pendingAfterDeadline = pending.size
  if (pendingAfterDeadline > 0)
    counters.failures.push(
      `${pendingAfterDeadline} respondWithFile promises still pending ${DEADLINE_MS} ms after every connection closed: ${[...pending.values()].join('; ')}`,
    )
  let after = openDescriptors()
  for (let i = 0; i < 100 && (after.all > baseline || after.files > 0); i++) {
    await new Promise((r) => setTimeout(r, 50))
    after = openDescriptors()
  }
  if (after.files > 0) counters.failures.push(`${after.files} descriptors still open on the files`)
  if (after.all > baseline) counters.failures.push(`${after.all} descriptors open, ${baseline} at the start`)
  await new Promise<void>((r) => server.close(() => r()))
  process.off('uncaughtException', onUncaught)
  process.off('unhandledRejection', onUncaught)
  process.off('warning', onWarning)
  rmSync(dir, { recursive: true, force: true })
  return {
    seed: opts.seed,
    ...counters,
    descriptors: { baseline, after: after.all, onFiles: after.files },
    uncaught,
    pendingAfterDeadline,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  }
}

function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer')
  return n
}

if (require.main === module) {
  const program = new Command()
    .name('http-stress')
    .description('Seeded random stress of respondWithFile and serveStatic over node:http')
    .option('--responses <n>', 'responses to complete', positiveInt, 2000)
    .option('--seed <n>', 'seed (printed; replay a failure with it)', positiveInt, 1 + Math.floor(Math.random() * 2 ** 31))
    .option('--concurrency <n>', 'client connections at once', positiveInt, 6)
    .option('--replay <seed:batches>', 'run one connection of a failure message again')
    .parse()
  const o = program.opts<{ responses: number; seed: number; concurrency: number; replay?: string }>()
  if (o.replay) {
    const [seed, batches] = o.replay.split(':').map(Number)
    o.responses = 1
    o.concurrency = 1
    replay = { seed, batches }
  }
  console.error(`http-stress: seed ${o.seed}, ${o.responses} responses, ${o.concurrency} connections at once`)
  runHttpStress({ ...o, log: (s) => console.error(s) }).then(
    (r) => {
      for (const f of r.failures) console.error(`FAIL ${f}`)
      const { failures, ...summary } = r
      console.log(JSON.stringify({ ...summary, failures: failures.length }))
      process.exitCode = failures.length === 0 ? 0 : 1
    },
    (e) => {
      console.error(e)
      process.exitCode = 2
    },
  )
}
