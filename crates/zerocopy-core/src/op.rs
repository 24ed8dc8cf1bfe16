//! The only file that names `io_uring::opcode`: one small builder per SQE the crate submits.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

/// `IORING_SEND_ZC_REPORT_USAGE`: ask notifications to say whether the kernel copied (6.2+).
pub const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;

/// `IORING_OP_SEND_ZC` of `len` bytes at `buf`, equivalent to `send(2)` with `MSG_ZEROCOPY`;
/// see `io_uring_prep_send_zc(3)`. Completes with a transfer CQE and, when it carries
/// `IORING_CQE_F_MORE`, a notification CQE once the kernel has let go of `buf`.
pub fn send_zc(
    fd: RawFd,
    buf: *const u8,
    len: u32,
    zc_flags: u16,
    user_data: u64,
) -> squeue::Entry {
    opcode::SendZc::new(types::Fd(fd), buf, len)
        .zc_flags(zc_flags)
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data)
}
