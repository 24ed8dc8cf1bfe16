/**
 * The JavaScript side of the native send engine: starts it once per thread and routes its
 * batched event records to the socket that owns them. The event loop is kept alive while the
 * engine owes events by the binding itself (crates/zerocopy-node/src/owed.rs), not from here.
 * @module
 */
import { credentialsChanged, recordEngineCredentials } from './credentials'
import { binding } from './native'

/** What a socket gets told about its writes and its lifecycle. */
export interface EngineHandler {
  /** A write finished: `value` is bytes sent, or a negative errno; `flags` see below. */
  done(id: number, value: number, flags: number): void
  /** A file send made progress: `sent` bytes of write `id` are with the kernel. */
  progress(id: number, sent: number): void
  /** `end()` finished: `errno` is 0 or a negative errno. */
  ended(errno: number): void
  /** The engine let go of the socket: nothing of it is pinned any more. */
  closed(): void
}

// Record layout, kinds and flags are the binding's constants (crates/zerocopy-node/src/protocol.rs).
const handlers = new Map<number, EngineHandler>()
let started: boolean | undefined
let armScheduled = false

/**
 * The engine's doorbell: a batch of event records. The engine does not ring again until
 * {@link arm}, which runs from `setImmediate`, so a busy engine cannot keep this thread from
 * its timers and I/O (see the binding's `Mailbox`).
 */
function onEvents(records: Float64Array): void {
  // Scheduled first: whatever happens while handling, the doorbell gets re-armed.
  if (!armScheduled) {
    armScheduled = true
    setImmediate(arm)
  }
  handle(records)
}

/** Re-arms the doorbell, handling what arrived meanwhile and arming again a turn later. */
function arm(): void {
  armScheduled = false
  const records = binding.engineArm()
  if (records.length > 0) onEvents(records)
}

let deliveries = 0

/** Non-empty batches of event records handled so far on this thread (for tests). */
export function eventDeliveries(): number {
  return deliveries
}

/**
 * Routes each record to its socket. A throwing handler (a caller's `onProgress`) cannot make
 * the rest of the batch go missing, whose buffers the engine has already let go of: every record
 * is handled, and each error is rethrown on its own as an uncaught exception, as Node does for
 * a throwing callback.
 */
function handle(records: Float64Array): void {
  if (records.length > 0) deliveries++
  const stride = binding.RECORD_STRIDE
  for (let i = 0; i + stride <= records.length; i += stride) {
    try {
      dispatch(records, i)
    } catch (error) {
      queueMicrotask(() => {
        throw error
      })
    }
  }
}

function dispatch(records: Float64Array, i: number): void {
  const handler = handlers.get(records[i + 1])
  if (handler === undefined) return
  switch (records[i]) {
    case binding.RECORD_DONE:
      handler.done(records[i + 2], records[i + 3], records[i + 4])
      break
    case binding.RECORD_ENDED:
      handler.ended(records[i + 3])
      break
    case binding.RECORD_CLOSED:
      handlers.delete(records[i + 1])
      handler.closed()
      break
    case binding.RECORD_PROGRESS:
      handler.progress(records[i + 2], records[i + 3])
      break
  }
}

let failure: string | null = null
/** Start failures so far on this thread (transient ones are retried). */
let startFailures = 0
/** Transient start failures since the last success or permanent failure: sets the back-off. */
let failuresInARow = 0
/** `performance.now()` before which no new start is tried after a transient failure. */
let retryAt = 0

/** Start errors that say the process ran short of descriptors or memory for a moment. */
const TRANSIENT_START_ERRORS = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EAGAIN'])
/** The back-off after a transient start failure: 100 ms, doubling, at most 30 s. */
const FIRST_RETRY_MS = 100
const MAX_RETRY_MS = 30_000

/**
 * Starts this thread's engine on first use; `false` when zero-copy is unavailable here, or
 * once the engine failed for good (its ring's `io_uring_enter` errored: later sockets fall back).
 * A start that failed for want of descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`,
 * `EAGAIN`: a moment of fd exhaustion must not cost zero-copy for the thread's life) is tried
 * again by a socket adopted after a back-off; sockets adopted meanwhile use plain sends.
 */
export function engineAvailable(): boolean {
  if (started === true) {
    const failed = binding.engineFailure()
    const changed = failed === null ? credentialsChanged() : null
    if (failed !== null) {
      started = false
      failure = `the send engine failed (io_uring_enter ${failed}); sockets adopted since use plain sends`
    } else if (changed !== null) {
      // The ring's credentials are no longer the process's (src/credentials.ts).
      started = false
      failure = changed
    }
  }
  if (started === undefined && performance.now() >= retryAt) {
    try {
      recordEngineCredentials()
      started = binding.engineStart(onEvents)
      failure = null
      failuresInARow = 0
    } catch (e) {
      startFailures++
      const err = e as { code?: string; message?: string }
      if (err.code !== undefined && TRANSIENT_START_ERRORS.has(err.code)) {
        const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** failuresInARow++)
        retryAt = performance.now() + delay
        failure = `the send engine could not start (${err.message ?? err.code}: out of descriptors or memory; start failure ${startFailures} on this thread), so plain sends; a socket adopted ${delay} ms or more later tries again`
      } else {
        // The probe's small ring worked but the engine's did not (RLIMIT_MEMLOCK, ...).
        started = false
        failure = `the send engine could not start: ${err.message ?? err.code}`
      }
    }
  }
  return started === true
}

/** Times this thread's engine failed to start, transient failures included (for `stats`). */
export function engineStartFailures(): number {
  return startFailures
}

/** Why the engine is not running although the probe said yes (or said no only for a moment), or `null`. */
export function engineFailure(): string | null {
  return failure
}

/** Routes the events of engine socket `id` to `handler` until the engine reports it closed. */
export function register(id: number, handler: EngineHandler): void {
  handlers.set(id, handler)
}

/** Requests not yet released by the kernel over all sockets of this thread (pinned buffers). */
export function unreleasedRequests(): number {
  return binding.engineUnreleased()
}
