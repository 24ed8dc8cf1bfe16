/**
 * What the package uses of a `net.Socket` beyond its public API, in one place: its kernel
 * descriptor, its idle timer, and its own `write` (which a `ZeroCopySocket` shadows on the
 * instance while it owns the socket); and of a `ServerResponse`, its stored header block.
 * @module
 */
import type * as http from 'node:http'
import * as net from 'node:net'

import { binding } from './native'

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

/**
 * Counts the peer draining the socket's send queue as activity for its idle timeout, until the
 * returned function is called. node:net refreshes the timer on its own writes; the engine
 * refreshes it when it refills the queue, which the kernel allows only once a third or so of
 * the send buffer is free (POLLOUT): a reader slower than that part of the buffer per timeout
 * (1.4 MB per 500 ms here) was cut while it never stopped reading. So every quarter of the
 * socket's `timeout` (`socket.setTimeout()`, `server.timeout`, `res.setTimeout()`; once a second
 * while none is set) this reads how many bytes the peer has not acknowledged (`SIOCOUTQ`), and a
 * smaller count than last time refreshes the timer. A peer that stops reading acknowledges
 * nothing: the timer is not refreshed and fires as it would for node:net's own writes.
 */
export function countDrainAsActivity(socket: net.Socket): () => void {
  const fd = socketFd(socket)
  let last = fd >= 0 ? binding.unackedBytes(fd) : -1
  if (last < 0) return () => {} // the kernel cannot tell (not Linux)
  const period = (): number => (socket.timeout ? Math.max(10, socket.timeout / 4) : 1000)
  const check = (): void => {
    if (socket.destroyed) return
    const unacked = binding.unackedBytes(fd)
    if (unacked >= 0 && unacked < last) refreshIdleTimer(socket)
    last = unacked
    timer = setTimeout(check, period()).unref()
  }
  let timer = setTimeout(check, period()).unref()
  return () => clearTimeout(timer)
}
