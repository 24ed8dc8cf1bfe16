//! `BindingSocket`: one socket adopted by this thread's send engine (see `engine.rs`).
//! Converts values only; ordering, lifetimes and policy live in the core.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use napi::bindgen_prelude::Uint8Array;
use napi::{Env, Status};
use napi_derive::napi;
use zerocopy_core::{ConnStats, Engine, Mode, Policy, Span};

use crate::engine::{engine, Holder};
use crate::error;
use crate::owed;

/// Counters of one socket.
#[napi(object)]
pub struct BindingStats {
    /// Bytes the kernel accepted.
    pub bytes_sent: f64,
    /// Requests sent as `IORING_OP_SEND_ZC`.
    pub zero_copy_sends: f64,
    /// Requests sent as plain copying sends.
    pub copy_sends: f64,
    /// `sendfile(2)` calls of file sends (page cache to socket).
    pub sendfile_calls: f64,
    /// Bytes sent by those calls.
    pub sendfile_bytes: f64,
    /// Zero-copy notifications received.
    pub notifications: f64,
    /// Notifications reporting that the kernel copied anyway.
    pub copied_notifications: f64,
    /// Zero-copy was given up after `EOPNOTSUPP`.
    pub zero_copy_unsupported: bool,
    /// Zero-copy pieces resent plain after `ENOMEM`/`ENOBUFS`.
    pub zero_copy_no_memory: f64,
    /// `auto` switched to plain sends because the kernel copies zero-copy sends anyway here.
    pub copies_anyway: bool,
}

/// A socket adopted by this thread's engine (start it with `engineStart` first).
#[napi]
pub struct BindingSocket {
    conn: u32,
    stats: Arc<ConnStats>,
    engine: Rc<Engine<Holder>>,
    /// `end()` was called: only the first owes an `Ended` (see `owed`).
    end_sent: Cell<bool>,
    /// `close()` or `detach()` was called: only the first owes a `Closed` (see `owed`).
    close_sent: Cell<bool>,
}

#[napi]
impl BindingSocket {
    /// Adopts the connected stream socket `fd` (the engine sends on its own dup).
    /// `mode` is `auto`, `always` or `never`; sizes are bytes.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        fd: i32,
        mode: String,
        threshold: u32,
        zc_chunk: u32,
    ) -> napi::Result<Self> {
        let Some(engine) = engine() else {
            return error::throw(
                &env,
                error::coded("ERR_ZC_UNSUPPORTED", "engine not started"),
            );
        };
        let mode = match mode.as_str() {
            "auto" => Mode::Auto,
            "always" => Mode::Always,
            "never" => Mode::Never,
            _ => return Err(napi::Error::new(Status::InvalidArg, "mode")),
        };
        let policy = Policy {
            mode,
            threshold: threshold as usize,
            zc_chunk: zc_chunk.max(4096) as usize,
            ..Policy::default()
        };
        match engine.open(fd, policy) {
            Ok((conn, stats)) => Ok(BindingSocket {
                conn,
                stats,
                engine,
                end_sent: Cell::new(false),
                close_sent: Cell::new(false),
            }),
            Err(e) => error::throw(&env, error::errno("adopt", e)),
        }
    }

    /// The engine's id of this socket, as used in event records.
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.conn
    }

    /// Queues `data` (non-empty). The typed array is referenced until its event arrives.
    #[napi]
    pub fn write(&self, env: Env, id: f64, data: Uint8Array) {
        let span = Span {
            addr: data.as_ptr() as usize,
            len: data.len(),
        };
        // SAFETY: `data` (the holder) is a strong napi reference to the typed array, so its
        // backing store stays allocated until the holder is dropped, which the engine does only
        // after the kernel released the memory. JS is told not to modify the array until the
        // write's promise settles.
        unsafe {
            self.engine
                .write(self.conn, &self.stats, id as u64, span, data)
        };
        owed::write_sent(&env);
    }

    /// Queues bytes `[offset, offset + length)` of the regular file `fd` as write `id`. The
    /// engine reads them on its own thread and works on a dup of `fd`, which the caller may
    /// close at once. Progress comes as kind-4 event records.
    #[napi]
    pub fn send_file(
        &self,
        env: Env,
        id: f64,
        fd: i32,
        offset: f64,
        length: f64,
    ) -> napi::Result<()> {
        match self
            .engine
            .send_file(self.conn, id as u64, fd, offset as u64, length as u64)
        {
            Ok(()) => {
                owed::write_sent(&env);
                Ok(())
            }
            Err(e) => error::throw(&env, error::errno("sendFile", e)),
        }
    }

    /// Withdraws write `id` if none of its bytes reached the kernel.
    #[napi]
    pub fn abort(&self, id: f64) {
        self.engine.abort(self.conn, id as u64);
    }

    /// Half-closes after every queued byte (FIN).
    #[napi]
    pub fn end(&self, env: Env) {
        self.engine.end(self.conn);
        if !self.end_sent.replace(true) {
            owed::end_sent(&env, self.conn);
        }
    }

    /// Cancels pending writes and closes the engine's dup once the kernel released everything.
    #[napi]
    pub fn close(&self, env: Env) {
        self.engine.close(self.conn);
        self.close_sent(&env);
    }

    /// Hands the socket back: once every queued byte went out and was released, closes the
    /// engine's dup without cancelling or resetting anything, and reports `closed`.
    #[napi]
    pub fn detach(&self, env: Env) {
        self.engine.detach(self.conn);
        self.close_sent(&env);
    }

    fn close_sent(&self, env: &Env) {
        if !self.close_sent.replace(true) {
            owed::close_sent(env, self.conn);
        }
    }

    /// `auto` found the kernel copies zero-copy sends on this route anyway (cheaper than `stats`).
    #[napi(getter)]
    pub fn copies_anyway(&self) -> bool {
        self.stats.copies_anyway.load(Relaxed)
    }

    /// Current counters.
    #[napi(getter)]
    pub fn stats(&self) -> BindingStats {
        let s = &self.stats;
        BindingStats {
            bytes_sent: s.bytes_sent.load(Relaxed) as f64,
            zero_copy_sends: s.zero_copy_sends.load(Relaxed) as f64,
            copy_sends: s.copy_sends.load(Relaxed) as f64,
            sendfile_calls: s.sendfile_calls.load(Relaxed) as f64,
            sendfile_bytes: s.sendfile_bytes.load(Relaxed) as f64,
            notifications: s.notifications.load(Relaxed) as f64,
            copied_notifications: s.copied_notifications.load(Relaxed) as f64,
            zero_copy_unsupported: s.zero_copy_unsupported.load(Relaxed),
            zero_copy_no_memory: s.zero_copy_no_memory.load(Relaxed) as f64,
            copies_anyway: s.copies_anyway.load(Relaxed),
        }
    }
}
