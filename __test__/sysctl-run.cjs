'use strict'
// The fallback with io_uring switched off for real: `kernel.io_uring_disabled=2` set with sysctl.
// Runs as its own step AFTER the rest of the suite (npm run test:sysctl), since the setting is
// machine-wide and no other test may create a ring meanwhile; the old value is restored in a
// `finally`. Needs root; says so loudly and skips otherwise.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const SYSCTL = '/proc/sys/kernel/io_uring_disabled'
const root = path.join(__dirname, '..')
let passed = 0
let failed = 0
function check(name, ok, detail) {
  if (ok) passed++
  else failed++
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: ${detail}`}`)
}
function node(args) {
  return spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 })
}

if (process.platform !== 'linux' || process.getuid() !== 0 || !fs.existsSync(SYSCTL)) {
  console.log(`!!! sysctl fallback test SKIPPED: needs Linux, root and ${SYSCTL}`)
  console.log('0 passed, 0 failed, 1 skipped')
  process.exit(0)
}

const old = fs.readFileSync(SYSCTL, 'utf8').trim()
try {
  fs.writeFileSync(SYSCTL, '2')
  const t = node(['-e', `process.argv.push('150', '9'); require(${JSON.stringify(path.join(__dirname, 'fixtures', 'transfer.cjs'))})`])
  let o = null
  try {
    o = JSON.parse(t.stdout.trim().split('\n').pop())
  } catch {
    o = null
  }
  check('transfer child exits 0', t.status === 0 && o !== null, t.stderr)
  if (o) {
    check(
      'probe reports sysctl / EPERM',
      o.probe.reason?.code === 'sysctl' && o.probe.reason?.errno === 'EPERM' && o.probe.ioUringDisabled === 2,
      JSON.stringify(o.probe.reason),
    )
    check('fallback reason names the sysctl', /io_uring_disabled=2/.test(o.sent.stats.fallbackReason ?? ''), o.sent.stats.fallbackReason)
    check(
      'bytes identical through the fallback',
      o.received.sha256 === o.sent.sha256 && o.received.bytes === o.sent.bytes,
      `${o.received.bytes} vs ${o.sent.bytes}`,
    )
  }
  const d = node([path.join(root, 'dist', 'cli', 'zerocopy-socket.js'), 'doctor'])
  check('doctor exits 2 (the fallback)', d.status === 2, d.stderr)
  check('doctor explains the sysctl', /kernel\.io_uring_disabled: 2 \(off for everyone\)/.test(d.stdout) && /Zero-copy is OFF/.test(d.stdout), d.stdout)
} finally {
  fs.writeFileSync(SYSCTL, old)
  check(`io_uring_disabled restored to ${old}`, fs.readFileSync(SYSCTL, 'utf8').trim() === old, 'restore failed')
}
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
