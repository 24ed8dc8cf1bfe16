/**
 * The transport interface: how a `ZeroCopySocket` hands its operations to whatever sends them,
 * the io_uring engine (src/engine-transport.ts) or the socket's own writes (src/fallback.ts).
 * The socket holds one transport and never asks which one it is.
 * @module
 */
import type { PreparedFile } from './file'
import type { SocketStats } from './socket'

/** A transport's counters: {@link SocketStats} without those the socket keeps itself. */
export type TransportStats = Omit<SocketStats, 'writes' | 'inFlightBytes' | 'engineStartFailures'>

/** What a transport needs of its socket. */
export interface SocketHooks {
  /** The socket's first error, or `null`. */
  error(): Error | null
  /** Records `err` as the socket's error unless it has one. */
  fail(err: Error): void
  /** The socket was destroyed. */
  destroyed(): boolean
  /** Tears the socket down (the connection is unusable). */
  destroy(): void
  /** Bytes moved outside the socket's own writes: activity for its idle timer. */
  touch(): void
  /** The socket's kernel descriptor now, or `-1` once it is closed (destroyed). */
  fd(): number
}

/**
 * One socket's sends. Every operation has a pending entry (src/pending.ts) under its `id`,
 * which the transport settles exactly once.
 */
export interface Transport {
  /** Sends go out as io_uring zero-copy requests where they can (`false` on the fallback). */
  readonly zeroCopyCapable: boolean
  /**
   * Small writes may be copied into a shared batch and handed over together (src/batch.ts):
   * true for the engine, whose per-call overhead that saves; the fallback's socket coalesces
   * on its own.
   */
  readonly batches: boolean
  /** `auto` found that the kernel copies zero-copy sends on this route anyway. */
  readonly copiesAnyway: boolean
  /**
   * A write may be sent inline ({@link sendNow}) as far as the policy goes: it would be a
   * plain, copying send anyway (`'never'`, or `'auto'` on a route that copies). Whether the
   * socket's ordering allows it is the caller's to check (src/socket.ts).
   */
  sendsInline(): boolean
  /**
   * Sends what fits of `data` now, on this thread, with one non-blocking copying send; returns
   * the bytes the kernel took (0 when the socket is full). Only when nothing of this socket is
   * queued or in flight with the transport. Throws the error the transport's own sends give
   * (the socket is then being destroyed).
   */
  sendNow(data: Uint8Array): number
  /** The counters, with the reason this socket does not send zero-copy (or `null`). */
  stats(): TransportStats
  /** Sends `data` after everything issued before; `data` stays unmodified until it settles. */
  write(id: number, data: Uint8Array): void
  /** Sends the prepared file range; resolves once `file` is closed (it may still be in flight). */
  sendFile(id: number, file: PreparedFile): Promise<void>
  /** Asks to withdraw operation `id` (already marked aborted) if none of it was sent. */
  abort(id: number): void
  /**
   * Half-closes after every queued byte, then waits until every operation settled. Rejects
   * with the socket's error, or `ERR_STREAM_DESTROYED`, when that is how the stream ended.
   */
  end(): Promise<void>
  /** The socket is being destroyed: everything pending fails with `err`, as soon as it may. */
  destroy(err: Error): void
  /** Hands the socket back once nothing is pending; nothing of it is left with the transport. */
  detach(): Promise<void>
}
