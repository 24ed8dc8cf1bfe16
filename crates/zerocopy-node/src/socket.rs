//! `BindingSocket`: one socket adopted by the send engine, and `engineStart`, which starts this
//! JS thread's engine. Converts values only; ordering, lifetimes and policy live in the core.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Float64Array, Function, Uint8Array};
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;
use zerocopy_core::{ConnStats, Engine, Event, Mode, Policy, Span};

use crate::error;

/// What keeps a write's memory alive: a strong reference to the JS typed array. It is dropped
/// on the JS thread, in the events callback, once the kernel has released the memory.
type Holder = Uint8Array;

/// Event record width in the Float64Array handed to JS: `[kind, conn, id, value, flags]`.
const STRIDE: usize = 5;
const KIND_DONE: f64 = 1.0;
const KIND_ENDED: f64 = 2.0;
const KIND_CLOSED: f64 = 3.0;
const KIND_PROGRESS: f64 = 4.0;
const FLAG_ZERO_COPY: u32 = 1;
const FLAG_COPIED: u32 = 2;
const FLAG_ABORTED: u32 = 4;

thread_local! {
    // One engine per JS thread (main thread, each worker): completions must reach the Node
    // environment that owns the promises. See the core's engine docs.
    static ENGINE: RefCell<Option<Rc<Engine<Holder>>>> = const { RefCell::new(None) };
    static MAILBOX: RefCell<Option<Arc<Mailbox>>> = const { RefCell::new(None) };
}

/// Where the engine thread leaves events for the JS thread, which collects them.
///
/// The engine rings the doorbell (a threadsafe-function call) only while JS is *armed*, and
/// JS re-arms from `setImmediate` once it has handled what it took (`engineArm`). Handing every
/// batch through its own threadsafe call let a busy engine keep Node dispatching calls (up to
/// 1000 per turn, microtasks after each) without ever returning to timers: 5–17 ms event-loop
/// stalls with 1 KiB writes. Now JS handles at most a few collections per loop turn, and while
/// it is busy the engine only appends here: no wake-up of the JS thread at all.
struct Mailbox {
    events: Mutex<Vec<Event<Holder>>>,
    armed: AtomicBool,
}

impl Mailbox {
    fn take(&self) -> Vec<Event<Holder>> {
        std::mem::take(&mut *self.events.lock().expect("mailbox lock"))
    }
}

pub(crate) fn engine() -> Option<Rc<Engine<Holder>>> {
    // `try_with`: finalizers may run while the thread's locals are being torn down.
    ENGINE.try_with(|e| e.borrow().clone()).ok().flatten()
}

/// Flattens a batch of events into `[kind, conn, id, value, flags]` records. Runs on the JS
/// thread, so the holders dropped here release their references where napi requires.
fn encode(events: Vec<Event<Holder>>) -> Vec<f64> {
    let mut out = Vec::with_capacity(events.len() * STRIDE);
    for event in events {
        match event {
            Event::Done { conn, done, holder } => {
                drop(holder);
                let value = match done.result {
                    Ok(n) => n as f64,
                    Err(e) => -f64::from(e.0),
                };
                let flags = (u32::from(done.zero_copy) * FLAG_ZERO_COPY)
                    | (u32::from(done.copied) * FLAG_COPIED)
                    | (u32::from(done.aborted) * FLAG_ABORTED);
                out.extend([
                    KIND_DONE,
                    f64::from(conn),
                    done.id as f64,
                    value,
                    f64::from(flags),
                ]);
            }
            Event::Ended { conn, result } => {
                let value = result.err().map_or(0.0, |e| -f64::from(e.0));
                out.extend([KIND_ENDED, f64::from(conn), 0.0, value, 0.0]);
            }
            Event::Closed { conn } => out.extend([KIND_CLOSED, f64::from(conn), 0.0, 0.0, 0.0]),
            Event::Progress { conn, id, sent } => {
                out.extend([KIND_PROGRESS, f64::from(conn), id as f64, sent as f64, 0.0])
            }
        }
    }
    out
}

/// Starts this thread's send engine (once). `onEvents` receives batches of
/// `[kind, conn, id, value, flags]` records (kind 1 write done, 2 ended, 3 closed, 4 file
/// progress; value is bytes or a negative errno; flags 1 zero-copy, 2 copied, 4 aborted),
/// possibly empty. After each call it is not called again until JS calls `engineArm()`.
/// Returns `false` when zero-copy sends are unavailable here (see `probe()`), so callers fall back.
#[napi]
pub fn engine_start(env: Env, on_events: Function<Float64Array, ()>) -> napi::Result<bool> {
    if engine().is_some() {
        return Ok(true);
    }
    if !zerocopy_core::probe().supported {
        return Ok(false);
    }
    let mailbox = Arc::new(Mailbox {
        events: Mutex::new(Vec::new()),
        armed: AtomicBool::new(true),
    });
    let js_box = mailbox.clone();
    let tsfn = on_events
        .build_threadsafe_function::<()>()
        .weak::<true>()
        .callee_handled::<false>()
        .build_callback(move |_: ThreadsafeCallContext<()>| {
            // On the JS thread: the holders taken here are dropped where napi requires.
            Ok(Float64Array::new(encode(js_box.take())))
        })?;
    let engine_box = mailbox.clone();
    let started = Engine::start(move |events| {
        engine_box
            .events
            .lock()
            .expect("mailbox lock")
            .extend(events);
        // Appended first, then disarmed: JS either sees these events when it re-arms and looks
        // again, or gets this call. If the environment is gone, napi drops the call; the events
        // (and holders) stay in the mailbox, which lives as long as this thread's engine.
        if engine_box.armed.swap(false, SeqCst) {
            let _ = tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    });
    match started {
        Ok(e) => {
            ENGINE.with(|slot| *slot.borrow_mut() = Some(Rc::new(e)));
            MAILBOX.with(|slot| *slot.borrow_mut() = Some(mailbox));
            env.add_env_cleanup_hook((), |()| teardown())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(false),
        Err(e) => error::throw(&env, error::io("io_uring_setup", e)),
    }
}

/// Runs when this thread's Node environment goes away (a worker that ends, or process exit):
/// closes the engine's sockets and ends its thread (see the core's `Engine::shutdown`), so
/// neither the connections nor the thread and ring outlive this environment; waits a little for
/// the kernel to release the sockets' buffers, and drops the events that arrived meanwhile here,
/// while napi references can still be released. Whatever the kernel still holds after that (a
/// peer that does not read) stays with the engine until the connection is reset, never freed
/// early.
fn teardown() {
    if let Some(engine) = ENGINE.try_with(|e| e.borrow_mut().take()).ok().flatten() {
        engine.shutdown(std::time::Duration::from_secs(1));
    }
    if let Some(mailbox) = MAILBOX.try_with(|m| m.borrow_mut().take()).ok().flatten() {
        drop(mailbox.take());
    }
}

/// Re-arms the engine's doorbell after JS handled the last batch, and returns the records
/// that arrived meanwhile (often none; JS handles them and arms again later).
#[napi]
pub fn engine_arm() -> Float64Array {
    let Some(mailbox) = MAILBOX.try_with(|m| m.borrow().clone()).ok().flatten() else {
        return Float64Array::new(Vec::new());
    };
    // Armed first, then looked: an event appended before arming is taken here; one appended
    // after it finds the doorbell armed and rings (the call may then find an empty mailbox).
    mailbox.armed.store(true, SeqCst);
    let events = mailbox.take();
    if !events.is_empty() {
        // JS handles these now and arms again afterwards: no doorbell needed until then.
        mailbox.armed.store(false, SeqCst);
    }
    Float64Array::new(encode(events))
}

/// Requests the kernel has not released yet over all of this thread's sockets: buffers
/// still pinned. Zero when nothing is in flight.
#[napi]
pub fn engine_unreleased() -> f64 {
    engine().map_or(0.0, |e| e.unreleased() as f64)
}

/// Counters of one socket.
#[napi(object)]
pub struct BindingStats {
    /// Bytes the kernel accepted.
    pub bytes_sent: f64,
    /// Requests sent as `IORING_OP_SEND_ZC`.
    pub zero_copy_sends: f64,
    /// Requests sent as plain copying sends.
    pub copy_sends: f64,
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
    pub fn write(&self, id: f64, data: Uint8Array) {
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
            Ok(()) => Ok(()),
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
    pub fn end(&self) {
        self.engine.end(self.conn);
    }

    /// Cancels pending writes and closes the engine's dup once the kernel released everything.
    #[napi]
    pub fn close(&self) {
        self.engine.close(self.conn);
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
            notifications: s.notifications.load(Relaxed) as f64,
            copied_notifications: s.copied_notifications.load(Relaxed) as f64,
            zero_copy_unsupported: s.zero_copy_unsupported.load(Relaxed),
            zero_copy_no_memory: s.zero_copy_no_memory.load(Relaxed) as f64,
            copies_anyway: s.copies_anyway.load(Relaxed),
        }
    }
}
