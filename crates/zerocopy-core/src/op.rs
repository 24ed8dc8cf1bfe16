//! The only file that names `io_uring::opcode`: one small builder per SQE the crate submits.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

/// `IORING_SEND_ZC_REPORT_USAGE`: ask notifications to say whether the kernel copied (6.2+).
pub const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;

/// Flags of the blocking primitive's sends: a closed peer gives `-EPIPE`, not `SIGPIPE`.
pub const ONE_SHOT: i32 = libc::MSG_NOSIGNAL;

/// `MSG_WAITALL | MSG_NOSIGNAL`: the kernel retries a stream send internally until every byte
/// is queued (fewer CQEs), and a closed peer gives `-EPIPE` instead of `SIGPIPE`.
pub const STREAM: i32 = libc::MSG_WAITALL | libc::MSG_NOSIGNAL;

/// `IORING_OP_SEND_ZC` of `len` bytes at `buf`, equivalent to `send(2)` with `MSG_ZEROCOPY`;
/// see `io_uring_prep_send_zc(3)`. Completes with a transfer CQE and, when it carries
/// `IORING_CQE_F_MORE`, a notification CQE once the kernel has let go of `buf`. With `fixed`,
/// `buf` lies in that registered buffer (`IORING_RECVSEND_FIXED_BUF`): its pages were pinned
/// once at registration, not per send.
pub fn send_zc(
    fd: RawFd,
    buf: *const u8,
    len: u32,
    zc_flags: u16,
    fixed: Option<u16>,
    msg_flags: i32,
) -> squeue::Entry {
    opcode::SendZc::new(types::Fd(fd), buf, len)
        .zc_flags(zc_flags)
        .buf_index(fixed)
        .flags(msg_flags)
        .build()
}

/// `IORING_OP_READ`, equivalent to `pread(2)`: `len` bytes at file offset `off` into `buf`.
pub fn read(fd: RawFd, buf: *mut u8, len: u32, off: u64) -> squeue::Entry {
    opcode::Read::new(types::Fd(fd), buf, len)
        .offset(off)
        .build()
}

/// `IORING_OP_READ_FIXED`: [`read`] into a registered buffer.
pub fn read_fixed(fd: RawFd, buf: *mut u8, len: u32, off: u64, buf_index: u16) -> squeue::Entry {
    opcode::ReadFixed::new(types::Fd(fd), buf, len, buf_index)
        .offset(off)
        .build()
}

/// `IORING_OP_SEND`, equivalent to `send(2)`: the kernel copies the bytes before completing.
pub fn stream_send(fd: RawFd, buf: *const u8, len: u32, user_data: u64) -> squeue::Entry {
    opcode::Send::new(types::Fd(fd), buf, len)
        .flags(STREAM)
        .build()
        .user_data(user_data)
}

/// `IORING_OP_SENDMSG`, equivalent to `sendmsg(2)`: one vectored, copying send of several writes.
pub fn stream_sendmsg(fd: RawFd, msg: *const libc::msghdr, user_data: u64) -> squeue::Entry {
    opcode::SendMsg::new(types::Fd(fd), msg)
        .flags(STREAM as u32)
        .build()
        .user_data(user_data)
}

/// `IORING_OP_READ` of 8 bytes from an eventfd: completes when another thread wakes the ring.
pub fn read_eventfd(fd: RawFd, buf: *mut u64, user_data: u64) -> squeue::Entry {
    opcode::Read::new(types::Fd(fd), buf.cast(), 8)
        .build()
        .user_data(user_data)
}

/// `IORING_OP_POLL_ADD` for `POLLOUT`: completes once the socket has room to send.
pub fn poll_out(fd: RawFd) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build()
}

/// `IORING_OP_ASYNC_CANCEL` of the request with `target` user_data.
pub fn cancel(target: u64, user_data: u64) -> squeue::Entry {
    opcode::AsyncCancel::new(target)
        .build()
        .user_data(user_data)
}
