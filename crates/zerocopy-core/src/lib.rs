//! Zero-copy TCP sends for Linux through io_uring `IORING_OP_SEND_ZC`.
//!
//! - [`probe`]: can this process use io_uring and SEND_ZC, and if not, why.
//! - [`classify`]: what a completion means for a send request (pure).
//! - [`try_send_zc`]: the blocking one-request primitive, for tests and tools.
//! - [`queue`]: the per-socket send queue (ordering, short sends, splitting, coalescing).
//! - [`Engine`]: the asynchronous engine: a ring and its completion thread serving many sockets.
//!   Or, from `Engine::start_local`, the same engine driven on its owner's event loop.
//! - [`sendfile_now`]: a file range sent inline on the caller's thread, only when that cannot block;
//!   [`read_now`]: one read the same way; [`send_now`]: memory sent the same way.
//!
//! On other platforms, or with the `force-unsupported` feature, the same API is backed by a
//! stub that reports `Unsupported`, so callers fall back to plain sends.

pub mod buf;
pub mod classify;
pub mod error;
pub mod events;
pub mod fd;
pub mod file;
pub mod policy;
pub mod probe;
pub mod queue;

#[cfg(uring)]
mod command;
#[cfg(uring)]
mod conn;
#[cfg(uring)]
pub mod direct;
#[cfg(uring)]
mod doorbell;
#[cfg(uring)]
mod engine;
#[cfg(uring)]
mod op;
#[cfg(uring)]
mod send_zc;
#[cfg(not(uring))]
mod stub;
#[cfg(uring)]
mod worker;

pub use error::Errno;
pub use events::{ConnStats, Event};
pub use fd::{file_identity, FileIdentity};
pub use policy::{Mode, Policy};
pub use probe::{probe, Ops, ProbeReport, Reason, ReasonCode};
pub use queue::{Done, Span};

#[cfg(uring)]
pub use direct::{read_now, send_now, sendfile_now, sendfile_now_after, unacked_bytes};
#[cfg(uring)]
pub use engine::Engine;
#[cfg(uring)]
pub use send_zc::{send_all_zc, try_send_zc, BlockingRing, Completion, RingStats};
#[cfg(uring)]
pub use std::os::fd::RawFd;
#[cfg(not(uring))]
pub use stub::{
    read_now, send_all_zc, send_now, sendfile_now, sendfile_now_after, try_send_zc, unacked_bytes,
    BlockingRing, Completion, Engine, RawFd, RingStats,
};
