/**
 * Placeholder until the inline `sendfile(2)` lands: sends nothing, so callers use the engine.
 * @module
 */

/**
 * Sends up to `length` bytes of `fileFd` at `offset` on `sockFd` now, without blocking.
 * @returns Bytes sent (0 here).
 */
export function sendfileNow(_sockFd: number, _fileFd: number, _offset: number, _length: number): number {
  return 0
}
