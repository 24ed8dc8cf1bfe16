/**
 * The CLI's tiny wire protocol. The sender starts with a 12-byte header, `ZCS1` and the payload
 * size as a big-endian u64, so the receiver can show an ETA and notice a short transfer; a
 * stream without the header is received as raw bytes. After the sender's FIN the receiver
 * answers one line, `ZCS1 OK <bytes> <sha256>\n`, and closes.
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

/** Parses a confirmation line, or `null`. */
export function parseAck(line: string): { bytes: number; sha256: string } | null {
  const m = /^ZCS1 OK (\d+) ([0-9a-f]{64})$/.exec(line.trim())
  return m ? { bytes: Number(m[1]), sha256: m[2] } : null
}
