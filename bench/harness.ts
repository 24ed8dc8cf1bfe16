/**
 * The loopback benchmark: one C receiver, every sender variant in its own process, interleaved
 * A B A B over repetitions, the same total per run. Writes a table to stdout, the raw and
 * aggregated numbers as JSON, and `docs/benchmarks.md` with a chart (`docs/benchmarks.svg`).
 *
 * `npm run bench` (or `zerocopy-socket bench`) runs the full set (1 GiB per run, 3 repetitions);
 * `--quick` runs tiny totals to check that everything works, and writes nothing under docs/.
 * Scratch files (the compiled C programs, the data file) live in a fresh directory under
 * `os.tmpdir()`, removed when the run ends, however it ends.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { basename, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'

import { Command } from 'commander'

import { probe } from '../index'
import { benchOptions, type BenchFlags } from './options'
import { markdown, median, svg, table } from './report'
import { ROOT } from './root'
import type { SenderResult } from './sender'
import { runSink, type SinkResult } from './sink'
import { VARIANTS, type Variant } from './variants'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/** Options of a benchmark run. */
export interface BenchOptions {
  /** Tiny totals, one repetition: proves the harness works; numbers mean nothing. */
  quick: boolean
  /** Bytes per run. **Default:** 1 GiB (quick: 4 MiB). */
  total?: number
  /** Repetitions. **Default:** 3 (quick: 1). */
  reps?: number
  /** Chunk sizes. **Default:** 1, 4, 16, 64, 256 KiB and 1 MiB. */
  chunks?: number[]
  /** Where the JSON goes. **Default:** docs/benchmarks.json on full runs; none on quick or `only` runs. */
  json?: string
  /** Print progress lines. **Default:** true. */
  verbose?: boolean
  /** Only these variants (for profiling one change); docs are not written then. */
  only?: string[]
}

/** One measured run. */
export interface Run extends SenderResult {
  rep: number
}

/** Aggregated numbers of one (variant, chunk). */
export interface Row {
  variant: string
  chunk: number | null
  runs: number
  gbps: { median: number; min: number; max: number }
  cpuPerGB: number
  eventLoopP99Ms: number | null
  maxRssMiB: number | null
  copiedShare: number | null
}

/** Everything a benchmark produced. */
export interface BenchResult {
  machine: { kernel: string; cpus: string; cores: number; node: string; date: string }
  options: { total: number; reps: number; chunks: number[] }
  skipped: string[]
  runs: Run[]
  rows: Row[]
  /** One long zc_auto run for the RSS goal (full runs only). */
  longRun?: SenderResult
  /** UDP SEND_ZC vs SEND into a packet sink off loopback (see bench/sink.ts). */
  sink?: SinkResult
}

function log(opts: BenchOptions, line: string): void {
  if (opts.verbose !== false) process.stderr.write(`${line}\n`)
}

/** Compiles the C receiver and, with liburing, the C senders into `work`; returns why C senders are skipped, if they are. */
function buildTools(opts: BenchOptions, work: string): string | null {
  try {
    execFileSync('gcc', ['-O2', '-Wall', '-o', join(work, 'receiver'), join(ROOT, 'bench', 'receiver.c')])
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    throw Object.assign(new Error('gcc is not installed: the benchmark compiles its C receiver'), { code: 'ENOENT' })
  }
  if (!existsSync('/usr/include/liburing.h') && !opts.quick && process.getuid?.() === 0) {
    log(opts, 'installing liburing-dev from Debian for the C reference senders ...')
    try {
      execFileSync('apt-get', ['install', '-y', '-q', 'liburing-dev'], { stdio: 'ignore' })
    } catch {
      try {
        execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore' })
        execFileSync('apt-get', ['install', '-y', '-q', 'liburing-dev'], { stdio: 'ignore' })
      } catch {
        // reported below
      }
    }
  }
  if (!existsSync('/usr/include/liburing.h')) return 'liburing-dev is not installed (apt-get install liburing-dev): C reference senders SKIPPED'
  execFileSync('gcc', ['-O2', '-Wall', '-o', join(work, 'csend'), join(ROOT, 'bench', 'csend.c'), '-luring'])
  return null
}

/**
 * A page-cached data file of `size` bytes in `work`. Every 4 KiB page starts with its own file
 * offset, so a body from the wrong place of the file cannot hash like the right one.
 */
export function dataFile(size: number, work: string): string {
  const path = join(work, `data-${size}.bin`)
  const block = Buffer.alloc(MiB)
  for (let i = 0; i < block.length; i += 8) block.writeBigUInt64LE(BigInt(i), i)
  const out = openSync(path, 'w')
  for (let written = 0; written < size; written += MiB) {
    for (let page = 0; page < MiB; page += 4 * KiB) block.writeBigUInt64LE(BigInt(written + page), page)
    writeFileSync(out, block.subarray(0, Math.min(MiB, size - written)))
  }
  closeSync(out)
  // Read it once so it is in the page cache.
  const fd = openSync(path, 'r')
  const buf = Buffer.allocUnsafe(MiB)
  while (readSync(fd, buf, 0, MiB, null) > 0);
  closeSync(fd)
  return path
}

class Receiver {
  #lines: string[] = []
  #waiters: ((line: string) => void)[] = []
  readonly child: ChildProcess
  constructor(work: string) {
    const child = spawn(join(work, 'receiver'), ['0'], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.child = child
    createInterface({ input: child.stdout }).on('line', (line) => {
      const w = this.#waiters.shift()
      if (w) w(line)
      else this.#lines.push(line)
    })
  }
  next(): Promise<{ bytes?: number; port?: number }> {
    const line = this.#lines.shift()
    if (line !== undefined) return Promise.resolve(JSON.parse(line))
    return new Promise((resolve) => this.#waiters.push((l) => resolve(JSON.parse(l))))
  }
  stop(): void {
    this.child.kill()
  }
}

function runProcess(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (c: Buffer) => (out += c))
    child.stderr.on('data', (c: Buffer) => (err += c))
    // One line: the child's first (a stack trace follows it when a Node sender throws).
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${basename(cmd)} ${args[0]} exited ${code}: ${err.trim().split('\n')[0]}`))))
  })
}

async function runOne(v: Variant, port: number, chunk: number, total: number, file: string, work: string): Promise<SenderResult> {
  if (v.kind === 'node') {
    const out = await runProcess(process.execPath, [join(__dirname, 'sender.js'), v.name, String(port), String(chunk), String(total), file])
    return JSON.parse(out.trim().split('\n').pop()!)
  }
  const [mode, qd, slots] = v.c!
  const out = await runProcess(join(work, 'csend'), [mode, String(port), String(chunk), String(total), String(qd), String(slots), file])
  const kv = Object.fromEntries(
    out
      .trim()
      .split(/\s+/)
      .map((p) => p.split('=')),
  )
  const notifications = Number(kv.notifs ?? 0)
  return {
    variant: v.name,
    chunk,
    bytes: total,
    secs: Number(kv.tx_secs),
    cpuSecs: Number(kv.tx_cpu_user) + Number(kv.tx_cpu_sys),
    maxRssMiB: 0,
    eventLoopP99Ms: 0,
    notifications,
    copied: Number(kv.zc_copied ?? 0),
    ok: kv.ack_ok === '1',
  }
}

/** Deterministic shuffle (mulberry32), so the interleaving is reproducible. */
export function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items]
  let a = seed >>> 0
  for (let i = out.length - 1; i > 0; i--) {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    const j = Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

function aggregate(runs: Run[]): Row[] {
  const groups = new Map<string, Run[]>()
  for (const r of runs) {
    const key = `${r.variant}\0${r.chunk}`
    groups.set(key, [...(groups.get(key) ?? []), r])
  }
  return [...groups.values()].map((rs) => {
    const v = VARIANTS.find((x) => x.name === rs[0].variant)!
    const rates = rs.map((r) => r.bytes / r.secs / 1e9)
    const node = v.kind === 'node'
    const notif = rs.reduce((n, r) => n + r.notifications, 0)
    return {
      variant: rs[0].variant,
      chunk: v.chunkless ? null : rs[0].chunk,
      runs: rs.length,
      gbps: { median: median(rates), min: Math.min(...rates), max: Math.max(...rates) },
      cpuPerGB: median(rs.map((r) => r.cpuSecs / (r.bytes / 1e9))),
      eventLoopP99Ms: node ? median(rs.map((r) => r.eventLoopP99Ms)) : null,
      maxRssMiB: node ? Math.max(...rs.map((r) => r.maxRssMiB)) : null,
      copiedShare: notif > 0 ? rs.reduce((n, r) => n + r.copied, 0) / notif : null,
    }
  })
}

/** Runs `fn` with a fresh scratch directory under `os.tmpdir()`, removed afterwards even when `fn` fails. */
export async function inScratchDir<T>(prefix: string, fn: (work: string) => Promise<T>): Promise<T> {
  const work = mkdtempSync(join(os.tmpdir(), prefix))
  try {
    return await fn(work)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** Runs the benchmark in a fresh scratch directory under `os.tmpdir()`, removed afterwards even when the run fails. */
export function runBench(opts: BenchOptions): Promise<BenchResult> {
  return inScratchDir('zerocopy-bench-', (work) => measure(opts, work))
}

/** The (variant, chunk) runs of one repetition, in table order. */
function planOf(opts: BenchOptions, chunks: number[], noC: boolean): [Variant, number][] {
  const plan: [Variant, number][] = []
  for (const chunk of chunks) {
    for (const v of VARIANTS) {
      if (v.kind === 'c' && noC) continue
      if (opts.only && !opts.only.includes(v.name)) continue
      if (v.chunkless && chunk !== chunks[0]) continue
      if (v.minChunk !== undefined && chunk < v.minChunk && !opts.quick) continue
      plan.push([v, chunk])
    }
  }
  return plan
}

/** The benchmark proper, with its scratch files in `work`. */
async function measure(opts: BenchOptions, work: string): Promise<BenchResult> {
  const total = opts.total ?? (opts.quick ? 4 * MiB : GiB)
  const reps = opts.reps ?? (opts.quick ? 1 : 3)
  const chunks = opts.chunks ?? [KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB]
  const skipped: string[] = []
  const noC = buildTools(opts, work)
  if (noC) {
    skipped.push(noC)
    log(opts, `!!! ${noC}`)
  }
  const plan = planOf(opts, chunks, noC !== null)
  const withSink = !opts.only || opts.only.includes('sink')
  if (plan.length === 0 && !withSink) {
    // `--only` names known variants (bench/options.ts), but none of them runs here at these chunk sizes.
    throw Object.assign(new Error(`nothing to run: ${opts.only?.join(',')} at chunk sizes ${chunks.join(',')}${noC ? ` (${noC})` : ''}`), {
      code: 'ERR_INVALID_ARG_VALUE',
    })
  }
  const fileSize = Math.min(total, 256 * MiB)
  const file = dataFile(fileSize, work)
  const receiver = new Receiver(work)
  const { port } = await receiver.next()
  const runs: Run[] = []
  let longRun: SenderResult | undefined
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const [v, chunk] of shuffle(plan, 42 + rep)) {
        let r: SenderResult
        try {
          r = await runOne(v, port!, chunk, total, file, work)
        } catch (e) {
          if (v.kind !== 'c') throw e
          // A C reference sender failing is a finding, not a harness failure.
          const note = `${v.name} at ${chunk} bytes failed: ${(e as Error).message.split('\n')[0]}`
          skipped.push(note)
          log(opts, `!!! ${note}`)
          await receiver.next()
          continue
        }
        const seen = await receiver.next()
        if (!r.ok || seen.bytes !== r.bytes) throw new Error(`${v.name} ${chunk}: receiver got ${seen.bytes} of ${r.bytes} bytes`)
        runs.push({ ...r, rep })
        log(opts, `rep ${rep + 1}/${reps} ${v.name.padEnd(18)} ${String(chunk).padStart(8)}  ${(r.bytes / r.secs / 1e9).toFixed(2)} GB/s`)
      }
    }
    if (!opts.quick && !opts.only && chunks.includes(256 * KiB)) {
      const v = VARIANTS.find((x) => x.name === 'zc_auto')!
      longRun = await runOne(v, port!, 256 * KiB, 8 * GiB, file, work)
      const seen = await receiver.next()
      if (!longRun.ok || seen.bytes !== longRun.bytes) throw new Error('the 8 GiB run lost bytes')
      log(opts, `long run: zc_auto 256K 8 GiB ${(longRun.bytes / longRun.secs / 1e9).toFixed(2)} GB/s, peak RSS ${longRun.maxRssMiB.toFixed(0)} MiB`)
    }
  } finally {
    receiver.stop()
  }
  let sink: SinkResult | undefined
  if (withSink) {
    sink = runSink(opts.quick ? 64 * MiB : 4 * GiB, reps, (line) => log(opts, line))
    if ('skipped' in sink) {
      skipped.push(`zero-copy off loopback (UDP into a sink device): ${sink.skipped}`)
      log(opts, `!!! sink SKIPPED: ${sink.skipped}`)
    }
  }
  const result: BenchResult = {
    machine: {
      kernel: probe().kernel || os.release(),
      cpus: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      node: process.version,
      date: new Date().toISOString(),
    },
    options: { total, reps, chunks },
    skipped,
    runs,
    rows: aggregate(runs),
    longRun,
    sink,
  }
  const json = opts.json ?? (opts.quick || opts.only ? null : join(ROOT, 'docs', 'benchmarks.json'))
  if (json !== null) {
    mkdirSync(resolve(json, '..'), { recursive: true })
    writeFileSync(json, `${JSON.stringify(result, null, 2)}\n`)
  }
  console.log(table(result))
  if (!opts.quick && !opts.only) {
    writeDocs(result)
    log(opts, 'wrote docs/benchmarks.md, docs/benchmarks.svg and docs/benchmarks.json')
  }
  return result
}

/** docs/benchmarks.md (with bench/analysis.md's prose) and docs/benchmarks.svg for `result`. */
function writeDocs(result: BenchResult): void {
  writeFileSync(join(ROOT, 'docs', 'benchmarks.svg'), svg(result))
  const notes = readFileSync(join(ROOT, 'bench', 'analysis.md'), 'utf8')
  const described = VARIANTS.map((v): [string, string] => [v.name, v.describe])
  writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), markdown(result, described, notes))
}

/** Rewrites docs/benchmarks.md and .svg from docs/benchmarks.json (after editing the prose). */
export async function reportOnly(): Promise<void> {
  writeDocs(JSON.parse(readFileSync(join(ROOT, 'docs', 'benchmarks.json'), 'utf8')) as BenchResult)
}

/** `npm run bench -- [--quick] [--only a,b,sink] [--chunks 1024,4096] [--total BYTES] [--reps N] [--report-only]`. */
export function runFromFlags(flags: BenchFlags): Promise<unknown> {
  if (flags.reportOnly) return reportOnly()
  return runBench({ quick: flags.quick ?? false, only: flags.only, chunks: flags.chunks, total: flags.total, reps: flags.reps })
}

if (require.main === module) {
  const flags = benchOptions(new Command('bench'))
    .description('loopback benchmark: writes docs/benchmarks.{md,svg,json} (full runs only)')
    .parse()
    .opts<BenchFlags>()
  runFromFlags(flags).catch((e) => {
    console.error(`bench failed: ${e.message}`)
    process.exit(1)
  })
}
