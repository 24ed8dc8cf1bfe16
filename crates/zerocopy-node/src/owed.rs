//! The events this thread's engine still owes JavaScript, and the event-loop reference held
//! for them: the engine's completion callback (a threadsafe function, weak by default; or,
//! for the loop driver, its `uv_poll_t`) is ref'd while anything is owed and unref'd once
//! nothing is. See [`Owed`].

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use napi::threadsafe_function::ThreadsafeFunctionHandle;
use napi::{sys, Env};

thread_local! {
    static OWED: RefCell<Option<Owed>> = const { RefCell::new(None) };
}

/// Counts, on the JS thread, the event records the engine still owes, and keeps the event loop
/// alive through the completion callback's reference while that count is above zero.
///
/// What is owed: one `Done` per `write` and per `sendFile` that reached the engine; one `Ended`
/// for the first `end()` of a connection (`ends`); one `Closed` for the first `close()` or
/// `detach()` of a connection (`closes`). Later calls on the same connection owe nothing
/// (`BindingSocket` reports only the first of each).
///
/// Why the count can never drop early (the process exiting under a pending write, end or
/// close): it is raised on the JS thread, by the `BindingSocket` call itself, right after the
/// command is handed to the engine, so before the engine could answer it; it is lowered only in
/// `encode`, on the JS thread, for records delivered to JavaScript. Every `Done` record comes
/// from a counted write (nothing else makes one; a `sendFile` whose `dup` failed sends no
/// command and is not counted), so `Done` decrements never outrun increments. An `Ended` or
/// `Closed` record lowers the count only if its connection is in `ends`/`closes`, and takes it
/// out: a record the engine sends on top (a second `close()` after the connection was gone is
/// answered with another `Closed`; a failed engine answers each `end` with an `Ended`) pays
/// for nothing, so it cannot pay for a record still to come.
///
/// Why it can never leak (the loop held with nothing left to come): every counted command yields
/// its record, once the work it stands for is over. See the core's worker (`apply_commands`,
/// `unknown_conn`), its connection state machine (`conn/`) and its failure mode: a write or file
/// send is finished, cancelled (`ECANCELED` for an unknown or closing connection) or failed, each
/// with exactly one `Done`; an `end` on a known connection gets one `Ended` once its queue drained,
/// is closed or the engine failed, on an unknown one `EBADF` at once; a `close` cancels and, if a
/// peer that does not read holds pages, resets, so its `Closed` comes once the kernel released
/// them; a `detach` (sent by JS only once no write is pending) goes once the kernel released what
/// went before it, which a peer that does not read delays exactly as it delays a write, and a later
/// `close` still resets; an unknown connection, or any on a failed engine, is answered with
/// `Closed` at once. Every record reaches `encode`: the engine rings the doorbell (this callback)
/// while JS is armed, and JS re-arms from `setImmediate` and collects what arrived (`engineArm`),
/// both kept running by this very reference. With the loop driver (`event_loop.rs`) the
/// reference is its poll handle's: the kernel signals the polled descriptor for every
/// completion, and the prepare handle turns the engine before the loop blocks while commands
/// are pending, so every record reaches `encode` from one of those two callbacks. Only the Node environment's teardown drops records
/// undelivered, when there is no loop left to hold.
///
/// `napi_ref_threadsafe_function` is a flag, not a counter: it is called on the transitions
/// 0 → 1 and 1 → 0 only, both on the JS thread as napi requires.
struct Owed {
    /// What holds the loop: the completion callback's handle (the engine's sink owns the
    /// function itself), or the loop driver's poll handle.
    handle: KeepAlive,
    /// `Done` records owed.
    dones: u64,
    /// Connections whose `Ended` is owed.
    ends: HashSet<u32>,
    /// Connections whose `Closed` is owed.
    closes: HashSet<u32>,
}

impl Owed {
    /// Records owed in all.
    fn count(&self) -> u64 {
        self.dones + self.ends.len() as u64 + self.closes.len() as u64
    }

    /// Applies `change`, then refs or unrefs the callback if the count crossed zero.
    fn adjust(&mut self, env: &Env, change: impl FnOnce(&mut Self)) {
        let before = self.count() > 0;
        change(self);
        let after = self.count() > 0;
        if before == after {
            return;
        }
        let handle = match &self.handle {
            KeepAlive::Loop(_poll) => {
                #[cfg(target_os = "linux")]
                crate::event_loop::hold(*_poll, after);
                return;
            }
            KeepAlive::Thread(handle) => handle,
        };
        handle.with_read_aborted(|aborted| {
            if aborted {
                return; // the environment is being torn down
            }
            let raw = handle.get_raw();
            // SAFETY: on the JS thread of the environment that created the function, which is
            // not aborted (released), so `raw` is valid.
            let _ = unsafe {
                if after {
                    sys::napi_ref_threadsafe_function(env.raw(), raw)
                } else {
                    sys::napi_unref_threadsafe_function(env.raw(), raw)
                }
            };
        });
    }
}

/// What keeps the event loop alive while events are owed.
pub(crate) enum KeepAlive {
    /// The engine thread's completion callback.
    Thread(Arc<ThreadsafeFunctionHandle>),
    /// The loop driver's `uv_poll_t` (see `event_loop.rs`), live until the teardown that
    /// also uninstalls this.
    Loop(*mut std::ffi::c_void),
}

/// Starts counting for this thread's engine, whose loop is held through `handle`.
pub(crate) fn install(handle: KeepAlive) {
    OWED.with(|o| {
        *o.borrow_mut() = Some(Owed {
            handle,
            dones: 0,
            ends: HashSet::new(),
            closes: HashSet::new(),
        })
    });
}

/// Stops counting (the environment's teardown): drops the callback's handle.
pub(crate) fn uninstall() {
    let _ = OWED.try_with(|o| o.borrow_mut().take());
}

fn with(env: &Env, change: impl FnOnce(&mut Owed)) {
    let _ = OWED.try_with(|o| {
        if let Some(owed) = o.borrow_mut().as_mut() {
            owed.adjust(env, change);
        }
    });
}

/// A write or file send was handed to the engine: one `Done` owed.
pub(crate) fn write_sent(env: &Env) {
    with(env, |o| o.dones += 1);
}

/// The first `end()` of `conn` was handed to the engine: one `Ended` owed.
pub(crate) fn end_sent(env: &Env, conn: u32) {
    with(env, |o| {
        o.ends.insert(conn);
    });
}

/// The first `close()` or `detach()` of `conn` was handed to the engine: one `Closed` owed.
pub(crate) fn close_sent(env: &Env, conn: u32) {
    with(env, |o| {
        o.closes.insert(conn);
    });
}

/// Records delivered to JavaScript: `done` `Done` records, and the connections of the `Ended`
/// and `Closed` records among them.
pub(crate) fn delivered(env: &Env, done: u64, ended: &[u32], closed: &[u32]) {
    with(env, |o| {
        debug_assert!(done <= o.dones, "more Done records than writes");
        o.dones = o.dones.saturating_sub(done);
        for conn in ended {
            o.ends.remove(conn);
        }
        for conn in closed {
            o.closes.remove(conn);
        }
    });
}
