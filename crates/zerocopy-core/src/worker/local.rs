//! The loop driver: the same ring, connections and commands as the engine thread, driven on
//! the owner's own thread (a JavaScript thread's event loop) instead of a thread of its own.
//! No doorbell, no mailbox: a command is applied when it is called, and the owner calls
//! `Engine::turn` when the ring's eventfd is readable and once per loop turn before the
//! loop blocks, which submits what the turn queued and reaps what completed.
//!
//! **Ring.** Created on the owner's thread with `SINGLE_ISSUER | COOP_TASKRUN` (the owner is
//! its only submitter and reaper; completions run as task work when that thread next enters
//! the kernel, and a thread asleep in `epoll_wait` is woken for it, without an IPI to a
//! running one), or plainer flags on old kernels. The ring tells the loop through a
//! registered eventfd (the doorbell's; no producer thread writes it here), which the kernel
//! signals when it posts CQEs. Not `DEFER_TASKRUN`: with it, completions wait in a list
//! that only an `io_uring_enter(GETEVENTS)` runs, and the eventfd is signalled when that list
//! goes from empty to non-empty; driven from epoll that was measured 4-8x slower for
//! `sendfile` than the engine thread (see the notes of the ring-loop branch), against
//! about equal with `COOP_TASKRUN`.
//!
//! **Why no progress is lost.** Every command marks the engine `pending`; the owner must call
//! `turn` before its thread blocks whenever `pending` is set (a libuv prepare handle). `turn`
//! submits and reaps until a round brings no CQE and leaves no SQE queued and no socket due
//! (at most `ROUNDS` rounds; a call that stops with work left writes the eventfd itself).
//! What is then in flight completes in the kernel, which signals the eventfd; the owner polls
//! it and calls `turn` again. The eventfd is drained
//! before `io_uring_enter`, so a signal after the drain stays readable for the next poll.
//!
//! **A failed ring.** As on the engine thread (`failure.rs`): every socket fails with
//! `ENGINE_FAILED` and later commands are answered at once, but on the owner's thread, from
//! the same call.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::IoUring;

use super::{note_enter_error, Worker};
use crate::command::{Cmd, Shared};
use crate::events::Event;

/// `IORING_ENTER_GETEVENTS`: also run deferred task work (post completions).
const ENTER_GETEVENTS: u32 = 1;
/// Submit-and-reap rounds per `Engine::turn`, so a socket whose sends all complete
/// inline cannot keep the loop from its other work.
const ROUNDS: usize = 16;

type NoSink<H> = fn(Vec<Event<H>>);

/// The loop driver behind an [`crate::Engine`] from `Engine::start_local` (see the module
/// docs). Not `Sync`: every call, including the ring's creation, happens on one thread.
pub(crate) struct Local<H: Send + 'static> {
    /// Dropped only when nothing is in flight and the ring did not fail (see `Drop`).
    worker: ManuallyDrop<RefCell<Worker<H, NoSink<H>>>>,
    pending: Cell<bool>,
}

impl<H: Send + 'static> Local<H> {
    pub(crate) fn new(ring: IoUring, shared: Arc<Shared<H>>, zc_flags: u16) -> io::Result<Self> {
        let wake = shared.doorbell.eventfd();
        // SAFETY: fcntl on our own eventfd; `turn` drains it and must never block.
        unsafe { libc::fcntl(wake, libc::F_SETFL, libc::O_NONBLOCK) };
        ring.submitter().register_eventfd(wake)?;
        let sink: NoSink<H> = drop;
        let mut worker = Worker::new(ring, shared, zc_flags, sink);
        // Measurements only (see the ring-loop notes): sends from this size on go to io-wq.
        if let Some(n) = std::env::var("ZEROCOPY_SOCKET_ASYNC_FROM")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            worker.async_from = n;
        }
        Ok(Local {
            worker: ManuallyDrop::new(RefCell::new(worker)),
            pending: Cell::new(false),
        })
    }

    pub(crate) fn pending(&self) -> bool {
        self.pending.get()
    }

    /// Applies a command now (answers it at once if the ring failed).
    pub(crate) fn apply(&self, cmd: Cmd<H>) {
        let mut worker = self.worker.borrow_mut();
        if worker.broken.is_some() {
            if let Some(reply) = worker.answer_failed(cmd) {
                let _ = reply.send(());
            }
        } else {
            worker.apply(cmd);
        }
        self.pending.set(true);
    }

    pub(crate) fn turn(&self) -> Vec<Event<H>> {
        let mut worker = self.worker.borrow_mut();
        drain_eventfd(worker.shared.doorbell.eventfd());
        let done = worker.turn_local();
        self.pending.set(!done);
        if !done {
            // Rounds ran out with work left that no completion will signal (SQEs not yet
            // submitted, sockets due a pump): signal ourselves, so the loop comes back at once.
            signal_eventfd(worker.shared.doorbell.eventfd());
        }
        std::mem::take(&mut worker.events)
    }

    /// After `Cmd::Shutdown` was applied: drives the ring on this thread until no socket is
    /// left, for up to `timeout`; the events that come meanwhile are dropped here. `false` on
    /// timeout (what the kernel may still read then stays, see `Drop`).
    pub(crate) fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            drop(self.turn());
            let worker = self.worker.borrow();
            if worker.broken.is_some() {
                return true; // failed: every socket was answered, nothing more will come
            }
            if worker.conns.is_empty() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: worker.shared.doorbell.eventfd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd, count 1.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(50) as i32 + 1) };
        }
    }
}

impl<H: Send + 'static> Drop for Local<H> {
    /// Frees the ring and the connections only if the kernel holds nothing of theirs: with a
    /// socket left (shutdown timed out) or a failed ring, they are leaked, as the engine
    /// thread leaks them (`failure.rs`), never freed under the kernel.
    fn drop(&mut self) {
        let worker = self.worker.get_mut();
        if worker.broken.is_none() && worker.conns.is_empty() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.worker) };
        }
    }
}

impl<H: Send + 'static> Worker<H, NoSink<H>> {
    /// Up to [`ROUNDS`] rounds of pump, submit (with deferred completions run) and reap.
    /// Returns `true` when the last round left nothing to do now.
    fn turn_local(&mut self) -> bool {
        if self.broken.is_some() {
            return true;
        }
        for _ in 0..ROUNDS {
            self.pump();
            let queued = self.ring.submission().len() as u32;
            // SAFETY: no argument is passed; every queued SQE points at memory that outlives
            // its request (see `push`).
            let entered = unsafe {
                self.ring
                    .submitter()
                    .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
            };
            if let Err(e) = entered {
                note_enter_error(&mut self.broken, &e);
            }
            let completed = !self.ring.completion().is_empty();
            self.reap();
            if let Some(e) = self.broken {
                self.fail_all(e);
                return true;
            }
            let due = self.conns.values().any(|s| s.conn.needs_pump());
            if !completed && !due && self.ring.submission().is_empty() {
                return true;
            }
        }
        false
    }
}

fn signal_eventfd(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn drain_eventfd(fd: RawFd) {
    let mut buf = 0u64;
    // SAFETY: reads at most 8 bytes into a live u64; the eventfd is non-blocking.
    unsafe { libc::read(fd, (&mut buf as *mut u64).cast(), 8) };
}
