// The short run of the randomized API-level stress test (bench/stress.ts): seeded sessions of
// writes, file sends, aborts, end() and destroy() against real loopback peers, several at once
// and in a worker thread; every promise has a deadline and every received byte is checked. The
// long run is `npm run stress -- --sessions 20000`. A failure prints the seed to replay.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { runNode, zcTest } from './helpers'

const STRESS = fileURLToPath(new URL('../dist/bench/stress.js', import.meta.url))
const DEBUG_ADDON = fileURLToPath(new URL('../build/debug/zerocopy-socket.node', import.meta.url))
const seed = String(1 + Math.floor(Math.random() * 2 ** 31))

async function stress(t: import('ava').ExecutionContext, sessions: number, env: Record<string, string>): Promise<void> {
  const { code, json, stderr } = await runNode(STRESS, ['--sessions', String(sessions), '--seed', seed], env)
  t.log(`seed ${seed}: ${JSON.stringify(json)}`)
  t.is(code, 0, `stress failed (replay with --seed from the message):\n${stderr}`)
  const r = json as { sessions: number; inWorker: number; failures: number; unhandled: number; bytesChecked: number; outcomes: Record<string, number> }
  t.is(r.sessions, sessions)
  t.true(r.inWorker > 0, 'some sessions ran in a worker thread')
  t.is(r.failures, 0)
  t.is(r.unhandled, 0)
  t.true(r.bytesChecked > 0)
  // The sessions really reached the interesting paths.
  for (const code of ['ok', 'ABORT_ERR', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_OUT_OF_RANGE'])
    t.true((r.outcomes[code] ?? 0) > 0, `some operations settled ${code}`)
}

zcTest('stress: 300 random sessions through the engine settle in time with exactly the right bytes', async (t) => {
  await stress(t, 300, {})
})

test('stress: 150 random sessions through the fallback (ZEROCOPY_SOCKET_DISABLE=1) behave the same', async (t) => {
  await stress(t, 150, { ZEROCOPY_SOCKET_DISABLE: '1' })
})

;(existsSync(DEBUG_ADDON) ? zcTest : test.skip)('stress: 100 random sessions under the debug-assertion addon', async (t) => {
  await stress(t, 100, { NAPI_RS_NATIVE_LIBRARY_PATH: DEBUG_ADDON })
})
