//! One socket's sending, as a state machine without I/O: it takes the owner's commands and the
//! kernel's completions, and asks its [`ConnIo`] to submit requests, call `sendfile(2)`, shut
//! the socket down and report [`Event`]s. The engine thread ([`crate::worker`]) drives one per
//! socket over the real ring; the property test in `tests.rs` drives it over a model kernel.
//!
//! What it holds, each in one place:
//! - memory writes in a [`SendQueue`], which orders them, splits and coalesces them, and says
//!   when each is done;
//! - at most one running file send, a [`FileJob`] (`sendfile(2)` or staged; `jobs.rs`), at the
//!   queue's position, and the retired staged jobs whose staging memory the kernel still pins;
//! - every request it submitted and the kernel has not released, one [`InFlight`] record per
//!   `user_data` in `reqs`: what it is for, which of its completions arrived
//!   ([`OpState`]), and the `msghdr` it points to; a request's memory (a caller's holder, a
//!   staging region, a `msghdr`) lives at least until its record says it was released;
//! - its [`Lifecycle`] (open, handing back, closing) and its [`EndState`].
//!
//! **Rules** (each pinned by the property test): bytes leave in the order they were queued,
//! each once; one transfer is in flight per socket; a write is reported done, with its holder,
//! only after every request covering its bytes was released; every command is answered by
//! exactly one event; and progress is never lost (see [`Connection::pump`]).

mod io;
mod jobs;
mod pump;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::classify::OpState;
use crate::events::{ConnStats, Event};
use crate::policy::Policy;
use crate::queue::{Done, SendQueue, SentOutcome, Span};
use crate::Errno;
use io::MsgBuf;
pub(crate) use io::{ConnIo, FileConfig, Request, SendfileLimits, Staged, Staging};
use jobs::{FileJob, StagedJob};

/// Where a connection is in its life. Each state only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Open,
    /// The owner takes the socket back: go once idle, cancelling nothing.
    Detaching,
    /// Pending writes failed with `ECANCELED`; the request in flight is cancelled (once
    /// `cancel_sent`), and the connection goes once the kernel released everything.
    Closing {
        cancel_sent: bool,
    },
}

/// The owner's `end()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndState {
    NotAsked,
    /// Shut down once every queued byte went out.
    Asked,
    /// `shutdown(SHUT_WR)` ran (or the socket's error was reported instead).
    Reported,
}

/// What a request in flight is for. The caller memory it covers is kept by the queue's write
/// (its holder), the staging by its job, and a `msghdr` here, until the request is released.
#[derive(Clone, Copy, Debug)]
enum Req {
    Queue {
        token: u64,
        zero_copy: bool,
    },
    /// A read into a staging slot of file job `job` (which may have retired meanwhile).
    FileRead {
        job: u64,
        slot: usize,
    },
    /// A send from a staging slot of file job `job`.
    FileSend {
        job: u64,
        slot: usize,
        zero_copy: bool,
    },
    /// The running `sendfile` job waits for room in the socket.
    FilePoll,
}

/// A request in flight, the one record of it (keyed by its `user_data`): what it is for,
/// which of its completions arrived, and the `msghdr` a vectored send points to.
struct InFlight {
    what: Req,
    state: OpState,
    _msg: Option<Box<MsgBuf>>,
}

/// One socket's send state. `H` is the caller's keep-alive handle for a write's memory, `F` a
/// file descriptor of a file send (owned: dropping it closes the engine's dup).
pub(crate) struct Connection<H, F> {
    conn: u32,
    policy: Policy,
    files_config: FileConfig,
    stats: Arc<ConnStats>,
    queue: SendQueue,
    holders: HashMap<u64, H>,
    /// File sends queued but not started: id → (file, offset).
    files: HashMap<u64, (F, u64)>,
    job: Option<FileJob<F>>,
    /// Staged file jobs already reported done whose staging the kernel still pins (a peer that
    /// does not read keeps zero-copy sends in the socket's send queue): kept until released.
    retired: Vec<StagedJob<F>>,
    /// The queue's request in flight (to cancel on close).
    queue_ud: Option<u64>,
    reqs: HashMap<u64, InFlight>,
    next_seq: u32,
    lifecycle: Lifecycle,
    end: EndState,
    /// The socket was reset (`ConnIo::reset`): no request may be submitted any more.
    reset: bool,
    /// An input changed something since the last pump: a request may be due, or writes done.
    dirty: bool,
}

impl<H, F: AsRawFd> Connection<H, F> {
    /// A connection `conn` (its requests' `user_data` carry it in their upper 32 bits).
    pub(crate) fn new(conn: u32, policy: Policy, files: FileConfig, stats: Arc<ConnStats>) -> Self {
        Connection {
            conn,
            policy,
            files_config: files,
            stats,
            queue: if policy.starts_plain() {
                SendQueue::copying()
            } else {
                SendQueue::new()
            },
            holders: HashMap::new(),
            files: HashMap::new(),
            job: None,
            retired: Vec::new(),
            queue_ud: None,
            reqs: HashMap::new(),
            next_seq: 0,
            lifecycle: Lifecycle::Open,
            end: EndState::NotAsked,
            reset: false,
            dirty: false,
        }
    }

    /// The socket's counters.
    pub(crate) fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// An input arrived since the last [`Connection::pump`].
    pub(crate) fn needs_pump(&self) -> bool {
        self.dirty
    }

    fn closing(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Closing { .. })
    }

    /// Queues a write of `span`, whose memory `holder` keeps alive; a closing or failed socket
    /// hands the holder straight back with the error.
    pub(crate) fn write(&mut self, id: u64, span: Span, holder: H, io: &mut impl ConnIo<H>) {
        let pushed = if self.closing() {
            Err(Errno(libc::ECANCELED))
        } else {
            self.queue.push(id, span)
        };
        match pushed {
            Ok(()) => {
                self.holders.insert(id, holder);
                self.dirty = true;
            }
            Err(e) => io.event(failed_done(self.conn, id, e, Some(holder))),
        }
    }

    /// Queues bytes `[offset, offset + len)` of `file` after every earlier write.
    pub(crate) fn send_file(
        &mut self,
        id: u64,
        file: F,
        offset: u64,
        len: u64,
        io: &mut impl ConnIo<H>,
    ) {
        let pushed = if self.closing() {
            Err(Errno(libc::ECANCELED))
        } else {
            self.queue.push_external(id, len as usize)
        };
        match pushed {
            Ok(()) => {
                self.files.insert(id, (file, offset));
                self.dirty = true;
            }
            Err(e) => io.event(failed_done(self.conn, id, e, None)),
        }
    }

    /// Aborts write `id` (see [`SendQueue::abort`]); a running file send stops after its
    /// current request, and a wait of it for room in the socket is cancelled, or the abort
    /// would only take effect once the peer reads again.
    pub(crate) fn abort(&mut self, id: u64, io: &mut impl ConnIo<H>) {
        self.queue.abort(id);
        if let Some(job) = self.job.as_mut().filter(|j| j.id() == id) {
            job.stop(Errno(libc::ECANCELED));
            if let Some(target) = job.writing() {
                io.cancel(target);
            }
        }
        self.dirty = true;
    }

    /// Shuts the socket down for writing once every queued byte went out.
    pub(crate) fn end(&mut self) {
        if self.end == EndState::NotAsked {
            self.end = EndState::Asked;
        }
        self.dirty = true;
    }

    /// Starts closing: pending writes fail with `ECANCELED`, the request in flight is cancelled
    /// on the next pump, and the connection goes once the kernel released everything.
    pub(crate) fn close(&mut self) {
        if !self.closing() {
            self.lifecycle = Lifecycle::Closing { cancel_sent: false };
        }
        self.queue.fail(Errno(libc::ECANCELED));
        if let Some(job) = self.job.as_mut() {
            job.stop(Errno(libc::ECANCELED));
        }
        self.dirty = true;
    }

    /// Hands the socket back once idle (every queued byte sent and released), cancelling nothing.
    pub(crate) fn detach(&mut self) {
        if self.lifecycle == Lifecycle::Open {
            self.lifecycle = Lifecycle::Detaching;
        }
        self.dirty = true;
    }

    /// Submits a request of this connection and records what it is for.
    fn submit(&mut self, req: Request, what: Req, io: &mut impl ConnIo<H>) -> u64 {
        self.submit_with(req, what, None, io)
    }

    fn submit_with(
        &mut self,
        req: Request,
        what: Req,
        msg: Option<Box<MsgBuf>>,
        io: &mut impl ConnIo<H>,
    ) -> u64 {
        debug_assert!(!self.reset, "no request after the socket was reset");
        // A sequence number no request in flight uses: `user_data` stays unique however long a
        // request waits for its release (at most a few are unreleased at once).
        let ud = loop {
            let ud = (u64::from(self.conn) << 32) | u64::from(self.next_seq);
            self.next_seq = self.next_seq.wrapping_add(1);
            if !self.reqs.contains_key(&ud) {
                break ud;
            }
        };
        let record = InFlight {
            what,
            state: OpState::SUBMITTED,
            _msg: msg,
        };
        self.reqs.insert(ud, record);
        io.submit(ud, req);
        ud
    }

    /// Feeds one CQE of request `ud`. Returns whether the kernel released the request with it.
    pub(crate) fn on_cqe(&mut self, ud: u64, res: i32, flags: u32) -> bool {
        let Some(record) = self.reqs.get_mut(&ud) else {
            return false; // not a request of ours (or one already released)
        };
        let (next, step) = record.state.on_cqe(ud, res, flags);
        if step.stray {
            return false;
        }
        let what = record.what;
        if let Some(next) = next {
            record.state = next;
        }
        self.dirty = true;
        let sent = step.sent.map(|s| s.result);
        let released = step.released.map(|r| r.copied);
        match what {
            Req::Queue { token, zero_copy } => {
                if let Some(result) = sent {
                    self.queue_ud = None;
                    self.on_queue_sent(token, result);
                }
                if let Some(copied) = released {
                    if zero_copy {
                        count_notification(&self.stats, copied);
                    }
                    self.queue.on_released(token, copied);
                }
            }
            Req::FilePoll => {
                if let Some(FileJob::Sendfile(f)) = self.job.as_mut() {
                    f.on_poll(sent);
                }
            }
            Req::FileRead { job, slot } => {
                if let (Some(result), Some(job)) = (sent, self.staged_job(job)) {
                    job.send
                        .on_read(slot, result.map_or_else(|e| -e.0, |n| n as i32));
                }
            }
            Req::FileSend {
                job,
                slot,
                zero_copy,
            } => {
                let stats = self.stats.clone();
                if let Some(job) = self.staged_job(job) {
                    if let Some(result) = sent {
                        job.on_sent(result, zero_copy, &stats);
                    }
                    if let (Some(copied), true) = (released, zero_copy) {
                        job.send.on_released(slot);
                        count_notification(&stats, copied);
                        if let Some(copied) = copied {
                            self.queue.note_notification(copied);
                        }
                    }
                }
            }
        }
        let auto_plain = self.policy.mode == crate::Mode::Auto && self.queue.copies_anyway();
        self.stats
            .copies_anyway
            .store(auto_plain, Ordering::Relaxed);
        if released.is_some() {
            self.reqs.remove(&ud);
        }
        released.is_some()
    }

    fn on_queue_sent(&mut self, token: u64, result: Result<u32, Errno>) {
        if let Ok(n) = result {
            self.stats
                .bytes_sent
                .fetch_add(u64::from(n), Ordering::Relaxed);
        }
        match self.queue.on_sent(token, result) {
            SentOutcome::ZeroCopyUnsupported => self
                .stats
                .zero_copy_unsupported
                .store(true, Ordering::Relaxed),
            SentOutcome::ZeroCopyNoMemory => {
                self.stats
                    .zero_copy_no_memory
                    .fetch_add(1, Ordering::Relaxed);
            }
            SentOutcome::Progress | SentOutcome::Retry | SentOutcome::Failed(_) => {}
        }
    }

    /// The running or retired staged job of write `id`.
    fn staged_job(&mut self, id: u64) -> Option<&mut StagedJob<F>> {
        match self.job.as_mut() {
            Some(FileJob::Staged(job)) if job.id == id => Some(job),
            _ => self.retired.iter_mut().find(|j| j.id == id),
        }
    }

    /// The ring failed for good: fails every write with `errno`, in order, and a pending `end`
    /// and close too. Memory a request may still cover (holders of writes the kernel saw,
    /// staging, `msghdr`s) is leaked on purpose: the kernel may still read it (see
    /// `worker/failure.rs`). Holders of writes the kernel never saw go back.
    pub(crate) fn abandon(mut self, errno: Errno, events: &mut Vec<Event<H>>) {
        for (done, touched) in self.queue.abandon(errno) {
            let holder = self.holders.remove(&done.id);
            let holder = if touched {
                std::mem::forget(holder);
                None
            } else {
                holder
            };
            events.push(Event::Done {
                conn: self.conn,
                done,
                holder,
            });
        }
        std::mem::forget(self.job.take());
        std::mem::forget(std::mem::take(&mut self.retired));
        std::mem::forget(std::mem::take(&mut self.reqs));
        if self.end == EndState::Asked {
            events.push(Event::Ended {
                conn: self.conn,
                result: Err(errno),
            });
        }
        if self.lifecycle != Lifecycle::Open {
            events.push(Event::Closed { conn: self.conn });
        }
        // Dropping the rest closes the dups of files never started.
    }
}

/// The connection a request's `user_data` belongs to (see `Connection::submit`).
pub(crate) fn conn_of(ud: u64) -> u32 {
    (ud >> 32) as u32
}

fn count_notification(stats: &ConnStats, copied: Option<bool>) {
    if let Some(copied) = copied {
        stats.notifications.fetch_add(1, Ordering::Relaxed);
        if copied {
            stats.copied_notifications.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) fn failed_done<H>(conn: u32, id: u64, e: Errno, holder: Option<H>) -> Event<H> {
    Event::Done {
        conn,
        done: Done {
            id,
            result: Err(e),
            zero_copy: false,
            copied: false,
            aborted: false,
        },
        holder,
    }
}
