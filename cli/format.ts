/** Number formatting and the progress bar shared by the CLI commands. */
import cliProgress from 'cli-progress'

/** `1536` → `"1.5 KiB"`. */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

/** Bytes over seconds as GB/s (decimal, as network rates are quoted). */
export function gbps(bytes: number, seconds: number): string {
  return seconds > 0 ? (bytes / seconds / 1e9).toFixed(2) : '-'
}

/** A progress bar on stderr (bytes, rate, ETA when the total is known); silent when not a TTY or `quiet`. */
export function progressBar(total: number | null, quiet: boolean): { update(bytes: number): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { update() {}, stop() {} }
  const started = process.hrtime.bigint()
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: total === null ? '{done} | {rate}' : '{bar} {percentage}% | {done} / {all} | {rate} | ETA {eta_formatted}',
      hideCursor: true,
      clearOnComplete: true,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  )
  const payload = (bytes: number): Record<string, string> => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    return { done: humanBytes(bytes), all: humanBytes(total ?? 0), rate: `${gbps(bytes, seconds)} GB/s` }
  }
  bar.start(total ?? 1, 0, payload(0))
  return {
    update: (bytes) => bar.update(total === null ? 0 : bytes, payload(bytes)),
    stop: () => bar.stop(),
  }
}
