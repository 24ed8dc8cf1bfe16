/**
 * What the package uses of a `net.Socket` beyond its public API, in one place: its kernel
 * descriptor, its idle timer, and its own `write` (which a `ZeroCopySocket` shadows on the
 * instance while it owns the socket); and of a `ServerResponse`, its stored header block.
 * @module
 */
import type http from 'node:http'
import net from 'node:net'

/** `net.Socket.prototype.write`, whatever the instance's own property says. */
export const socketWrite = net.Socket.prototype.write as (this: net.Socket, data: Uint8Array, cb: (err?: Error | null) => void) => boolean

/** The socket's kernel descriptor, or `-1` (not connected, or not a kernel socket). */
export function socketFd(socket: net.Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number } | null })._handle
  return typeof handle?.fd === 'number' ? handle.fd : -1
}

/** Counts bytes sent outside the socket's own writes as activity for its idle timeout (`setTimeout`). */
export function refreshIdleTimer(socket: net.Socket): void {
  ;(socket as unknown as { _unrefTimer?: () => void })._unrefTimer?.()
}

/**
 * The header block node:http stored for `res` (by `writeHead()`) and has not written yet, or
 * `null`. node:http writes it with the first body bytes or on `flushHeaders()`, whichever is first.
 */
export function pendingHeaderBlock(res: http.ServerResponse): string | null {
  const r = res as unknown as { _header?: unknown; _headerSent?: boolean }
  return typeof r._header === 'string' && r._headerSent === false ? r._header : null
}

/**
 * Tells node:http that the header block {@link pendingHeaderBlock} returned has been written to
 * the socket (by us, with the body's first bytes): what its own first write does (`_send`).
 */
export function markHeaderBlockSent(res: http.ServerResponse): void {
  ;(res as unknown as { _headerSent: boolean })._headerSent = true
}
