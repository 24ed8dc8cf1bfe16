import test from 'ava'

import { STUB_ADDON, runChild } from './helpers'

// The addon built with `--features force-unsupported` is the code macOS and Windows run.
const stubEnv = { NAPI_RS_NATIVE_LIBRARY_PATH: STUB_ADDON }

test('stub addon: probe() reports unsupported with the platform reason', async (t) => {
  const { code, json, stderr } = await runChild('console.log(JSON.stringify(zc.probe()))', stubEnv)
  t.is(code, 0, stderr)
  const r = json as { supported: boolean; ioUring: boolean; reason: { code: string; message: string } }
  t.false(r.supported)
  t.false(r.ioUring)
  t.is(r.reason.code, 'platform')
  t.regex(r.reason.message, /force-unsupported/)
})

test('stub addon: sendZcSync throws ERR_ZC_UNSUPPORTED, still validates arguments', async (t) => {
  const script = `
    const codes = []
    for (const data of [Buffer.from('x'), 'nope']) {
      try { zc.sendZcSync(1, data); codes.push('no error') } catch (e) { codes.push(e.code) }
    }
    console.log(JSON.stringify(codes))`
  const { code, json, stderr } = await runChild(script, stubEnv)
  t.is(code, 0, stderr)
  t.deepEqual(json, ['ERR_ZC_UNSUPPORTED', 'ERR_INVALID_ARG_TYPE'])
})
