/**
 * The seeded random numbers of the stress runs (bench/stress.ts, bench/http-stress.ts): xorshift32,
 * small, fast and reproducible from a seed, so a failure replays from the seed it prints.
 * @module
 */

/** xorshift32: small, fast and reproducible from a seed. */
export class Rng {
  #x: number
  /** Starts from `seed` (0 is replaced by a fixed non-zero value). */
  constructor(seed: number) {
    this.#x = seed >>> 0 || 0x9e3779b9
  }
  /** The next 32-bit value. */
  next(): number {
    let x = this.#x
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.#x = x >>> 0
    return this.#x
  }
  /** An integer in `[0, n)`. */
  int(n: number): number {
    return this.next() % n
  }
  /** `true` with probability `p`. */
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p
  }
  /** One of `items`, uniformly. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }
}
