'use strict'
// The main job: what this machine can do, in plain words.
const { probe } = require('..')

const r = probe()
const yes = (b) => (b ? 'yes' : 'no')
console.log(`zerocopy-socket on ${r.platform} ${r.kernel}`)
console.log(`  io_uring available:        ${yes(r.ioUring)}`)
console.log(`  IORING_OP_SEND_ZC:         ${yes(r.ops.sendZc)}`)
console.log(`  IORING_OP_SENDMSG_ZC:      ${yes(r.ops.sendmsgZc)}`)
console.log(`  SEND_ZC_REPORT_USAGE:      ${yes(r.reportUsage)}`)
console.log(`  IORING_OP_SPLICE:          ${yes(r.ops.splice)}`)
console.log(`  kernel.io_uring_disabled:  ${r.ioUringDisabled ?? 'n/a'}`)
console.log(`  seccomp mode:              ${r.seccomp ?? 'n/a'}`)
console.log(
  r.supported
    ? 'Zero-copy sends: ENABLED (large writes go out as IORING_OP_SEND_ZC)'
    : `Zero-copy sends: DISABLED, plain socket writes will be used: ${r.reason.message}`,
)
