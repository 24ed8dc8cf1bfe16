import os from 'node:os'

import test from 'ava'

import { probe } from '../index'
import { runChild } from './helpers'

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const [maj, min] = release.split('.').map((p) => Number.parseInt(p, 10))
  return maj > major || (maj === major && min >= minor)
}

test('probe() has the documented shape', (t) => {
  const r = probe()
  t.is(typeof r.supported, 'boolean')
  t.is(typeof r.ioUring, 'boolean')
  t.is(r.platform, process.platform)
  t.deepEqual(Object.keys(r.ops).sort(), ['pollAdd', 'readFixed', 'send', 'sendZc', 'sendmsg', 'sendmsgZc', 'splice'])
  t.true(r.memlockLimit === null || (Number.isInteger(r.memlockLimit) && r.memlockLimit >= 0))
  t.is(r.supported, r.reason === null, 'a reason exactly when unsupported')
  t.regex(r.reason?.message ?? (r.supported ? 'supported' : ''), /\w/, 'an unsupported report says why in words')
})

test('probe() is cached: the first answer stands for the process, even if the environment changes', async (t) => {
  // The probe reads ZEROCOPY_SOCKET_DISABLE once; a later change must not show through.
  const script = `
    const first = zc.probe()
    process.env.ZEROCOPY_SOCKET_DISABLE = '1'
    const second = zc.probe()
    console.log(JSON.stringify({ first: first.reason?.code ?? null, second: second.reason?.code ?? null }))`
  const cached = await runChild(script)
  t.is(cached.code, 0, cached.stderr)
  t.deepEqual(cached.json, { first: probe().reason?.code ?? null, second: probe().reason?.code ?? null })
  // Set before the first probe, the same variable does switch it off: the test above can fail.
  const fresh = await runChild('console.log(JSON.stringify(zc.probe().reason?.code ?? null))', { ZEROCOPY_SOCKET_DISABLE: '1' })
  t.is(fresh.json, process.platform === 'linux' ? 'disabled-by-env' : 'platform')
})

test('probe() tells the truth about this kernel', (t) => {
  const r = probe()
  if (process.platform !== 'linux') {
    t.false(r.supported)
    t.is(r.reason?.code, 'platform')
    return
  }
  t.is(r.kernel, os.release(), 'kernel release comes from uname')
  if (!r.ioUring) {
    t.truthy(r.reason, 'no io_uring must come with a reason')
    t.log(`io_uring unavailable: ${r.reason?.message}`)
    return
  }
  t.is(r.ops.sendZc, kernelAtLeast(r.kernel, 6, 0), 'IORING_OP_SEND_ZC exists from 6.0')
  t.is(r.ops.sendmsgZc, kernelAtLeast(r.kernel, 6, 1), 'IORING_OP_SENDMSG_ZC exists from 6.1')
  t.is(r.reportUsage, kernelAtLeast(r.kernel, 6, 2), 'IORING_SEND_ZC_REPORT_USAGE exists from 6.2')
  t.true(r.ops.send && r.ops.splice)
  t.is(r.supported, r.ops.sendZc || r.reason?.code === 'disabled-by-env')
})

test('ZEROCOPY_SOCKET_DISABLE=1 makes probe() say disabled-by-env', async (t) => {
  const { code, json, stderr } = await runChild('console.log(JSON.stringify(zc.probe()))', { ZEROCOPY_SOCKET_DISABLE: '1' })
  t.is(code, 0, stderr)
  const r = json as { supported: boolean; reason: { code: string } | null }
  t.false(r.supported)
  t.is(r.reason?.code, process.platform === 'linux' ? 'disabled-by-env' : 'platform')
})
