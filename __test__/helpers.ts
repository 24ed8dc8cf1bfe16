import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { clearFileCache, configureFileCache, probe } from '../index'

const report = probe()

/** Why tests that need io_uring SEND_ZC cannot run here, or `null` when they can. */
export const zeroCopyUnavailable: string | null = report.supported ? null : (report.reason?.message ?? 'unknown reason')

if (zeroCopyUnavailable !== null) {
  console.error(`\n!!! io_uring SEND_ZC is unavailable, zero-copy tests are SKIPPED: ${zeroCopyUnavailable}\n`)
}

/** `test` when zero-copy sends work here, otherwise `test.skip` (announced loudly above). */
export const zcTest = zeroCopyUnavailable === null ? test : test.skip

/** `test.serial` when zero-copy sends work here, otherwise `test.serial.skip`. */
export const zcSerial = zeroCopyUnavailable === null ? test.serial : test.serial.skip

/** A connected loopback TCP pair on 127.0.0.1: `client` dialled `server`. */
export async function loopbackPair(): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> {
  const listener = net.createServer()
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const { port } = listener.address() as net.AddressInfo
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve))
  const client = net.connect({ port, host: '127.0.0.1' })
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject))
  const server = await accepted
  listener.close()
  return {
    client,
    server,
    close: () => {
      client.destroy()
      server.destroy()
    },
  }
}

/** Everything `socket` receives until its peer ends the stream. */
export function collect(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.once('end', () => resolve(Buffer.concat(chunks)))
    socket.once('error', reject)
  })
}

/** SHA-256 of every byte `socket` receives until the peer ends, plus the byte count. */
export function hashReceived(socket: net.Socket): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    let bytes = 0
    socket.on('data', (c: Buffer) => {
      bytes += c.length
      h.update(c)
    })
    socket.once('end', () => resolve({ bytes, sha256: h.digest('hex') }))
    socket.once('error', reject)
  })
}

/** Rejects with a clear message if `p` has not settled within `ms`: a hang fails the test. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${ms} ms (hang)`)), ms)
    }),
  ])
}

/** SHA-256 of the concatenation of `parts`. */
export function sha256(...parts: Uint8Array[]): string {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex')
}

/** The file descriptor libuv uses for `socket` (Linux/macOS). */
export function fdOf(socket: net.Socket): number {
  return (socket as unknown as { _handle: { fd: number } })._handle.fd
}

/** Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced. */
export function patternBytes(length: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** xorshift32 in [0, 1), reproducible from its seed. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

/** The seed of a seeded random test: `ZC_TEST_SEED`, or one drawn now (print it). */
export const SEED = Number(process.env.ZC_TEST_SEED ?? Date.now() % 1_000_000)

/** The addon built with the `force-unsupported` feature: what macOS and Windows load. */
/** Path of a script in `__test__/fixtures/`. */
export const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

export const STUB_ADDON = fileURLToPath(new URL('../build/stub/zerocopy-socket.node', import.meta.url))

/**
 * For `NAPI_RS_NATIVE_LIBRARY_PATH`: a file that does not exist, so `binding.js` loads no addon
 * at all (napi's own override; the package's loader honours no test-only switch).
 */
export const NO_ADDON = fileURLToPath(new URL('../build/no-such-addon.node', import.meta.url))

/**
 * Runs `node <file> <args...>` and returns its exit code, last stdout line as JSON, and stderr.
 * With `timeout` (ms) the child is killed (`SIGTERM`, code `null`) if it is still running then.
 */
export function runNode(
  file: string,
  args: string[] = [],
  env: Record<string, string> = {},
  timeout?: number,
): Promise<{ code: number | null; json: unknown; stderr: string }> {
  return runCommand(process.execPath, [file, ...args], env, timeout)
}

/** {@link runNode} for any command (a shell that sets a limit, then execs node). */
export function runCommand(
  command: string,
  args: string[],
  env: Record<string, string> = {},
  timeout?: number,
): Promise<{ code: number | null; json: unknown; stderr: string }> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], timeout })
  let out = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (out += c))
  child.stderr.on('data', (c: Buffer) => (stderr += c))
  return new Promise((resolve) =>
    child.on('close', (code) => {
      let json: unknown = null
      try {
        json = JSON.parse(out.trim().split('\n').pop() ?? '')
      } catch {
        json = null
      }
      resolve({ code, json, stderr })
    }),
  )
}

/**
 * Runs `script` (CommonJS source, with `zc` bound to the package) in a child Node process and
 * returns what it printed with `console.log(JSON.stringify(...))` on its last line.
 */
export function runChild(script: string, env: Record<string, string> = {}): Promise<{ code: number | null; json: unknown; stderr: string }> {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const child = spawn(process.execPath, ['-e', `const zc = require(${JSON.stringify(root)});\n${script}`], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (out += c))
  child.stderr.on('data', (c: Buffer) => (stderr += c))
  return new Promise((resolve) =>
    child.on('close', (code) => {
      const last = out.trim().split('\n').pop() ?? ''
      let json: unknown = null
      try {
        json = JSON.parse(last)
      } catch {
        json = null
      }
      resolve({ code, json, stderr })
    }),
  )
}

/** Descriptors of this process open on files under `dir` (Linux: `/proc/self/fd`). */
export function fdsUnder(dir: string): number {
  let n = 0
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++
    } catch {
      // closed meanwhile
    }
  }
  return n
}

/**
 * A fresh directory under the system's temporary directory for a descriptor-cache test; at the
 * test's end the cache gets its default limits back, closes its descriptors, and the directory goes.
 */
export function cacheScratch(t: { teardown(fn: () => void): void }, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => {
    configureFileCache({ maxEntries: 256, freshMs: 1000 })
    clearFileCache()
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/** A file of `bytes` in a fresh temporary directory, both removed at the test's end; its path. */
export function scratchFile(t: { teardown(fn: () => void): void }, prefix: string, bytes: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'f.bin')
  writeFileSync(file, bytes)
  return file
}
