/**
 * The HTTP benchmark's command-line options (bench/http.ts). Every value is checked here, so a
 * bad one fails with one line before any server or wrk starts.
 */
import { Command, InvalidArgumentError } from 'commander'

import { HTTP_SERVERS } from './http-server'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/** What the command line parses into. */
export interface HttpBenchFlags {
  quick?: boolean
  sizes?: number[]
  duration?: number
  reps?: number
  only?: string[]
  reportOnly?: boolean
}

const UNITS: Record<string, number> = { '': 1, k: KiB, m: MiB, g: GiB }

/** `4096`, `4K`, `64KiB`, `1M`, `256MiB` → bytes (binary units), 1 byte to 1 GiB. */
export function parseSize(v: string): number {
  const m = /^(\d+)\s*([kmg]?)(?:i?b)?$/i.exec(v.trim())
  const n = m ? Number(m[1]) * UNITS[m[2].toLowerCase()] : NaN
  if (!Number.isSafeInteger(n) || n <= 0 || n > GiB)
    throw new InvalidArgumentError(`expected a file size from 1 byte to 1 GiB such as 4096, 64K or 1M, got '${v}'`)
  return n
}

function wholeNumber(v: string, what: string, max: number): number {
  const n = Number(v)
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n <= 0 || n > max) throw new InvalidArgumentError(`expected ${what} from 1 to ${max}, got '${v}'`)
  return n
}

function serverList(v: string): string[] {
  const known = HTTP_SERVERS.map((s) => s.name)
  const names = v.split(',').map((s) => s.trim())
  const unknown = names.find((n) => !known.includes(n))
  if (unknown !== undefined) throw new InvalidArgumentError(`unknown server '${unknown}' (known: ${known.join(', ')})`)
  return names
}

/** The `npm run bench:http` command, every value checked before anything starts. */
export function httpBenchCommand(): Command {
  return new Command('bench:http')
    .description('HTTP file-serving benchmark with wrk: writes docs/benchmarks-http.{md,svg,json} (full runs only)')
    .option('--quick', 'one 1 s repetition at 4K and 64K, no warm-up: check that everything runs, not how fast')
    .option('--sizes <sizes>', 'file sizes, comma-separated (bytes, or with K/M/G: 4K,64K,1M)', (v: string) => v.split(',').map(parseSize))
    .option('--duration <seconds>', 'whole seconds per measurement (wrk takes whole seconds)', (v: string) => wholeNumber(v, 'whole seconds', 600))
    .option('--reps <n>', 'repetitions', (v: string) => wholeNumber(v, 'a count', 100))
    .option('--only <servers>', `only these servers, comma-separated (${HTTP_SERVERS.map((s) => s.name).join(', ')}); docs are not written`, serverList)
    .option('--report-only', 'rewrite docs/benchmarks-http.md and .svg from docs/benchmarks-http.json')
}
