/**
 * The HTTP file-serving benchmark: `wrk` with keep-alive against nginx and four node:http
 * servers (bench/http-server.ts), each in its own process, one at a time, on the same
 * page-cached files. Interleaved: for each repetition, for each file size, the servers in a
 * shuffled (seeded) order, so drift hits all alike. Before anything is measured, every server
 * serves every file once to Node's http client and the body's SHA-256 is compared with the
 * file's: a server that serves wrong bytes is not measured and is reported loudly.
 *
 * `npm run bench:http` writes `docs/benchmarks-http.{md,svg,json}`; `--quick` (and `--only`)
 * runs write no docs. Scratch files (data files, nginx config, pid and logs) live in a fresh
 * directory under `os.tmpdir()`, removed when the run ends.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { chmodSync, createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import { basename, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'

import cliProgress from 'cli-progress'

import { dataFile, inScratchDir, shuffle } from './harness'
import { httpBenchCommand, type HttpBenchFlags } from './http-options'
import { HTTP_SERVERS } from './http-server'
import { chunkLabel, httpMarkdown, httpSvg, httpTable, median } from './report'
import { ROOT } from './root'
import { ensureRuntime, type Runtime } from './runtimes'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
/** wrk's connections: the issue's `-c8`. */
const CONNECTIONS = 8

/** Options of an HTTP benchmark run. */
export interface HttpBenchOptions {
  /** One repetition of 1 s at 4 and 64 KiB, no warm-up: proves the harness works; numbers mean nothing. */
  quick: boolean
  /** File sizes in bytes. **Default:** 4 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB (quick: 4 and 64 KiB). */
  sizes?: number[]
  /** Whole seconds per measurement (wrk takes whole seconds). **Default:** 3 (quick: 1). */
  duration?: number
  /** Repetitions. **Default:** 3 (quick: 1). */
  reps?: number
  /** Only these servers; docs are not written then. */
  only?: string[]
  /** Where the JSON goes. **Default:** docs/benchmarks-http.json on full runs; none on quick or `only` runs. */
  json?: string
  /** Progress on stderr. **Default:** true. */
  verbose?: boolean
}

/** One wrk measurement of one server on one file. */
export interface HttpRun {
  server: string
  size: number
  rep: number
  /** Responses wrk completed (a response still arriving when the time is up does not count). */
  requests: number
  seconds: number
  /**
   * Body bytes received, complete responses or not: wrk's bytes read less the response headers
   * (their size per response is taken from the correctness check). Large files with 8 in flight
   * finish few responses in a few seconds, so throughput is counted in bytes, not responses.
   */
  bodyBytes: number
  /** The server process's user + system CPU seconds during the measurement (nginx: its worker). */
  cpuSecs: number
  p99Ms: number
  /** wrk's socket errors (connect, read, write, timeout) and non-2xx/3xx responses. */
  errors: number
}

/** Median, minimum and maximum. */
export interface Spread {
  median: number
  min: number
  max: number
}

/** Aggregated numbers of one (server, size). */
export interface HttpRow {
  server: string
  size: number
  runs: number
  rps: Spread
  gbps: Spread
  cpuPerGB: number
  /** Completed responses over all runs (how many samples p99 has). */
  requests: number
  /** `null` when no response completed. */
  p99Ms: number | null
  errors: number
}

/** The correctness check of one server: every file once, SHA-256 of the body against the file's. */
export interface HttpCheck {
  server: string
  ok: boolean
  /** What was wrong (or `all N files byte-exact`). */
  detail: string
  /** Bytes of status line and headers of the response, per file size (to tell body bytes from wrk's bytes read). */
  headerBytes: Record<number, number>
}

/** Everything an HTTP benchmark produced. */
export interface HttpBenchResult {
  machine: {
    kernel: string
    cpus: string
    cores: number
    node: string
    nginx: string
    wrk: string
    /** Versions of the other runtimes measured (`bun 1.4.5`, ...). */
    runtimes?: string[]
    date: string
    loadavg: { start: number; end: number }
  }
  options: { sizes: number[]; duration: number; reps: number; warmup: number; connections: number; seed: number }
  checks: HttpCheck[]
  /** Servers or tools that could not run here, and why (loud in the docs and on stderr). */
  skipped: string[]
  runs: HttpRun[]
  rows: HttpRow[]
}

function log(opts: HttpBenchOptions, line: string): void {
  if (opts.verbose !== false) process.stderr.write(`${line}\n`)
}

/** The first line `cmd -v` prints, or `null` when `cmd` is not installed. */
function versionOf(cmd: string): string | null {
  // Both print their version on stderr (nginx exits 0, wrk 1): only a missing binary counts.
  const r = spawnSync(cmd, ['-v'], { encoding: 'utf8' })
  if (r.error) return null
  return `${r.stderr}${r.stdout}`.trim().split('\n')[0]
}

function has(cmd: string): boolean {
  return versionOf(cmd) !== null
}

/** Installs the Debian packages of the missing tools when root (as bench/harness.ts does liburing-dev); returns what is still missing. */
function ensureTools(opts: HttpBenchOptions, tools: string[]): string[] {
  const missing = tools.filter((t) => !has(t))
  if (missing.length > 0 && process.getuid?.() === 0) {
    log(opts, `installing ${missing.join(' and ')} from Debian for the HTTP benchmark ...`)
    const install = (): void =>
      void execFileSync('apt-get', ['install', '-y', '-q', ...missing], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    try {
      install()
    } catch {
      try {
        execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore' })
        install()
      } catch {
        // reported by the caller
      }
    }
  }
  return tools.filter((t) => !has(t))
}

/** A port that was free a moment ago (nginx needs one in its config). */
async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address() as net.AddressInfo
  await new Promise((r) => s.close(r))
  return port
}

async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode} before it listened`)
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1')
      c.once('connect', () => (c.destroy(), r(true))).once('error', () => r(false))
    })
    if (ok) return
    await sleep(20)
  }
  throw new Error(`${what} did not listen on ${port} within 5 s`)
}

/** utime + stime of a process (all its threads), in seconds, from `/proc/<pid>/stat`. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 14 and 15 of proc(5); f[0] is field 3.
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** The children of `pid`, from every process's ppid in /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

/** A running server: where to send requests, and whose CPU time to count. */
interface Running {
  port: number
  cpuPid: number
  stop(): Promise<void>
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

function nginxConfig(work: string, port: number): string {
  const t = join(work, 'nginx')
  return `# Generated by bench/http.ts for one measurement.
${process.getuid?.() === 0 ? 'user nobody nogroup;\n' : ''}worker_processes 1;
daemon off;
pid ${t}/nginx.pid;
error_log ${t}/error.log warn;
events { worker_connections 1024; }
http {
  sendfile on;
  tcp_nopush on;
  access_log off;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path ${t}/client_body;
  proxy_temp_path ${t}/proxy;
  fastcgi_temp_path ${t}/fastcgi;
  uwsgi_temp_path ${t}/uwsgi;
  scgi_temp_path ${t}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${join(work, 'files')};
  }
}
`
}

async function startNginx(work: string): Promise<Running> {
  const port = await freePort()
  mkdirSync(join(work, 'nginx'), { recursive: true })
  const conf = join(work, 'nginx', 'nginx.conf')
  writeFileSync(conf, nginxConfig(work, port))
  const child = spawn('nginx', ['-p', join(work, 'nginx'), '-c', conf, '-e', join(work, 'nginx', 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.on('data', (c: Buffer) => (err += c))
  try {
    await waitForPort(port, child, 'nginx')
  } catch (e) {
    await stopChild(child)
    throw new Error(`${(e as Error).message}: ${err.trim().split('\n').pop() ?? ''}`)
  }
  let workers: number[] = []
  for (let i = 0; i < 100 && workers.length === 0; i++) {
    workers = childrenOf(child.pid!)
    if (workers.length === 0) await sleep(20)
  }
  if (workers.length !== 1) {
    await stopChild(child)
    throw new Error(`nginx: expected one worker process, found ${workers.length}`)
  }
  return { port, cpuPid: workers[0], stop: () => stopChild(child) }
}

/** The binaries of the runtimes this run uses, found (or installed) once per run. */
const runtimeBins = new Map<Runtime, string>()

async function startRuntime(runtime: Runtime, work: string): Promise<Running> {
  const bin = runtimeBins.get(runtime)
  if (bin === undefined) throw new Error(`${runtime} is not available`)
  const files = join(work, 'files')
  const script = join(ROOT, 'bench', 'anchors', `${runtime}-server.js`)
  const args = runtime === 'bun' ? [script, files] : ['run', '--quiet', '--allow-net=127.0.0.1', `--allow-read=${files}`, script, files]
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } })
  return afterListening(runtime, child)
}

async function startNode(server: string, work: string): Promise<Running> {
  const child = spawn(process.execPath, [join(__dirname, 'http-server.js'), server, join(work, 'files')], { stdio: ['ignore', 'pipe', 'pipe'] })
  return afterListening(server, child)
}

/** Waits for a server child's `{"port":N}` line. */
async function afterListening(server: string, child: ChildProcess): Promise<Running> {
  let err = ''
  child.stderr!.on('data', (c: Buffer) => (err += c))
  const lines = createInterface({ input: child.stdout! })
  const exited = once(child, 'exit').then(() => null)
  const first = await Promise.race([once(lines, 'line').then(([l]) => l as string), exited])
  lines.close()
  if (first === null) throw new Error(`${server} exited before it listened: ${err.trim().split('\n')[0]}`)
  const { port } = JSON.parse(first) as { port: number }
  return { port, cpuPid: child.pid!, stop: () => stopChild(child) }
}

function startServer(server: string, work: string): Promise<Running> {
  const runtime = HTTP_SERVERS.find((s) => s.name === server)?.runtime
  if (runtime) return startRuntime(runtime, work)
  return server === 'nginx' ? startNginx(work) : startNode(server, work)
}

/** SHA-256 of a file. */
async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

/** GET `path` once over `agent`: status, Content-Length and the body's SHA-256 and length. */
function fetchHash(
  port: number,
  path: string,
  agent: http.Agent,
): Promise<{ status: number; contentLength: string | undefined; headerBytes: number; bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 60_000 }, (res) => {
      const h = createHash('sha256')
      let bytes = 0
      res.on('data', (c: Buffer) => {
        h.update(c)
        bytes += c.length
      })
      // As sent, but for white space node:http's parser trims around values.
      let headerBytes = `HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage}\r\n\r\n`.length
      for (let i = 0; i < res.rawHeaders.length; i += 2) headerBytes += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`.length
      res.once('end', () => resolve({ status: res.statusCode ?? 0, contentLength: res.headers['content-length'], headerBytes, bytes, sha256: h.digest('hex') }))
      res.once('error', reject)
    })
    req.once('timeout', () => req.destroy(new Error('no response within 60 s')))
    req.once('error', reject)
  })
}

/** Every file once, one keep-alive connection, in size order: is every body byte-exact? */
async function check(server: string, work: string, files: Map<number, { name: string; sha256: string }>): Promise<HttpCheck> {
  const running = await startServer(server, work)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const wrong: string[] = []
  const headerBytes: Record<number, number> = {}
  try {
    for (const [size, f] of files) {
      try {
        const got = await fetchHash(running.port, `/${f.name}`, agent)
        headerBytes[size] = got.headerBytes
        if (got.status !== 200) wrong.push(`${chunkLabel(size)}: status ${got.status}`)
        else if (got.contentLength !== String(size)) wrong.push(`${chunkLabel(size)}: Content-Length ${got.contentLength}`)
        else if (got.bytes !== size || got.sha256 !== f.sha256)
          wrong.push(`${chunkLabel(size)}: ${got.bytes} bytes with SHA-256 ${got.sha256.slice(0, 16)}…, expected ${size} with ${f.sha256.slice(0, 16)}…`)
      } catch (e) {
        wrong.push(`${chunkLabel(size)}: ${(e as Error).message}`)
      }
    }
  } finally {
    agent.destroy()
    await running.stop()
  }
  return { server, ok: wrong.length === 0, detail: wrong.length === 0 ? `all ${files.size} files byte-exact` : wrong.join('; '), headerBytes }
}

const TIME_UNITS: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }
/** wrk prints bytes in binary units labelled KB, MB, ... */
const BYTE_UNITS: Record<string, number> = { B: 1, KB: KiB, MB: MiB, GB: GiB, TB: 1024 * GiB }

/** The numbers of one `wrk --latency` report. */
export function parseWrk(out: string): { requests: number; seconds: number; bytesRead: number; p99Ms: number; errors: number } {
  const done = /(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)(B|KB|MB|GB|TB) read/.exec(out)
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$/m.exec(out)
  if (!done) throw new Error(`unexpected wrk output: ${out.trim().split('\n').slice(-3).join(' | ')}`)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  const errors = (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0)
  return {
    requests: Number(done[1]),
    seconds: Number(done[2]) * TIME_UNITS[done[3]],
    bytesRead: Number(done[4]) * BYTE_UNITS[done[5]],
    // No completed request, no latency sample.
    p99Ms: p99 ? Number(p99[1]) * TIME_UNITS[p99[2]] * 1e3 : NaN,
    errors,
  }
}

function wrk(port: number, name: string, seconds: number): Promise<string> {
  // --timeout: the default 2 s would count a slow server's 256 MiB responses (8 in flight) as timeouts.
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '60s', '--latency', `http://127.0.0.1:${port}/${name}`]
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c))
    child.stderr.on('data', (c: Buffer) => (out += c))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk exited ${code}: ${out.trim().split('\n').pop()}`))))
  })
}

/** Starts `server`, warms it up, measures it with wrk (CPU time read around the measurement), stops it. */
async function measureOne(
  server: string,
  size: number,
  name: string,
  rep: number,
  work: string,
  duration: number,
  warmup: number,
  headerBytes: number,
): Promise<HttpRun> {
  const running = await startServer(server, work)
  try {
    if (warmup > 0) await wrk(running.port, name, warmup)
    const cpu0 = cpuSeconds(running.cpuPid)
    const out = await wrk(running.port, name, duration)
    const cpuSecs = cpuSeconds(running.cpuPid) - cpu0
    const { bytesRead, ...wrkNumbers } = parseWrk(out)
    return { server, size, rep, cpuSecs, ...wrkNumbers, bodyBytes: Math.max(0, bytesRead - wrkNumbers.requests * headerBytes) }
  } finally {
    await running.stop()
  }
}

function spread(xs: number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) }
}

function aggregate(runs: HttpRun[]): HttpRow[] {
  const groups = new Map<string, HttpRun[]>()
  for (const r of runs) groups.set(`${r.server}\0${r.size}`, [...(groups.get(`${r.server}\0${r.size}`) ?? []), r])
  return [...groups.values()].map((rs) => ({
    server: rs[0].server,
    size: rs[0].size,
    runs: rs.length,
    rps: spread(rs.map((r) => r.requests / r.seconds)),
    gbps: spread(rs.map((r) => r.bodyBytes / r.seconds / 1e9)),
    cpuPerGB: median(rs.map((r) => (r.bodyBytes > 0 ? r.cpuSecs / (r.bodyBytes / 1e9) : NaN))),
    requests: rs.reduce((n, r) => n + r.requests, 0),
    p99Ms: rs.some((r) => r.requests > 0) ? median(rs.filter((r) => r.requests > 0).map((r) => r.p99Ms)) : null,
    errors: rs.reduce((n, r) => n + r.errors, 0),
  }))
}

/** A progress bar over the measurements on stderr; silent when not a TTY or not verbose (lines instead). */
function progress(opts: HttpBenchOptions, total: number): { step(what: string): void; stop(): void } {
  if (opts.verbose === false || !process.stderr.isTTY) return { step: (what) => log(opts, what), stop() {} }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: '{bar} {value}/{total} | {what} | ETA {eta_formatted}', hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  )
  bar.start(total, 0, { what: 'starting' })
  return { step: (what) => bar.increment({ what }), stop: () => bar.stop() }
}

/** Runs the HTTP benchmark in a fresh scratch directory under `os.tmpdir()`, removed afterwards even when the run fails. */
export function runHttpBench(opts: HttpBenchOptions): Promise<HttpBenchResult> {
  return inScratchDir('zerocopy-bench-http-', (work) => measure(opts, work))
}

async function measure(opts: HttpBenchOptions, work: string): Promise<HttpBenchResult> {
  const sizes = opts.sizes ?? (opts.quick ? [4 * KiB, 64 * KiB] : [4 * KiB, 64 * KiB, MiB, 16 * MiB, 256 * MiB])
  const duration = opts.duration ?? (opts.quick ? 1 : 3)
  const reps = opts.reps ?? (opts.quick ? 1 : 3)
  const warmup = opts.quick ? 0 : 1
  const seed = 4242
  const loadStart = os.loadavg()[0]
  const skipped: string[] = []
  const loud = (line: string): void => {
    skipped.push(line)
    console.error(`!!! ${line}`)
  }
  const missing = ensureTools(opts, ['wrk', 'nginx'])
  let servers = HTTP_SERVERS.map((s) => s.name).filter((s) => !opts.only || opts.only.includes(s))
  if (missing.includes('nginx') && servers.includes('nginx')) {
    loud("nginx is not installed (apt-get install nginx; needs root and Debian's archive): the nginx reference is SKIPPED")
    servers = servers.filter((s) => s !== 'nginx')
  }
  const runtimes: string[] = []
  for (const { name, runtime } of HTTP_SERVERS) {
    if (!runtime || !servers.includes(name)) continue
    try {
      const { bin, version } = ensureRuntime(runtime)
      runtimeBins.set(runtime, bin)
      runtimes.push(version)
    } catch (e) {
      loud(`${runtime} cannot run here (${(e as Error).message}): the ${runtime} anchor is SKIPPED`)
      servers = servers.filter((s) => s !== name)
    }
  }
  // nginx's worker runs as nobody when we are root: it must be able to reach the files.
  chmodSync(work, 0o755)
  const filesDir = join(work, 'files')
  mkdirSync(filesDir)
  const files = new Map<number, { name: string; sha256: string }>()
  for (const size of [...new Set(sizes)].sort((a, b) => a - b)) {
    const path = dataFile(size, filesDir) // written, then read once: in the page cache
    files.set(size, { name: basename(path), sha256: await sha256File(path) })
  }
  const checks: HttpCheck[] = []
  for (const server of servers) {
    let c: HttpCheck
    try {
      c = await check(server, work, files)
    } catch (e) {
      c = { server, ok: false, detail: `did not start: ${(e as Error).message}`, headerBytes: {} }
    }
    checks.push(c)
    if (c.ok) log(opts, `check ${server}: ${c.detail}`)
    else loud(`${server} FAILED the correctness check and is NOT measured or reported: ${c.detail}`)
  }
  const good = servers.filter((s) => checks.find((c) => c.server === s)?.ok)
  const runs: HttpRun[] = []
  if (missing.includes('wrk')) {
    loud("wrk is not installed (apt-get install wrk; needs root and Debian's archive): nothing is MEASURED, only the correctness checks ran")
  } else {
    const bar = progress(opts, reps * files.size * good.length)
    try {
      for (let rep = 0; rep < reps; rep++) {
        for (const [size, f] of files) {
          for (const server of shuffle(good, seed + rep * 1000 + (size % 997))) {
            const r = await measureOne(server, size, f.name, rep, work, duration, warmup, checks.find((c) => c.server === server)!.headerBytes[size])
            runs.push(r)
            if (r.errors > 0) loud(`${server} at ${chunkLabel(size)} (rep ${rep + 1}): wrk reported ${r.errors} socket errors or non-2xx responses`)
            bar.step(
              `rep ${rep + 1}/${reps} ${server.padEnd(15)} ${chunkLabel(size).padStart(5)}  ${(r.requests / r.seconds).toFixed(0).padStart(7)} req/s  ${(r.bodyBytes / r.seconds / 1e9).toFixed(2)} GB/s`,
            )
          }
        }
      }
    } finally {
      bar.stop()
    }
  }
  const result: HttpBenchResult = {
    machine: {
      kernel: os.release(),
      cpus: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      node: process.version,
      nginx: versionOf('nginx') ?? 'nginx not installed',
      wrk: versionOf('wrk') ?? 'wrk not installed',
      runtimes,
      date: new Date().toISOString(),
      loadavg: { start: loadStart, end: os.loadavg()[0] },
    },
    options: { sizes: [...files.keys()], duration, reps, warmup, connections: CONNECTIONS, seed },
    checks,
    skipped,
    runs,
    rows: aggregate(runs),
  }
  const full = !opts.quick && !opts.only
  const json = opts.json ?? (full ? join(ROOT, 'docs', 'benchmarks-http.json') : null)
  if (json !== null) {
    mkdirSync(resolve(json, '..'), { recursive: true })
    writeFileSync(json, `${JSON.stringify(result, null, 2)}\n`)
  }
  console.log(httpTable(result))
  if (full) {
    writeDocs(result)
    log(opts, 'wrote docs/benchmarks-http.md, docs/benchmarks-http.svg and docs/benchmarks-http.json')
  }
  return result
}

function writeDocs(result: HttpBenchResult): void {
  writeFileSync(join(ROOT, 'docs', 'benchmarks-http.svg'), httpSvg(result))
  const notesPath = join(ROOT, 'bench', 'http-analysis.md')
  const notes = existsSync(notesPath) ? readFileSync(notesPath, 'utf8') : ''
  writeFileSync(
    join(ROOT, 'docs', 'benchmarks-http.md'),
    httpMarkdown(
      result,
      HTTP_SERVERS.map((s) => [s.name, s.describe]),
      notes,
    ),
  )
}

if (require.main === module) {
  const flags = httpBenchCommand().parse().opts<HttpBenchFlags>()
  const run: Promise<unknown> = flags.reportOnly
    ? Promise.resolve(writeDocs(JSON.parse(readFileSync(join(ROOT, 'docs', 'benchmarks-http.json'), 'utf8')) as HttpBenchResult))
    : runHttpBench({ quick: flags.quick ?? false, sizes: flags.sizes, duration: flags.duration, reps: flags.reps, only: flags.only })
  run.catch((e) => {
    console.error(`bench:http failed: ${(e as Error).message}`)
    process.exit(1)
  })
}
