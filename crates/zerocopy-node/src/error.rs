//! Core errors → JS errors with a Node-style `code` (`EPIPE`, `ERR_ZC_UNSUPPORTED`, ...).
//!
//! napi puts the error's *status* string on `err.code`, so the code goes there. The message
//! starts with the syscall name (`"sendZc EPIPE ..."`, like node:net's `"write EPIPE"`);
//! `lib/errors.ts` lifts it into `err.syscall` and adds `err.errno`.

use std::io;

use zerocopy_core::Errno;

/// Throws `err` (with its own `code`) into JS and returns the marker napi expects after a
/// throw. `#[napi]` functions can only return `Error<Status>`, whose `code` would be a napi
/// status name, hence the explicit throw.
pub fn throw<T>(env: &napi::Env, err: napi::Error<String>) -> napi::Result<T> {
    // SAFETY: `env` is the live environment of the current #[napi] call on the JS thread.
    unsafe { napi::JsError::from(err).throw_into(env.raw()) };
    Err(napi::Error::from_status(napi::Status::PendingException))
}

/// Builds a coded JS error.
pub fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error<String> {
    napi::Error::new(code.to_string(), message)
}

/// An errno from the kernel, as `"<syscall> <CODE> (<description>)"`.
pub fn errno(syscall: &str, errno: Errno) -> napi::Error<String> {
    coded(
        errno.code(),
        format!(
            "{syscall} {} ({})",
            errno.code(),
            io::Error::from_raw_os_error(errno.0)
        ),
    )
}

/// An [`io::Error`] from the core: errno when it has one, else a code by kind.
pub fn io(syscall: &str, e: io::Error) -> napi::Error<String> {
    if let Some(n) = e.raw_os_error() {
        return errno(syscall, Errno(n));
    }
    let code = match e.kind() {
        io::ErrorKind::Unsupported => "ERR_ZC_UNSUPPORTED",
        io::ErrorKind::InvalidInput => "ERR_INVALID_ARG_VALUE",
        _ => "ERR_ZC_INTERNAL",
    };
    coded(code, format!("{syscall} {code}: {e}"))
}
