/**
 * A response head decided ahead of time and applied later: `decideHead` (src/conditional.ts)
 * writes the status and headers it decides onto a {@link StagedHead} instead of the
 * `ServerResponse`, so a pipelined response waiting for its socket stays untouched — it may
 * still be aborted, lose its connection, or be answered by someone else — and the head is put
 * on `res` only once `respondWithFile` owns it.
 * @module
 */
import * as http from 'node:http'
import type { OutgoingHttpHeader } from 'node:http'

import type { ResponseHeaders } from './conditional'

/** Headers and status set on a stage, read through to the response's own where not set here. */
export class StagedHead implements ResponseHeaders {
  readonly #res: http.ServerResponse
  /** Headers set on the stage, by lower-case name: the name as given, and the value. */
  readonly #set = new Map<string, [string, OutgoingHttpHeader]>()
  /** Headers removed on the stage, by lower-case name. */
  readonly #removed = new Set<string>()
  /** The status decided; starts as the response's. */
  statusCode: number

  /** A stage over `res`, which it reads but never writes until {@link apply}. */
  constructor(res: http.ServerResponse) {
    this.#res = res
    this.statusCode = res.statusCode
  }

  /** The response's own. */
  get headersSent(): boolean {
    return this.#res.headersSent
  }

  /** The response's request. */
  get req(): http.IncomingMessage {
    return this.#res.req
  }

  /** The header as it will be: set or removed on the stage, else the response's. */
  getHeader(name: string): OutgoingHttpHeader | undefined {
    const key = name.toLowerCase()
    const staged = this.#set.get(key)
    if (staged !== undefined) return staged[1]
    if (this.#removed.has(key)) return undefined
    const value = this.#res.getHeader(key)
    return value === undefined ? undefined : (value as OutgoingHttpHeader)
  }

  /** Sets a header on the stage, checked as `res.setHeader` checks it (so a bad one throws now, not later). */
  setHeader(name: string, value: OutgoingHttpHeader): this {
    http.validateHeaderName(name)
    http.validateHeaderValue(name, value as string) // node checks numbers and arrays too
    const key = name.toLowerCase()
    this.#set.set(key, [name, value])
    this.#removed.delete(key)
    return this
  }

  /** Removes a header on the stage. */
  removeHeader(name: string): void {
    const key = name.toLowerCase()
    this.#set.delete(key)
    this.#removed.add(key)
  }

  /** Puts the staged status and headers on `res` (which must not have sent its headers). */
  apply(res: http.ServerResponse): void {
    for (const key of this.#removed) res.removeHeader(key)
    for (const [name, value] of this.#set.values()) res.setHeader(name, value)
    res.statusCode = this.statusCode
  }
}
