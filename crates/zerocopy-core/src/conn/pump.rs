//! The pump: what a connection submits next, and what it reports, after its inputs changed.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use super::io::{ConnIo, MsgBuf, Request};
use super::jobs::{FileJob, StagedJob};
use super::{Connection, EndState, Lifecycle, Req};
use crate::events::Event;
use crate::policy::{wants_zero_copy, Route};
use crate::Errno;

impl<H, F: AsRawFd> Connection<H, F> {
    /// Runs this connection's steps until none of them made another one due, and reports
    /// what finished. Returns `true` once the connection is gone (after `close` or `detach`,
    /// when the kernel holds nothing of it): the driver drops it, closing the engine's dup.
    ///
    /// Why no progress is lost: every input (command or CQE) sets `dirty`, and so does every
    /// step that makes more work due here (a file send that finished lets the queue, or the
    /// next file, go on; a write finished at the front may let `end` go out); the loop stops
    /// only after a whole round that left `dirty` clear. What is left to do then waits for a
    /// CQE of a request in flight or for a command, and both set `dirty` again. The driver
    /// pumps every connection with [`Connection::needs_pump`] before it sleeps.
    pub(crate) fn pump(&mut self, io: &mut impl ConnIo<H>) -> bool {
        while self.dirty {
            self.dirty = false;
            if let Lifecycle::Closing { cancel_sent: false } = self.lifecycle {
                self.lifecycle = Lifecycle::Closing { cancel_sent: true };
                let job_writing = self.job.as_ref().and_then(|j| j.writing());
                for target in self.queue_ud.into_iter().chain(job_writing) {
                    io.cancel(target);
                }
            }
            self.start_file();
            self.send_from_queue(io);
            self.send_from_file(io);
            self.sweep_retired(io);
            if self.finish(io) {
                return true;
            }
        }
        false
    }

    /// Starts the file send the queue is waiting at, if any.
    fn start_file(&mut self) {
        if self.job.is_some() || self.closing() {
            return;
        }
        let Some((id, len)) = self.queue.external_at_cursor() else {
            return;
        };
        let Some((file, offset)) = self.files.remove(&id) else {
            return;
        };
        self.queue.start_external(id);
        self.job = Some(if self.policy.staged_files {
            FileJob::Staged(StagedJob::new(
                id,
                file,
                offset,
                len as u64,
                self.files_config.staged,
            ))
        } else {
            FileJob::sendfile(id, file, offset, len as u64)
        });
    }

    fn send_from_queue(&mut self, io: &mut impl ConnIo<H>) {
        if self.reset {
            return;
        }
        let Some(req) = self.queue.next_request(&self.policy) else {
            return;
        };
        let (request, msg) = if req.zero_copy {
            self.stats.zero_copy_sends.fetch_add(1, Ordering::Relaxed);
            let s = req.spans[0];
            let fixed = io.fixed_index(s.addr, s.len);
            let len = s.len as u32;
            (
                Request::SendZc {
                    addr: s.addr,
                    len,
                    fixed,
                },
                None,
            )
        } else if let [s] = req.spans[..] {
            self.stats.copy_sends.fetch_add(1, Ordering::Relaxed);
            (
                Request::Send {
                    addr: s.addr,
                    len: s.len as u32,
                },
                None,
            )
        } else {
            self.stats.copy_sends.fetch_add(1, Ordering::Relaxed);
            let m = MsgBuf::new(&req.spans);
            (Request::SendMsg { msg: m.msg() }, Some(m))
        };
        let what = Req::Queue {
            token: req.token,
            zero_copy: req.zero_copy,
        };
        self.queue_ud = Some(self.submit_with(request, what, msg, io));
    }

    /// Moves the running file send on: `sendfile(2)` calls, or staged reads and sends.
    fn send_from_file(&mut self, io: &mut impl ConnIo<H>) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if !self.reset {
            let mut restage = false;
            if let FileJob::Sendfile(f) = job {
                restage = f.pump(self.files_config.sendfile, &self.stats, io);
                if !restage && f.wants_poll() {
                    // Full socket, or out of budget (the poll then completes at once and puts
                    // this job behind the other sockets' work).
                    let ud = self.submit(Request::PollOut, Req::FilePoll, io);
                    if let Some(FileJob::Sendfile(f)) = self.job.as_mut() {
                        f.poll_ud = Some(ud);
                    }
                }
            }
            if restage {
                // This file cannot be sendfile()d (no splice_read): stage it instead.
                if let Some(FileJob::Sendfile(f)) = self.job.take() {
                    self.job = Some(FileJob::Staged(f.into_staged(self.files_config.staged)));
                }
            }
            if matches!(self.job, Some(FileJob::Staged(_))) {
                self.send_staged(io);
            }
        }
        self.finish_file(io);
    }

    /// Submits the running staged job's next reads and send, giving it its staging memory on
    /// its first step. A stopped job that never staged has nothing in flight: it is settled as
    /// it is and needs no memory; one that cannot get memory is stopped with `ENOMEM`.
    fn send_staged(&mut self, io: &mut impl ConnIo<H>) {
        let geometry = self.files_config.staged;
        let Some(FileJob::Staged(job)) = self.job.as_mut() else {
            return;
        };
        if job.staging.is_none() {
            if job.send.error().is_some() {
                return;
            }
            match io.stage(geometry.slots * geometry.slot_size as usize) {
                Some(staging) => {
                    self.stats.staging_regions.fetch_add(1, Ordering::Relaxed);
                    job.staging = Some(staging);
                }
                None => return job.send.stop(Errno(libc::ENOMEM)),
            }
        }
        let route = Route {
            refused: job.plain,
            copies_anyway: self.queue.copies_anyway(),
        };
        let zero_copy = wants_zero_copy(&self.policy, geometry.slot_size as usize, route);
        let ops = job.next_ops(zero_copy, geometry);
        let job_id = job.id;
        for (request, what) in ops {
            if let Req::FileSend { zero_copy, .. } = what {
                let counter = if zero_copy {
                    &self.stats.zero_copy_sends
                } else {
                    &self.stats.copy_sends
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            let is_send = matches!(what, Req::FileSend { .. });
            let ud = self.submit(request, what, io);
            if let (true, Some(job)) = (is_send, self.staged_job(job_id)) {
                job.send_ud = Some(ud);
            }
        }
    }

    /// Reports progress of the running file send and completes it once it has settled.
    fn finish_file(&mut self, io: &mut impl ConnIo<H>) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if let Some(sent) = job.take_progress() {
            io.event(Event::Progress {
                conn: self.conn,
                id: job.id(),
                sent,
            });
        }
        if !job.settled() {
            return;
        }
        let job = self.job.take().expect("job exists");
        self.queue.complete_external(job.id(), job.result());
        // The queue (or the next file) may go on now: `pump` runs another round.
        self.dirty = true;
        // Its outcome is final, but zero-copy sends may still pin its staging: that keeps the
        // staging until released (`sweep_retired`), not the caller's promise.
        if let FileJob::Staged(job) = job {
            self.retired.push(job);
        }
    }

    /// Drops retired jobs the kernel no longer holds any memory of (see [`StagedJob`]).
    fn sweep_retired(&mut self, io: &mut impl ConnIo<H>) {
        self.retired.retain(|job| {
            if !job.finished() {
                return true;
            }
            if let Some(staging) = job.staging.as_ref() {
                io.unstage(staging);
            }
            false
        });
    }

    /// A transfer of this socket is in flight: the engine comes back to it when it completes.
    fn transfer_in_flight(&self) -> bool {
        self.queue.busy() || self.job.as_ref().is_some_and(|j| j.transfer_in_flight())
    }

    /// Hands finished writes back, then performs a due shutdown, reset or departure.
    fn finish(&mut self, io: &mut impl ConnIo<H>) -> bool {
        // SeqCst, before the driver's last look at the command list: see `crate::doorbell`.
        let in_flight = self.transfer_in_flight();
        self.stats
            .transfer_in_flight
            .store(in_flight, Ordering::SeqCst);
        for done in self.queue.take_done() {
            self.files.remove(&done.id);
            let holder = self.holders.remove(&done.id);
            io.event(Event::Done {
                conn: self.conn,
                done,
                holder,
            });
        }
        if self.end == EndState::Asked && self.queue.drained() && self.job.is_none() {
            self.end = EndState::Reported;
            let result = match self.queue.failed() {
                Some(e) if !self.closing() => Err(e),
                _ => io.shutdown_write(),
            };
            io.event(Event::Ended {
                conn: self.conn,
                result,
            });
        }
        let pinned = self.queue.unreleased() > 0 || self.job.is_some() || !self.retired.is_empty();
        if self.closing() && !in_flight && pinned && !self.reset {
            // Zero-copy pages still sit in the socket's send queue (a peer that stopped
            // reading). Only freeing that queue releases them.
            self.reset = true;
            io.reset();
        }
        // A detaching connection goes the same way once idle: its last requests completed and
        // were released (each of those sets `dirty`, so this check runs again after the last).
        let idle = self.queue.idle() && self.job.is_none() && self.retired.is_empty();
        if self.lifecycle != Lifecycle::Open && idle {
            debug_assert!(self.holders.is_empty(), "holders outlive their writes");
            debug_assert!(self.reqs.is_empty(), "requests outlive their connection");
            io.event(Event::Closed { conn: self.conn });
            return true;
        }
        false
    }
}
