/**
 * The benchmark's command-line options, shared by `npm run bench` (bench/harness.ts) and
 * `zerocopy-socket bench`. Imports nothing heavy, so the CLI can declare them up front; every
 * value is checked here, so a bad one fails with one line before any child process starts.
 */
import { InvalidArgumentError, type Command } from 'commander'

import { SELECTABLE } from './variants'

/** What the options parse into. */
export interface BenchFlags {
  quick?: boolean
  only?: string[]
  chunks?: number[]
  total?: number
  reps?: number
  reportOnly?: boolean
}

/** The largest chunk size: each sender keeps at least 8 chunks in flight (a C sender 8 more), all in memory. */
export const MAX_CHUNK = 64 * 1024 * 1024

function positive(v: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new InvalidArgumentError(`expected ${what}, got '${v}'`)
  return n
}

function variants(v: string): string[] {
  const names = v.split(',')
  const unknown = names.find((n) => !SELECTABLE.includes(n))
  if (unknown !== undefined) throw new InvalidArgumentError(`unknown variant '${unknown}' (known: ${SELECTABLE.join(', ')})`)
  return names
}

/** Declares the benchmark options on `cmd`. */
export function benchOptions(cmd: Command): Command {
  return cmd
    .option('--quick', 'tiny totals: check that everything runs, not how fast')
    .option('--only <variants>', 'only these variants (and `sink`), comma-separated; docs are not written', variants)
    .option('--chunks <sizes>', `chunk sizes in bytes (1 to ${MAX_CHUNK}), comma-separated`, (v: string) =>
      v.split(',').map((x) => positive(x, `a size in bytes from 1 to ${MAX_CHUNK}`, MAX_CHUNK)),
    )
    .option('--total <bytes>', 'bytes per run', (v: string) => positive(v, 'bytes'))
    .option('--reps <n>', 'repetitions', (v: string) => positive(v, 'a count'))
    .option('--report-only', 'rewrite docs/benchmarks.md and .svg from docs/benchmarks.json')
}
