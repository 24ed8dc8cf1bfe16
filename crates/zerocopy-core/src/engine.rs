//! The asynchronous send engine: one io_uring driven by its own thread, serving many sockets.
//!
//! **One ring per engine, one engine per JavaScript thread** (the binding keeps it in a
//! thread-local). Completions must go back to the Node environment that owns the promises, and
//! one completion thread per environment is enough to saturate loopback on a 2-core machine;
//! a ring per socket would cost a thread and a ring's memory per connection. The ring is
//! created *on* the engine thread with `IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN` (when the
//! kernel has them), since that thread is its only submitter (measured here: +10–20% for
//! one-in-flight SEND_ZC).
//!
//! Other threads talk to it through a command list and an eventfd: they push a command and
//! write the eventfd only if the engine said it is going to sleep, so a busy engine is never
//! woken by syscalls. Per socket it keeps a [`SendQueue`]; the next request is submitted from
//! the completion side as soon as the previous transfer CQE arrives (no round trip through
//! the caller), and writes are reported only once the kernel released their memory.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use io_uring::{squeue, IoUring};

use crate::classify::Tracker;
use crate::events::{ConnStats, Event};
use crate::queue::{Done, Mode, Policy, SendQueue, SentOutcome, Span};
use crate::{op, probe, Errno};

const WAKE: u64 = u64::MAX;
const CANCEL: u64 = u64::MAX - 1;

enum Cmd<H> {
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
}

struct Shared<H> {
    cmds: Mutex<Vec<Cmd<H>>>,
    sleeping: AtomicBool,
    wake: OwnedFd,
    /// Requests the kernel has not released yet, over all sockets (buffers pinned).
    unreleased: AtomicU64,
}

/// Handle to a running engine. Cloning is cheap; the engine thread lives as long as the process.
pub struct Engine<H: Send + 'static> {
    shared: Arc<Shared<H>>,
    next_conn: AtomicU32,
    zc_flags: u16,
}

impl<H: Send + 'static> Engine<H> {
    /// Starts the engine thread and its ring. `sink` runs on the engine thread with each batch
    /// of events; it must not block for long (hand the batch to another thread).
    ///
    /// Fails with [`io::ErrorKind::Unsupported`] when the probe says SEND_ZC is unusable.
    pub fn start(sink: impl FnMut(Vec<Event<H>>) + Send + 'static) -> io::Result<Self> {
        let report = probe();
        if !report.supported {
            return Err(crate::send_zc::unsupported());
        }
        let zc_flags = if report.report_usage {
            op::SEND_ZC_REPORT_USAGE
        } else {
            0
        };
        // SAFETY: eventfd returns a new descriptor or -1; ownership moves into OwnedFd.
        let wake = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let shared = Arc::new(Shared {
            cmds: Mutex::new(Vec::new()),
            sleeping: AtomicBool::new(false),
            wake,
            unreleased: AtomicU64::new(0),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        thread::Builder::new()
            .name("zerocopy-engine".into())
            .spawn(move || match new_ring() {
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
        })
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
    pub fn open(&self, fd: RawFd, policy: Policy) -> Result<(u32, Arc<ConnStats>), Errno> {
        let dup = dup_stream_socket(fd)?;
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ConnStats::default());
        self.send(Cmd::Open {
            conn,
            fd: dup,
            policy,
            stats: stats.clone(),
        });
        Ok((conn, stats))
    }

    /// Queues a write of `span` on `conn`, reported later by an [`Event::Done`] with `id`.
    ///
    /// # Safety
    /// The memory of `span` must stay valid and unmodified for as long as `holder` lives; the
    /// engine drops `holder` only after the kernel released the memory (it comes back in the
    /// `Done` event). `id` must be unique among the socket's pending writes.
    pub unsafe fn write(&self, conn: u32, id: u64, span: Span, holder: H) {
        self.send(Cmd::Write {
            conn,
            id,
            span,
            holder,
        });
    }

    /// Asks to abort write `id` (see [`SendQueue::abort`]).
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

    /// Requests the kernel has not released yet, over all sockets (pinned buffers).
    pub fn unreleased(&self) -> u64 {
        self.shared.unreleased.load(Ordering::Acquire)
    }

    fn send(&self, cmd: Cmd<H>) {
        self.shared.cmds.lock().expect("engine lock").push(cmd);
        if self.shared.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.shared.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(256)
        .or_else(|_| IoUring::new(256))
}

/// `F_DUPFD_CLOEXEC` after checking that `fd` is a stream socket.
fn dup_stream_socket(fd: RawFd) -> Result<OwnedFd, Errno> {
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
        return Err(Errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EBADF),
        ));
    }
    if ty != libc::SOCK_STREAM {
        return Err(Errno(libc::EPROTOTYPE));
    }
    // SAFETY: fcntl returns a new descriptor we own, or -1.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(Errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EBADF),
        ));
    }
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

struct Conn<H> {
    /// The engine's dup; taken (closed) early when a close must reset the connection.
    fd: Option<OwnedFd>,
    queue: SendQueue,
    policy: Policy,
    holders: HashMap<u64, H>,
    stats: Arc<ConnStats>,
    end_requested: bool,
    ended: bool,
    closing: bool,
    cancel_sent: bool,
    /// Something changed since the last pump: a request may be due, or writes finished.
    dirty: bool,
}

/// The memory a vectored plain send points into: kept until the request is released.
struct MsgBuf {
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

struct ReqRec {
    conn: u32,
    token: u64,
    zero_copy: bool,
    _msg: Option<Box<MsgBuf>>,
}

struct Worker<H, F> {
    ring: IoUring,
    shared: Arc<Shared<H>>,
    zc_flags: u16,
    sink: F,
    conns: HashMap<u32, Conn<H>>,
    tracker: Tracker,
    reqs: HashMap<u64, ReqRec>,
    events: Vec<Event<H>>,
    wake_buf: Box<u64>,
}

impl<H: Send + 'static, F: FnMut(Vec<Event<H>>)> Worker<H, F> {
    fn new(ring: IoUring, shared: Arc<Shared<H>>, zc_flags: u16, sink: F) -> Self {
        Worker {
            ring,
            shared,
            zc_flags,
            sink,
            conns: HashMap::new(),
            tracker: Tracker::new(),
            reqs: HashMap::new(),
            events: Vec::new(),
            wake_buf: Box::new(0),
        }
    }

    fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every entry built by this worker points at memory that outlives the
            // request: holders and MsgBufs stay in `conns`/`reqs` until the tracker reports the
            // request released, and `wake_buf` lives as long as the worker.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            // Queue full: hand what we have to the kernel and try again.
            let _ = self.ring.submit();
        }
    }

    fn arm_wake(&mut self) {
        let sqe = op::read_eventfd(self.shared.wake.as_raw_fd(), &mut *self.wake_buf, WAKE);
        self.push(&sqe);
    }

    fn run(mut self) {
        self.arm_wake();
        loop {
            self.apply_commands();
            self.pump();
            self.flush();
            // Announce sleep, then look for commands that raced with the announcement.
            self.shared.sleeping.store(true, Ordering::SeqCst);
            if !self.shared.cmds.lock().expect("engine lock").is_empty() {
                self.shared.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => panic!("io_uring_enter failed in the engine: {e}"),
            }
            self.shared.sleeping.store(false, Ordering::SeqCst);
            self.reap();
        }
    }

    fn apply_commands(&mut self) {
        let cmds = std::mem::take(&mut *self.shared.cmds.lock().expect("engine lock"));
        for cmd in cmds {
            match cmd {
                Cmd::Open {
                    conn,
                    fd,
                    policy,
                    stats,
                } => {
                    self.conns.insert(
                        conn,
                        Conn {
                            fd: Some(fd),
                            queue: SendQueue::new(),
                            policy,
                            holders: HashMap::new(),
                            stats,
                            end_requested: false,
                            ended: false,
                            closing: false,
                            cancel_sent: false,
                            dirty: false,
                        },
                    );
                }
                Cmd::Write {
                    conn,
                    id,
                    span,
                    holder,
                } => {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        // Unknown or closed socket: hand the memory straight back.
                        self.events.push(Event::Done {
                            conn,
                            done: failed_done(id, Errno(libc::EBADF)),
                            holder,
                        });
                        continue;
                    };
                    let refused = if c.closing {
                        Some(Errno(libc::ECANCELED))
                    } else {
                        c.queue.push(id, span).err()
                    };
                    match refused {
                        Some(e) => self.events.push(Event::Done {
                            conn,
                            done: failed_done(id, e),
                            holder,
                        }),
                        None => {
                            c.holders.insert(id, holder);
                            c.dirty = true;
                        }
                    }
                }
                Cmd::Abort { conn, id } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queue.abort(id);
                        c.dirty = true;
                    }
                }
                Cmd::End { conn } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.end_requested = true;
                        c.dirty = true;
                    } else {
                        self.events.push(Event::Ended {
                            conn,
                            result: Err(Errno(libc::EBADF)),
                        });
                    }
                }
                Cmd::Close { conn } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.closing = true;
                        c.queue.fail(Errno(libc::ECANCELED));
                        c.dirty = true;
                    } else {
                        self.events.push(Event::Closed { conn });
                    }
                }
            }
        }
    }

    /// Submits the next request of every socket that has work and none in flight; finishes
    /// ends and closes that became possible; collects finished writes.
    fn pump(&mut self) {
        let ids: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dirty)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.pump_conn(id);
        }
    }

    fn pump_conn(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.dirty = false;
        if c.closing && !c.cancel_sent {
            if let Some(token) = c.queue.in_flight_token() {
                c.cancel_sent = true;
                let sqe = op::cancel(user_data(id, token), CANCEL);
                self.push(&sqe);
            }
        }
        let c = self.conns.get_mut(&id).expect("conn exists");
        let fd = c.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        if let Some(req) = c.queue.next_request(&c.policy) {
            let ud = user_data(id, req.token);
            let stats = c.stats.clone();
            let (sqe, msg) = if req.zero_copy {
                stats.zero_copy_sends.fetch_add(1, Ordering::Relaxed);
                let s = req.spans[0];
                (
                    op::stream_send_zc(fd, s.addr as *const u8, s.len as u32, self.zc_flags, ud),
                    None,
                )
            } else if req.spans.len() == 1 {
                stats.copy_sends.fetch_add(1, Ordering::Relaxed);
                let s = req.spans[0];
                (
                    op::stream_send(fd, s.addr as *const u8, s.len as u32, ud),
                    None,
                )
            } else {
                stats.copy_sends.fetch_add(1, Ordering::Relaxed);
                let mut m = Box::new(MsgBuf {
                    iov: req
                        .spans
                        .iter()
                        .map(|s| libc::iovec {
                            iov_base: s.addr as *mut libc::c_void,
                            iov_len: s.len,
                        })
                        .collect(),
                    // SAFETY: an all-zero msghdr is valid (no name, no control data).
                    msg: unsafe { std::mem::zeroed() },
                });
                m.msg.msg_iov = m.iov.as_mut_ptr();
                m.msg.msg_iovlen = m.iov.len() as _;
                let sqe = op::stream_sendmsg(fd, &m.msg, ud);
                (sqe, Some(m))
            };
            self.tracker.submit(ud);
            self.shared.unreleased.fetch_add(1, Ordering::AcqRel);
            self.reqs.insert(
                ud,
                ReqRec {
                    conn: id,
                    token: req.token,
                    zero_copy: req.zero_copy,
                    _msg: msg,
                },
            );
            self.push(&sqe);
        }
        self.finish_conn(id);
    }

    /// Hands finished writes back, then performs a due shutdown or close.
    fn finish_conn(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        for done in c.queue.take_done() {
            if let Some(holder) = c.holders.remove(&done.id) {
                self.events.push(Event::Done {
                    conn: id,
                    done,
                    holder,
                });
            }
        }
        if c.end_requested && !c.ended && c.queue.drained() {
            c.ended = true;
            let result = match c.queue.failed() {
                Some(e) if !c.closing => Err(e),
                _ => {
                    let fd = c.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
                    // SAFETY: shutdown on our own dup; it does not touch memory.
                    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } == 0 {
                        Ok(())
                    } else {
                        Err(Errno(
                            io::Error::last_os_error()
                                .raw_os_error()
                                .unwrap_or(libc::EIO),
                        ))
                    }
                }
            };
            self.events.push(Event::Ended { conn: id, result });
        }
        let c = self.conns.get_mut(&id).expect("conn exists");
        if c.closing && !c.queue.busy() && c.queue.unreleased() > 0 {
            // Zero-copy pages still sit in the socket's send queue (a peer that stopped
            // reading). Only freeing that queue releases them: close our dup with SO_LINGER 0,
            // so that once the caller's descriptor is closed too the kernel resets the
            // connection and drops the queue, and the notifications arrive.
            if let Some(fd) = c.fd.take() {
                reset_on_close(&fd);
            }
        }
        if c.closing && c.queue.idle() {
            debug_assert!(c.holders.is_empty(), "holders outlive their writes");
            // Dropping the Conn closes the dup: no request of it is left in the kernel.
            self.conns.remove(&id);
            self.events.push(Event::Closed { conn: id });
        }
    }

    fn reap(&mut self) {
        let mut touched = Vec::new();
        let cqes: Vec<(u64, i32, u32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, flags) in cqes {
            match ud {
                WAKE => {
                    self.arm_wake();
                    continue;
                }
                CANCEL => continue,
                _ => {}
            }
            let step = self.tracker.on_cqe(ud, res, flags);
            let Some(rec) = self.reqs.get(&ud) else {
                continue;
            };
            let (conn_id, token, zero_copy) = (rec.conn, rec.token, rec.zero_copy);
            if let Some(c) = self.conns.get_mut(&conn_id) {
                if let Some(sent) = step.sent {
                    if let Ok(n) = sent.result {
                        c.stats
                            .bytes_sent
                            .fetch_add(u64::from(n), Ordering::Relaxed);
                    }
                    match c.queue.on_sent(token, sent.result) {
                        SentOutcome::ZeroCopyUnsupported => {
                            c.stats.zero_copy_unsupported.store(true, Ordering::Relaxed)
                        }
                        SentOutcome::ZeroCopyNoMemory => {
                            c.stats.zero_copy_no_memory.fetch_add(1, Ordering::Relaxed);
                        }
                        SentOutcome::Progress | SentOutcome::Retry | SentOutcome::Failed(_) => {}
                    }
                }
                if let Some(released) = step.released {
                    if let (true, Some(copied)) = (zero_copy, released.copied) {
                        c.stats.notifications.fetch_add(1, Ordering::Relaxed);
                        if copied {
                            c.stats.copied_notifications.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    c.queue.on_released(token, released.copied);
                    let auto_plain = c.policy.mode == Mode::Auto && c.queue.copies_anyway();
                    c.stats.copies_anyway.store(auto_plain, Ordering::Relaxed);
                }
                touched.push(conn_id);
            }
            if step.released.is_some() {
                self.reqs.remove(&ud);
                self.shared.unreleased.fetch_sub(1, Ordering::AcqRel);
            }
        }
        for id in touched {
            if let Some(c) = self.conns.get_mut(&id) {
                c.dirty = true;
            }
        }
    }

    fn flush(&mut self) {
        if !self.events.is_empty() {
            (self.sink)(std::mem::take(&mut self.events));
        }
    }
}

/// `SO_LINGER {on, 0}`: the last `close` of the socket resets it and drops unsent data.
fn reset_on_close(fd: &OwnedFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a live, correctly sized `linger` to setsockopt on our own descriptor.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

fn user_data(conn: u32, token: u64) -> u64 {
    (u64::from(conn) << 32) | (token & 0xffff_ffff)
}

fn failed_done(id: u64, e: Errno) -> Done {
    Done {
        id,
        result: Err(e),
        zero_copy: false,
        copied: false,
        aborted: false,
    }
}
