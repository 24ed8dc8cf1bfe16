import test from 'ava'

import { fixture, NO_ADDON, runNode, STUB_ADDON } from './helpers'

const TRANSFER = fixture('transfer.cjs')

interface Outcome {
  probe: { supported: boolean; reason: { code: string } | null }
  sent: { bytes: number; sha256: string; zeroCopyCapable: boolean; stats: { fallbackReason: string | null; zeroCopySends: number; bytesSent: number } }
  received: { bytes: number; sha256: string }
}

async function transferIn(env: Record<string, string>): Promise<Outcome> {
  const { code, json, stderr } = await runNode(TRANSFER, ['300', '77'], env)
  if (code !== 0 || json === null) throw new Error(`child failed (${code}): ${stderr}`)
  return json as Outcome
}

function assertFallback(t: import('ava').ExecutionContext, o: Outcome, reasonCode: string, reasonText: RegExp): void {
  t.false(o.probe.supported)
  t.is(o.probe.reason?.code, reasonCode)
  t.false(o.sent.zeroCopyCapable)
  t.regex(o.sent.stats.fallbackReason ?? '', reasonText)
  t.is(o.sent.stats.zeroCopySends, 0)
  t.is(o.received.bytes, o.sent.bytes)
  t.is(o.received.sha256, o.sent.sha256, 'identical bytes through the fallback')
  t.is(o.sent.stats.bytesSent, o.sent.bytes)
}

test('ZEROCOPY_SOCKET_DISABLE=1: writes and sendFile deliver identical bytes through net.Socket', async (t) => {
  const o = await transferIn({ ZEROCOPY_SOCKET_DISABLE: '1' })
  assertFallback(t, o, process.platform === 'linux' ? 'disabled-by-env' : 'platform', /ZEROCOPY_SOCKET_DISABLE|Linux-only/)
})

test('the force-unsupported addon (what macOS/Windows load): writes and sendFile deliver identical bytes', async (t) => {
  const o = await transferIn({ NAPI_RS_NATIVE_LIBRARY_PATH: STUB_ADDON })
  assertFallback(t, o, 'platform', /force-unsupported/)
})

test('no native binding loads (NAPI_RS_NATIVE_LIBRARY_PATH names no file): writes and sendFile deliver identical bytes', async (t) => {
  const o = await transferIn({ NAPI_RS_NATIVE_LIBRARY_PATH: NO_ADDON })
  assertFallback(t, o, 'no-binding', /native binding \S+ did not load/)
})
