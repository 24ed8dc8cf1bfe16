/**
 * A strict, incremental parser of the HTTP/1.1 responses a raw client receives on one
 * connection, for the HTTP stress run: it is fed the byte stream as it comes and returns each
 * response once complete, framed by its own header block (`Content-Length`, chunked, or none
 * for `HEAD`, 204, 304 and 1xx). A response carrying another's bytes, or too many, shows as a
 * parse error or a wrong body, never as a retry.
 * @module
 */

/** One parsed response. */
export interface WireResponse {
  status: number
  headers: Record<string, string>
  body: Buffer
}

type State = { at: 'head' } | { at: 'length'; left: number } | { at: 'chunk-size' } | { at: 'chunk-data'; left: number } | { at: 'chunk-end'; last: boolean }

/** Parses the responses to `bodiless.length` requests (`true` for a HEAD request) from a byte stream. */
export class ResponseParser {
  readonly #bodiless: boolean[]
  #buffered: Buffer = Buffer.alloc(0)
  #state: State = { at: 'head' }
  #status = 0
  #headers: Record<string, string> = {}
  #body: Buffer[] = []
  /** Responses completed so far. */
  readonly done: WireResponse[] = []

  /** `bodiless[i]`: the i-th request was a HEAD. */
  constructor(bodiless: boolean[]) {
    this.#bodiless = bodiless
  }

  /** Feeds received bytes; returns the number of complete responses. Throws on a malformed stream. */
  push(chunk: Buffer): number {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk])
    while (this.#step());
    return this.done.length
  }

  /** One step of the state machine; `false` when it needs more bytes. */
  #step(): boolean {
    const b = this.#buffered
    const s = this.#state
    if (s.at === 'head') {
      if (b.length === 0) return false
      if (this.done.length >= this.#bodiless.length) throw new Error(`${b.length} bytes after the last response`)
      const end = b.indexOf('\r\n\r\n', 0, 'latin1')
      if (end < 0) {
        if (b.length > 64 * 1024) throw new Error('a header block over 64 KiB')
        return false
      }
      this.#head(b.subarray(0, end).toString('latin1'))
      this.#buffered = b.subarray(end + 4)
      return true
    }
    if (s.at === 'length') {
      const n = Math.min(s.left, b.length)
      if (n > 0) this.#body.push(b.subarray(0, n))
      this.#buffered = b.subarray(n)
      s.left -= n
      if (s.left === 0) this.#complete()
      return s.left === 0 || this.#buffered.length > 0
    }
    if (s.at === 'chunk-size') {
      const end = b.indexOf('\r\n', 0, 'latin1')
      if (end < 0) return false
      const line = b.subarray(0, end).toString('latin1')
      if (!/^[0-9a-fA-F]+$/.test(line)) throw new Error(`bad chunk size line ${JSON.stringify(line.slice(0, 40))}`)
      const size = parseInt(line, 16)
      this.#buffered = b.subarray(end + 2)
      this.#state = size === 0 ? { at: 'chunk-end', last: true } : { at: 'chunk-data', left: size }
      return true
    }
    if (s.at === 'chunk-data') {
      const n = Math.min(s.left, b.length)
      if (n > 0) this.#body.push(b.subarray(0, n))
      this.#buffered = b.subarray(n)
      s.left -= n
      if (s.left === 0) this.#state = { at: 'chunk-end', last: false }
      return this.#buffered.length > 0
    }
    if (b.length < 2) return false
    if (b[0] !== 13 || b[1] !== 10) throw new Error('no CRLF after a chunk')
    this.#buffered = b.subarray(2)
    if (s.last) this.#complete()
    else this.#state = { at: 'chunk-size' }
    return true
  }

  #head(block: string): void {
    const lines = block.split('\r\n')
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] + ' ')
    if (!m) throw new Error(`not a status line: ${JSON.stringify(lines[0].slice(0, 80))}`)
    this.#status = Number(m[1])
    this.#headers = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon <= 0) throw new Error(`bad header line ${JSON.stringify(line.slice(0, 80))}`)
      const name = line.slice(0, colon).toLowerCase()
      if (name in this.#headers && (name === 'content-length' || name === 'transfer-encoding')) throw new Error(`${name} twice`)
      this.#headers[name] = line.slice(colon + 1).trim()
    }
    this.#body = []
    const status = this.#status
    const te = this.#headers['transfer-encoding']
    const cl = this.#headers['content-length']
    if (this.#bodiless[this.done.length] || status === 204 || status === 304 || (status >= 100 && status < 200)) {
      if (status === 204 && cl !== undefined) throw new Error('Content-Length in a 204')
      return this.#complete()
    }
    if (te !== undefined && cl !== undefined) throw new Error('both Content-Length and Transfer-Encoding')
    if (te !== undefined) {
      if (te !== 'chunked') throw new Error(`Transfer-Encoding ${te}`)
      this.#state = { at: 'chunk-size' }
      return
    }
    if (cl === undefined || !/^\d+$/.test(cl)) throw new Error(`status ${status} without a valid Content-Length`)
    const left = Number(cl)
    if (left === 0) return this.#complete()
    this.#state = { at: 'length', left }
  }

  #complete(): void {
    this.done.push({ status: this.#status, headers: this.#headers, body: Buffer.concat(this.#body) })
    this.#body = []
    this.#state = { at: 'head' }
  }
}
