//! The engine's completion thread: owns the ring, applies commands, submits each socket's next
//! request as soon as the previous transfer completed, and reports finished writes.
//!
//! Per socket it keeps a [`SendQueue`] for memory writes and at most one running file send
//! ([`FileSend`]); the queue stops at a file send until it is done, so bytes leave in exactly
//! the order they were queued, one transfer in flight per socket. Memory handed to the kernel
//! (callers' holders, staging regions, `msghdr`s) is kept until the tracker reports the
//! request released.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use io_uring::{squeue, IoUring};

use crate::buf::{BufTable, Region};
use crate::classify::Tracker;
use crate::engine::{last_errno, Cmd, Shared};
use crate::events::{ConnStats, Event};
use crate::file::{FileOp, FileSend};
use crate::queue::{Done, Mode, Policy, SendQueue, SentOutcome};
use crate::{op, Errno};

mod failure;

const WAKE: u64 = u64::MAX;
const CANCEL: u64 = u64::MAX - 1;
/// Size of the sparse fixed-buffer table registered at start.
const FIXED_SLOTS: u16 = 64;
/// Staging slots per running file send, and their size: 4 × 256 KiB read ahead of the socket.
const FILE_SLOTS: usize = 4;
const FILE_SLOT_SIZE: u32 = 256 * 1024;
/// File sends use `sendfile(2)` on the engine thread: one copy on loopback (measured here:
/// 3.65 GB/s against 3.05 for staged reads + sends) and none on a real NIC, where the socket
/// takes page-cache pages by reference. Staged reads remain for files `sendfile` cannot read
/// (`EINVAL`), and when a policy asks for them. Bytes per call, and per turn before other sockets:
const SENDFILE_CHUNK: u64 = 1024 * 1024;
const SENDFILE_BUDGET: u64 = 8 * 1024 * 1024;

struct FileJob {
    id: u64,
    file: OwnedFd,
    send: FileSend,
    /// The staged path's memory, `None` until the job first goes that way (see [`Staging`]).
    staging: Option<Staging>,
    len: u64,
    /// Zero-copy was refused (`EOPNOTSUPP`, `ENOMEM`): send plain from now on.
    plain: bool,
    reported: u64,
    send_ud: Option<u64>,
    /// `Some` when this file goes out with `sendfile(2)` instead of staged reads and sends.
    sendfile: Option<Sendfile>,
}

/// The staging memory of a file send that goes the staged way (reads into the region, sends
/// from it): [`FILE_SLOTS`] × [`FILE_SLOT_SIZE`] bytes, registered as a fixed buffer when a slot
/// of the table is free. Made by [`Worker::stage`] on the job's first staged step only (a policy
/// that asks for staged sends, or a file `sendfile(2)` refused with `EINVAL`), never for a job
/// that stays on `sendfile`, so those cost neither the 1 MiB (and its page pinning) nor a slot.
///
/// Why it is never freed early: only staged requests (`Req::FileRead`, `Req::FileSend`) point
/// into it, and they are only built from a job whose `staging` is `Some`; once set, `staging`
/// is never replaced or cleared while the job lives. The job (and with it the region) is
/// dropped only by [`Worker::sweep_retired`], once [`FileJob::finished`] says that no read or
/// send is in flight and every zero-copy send has been released (`FileSend::finished`), that is
/// after the kernel's last CQE for any request using it; the fixed slot is cleared then too
/// (and `Worker::fixed` keeps its own `Arc` until that moment). If the ring fails, the job is
/// leaked with its staging (`worker/failure.rs`), never freed.
struct Staging {
    region: Arc<Region>,
    fixed: Option<u16>,
}

/// A file range sent with non-blocking `sendfile(2)` calls on the engine thread: one copy
/// (page cache → socket) instead of two. When the socket is full, an `IORING_OP_POLL_ADD`
/// for `POLLOUT` wakes the job again.
struct Sendfile {
    next: u64,
    end: u64,
    start: u64,
    poll_ud: Option<u64>,
    error: Option<Errno>,
}

impl FileJob {
    fn sent(&self) -> u64 {
        self.sendfile
            .as_ref()
            .map_or(self.send.sent(), |f| f.next - f.start)
    }

    fn error(&self) -> Option<Errno> {
        self.sendfile
            .as_ref()
            .map_or(self.send.error(), |f| f.error)
    }

    /// The outcome is final: nothing of it is in flight that could still move bytes.
    fn settled(&self) -> bool {
        match &self.sendfile {
            Some(f) => f.poll_ud.is_none() && (f.error.is_some() || f.next == f.end),
            None => self.send.settled(),
        }
    }

    /// Settled, and the kernel holds none of its staging memory: the job may be dropped.
    fn finished(&self) -> bool {
        self.settled() && (self.sendfile.is_some() || self.send.finished())
    }

    fn stop(&mut self, why: Errno) {
        self.send.stop(why);
        if let Some(f) = self.sendfile.as_mut() {
            f.error.get_or_insert(why);
        }
    }

    /// A request of this job that writes to the socket is in flight (cancel it on close).
    fn writing(&self) -> Option<u64> {
        self.sendfile.as_ref().map_or(self.send_ud, |f| f.poll_ud)
    }
}

struct Conn<H> {
    /// The engine's dup; taken (closed) early when a close must reset the connection.
    fd: Option<OwnedFd>,
    queue: SendQueue,
    policy: Policy,
    holders: HashMap<u64, H>,
    stats: Arc<ConnStats>,
    /// File sends queued but not started: id → (file, offset).
    files: HashMap<u64, (OwnedFd, u64)>,
    job: Option<FileJob>,
    /// File sends already reported done whose zero-copy staging slots the kernel still pins
    /// (a peer that does not read keeps them in the socket's send queue): kept until released.
    retired: Vec<FileJob>,
    queue_ud: Option<u64>,
    end_requested: bool,
    ended: bool,
    closing: bool,
    /// The owner takes the socket back (`Cmd::Detach`): go once idle, without cancelling.
    detaching: bool,
    cancel_sent: bool,
    /// Something changed since the last pump: a request may be due, or writes finished.
    dirty: bool,
}

impl<H> Conn<H> {
    /// The running or retired file job of write `id`.
    fn file_job(&mut self, id: u64) -> Option<&mut FileJob> {
        match self.job.as_mut() {
            Some(job) if job.id == id => Some(job),
            _ => self.retired.iter_mut().find(|j| j.id == id),
        }
    }

    fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Starts closing: pending writes fail with `ECANCELED`, the request in flight is cancelled
    /// on the next pump, and the conn goes once the kernel released everything.
    fn close(&mut self) {
        self.closing = true;
        self.queue.fail(Errno(libc::ECANCELED));
        if let Some(job) = self.job.as_mut() {
            job.stop(Errno(libc::ECANCELED));
        }
        self.dirty = true;
    }
}

/// The memory a vectored plain send points into: kept until the request is released.
struct MsgBuf {
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

enum Req {
    Queue {
        conn: u32,
        token: u64,
        zero_copy: bool,
        _msg: Option<Box<MsgBuf>>,
    },
    FileRead {
        conn: u32,
        /// The file send's write id: the job may have retired meanwhile.
        job: u64,
        slot: usize,
    },
    FileSend {
        conn: u32,
        job: u64,
        slot: usize,
        zero_copy: bool,
    },
    FilePoll {
        conn: u32,
    },
}

impl Req {
    fn conn(&self) -> u32 {
        match self {
            Req::Queue { conn, .. }
            | Req::FileRead { conn, .. }
            | Req::FileSend { conn, .. }
            | Req::FilePoll { conn } => *conn,
        }
    }
}

pub(crate) struct Worker<H, F> {
    ring: IoUring,
    shared: Arc<Shared<H>>,
    zc_flags: u16,
    sink: F,
    conns: HashMap<u32, Conn<H>>,
    tracker: Tracker,
    reqs: HashMap<u64, Req>,
    next_ud: u64,
    events: Vec<Event<H>>,
    wake_buf: Box<u64>,
    table: BufTable,
    /// Regions registered as fixed buffers: (region, table index).
    fixed: Vec<(Arc<Region>, u16)>,
    /// Set by `Shutdown`: answer this and end once no socket is left.
    shutdown: Option<mpsc::Sender<()>>,
    /// `io_uring_enter` failed with an error the ring cannot go on from: see [`failure`].
    broken: Option<Errno>,
}

impl<H: Send + 'static, F: FnMut(Vec<Event<H>>)> Worker<H, F> {
    pub(crate) fn new(ring: IoUring, shared: Arc<Shared<H>>, zc_flags: u16, sink: F) -> Self {
        let table = match ring
            .submitter()
            .register_buffers_sparse(u32::from(FIXED_SLOTS))
        {
            Ok(()) => BufTable::new(FIXED_SLOTS),
            Err(_) => BufTable::empty(),
        };
        Worker {
            ring,
            shared,
            zc_flags,
            sink,
            conns: HashMap::new(),
            tracker: Tracker::new(),
            reqs: HashMap::new(),
            next_ud: 1,
            events: Vec::new(),
            wake_buf: Box::new(0),
            table,
            fixed: Vec::new(),
            shutdown: None,
            broken: None,
        }
    }

    fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every entry built by this worker points at memory that outlives the
            // request: callers' holders stay in `conns` until their writes are done, staging
            // regions and `MsgBuf`s stay in `conns`/`reqs` until the tracker reports the request
            // released, and `wake_buf` lives as long as the worker.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() || self.broken.is_some() {
                return;
            }
            // Queue full: hand what we have to the kernel and try again. If the kernel refuses
            // for good, stop here (never spin): `run` sees `broken` and fails every socket.
            if let Err(e) = self.ring.submit() {
                self.note_enter_error(&e);
            }
        }
    }

    /// Records a fatal `io_uring_enter` error; transient ones (`EINTR`, `EAGAIN`, `EBUSY`: the
    /// completion queue is full and is reaped next) are retried by the caller.
    fn note_enter_error(&mut self, e: &std::io::Error) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        if !matches!(errno, libc::EINTR | libc::EAGAIN | libc::EBUSY) {
            self.broken.get_or_insert(Errno(errno));
        }
    }

    /// Submits a tracked request and records what it belongs to.
    fn submit(&mut self, sqe: squeue::Entry, req: Req) -> u64 {
        let ud = self.next_ud;
        self.next_ud = (self.next_ud + 1) % CANCEL; // never WAKE or CANCEL
        self.tracker.submit(ud);
        self.reqs.insert(ud, req);
        self.shared.unreleased.fetch_add(1, Ordering::AcqRel);
        self.push(&sqe.user_data(ud));
        ud
    }

    fn arm_wake(&mut self) {
        let sqe = op::read_eventfd(self.shared.wake.as_raw_fd(), &mut *self.wake_buf, WAKE);
        self.push(&sqe);
    }

    pub(crate) fn run(mut self) {
        self.arm_wake();
        loop {
            self.apply_commands();
            self.pump();
            self.flush();
            if let Some(e) = self.broken {
                return self.fail(e);
            }
            if self.conns.is_empty() {
                if let Some(reply) = self.shutdown.take() {
                    // After `flush`: the last events are with the sink before the answer.
                    // Dropping the ring (with `self`) waits for nothing: no request is left.
                    let _ = reply.send(());
                    return;
                }
            }
            // Announce sleep, then look for commands that raced with the announcement.
            self.shared.sleeping.store(true, Ordering::SeqCst);
            if !self.shared.cmds.lock().expect("engine lock").is_empty() {
                self.shared.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            if let Err(e) = self.ring.submit_and_wait(1) {
                self.note_enter_error(&e);
            }
            self.shared.sleeping.store(false, Ordering::SeqCst);
            self.reap();
        }
    }

    fn register(&mut self, region: Arc<Region>) -> Result<u16, Errno> {
        let index = self.table.take().ok_or(Errno(libc::ENOSPC))?;
        let iov = [region.iovec()];
        // SAFETY: the region stays allocated while registered: `self.fixed` holds an Arc to it
        // until `unregister` has cleared the table entry.
        match unsafe {
            self.ring
                .submitter()
                .register_buffers_update(u32::from(index), &iov, None)
        } {
            Ok(()) => {
                self.fixed.push((region, index));
                Ok(index)
            }
            Err(e) => {
                self.table.give(index);
                Err(Errno(e.raw_os_error().unwrap_or(libc::ENOMEM)))
            }
        }
    }

    fn unregister(&mut self, addr: usize) {
        let Some(pos) = self.fixed.iter().position(|(r, _)| r.addr() == addr) else {
            return;
        };
        let (_region, index) = self.fixed.swap_remove(pos);
        let empty = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }];
        // SAFETY: an empty iovec clears the entry; the kernel keeps its own reference to the
        // old pages for requests still using them, and callers keep the memory alive for those.
        let _ = unsafe {
            self.ring
                .submitter()
                .register_buffers_update(u32::from(index), &empty, None)
        };
        self.table.give(index);
    }

    /// The fixed-buffer index whose region holds `[addr, addr + len)`, if any.
    fn fixed_index(&self, addr: usize, len: usize) -> Option<u16> {
        self.fixed
            .iter()
            .find(|(r, _)| r.contains(addr, len))
            .map(|(_, i)| *i)
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
                            files: HashMap::new(),
                            job: None,
                            retired: Vec::new(),
                            queue_ud: None,
                            end_requested: false,
                            ended: false,
                            closing: false,
                            detaching: false,
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
                } => match self.conns.get_mut(&conn) {
                    Some(c) if !c.closing => match c.queue.push(id, span) {
                        Ok(()) => {
                            c.holders.insert(id, holder);
                            c.dirty = true;
                        }
                        Err(e) => self.events.push(done_event(conn, id, e, Some(holder))),
                    },
                    // Unknown or closed socket: hand the memory straight back.
                    _ => {
                        self.events
                            .push(done_event(conn, id, Errno(libc::ECANCELED), Some(holder)))
                    }
                },
                Cmd::SendFile {
                    conn,
                    id,
                    file,
                    offset,
                    len,
                } => match self.conns.get_mut(&conn) {
                    Some(c) if !c.closing => match c.queue.push_external(id, len as usize) {
                        Ok(()) => {
                            c.files.insert(id, (file, offset));
                            c.dirty = true;
                        }
                        Err(e) => self.events.push(done_event(conn, id, e, None)),
                    },
                    _ => self
                        .events
                        .push(done_event(conn, id, Errno(libc::ECANCELED), None)),
                },
                Cmd::Abort { conn, id } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queue.abort(id);
                        let mut waiting = None;
                        if let Some(job) = c.job.as_mut().filter(|j| j.id == id) {
                            job.stop(Errno(libc::ECANCELED));
                            // A running file send may wait for room (a peer that does not
                            // read): cancel that wait, or the abort would only take effect
                            // once the peer reads again. Its CQE finishes the job.
                            waiting = job.writing();
                        }
                        c.dirty = true;
                        if let Some(target) = waiting {
                            self.push(&op::cancel(target, CANCEL));
                        }
                    }
                }
                Cmd::End { conn } => match self.conns.get_mut(&conn) {
                    Some(c) => {
                        c.end_requested = true;
                        c.dirty = true;
                    }
                    None => self.events.push(Event::Ended {
                        conn,
                        result: Err(Errno(libc::EBADF)),
                    }),
                },
                Cmd::Close { conn } => match self.conns.get_mut(&conn) {
                    Some(c) => c.close(),
                    None => self.events.push(Event::Closed { conn }),
                },
                Cmd::Detach { conn } => match self.conns.get_mut(&conn) {
                    Some(c) => {
                        c.detaching = true;
                        c.dirty = true;
                    }
                    None => self.events.push(Event::Closed { conn }),
                },
                Cmd::Shutdown { reply } => {
                    for c in self.conns.values_mut() {
                        c.close();
                    }
                    self.shutdown = Some(reply);
                }
                Cmd::Register { region, reply } => {
                    let _ = reply.send(self.register(region).map(drop));
                }
                Cmd::Unregister { addr } => self.unregister(addr),
            }
        }
    }

    /// Submits the next requests of every socket that changed; finishes what became final.
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

    /// Runs one socket's steps until none of them made another one due.
    ///
    /// Why no progress is lost: every step that can make more work due on this thread sets
    /// `dirty` (a file send that finished lets the queue, or the next file, go on; a write
    /// finished at the front may let `end` go out), and the loop only stops after a whole round
    /// that left `dirty` clear. What is still to do then waits for something outside this
    /// thread: a CQE of the request in flight (`reap` marks the socket dirty) or a command
    /// (`apply_commands` marks it dirty). Before, one round ran per wake-up, so a file that
    /// finished inside the round left the next file queued until some unrelated wake-up.
    fn pump_conn(&mut self, id: u32) {
        while let Some(c) = self.conns.get_mut(&id).filter(|c| c.dirty) {
            c.dirty = false;
            let mut cancels = Vec::new();
            if c.closing && !c.cancel_sent {
                c.cancel_sent = true;
                cancels.extend(c.queue_ud);
                cancels.extend(c.job.as_ref().and_then(|j| j.writing()));
            }
            for target in cancels {
                self.push(&op::cancel(target, CANCEL));
            }
            self.start_file(id);
            self.send_from_queue(id);
            self.send_from_file(id);
            self.sweep_retired(id);
            self.finish_conn(id);
        }
    }

    /// Starts the file send the queue is waiting at, if any.
    fn start_file(&mut self, id: u32) {
        let c = self.conns.get_mut(&id).expect("conn exists");
        if c.job.is_some() || c.closing {
            return;
        }
        let Some((fid, len)) = c.queue.external_at_cursor() else {
            return;
        };
        let Some((file, offset)) = c.files.remove(&fid) else {
            return;
        };
        c.queue.start_external(fid);
        // No staging memory yet: `send_from_file` stages the job when it first goes that way.
        c.job = Some(FileJob {
            id: fid,
            file,
            send: FileSend::new(offset, len as u64, FILE_SLOTS, FILE_SLOT_SIZE),
            staging: None,
            len: len as u64,
            plain: false,
            reported: 0,
            send_ud: None,
            sendfile: (!c.policy.staged_files).then_some(Sendfile {
                next: offset,
                end: offset + len as u64,
                start: offset,
                poll_ud: None,
                error: None,
            }),
        });
    }

    fn send_from_queue(&mut self, id: u32) {
        let c = self.conns.get_mut(&id).expect("conn exists");
        let Some(req) = c.queue.next_request(&c.policy) else {
            return;
        };
        let fd = c.raw_fd();
        let stats = c.stats.clone();
        let (sqe, msg) = if req.zero_copy {
            stats.zero_copy_sends.fetch_add(1, Ordering::Relaxed);
            let s = req.spans[0];
            let fixed = self.fixed_index(s.addr, s.len);
            let sqe = op::send_zc(
                fd,
                s.addr as *const u8,
                s.len as u32,
                self.zc_flags,
                fixed,
                op::STREAM,
            );
            (sqe, None)
        } else if req.spans.len() == 1 {
            stats.copy_sends.fetch_add(1, Ordering::Relaxed);
            let s = req.spans[0];
            (
                op::stream_send(fd, s.addr as *const u8, s.len as u32, 0),
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
            (op::stream_sendmsg(fd, &m.msg, 0), Some(m))
        };
        let ud = self.submit(
            sqe,
            Req::Queue {
                conn: id,
                token: req.token,
                zero_copy: req.zero_copy,
                _msg: msg,
            },
        );
        self.conns.get_mut(&id).expect("conn exists").queue_ud = Some(ud);
    }

    fn send_from_file(&mut self, id: u32) {
        let c = self.conns.get_mut(&id).expect("conn exists");
        let (fd, mode, threshold, copies) = (
            c.raw_fd(),
            c.policy.mode,
            c.policy.threshold,
            c.queue.copies_anyway(),
        );
        let stats = c.stats.clone();
        let Some(job) = c.job.as_mut() else {
            return;
        };
        let zero_copy = !job.plain
            && match mode {
                Mode::Never => false,
                Mode::Always => true,
                Mode::Auto => !copies && FILE_SLOT_SIZE as usize >= threshold,
            };
        if job.sendfile.is_some() {
            self.sendfile_pump(id);
            return self.finish_file(id);
        }
        // A stopped job that never staged has nothing in flight: it is settled as it is, and
        // needs no memory. One that cannot get its region fails with ENOMEM, settled too.
        if job.staging.is_none() && (job.send.error().is_some() || !self.stage(id)) {
            return self.finish_file(id);
        }
        let c = self.conns.get_mut(&id).expect("conn exists");
        let job = c.job.as_mut().expect("job exists");
        let staging = job.staging.as_ref().expect("staged above");
        let (file, base, fixed, job_id) = (
            job.file.as_raw_fd(),
            staging.region.as_ptr(),
            staging.fixed,
            job.id,
        );
        let ops = job.send.next_ops(zero_copy);
        for op_ in ops {
            match op_ {
                FileOp::Read { slot, at, off, len } => {
                    // SAFETY: slot * size + at + len stays inside the region (FileSend never
                    // asks for more than a slot).
                    let ptr = unsafe { base.add(slot * FILE_SLOT_SIZE as usize + at as usize) };
                    let sqe = match fixed {
                        Some(index) => op::read_fixed(file, ptr, len, off, index),
                        None => op::read(file, ptr, len, off),
                    };
                    self.submit(
                        sqe,
                        Req::FileRead {
                            conn: id,
                            job: job_id,
                            slot,
                        },
                    );
                }
                FileOp::Send {
                    slot,
                    at,
                    len,
                    zero_copy,
                } => {
                    // SAFETY: as above.
                    let ptr = unsafe { base.add(slot * FILE_SLOT_SIZE as usize + at as usize) };
                    let sqe = if zero_copy {
                        op::send_zc(fd, ptr, len, self.zc_flags, fixed, op::STREAM)
                    } else {
                        op::stream_send(fd, ptr, len, 0)
                    };
                    if zero_copy {
                        stats.zero_copy_sends.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.copy_sends.fetch_add(1, Ordering::Relaxed);
                    }
                    let ud = self.submit(
                        sqe,
                        Req::FileSend {
                            conn: id,
                            job: job_id,
                            slot,
                            zero_copy,
                        },
                    );
                    let c = self.conns.get_mut(&id).expect("conn exists");
                    if let Some(job) = c.job.as_mut() {
                        job.send_ud = Some(ud);
                    }
                }
            }
        }
        self.finish_file(id);
    }

    /// Gives the conn's running file job its staging memory (see [`Staging`]): a zeroed region,
    /// registered as a fixed buffer if a table slot is free. Returns `false`, with the job
    /// stopped with `ENOMEM`, when the region cannot be allocated.
    fn stage(&mut self, id: u32) -> bool {
        let Some(region) = Region::new(FILE_SLOTS * FILE_SLOT_SIZE as usize).map(Arc::new) else {
            let c = self.conns.get_mut(&id).expect("conn exists");
            if let Some(job) = c.job.as_mut() {
                job.send.stop(Errno(libc::ENOMEM));
            }
            return false;
        };
        let fixed = self.register(region.clone()).ok();
        let c = self.conns.get_mut(&id).expect("conn exists");
        c.stats.staging_regions.fetch_add(1, Ordering::Relaxed);
        let job = c.job.as_mut().expect("job exists");
        debug_assert!(job.staging.is_none(), "a job stages once");
        job.staging = Some(Staging { region, fixed });
        true
    }

    /// Reports progress of the conn's file send and completes it once it has finished.
    fn finish_file(&mut self, id: u32) {
        let c = self.conns.get_mut(&id).expect("conn exists");
        let Some(job) = c.job.as_mut() else {
            return;
        };
        if job.sent() != job.reported {
            job.reported = job.sent();
            self.events.push(Event::Progress {
                conn: id,
                id: job.id,
                sent: job.reported,
            });
        }
        if job.settled() {
            let job = c.job.take().expect("job exists");
            let result = match job.error() {
                Some(e) => Err(e),
                None => Ok(job.len as usize),
            };
            c.queue.complete_external(job.id, result);
            // The queue (or the next file) may go on now: `pump_conn` runs another round.
            c.dirty = true;
            // Its outcome is final, but zero-copy slots may still be pinned: those keep the
            // staging region until released (`sweep_retired`), not the caller's promise.
            c.retired.push(job);
            self.sweep_retired(id);
        }
    }

    /// Drops retired file jobs the kernel no longer holds any memory of.
    fn sweep_retired(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut gone = Vec::new();
        c.retired.retain_mut(|job| {
            if !job.finished() {
                return true;
            }
            if let Some(staging) = job.staging.as_ref().filter(|s| s.fixed.is_some()) {
                gone.push(staging.region.addr());
            }
            false
        });
        // The jobs dropped above closed their file dups and dropped their staging regions: no
        // request of theirs is left in the kernel (`finished` waited for every one). A region
        // still registered stays allocated through `self.fixed`'s Arc until unregistered here.
        for addr in gone {
            self.unregister(addr);
        }
    }

    /// Sends as much of the conn's `sendfile` job as the socket takes now (at most
    /// [`SENDFILE_BUDGET`] bytes, so other sockets get their turn), then waits for `POLLOUT`.
    fn sendfile_pump(&mut self, id: u32) {
        let c = self.conns.get_mut(&id).expect("conn exists");
        let fd = c.raw_fd();
        let stats = c.stats.clone();
        let Some(job) = c.job.as_mut() else {
            return;
        };
        let file = job.file.as_raw_fd();
        let Some(f) = job.sendfile.as_mut() else {
            return;
        };
        if f.poll_ud.is_some() || f.error.is_some() {
            return;
        }
        let mut budget = SENDFILE_BUDGET;
        while f.next < f.end && budget > 0 {
            let want = (f.end - f.next).min(SENDFILE_CHUNK).min(budget) as usize;
            let mut off = f.next as libc::off_t;
            // SAFETY: sendfile copies between two descriptors we own (dups); `off` is ours.
            let n = unsafe { libc::sendfile(fd, file, &mut off, want) };
            if n > 0 {
                f.next += n as u64;
                budget -= n as u64;
                stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                stats.copy_sends.fetch_add(1, Ordering::Relaxed);
            } else if n == 0 {
                f.error = Some(crate::file::FILE_SHRANK);
            } else {
                match last_errno().0 {
                    libc::EAGAIN => {} // full socket: wait for POLLOUT below
                    libc::EINTR => continue,
                    libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP if f.next == f.start => {
                        // This file cannot be sendfile()d (no splice_read): stage it instead
                        // (`send_from_file` allocates the staging memory now, not before).
                        job.sendfile = None;
                        return self.send_from_file(id);
                    }
                    e => f.error = Some(Errno(e)),
                }
                break;
            }
            if f.error.is_some() {
                break;
            }
        }
        if f.error.is_none() && f.next < f.end {
            // Full socket: the poll completes once there is room. Out of budget: the socket is
            // writable, so the poll completes at once and requeues this job behind the other
            // sockets' work.
            let ud = self.submit(op::poll_out(fd), Req::FilePoll { conn: id });
            let c = self.conns.get_mut(&id).expect("conn exists");
            if let Some(f) = c.job.as_mut().and_then(|j| j.sendfile.as_mut()) {
                f.poll_ud = Some(ud);
            }
        }
    }

    /// Hands finished writes back, then performs a due shutdown or close.
    fn finish_conn(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        // SeqCst, before the last look at the command list in `run`: a writer that pushed after
        // that look then sees `false` and wakes us.
        let in_flight = c.queue.busy()
            || c.job
                .as_ref()
                .is_some_and(|j| j.send.send_in_flight() || j.writing().is_some());
        c.stats
            .transfer_in_flight
            .store(in_flight, Ordering::SeqCst);
        for done in c.queue.take_done() {
            c.files.remove(&done.id);
            let holder = c.holders.remove(&done.id);
            self.events.push(Event::Done {
                conn: id,
                done,
                holder,
            });
        }
        if c.end_requested && !c.ended && c.queue.drained() && c.job.is_none() {
            c.ended = true;
            let result = match c.queue.failed() {
                Some(e) if !c.closing => Err(e),
                _ => {
                    // SAFETY: shutdown on our own dup; it does not touch memory.
                    if unsafe { libc::shutdown(c.raw_fd(), libc::SHUT_WR) } == 0 {
                        Ok(())
                    } else {
                        Err(last_errno())
                    }
                }
            };
            self.events.push(Event::Ended { conn: id, result });
        }
        let transfer_in_flight = c.queue.busy()
            || c.job
                .as_ref()
                .is_some_and(|j| j.send.send_in_flight() || j.writing().is_some());
        let pinned = c.queue.unreleased() > 0 || c.job.is_some() || !c.retired.is_empty();
        if c.closing && !transfer_in_flight && pinned {
            // Zero-copy pages still sit in the socket's send queue (a peer that stopped
            // reading). Only freeing that queue releases them: close our dup with SO_LINGER 0,
            // so that once the caller's descriptor is closed too the kernel resets the
            // connection and drops the queue, and the notifications arrive.
            if let Some(fd) = c.fd.take() {
                reset_on_close(&fd);
            }
        }
        // A detaching conn goes the same way once idle: its last requests completed and were
        // released (each of those marks it dirty, so this check runs again after the last).
        if (c.closing || c.detaching) && c.queue.idle() && c.job.is_none() && c.retired.is_empty() {
            debug_assert!(c.holders.is_empty(), "holders outlive their writes");
            // Dropping the Conn closes the dup: no request of it is left in the kernel.
            self.conns.remove(&id);
            self.events.push(Event::Closed { conn: id });
        }
    }

    fn reap(&mut self) {
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
            if let Some(req) = self.reqs.get(&ud) {
                let conn = req.conn();
                if let Some(c) = self.conns.get_mut(&conn) {
                    on_step(
                        c,
                        req,
                        step.sent.map(|s| s.result),
                        step.released.map(|r| r.copied),
                    );
                    c.dirty = true;
                }
            }
            if step.released.is_some() {
                self.reqs.remove(&ud);
                self.shared.unreleased.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    fn flush(&mut self) {
        if !self.events.is_empty() {
            (self.sink)(std::mem::take(&mut self.events));
        }
    }
}

/// Applies one request's transfer result and/or release to its socket.
fn on_step<H>(
    c: &mut Conn<H>,
    req: &Req,
    sent: Option<Result<u32, Errno>>,
    released: Option<Option<bool>>,
) {
    let count_notification = |stats: &ConnStats, copied: Option<bool>| {
        if let Some(copied) = copied {
            stats.notifications.fetch_add(1, Ordering::Relaxed);
            if copied {
                stats.copied_notifications.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    match *req {
        Req::Queue {
            token, zero_copy, ..
        } => {
            if let Some(result) = sent {
                c.queue_ud = None;
                if let Ok(n) = result {
                    c.stats
                        .bytes_sent
                        .fetch_add(u64::from(n), Ordering::Relaxed);
                }
                match c.queue.on_sent(token, result) {
                    SentOutcome::ZeroCopyUnsupported => {
                        c.stats.zero_copy_unsupported.store(true, Ordering::Relaxed)
                    }
                    SentOutcome::ZeroCopyNoMemory => {
                        c.stats.zero_copy_no_memory.fetch_add(1, Ordering::Relaxed);
                    }
                    SentOutcome::Progress | SentOutcome::Retry | SentOutcome::Failed(_) => {}
                }
            }
            if let Some(copied) = released {
                if zero_copy {
                    count_notification(&c.stats, copied);
                }
                c.queue.on_released(token, copied);
            }
        }
        Req::FilePoll { .. } => {
            if let Some(f) = c.job.as_mut().and_then(|j| j.sendfile.as_mut()) {
                f.poll_ud = None;
                if let Some(Err(e)) = sent {
                    if e.0 == libc::ECANCELED {
                        f.error.get_or_insert(e);
                    }
                }
            }
        }
        Req::FileRead { slot, job, .. } => {
            if let (Some(result), Some(job)) = (sent, c.file_job(job)) {
                job.send
                    .on_read(slot, result.map_or_else(|e| -e.0, |n| n as i32));
            }
        }
        Req::FileSend {
            slot,
            zero_copy,
            job,
            ..
        } => {
            let stats = c.stats.clone();
            let Some(job) = c.file_job(job) else {
                return;
            };
            if let Some(result) = sent {
                job.send_ud = None;
                match job.send.on_sent(result) {
                    Ok(n) => {
                        stats.bytes_sent.fetch_add(u64::from(n), Ordering::Relaxed);
                    }
                    Err(e) if zero_copy && e.0 == libc::EOPNOTSUPP => {
                        job.plain = true;
                        stats.zero_copy_unsupported.store(true, Ordering::Relaxed);
                    }
                    Err(e) if zero_copy && (e.0 == libc::ENOMEM || e.0 == libc::ENOBUFS) => {
                        job.plain = true;
                        stats.zero_copy_no_memory.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
            if let (Some(copied), true) = (released, zero_copy) {
                job.send.on_released(slot);
                count_notification(&stats, copied);
                if let Some(copied) = copied {
                    c.queue.note_notification(copied);
                }
            }
        }
    }
    let auto_plain = c.policy.mode == Mode::Auto && c.queue.copies_anyway();
    c.stats.copies_anyway.store(auto_plain, Ordering::Relaxed);
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

fn done_event<H>(conn: u32, id: u64, e: Errno, holder: Option<H>) -> Event<H> {
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
