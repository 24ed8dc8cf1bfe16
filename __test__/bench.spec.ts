import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { zcTest } from './helpers'

// The harness is CommonJS compiled by `npm run build`.
const require = createRequire(import.meta.url)
const { runBench } = require('../dist/bench/harness.js') as typeof import('../bench/harness')
type SinkResult = import('../bench/sink').SinkResult

zcTest(
  'bench harness smoke run: every Node variant transfers its bytes, and off loopback SEND_ZC reports no ZC_COPIED (tiny totals, counts only, no timing)',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'zc-bench-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const json = join(dir, 'quick.json')
    const log = console.log
    console.log = () => {} // the table goes to stdout; keep the test output clean
    try {
      await runBench({ quick: true, total: 1 << 20, chunks: [4096, 65536], verbose: false, json })
    } finally {
      console.log = log
    }
    const result = JSON.parse(readFileSync(json, 'utf8'))
    const nodeVariants = ['node_write', 'zc_auto', 'zc_always', 'zc_never', 'zc_pool', 'node_pipe', 'node_pipe_default', 'zc_sendfile']
    for (const v of nodeVariants) {
      const runs = result.runs.filter((r: { variant: string }) => r.variant === v)
      t.true(runs.length > 0, `${v} ran`)
      for (const r of runs) {
        t.true(r.ok, `${v}: receiver confirmed the byte count`)
        t.true(r.bytes >= 1 << 20, `${v}: sent the total`)
      }
    }
    t.is(result.rows.length, new Set(result.runs.map((r: { variant: string; chunk: number }) => `${r.variant}/${r.chunk}`)).size)
    if (result.skipped.length > 0) {
      // Loud, not silent: a skipped reference sender means the comparison is incomplete here.
      console.error(`\n!!! bench smoke run SKIPPED: ${result.skipped.join('; ')}\n`)
      t.log(`SKIPPED: ${result.skipped.join('; ')}`)
    }

    // The same run's off-loopback sink step: counts, no timing.
    const sink = result.sink as SinkResult
    if ('skipped' in sink) {
      // Loud, not silent: the run needs root for the namespace and the sink device.
      t.log(`SKIPPED the sink run: ${sink.skipped}`)
      t.true(process.getuid?.() !== 0, `as root the sink run must work: ${sink.skipped}`)
      return
    }
    const zc = sink.runs.filter((r) => r.mode === 'zc')
    const plain = sink.runs.filter((r) => r.mode === 'send')
    t.is(zc.length, 1)
    t.is(plain.length, 1)
    t.true(zc[0].bytes >= 1 << 20, `sent ${zc[0].bytes} bytes`)
    t.is(zc[0].bytes % sink.datagram, 0, 'whole datagrams only')
    t.is(plain[0].bytes, zc[0].bytes, 'both modes sent the same bytes')
    t.is(zc[0].notifications, zc[0].bytes / sink.datagram, 'one notification per SEND_ZC datagram')
    t.is(zc[0].copied, 0, 'the kernel did not copy: the pages went to the device and were released')
    t.is(plain[0].notifications, 0)
  },
)
