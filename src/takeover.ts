/**
 * A `ZeroCopySocket` taking over its `net.Socket`'s own `write` and `end` while the engine
 * sends on it, so that neither can overtake the engine's bytes: waiting until the socket's own
 * writes are flushed, refusing `write()`, routing `end()`, and handing both back. And the same
 * one level up ({@link ResponseHold}): a `ServerResponse`'s `write`/`end` held while the engine
 * sends its body, so node:http neither writes into it nor hands the socket on.
 * @module
 */
import type { ServerResponse } from 'node:http'
import * as net from 'node:net'

import { codedError } from './errors'
import { socketWrite } from './net-internals'

const EMPTY = new Uint8Array(0)

/** What routing `socket.end()` needs of its `ZeroCopySocket`. */
export interface EndRoute {
  /** The wrapper was destroyed: the call does nothing. */
  destroyed(): boolean
  /** The socket is being handed back (`release()`), or `null`. */
  releasing(): Promise<net.Socket> | null
  /** The wrapper's own `end()`. */
  end(): Promise<void>
}

/** A socket's own `end`, called with the socket as `this`. */
export type OwnEnd = (this: net.Socket, cb?: () => void) => net.Socket

/** The `write` and `end` of one socket: taken over, given up, and put back. */
export class Takeover {
  readonly #socket: net.Socket
  /** The socket's own `end`, as it was when the wrapper was made. */
  readonly ownEnd: OwnEnd
  /** The socket's own `write`/`end` properties before {@link take}, to put back on {@link restore}. */
  #own: { write?: PropertyDescriptor; end?: PropertyDescriptor } = {}

  /** Remembers `socket`'s own `end`; nothing is taken over yet. */
  constructor(socket: net.Socket) {
    this.#socket = socket
    this.ownEnd = socket.end as OwnEnd
  }

  /** Makes `socket.write()` throw `ERR_ZC_SOCKET_OWNED` and routes `socket.end()` through `route`. */
  take(route: EndRoute): void {
    const s = this.#socket
    this.#own = { write: Object.getOwnPropertyDescriptor(s, 'write'), end: Object.getOwnPropertyDescriptor(s, 'end') }
    s.write = (() => {
      throw codedError(
        'ERR_ZC_SOCKET_OWNED',
        'This socket is owned by a ZeroCopySocket: write through it (zs.write / zs.createWriteStream), not socket.write()',
      )
    }) as net.Socket['write']
    s.end = ((...args: unknown[]) => {
      const cb = args.find((a) => typeof a === 'function') as (() => void) | undefined
      if (route.destroyed()) return s
      const releasing = route.releasing()
      if (releasing) {
        // Being handed back (node:http ends a keep-alive socket whose client left while the
        // last body's release was still running): end it through its own end() once it is
        // its owner's again. Dropping the call left the connection open for good.
        releasing.then(
          (socket) => socket.end(...(args as [])),
          () => cb?.(),
        )
        return s
      }
      route.end().then(
        () => this.ownEnd.call(s, cb),
        () => cb?.(),
      )
      return s
    }) as net.Socket['end']
  }

  /** The engine refused the socket: it writes and ends itself again, in order. */
  giveUp(): void {
    this.#socket.write = net.Socket.prototype.write
    this.#socket.end = this.ownEnd as net.Socket['end']
  }

  /** Puts the socket's own `write` and `end` properties back as they were before {@link take}. */
  restore(): void {
    const s = this.#socket
    for (const key of ['write', 'end'] as const) {
      const own = this.#own[key]
      if (own) Object.defineProperty(s, key, own)
      else delete (s as Partial<net.Socket>)[key]
    }
  }
}

/** Runs `fn` once `s` is connected and its own write buffer is empty (never if it is destroyed first). */
export function whenWritable(s: net.Socket, fn: () => void): void {
  if (s.destroyed) return
  if (s.connecting) s.once('connect', () => whenWritable(s, fn))
  else if (s.writableLength > 0) {
    // Not 'drain': it only comes after a write() that returned false, so a small write still
    // queued (a full send buffer) left adoption waiting forever. The callback of an empty
    // write runs once every earlier write has been flushed (or failed: then `destroyed`).
    socketWrite.call(s, EMPTY, () => whenWritable(s, fn))
  } else fn()
}

/** A `ServerResponse`'s own `write`/`end` properties, for {@link ResponseHold}. */
type ResponseMethods = { write?: PropertyDescriptor; end?: PropertyDescriptor }

/**
 * Holds a `ServerResponse` while its body is sent from a file: on the engine path node:http must
 * not write to the socket (the takeover's `write` would throw from inside node:http) nor finish
 * the response (it would hand the socket to the next pipelined response while the engine still
 * sends); on the streamed path a handler's `res.end()` would cut the body short under its
 * `Content-Length`. So until {@link finish}, on this instance:
 * - `res.write(data)` and `res.end(data)` send nothing and throw nothing: the data is refused
 *   (their callback gets `ERR_ZC_SOCKET_OWNED`) — bytes after the body would corrupt the
 *   response and every one after it on the connection;
 * - `res.end()` (a handler or a timeout finishing the response) is deferred: the response ends
 *   once the whole body went out and the socket is node:http's again, and only then does the
 *   next pipelined response get the socket.
 * Wrappers installed before the hold (compression, express-session) are put back as they were.
 */
export class ResponseHold {
  readonly #res: ServerResponse
  readonly #own: ResponseMethods
  /** `res.write` and `res.end` as they were (node:http's, or a wrapper such as compression's). */
  readonly #write: (this: ServerResponse, chunk: Uint8Array) => boolean
  readonly #end: (this: ServerResponse) => ServerResponse
  /** Callbacks of deferred `res.end()` calls, run when the response finishes. */
  readonly #ends: (() => void)[] = []
  #held = true

  /** Takes over `res.write` and `res.end`. */
  constructor(res: ServerResponse) {
    this.#res = res
    this.#own = { write: Object.getOwnPropertyDescriptor(res, 'write'), end: Object.getOwnPropertyDescriptor(res, 'end') }
    this.#write = res.write as (this: ServerResponse, chunk: Uint8Array) => boolean
    this.#end = res.end as (this: ServerResponse) => ServerResponse
    const refused = (): Error =>
      codedError('ERR_ZC_SOCKET_OWNED', 'The body of this response is being sent from a file: res.write() and res.end(data) cannot add to it')
    res.write = ((...args: unknown[]) => {
      const cb = args.find((a) => typeof a === 'function') as ((err?: Error) => void) | undefined
      if (cb) process.nextTick(cb, refused())
      return false
    }) as ServerResponse['write']
    res.end = ((...args: unknown[]) => {
      const cb = args.find((a) => typeof a === 'function') as (() => void) | undefined
      if (cb) this.#ends.push(cb)
      return res
    }) as ServerResponse['end']
  }

  /** Writes body bytes through the response's own `write` (the held one's caller is the body's sender). */
  write(chunk: Uint8Array): boolean {
    return this.#write.call(this.#res, chunk)
  }

  /** Puts `res.write`/`res.end` back, then ends the response (running deferred callbacks on 'finish'). */
  finish(): void {
    this.release()
    for (const cb of this.#ends) this.#res.once('finish', cb)
    this.#end.call(this.#res)
  }

  /** Puts `res.write`/`res.end` back as they were; the response is not ended. */
  release(): void {
    if (!this.#held) return
    this.#held = false
    const res = this.#res
    for (const key of ['write', 'end'] as const) {
      const own = this.#own[key]
      if (own) Object.defineProperty(res, key, own)
      else delete (res as Partial<ServerResponse>)[key]
    }
  }
}
