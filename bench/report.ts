/**
 * Turns benchmark results into the stdout tables, the docs pages and their SVG charts: the
 * loopback benchmark's (docs/benchmarks.md) and the HTTP benchmark's (docs/benchmarks-http.md).
 */
import type { BenchResult, Row } from './harness'
import type { HttpBenchResult, HttpRow } from './http'

const KiB = 1024

/** `4096` → `4K`, `1048576` → `1M`; `null` (a whole file) → `file`. */
export function chunkLabel(c: number | null): string {
  if (c === null) return 'file'
  return c >= 1 << 20 ? `${c >> 20}M` : `${c / KiB}K`
}

function find(r: BenchResult, variant: string, chunk: number | null): Row | undefined {
  return r.rows.find((x) => x.variant === variant && x.chunk === chunk)
}

function cell(row: Row | undefined): string {
  if (!row) return '-'
  const g = row.gbps
  return `${g.median.toFixed(2)} [${g.min.toFixed(2)}-${g.max.toFixed(2)}]`
}

function variantsOf(r: BenchResult, file: boolean): string[] {
  const names: string[] = []
  for (const row of r.rows)
    if (!names.includes(row.variant) && (row.chunk === null || file === /pipe|sendfile|splice/.test(row.variant))) names.push(row.variant)
  return names.filter((n) => file === /pipe|sendfile|splice/.test(n))
}

/** The human-readable table: GB/s median [min-max] per variant and chunk size. */
export function table(r: BenchResult): string {
  const chunks = r.options.chunks
  const lines = [`loopback TCP, ${r.options.total / 2 ** 20} MiB per run, ${r.options.reps} run(s); GB/s median [min-max]`]
  const head = ['variant'.padEnd(18), ...chunks.map((c) => chunkLabel(c).padStart(18))]
  lines.push(head.join(' '))
  for (const name of [...variantsOf(r, false), ...variantsOf(r, true)]) {
    const chunkless = r.rows.some((x) => x.variant === name && x.chunk === null)
    const cells = chunkless
      ? [cell(find(r, name, null)).padStart(18), ...chunks.slice(1).map(() => ''.padStart(18))]
      : chunks.map((c) => cell(find(r, name, c)).padStart(18))
    lines.push([name.padEnd(18), ...cells].join(' '))
  }
  // Sender CPU per GB: stable where throughput swings with the machine's other load.
  lines.push('sender CPU s/GB (process, threads included), median')
  for (const name of [...variantsOf(r, false), ...variantsOf(r, true)]) {
    const cpu = (c: number | null): string => find(r, name, c)?.cpuPerGB?.toFixed(3) ?? '-'
    const chunkless = r.rows.some((x) => x.variant === name && x.chunk === null)
    const cells = chunkless ? [cpu(null).padStart(18)] : chunks.map((c) => cpu(c).padStart(18))
    lines.push([name.padEnd(18), ...cells].join(' '))
  }
  for (const s of r.skipped) lines.push(`!!! ${s}`)
  return lines.join('\n')
}

/** One goal of the benchmark issue, judged on this run. */
export interface Goal {
  id: string
  text: string
  pass: boolean | null
  detail: string
}

/** Judges the performance goals from one result (ratios within the same run). */
export function goals(r: BenchResult): Goal[] {
  const med = (v: string, c: number | null): number | undefined => find(r, v, c)?.gbps.median
  const out: Goal[] = []
  const memChunks = r.options.chunks
  const p1: string[] = []
  let p1ok = true
  for (const c of memChunks) {
    const zc = med('zc_auto', c)
    const node = med('node_write', c)
    const bestC = Math.max(...['c_send', 'c_uring_send', 'c_zc_ring8'].map((v) => med(v, c) ?? 0))
    if (zc === undefined || node === undefined) continue
    const vsNode = zc / node
    const vsC = bestC > 0 ? zc / bestC : null
    p1ok &&= vsNode >= 1 && (vsC === null || vsC >= 0.9)
    p1.push(`${chunkLabel(c)}: ${vsNode.toFixed(2)}× net.Socket${vsC === null ? '' : `, ${vsC.toFixed(2)}× best C`}`)
  }
  out.push({
    id: 'P1',
    text: 'write() with the default policy ≥ 1.0× net.Socket.write and ≥ 0.9× the best C sender, every chunk size',
    pass: p1.length ? p1ok : null,
    detail: p1.join('; '),
  })
  const sf = med('zc_sendfile', null)
  const pipe = med('node_pipe_default', null)
  const bestCFile = Math.max(...memChunks.flatMap((c) => ['c_sendfile', 'c_splice'].map((v) => med(v, c) ?? 0)))
  if (sf !== undefined && pipe !== undefined) {
    const vsC = bestCFile > 0 ? sf / bestCFile : null
    out.push({
      id: 'P2',
      text: 'sendFile() ≥ 2× createReadStream().pipe() (default highWaterMark) and ≥ 0.9× the best C file sender',
      pass: sf / pipe >= 2 && (vsC === null || vsC >= 0.9),
      detail: `${(sf / pipe).toFixed(2)}× pipe${vsC === null ? '' : `, ${vsC.toFixed(2)}× best C (${bestCFile.toFixed(2)} GB/s)`}`,
    })
  }
  const small = memChunks.filter((c) => c <= 8 * KiB)
  const p3 = small.map((c) => [c, (med('zc_auto', c) ?? 0) / (med('node_write', c) ?? Infinity)] as const)
  out.push({
    id: 'P3',
    text: '1–8 KiB writes with many in flight ≥ 1.0× net.Socket',
    pass: p3.length ? p3.every(([, x]) => x >= 1) : null,
    detail: p3.map(([c, x]) => `${chunkLabel(c)}: ${x.toFixed(2)}×`).join('; '),
  })
  const eld = r.rows.filter((x) => x.variant === 'zc_auto' && x.eventLoopP99Ms !== null).map((x) => x.eventLoopP99Ms!)
  out.push({
    id: 'P4',
    text: 'event-loop delay p99 ≤ 5 ms during a saturating transfer (zc_auto)',
    pass: eld.length ? Math.max(...eld) <= 5 : null,
    detail: `worst median p99 ${eld.length ? Math.max(...eld).toFixed(2) : '-'} ms`,
  })
  const long = r.longRun
  const base = find(r, 'zc_auto', long?.chunk ?? 0)?.maxRssMiB
  if (long && base !== undefined && base !== null) {
    const growth = long.maxRssMiB - base
    out.push({
      id: 'P6',
      text: `RSS flat (±32 MiB) over an ${(long.bytes / 2 ** 30).toFixed(0)} GiB transfer (zc_auto, ${chunkLabel(long.chunk)})`,
      pass: Math.abs(growth) <= 32,
      detail: `peak RSS ${long.maxRssMiB.toFixed(0)} MiB vs ${base.toFixed(0)} MiB for 1 GiB (${growth >= 0 ? '+' : ''}${growth.toFixed(0)} MiB)`,
    })
  }
  const cpu = memChunks
    .map((c) => [c, find(r, 'zc_auto', c)?.cpuPerGB, find(r, 'node_write', c)?.cpuPerGB] as const)
    .filter(([, a, b]) => a !== undefined && b !== undefined)
  const sink = sinkSummary(r)
  if (sink) {
    out.push({
      id: 'Stretch',
      text: 'off loopback (UDP into a sink device): SEND_ZC notifications without ZC_COPIED, and less sender CPU per GB than plain SEND',
      pass: sink.zc.notifications > 0 && sink.zc.copied === 0 && sink.zc.cpuPerGB < sink.send.cpuPerGB,
      detail: `${sink.zc.copied} of ${sink.zc.notifications} notifications copied; ${sink.zc.cpuPerGB.toFixed(3)} vs ${sink.send.cpuPerGB.toFixed(3)} CPU s/GB (${(sink.send.cpuPerGB / sink.zc.cpuPerGB).toFixed(2)}× less)`,
    })
  }
  out.push({
    id: 'P5',
    text: 'sender CPU per GB ≤ net.Socket’s (zc_auto vs node_write)',
    pass: cpu.length ? cpu.every(([, a, b]) => a! <= b!) : null,
    detail: cpu.map(([c, a, b]) => `${chunkLabel(c)}: ${a!.toFixed(2)} vs ${b!.toFixed(2)} s/GB`).join('; '),
  })
  return out
}

/** Medians per mode of the sink runs, or `undefined` when they did not run. */
export function sinkSummary(r: BenchResult): Record<'zc' | 'send', { gbps: number; cpuPerGB: number; notifications: number; copied: number }> | undefined {
  if (!r.sink || 'skipped' in r.sink) return undefined
  const runs = r.sink.runs
  const of = (mode: 'zc' | 'send') => {
    const rs = runs.filter((x) => x.mode === mode)
    return {
      gbps: median(rs.map((x) => x.bytes / x.secs / 1e9)),
      cpuPerGB: median(rs.map((x) => x.cpuSecs / (x.bytes / 1e9))),
      notifications: rs.reduce((n, x) => n + x.notifications, 0),
      copied: rs.reduce((n, x) => n + x.copied, 0),
    }
  }
  return { zc: of('zc'), send: of('send') }
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** docs/benchmarks.md: machine, method, the table, the chart, the goals and `notes` (prose). */
export function markdown(r: BenchResult, described: [string, string][], notes = ''): string {
  const chunks = r.options.chunks
  const rows = [...variantsOf(r, false), ...variantsOf(r, true)]
  const lines = [
    '# Benchmarks',
    '',
    '<!-- Generated by `npm run bench` (bench/harness.ts). Do not edit by hand: rerun it. -->',
    '',
    `Loopback TCP on ${r.machine.cores} × ${r.machine.cpus}, Linux ${r.machine.kernel}, Node ${r.machine.node}; ${r.machine.date}.`,
    `Each run sends ${r.options.total / 2 ** 30 >= 1 ? `${r.options.total / 2 ** 30} GiB` : `${r.options.total / 2 ** 20} MiB`} to one C receiver that \`recv()\`s into a reused buffer; every sender runs in its own process; runs are interleaved (shuffled per repetition), ${r.options.reps} repetitions. GB/s = bytes / sender wall time, median [min-max].`,
    '',
    '![throughput chart](benchmarks.svg)',
    '',
    'HTTP file serving (nginx, `send`, `@fastify/static`, `createReadStream().pipe()` and `respondWithFile` under `wrk`) is measured by `npm run bench:http`: see [benchmarks-http.md](benchmarks-http.md).',
    '',
    `| variant | ${chunks.map(chunkLabel).join(' | ')} |`,
    `|---|${chunks.map(() => '---').join('|')}|`,
  ]
  for (const name of rows) {
    const chunkless = r.rows.some((x) => x.variant === name && x.chunk === null)
    const cells = chunkless ? [`${cell(find(r, name, null))} (file)`, ...chunks.slice(1).map(() => '')] : chunks.map((c) => cell(find(r, name, c)))
    lines.push(`| ${name} | ${cells.join(' | ')} |`)
  }
  lines.push(
    '',
    'Sender CPU seconds per GB (median), event-loop delay p99 (ms, Node senders), peak RSS (MiB), share of zero-copy notifications that reported `ZC_COPIED`:',
    '',
  )
  lines.push('| variant | chunk | CPU s/GB | loop p99 ms | RSS MiB | ZC_COPIED |', '|---|---|---|---|---|---|')
  const order = new Map(rows.map((name, i) => [name, i]))
  const sorted = [...r.rows].sort((a, b) => (order.get(a.variant) ?? 99) - (order.get(b.variant) ?? 99) || (a.chunk ?? 0) - (b.chunk ?? 0))
  for (const row of sorted) {
    lines.push(
      `| ${row.variant} | ${chunkLabel(row.chunk)} | ${row.cpuPerGB.toFixed(2)} | ${row.eventLoopP99Ms?.toFixed(2) ?? '-'} | ${row.maxRssMiB?.toFixed(0) ?? '-'} | ${row.copiedShare === null ? '-' : `${(row.copiedShare * 100).toFixed(0)}%`} |`,
    )
  }
  const sink = sinkSummary(r)
  if (sink && r.sink && !('skipped' in r.sink)) {
    lines.push(
      '',
      '## Zero-copy off loopback (stretch)',
      '',
      `UDP datagrams of ${r.sink.datagram} bytes from a private network namespace into an \`ifb\` device, which drops every packet without delivering it (the stand-in for a \`dummy\` device, which this kernel lacks): nothing leaves the namespace and nothing is delivered locally, so the kernel has no reason to copy. One request in flight, 256 MiB of rotating buffers, ${r.sink.runs.length / 2} run(s) per mode of ${(r.sink.runs[0].bytes / 2 ** 30).toFixed(1)} GiB, alternating. Sender: \`crates/zerocopy-core/examples/udp_sink.rs\` (SEND_ZC through the core's \`try_send_zc\`).`,
      '',
      '| mode | GB/s | CPU s/GB | notifications | ZC_COPIED |',
      '|---|---|---|---|---|',
      ...(['zc', 'send'] as const).map(
        (m) =>
          `| ${m === 'zc' ? 'SEND_ZC' : 'SEND'} | ${sink[m].gbps.toFixed(2)} | ${sink[m].cpuPerGB.toFixed(3)} | ${m === 'zc' ? sink[m].notifications : '-'} | ${m === 'zc' ? sink[m].copied : '-'} |`,
      ),
    )
  }
  lines.push('', '## Goals (ratios from this run)', '', '| goal | | result |', '|---|---|---|')
  for (const g of goals(r)) lines.push(`| ${g.id}: ${g.text} | ${g.pass === null ? 'n/a' : g.pass ? 'met' : '**missed**'} | ${g.detail} |`)
  if (notes) lines.push('', notes.trim())
  lines.push('', '## Variants', '')
  for (const [name, what] of described) lines.push(`- \`${name}\`: ${what}`)
  for (const s of r.skipped) lines.push('', `**Skipped:** ${s}`)
  lines.push('')
  return lines.join('\n')
}

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac']

/** A grouped bar chart: one group per x label, one bar per series, whiskers min-max. */
export interface BarChart {
  title: string
  groups: string[]
  series: string[]
  /** The bar of `series` in group `group` (an index into `groups`), or `undefined` for none. */
  value(series: string, group: number): { median: number; min: number; max: number } | undefined
  /** A log₁₀ y axis, for values that span decades. **Default:** linear. */
  log?: boolean
}

/** The SVG of a {@link BarChart}. */
export function barChart(c: BarChart): string {
  const bars = c.groups.flatMap((_, gi) => c.series.map((s) => c.value(s, gi))).filter((b) => b !== undefined && b.median > 0)
  const max = c.log ? Math.max(...bars.map((b) => b!.max)) : Math.max(1, ...bars.map((b) => b!.max))
  const lo = c.log ? Math.floor(Math.log10(Math.min(...bars.map((b) => b!.min).filter((v) => v > 0)))) : 0
  const hi = c.log ? Math.ceil(Math.log10(max)) : max
  const W = 900
  const H = 420
  const left = 50
  const bottom = 60
  const plotH = H - bottom - 40
  const groupW = (W - left - 20) / c.groups.length
  const barW = (groupW - 10) / c.series.length
  const y = (v: number): number => 40 + plotH - ((c.log ? Math.log10(Math.max(v, 10 ** lo)) - lo : v) / (hi - lo)) * plotH
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="20" font-size="14">${c.title}</text>`,
  ]
  const ticks: number[] = []
  if (c.log) for (let e = lo; e <= hi; e++) ticks.push(10 ** e)
  else for (let t = 0; t <= max; t += max > 4 ? 1 : 0.5) ticks.push(t)
  for (const t of ticks) {
    parts.push(
      `<line x1="${left}" x2="${W - 20}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/><text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${c.log ? Number(t.toPrecision(1)) : t}</text>`,
    )
  }
  const base = c.log ? 10 ** lo : 0
  c.groups.forEach((label, gi) => {
    const gx = left + gi * groupW + 5
    parts.push(`<text x="${gx + groupW / 2 - 5}" y="${H - bottom + 16}" text-anchor="middle">${label}</text>`)
    c.series.forEach((name, i) => {
      const bar = c.value(name, gi)
      if (!bar || (c.log && bar.median <= 0)) return
      const x = gx + i * barW
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(bar.median).toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(y(base) - y(bar.median)).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"/>`,
      )
      const cx = (x + barW / 2).toFixed(1)
      parts.push(`<line x1="${cx}" x2="${cx}" y1="${y(bar.max).toFixed(1)}" y2="${y(bar.min).toFixed(1)}" stroke="#333"/>`)
    })
  })
  c.series.forEach((name, i) => {
    const lx = left + (i % 4) * 210
    const ly = H - 28 + Math.floor(i / 4) * 14
    parts.push(`<rect x="${lx}" y="${ly - 9}" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${lx + 14}" y="${ly}">${name}</text>`)
  })
  parts.push('</svg>')
  return `${parts.join('\n')}\n`
}

/** A grouped bar chart of median GB/s per chunk size for the memory-write variants. */
export function svg(r: BenchResult): string {
  const chunks = r.options.chunks
  return barChart({
    title: 'Loopback send throughput, GB/s (median; whiskers min-max)',
    groups: chunks.map(chunkLabel),
    series: variantsOf(r, false),
    value: (name, gi) => find(r, name, chunks[gi])?.gbps,
  })
}

function httpFind(r: HttpBenchResult, server: string, size: number): HttpRow | undefined {
  return r.rows.find((x) => x.server === server && x.size === size)
}

/** The servers of an HTTP run that were measured, in table order. */
function httpServers(r: HttpBenchResult): string[] {
  return r.checks.map((c) => c.server).filter((s) => r.rows.some((x) => x.server === s))
}

function rpsCell(row: HttpRow | undefined): string {
  if (!row) return '-'
  const f = (v: number): string => (v >= 100 ? v.toFixed(0) : v.toFixed(1))
  return `${f(row.rps.median)} [${f(row.rps.min)}-${f(row.rps.max)}]`
}

/** The HTTP benchmark's stdout table: requests/s median [min-max] per server and size, then the goals. */
export function httpTable(r: HttpBenchResult): string {
  const sizes = r.options.sizes
  const lines = [`HTTP/1.1 keep-alive, wrk -t1 -c${r.options.connections} -d${r.options.duration}s, ${r.options.reps} run(s); requests/s median [min-max]`]
  lines.push(['server'.padEnd(16), ...sizes.map((s) => chunkLabel(s).padStart(22))].join(' '))
  for (const name of httpServers(r)) lines.push([name.padEnd(16), ...sizes.map((s) => rpsCell(httpFind(r, name, s)).padStart(22))].join(' '))
  for (const g of httpGoals(r)) lines.push(`${g.id} ${g.pass === null ? 'n/a' : g.pass ? 'met' : 'MISSED'}: ${g.detail}`)
  for (const c of r.checks) if (!c.ok) lines.push(`!!! ${c.server} served WRONG BYTES and is not reported: ${c.detail}`)
  for (const s of r.skipped) lines.push(`!!! ${s}`)
  return lines.join('\n')
}

/**
 * The goals of the HTTP issue, as ratios of median body GB/s within this run: for one file size
 * that is the ratio of requests/s, without counting only the responses that finished in time.
 */
export function httpGoals(r: HttpBenchResult): Goal[] {
  const rate = (server: string, size: number): number | undefined => httpFind(r, server, size)?.gbps.median
  const ratio = (id: string, text: string, other: string, sizes: number[], min: number | null, ours = 'respondWithFile'): Goal => {
    const parts = sizes.flatMap((s) => {
      const a = rate(ours, s)
      const b = rate(other, s)
      return a === undefined || b === undefined || b === 0 ? [] : [[s, a / b] as const]
    })
    return {
      id,
      text,
      pass: parts.length && min !== null ? parts.every(([, x]) => x >= min) : null,
      detail: parts.map(([s, x]) => `${chunkLabel(s)}: ${x.toFixed(2)}×`).join('; ') || 'not measured',
    }
  }
  const sizes = r.options.sizes
  return [
    ratio(
      'H1',
      'respondWithFile ≥ 0.9× nginx at 1 MiB and above',
      'nginx',
      sizes.filter((s) => s >= 1 << 20),
      0.9,
    ),
    ratio(
      'H2',
      'respondWithFile ≥ 2× `send` at 64 KiB and above',
      'send',
      sizes.filter((s) => s >= 64 * KiB),
      2,
    ),
    ratio(
      'H3',
      'respondWithFile ≥ 1.0× `createReadStream().pipe()` at 4 KiB',
      'pipe',
      sizes.filter((s) => s === 4 * KiB),
      1,
    ),
    ratio('S1', '`serveStatic` against `serve-static` (the ratio, every size)', 'serve-static', sizes, null, 'serveStatic'),
    ...(['respondWithFile', 'serveStatic'] as const).map((ours, i) =>
      ratio(
        `P${i + 1}`,
        `${ours} ≥ 1.0× node:http from memory at 4 KiB and 64 KiB`,
        'node-memory',
        sizes.filter((s) => s === 4 * KiB || s === 64 * KiB),
        1,
        ours,
      ),
    ),
    ratio('P3', 'respondWithFile ≥ 1.0× Bun at every size', 'bun', sizes, 1),
    ratio(
      'P4',
      'respondWithFile ≥ 0.9× nginx at 1 MiB and at 16 MiB',
      'nginx',
      sizes.filter((s) => s === 1 << 20 || s === 16 << 20),
      0.9,
    ),
    ...(
      [
        ['F', 'zerocopy-socket/fastify', 'zc-fastify', '@fastify/static', 'fastify-static'],
        ['K', 'zerocopy-socket/koa', 'zc-koa', 'koa-static', 'koa-static'],
        ['N', 'zerocopy-socket/hono', 'zc-hono', "Hono's serveStatic", 'hono-static'],
      ] as const
    ).flatMap(([id, label, ours, anchorLabel, anchor]) => [
      ratio(
        `${id}1`,
        `\`${label}\` ≥ 2× ${anchorLabel} at 64 KiB and above`,
        anchor,
        sizes.filter((s) => s >= 64 * KiB),
        2,
        ours,
      ),
      ratio(
        `${id}2`,
        `\`${label}\` ≥ 1.0× ${anchorLabel} at 4 KiB`,
        anchor,
        sizes.filter((s) => s === 4 * KiB),
        1,
        ours,
      ),
    ]),
  ]
}

/** docs/benchmarks-http.md: machine and versions, method, the chart, the tables, the goals and `notes` (prose). */
export function httpMarkdown(r: HttpBenchResult, described: [string, string][], notes = ''): string {
  const sizes = r.options.sizes
  const servers = httpServers(r)
  const m = r.machine
  const o = r.options
  const lines = [
    '# HTTP file-serving benchmark',
    '',
    '<!-- Generated by `npm run bench:http` (bench/http.ts). Do not edit by hand: rerun it (`-- --report-only` after editing bench/http-analysis.md). -->',
    '',
    `${m.cores} × ${m.cpus}, Linux ${m.kernel}, Node ${m.node}, ${m.nginx}, ${[...(m.runtimes ?? []), m.wrk.split(' [')[0]].join(', ')}; ${m.date}; 1-minute load average ${m.loadavg.start.toFixed(1)} at the start, ${m.loadavg.end.toFixed(1)} at the end (the machine is shared). The loopback TCP benchmark is in [benchmarks.md](benchmarks.md).`,
    '',
    `Files of ${sizes.map(chunkLabel).join(', ')} (KiB, MiB) in a temporary directory, read once before measuring so they are served from the page cache. Each server runs in its own process, one at a time, on 127.0.0.1; \`wrk -t1 -c${o.connections} -d${o.duration}s --timeout 60s --latency\` with keep-alive requests one file (the 60 s timeout keeps slow 256 MiB responses from counting as timeouts). Interleaved: for each of ${o.reps} repetitions, for each size, the servers in a seeded shuffled order; each measurement starts its server afresh, warms it up with ${o.warmup} s of the same load, then measures. Requests/s (completed responses per second) are median [min-max] over the repetitions. GB/s counts body bytes received, whole responses or not (wrk's bytes read less each response's headers), so it does not jump with the few 256 MiB responses that finish within a measurement; the goals compare GB/s, which for one file size is the ratio of requests/s. Server CPU is the server process's utime + stime (all its threads; nginx: its one worker) from \`/proc/<pid>/stat\` around the measurement, per GB of body; p99 is wrk's latency distribution (median over repetitions). wrk and the server share the machine's ${m.cores} cores (and other work on it), so compare within this run only.`,
    '',
    `Before measuring, every server served every file once to Node's http client over one keep-alive connection, and each body's SHA-256 was compared with the file's: ${r.checks.map((c) => `${c.server} ${c.ok ? 'byte-exact' : '**WRONG BYTES, not reported**'}`).join(', ')}.`,
    '',
    '![GB/s per file size and server](benchmarks-http.svg)',
    '',
    '## Requests/s',
    '',
    `| server | ${sizes.map(chunkLabel).join(' | ')} |`,
    `|---|${sizes.map(() => '---').join('|')}|`,
    ...servers.map((name) => `| ${name} | ${sizes.map((s) => rpsCell(httpFind(r, name, s))).join(' | ')} |`),
    '',
    '## Goals (ratios of median GB/s in this run)',
    '',
    '| goal | | result |',
    '|---|---|---|',
    ...httpGoals(r).map(
      (g) => `| ${g.id}: ${g.text} | ${g.pass === null ? (g.id.startsWith('S') ? 'ratio' : 'n/a') : g.pass ? 'met' : '**missed**'} | ${g.detail} |`,
    ),
    '',
    '## Per server and size',
    '',
    '| server | size | requests/s | GB/s | server CPU s/GB | p99 ms | responses | wrk errors |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for (const size of sizes) {
    for (const name of servers) {
      const row = httpFind(r, name, size)
      if (!row) continue
      lines.push(
        `| ${name} | ${chunkLabel(size)} | ${rpsCell(row)} | ${row.gbps.median.toFixed(3)} [${row.gbps.min.toFixed(3)}-${row.gbps.max.toFixed(3)}] | ${Number.isFinite(row.cpuPerGB) ? row.cpuPerGB.toFixed(2) : '-'} | ${row.p99Ms === null ? '-' : row.p99Ms.toFixed(2)} | ${row.requests} | ${row.errors} |`,
      )
    }
  }
  if (notes) lines.push('', notes.trim())
  lines.push('', '## Servers', '')
  for (const [name, what] of described) lines.push(`- \`${name}\`: ${what}`)
  for (const c of r.checks) if (!c.ok) lines.push('', `**${c.server} served wrong bytes and is not reported:** ${c.detail}`)
  for (const s of r.skipped) lines.push('', `**Skipped:** ${s}`)
  lines.push('')
  return lines.join('\n')
}

/** Median GB/s per file size, one bar per server, on a log axis (4 KiB and 256 MiB differ by decades). */
export function httpSvg(r: HttpBenchResult): string {
  const sizes = r.options.sizes
  return barChart({
    title: 'HTTP file serving over loopback, GB/s of body (median; whiskers min-max; log scale)',
    groups: sizes.map(chunkLabel),
    series: httpServers(r),
    value: (name, gi) => httpFind(r, name, sizes[gi])?.gbps,
    log: true,
  })
}
