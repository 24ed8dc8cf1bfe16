// The stress harness's checker (bench/stress-check.ts) fed streams made by hand: it must accept
// every stream the session's operations allow, and still reject wrong ones.
import test from 'ava'

import { matches, type Op } from '../bench/stress-check'
import { patternBytes } from './helpers'

const op = (label: string, bytes: Uint8Array, expect: Op['expect'], fatal = false): Op => ({
  label,
  bytes,
  outcome: expect === 'exact' ? 'ok' : 'ABORT_ERR',
  expect,
  fatal,
})

// An aborted file send stopped after `stop` bytes; the next write's first byte happens to equal
// the file's byte at `stop` (1 in 256 with random contents: seed 821681842 of the stress run).
function stream(stop: number, sameNextByte: boolean): { got: Buffer; ops: Op[] } {
  const head = patternBytes(1000, 11)
  const file = patternBytes(70_000, 12)
  const tail = Buffer.from(patternBytes(5000, 13))
  tail[0] = sameNextByte ? file[stop] : file[stop] ^ 0xff
  tail[1] = file[stop + 1] ^ 0x55 // the match with the file ends right after that one byte
  const ops = [op('write head', head, 'exact'), op('aborted sendFile', file, 'prefix'), op('write tail', tail, 'exact')]
  return { got: Buffer.concat([head, file.subarray(0, stop), tail]), ops }
}

test("an aborted file whose next byte equals the following write's first byte is accepted", (t) => {
  for (const stop of [0, 1, 4096, 65_536, 69_998]) {
    const { got, ops } = stream(stop, true)
    t.is(matches(got, ops, false), null, `stopped at ${stop}`)
  }
})

test('the plain case (next bytes differ) is still accepted', (t) => {
  const { got, ops } = stream(4096, false)
  t.is(matches(got, ops, false), null)
})

test('an aborted file that stopped where the stream ends is accepted, also in the middle of the file', (t) => {
  const file = patternBytes(10_000, 21)
  const ops = [op('aborted sendFile', file, 'prefix')]
  t.is(matches(file.subarray(0, 1234), ops, false), null)
  t.is(matches(Buffer.alloc(0), ops, false), null)
  t.is(matches(file, ops, false), null)
})

test('wrong streams are still rejected', (t) => {
  const { got, ops } = stream(4096, true)
  // A byte of the file replaced: the write after it no longer lines up anywhere.
  const flipped = Buffer.from(got)
  flipped[1000 + 100] ^= 1
  t.not(matches(flipped, ops, false), null)
  // The tail write missing its last byte (not cut, so nothing may be missing).
  t.regex(matches(got.subarray(0, got.length - 1), ops, false) ?? '', /ended|differ/)
  // A byte after everything.
  t.not(matches(Buffer.concat([got, Buffer.from([7])]), ops, false), null)
  // The file's bytes from the wrong place (a gap: bytes 0..99, then 200..).
  const file = ops[1].bytes
  const gap = Buffer.concat([ops[0].bytes, file.subarray(0, 100), file.subarray(200, 4096), ops[2].bytes])
  t.not(matches(gap, ops, false), null)
})
