//! The same public API where io_uring does not exist (macOS, Windows) or is swapped out by the
//! `force-unsupported` feature: everything reports `Unsupported`, so callers fall back to
//! plain sends. Uses only portable types (no `std::os::fd`), so it builds on Windows.

use std::io;

use std::sync::Arc;

use crate::buf::Region;
use crate::events::{ConnStats, Event};
use crate::policy::Policy;
use crate::probe::{Ops, ProbeReport, Reason, ReasonCode};
use crate::queue::Span;
use crate::Errno;

/// A CQE that belonged to another request (never produced by the stub).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The CQE's `user_data`.
    pub user_data: u64,
    /// The CQE's `res`.
    pub res: i32,
    /// The CQE's `flags`.
    pub flags: u32,
}

/// Counters of what the kernel reported (always zero in the stub).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// SEND_ZC notifications seen.
    pub notifications: u64,
    /// Of those, how many carried `IORING_NOTIF_USAGE_ZC_COPIED`.
    pub copied: u64,
}

/// Stands in for the Linux ring; cannot be created.
pub struct BlockingRing {
    _private: (),
}

/// The raw socket handle type the API takes (an fd number on every platform).
pub type RawFd = i32;

pub(crate) fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring zero-copy sends are not available on this platform",
    )
}

impl BlockingRing {
    /// Always fails with [`io::ErrorKind::Unsupported`].
    pub fn new(_entries: u32) -> io::Result<Self> {
        Err(unsupported())
    }

    /// Never yields anything.
    pub fn take_foreign(&mut self) -> Vec<Completion> {
        Vec::new()
    }

    /// Always zero.
    pub fn stats(&self) -> RingStats {
        RingStats::default()
    }
}

/// Always fails: [`io::ErrorKind::InvalidInput`] for an empty buffer (as on Linux), otherwise
/// [`io::ErrorKind::Unsupported`].
pub fn try_send_zc(
    _ring: &mut BlockingRing,
    _fd: RawFd,
    buf: &[u8],
    _user_data: u64,
) -> io::Result<usize> {
    if buf.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty buffer"));
    }
    Err(unsupported())
}

/// Always fails like [`try_send_zc`].
pub fn send_all_zc(
    ring: &mut BlockingRing,
    fd: RawFd,
    buf: &[u8],
    user_data: u64,
) -> io::Result<usize> {
    try_send_zc(ring, fd, buf, user_data)
}

/// Reads nothing: without Linux's `RWF_NOWAIT` a read could wait for the disk, so the caller
/// reads another way. The Linux version is `direct::read_now`.
pub fn read_now(_file: RawFd, _buf: &mut [u8], _offset: u64) -> Result<usize, Errno> {
    Ok(0)
}

/// Never sends anything inline: `Ok(0)`. The Linux version is `direct::sendfile_now_after`.
pub fn sendfile_now_after(
    _sock: RawFd,
    _head: &[u8],
    _file: RawFd,
    _offset: u64,
    _len: u64,
) -> Result<u64, Errno> {
    Ok(0)
}

/// Never sends anything inline: `Ok(0)`, so the caller takes its usual (fallback) path. The
/// Linux version is `direct::sendfile_now`.
pub fn sendfile_now(_sock: RawFd, _file: RawFd, _offset: u64, _len: u64) -> Result<u64, Errno> {
    Ok(0)
}

/// Never sends anything inline: `Ok(0)` (no engine runs here, so nothing asks). The Linux
/// version is `direct::send_now`.
pub fn send_now(_sock: RawFd, _data: &[u8]) -> Result<usize, Errno> {
    Ok(0)
}

/// Cannot tell here: `ENOSYS`. The Linux version is `direct::unacked_bytes`.
pub fn unacked_bytes(_sock: RawFd) -> Result<u64, Errno> {
    Err(Errno(libc::ENOSYS))
}

/// Stands in for the Linux send engine; cannot be started.
pub struct Engine<H> {
    _holder: std::marker::PhantomData<fn(H)>,
}

impl<H: Send + 'static> Engine<H> {
    /// Always fails with [`io::ErrorKind::Unsupported`]: callers fall back to plain writes.
    pub fn start(_sink: impl FnMut(Vec<Event<H>>) + Send + 'static) -> io::Result<Self> {
        Err(unsupported())
    }

    /// Always fails with [`io::ErrorKind::Unsupported`], as [`Engine::start`].
    pub fn start_local() -> io::Result<Self> {
        Err(unsupported())
    }

    /// No loop driver here: `None`.
    pub fn wake_fd(&self) -> Option<RawFd> {
        None
    }

    /// Never pending.
    pub fn pending(&self) -> bool {
        false
    }

    /// No events, ever.
    pub fn turn(&self) -> Vec<Event<H>> {
        Vec::new()
    }

    /// Never true.
    pub fn reports_usage(&self) -> bool {
        false
    }

    /// Never succeeds (no engine can exist).
    pub fn open(&self, _fd: RawFd, _policy: Policy) -> Result<(u32, Arc<ConnStats>), Errno> {
        Err(Errno(libc::ENOSYS))
    }

    /// Unreachable without an engine; hands nothing to any kernel.
    ///
    /// # Safety
    /// Same contract as the Linux engine's `write`.
    pub unsafe fn write(&self, _conn: u32, _stats: &ConnStats, _id: u64, _span: Span, _holder: H) {}

    /// Never succeeds (no engine can exist).
    pub fn send_file(
        &self,
        _conn: u32,
        _id: u64,
        _file: RawFd,
        _offset: u64,
        _len: u64,
    ) -> Result<(), Errno> {
        Err(Errno(libc::ENOSYS))
    }

    /// Never succeeds: there is no ring to register with.
    pub fn register(&self, _region: Arc<Region>) -> Result<(), Errno> {
        Err(Errno(libc::ENOSYS))
    }

    /// No-op.
    pub fn unregister(&self, _addr: usize) {}

    /// No-op.
    pub fn abort(&self, _conn: u32, _id: u64) {}

    /// No-op.
    pub fn end(&self, _conn: u32) {}

    /// No-op.
    pub fn close(&self, _conn: u32) {}

    /// Nothing to hand back: no socket is ever opened here.
    pub fn detach(&self, _conn: u32) {}

    /// Nothing to end: `true`.
    pub fn shutdown(&self, _timeout: std::time::Duration) -> bool {
        true
    }

    /// Never failed (never ran).
    pub fn failure(&self) -> Option<Errno> {
        None
    }

    /// Always zero.
    pub fn unreleased(&self) -> u64 {
        0
    }
}

pub(crate) fn detect() -> ProbeReport {
    ProbeReport {
        supported: false,
        io_uring: false,
        platform: std::env::consts::OS,
        kernel: String::new(),
        ops: Ops::default(),
        report_usage: false,
        io_uring_disabled: None,
        seccomp: None,
        reason: Some(Reason {
            code: ReasonCode::Platform,
            errno: None,
            message: if cfg!(target_os = "linux") {
                "built with the force-unsupported feature: io_uring is never used".into()
            } else {
                format!("io_uring is Linux-only; this is {}", std::env::consts::OS)
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_probe_reports_platform_reason() {
        let r = crate::probe();
        assert!(!r.supported && !r.io_uring);
        assert_eq!(r.reason.as_ref().unwrap().code, ReasonCode::Platform);
    }

    #[test]
    fn stub_sends_nothing_inline() {
        assert_eq!(sendfile_now(3, 4, 0, 4096), Ok(0));
        assert_eq!(sendfile_now(-1, -1, 0, 1), Ok(0));
    }

    #[test]
    fn stub_ring_and_send_are_unsupported() {
        assert_eq!(
            BlockingRing::new(8).err().unwrap().kind(),
            io::ErrorKind::Unsupported
        );
        let mut ring = BlockingRing { _private: () };
        assert_eq!(
            try_send_zc(&mut ring, 3, b"x", 1).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
        assert_eq!(
            try_send_zc(&mut ring, 3, b"", 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
