/**
 * The benchmark's command-line options, shared by `npm run bench` (bench/harness.ts) and
 * `zerocopy-socket bench`. Imports nothing heavy, so the CLI can declare them up front.
 */
import { InvalidArgumentError, type Command } from 'commander'

/** What the options parse into. */
export interface BenchFlags {
  quick?: boolean
  only?: string[]
  chunks?: number[]
  total?: number
  reps?: number
  reportOnly?: boolean
}

function positive(v: string, what: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected ${what}, got '${v}'`)
  return n
}

/** Declares the benchmark options on `cmd`. */
export function benchOptions(cmd: Command): Command {
  return cmd
    .option('--quick', 'tiny totals: check that everything runs, not how fast')
    .option('--only <variants>', 'only these variants (and `sink`), comma-separated; docs are not written', (v: string) => v.split(','))
    .option('--chunks <sizes>', 'chunk sizes in bytes, comma-separated', (v: string) => v.split(',').map((x) => positive(x, 'a size in bytes')))
    .option('--total <bytes>', 'bytes per run', (v: string) => positive(v, 'bytes'))
    .option('--reps <n>', 'repetitions', (v: string) => positive(v, 'a count'))
    .option('--report-only', 'rewrite docs/benchmarks.md and .svg from docs/benchmarks.json')
}
