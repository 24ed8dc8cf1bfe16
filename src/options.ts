/**
 * The options of a `ZeroCopySocket`: their types, their checks, their defaults, and which
 * writes they make go into a batch of small writes.
 * @module
 */
import { invalidArgType } from './errors'
import { validateAbortSignal, validateInteger, validateOneOf, validateOptions } from './validate'

/** How a socket chooses between plain and zero-copy sends. */
export type ZeroCopyMode = 'auto' | 'always' | 'never'

/** Options for {@link ZeroCopySocket.from} and {@link ZeroCopySocket.connect}. */
export interface ZeroCopyOptions {
  /**
   * `'auto'`: zero-copy for writes of at least `threshold` bytes, plain (coalesced) sends below.
   * `'always'`: zero-copy for every write. `'never'`: plain sends only.
   * **Default:** `'auto'`.
   */
  zeroCopy?: ZeroCopyMode | undefined
  /** Bytes; in `'auto'`, writes at least this large go out zero-copy. **Default:** `16384`. */
  threshold?: number | undefined
  /**
   * Bytes; the largest single zero-copy request. Larger writes are split into pieces of this
   * size (in order, one in flight). Measured on loopback: 64 KiB pieces ran 3.0–3.2 GB/s,
   * 1 MiB pieces 1.65 GB/s. **Default:** `65536`.
   */
  zeroCopyChunk?: number | undefined
}

/** Options for {@link ZeroCopySocket.connect}: where to connect, plus {@link ZeroCopyOptions}. */
export interface ConnectOptions extends ZeroCopyOptions {
  /** Host name or address. **Default:** `'localhost'`. */
  host?: string | undefined
  /** TCP port, 0–65535. Required. */
  port: number
  /** Aborts the connection attempt (rejects with `AbortError`). */
  signal?: AbortSignal | undefined
}

/** Options for {@link ZeroCopySocket.write}. */
export interface WriteOptions {
  /**
   * Aborts the write: if none of its bytes reached the kernel it is withdrawn; otherwise it
   * completes (a half-written chunk would corrupt the stream). Either way the promise rejects
   * with `AbortError`, once the kernel no longer uses the buffer.
   */
  signal?: AbortSignal | undefined
}

/** Options for {@link ZeroCopySocket.createWriteStream}. */
export interface WriteStreamOptions {
  /** Bytes buffered before `write()` returns `false`. **Default:** `1048576` (1 MiB). */
  highWaterMark?: number | undefined
}

/** {@link ZeroCopyOptions} with their defaults filled in. */
export interface SendPolicy {
  /** {@link ZeroCopyOptions.zeroCopy}. */
  mode: ZeroCopyMode
  /** {@link ZeroCopyOptions.threshold}, bytes. */
  threshold: number
  /** {@link ZeroCopyOptions.zeroCopyChunk}, bytes. */
  chunk: number
}

const MODES: readonly ZeroCopyMode[] = ['auto', 'always', 'never']

/**
 * Throws `ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE` or `ERR_OUT_OF_RANGE` for bad
 * {@link ZeroCopyOptions}.
 */
export function validateZeroCopyOptions(options: ZeroCopyOptions | undefined): void {
  validateOptions(options, 'options')
  validateOneOf(options?.zeroCopy, 'options.zeroCopy', MODES)
  if (options?.threshold !== undefined) validateInteger(options.threshold, 'options.threshold', 0, 0xffffffff)
  if (options?.zeroCopyChunk !== undefined) validateInteger(options.zeroCopyChunk, 'options.zeroCopyChunk', 4096, 0x7fffffff)
}

/** Throws as {@link validateZeroCopyOptions} does, and for a bad `port`, `host` or `signal`. */
export function validateConnectOptions(options: ConnectOptions): void {
  validateOptions(options, 'options')
  if (options === undefined) throw invalidArgType('options', 'of type object', options)
  validateInteger(options.port, 'options.port', 0, 65535)
  if (options.host !== undefined && typeof options.host !== 'string') throw invalidArgType('options.host', 'of type string', options.host)
  validateAbortSignal(options.signal, 'options.signal')
  validateZeroCopyOptions(options)
}

/** The policy `options` (already validated) ask for. */
export function sendPolicy(options: ZeroCopyOptions | undefined): SendPolicy {
  return { mode: options?.zeroCopy ?? 'auto', threshold: options?.threshold ?? 16384, chunk: options?.zeroCopyChunk ?? 65536 }
}

/**
 * Writes smaller than this (and, in `'auto'`, than `threshold`: those would be plain sends
 * anyway) are copied into a shared batch buffer and handed to the engine together (see
 * src/batch.ts); never in `'always'`.
 */
const SMALL_WRITE = 16 * 1024
/**
 * In `'auto'`, once the kernel reports that it copies zero-copy sends on this route anyway
 * (loopback), writes up to this size are batched too: zero-copy buys nothing there, and one
 * copy into a batch is cheaper than a native call and an engine round trip per write.
 */
const COPYING_ROUTE_BATCH = 64 * 1024

/** Which writes of a socket go into a batch: those below {@link below} bytes. */
export class BatchLimit {
  readonly #policy: SendPolicy
  #below: number
  #writes = 0

  /** The limit `policy` starts with (the route is not known yet). */
  constructor(policy: SendPolicy) {
    this.#policy = policy
    this.#below = policy.mode === 'always' ? 0 : policy.mode === 'auto' ? Math.min(policy.threshold, SMALL_WRITE) : SMALL_WRITE
  }

  /** The limit for the next non-empty write; in `'auto'` it looks at the route every 64 writes. */
  below(route: { readonly copiesAnyway: boolean }): number {
    if (this.#policy.mode === 'auto' && (++this.#writes & 63) === 0) {
      this.#below = route.copiesAnyway ? COPYING_ROUTE_BATCH + 1 : Math.min(this.#policy.threshold, SMALL_WRITE)
    }
    return this.#below
  }
}
