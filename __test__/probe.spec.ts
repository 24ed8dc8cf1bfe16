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
  if (r.reason) t.regex(r.reason.message, /\w/)
})

test('probe() is cached: two calls agree', (t) => {
  t.deepEqual(probe(), probe())
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
