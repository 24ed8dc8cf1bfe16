/**
 * The operations a `ZeroCopySocket` holds in JavaScript, in order, before they go to its
 * transport: until the socket is adopted (connected, its own writes flushed), and behind a file
 * that is still being opened and checked.
 * @module
 */
import { abortError } from './errors'
import type { PreparedFile } from './file'
import type { PendingOps } from './pending'
import type { Transport } from './transport'

/** An operation waiting in JavaScript for its turn. */
export type HeldOp = { kind: 'write'; id: number; data: Uint8Array } | { kind: 'file'; id: number; file: Promise<PreparedFile> }

/** Closes a file that is still being opened once it is open (or gives up if opening failed). */
function closeWhenOpen(file: Promise<PreparedFile>): void {
  file.then(
    (f) => f.close(),
    () => {},
  )
}

/** One socket's held operations. */
export class HeldOps {
  /** In order; `null` when nothing waits and new writes may go straight to the transport. */
  #ops: HeldOp[] | null
  /**
   * {@link drain} is running. A second call returns at once without losing work: the running
   * one loops until the queue is empty, and every push happens on this thread before that
   * loop's next look (it only yields at `await`s, after which it looks again).
   */
  #draining = false
  #waiters: (() => void)[] = []
  readonly #pending: PendingOps
  readonly #transport: () => Transport | null

  /**
   * @param holding - Start holding (the transport is not chosen yet).
   * @param pending - The socket's pending operations, which held ones are entries of.
   * @param transport - The socket's transport, or `null` until it is chosen.
   */
  constructor(holding: boolean, pending: PendingOps, transport: () => Transport | null) {
    this.#ops = holding ? [] : null
    this.#pending = pending
    this.#transport = transport
  }

  /** Operations are held: a new write must queue behind them. */
  get holding(): boolean {
    return this.#ops !== null
  }

  /** Queues `op` behind every held operation (starting to hold if nothing was held). */
  push(op: HeldOp): void {
    ;(this.#ops ??= []).push(op)
  }

  /** Takes aborted operation `id` out if it is still held and rejects it; `false` if it is not held. */
  withdraw(id: number): boolean {
    const i = this.#ops?.findIndex((h) => h.id === id) ?? -1
    if (i < 0) return false
    const [op] = this.#ops!.splice(i, 1)
    if (op.kind === 'file') closeWhenOpen(op.file)
    this.#pending.settle(id, (q) => q.reject(abortError(q.signal)))
    return true
  }

  /** The socket was destroyed: every held operation rejects with `err`, and nothing is held. */
  discard(err: Error): void {
    const ops = this.#ops ?? []
    this.#ops = null
    for (const op of ops) {
      if (op.kind === 'file') closeWhenOpen(op.file)
      this.#pending.settle(op.id, (p) => p.reject(err))
    }
    // Nothing is held any more: whoever waits for that (end()) must look again, or it would wait forever.
    this.#wake()
  }

  /** Settles once nothing is held (drained, or discarded by a destroy). */
  async done(): Promise<void> {
    // Every wake-up comes from `drain` finishing or from `discard`, the only two places that
    // stop holding; the loop re-checks, so a stale wake-up is harmless.
    while (this.#ops !== null) await new Promise<void>((resolve) => this.#waiters.push(resolve))
  }

  /** Issues held operations in order, waiting for each file to be opened and checked. */
  async drain(): Promise<void> {
    const transport = this.#transport()
    if (this.#draining || transport === null) return
    this.#draining = true
    try {
      while (this.#ops !== null && this.#ops.length > 0) {
        const op = this.#ops[0]
        if (op.kind === 'write') {
          this.#ops.shift()
          transport.write(op.id, op.data)
          continue
        }
        let file: PreparedFile
        try {
          file = await op.file
        } catch (e) {
          if (this.#ops?.[0] === op) this.#ops.shift()
          this.#pending.settle(op.id, (p) => p.reject(e))
          continue
        }
        if (this.#ops?.[0] !== op) {
          await file.close() // aborted or destroyed while opening
          continue
        }
        this.#ops.shift()
        await this.#issueFile(transport, op.id, file)
      }
      this.#ops = null
    } finally {
      this.#draining = false
      this.#wake()
    }
  }

  async #issueFile(transport: Transport, id: number, file: PreparedFile): Promise<void> {
    const p = this.#pending.get(id)
    if (p) p.bytes = file.length
    this.#pending.inFlightBytes += file.length
    if (file.length === 0) {
      await file.close()
      this.#pending.settle(id, (q) => q.resolve({ bytes: 0, zeroCopy: false, copied: false }))
      return
    }
    await transport.sendFile(id, file)
  }

  #wake(): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w()
  }
}
