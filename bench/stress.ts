/**
 * `npm run stress -- --sessions 20000`: seeded, randomized API-level sessions against real
 * loopback peers, to catch hangs, crashes and wrong bytes. Each session adopts or opens a
 * socket (mode auto/always/never) and issues 2–12 random operations: writes of 1 B–4 MiB (odd
 * offsets, shared memory), `sendFile` by path, fd or `FileHandle` (the caller's descriptor
 * closed right after the call) with random windows, empty files and bad ranges, aborts at random
 * moments, `end()` (sometimes in the middle), and `destroy()` at a random moment; the peer reads
 * fast, slowly (pauses), or resets at a random byte. Several sessions run at once, a quarter of
 * them in a worker thread.
 *
 * Checked for every session: every promise settles within its deadline, no unhandled
 * rejection, and the peer received exactly the bytes of the operations that succeeded, in
 * order (an aborted write all or nothing, an aborted file a prefix) up to the first failure,
 * after which it may only have a prefix of what followed (the checker: `./stress-check.ts`).
 * A failure prints the session's seed; `--seed <that> --sessions 1` replays it. Exit 0 when
 * every session passed. `npm test` runs a short run (`__test__/stress.spec.ts`).
 */
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

import { Command, InvalidArgumentError } from 'commander'

import { ZeroCopySocket, type ZeroCopyMode } from '../index'
import { Rng } from './rng'
import { matches, type Op } from './stress-check'

/** How long any one promise may take before the session counts as hung. */
const DEADLINE_MS = 30_000
const FILE_SIZES = [0, 1, 777, 65_539, (1 << 20) + 3, 4 << 20]
const POOL_BYTES = 9 << 20

function bytesFrom(seed: number, length: number): Buffer {
  const rng = new Rng(seed)
  const out = Buffer.allocUnsafe(length)
  for (let i = 0; i + 4 <= length; i += 4) out.writeUInt32LE(rng.next(), i)
  for (let i = length & ~3; i < length; i++) out[i] = rng.next() & 0xff
  return out
}

/** Rejects if `p` takes longer than the deadline: that is a hang. */
function deadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`HANG: ${what} did not settle within ${DEADLINE_MS} ms`)), DEADLINE_MS)
    }),
  ])
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** A peer that records every byte; slow peers pause now and then, some reset at a random byte. */
async function peer(rng: Rng): Promise<{ port: number; received: Promise<{ got: Buffer; reset: boolean }>; close(): void }> {
  const slow = rng.chance(0.3)
  const resetAt = rng.chance(0.06) ? rng.int(6 << 20) : Infinity
  const pauses = new Rng(rng.next())
  const server = net.createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const received = new Promise<{ got: Buffer; reset: boolean }>((resolve) => {
    server.once('connection', (s) => {
      server.close()
      const chunks: Buffer[] = []
      let n = 0
      let reset = false
      s.on('data', (c: Buffer) => {
        chunks.push(c)
        n += c.length
        if (n > resetAt && !reset) {
          reset = true
          s.resetAndDestroy()
        } else if (slow && pauses.chance(0.2)) {
          s.pause()
          setTimeout(() => s.resume(), 1 + pauses.int(15))
        }
      })
      s.on('error', () => {})
      s.on('close', () => resolve({ got: Buffer.concat(chunks), reset }))
    })
  })
  return { port: (server.address() as net.AddressInfo).port, received, close: () => server.close() }
}

interface Context {
  dir: string
  files: { path: string; data: Buffer }[]
  pool: Buffer
  /** How operations settled, by code (`ok` when they resolved). */
  outcomes: Record<string, number>
  /** Bytes the peers received and were checked. */
  bytes: number
}

function setup(): Context {
  const dir = mkdtempSync(join(tmpdir(), 'zc-stress-'))
  const files = FILE_SIZES.map((size, i) => {
    const path = join(dir, `f${i}`)
    const data = bytesFrom(1000 + i, size)
    writeFileSync(path, data)
    return { path, data }
  })
  return { dir, files, pool: bytesFrom(7, POOL_BYTES), outcomes: {}, bytes: 0 }
}

function writeSize(rng: Rng): number {
  switch (rng.int(5)) {
    case 0:
      return 1 + rng.int(512)
    case 1:
      return 16384 - 64 + rng.int(128)
    case 2:
      return 1 + rng.int(70_000)
    case 3:
      return 70_000 + rng.int(1 << 20)
    default:
      return (1 << 20) + rng.int(3 << 20)
  }
}

/** One session; resolves with `null` when it passed, or what went wrong. */
export async function session(seed: number, ctx: Context): Promise<string | null> {
  const rng = new Rng(seed)
  const mode = rng.pick<ZeroCopyMode>(['auto', 'always', 'never'])
  const p = await peer(rng)
  const how = rng.int(3)
  let zs: ZeroCopySocket
  if (how === 0) zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port: p.port, zeroCopy: mode })
  else {
    const s = net.connect({ port: p.port, host: '127.0.0.1' })
    s.on('error', () => {})
    if (how === 2) await new Promise((r) => s.once('connect', r))
    zs = ZeroCopySocket.from(s, { zeroCopy: mode })
  }
  // A socket destroyed before its connect() was even issued never reaches the peer.
  let connected = !zs.socket.connecting
  zs.socket.once('connect', () => (connected = true))
  const count = 2 + rng.int(11)
  const endAt = rng.chance(0.85) ? (rng.chance(0.15) ? rng.int(count) : count) : -1
  const destroyAt = rng.chance(0.1) ? rng.int(count + 1) : -1
  const ops: Op[] = []
  const settled: Promise<void>[] = []
  let destroyed = false
  let ended = false
  let ending: Promise<void> | null = null
  const track = (op: Op, promise: Promise<unknown>, abortable: 'all-or-none' | 'prefix'): void => {
    // Issued after end() or destroy(): it must be refused (with whatever code), sending nothing.
    const late = ended || destroyed
    op.late = late
    ops.push(op)
    settled.push(
      deadline(promise, op.label).then(
        () => {
          op.outcome = 'ok'
          if (late) op.expect = 'none' // resolving is wrong; the bytes check then fails too
          ctx.outcomes.ok = (ctx.outcomes.ok ?? 0) + 1
        },
        (e: { code?: string; message?: string }) => {
          if (e.message?.startsWith('HANG')) throw e
          op.outcome = e.code ?? String(e)
          ctx.outcomes[op.outcome] = (ctx.outcomes[op.outcome] ?? 0) + 1
          if (late) op.expect = 'none'
          else if (op.outcome === 'ABORT_ERR') op.expect = abortable
          else if (op.bad || op.outcome === 'ERR_STREAM_WRITE_AFTER_END') op.expect = 'none'
          else op.fatal = true
        },
      ),
    )
  }
  for (let i = 0; i < count; i++) {
    if (i === destroyAt) {
      const delay = rng.int(4)
      setTimeout(() => ((destroyed = true), zs.destroy()), delay)
    }
    if (i === endAt) {
      ended = true
      ending = zs.end()
      ending.catch(() => {}) // looked at below, after the operations settled
    }
    if (rng.chance(0.2)) await Promise.allSettled(settled)
    const ac = rng.chance(0.15) ? new AbortController() : undefined
    const abortHow = rng.int(3)
    const kind = rng.int(20)
    if (kind === 18 && !ended && !destroyed && rng.chance(0.5)) {
      // Hand the socket back, write on it directly, adopt it again: the bytes stay in order.
      const marker = bytesFrom(seed + i, 1 + rng.int(3000))
      const op: Op = { label: `op ${i}: release() + socket.write ${marker.length} B + from()`, bytes: marker, outcome: '', expect: 'exact', fatal: false }
      const handedBack = zs.release().then(
        (socket) =>
          new Promise<void>((resolve, reject) => {
            socket.write(marker, (err) => (err ? reject(err) : resolve()))
            // Adopted at once: the engine waits for the socket's own write to drain first.
            zs = ZeroCopySocket.from(socket, { zeroCopy: mode })
          }),
      )
      track(op, handedBack, 'all-or-none')
      await handedBack.catch(() => {}) // later operations go to the new wrapper
      continue
    }
    if (kind < 12) {
      const size = writeSize(rng)
      const at = rng.int(POOL_BYTES - size)
      const bytes = rng.chance(0.5) ? ctx.pool.subarray(at, at + size) : Buffer.from(ctx.pool.subarray(at, at + size))
      const op: Op = { label: `op ${i}: write ${size} B`, bytes, outcome: '', expect: 'exact', fatal: false, abortable: ac !== undefined }
      track(op, zs.write(bytes, ac ? { signal: ac.signal } : undefined), 'all-or-none')
    } else {
      const f = rng.pick(ctx.files)
      const bad = kind === 19
      const offset = bad ? f.data.length + 1 : rng.int(f.data.length + 1)
      const length = rng.chance(0.3) ? undefined : rng.int(f.data.length - Math.min(offset, f.data.length) + 1)
      const by = rng.int(3)
      const bytes = bad ? new Uint8Array(0) : f.data.subarray(offset, length === undefined ? undefined : offset + length)
      const op: Op = {
        label: `op ${i}: sendFile(${['path', 'fd', 'FileHandle'][by]}) ${f.data.length} B [${offset}, +${length ?? 'rest'})`,
        bytes,
        outcome: '',
        expect: 'exact',
        fatal: false,
        abortable: ac !== undefined,
        bad,
      }
      const options = { offset, length, signal: ac?.signal }
      if (by === 0) track(op, zs.sendFile(f.path, options), 'prefix')
      else if (by === 1) {
        const fd = openSync(f.path, 'r')
        track(op, zs.sendFile(fd, options), 'prefix')
        closeSync(fd) // the caller may close it at once
      } else {
        const handle = await open(f.path, 'r')
        track(op, zs.sendFile(handle, options), 'prefix')
        await handle.close()
      }
    }
    if (ac) {
      if (abortHow === 0) ac.abort()
      else if (abortHow === 1) setImmediate(() => ac.abort())
      else setTimeout(() => ac.abort(), rng.int(5))
    }
  }
  if (endAt === count) {
    ended = true
    ending = zs.end()
    ending.catch(() => {}) // looked at below
  }
  const endOutcome = ending
    ? deadline(ending, 'end()').then(
        () => 'ok',
        (e: { code?: string; message?: string }) => (e.message?.startsWith('HANG') ? Promise.reject(e) : (e.code ?? String(e))),
      )
    : Promise.resolve('none')
  let endCode: string
  try {
    await Promise.all(settled)
    endCode = await endOutcome
  } catch (e) {
    zs.destroy()
    p.close()
    return `seed ${seed}: ${(e as Error).message}; mode ${mode}; ops: ${ops.map((o) => `${o.label} → ${o.outcome || 'pending'}`).join('; ')}`
  }
  if (endCode !== 'ok') zs.destroy()
  else await new Promise((r) => setImmediate(r))
  zs.destroy()
  if (!connected) p.close()
  const { got, reset } = await deadline(connected ? p.received : Promise.resolve({ got: Buffer.alloc(0), reset: false }), 'peer close').catch((e: Error) => {
    throw new Error(`${e.message}; mode ${mode}; destroyed ${destroyed}; end ${endCode}; ops: ${ops.map((o) => `${o.label} → ${o.outcome}`).join('; ')}`)
  })
  const cut = reset || destroyed || endCode !== 'ok'
  ctx.bytes += got.length
  const broken = reset || destroyed // only these may fail operations or end()
  const wrong = ops.find((o) => !allowed(o, broken)) ?? (ending && !broken && endCode !== 'ok' ? { label: 'end()', outcome: endCode } : undefined)
  const why = wrong ? `${wrong.label} settled ${wrong.outcome}, which nothing in this session explains` : matches(got, ops, cut)
  return why === null
    ? null
    : `seed ${seed}: ${why}${whereFrom(got, why, ops)}; mode ${mode}; reset ${reset}; destroyed ${destroyed}; end ${endCode}; ops: ${ops.map((o) => `${o.label} → ${o.outcome}`).join('; ')}`
}

/**
 * For a mismatch `at byte N`: where the 64 bytes found there come from, if from any operation
 * of the session (a wrong offset, an aborted operation's bytes, two interleaved ones).
 */
function whereFrom(got: Buffer, why: string, ops: Op[]): string {
  const at = /at byte (\d+)/.exec(why)
  if (!at) return ''
  const pos = Number(at[1])
  const needle = got.subarray(pos, pos + 64)
  if (needle.length < 16) return ` (${got.length - pos} bytes left there)`
  const found = ops.flatMap((o) => {
    const i = Buffer.from(o.bytes.buffer, o.bytes.byteOffset, o.bytes.byteLength).indexOf(needle)
    return i < 0 ? [] : [`${o.label} at +${i}`]
  })
  return ` (the bytes there are ${found.length ? found.join(' and ') : 'from no operation of this session'}; ${got.length} received)`
}

/** Whether `op` may have settled as it did, given whether the session broke the connection. */
function allowed(op: Op, broken: boolean): boolean {
  // ERR_SOCKET_CLOSED, ERR_ZC_SOCKET_RELEASED: a release() whose re-adoption found the socket gone.
  // ERR_STREAM_WRITE_AFTER_END: node:net ends a socket by itself after the peer's FIN or reset.
  const failure = ['ERR_STREAM_DESTROYED', 'ECONNRESET', 'EPIPE', 'ERR_SOCKET_CLOSED', 'ERR_ZC_SOCKET_RELEASED', 'ERR_STREAM_WRITE_AFTER_END']
  if (op.late) return op.outcome !== 'ok' // refused: after end() (WRITE_AFTER_END, EPIPE after the peer's FIN) or destroy()
  if (op.outcome === 'ABORT_ERR') return op.abortable === true
  if (op.bad) return op.outcome === 'ERR_OUT_OF_RANGE' || (broken && failure.includes(op.outcome))
  if (op.outcome === 'ok') return true
  return broken && failure.includes(op.outcome)
}

interface Summary {
  sessions: number
  failures: string[]
  outcomes: Record<string, number>
  bytes: number
  unhandled: string[]
}

/** Runs the sessions with `seeds` on this thread, `concurrency` at a time. */
async function runAll(seeds: number[], concurrency: number): Promise<Summary> {
  const ctx = setup()
  const unhandled: string[] = []
  const onUnhandled = (e: unknown): void => {
    unhandled.push(String((e as { code?: string })?.code ?? e) + (process.env.STRESS_STACKS ? ` ${(e as Error)?.stack}` : ''))
  }
  process.on('unhandledRejection', onUnhandled)
  const failures: string[] = []
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < seeds.length) {
      const seed = seeds[next++]
      const why = await session(seed, ctx).catch((e: Error) => `seed ${seed}: threw ${e.stack ?? e}`)
      if (why !== null) failures.push(why)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane))
  await sleep(50)
  process.off('unhandledRejection', onUnhandled)
  rmSync(ctx.dir, { recursive: true, force: true })
  return { sessions: seeds.length, failures, outcomes: ctx.outcomes, bytes: ctx.bytes, unhandled }
}

async function main(): Promise<void> {
  const positive = (v: string): number => {
    const n = Number(v)
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer')
    return n
  }
  const opts = new Command('stress')
    .description('seeded randomized sessions of ZeroCopySocket operations against loopback peers')
    .option('--sessions <n>', 'number of sessions', positive, 300)
    .option('--seed <n>', 'seed of the first session (default: random, printed)', positive)
    .option('--concurrency <n>', 'sessions at once per thread', positive, 4)
    .option('--no-worker', 'run every session on the main thread')
    .parse()
    .opts<{ sessions: number; seed?: number; concurrency: number; worker: boolean }>()
  const base = opts.seed ?? 1 + Math.floor(Math.random() * 2 ** 31)
  const seeds = Array.from({ length: opts.sessions }, (_, i) => (base + i * 0x9e3779b1) >>> 0 || 1)
  const inWorker = opts.worker && seeds.length > 1 ? seeds.filter((_, i) => i % 4 === 3) : []
  const onMain = seeds.filter((s) => !inWorker.includes(s))
  // Warm up first: this thread's engine (ring, eventfd) lives as long as the process.
  const warm = await peer(new Rng(1))
  const zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port: warm.port })
  await zs.write(Buffer.from('warm-up'))
  await zs.end()
  zs.destroy()
  await warm.received
  const started = Date.now()
  const fdsBefore = readdirSync('/proc/self/fd').length
  const progress = setInterval(() => process.stderr.write('.'), 5000)
  const fromWorker =
    inWorker.length === 0
      ? Promise.resolve<Summary>({ sessions: 0, failures: [], outcomes: {}, bytes: 0, unhandled: [] })
      : new Promise<Summary>((resolve, reject) => {
          const w = new Worker(__filename, { workerData: { seeds: inWorker, concurrency: opts.concurrency } })
          w.once('message', resolve)
          w.once('error', reject)
        })
  const [a, b] = await Promise.all([runAll(onMain, opts.concurrency), fromWorker])
  clearInterval(progress)
  const failures = [...a.failures, ...b.failures]
  const unhandled = [...a.unhandled, ...b.unhandled]
  const result = {
    seed: base,
    sessions: a.sessions + b.sessions,
    inWorker: b.sessions,
    seconds: (Date.now() - started) / 1000,
    failures: failures.length,
    unhandled: unhandled.length,
    bytesChecked: a.bytes + b.bytes,
    outcomes: Object.fromEntries(Object.keys({ ...a.outcomes, ...b.outcomes }).map((k) => [k, (a.outcomes[k] ?? 0) + (b.outcomes[k] ?? 0)])),
    fdsBefore,
    fdsAfter: readdirSync('/proc/self/fd').length,
  }
  for (const f of failures.slice(0, 5)) console.error(`FAILED ${f}\n  replay: npm run stress -- --sessions 1 --no-worker --seed ${f.match(/^seed (\d+)/)?.[1]}`)
  if (unhandled.length > 0) console.error(`unhandled rejections: ${unhandled.slice(0, 5).join(', ')}`)
  console.log(JSON.stringify(result))
  const leaked = result.fdsAfter > result.fdsBefore
  if (leaked) console.error(`descriptors leaked: ${result.fdsBefore} before, ${result.fdsAfter} after`)
  process.exit(failures.length === 0 && unhandled.length === 0 && !leaked ? 0 : 1)
}

if (isMainThread) {
  main().catch((e: Error) => {
    console.error(`stress: ${e.message}`)
    process.exit(1)
  })
} else {
  const { seeds, concurrency } = workerData as { seeds: number[]; concurrency: number }
  void runAll(seeds, concurrency).then((s) => parentPort!.postMessage(s))
}
