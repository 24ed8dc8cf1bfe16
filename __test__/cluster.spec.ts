/**
 * node:cluster, as users deploy a file server: a primary and two workers sharing one port
 * (the primary accepts and hands each connection to a worker). respondWithFile and
 * serveStatic answer from both workers, each with its own engine and descriptor cache:
 * every body byte-exact, large files page-cache-to-socket, and no descriptor left open
 * once the workers disconnect.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { deadline, fixture, patternBytes, rng, SEED, sha256, zcSerial } from './helpers'

const FILES: Record<string, Buffer> = {
  'small.txt': patternBytes(1000, 1),
  'mid.bin': patternBytes(100_000, 2),
  'big.bin': patternBytes(3 * 1024 * 1024 + 7, 3),
}

function get(port: number, path: string, agent: http.Agent | false): Promise<{ status: number; pid: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode!, pid: String(res.headers['x-pid']), body: Buffer.concat(chunks) }))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

zcSerial(`a cluster of two workers: every response byte-exact from both, big files zero-copy, no descriptor left (seed ${SEED})`, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'zc-cluster-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  for (const [name, bytes] of Object.entries(FILES)) writeFileSync(join(root, name), bytes)
  const primary = spawn(process.execPath, [fixture('cluster-server.cjs'), root, '2'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => primary.kill('SIGKILL'))
  const lines: Record<string, unknown>[] = []
  let out = ''
  const port = deadline(
    new Promise<number>((resolve) =>
      primary.stdout.on('data', (c: Buffer) => {
        out += c
        const parts = out.split('\n')
        out = parts.pop()!
        for (const line of parts) {
          const o = JSON.parse(line) as Record<string, unknown>
          if (typeof o.port === 'number') resolve(o.port)
          else if (o.workerDied !== undefined) t.fail(`a worker died: ${line}`)
          else lines.push(o)
        }
      }),
    ),
    20_000,
    'the cluster listens',
  )
  // 'close', not 'exit': the workers share the primary's stdout, so this also waits for their
  // last lines (a closing worker writes after the primary's disconnect callback ran).
  const exited = new Promise<number | null>((resolve) => primary.on('close', resolve))
  const p = await port

  const random = rng(SEED)
  const names = Object.keys(FILES)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  const pids = new Set<string>()
  const requests = Array.from({ length: 120 }, (_, i) => {
    const name = names[Math.floor(random() * names.length)]
    const path = `${random() < 0.5 ? '/rwf/' : '/static/'}${name}`
    return deadline(get(p, path, random() < 0.5 ? agent : false), 20_000, `request ${i} ${path}`).then((r) => {
      t.is(r.status, 200, path)
      t.is(sha256(r.body), sha256(FILES[name]), `${path} from worker ${r.pid}`)
      pids.add(r.pid)
    })
  })
  await Promise.all(requests)
  agent.destroy()
  t.is(pids.size, 2, 'both workers answered')

  primary.kill('SIGTERM')
  t.is(await deadline(exited, 20_000, 'the primary exits'), 0)
  const results = lines.filter((l) => typeof l.url === 'string')
  t.deepEqual(
    results.filter((r) => r.error !== undefined),
    [],
  )
  const big = results.filter((r) => r.url === '/rwf/big.bin')
  t.true(big.length > 0, 'respondWithFile sent the big file')
  for (const r of big) t.deepEqual([r.bytes, r.zeroCopy, r.fallbackReason], [FILES['big.bin'].length, true, null], JSON.stringify(r))
  const closed = lines.filter((l) => l.closed === true)
  t.deepEqual(
    closed.map((l) => l.fdsUnderRoot),
    [0, 0],
    'each worker closed its cached descriptors with its server',
  )
})
