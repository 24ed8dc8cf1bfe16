//! What the owner of an engine asks its driver to do ([`Cmd`]), and what the handle shares with
//! the engine thread ([`Shared`]). Its own module so that the handle (`engine.rs`) and the
//! thread (`worker.rs`) both depend on it and not on each other.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};

use crate::buf::Region;
use crate::doorbell::Doorbell;
use crate::events::ConnStats;
use crate::policy::Policy;
use crate::queue::Span;
use crate::Errno;

/// What the engine thread is asked to do.
pub(crate) enum Cmd<H> {
    Open {
        conn: u32,
        fd: OwnedFd,
        policy: Policy,
        stats: Arc<ConnStats>,
    },
    Write {
        conn: u32,
        id: u64,
        span: Span,
        holder: H,
    },
    SendFile {
        conn: u32,
        id: u64,
        file: OwnedFd,
        offset: u64,
        len: u64,
    },
    Abort {
        conn: u32,
        id: u64,
    },
    End {
        conn: u32,
    },
    Close {
        conn: u32,
    },
    /// Hand the socket back: once every queued byte went out and was released, close the
    /// engine's dup (never resetting the connection) and report `Closed`.
    Detach {
        conn: u32,
    },
    /// Close every socket; once none is left, reply and end the engine thread.
    Shutdown {
        reply: mpsc::Sender<()>,
    },
    /// Register `region` as a fixed buffer; the reply says why not when it cannot be.
    Register {
        region: Arc<Region>,
        reply: mpsc::Sender<Result<(), Errno>>,
    },
    /// Drop a registration made by `Register` (the region is kept until no request uses it).
    Unregister {
        addr: usize,
    },
}

pub(crate) struct Shared<H> {
    /// Commands for the engine thread, and its wake-up (see [`crate::doorbell`]).
    pub(crate) doorbell: Doorbell<Cmd<H>>,
    /// Requests the kernel has not released yet, over all sockets (buffers pinned).
    pub(crate) unreleased: AtomicU64,
}
