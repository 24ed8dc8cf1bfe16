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

test('a turn that fills no batch and ends with one at most a quarter full gets smaller ones again', async (t) => {
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

test('settled batch buffers kept for reuse stay under 2 MiB, whatever their size', async (t) => {
  const settles: (() => void)[] = []
  const batcher = new WriteBatcher((data, settled) => {
    settles.push(() => settled.resolve({ bytes: data.byteLength, zeroCopy: false, copied: false }))
  })
  const writes: Promise<unknown>[] = []
  // 128 + 256 + 11 × 512 + 384 KiB: the last batch is over a quarter full, so the size stays 512 KiB.
  for (let n = 0; n < 6400 * KiB; n += KiB) writes.push(batcher.add(Buffer.alloc(KiB, 2), false))
  await turn()
  t.true(settles.length >= 12, `${settles.length} batches in flight`)
  for (const settle of settles) settle()
  await Promise.all(writes)
  t.is(batcher.freeBytes, 2 * 1024 * KiB, 'four 512 KiB buffers, not one per batch that settled')
})

test('a steady writer keeps one size and reuses its buffers: no back and forth', async (t) => {
  const { batcher, sends } = recording()
  const perTurn: number[][] = []
  for (let turnNo = 0; turnNo < 6; turnNo++) {
    sends.length = 0
    const writes: Promise<unknown>[] = []
    for (let n = 0; n < 140 * KiB; n += KiB) writes.push(batcher.add(Buffer.alloc(KiB, 3), false))
    await turn()
    await Promise.all(writes)
    perTurn.push(sends.map((s) => s.length / KiB))
    if (turnNo > 0) t.is(batcher.freeBytes, 256 * KiB, `turn ${turnNo}: its buffer back for the next turn`)
  }
  // The first turn fills a 128 KiB batch (so the size becomes 256 KiB, and stays).
  t.deepEqual(perTurn, [[128, 12], [140], [140], [140], [140], [140]])
})
