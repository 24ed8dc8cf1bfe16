//! What the engine thread does once its ring failed for good (`io_uring_enter` returned an
//! error other than `EINTR`/`EAGAIN`/`EBUSY`): it can no longer learn when the kernel releases
//! memory, so it must neither free that memory nor leave a caller waiting.
//!
//! - Every write of every socket fails with [`ENGINE_FAILED`], in order; a pending `end` too.
//! - Memory a request may still cover (callers' holders, staging regions, `msghdr`s, fixed
//!   buffers, the ring's own mappings) is leaked on purpose: freeing it could let the kernel
//!   send bytes that were never asked for. Holders of writes the kernel never saw go back.
//! - New sockets are refused ([`crate::Engine::open`] reads `failed`), so callers fall back.
//! - Commands that still arrive are answered at once, forever (until `Shutdown`): a write gets
//!   its holder back with the error, `end` an error, `close` its `Closed`.
//!
//! Why nothing waits forever: `failed` is stored (SeqCst) before the thread's look at the
//! command list under its mutex, and producers push under that mutex and then read `failed`
//! (`Engine::wake`), notifying `failed_wake`. A producer that read 0 pushed before the look
//! (the mutex orders them), so the look finds its command; one that read the errno notifies,
//! and the thread either has not looked yet (it will find the command) or is waiting on the
//! condition variable under the same mutex (it wakes). `transfer_in_flight` is cleared on every
//! socket first, so no write skips that wake-up.

use std::sync::atomic::Ordering;

use super::Worker;
use crate::engine::Cmd;
use crate::error::ENGINE_FAILED;
use crate::events::Event;
use crate::{Done, Errno};

impl<H: Send + 'static, F: FnMut(Vec<Event<H>>)> Worker<H, F> {
    /// Fails every socket with [`ENGINE_FAILED`] and answers commands until `Shutdown`.
    pub(super) fn fail(mut self, errno: Errno) {
        for c in self.conns.values() {
            c.stats.transfer_in_flight.store(false, Ordering::SeqCst);
        }
        self.shared.failed.store(errno.0, Ordering::SeqCst);
        self.shared.sleeping.store(false, Ordering::SeqCst);
        for (conn, mut c) in std::mem::take(&mut self.conns) {
            for (done, touched) in c.queue.abandon(ENGINE_FAILED) {
                let holder = c.holders.remove(&done.id);
                // The kernel may still read a touched write's memory: keep it forever.
                let holder = if touched {
                    std::mem::forget(holder);
                    None
                } else {
                    holder
                };
                self.events.push(Event::Done { conn, done, holder });
            }
            // Running and retired file sends: their staging regions (if they staged) may still
            // be read.
            std::mem::forget(c.job.take());
            std::mem::forget(std::mem::take(&mut c.retired));
            if c.end_requested && !c.ended {
                self.events.push(Event::Ended {
                    conn,
                    result: Err(ENGINE_FAILED),
                });
            }
            if c.closing || c.detaching {
                self.events.push(Event::Closed { conn });
            }
            // Dropping the rest closes the socket's dup and the dups of files never started.
        }
        // Requests' `msghdr`s and the registered regions: the kernel may still use them.
        std::mem::forget(std::mem::take(&mut self.reqs));
        std::mem::forget(std::mem::take(&mut self.fixed));
        let mut shutdown = self.shutdown.take();
        loop {
            self.flush();
            if let Some(reply) = shutdown.take() {
                let _ = reply.send(());
                // The ring's descriptor and mappings, and `wake_buf` (an eventfd read may still
                // be armed), stay: closing a descriptor this thread no longer trusts could close
                // someone else's, and the kernel may still write into the mappings.
                return std::mem::forget(self);
            }
            let cmds = {
                let mut cmds = self.shared.cmds.lock().expect("engine lock");
                while cmds.is_empty() {
                    cmds = self.shared.failed_wake.wait(cmds).expect("engine lock");
                }
                std::mem::take(&mut *cmds)
            };
            for cmd in cmds {
                match cmd {
                    Cmd::Write {
                        conn, id, holder, ..
                    } => self.events.push(failed_done(conn, id, Some(holder))),
                    Cmd::SendFile { conn, id, .. } => self.events.push(failed_done(conn, id, None)),
                    Cmd::End { conn } => self.events.push(Event::Ended {
                        conn,
                        result: Err(ENGINE_FAILED),
                    }),
                    Cmd::Close { conn } | Cmd::Detach { conn } => {
                        self.events.push(Event::Closed { conn })
                    }
                    Cmd::Register { reply, .. } => {
                        let _ = reply.send(Err(ENGINE_FAILED));
                    }
                    Cmd::Shutdown { reply } => shutdown = Some(reply),
                    Cmd::Open { .. } | Cmd::Abort { .. } | Cmd::Unregister { .. } => {}
                }
            }
        }
    }
}

fn failed_done<H>(conn: u32, id: u64, holder: Option<H>) -> Event<H> {
    Event::Done {
        conn,
        done: Done {
            id,
            result: Err(ENGINE_FAILED),
            zero_copy: false,
            copied: false,
            aborted: false,
        },
        holder,
    }
}
