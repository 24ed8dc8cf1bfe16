//! The asynchronous send engine's handle: starts the completion thread and passes commands to it.
//!
//! **One ring per engine, one engine per JavaScript thread** (the binding keeps it in a
//! thread-local). Completions must go back to the Node environment that owns the promises, and
//! one completion thread per environment is enough to saturate loopback on a 2-core machine;
//! a ring per socket would cost a thread and a ring's memory per connection. The ring is
//! created *on* the engine thread with `IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN` (when the
//! kernel has them), since that thread is its only submitter (measured here: +10–20% for
//! one-in-flight SEND_ZC); registrations therefore also run there.
//!
//! Other threads talk to it through its [`crate::doorbell`]: they push a command and write an
//! eventfd only if the engine said it is going to sleep, so a busy engine is never woken by
//! syscalls. The thread itself is in [`crate::worker`], each socket's state in [`crate::conn`].
//!
//! **Or no thread** ([`Engine::start_local`]): the same ring, connections and commands driven
//! on the owner's thread from its event loop (`worker/local.rs`): commands are applied when
//! they are called, and the owner calls [`Engine::turn`] when [`Engine::wake_fd`] is readable
//! and before its loop blocks while [`Engine::pending`]. Same API, same events.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use io_uring::IoUring;

use crate::buf::Region;
use crate::command::{Cmd, Shared};
use crate::doorbell::Doorbell;
use crate::events::{ConnStats, Event};
use crate::policy::Policy;
use crate::queue::Span;
use crate::worker::local::Local;
use crate::worker::Worker;
use crate::{op, probe, Errno};

/// Handle to a running engine; the engine thread lives as long as the process.
pub struct Engine<H: Send + 'static> {
    shared: Arc<Shared<H>>,
    next_conn: AtomicU32,
    zc_flags: u16,
    /// `None`: the engine thread (commands through the doorbell); `Some`: this thread's loop.
    local: Option<Local<H>>,
}

impl<H: Send + 'static> Engine<H> {
    /// Starts the engine thread and its ring. `sink` runs on the engine thread with each batch
    /// of events; it must not block for long (hand the batch to another thread).
    ///
    /// Fails with [`io::ErrorKind::Unsupported`] when the probe says SEND_ZC is unusable, and
    /// with the OS error when it or the engine's own ring, eventfd or thread ran out of
    /// descriptors or memory (`EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN`: worth trying again later).
    pub fn start(sink: impl FnMut(Vec<Event<H>>) + Send + 'static) -> io::Result<Self> {
        let (zc_flags, shared) = prepare()?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name("zerocopy-engine".into())
            .spawn(move || match new_ring(true) {
                Ok(ring) => {
                    let _ = ready_tx.send(Ok(()));
                    Worker::new(ring, thread_shared, zc_flags, sink).run();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("engine thread died while starting"))??;
        Ok(Engine {
            shared,
            next_conn: AtomicU32::new(1),
            zc_flags,
            local: None,
        })
    }

    /// Creates the ring on this thread, to be driven from its event loop: no engine thread.
    /// Events come back from [`Engine::turn`]. Fails as [`Engine::start`] does.
    pub fn start_local() -> io::Result<Self> {
        let (zc_flags, shared) = prepare()?;
        // Without DEFER_TASKRUN: see "Ring" in `worker/local.rs`. ZEROCOPY_SOCKET_RING=defer
        // brings it back, for measurements only.
        let defer = std::env::var_os("ZEROCOPY_SOCKET_RING").is_some_and(|v| v == "defer");
        let local = Local::new(new_ring(defer)?, shared.clone(), zc_flags)?;
        Ok(Engine {
            shared,
            next_conn: AtomicU32::new(1),
            zc_flags,
            local: Some(local),
        })
    }

    /// For an engine from [`Engine::start_local`]: the descriptor to poll for readability
    /// (the ring has completions or work to run); `None` for the engine thread.
    pub fn wake_fd(&self) -> Option<RawFd> {
        self.local.as_ref().map(|_| self.shared.doorbell.eventfd())
    }

    /// For an engine from [`Engine::start_local`]: commands arrived since the last
    /// [`Engine::turn`], which must run before the owner's thread blocks.
    pub fn pending(&self) -> bool {
        self.local.as_ref().is_some_and(Local::pending)
    }

    /// For an engine from [`Engine::start_local`]: submits what was queued, reaps what
    /// completed and returns the events. Never blocks; always empty for the engine thread.
    pub fn turn(&self) -> Vec<Event<H>> {
        self.local.as_ref().map_or_else(Vec::new, Local::turn)
    }

    /// Whether notifications report `ZC_COPIED` on this kernel.
    pub fn reports_usage(&self) -> bool {
        self.zc_flags != 0
    }

    /// Adopts a connected stream socket: the engine sends on its own `dup` of `fd`, so closing
    /// or reusing the caller's descriptor number can never redirect queued bytes.
    ///
    /// Errors: `EBADF` for a closed fd, `ENOTSOCK` for a non-socket (file, pipe), `EPROTOTYPE`
    /// for a socket that is not a byte stream (UDP), whose datagrams must not be split.
    /// Fails with [`crate::error::ENGINE_FAILED`] once the engine's ring has failed (see
    /// [`Engine::failure`]): callers then send another way.
    pub fn open(&self, fd: RawFd, policy: Policy) -> Result<(u32, Arc<ConnStats>), Errno> {
        if self.failure().is_some() {
            return Err(crate::error::ENGINE_FAILED);
        }
        let dup = dup_stream_socket(fd)?;
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ConnStats::default());
        let policy = Policy {
            peer_loopback: crate::fd::peer_is_loopback(fd),
            ..policy
        };
        // Visible to the caller's thread now, before the engine reads the command.
        stats
            .copies_anyway
            .store(policy.starts_plain(), Ordering::Relaxed);
        self.send(Cmd::Open {
            conn,
            fd: dup,
            policy,
            stats: stats.clone(),
        });
        Ok((conn, stats))
    }

    /// Queues a write of `span` on `conn` (whose counters, from [`Engine::open`], are `stats`),
    /// reported later by an [`Event::Done`] with `id`.
    ///
    /// # Safety
    /// The memory of `span` must stay valid and unmodified for as long as `holder` lives; the
    /// engine drops `holder` only after the kernel released the memory (it comes back in the
    /// `Done` event). `id` must be unique among the socket's pending writes.
    pub unsafe fn write(&self, conn: u32, stats: &ConnStats, id: u64, span: Span, holder: H) {
        let cmd = Cmd::Write {
            conn,
            id,
            span,
            holder,
        };
        if let Some(local) = &self.local {
            return local.apply(cmd);
        }
        self.shared.doorbell.push(cmd);
        // Pushed first, then read: see "Writes that skip the ring" in `crate::doorbell`.
        if !stats.transfer_in_flight.load(Ordering::SeqCst) {
            self.shared.doorbell.ring();
        }
    }

    /// Queues bytes `[offset, offset + len)` of the regular file `file` on `conn`, after every
    /// earlier write and before every later one. The engine reads them into its own staging
    /// slots on its thread; [`Event::Progress`] reports bytes sent, [`Event::Done`] the end.
    /// The engine works on a `dup` of `file`: the caller may close its descriptor at once.
    /// Files go out with `sendfile(2)` on the engine thread, which waits for room with
    /// `POLL_ADD` only if the socket is non-blocking (Node's always are); on a blocking socket
    /// each call blocks the engine thread until the socket took its bytes.
    pub fn send_file(
        &self,
        conn: u32,
        id: u64,
        file: RawFd,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let file = crate::fd::dup_cloexec(file)?;
        self.send(Cmd::SendFile {
            conn,
            id,
            file,
            offset,
            len,
        });
        Ok(())
    }

    /// Asks to abort write `id` (see [`crate::queue::SendQueue::abort`]); a running file send
    /// stops after its current request.
    pub fn abort(&self, conn: u32, id: u64) {
        self.send(Cmd::Abort { conn, id });
    }

    /// Half-closes `conn` after every queued byte was accepted by the kernel.
    pub fn end(&self, conn: u32) {
        self.send(Cmd::End { conn });
    }

    /// Fails pending writes with `ECANCELED`, cancels the request in flight, and once the
    /// kernel holds nothing of the socket's, closes the engine's dup and reports `Closed`.
    pub fn close(&self, conn: u32) {
        self.send(Cmd::Close { conn });
    }

    /// Hands `conn` back to its owner: once every queued write and file send went out and the
    /// kernel released it, closes the engine's dup and reports `Closed`. Unlike
    /// [`Engine::close`] nothing is cancelled and the connection is never reset; a later
    /// `close` still can (a peer that never reads would otherwise keep the dup open).
    pub fn detach(&self, conn: u32) {
        self.send(Cmd::Detach { conn });
    }

    /// Ends the engine, for its owner's teardown (a worker thread that ends, or process exit):
    /// closes every socket as [`Engine::close`] does and, once the kernel released everything
    /// and no socket is left, ends the engine thread, closing its ring and eventfd. Waits up to
    /// `timeout` for that; returns `false` on timeout (a peer that does not read can hold
    /// zero-copy pages until its connection is reset), and the thread then ends by itself
    /// later. Without it, the engine's dups would keep those connections open, and the thread
    /// and ring would stay, for the life of the process. Use no other method afterwards.
    pub fn shutdown(&self, timeout: std::time::Duration) -> bool {
        let (reply, answer) = mpsc::channel();
        self.send(Cmd::Shutdown { reply });
        match &self.local {
            Some(local) => local.shutdown(timeout),
            None => answer.recv_timeout(timeout).is_ok(),
        }
    }

    /// Registers `region` with the ring as a fixed buffer, so zero-copy sends from it skip
    /// page pinning. Blocks until the engine thread answered. Errors: `ENOMEM` (over
    /// RLIMIT_MEMLOCK), `ENOSPC` (table full), `EOPNOTSUPP` (no sparse table on this kernel).
    pub fn register(&self, region: Arc<Region>) -> Result<(), Errno> {
        let (reply, answer) = mpsc::channel();
        self.send(Cmd::Register { region, reply });
        answer.recv().unwrap_or(Err(Errno(libc::EIO)))
    }

    /// Drops the registration of the region starting at `addr` (made by [`Engine::register`]).
    pub fn unregister(&self, addr: usize) {
        self.send(Cmd::Unregister { addr });
    }

    /// The errno `io_uring_enter` failed with, if the engine's ring failed for good. Every
    /// write of its sockets then failed with [`crate::error::ENGINE_FAILED`], memory the kernel
    /// may still read is kept for the life of the process, and new sockets are refused.
    pub fn failure(&self) -> Option<Errno> {
        self.shared.doorbell.failure()
    }

    /// Requests the kernel has not released yet, over all sockets (pinned buffers).
    pub fn unreleased(&self) -> u64 {
        self.shared.unreleased.load(Ordering::Acquire)
    }

    fn send(&self, cmd: Cmd<H>) {
        if let Some(local) = &self.local {
            return local.apply(cmd);
        }
        self.shared.doorbell.push(cmd);
        self.shared.doorbell.ring();
    }
}

/// What both drivers start from: the probe's verdict, the zero-copy flags, the shared state.
fn prepare<H>() -> io::Result<(u16, Arc<Shared<H>>)> {
    let report = probe();
    if let Some(errno) = report
        .reason
        .as_ref()
        .filter(|r| r.is_transient())
        .and_then(|r| r.errno)
    {
        return Err(io::Error::from_raw_os_error(errno));
    }
    if !report.supported {
        return Err(crate::send_zc::unsupported());
    }
    let zc_flags = if report.report_usage {
        op::SEND_ZC_REPORT_USAGE
    } else {
        0
    };
    let shared = Arc::new(Shared {
        doorbell: Doorbell::new()?,
        unreleased: AtomicU64::new(0),
    });
    Ok((zc_flags, shared))
}

/// The engine's ring: 256 entries, smaller when RLIMIT_MEMLOCK is too low for that (kernels
/// charge ring memory to it for processes without CAP_IPC_LOCK), plainer flags on old kernels
/// (`COOP_TASKRUN` before 6.1, none before 5.19); `SINGLE_ISSUER | COOP_TASKRUN` when not
/// `defer_taskrun`. Created on the thread that drives it.
fn new_ring(defer_taskrun: bool) -> io::Result<IoUring> {
    let mut last = None;
    for entries in [256, 64, 16] {
        let deferred = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries);
        let ring = deferred
            .and_then(|r| {
                if defer_taskrun {
                    Ok(r)
                } else {
                    Err(io::Error::other("coop"))
                }
            })
            .or_else(|_| {
                IoUring::builder()
                    .setup_single_issuer()
                    .setup_coop_taskrun()
                    .build(entries)
            })
            .or_else(|_| IoUring::builder().setup_coop_taskrun().build(entries))
            .or_else(|_| IoUring::new(entries));
        match ring {
            Ok(r) => return Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("tried at least once"))
}

/// `F_DUPFD_CLOEXEC` after checking that `fd` is a stream socket.
pub(crate) fn dup_stream_socket(fd: RawFd) -> Result<OwnedFd, Errno> {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, which we own.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(Errno::last());
    }
    if ty != libc::SOCK_STREAM {
        return Err(Errno(libc::EPROTOTYPE));
    }
    crate::fd::dup_cloexec(fd)
}
