/**
 * The write batcher (src/batch.ts) on its own: small writes copied into batch buffers, in
 * order, one send per batch, and the batch size following the writer (larger while it fills
 * batches within a turn, smaller again when it writes little).
 */
import test from 'ava'

import { WriteBatcher } from '../src/batch'
import { patternBytes } from './helpers'

const KiB = 1024
const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

/** A batcher whose sends are recorded and settle at once. */
function recording(): { batcher: WriteBatcher; sends: Buffer[] } {
  const sends: Buffer[] = []
  const batcher = new WriteBatcher((data, settled) => {
    sends.push(Buffer.from(data))
    settled.resolve({ bytes: data.byteLength, zeroCopy: false, copied: false })
  })
  return { batcher, sends }
}

test('a writer that fills batches gets larger ones, up to 512 KiB; the bytes stay in order', async (t) => {
  const { batcher, sends } = recording()
  const data = patternBytes(2 * 1024 * KiB, 5)
  const writes: Promise<unknown>[] = []
  for (let at = 0; at < data.length; at += KiB) writes.push(batcher.add(data.subarray(at, at + KiB), true))
  await turn()
  await Promise.all(writes)
  t.deepEqual(
    sends.map((s) => s.length / KiB),
    [128, 256, 512, 512, 512, 128],
  )
  t.true(Buffer.concat(sends).equals(data), 'every byte, in order')
})

test('a writer that leaves a batch three-quarters empty at the end of a turn gets smaller ones again', async (t) => {
  const { batcher, sends } = recording()
  const burst = async (bytes: number): Promise<void> => {
    const writes: Promise<unknown>[] = []
    for (let n = 0; n < bytes; n += KiB) writes.push(batcher.add(Buffer.alloc(KiB, 1), false))
    await turn()
    await Promise.all(writes)
  }
  await burst(1024 * KiB) // 128 + 256 + 512 + 128: the size is 512 KiB now
  t.deepEqual(
    sends.map((s) => s.length / KiB),
    [128, 256, 512, 128],
  )
  sends.length = 0
  await burst(KiB) // under a quarter of 512 KiB at the turn's end: 256 KiB next
  await burst(KiB) // under a quarter of 256 KiB: 128 KiB next
  await burst(KiB) // the smallest stays
  sends.length = 0
  await burst(300 * KiB)
  t.deepEqual(
    sends.map((s) => s.length / KiB),
    [128, 172],
    'back to 128 KiB batches (then 256 KiB)',
  )
})
