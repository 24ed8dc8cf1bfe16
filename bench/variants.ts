/**
 * The benchmark's sender variants. Imports nothing, so the CLI can check `--only` against the
 * names before it loads the harness.
 */
const KiB = 1024

/** One variant: how to start it, and whether its chunk size means anything. */
export interface Variant {
  name: string
  kind: 'node' | 'c'
  file: boolean
  /** csend mode and its qd/slots arguments, for C variants. */
  c?: [string, number, number]
  /** A single run per repetition, not one per chunk size (chunk column `-`). */
  chunkless?: boolean
  /** Smallest chunk size worth running (1 KiB pipes take a minute per GiB and prove nothing new). */
  minChunk?: number
  describe: string
}

/** Every variant, in table order. */
export const VARIANTS: Variant[] = [
  { name: 'node_write', kind: 'node', file: false, describe: 'net.Socket.write + drain' },
  { name: 'zc_auto', kind: 'node', file: false, describe: "ZeroCopySocket.write, zeroCopy 'auto' (default)" },
  { name: 'zc_always', kind: 'node', file: false, describe: "ZeroCopySocket.write, zeroCopy 'always'" },
  { name: 'zc_never', kind: 'node', file: false, describe: "ZeroCopySocket.write, zeroCopy 'never'" },
  { name: 'zc_pool', kind: 'node', file: false, describe: 'ZeroCopySocket.write of BufferPool (registered) buffers' },
  { name: 'c_send', kind: 'c', file: false, c: ['send', 1, 8], describe: 'C send() loop' },
  { name: 'c_uring_send', kind: 'c', file: false, c: ['uring', 1, 8], describe: 'C io_uring SEND, 1 in flight' },
  {
    name: 'c_zc_ring8',
    kind: 'c',
    file: false,
    c: ['zc', 1, 8],
    minChunk: 16 * KiB,
    describe: 'C SEND_ZC, 1 in flight, 8 rotating buffers, chunks ≥ 16 KiB (below that it waits for notifications that TCP autocorking holds back, and stalls)',
  },
  { name: 'node_pipe', kind: 'node', file: true, minChunk: 64 * KiB, describe: 'fs.createReadStream(highWaterMark = chunk).pipe(socket), chunks ≥ 64 KiB' },
  { name: 'node_pipe_default', kind: 'node', file: true, chunkless: true, describe: 'fs.createReadStream().pipe(socket), default highWaterMark' },
  { name: 'zc_sendfile', kind: 'node', file: true, chunkless: true, describe: 'ZeroCopySocket.sendFile()' },
  { name: 'zc_auto_loop', kind: 'node', file: false, describe: "zc_auto on the loop driver (ZEROCOPY_SOCKET_DRIVER=loop: the ring on the JS thread's loop)" },
  { name: 'zc_sendfile_loop', kind: 'node', file: true, chunkless: true, describe: 'zc_sendfile on the loop driver' },
  { name: 'c_sendfile', kind: 'c', file: true, c: ['sendfile', 1, 1], describe: 'C sendfile(2), chunk bytes per call' },
  { name: 'c_splice', kind: 'c', file: true, c: ['splice', 1, 1], describe: 'C splice(2) file → pipe → socket' },
]

/** What `--only` accepts: every variant, and `sink` (bench/sink.ts). */
export const SELECTABLE: readonly string[] = [...VARIANTS.map((v) => v.name), 'sink']
