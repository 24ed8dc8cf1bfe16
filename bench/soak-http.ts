/**
 * `npm run soak:http`: 1,000,000 requests (SOAK_REQUESTS) over 10,000 distinct files
 * (SOAK_FILES, 1 byte to 256 KiB) answered by `respondWithFile` in a child server, from `wrk`
 * with a Lua script that asks for a random file each time, half of the time one of 100 hot
 * files (8 keep-alive connections). Every second it prints requests, the server's RSS, its
 * open descriptors and the descriptor cache's counts (with the small bodies it keeps); at the end the server's RSS must be within 32 MiB of its level after the first tenth,
 * its open descriptors at most the cache's bound above its baseline, and back at the baseline
 * once the server closed, or it exits 1. Not part of `npm test`.
 */
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import { inScratchDir } from './harness'

const REQUESTS = Number(process.env.SOAK_REQUESTS ?? 1_000_000)
const FILES = Number(process.env.SOAK_FILES ?? 10_000)
const MiB = 2 ** 20

/** The child: serves `root` with respondWithFile, reports its numbers on request. */
async function child(root: string): Promise<void> {
  const { respondWithFile, fileCacheStats } = await import('../index')
  const server = http.createServer((req, res) => {
    if (req.url === '/__stats') {
      const body = JSON.stringify({ rss: process.memoryUsage().rss, fds: readdirSync('/proc/self/fd').length, cache: fileCacheStats() })
      res.writeHead(200, { 'content-length': Buffer.byteLength(body) }).end(body)
      return
    }
    respondWithFile(res, join(root, req.url!.slice(1))).catch(() => {
      if (res.headersSent) res.destroy()
      else res.writeHead(404).end()
    })
  })
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`))
  process.on('message', (m) => {
    if (m !== 'close') return
    server.closeAllConnections()
    server.close(() => {
      global.gc?.()
      process.send!({ fds: readdirSync('/proc/self/fd').length, cache: fileCacheStats() })
    })
  })
}

interface Sample {
  rss: number
  fds: number
  cache: { open: number; hits: number; misses: number; bodyBytes: number; maxEntries: number }
}

function statsOf(port: number): Promise<Sample> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/__stats', agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.once('end', () => resolve(JSON.parse(body) as Sample))
      })
      .once('error', reject)
  })
}

async function main(work: string): Promise<boolean> {
  const root = join(work, 'files')
  mkdirSync(root)
  let seed = 7
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0
    return seed % n
  }
  for (let i = 0; i < FILES; i++) writeFileSync(join(root, `f${i}`), Buffer.alloc(1 + rand(256 * 1024), i & 0xff))
  const lua = join(work, 'random.lua')
  // Half the requests for a hot set of 100 files (the cache keeps their descriptors and small
  // bodies), half for any of the files (mostly misses that evict and close).
  const hot = Math.min(100, FILES) - 1
  writeFileSync(
    lua,
    `math.randomseed(42)\nrequest = function()\n  local n = math.random() < 0.5 and math.random(0, ${hot}) or math.random(0, ${FILES - 1})\n  return wrk.format(nil, "/f" .. n)\nend\n`,
  )
  const server = spawn(process.execPath, ['--expose-gc', __filename, 'child', root], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  const lines = createInterface({ input: server.stdout! })
  const port = Number((await once(lines, 'line'))[0])
  const baseline = await statsOf(port)
  const samples: Sample[] = []
  let done = 0
  const started = Date.now()
  const seconds = 5
  console.log(`soak:http: ${REQUESTS} requests over ${FILES} files, wrk -t1 -c8 in ${seconds} s runs`)
  while (done < REQUESTS) {
    const out = execFileSync('wrk', ['-t1', '-c8', `-d${seconds}s`, '-s', lua, `http://127.0.0.1:${port}/`], { encoding: 'utf8' })
    const m = /(\d+) requests in/.exec(out)
    done += m ? Number(m[1]) : 0
    const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out)
    const s = await statsOf(port)
    samples.push(s)
    console.log(
      `${String(done).padStart(8)} requests, ${((Date.now() - started) / 1000).toFixed(0)} s: server RSS ${(s.rss / MiB).toFixed(1)} MiB, ${s.fds} fds, cache ${s.cache.open} open, ${(s.cache.bodyBytes / MiB).toFixed(1)} MiB kept, ${s.cache.hits} hits, ${s.cache.misses} misses${errors ? `, ${errors[0]}` : ''}`,
    )
  }
  server.send('close')
  const [closed] = (await once(server, 'message')) as [{ fds: number }]
  server.kill()
  const warm = samples[Math.max(0, Math.floor(samples.length / 10) - 1)]
  const last = samples[samples.length - 1]
  const maxFds = Math.max(...samples.map((s) => s.fds))
  const rssOk = last.rss - warm.rss <= 32 * MiB
  const fdsOk = maxFds - baseline.fds <= last.cache.maxEntries + 16 && closed.fds <= baseline.fds
  console.log(
    `RSS after the first tenth ${(warm.rss / MiB).toFixed(1)} MiB, at the end ${(last.rss / MiB).toFixed(1)} MiB (${rssOk ? 'flat' : 'GREW'}); fds: baseline ${baseline.fds}, at most ${maxFds} under load, ${closed.fds} after server.close() (${fdsOk ? 'ok' : 'LEAK'})`,
  )
  return rssOk && fdsOk
}

if (process.argv[2] === 'child') void child(process.argv[3])
else
  inScratchDir('zerocopy-soak-http-', main).then(
    (ok) => process.exit(ok ? 0 : 1),
    (e) => {
      console.error(`soak:http failed: ${(e as Error).message}`)
      process.exit(1)
    },
  )
