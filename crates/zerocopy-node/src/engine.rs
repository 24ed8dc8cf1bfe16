//! This JS thread's send engine: `engineStart`, the mailbox its events come through
//! (`engineArm`), `engineUnreleased`, and its teardown with the Node environment.
//! Converts values only; ordering, lifetimes and policy live in the core.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Float64Array, Function, Uint8Array};
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunctionCallMode};
use napi::Env;
use napi_derive::napi;
use zerocopy_core::{Engine, Event};

use crate::error;
use crate::owed;
use crate::protocol::{
    FLAG_ABORTED, FLAG_COPIED, FLAG_ZERO_COPY, RECORD_CLOSED, RECORD_DONE, RECORD_ENDED,
    RECORD_PROGRESS, RECORD_STRIDE,
};

/// What keeps a write's memory alive: a strong reference to the JS typed array. It is dropped
/// on the JS thread, in the events callback, once the kernel has released the memory.
pub(crate) type Holder = Uint8Array;

const STRIDE: usize = RECORD_STRIDE as usize;
const KIND_DONE: f64 = RECORD_DONE as f64;
const KIND_ENDED: f64 = RECORD_ENDED as f64;
const KIND_CLOSED: f64 = RECORD_CLOSED as f64;
const KIND_PROGRESS: f64 = RECORD_PROGRESS as f64;

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

/// Flattens a batch of events into `[kind, conn, id, value, flags]` records, and tells
/// [`owed`] which owed records are delivered with them. Runs on the JS thread, so the holders
/// dropped here release their references where napi requires.
pub(crate) fn encode(env: &Env, events: Vec<Event<Holder>>) -> Vec<f64> {
    let mut out = Vec::with_capacity(events.len() * STRIDE);
    let mut dones = 0;
    let mut ended = Vec::new();
    let mut closed = Vec::new();
    for event in events {
        match event {
            Event::Done { conn, done, holder } => {
                drop(holder);
                dones += 1;
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
                ended.push(conn);
                let value = result.err().map_or(0.0, |e| -f64::from(e.0));
                out.extend([KIND_ENDED, f64::from(conn), 0.0, value, 0.0]);
            }
            Event::Closed { conn } => {
                closed.push(conn);
                out.extend([KIND_CLOSED, f64::from(conn), 0.0, 0.0, 0.0])
            }
            Event::Progress { conn, id, sent } => {
                out.extend([KIND_PROGRESS, f64::from(conn), id as f64, sent as f64, 0.0])
            }
        }
    }
    owed::delivered(env, dones, &ended, &closed);
    out
}

/// Starts this thread's send engine (once). `onEvents` receives batches of
/// `[kind, conn, id, value, flags]` records (kind 1 write done, 2 ended, 3 closed, 4 file
/// progress; value is bytes or a negative errno; flags 1 zero-copy, 2 copied, 4 aborted),
/// possibly empty. After each call it is not called again until JS calls `engineArm()`.
/// Returns `false` when zero-copy sends are unavailable here (see `probe()`), so callers fall back.
/// Throws the errno (`code` `EMFILE`, `ENFILE`, `ENOMEM`, `EAGAIN`, `syscall` `io_uring_setup`)
/// when the engine could not start for want of descriptors or memory: a later call tries again.
#[napi]
pub fn engine_start(env: Env, on_events: Function<Float64Array, ()>) -> napi::Result<bool> {
    if engine().is_some() {
        return Ok(true);
    }
    let report = zerocopy_core::probe();
    if let Some(errno) = report
        .reason
        .as_ref()
        .filter(|r| r.is_transient())
        .and_then(|r| r.errno)
    {
        let e = std::io::Error::from_raw_os_error(errno);
        return error::throw(&env, error::io("io_uring_setup", e));
    }
    if !report.supported {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("ZEROCOPY_SOCKET_DRIVER").is_some_and(|v| v == "loop") {
        return start_on_loop(&env, &on_events);
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
        .build_callback(move |ctx: ThreadsafeCallContext<()>| {
            // On the JS thread: the holders taken here are dropped where napi requires.
            Ok(Float64Array::new(encode(&ctx.env, js_box.take())))
        })?;
    // Weak: the loop is held only while the engine owes an event (see `owed`).
    owed::install(owed::KeepAlive::Thread(tsfn.handle.clone()));
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
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            owed::uninstall();
            Ok(false)
        }
        Err(e) => {
            owed::uninstall();
            error::throw(&env, error::io("io_uring_setup", e))
        }
    }
}

/// The opt-in loop driver: the ring on this thread's own event loop (`event_loop.rs`), no
/// engine thread, no mailbox; `engineArm` then has nothing to collect.
#[cfg(target_os = "linux")]
fn start_on_loop(env: &Env, on_events: &Function<Float64Array, ()>) -> napi::Result<bool> {
    let engine = match Engine::start_local() {
        Ok(e) => Rc::new(e),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Ok(false),
        Err(e) => return error::throw(env, error::io("io_uring_setup", e)),
    };
    let fd = engine
        .wake_fd()
        .expect("a loop engine has a wake descriptor");
    ENGINE.with(|slot| *slot.borrow_mut() = Some(engine));
    if let Err(e) = crate::event_loop::start(env, fd, on_events) {
        teardown();
        return Err(e);
    }
    Ok(true)
}

/// Runs when this thread's Node environment goes away (a worker that ends, or process exit):
/// closes the engine's sockets and ends its thread (see the core's `Engine::shutdown`), so
/// neither the connections nor the thread and ring outlive this environment; waits a little for
/// the kernel to release the sockets' buffers, and drops the events that arrived meanwhile here,
/// while napi references can still be released. Whatever the kernel still holds after that (a
/// peer that does not read) stays with the engine until the connection is reset, never freed
/// early.
pub(crate) fn teardown() {
    if let Some(engine) = ENGINE.try_with(|e| e.borrow_mut().take()).ok().flatten() {
        engine.shutdown(std::time::Duration::from_secs(1));
    }
    if let Some(mailbox) = MAILBOX.try_with(|m| m.borrow_mut().take()).ok().flatten() {
        drop(mailbox.take());
    }
    owed::uninstall();
}

/// Re-arms the engine's doorbell after JS handled the last batch, and returns the records
/// that arrived meanwhile (often none; JS handles them and arms again later).
#[napi]
pub fn engine_arm(env: Env) -> Float64Array {
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
    Float64Array::new(encode(&env, events))
}

/// The errno name (`EBADF`, ...) `io_uring_enter` failed with if this thread's engine failed
/// for good: its sockets' writes then failed with `ERR_ZC_ENGINE_FAILED` and new sockets are
/// refused. `null` while it works (or was never started).
#[napi]
pub fn engine_failure() -> Option<String> {
    engine()
        .and_then(|e| e.failure())
        .map(|e| e.code().to_string())
}

/// Requests the kernel has not released yet over all of this thread's sockets: buffers
/// still pinned. Zero when nothing is in flight.
#[napi]
pub fn engine_unreleased() -> f64 {
    engine().map_or(0.0, |e| e.unreleased() as f64)
}
