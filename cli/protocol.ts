/**
 * The CLI's tiny wire protocol. The sender starts with a 12-byte header, `ZCS1` and the payload
 * size as a big-endian u64, so the receiver can show an ETA and notice a short transfer; a
 * stream without the header is received as raw bytes. After the sender's FIN the receiver
 * answers one line, `ZCS1 OK <bytes> <sha256>\n`, and closes. A receiver that fails (a full
 * disk, fewer bytes than announced) answers `ZCS1 ERR <code> <message>\n` instead, as soon as
 * it fails, and closes once the sender stopped; the sender stops sending when it reads that.
 */
export const MAGIC = Buffer.from('ZCS1')
export const HEADER_BYTES = 12

/** The header announcing `size` payload bytes. */
export function header(size: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES)
  MAGIC.copy(h, 0)
  h.writeBigUInt64BE(BigInt(size), 4)
  return h
}

/** Reads a header from the first 12 bytes, or `null` if they are not one. */
export function parseHeader(first: Buffer): number | null {
  if (first.length < HEADER_BYTES || !first.subarray(0, 4).equals(MAGIC)) return null
  return Number(first.readBigUInt64BE(4))
}

/** The receiver's confirmation line. */
export function ackLine(bytes: number, sha256: string): string {
  return `ZCS1 OK ${bytes} ${sha256}\n`
}

/** The receiver's failure line: an error code (`ENOSPC`, `ERR_ZC_SHORT_TRANSFER`) and one line of text. */
export function errorLine(code: string, message: string): string {
  return `ZCS1 ERR ${/^[A-Z0-9_]+$/.test(code) ? code : 'ERR_ZC_RECEIVER'} ${message.replace(/[\r\n]+/g, ' ')}\n`
}

/** What the receiver answered. */
export type Reply = { ok: true; bytes: number; sha256: string } | { ok: false; code: string; message: string }

/** Parses the receiver's first line (a confirmation or a failure), or `null` when there is none yet or it is neither. */
export function parseReply(text: string): Reply | null {
  const end = text.indexOf('\n')
  if (end < 0) return null
  const line = text.slice(0, end)
  const ok = /^ZCS1 OK (\d+) ([0-9a-f]{64})$/.exec(line)
  if (ok) return { ok: true, bytes: Number(ok[1]), sha256: ok[2] }
  const err = /^ZCS1 ERR ([A-Z0-9_]+) (.*)$/.exec(line)
  return err ? { ok: false, code: err[1], message: err[2] } : null
}
