/**
 * The other JavaScript runtimes of the HTTP benchmark, Bun and Deno, as users get them: from
 * the npm registry (packages `bun` and `deno`, which carry the binary in a platform package).
 * Installed on first use, at pinned versions, into a cache directory under `os.tmpdir()`, never
 * into the project, so `npm install` of this package does not fetch two runtimes.
 * @module
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'

/** The runtimes and the exact versions the benchmark runs. */
export const RUNTIMES = { bun: '1.4.5', deno: '2.9.6' } as const

/** A runtime's name. */
export type Runtime = keyof typeof RUNTIMES

const CACHE = join(os.tmpdir(), 'zerocopy-socket-bench-runtimes')

/** `bun --version` / `deno --version`'s first line, or `null` when the binary does not run. */
function versionLine(bin: string): string | null {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', env: { ...process.env, DENO_NO_UPDATE_CHECK: '1' } })
  return r.status === 0 ? r.stdout.trim().split('\n')[0] : null
}

/**
 * The path of `runtime`'s binary at its pinned version, installing it from the npm registry
 * first if the cache does not have it.
 * @returns The binary and its version line.
 * @throws An `Error` saying why the runtime cannot run here (no registry, no binary for this platform).
 */
export function ensureRuntime(runtime: Runtime): { bin: string; version: string } {
  const dir = join(CACHE, `${runtime}-${RUNTIMES[runtime]}`)
  const bin = join(dir, 'node_modules', '.bin', runtime)
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'package.json'), '{"private":true}\n')
    try {
      // Install scripts stay off (npm 11's default for dependencies): the binary comes in the
      // platform package, not from a download.
      execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', dir, `${runtime}@${RUNTIMES[runtime]}`], { stdio: 'ignore' })
    } catch (e) {
      throw new Error(`npm install ${runtime}@${RUNTIMES[runtime]} failed: ${(e as Error).message.split('\n')[0]}`)
    }
  }
  const version = versionLine(bin)
  if (version === null) throw new Error(`${bin} does not run on this machine`)
  return { bin, version: `${runtime} ${version.replace(/^deno /, '')}` }
}
