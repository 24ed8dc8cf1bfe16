// The short run of the seeded random HTTP stress (bench/http-stress.ts): raw pipelined and
// keep-alive connections against respondWithFile and serveStatic with handlers that end, write,
// time out, abort, call twice, set 204/304, cork; clients that reset. Every completed response
// is checked byte for byte, every promise has a deadline, descriptors return to the baseline.
// The long run is `npm run stress:http -- --responses 100000`. A failure prints a --replay seed.
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { runNode, zcTest } from './helpers'

const STRESS = fileURLToPath(new URL('../dist/bench/http-stress.js', import.meta.url))
const seed = String(1 + Math.floor(Math.random() * 2 ** 31))

async function stress(t: import('ava').ExecutionContext, responses: number, env: Record<string, string>): Promise<void> {
  const { code, json, stderr } = await runNode(STRESS, ['--responses', String(responses), '--seed', seed], env)
  t.log(`seed ${seed}: ${JSON.stringify(json)}`)
  t.is(code, 0, `HTTP stress failed (replay with --seed ${seed}, or --replay from the message):\n${stderr}`)
  const r = json as {
    responses: number
    failures: number
    uncaught: number
    pendingAfterDeadline: number
    bytesChecked: number
    compressed: number
    descriptors: { baseline: number; after: number; onFiles: number }
    outcomes: Record<string, number>
  }
  t.true(r.responses >= responses)
  t.is(r.failures, 0)
  t.is(r.uncaught, 0)
  t.is(r.pendingAfterDeadline, 0)
  t.is(r.descriptors.onFiles, 0)
  t.is(r.descriptors.after, r.descriptors.baseline)
  t.true(r.bytesChecked > 0)
  t.true(r.compressed > 0, 'some responses went through compression()')
  // The run reached the interesting outcomes.
  for (const code of ['ok', 'ERR_HTTP_HEADERS_SENT', 'ABORT_ERR']) t.true((r.outcomes[code] ?? 0) > 0, `some calls settled ${code}`)
}

zcTest('HTTP stress: 600 random responses through the engine, byte-exact, every promise settled, no descriptor left', async (t) => {
  await stress(t, 600, {})
})

test('HTTP stress: 300 random responses with io_uring off (ZEROCOPY_SOCKET_DISABLE=1) behave the same', async (t) => {
  await stress(t, 300, { ZEROCOPY_SOCKET_DISABLE: '1' })
})
