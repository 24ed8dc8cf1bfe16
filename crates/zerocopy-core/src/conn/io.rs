//! The boundary of a connection: the requests it asks for ([`Request`]), everything else it
//! needs done outside itself ([`ConnIo`]), and the engine's file-sending settings.

use std::os::fd::RawFd;
use std::sync::Arc;

use crate::buf::Region;
use crate::events::Event;
use crate::queue::Span;
use crate::Errno;

/// A request for the ring, as data: the driver adds the socket's descriptor and `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// `IORING_OP_SEND_ZC` of `len` bytes at `addr` (from fixed buffer `fixed` if `Some`).
    SendZc {
        addr: usize,
        len: u32,
        fixed: Option<u16>,
    },
    /// A plain `IORING_OP_SEND`.
    Send { addr: usize, len: u32 },
    /// A plain `IORING_OP_SENDMSG` of the iovecs `msg` points to (kept until released).
    SendMsg { msg: *const libc::msghdr },
    /// `IORING_OP_READ` (`READ_FIXED` with `fixed`) of `len` bytes at `off` of `file` into `addr`.
    Read {
        file: RawFd,
        addr: usize,
        len: u32,
        off: u64,
        fixed: Option<u16>,
    },
    /// `IORING_OP_POLL_ADD` for `POLLOUT` on the socket.
    PollOut,
}

/// The staging memory of a staged file send: its region, and the fixed-buffer slot it is
/// registered in, if a slot was free.
#[derive(Debug)]
pub(crate) struct Staging {
    pub(crate) region: Arc<Region>,
    pub(crate) fixed: Option<u16>,
}

/// Everything a [`Connection`] does outside itself. The engine's implementation talks to the
/// ring and the socket; the property test's to a model kernel.
pub(crate) trait ConnIo<H> {
    /// Submits `req` with `user_data` `ud`; its CQEs come back through [`Connection::on_cqe`].
    fn submit(&mut self, ud: u64, req: Request);
    /// Asks the kernel to cancel request `target` (whose own CQEs still arrive).
    fn cancel(&mut self, target: u64);
    /// The fixed-buffer slot whose registered region holds `[addr, addr + len)`, if any.
    fn fixed_index(&self, addr: usize, len: usize) -> Option<u16>;
    /// Staging memory of `len` bytes, registered if a slot is free; `None` if out of memory.
    fn stage(&mut self, len: usize) -> Option<Staging>;
    /// The kernel holds nothing of `staging` any more: drop its registration.
    fn unstage(&mut self, staging: &Staging);
    /// One non-blocking `sendfile(2)` of up to `len` bytes of `file` at `offset` to the socket.
    fn sendfile(&mut self, file: RawFd, offset: u64, len: usize) -> Result<usize, Errno>;
    /// `shutdown(SHUT_WR)` of the socket.
    fn shutdown_write(&mut self) -> Result<(), Errno>;
    /// Makes the socket's last close reset it (`SO_LINGER` 0) and closes the engine's dup, so
    /// that the kernel drops the send queue and releases the pages it pins.
    fn reset(&mut self);
    /// Reports `event` to the owner.
    fn event(&mut self, event: Event<H>);
}

/// Geometry of a staged file send's memory: `slots` × `slot_size` bytes read ahead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Staged {
    pub(crate) slots: usize,
    pub(crate) slot_size: u32,
}

/// Limits of the `sendfile(2)` path: bytes per call, and per pump before other sockets' turn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendfileLimits {
    pub(crate) chunk: u64,
    pub(crate) budget: u64,
}

/// How the engine sends files; the same for every connection of an engine.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileConfig {
    pub(crate) staged: Staged,
    pub(crate) sendfile: SendfileLimits,
}

/// The memory a vectored plain send points into.
pub(super) struct MsgBuf {
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

impl MsgBuf {
    /// The `msghdr` to submit; valid while this `MsgBuf` lives.
    pub(super) fn msg(&self) -> *const libc::msghdr {
        &self.msg
    }

    pub(super) fn new(spans: &[Span]) -> Box<Self> {
        let iov = spans
            .iter()
            .map(|s| libc::iovec {
                iov_base: s.addr as *mut libc::c_void,
                iov_len: s.len,
            })
            .collect();
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut m = Box::new(MsgBuf {
            iov,
            msg: unsafe { std::mem::zeroed() },
        });
        m.msg.msg_iov = m.iov.as_mut_ptr();
        m.msg.msg_iovlen = m.iov.len() as _;
        m
    }
}
