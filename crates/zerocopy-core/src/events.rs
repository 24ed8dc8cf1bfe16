//! What the send engine counts per socket and reports back. Portable: the non-Linux stub
//! exposes the same types.

use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::error::Errno;
use crate::queue::Done;

/// Counters for one socket, readable from any thread while the engine updates them.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Bytes the kernel accepted.
    pub bytes_sent: AtomicU64,
    /// Requests sent as `IORING_OP_SEND_ZC`.
    pub zero_copy_sends: AtomicU64,
    /// Requests sent as plain (copying) `IORING_OP_SEND`/`SENDMSG`.
    pub copy_sends: AtomicU64,
    /// `sendfile(2)` calls of file sends that moved bytes page-cache-to-socket (counted apart
    /// from `copy_sends`: no user memory is copied).
    pub sendfile_calls: AtomicU64,
    /// Bytes those `sendfile(2)` calls sent (also in `bytes_sent`).
    pub sendfile_bytes: AtomicU64,
    /// Zero-copy notifications received.
    pub notifications: AtomicU64,
    /// Of those, how many said the kernel copied anyway (`IORING_NOTIF_USAGE_ZC_COPIED`).
    pub copied_notifications: AtomicU64,
    /// Zero-copy was given up for this socket after `EOPNOTSUPP` (e.g. AF_UNIX).
    pub zero_copy_unsupported: AtomicBool,
    /// `Auto` switched to plain sends: the kernel reported it copies zero-copy sends anyway.
    pub copies_anyway: AtomicBool,
    /// Not a counter: a transfer of this socket is in flight, so the engine will come back to
    /// the socket when it completes. A write queued meanwhile needs no wake-up of the engine
    /// (it would wait behind that transfer anyway); skipping those wake-ups was measured to cut
    /// context switches for large writes.
    pub transfer_in_flight: AtomicBool,
    /// Zero-copy pieces resent plain after `ENOMEM`/`ENOBUFS` (RLIMIT_MEMLOCK).
    pub zero_copy_no_memory: AtomicU64,
    /// File sends that went the staged way (policy `staged_files`, or a file `sendfile(2)`
    /// refused) and so allocated a staging region, and took a fixed-buffer slot if one was
    /// free. File sends that stay on `sendfile(2)` take neither.
    pub staging_regions: AtomicU64,
}

/// What the engine reports back. `H` is the caller's keep-alive handle for a write's memory,
/// handed back only once the kernel has released that memory.
#[derive(Debug)]
pub enum Event<H> {
    /// A write finished (sent, failed, or withdrawn by abort).
    Done {
        /// Socket id from [`Engine::open`].
        conn: u32,
        /// The write's outcome.
        done: Done,
        /// The write's keep-alive handle (`None` for file sends); dropping it may free the memory.
        holder: Option<H>,
    },
    /// A file send made progress: `sent` bytes of it are with the kernel so far.
    Progress {
        /// Socket id.
        conn: u32,
        /// The file send's write id.
        id: u64,
        /// Bytes sent so far.
        sent: u64,
    },
    /// After [`Engine::end`]: every byte was accepted and `shutdown(SHUT_WR)` ran (or failed).
    Ended {
        /// Socket id.
        conn: u32,
        /// `shutdown(2)`'s result, or the socket's earlier failure.
        result: Result<(), Errno>,
    },
    /// After [`Engine::close`]: the kernel holds nothing of the socket's and its dup is closed.
    Closed {
        /// Socket id.
        conn: u32,
    },
}
