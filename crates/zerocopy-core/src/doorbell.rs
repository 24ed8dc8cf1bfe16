//! The engine thread's doorbell: how other threads hand it commands and wake it, without
//! waking a busy engine and without ever leaving a command unseen. The whole wake-up
//! handshake, and the argument that it loses nothing, live here.
//!
//! **Parts.** A command list under a mutex; a `sleeping` flag the engine sets before it waits
//! in `io_uring_enter`; an eventfd whose read the engine keeps armed in its ring, so a write to
//! it ends the wait; and, once the ring failed for good, a `failed` errno and a condition
//! variable the engine waits on instead.
//!
//! **Producers** ([`Doorbell::push`] then [`Doorbell::ring`]): push under the mutex, then swap
//! `sleeping` to false and write the eventfd only if it was true; if it was false and the
//! engine failed, notify the condition variable.
//!
//! **The engine** ([`Doorbell::sleep`]): store `sleeping = true`, then look at the list under
//! the mutex; wait only if it is empty, then clear `sleeping`.
//!
//! **Why no command waits unseen.** Both flags are SeqCst and the mutex orders a push before or
//! after the engine's look. If the push came before the look, the look finds the command and
//! the engine does not wait. If it came after, the producer's swap comes after the engine's
//! store of `sleeping = true`, so it reads true (nobody else clears it while the engine waits:
//! a second producer that swapped first wrote the eventfd itself) and writes the eventfd, whose
//! armed read completes the wait. A wake-up with nothing to do costs one loop turn, nothing
//! else.
//!
//! **Writes that skip the ring** (`Engine::write`): a write pushed while
//! `ConnStats::transfer_in_flight` reads true does not ring at all, since the engine comes back
//! to that socket when its transfer completes (this was measured to cut context switches for
//! large writes). The engine stores the flag (SeqCst) at the end of every pump of the socket,
//! which comes before its next look at the list. A producer that read true either read it
//! before the engine cleared it, so its push precedes that clear and therefore the next look;
//! or the transfer is still in flight, and its CQE ends the engine's wait, after which the
//! engine applies every command.
//!
//! **A failed ring** ([`Doorbell::fail`], `worker/failure.rs`): `failed` is stored before the
//! engine's looks under the mutex. A producer that read `failed == 0` pushed before the look
//! (the mutex orders them), so the look finds the command; one that read the errno notifies,
//! and the engine either has not looked yet (it will find the command) or waits on the
//! condition variable under the same mutex (it wakes). `transfer_in_flight` is cleared on every
//! socket first, so no write skips that wake-up.
//!
//! The other direction, engine thread → JavaScript thread, is the binding's `Mailbox`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};

use crate::Errno;

/// Commands for the engine thread and the means to wake it (see the module docs).
pub(crate) struct Doorbell<C> {
    cmds: Mutex<Vec<C>>,
    sleeping: AtomicBool,
    eventfd: OwnedFd,
    failed: AtomicI32,
    failed_wake: Condvar,
}

impl<C> Doorbell<C> {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd returns a new descriptor or -1; ownership moves into OwnedFd.
        let eventfd = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        Ok(Doorbell {
            cmds: Mutex::new(Vec::new()),
            sleeping: AtomicBool::new(false),
            eventfd,
            failed: AtomicI32::new(0),
            failed_wake: Condvar::new(),
        })
    }

    /// The eventfd whose read the engine keeps armed in its ring.
    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Adds a command; [`Doorbell::ring`] must follow unless the skip rule above allows not to.
    pub(crate) fn push(&self, cmd: C) {
        self.cmds.lock().expect("engine lock").push(cmd);
    }

    /// Wakes the engine if it said it is going to sleep, or if it failed.
    pub(crate) fn ring(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        } else if self.failed.load(Ordering::SeqCst) != 0 {
            self.failed_wake.notify_one();
        }
    }

    /// The engine takes every command pushed so far.
    pub(crate) fn take(&self) -> Vec<C> {
        std::mem::take(&mut *self.cmds.lock().expect("engine lock"))
    }

    /// The engine announces sleep and runs `wait` (its wait for a CQE) unless a command
    /// arrived meanwhile.
    pub(crate) fn sleep(&self, wait: impl FnOnce()) {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.cmds.lock().expect("engine lock").is_empty() {
            wait();
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// The ring failed for good with `errno`: from now on producers notify the condition
    /// variable that [`Doorbell::wait_failed`] waits on.
    pub(crate) fn fail(&self, errno: Errno) {
        self.failed.store(errno.0, Ordering::SeqCst);
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// The errno the ring failed with, if it did.
    pub(crate) fn failure(&self) -> Option<Errno> {
        match self.failed.load(Ordering::SeqCst) {
            0 => None,
            e => Some(Errno(e)),
        }
    }

    /// After [`Doorbell::fail`]: waits until commands arrive and takes them.
    pub(crate) fn wait_failed(&self) -> Vec<C> {
        let mut cmds = self.cmds.lock().expect("engine lock");
        while cmds.is_empty() {
            cmds = self.failed_wake.wait(cmds).expect("engine lock");
        }
        std::mem::take(&mut *cmds)
    }
}
