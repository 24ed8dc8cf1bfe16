//! The engine's completion thread: owns the ring, turns commands into calls on each socket's
//! [`Connection`], submits the requests the connections ask for, feeds them their CQEs, and
//! hands their events to the sink. Everything about *what* to send lives in [`crate::conn`];
//! this file only does the I/O ([`RingIo`]) and the loop.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use io_uring::{squeue, IoUring};

use crate::buf::{BufTable, Region};
use crate::command::{Cmd, Shared};
use crate::conn::{
    conn_of, failed_done, ConnIo, Connection, FileConfig, Request, SendfileLimits, Staged, Staging,
};
use crate::events::Event;
use crate::{op, Errno};

mod failure;
pub(crate) mod local;

/// `user_data` of the eventfd read and of cancel requests. No request of a connection has
/// either: a connection's `user_data` carry its id in their upper half, and ids are counted
/// up from 1 by `Engine::open`, never reaching `u32::MAX`.
const WAKE: u64 = u64::MAX;
const CANCEL: u64 = u64::MAX - 1;
/// Size of the sparse fixed-buffer table registered at start.
const FIXED_SLOTS: u16 = 64;
/// How files are sent. `sendfile(2)` on the engine thread by default: one copy on loopback
/// (measured here: 3.65 GB/s against 3.05 for staged reads + sends) and none on a real NIC,
/// 1 MiB per call and 8 MiB per turn before other sockets. Staged: 4 × 256 KiB read ahead of
/// the socket.
const FILES: FileConfig = FileConfig {
    staged: Staged {
        slots: 4,
        slot_size: 256 * 1024,
    },
    sendfile: SendfileLimits {
        chunk: 1024 * 1024,
        budget: 8 * 1024 * 1024,
    },
};

/// A socket: the engine's dup of it (taken early when a close must reset the connection) and
/// its state machine.
struct Slot<H> {
    fd: Option<OwnedFd>,
    conn: Connection<H, OwnedFd>,
}

/// Regions registered as fixed buffers, and the free entries of the ring's table.
struct Fixed {
    table: BufTable,
    regions: Vec<(Arc<Region>, u16)>,
}

pub(crate) struct Worker<H, F> {
    ring: IoUring,
    shared: Arc<Shared<H>>,
    zc_flags: u16,
    /// Socket sends of at least this many bytes go to io-wq (`IOSQE_ASYNC`) instead of
    /// running inline in `io_uring_enter`; `u32::MAX`: never. An experiment of the loop
    /// driver (see `local.rs`).
    pub(crate) async_from: u32,
    sink: F,
    conns: HashMap<u32, Slot<H>>,
    events: Vec<Event<H>>,
    wake_buf: Box<u64>,
    fixed: Fixed,
    /// Set by `Shutdown`: answer this and end once no socket is left.
    shutdown: Option<mpsc::Sender<()>>,
    /// `io_uring_enter` failed with an error the ring cannot go on from: see [`failure`].
    broken: Option<Errno>,
}

/// What a connection's requests are done with: the ring, its socket, the fixed buffers.
struct RingIo<'a, H> {
    ring: &'a mut IoUring,
    broken: &'a mut Option<Errno>,
    fd: &'a mut Option<OwnedFd>,
    fixed: &'a mut Fixed,
    events: &'a mut Vec<Event<H>>,
    unreleased: &'a AtomicU64,
    zc_flags: u16,
    async_from: u32,
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
            async_from: u32::MAX,
            sink,
            conns: HashMap::new(),
            events: Vec::new(),
            wake_buf: Box::new(0),
            fixed: Fixed {
                table,
                regions: Vec::new(),
            },
            shutdown: None,
            broken: None,
        }
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
            let (ring, broken) = (&mut self.ring, &mut self.broken);
            self.shared.doorbell.sleep(|| {
                if let Err(e) = ring.submit_and_wait(1) {
                    note_enter_error(broken, &e);
                }
            });
            self.reap();
        }
    }

    fn arm_wake(&mut self) {
        let sqe = op::read_eventfd(self.shared.doorbell.eventfd(), &mut *self.wake_buf, WAKE);
        push(&mut self.ring, &mut self.broken, &sqe);
    }

    /// Runs `f` on socket `id` with the I/O its requests go through.
    fn with_conn<R>(
        &mut self,
        id: u32,
        f: impl FnOnce(&mut Connection<H, OwnedFd>, &mut RingIo<'_, H>) -> R,
    ) -> Option<R> {
        let slot = self.conns.get_mut(&id)?;
        let mut io = RingIo {
            ring: &mut self.ring,
            broken: &mut self.broken,
            fd: &mut slot.fd,
            fixed: &mut self.fixed,
            events: &mut self.events,
            unreleased: &self.shared.unreleased,
            zc_flags: self.zc_flags,
            async_from: self.async_from,
        };
        Some(f(&mut slot.conn, &mut io))
    }

    fn apply_commands(&mut self) {
        for cmd in self.shared.doorbell.take() {
            self.apply(cmd);
        }
    }

    /// Applies one command (the loop driver, `crate::local`, calls this directly).
    pub(crate) fn apply(&mut self, cmd: Cmd<H>) {
        // Commands for a socket the engine does not know (never opened, or gone) are
        // answered here: a write gets its memory straight back.
        let known = match &cmd {
            Cmd::Write { conn, .. }
            | Cmd::SendFile { conn, .. }
            | Cmd::Abort { conn, .. }
            | Cmd::End { conn }
            | Cmd::Close { conn }
            | Cmd::Detach { conn } => self.conns.contains_key(conn),
            _ => true,
        };
        if !known {
            self.events.extend(unknown_conn(cmd));
            return;
        }
        match cmd {
            Cmd::Open {
                conn,
                fd,
                policy,
                stats,
            } => {
                let conn_state = Connection::new(conn, policy, FILES, stats);
                self.conns.insert(
                    conn,
                    Slot {
                        fd: Some(fd),
                        conn: conn_state,
                    },
                );
            }
            Cmd::Write {
                conn,
                id,
                span,
                holder,
            } => {
                self.with_conn(conn, |c, io| c.write(id, span, holder, io));
            }
            Cmd::SendFile {
                conn,
                id,
                file,
                offset,
                len,
            } => {
                self.with_conn(conn, |c, io| c.send_file(id, file, offset, len, io));
            }
            Cmd::Abort { conn, id } => {
                self.with_conn(conn, |c, io| c.abort(id, io));
            }
            Cmd::End { conn } => {
                self.with_conn(conn, |c, _| c.end());
            }
            Cmd::Close { conn } => {
                self.with_conn(conn, |c, _| c.close());
            }
            Cmd::Detach { conn } => {
                self.with_conn(conn, |c, _| c.detach());
            }
            Cmd::Shutdown { reply } => {
                for slot in self.conns.values_mut() {
                    slot.conn.close();
                }
                self.shutdown = Some(reply);
            }
            Cmd::Register { region, reply } => {
                let _ = reply.send(self.fixed.register(&self.ring, region).map(drop));
            }
            Cmd::Unregister { addr } => self.fixed.unregister(&self.ring, addr),
        }
    }

    /// Pumps every socket an input arrived for; drops those that are gone.
    pub(crate) fn pump(&mut self) {
        let due: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.needs_pump())
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if self.with_conn(id, |c, io| c.pump(io)) == Some(true) {
                // Dropping the slot closes the dup: no request of it is left in the kernel.
                self.conns.remove(&id);
            }
        }
    }

    pub(crate) fn reap(&mut self) {
        let cqes: Vec<(u64, i32, u32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, flags) in cqes {
            match ud {
                WAKE => self.arm_wake(),
                CANCEL => {}
                _ => {
                    let id = conn_of(ud);
                    if let Some(slot) = self.conns.get_mut(&id) {
                        if slot.conn.on_cqe(ud, res, flags) {
                            self.shared.unreleased.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn flush(&mut self) {
        if !self.events.is_empty() {
            (self.sink)(std::mem::take(&mut self.events));
        }
    }
}

/// The answer to a socket command for a socket the engine does not know.
fn unknown_conn<H>(cmd: Cmd<H>) -> Option<Event<H>> {
    match cmd {
        Cmd::Write {
            conn, id, holder, ..
        } => Some(failed_done(conn, id, Errno(libc::ECANCELED), Some(holder))),
        Cmd::SendFile { conn, id, .. } => Some(failed_done(conn, id, Errno(libc::ECANCELED), None)),
        Cmd::End { conn } => Some(Event::Ended {
            conn,
            result: Err(Errno(libc::EBADF)),
        }),
        Cmd::Close { conn } | Cmd::Detach { conn } => Some(Event::Closed { conn }),
        _ => None,
    }
}

/// Pushes one SQE, submitting first when the queue is full.
fn push(ring: &mut IoUring, broken: &mut Option<Errno>, sqe: &squeue::Entry) {
    loop {
        // SAFETY: every entry points at memory that outlives the request: callers' holders,
        // staging regions and `msghdr`s stay with their connection until the request is
        // released (see `crate::conn`), and `wake_buf` lives as long as the worker.
        if unsafe { ring.submission().push(sqe) }.is_ok() || broken.is_some() {
            return;
        }
        // Queue full: hand what we have to the kernel and try again. If the kernel refuses
        // for good, stop here (never spin): `run` sees `broken` and fails every socket.
        if let Err(e) = ring.submit() {
            note_enter_error(broken, &e);
        }
    }
}

/// Records a fatal `io_uring_enter` error; transient ones (`EINTR`, `EAGAIN`, `EBUSY`: the
/// completion queue is full and is reaped next) are retried by the caller.
fn note_enter_error(broken: &mut Option<Errno>, e: &std::io::Error) {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    if !matches!(errno, libc::EINTR | libc::EAGAIN | libc::EBUSY) {
        broken.get_or_insert(Errno(errno));
    }
}

impl Fixed {
    fn register(&mut self, ring: &IoUring, region: Arc<Region>) -> Result<u16, Errno> {
        let index = self.table.take().ok_or(Errno(libc::ENOSPC))?;
        let iov = [region.iovec()];
        // SAFETY: the region stays allocated while registered: `regions` holds an Arc to it
        // until `unregister` has cleared the table entry.
        match unsafe {
            ring.submitter()
                .register_buffers_update(u32::from(index), &iov, None)
        } {
            Ok(()) => {
                self.regions.push((region, index));
                Ok(index)
            }
            Err(e) => {
                self.table.give(index);
                Err(Errno(e.raw_os_error().unwrap_or(libc::ENOMEM)))
            }
        }
    }

    fn unregister(&mut self, ring: &IoUring, addr: usize) {
        let Some(pos) = self.regions.iter().position(|(r, _)| r.addr() == addr) else {
            return;
        };
        let (_region, index) = self.regions.swap_remove(pos);
        let empty = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }];
        // SAFETY: an empty iovec clears the entry; the kernel keeps its own reference to the
        // old pages for requests still using them, and callers keep the memory alive for those.
        let _ = unsafe {
            ring.submitter()
                .register_buffers_update(u32::from(index), &empty, None)
        };
        self.table.give(index);
    }

    /// The fixed-buffer index whose region holds `[addr, addr + len)`, if any.
    fn index(&self, addr: usize, len: usize) -> Option<u16> {
        self.regions
            .iter()
            .find(|(r, _)| r.contains(addr, len))
            .map(|(_, i)| *i)
    }
}

impl<H> RingIo<'_, H> {
    /// The engine's dup of the socket, or -1 once it was reset (requests then fail `EBADF`).
    fn socket(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }
}

impl<H> ConnIo<H> for RingIo<'_, H> {
    fn submit(&mut self, ud: u64, req: Request) {
        let fd = self.socket();
        let sqe = match req {
            Request::SendZc { addr, len, fixed } => {
                op::send_zc(fd, addr as *const u8, len, self.zc_flags, fixed, op::STREAM)
            }
            Request::Send { addr, len } => op::stream_send(fd, addr as *const u8, len, 0),
            Request::SendMsg { msg } => op::stream_sendmsg(fd, msg, 0),
            Request::Read {
                file,
                addr,
                len,
                off,
                fixed,
            } => match fixed {
                Some(index) => op::read_fixed(file, addr as *mut u8, len, off, index),
                None => op::read(file, addr as *mut u8, len, off),
            },
            Request::PollOut => op::poll_out(fd),
        };
        let offload = match req {
            Request::SendZc { len, .. } | Request::Send { len, .. } => len >= self.async_from,
            Request::SendMsg { .. } => self.async_from < u32::MAX,
            Request::Read { .. } | Request::PollOut => false,
        };
        let sqe = if offload {
            sqe.flags(squeue::Flags::ASYNC)
        } else {
            sqe
        };
        self.unreleased.fetch_add(1, Ordering::AcqRel);
        push(self.ring, self.broken, &sqe.user_data(ud));
    }

    fn cancel(&mut self, target: u64) {
        push(self.ring, self.broken, &op::cancel(target, CANCEL));
    }

    fn fixed_index(&self, addr: usize, len: usize) -> Option<u16> {
        self.fixed.index(addr, len)
    }

    fn stage(&mut self, len: usize) -> Option<Staging> {
        let region = Arc::new(Region::new(len)?);
        let fixed = self.fixed.register(self.ring, region.clone()).ok();
        Some(Staging { region, fixed })
    }

    fn unstage(&mut self, staging: &Staging) {
        // A region still registered stays allocated through `Fixed::regions`' Arc until here.
        if staging.fixed.is_some() {
            self.fixed.unregister(self.ring, staging.region.addr());
        }
    }

    fn sendfile(&mut self, file: i32, offset: u64, len: usize) -> Result<usize, Errno> {
        let mut off = offset as libc::off_t;
        // SAFETY: sendfile copies between two descriptors we own (dups); `off` is ours.
        let n = unsafe { libc::sendfile(self.socket(), file, &mut off, len) };
        if n < 0 {
            return Err(Errno::last());
        }
        Ok(n as usize)
    }

    fn shutdown_write(&mut self) -> Result<(), Errno> {
        // SAFETY: shutdown on our own dup; it does not touch memory.
        match unsafe { libc::shutdown(self.socket(), libc::SHUT_WR) } {
            0 => Ok(()),
            _ => Err(Errno::last()),
        }
    }

    fn reset(&mut self) {
        if let Some(fd) = self.fd.take() {
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
            // Dropping `fd` closes our dup: once the caller's descriptor is closed too, the
            // kernel resets the connection and drops the send queue, and the notifications come.
        }
    }

    fn event(&mut self, event: Event<H>) {
        self.events.push(event);
    }
}
