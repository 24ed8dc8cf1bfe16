/**
 * `npm run soak`: 8 GiB (SOAK_GIB) through 8 concurrent ZeroCopySockets with random chunk sizes
 * and random peer resets. Every second it prints bytes, rate, errors by code, RSS and open fds;
 * at the end RSS must be back within 32 MiB of its level after warm-up and the fd count back at
 * its baseline, or it exits 1. Not part of `npm test`.
 */
import { readdirSync } from 'node:fs'
import net from 'node:net'

import { ZeroCopySocket, type ZeroCopyMode } from '../index'

const GIB = 2 ** 30
const TOTAL = Number(process.env.SOAK_GIB ?? 8) * GIB
const SOCKETS = 8
const fds = (): number => readdirSync('/proc/self/fd').length
const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20

let seed = 12345
const rand = (n: number): number => {
  seed ^= seed << 13
  seed ^= seed >>> 17
  seed ^= seed << 5
  return (seed >>> 0) % n
}

let sent = 0
const errors = new Map<string, number>()
let resets = 0

/** A peer that reads and, now and then, resets the connection at a random point. */
function server(): Promise<net.Server> {
  const srv = net.createServer((s) => {
    const resetAt = rand(2) === 0 ? rand(256 << 20) : Number.POSITIVE_INFINITY
    let got = 0
    s.on('data', (c: Buffer) => {
      got += c.length
      if (got > resetAt && !s.destroyed) {
        resets++
        s.resetAndDestroy()
      }
    })
    s.on('error', () => {})
  })
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)))
}

async function worker(port: number, share: number): Promise<void> {
  const chunks = Array.from({ length: 16 }, () => Buffer.alloc(1 + rand(1 << 20), rand(256)))
  let mine = 0
  while (mine < share) {
    const mode = (['auto', 'always', 'never'] as ZeroCopyMode[])[rand(3)]
    const zs = await ZeroCopySocket.connect({ host: '127.0.0.1', port, zeroCopy: mode })
    const window: Promise<unknown>[] = []
    let broken = false
    // Connections of random length, so that resets and reconnects happen throughout.
    const stop = Math.min(share, mine + (64 << 20) + rand(512 << 20))
    for (let i = 0; mine < stop && !broken; i++) {
      if (window.length === chunks.length) await window.shift()
      const c = chunks[i % chunks.length]
      window.push(
        zs.write(c).then(
          () => {
            sent += c.length
            mine += c.length
          },
          (e: { code?: string }) => {
            broken = true
            errors.set(e.code ?? 'unknown', (errors.get(e.code ?? 'unknown') ?? 0) + 1)
          },
        ),
      )
      if (i % 64 === 0) await new Promise((r) => setImmediate(r))
    }
    await Promise.all(window)
    if (!broken) await zs.end().catch(() => {})
    zs.destroy()
  }
}

async function main(): Promise<void> {
  const srv = await server()
  const port = (srv.address() as net.AddressInfo).port
  // Warm up: the engine's ring and eventfd live as long as the process.
  const warm = await ZeroCopySocket.connect({ host: '127.0.0.1', port })
  await warm.write(Buffer.alloc(1024))
  await warm.end()
  warm.destroy()
  await new Promise((r) => setTimeout(r, 100))
  const baseFds = fds()
  const t0 = Date.now()
  let warmRss = 0
  const tick = setInterval(() => {
    const s = (Date.now() - t0) / 1000
    if (warmRss === 0 && s >= 1) warmRss = rssMiB()
    const errs = [...errors].map(([k, v]) => `${k}=${v}`).join(' ') || 'none'
    console.log(
      `${s.toFixed(0).padStart(4)} s  ${(sent / GIB).toFixed(2).padStart(6)} GiB  ${(sent / s / 1e9).toFixed(2)} GB/s  rss ${rssMiB().toFixed(0)} MiB  fds ${fds()}  resets ${resets}  errors ${errs}`,
    )
  }, 1000)
  await Promise.all(Array.from({ length: SOCKETS }, () => worker(port, TOTAL / SOCKETS)))
  clearInterval(tick)
  srv.close()
  await new Promise((r) => setTimeout(r, 500))
  ;(globalThis as { gc?: () => void }).gc?.()
  await new Promise((r) => setTimeout(r, 500))
  const endRss = rssMiB()
  const endFds = fds()
  console.log(
    `done: ${(sent / GIB).toFixed(2)} GiB in ${((Date.now() - t0) / 1000).toFixed(1)} s; resets ${resets}; errors ${JSON.stringify(Object.fromEntries(errors))}`,
  )
  console.log(`rss after warm-up ${warmRss.toFixed(0)} MiB, at the end ${endRss.toFixed(0)} MiB; fds ${baseFds} before, ${endFds} after`)
  const rssOk = warmRss === 0 || endRss - warmRss <= 32
  const fdOk = endFds <= baseFds
  console.log(rssOk && fdOk ? 'soak OK' : `soak FAILED: ${rssOk ? '' : 'RSS grew; '}${fdOk ? '' : 'fds leaked'}`)
  process.exit(rssOk && fdOk ? 0 : 1)
}

main().catch((e) => {
  console.error(`soak failed: ${e.message}`)
  process.exit(1)
})
