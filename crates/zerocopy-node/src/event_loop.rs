//! The loop driver's glue: this JS thread's engine ring driven from its own libuv loop, no
//! engine thread (the core's `Engine::start_local`, `worker/local.rs`). Opt-in for now with
//! `ZEROCOPY_SOCKET_DRIVER=loop`; see `engine_start`.
//!
//! Two handles on the loop, both calling `Engine::turn` and handing the events to JS through
//! `napi_make_callback` (so microtasks run after them, as after any I/O callback):
//! - a `uv_poll_t` on the engine's wake descriptor (the ring's registered eventfd): the kernel
//!   completed something;
//! - a `uv_prepare_t`, run before the loop blocks in each turn: submits what JS queued during
//!   the turn (one `io_uring_enter` per loop turn, not one per call), if anything is pending.
//!
//! Both are unref'd; the poll handle is ref'd while events are owed (`owed.rs`), which keeps
//! the loop turning, so both keep running. They are closed by an async cleanup hook, which
//! Node waits for, so a worker's loop never closes with them open.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use napi::bindgen_prelude::{Float64Array, Function, ToNapiValue};
use napi::{sys, Env, JsValue};

use crate::engine::{encode, engine};

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_poll_init(lp: *mut sys::uv_loop_s, handle: *mut c_void, fd: c_int) -> c_int;
    fn uv_poll_start(
        handle: *mut c_void,
        events: c_int,
        cb: unsafe extern "C" fn(*mut c_void, c_int, c_int),
    ) -> c_int;
    fn uv_prepare_init(lp: *mut sys::uv_loop_s, handle: *mut c_void) -> c_int;
    fn uv_prepare_start(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void)) -> c_int;
    fn uv_ref(handle: *mut c_void);
    fn uv_unref(handle: *mut c_void);
    fn uv_close(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void));
}

/// `uv_handle_type` values (uv.h: `UV_HANDLE_TYPE_MAP`) and `UV_READABLE`.
const UV_POLL: c_int = 8;
const UV_PREPARE: c_int = 9;
const UV_READABLE: c_int = 1;

/// What the handles' callbacks need; every handle's `data` (its first field) points here.
struct Hooks {
    env: sys::napi_env,
    callback: sys::napi_ref,
    context: sys::napi_async_context,
    poll: *mut c_void,
    prepare: *mut c_void,
    cleanup: sys::napi_async_cleanup_hook_handle,
    /// Handles not closed yet.
    open: Cell<u8>,
}

fn handle_layout(kind: c_int) -> Layout {
    // SAFETY: uv_handle_size only reads its argument.
    let size = unsafe { uv_handle_size(kind) };
    Layout::from_size_align(size.max(64), 16).expect("a handle's layout")
}

/// Puts this thread's engine (already in `engine()`) on the loop of `env`; `on_events` gets
/// the event records, as from the engine thread.
pub(crate) fn start(
    env: &Env,
    fd: c_int,
    on_events: &Function<Float64Array, ()>,
) -> napi::Result<()> {
    let raw = env.raw();
    let check = |status: sys::napi_status, what: &str| {
        if status == sys::Status::napi_ok {
            Ok(())
        } else {
            Err(napi::Error::from_reason(format!(
                "event loop driver: {what} failed"
            )))
        }
    };
    let mut hooks = Box::new(Hooks {
        env: raw,
        callback: null_mut(),
        context: null_mut(),
        poll: null_mut(),
        prepare: null_mut(),
        cleanup: null_mut(),
        open: Cell::new(0),
    });
    // SAFETY: napi calls on the JS thread with this env; the handles are allocated with
    // libuv's own sizes, zeroed, initialised before use, and freed only in their close
    // callback; `data` (the first field of every uv handle) points at `hooks`, which lives
    // until the last close callback.
    unsafe {
        let mut lp = null_mut();
        check(
            sys::napi_get_uv_event_loop(raw, &mut lp),
            "napi_get_uv_event_loop",
        )?;
        check(
            sys::napi_create_reference(raw, on_events.raw(), 1, &mut hooks.callback),
            "napi_create_reference",
        )?;
        let mut resource = null_mut();
        let mut name = null_mut();
        check(
            sys::napi_create_object(raw, &mut resource),
            "napi_create_object",
        )?;
        let label = "zerocopy-socket:engine";
        check(
            sys::napi_create_string_utf8(
                raw,
                label.as_ptr().cast(),
                label.len() as isize,
                &mut name,
            ),
            "napi_create_string_utf8",
        )?;
        check(
            sys::napi_async_init(raw, resource, name, &mut hooks.context),
            "napi_async_init",
        )?;
        hooks.poll = alloc_zeroed(handle_layout(UV_POLL)).cast();
        hooks.prepare = alloc_zeroed(handle_layout(UV_PREPARE)).cast();
        let hooks = Box::into_raw(hooks);
        let (poll, prepare) = ((*hooks).poll, (*hooks).prepare);
        if uv_poll_init(lp, poll, fd) != 0 || uv_prepare_init(lp, prepare) != 0 {
            return Err(napi::Error::from_reason(
                "event loop driver: uv init failed",
            ));
        }
        *(poll as *mut *mut Hooks) = hooks;
        *(prepare as *mut *mut Hooks) = hooks;
        (*hooks).open.set(2);
        uv_poll_start(poll, UV_READABLE, on_poll);
        uv_prepare_start(prepare, on_prepare);
        uv_unref(poll);
        uv_unref(prepare);
        check(
            sys::napi_add_async_cleanup_hook(
                raw,
                Some(cleanup),
                hooks.cast(),
                &mut (*hooks).cleanup,
            ),
            "napi_add_async_cleanup_hook",
        )?;
        crate::owed::install(crate::owed::KeepAlive::Loop(poll));
    }
    Ok(())
}

/// Refs (`true`) or unrefs the poll handle: the loop stays alive while events are owed.
pub(crate) fn hold(poll: *mut c_void, hold: bool) {
    // SAFETY: `poll` is live until the cleanup hook, which uninstalls `owed` before closing it.
    unsafe {
        if hold {
            uv_ref(poll)
        } else {
            uv_unref(poll)
        }
    }
}

unsafe extern "C" fn on_poll(handle: *mut c_void, _status: c_int, _events: c_int) {
    deliver(handle, true);
}

unsafe extern "C" fn on_prepare(handle: *mut c_void) {
    deliver(handle, false);
}

/// Turns the engine (always when polled, only if commands are pending before the loop
/// blocks) and calls JS with the events.
///
/// # Safety
/// `handle` is one of ours, whose `data` points at the live `Hooks`.
unsafe fn deliver(handle: *mut c_void, polled: bool) {
    let hooks = &**(handle as *mut *mut Hooks);
    let Some(engine) = engine() else {
        return; // torn down
    };
    if !polled && !engine.pending() {
        return;
    }
    let events = engine.turn();
    if events.is_empty() {
        return;
    }
    let raw = hooks.env;
    let mut scope = null_mut();
    sys::napi_open_handle_scope(raw, &mut scope);
    let records = Float64Array::new(encode(&Env::from_raw(raw), events));
    if let Ok(arg) = Float64Array::to_napi_value(raw, records) {
        let (mut func, mut recv, mut result) = (null_mut(), null_mut(), null_mut());
        sys::napi_get_reference_value(raw, hooks.callback, &mut func);
        sys::napi_get_global(raw, &mut recv); // napi_make_callback wants an object
        let status = sys::napi_make_callback(raw, hooks.context, recv, func, 1, &arg, &mut result);
        if status == sys::Status::napi_pending_exception {
            // As for a throwing I/O callback: an uncaught exception.
            let mut error = null_mut();
            sys::napi_get_and_clear_last_exception(raw, &mut error);
            sys::napi_fatal_exception(raw, error);
        }
    }
    sys::napi_close_handle_scope(raw, scope);
}

/// The environment goes away: tears the engine down (its `shutdown` drives the ring here),
/// then closes both handles; Node waits until the last close callback removes this hook.
unsafe extern "C" fn cleanup(_handle: sys::napi_async_cleanup_hook_handle, arg: *mut c_void) {
    let hooks = arg as *mut Hooks;
    crate::engine::teardown();
    sys::napi_delete_reference((*hooks).env, (*hooks).callback);
    sys::napi_async_destroy((*hooks).env, (*hooks).context);
    uv_close((*hooks).poll, on_closed);
    uv_close((*hooks).prepare, on_closed);
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
    let hooks = *(handle as *mut *mut Hooks);
    let kind = if handle == (*hooks).poll {
        UV_POLL
    } else {
        UV_PREPARE
    };
    dealloc(handle.cast(), handle_layout(kind));
    let open = (*hooks).open.get() - 1;
    (*hooks).open.set(open);
    if open == 0 {
        let hooks = Box::from_raw(hooks);
        sys::napi_remove_async_cleanup_hook(hooks.cleanup);
    }
}
