/**
 * The stress harness's checker (bench/stress.ts): whether the bytes a peer received are what a
 * session's operations, as they settled, allow. Apart from the harness so a spec can feed it
 * streams made by hand (__test__/edge-trust.spec.ts).
 * @module
 */

/** How one operation is expected to show up on the wire. */
export type Op = {
  label: string
  bytes: Uint8Array
  outcome: string
  /** `'exact'`: all of `bytes`; `'all-or-none'`, `'prefix'`: an aborted write or file; `'none'`. */
  expect: 'exact' | 'all-or-none' | 'prefix' | 'none'
  /** A failure that breaks the stream (not an abort, bad input or a write after end). */
  fatal: boolean
  /** Issued after `end()` or `destroy()`: must be refused. */
  late?: boolean
  /** Issued with an AbortSignal that fires. */
  abortable?: boolean
  /** A file range past the end: must be refused with `ERR_OUT_OF_RANGE`. */
  bad?: boolean
}

/**
 * Whether `got` is what `ops` allow, in order. After the first fatal failure (or when the
 * stream was cut: a reset peer, a destroy), `got` may end anywhere.
 */
export function matches(got: Buffer, ops: Op[], cut: boolean): string | null {
  const firstFatal = ops.findIndex((o) => o.fatal)
  const mayEnd = (i: number): boolean => cut || (firstFatal >= 0 && i >= firstFatal)
  // Depth-first over the ambiguous operations (aborts); contents are random, so a wrong
  // branch fails within a few bytes.
  const go = (i: number, pos: number): string | null => {
    if (pos === got.length) {
      if (mayEnd(i)) return null
      const missing = ops.slice(i).find((o) => o.expect === 'exact' && o.bytes.length > 0)
      return missing ? `stream ended at byte ${pos}, before ${missing.label}` : null
    }
    if (i === ops.length) return `${got.length - pos} unexpected bytes after byte ${pos}`
    const op = ops[i]
    // A failed operation may have sent any prefix (or nothing); so may any later one once the
    // stream can end anywhere, but then nothing can follow a partial one.
    const free = mayEnd(i) || op.fatal
    const full = op.bytes.length
    const lens = op.expect === 'none' ? [0] : op.expect === 'exact' ? [full] : op.expect === 'all-or-none' ? [full, 0] : prefixLengths(got, pos, ops, i)
    if (free && !lens.includes(0)) lens.push(0)
    let why = `at byte ${pos}: bytes differ from ${op.label}`
    for (const len of lens) {
      if (pos + len > got.length) {
        // The stream ends inside this operation: only where it may end, and with its prefix.
        if (free && got.subarray(pos).equals(view(op.bytes, got.length - pos))) return null
        continue
      }
      if (!got.subarray(pos, pos + len).equals(view(op.bytes, len))) continue
      const rest = go(i + 1, pos + len)
      if (rest === null) return null
      why = rest
    }
    return why
  }
  return go(0, 0)
}

/** The first `len` bytes of `bytes`, as a Buffer (no copy). */
function view(bytes: Uint8Array, len: number): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, len)
}

/**
 * Where an aborted file send (`ops[i]`) at `pos` may have stopped: at every length up to the
 * longest prefix of its bytes found there at which the stream ends or a later operation's bytes
 * could begin (the byte there is the first of one of them), longest first, and at 0. Not only
 * the longest: the file's next byte equals the next operation's first byte 1 time in 256, and
 * then the real stop point is shorter than the longest match.
 */
function prefixLengths(got: Buffer, pos: number, ops: Op[], i: number): number[] {
  const bytes = ops[i].bytes
  let n = 0
  const max = Math.min(bytes.length, got.length - pos)
  while (n < max && got[pos + n] === bytes[n]) n++
  const begins = new Uint8Array(256) // 1 for a byte some later operation starts with
  for (const o of ops.slice(i + 1)) if (o.bytes.length > 0) begins[o.bytes[0]] = 1
  const lens: number[] = []
  for (let len = n; len > 0; len--) {
    if (pos + len === got.length || begins[got[pos + len]] === 1) lens.push(len)
  }
  lens.push(0)
  return lens
}
