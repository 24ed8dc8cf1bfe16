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
//! Why nothing waits forever: see "A failed ring" in `crate::doorbell`.

use std::sync::atomic::Ordering;

use super::Worker;
use crate::command::Cmd;
use crate::conn::failed_done;
use crate::error::ENGINE_FAILED;
use crate::events::Event;
use crate::Errno;

impl<H: Send + 'static, F: FnMut(Vec<Event<H>>)> Worker<H, F> {
    /// Fails every socket with [`ENGINE_FAILED`] and answers commands until `Shutdown`.
    pub(super) fn fail(mut self, errno: Errno) {
        self.fail_all(errno);
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
            for cmd in self.shared.doorbell.wait_failed() {
                if let Some(reply) = self.answer_failed(cmd) {
                    shutdown = Some(reply);
                }
            }
        }
    }

    /// Fails every socket with [`ENGINE_FAILED`], leaking what the kernel may still read, and
    /// makes producers refuse new sockets.
    pub(crate) fn fail_all(&mut self, errno: Errno) {
        for slot in self.conns.values() {
            slot.conn
                .stats()
                .transfer_in_flight
                .store(false, Ordering::SeqCst);
        }
        self.shared.doorbell.fail(errno);
        for (_, slot) in std::mem::take(&mut self.conns) {
            // Leaks what the kernel may still read; dropping the slot closes the socket's dup.
            slot.conn.abandon(ENGINE_FAILED, &mut self.events);
        }
        // The registered regions: the kernel may still use them.
        std::mem::forget(std::mem::take(&mut self.fixed.regions));
    }

    /// Answers a command that arrived after the ring failed, at once; returns the reply of a
    /// `Shutdown`, for the caller to send once the events before it are delivered.
    pub(crate) fn answer_failed(&mut self, cmd: Cmd<H>) -> Option<std::sync::mpsc::Sender<()>> {
        match cmd {
            Cmd::Write {
                conn, id, holder, ..
            } => self
                .events
                .push(failed_done(conn, id, ENGINE_FAILED, Some(holder))),
            Cmd::SendFile { conn, id, .. } => {
                self.events.push(failed_done(conn, id, ENGINE_FAILED, None))
            }
            Cmd::End { conn } => self.events.push(Event::Ended {
                conn,
                result: Err(ENGINE_FAILED),
            }),
            Cmd::Close { conn } | Cmd::Detach { conn } => self.events.push(Event::Closed { conn }),
            Cmd::Register { reply, .. } => {
                let _ = reply.send(Err(ENGINE_FAILED));
            }
            Cmd::Shutdown { reply } => return Some(reply),
            Cmd::Open { .. } | Cmd::Abort { .. } | Cmd::Unregister { .. } => {}
        }
        None
    }
}
