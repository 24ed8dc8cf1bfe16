//! The blocking SEND_ZC primitive from the seed: one request, waited for completely.
//!
//! It is for tests, tools and `doctor`, never for the async engine: it blocks the calling
//! thread until the kernel's notification, which on loopback makes a stream of sends up to 9x
//! slower than keeping the next send going (see the engine).

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use io_uring::{squeue, IoUring};

use crate::classify::Tracker;
use crate::probe::probe;
use crate::{op, Errno};

/// A CQE that belonged to another request on the same ring, kept for its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The CQE's `user_data`.
    pub user_data: u64,
    /// The CQE's `res`.
    pub res: i32,
    /// The CQE's `flags`.
    pub flags: u32,
}

/// Counters of what the kernel reported to a [`BlockingRing`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// SEND_ZC notifications seen.
    pub notifications: u64,
    /// Of those, how many carried `IORING_NOTIF_USAGE_ZC_COPIED`.
    pub copied: u64,
}

/// A small io_uring for blocking SEND_ZC calls.
///
/// CQEs of requests it did not submit itself (pushed with [`BlockingRing::push`]) are never
/// discarded: they are kept in order and handed out by [`BlockingRing::take_foreign`].
pub struct BlockingRing {
    ring: IoUring,
    tracker: Tracker,
    foreign: VecDeque<Completion>,
    zc_flags: u16,
    stats: RingStats,
    poisoned: bool,
}

/// The error returned when the probe says zero-copy sends cannot be used here.
pub(crate) fn unsupported() -> io::Error {
    let why = probe()
        .reason
        .as_ref()
        .map(|r| r.message.clone())
        .unwrap_or_else(|| "zero-copy sends are unavailable".into());
    io::Error::new(io::ErrorKind::Unsupported, why)
}

impl BlockingRing {
    /// Creates a ring of `entries` submission slots. Fails with [`io::ErrorKind::Unsupported`]
    /// (carrying the probe's reason) when SEND_ZC cannot be used in this process.
    pub fn new(entries: u32) -> io::Result<Self> {
        let report = probe();
        if !report.supported {
            return Err(unsupported());
        }
        Ok(Self {
            ring: IoUring::new(entries.max(2))?,
            tracker: Tracker::new(),
            foreign: VecDeque::new(),
            zc_flags: if report.report_usage {
                op::SEND_ZC_REPORT_USAGE
            } else {
                0
            },
            stats: RingStats::default(),
            poisoned: false,
        })
    }

    /// Queues a request of the caller's own; its CQEs are collected by [`Self::take_foreign`].
    ///
    /// # Safety
    /// As for `io_uring::SubmissionQueue::push`: every buffer and fd the entry refers to must
    /// stay valid until its CQEs have been taken.
    pub unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: forwarded to the caller by this function's contract.
        unsafe { self.ring.submission().push(sqe) }
            .map_err(|_| io::Error::new(io::ErrorKind::WouldBlock, "submission queue is full"))
    }

    /// CQEs that arrived for requests other than this ring's own sends, oldest first.
    pub fn take_foreign(&mut self) -> Vec<Completion> {
        self.foreign.drain(..).collect()
    }

    /// What notifications reported so far.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Submits and waits until `user_data` is no longer held by the kernel, returning the
    /// transfer result. Signals (`EINTR`) and a full CQ (`EBUSY`) never end the wait early.
    fn wait_for(&mut self, user_data: u64) -> io::Result<Result<u32, Errno>> {
        let mut result = None;
        while self.tracker.contains(user_data) {
            if let Err(e) = self.ring.submit_and_wait(1) {
                let queued = !self.ring.submission().is_empty();
                let retry = matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                );
                if queued && !retry {
                    // The kernel never took the SQE: no buffer is pinned. The entry is still in
                    // the SQ, so this ring must never submit again.
                    self.poisoned = true;
                    return Err(e);
                }
                if !retry {
                    // The request is in the kernel: waiting is the only sound choice.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            for cqe in self.ring.completion() {
                let (ud, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
                if ud != user_data {
                    self.foreign.push_back(Completion {
                        user_data: ud,
                        res,
                        flags,
                    });
                    continue;
                }
                let step = self.tracker.on_cqe(ud, res, flags);
                if step.stray {
                    self.foreign.push_back(Completion {
                        user_data: ud,
                        res,
                        flags,
                    });
                }
                if let Some(sent) = step.sent {
                    result = Some(sent.result);
                }
                if let Some(Some(copied)) = step.released.map(|r| r.copied) {
                    self.stats.notifications += 1;
                    self.stats.copied += u64::from(copied);
                }
            }
        }
        Ok(result.expect("tracker releases only after the transfer CQE"))
    }
}

/// Sends `buf` on socket `fd` with one `IORING_OP_SEND_ZC` and blocks until the kernel has
/// released the buffer (transfer CQE *and* notification). Returns the bytes sent, which may be
/// fewer than `buf.len()` (a short send); see [`send_all_zc`].
///
/// Errors: [`io::ErrorKind::InvalidInput`] for an empty buffer or one over 4 GiB;
/// [`io::ErrorKind::Unsupported`] when the probe says no; the kernel's errno otherwise
/// (`EOPNOTSUPP` for AF_UNIX sockets, `EPIPE`, `ECONNRESET`, ...). Never returns while the
/// kernel may still read `buf`. `user_data` must not be in use by another request on `ring`.
pub fn try_send_zc(
    ring: &mut BlockingRing,
    fd: RawFd,
    buf: &[u8],
    user_data: u64,
) -> io::Result<usize> {
    if buf.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty buffer"));
    }
    let len = u32::try_from(buf.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer larger than 4 GiB"))?;
    if ring.poisoned {
        return Err(io::Error::other("ring is unusable after a failed submit"));
    }
    if !ring.tracker.submit(user_data) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "user_data already in flight",
        ));
    }
    let sqe =
        op::send_zc(fd, buf.as_ptr(), len, ring.zc_flags, None, op::ONE_SHOT).user_data(user_data);
    // SAFETY: `buf` is borrowed for this whole call and `wait_for` returns only once the
    // tracker saw the notification (or a transfer CQE without F_MORE), or once the kernel
    // provably never took the SQE; so the kernel never reads `buf` after we return.
    let pushed = unsafe { ring.ring.submission().push(&sqe) };
    if pushed.is_err() {
        ring.tracker.on_cqe(user_data, -libc::EAGAIN, 0); // untrack: nothing was queued
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "submission queue is full",
        ));
    }
    match ring.wait_for(user_data)? {
        Ok(n) => Ok(n as usize),
        Err(errno) => Err(errno.into_io()),
    }
}

/// Calls [`try_send_zc`] until all of `buf` is sent, resuming after short sends.
/// An empty `buf` is [`io::ErrorKind::InvalidInput`], as for [`try_send_zc`].
pub fn send_all_zc(
    ring: &mut BlockingRing,
    fd: RawFd,
    buf: &[u8],
    user_data: u64,
) -> io::Result<usize> {
    if buf.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty buffer"));
    }
    let mut off = 0;
    while off < buf.len() {
        match try_send_zc(ring, fd, &buf[off..], user_data)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ))
            }
            n => off += n,
        }
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_buffer_is_invalid_input() {
        let Ok(mut ring) = BlockingRing::new(4) else {
            panic!("io_uring SEND_ZC unavailable here: {:?}", probe().reason);
        };
        let err = try_send_zc(&mut ring, 0, &[], 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(ring.tracker.in_flight(), 0);
    }
}
