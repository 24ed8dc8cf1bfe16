//! Kernel error numbers and their Node.js-style names (`EPIPE`, `ECONNRESET`, ...).
//!
//! Node reports socket failures as `err.code = 'EPIPE'`, `err.errno = -32`,
//! `err.syscall = 'write'`. The core keeps the raw errno and names it here so the
//! binding can build the same shape without knowing the table.

use std::fmt;
use std::io;

/// A positive kernel error number, as in `errno(3)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// The engine's ring failed (`io_uring_enter` returned an error it cannot go on from): every
/// write of its sockets fails with this. Outside the kernel's errno range, named
/// `ERR_ZC_ENGINE_FAILED` by [`code`]; the engine's [`crate::Engine::failure`] has the errno.
pub const ENGINE_FAILED: Errno = Errno(0x1_0002);

impl Errno {
    /// The calling thread's `errno` after a failed libc call (`EIO` if there is none).
    pub fn last() -> Self {
        Errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// Takes a CQE `res` (negative errno) and returns the error it carries.
    pub fn from_res(res: i32) -> Self {
        Errno(res.saturating_neg())
    }

    /// The symbolic name Node uses as `err.code`, e.g. `"EPIPE"`; `"EUNKNOWN"` when not in the table.
    pub fn code(self) -> &'static str {
        code(self.0)
    }

    /// Converts to an [`io::Error`] carrying the same OS error number.
    pub fn into_io(self) -> io::Error {
        io::Error::from_raw_os_error(self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({})",
            self.code(),
            io::Error::from_raw_os_error(self.0)
        )
    }
}

impl std::error::Error for Errno {}

/// Names an errno the way libuv/Node do (`uv_err_name`). Covers what sockets, files
/// and io_uring setup return; anything else is `"EUNKNOWN"`.
pub fn code(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        #[cfg(unix)] // not in the Windows CRT's errno set
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::ECANCELED => "ECANCELED",
        0x1_0001 => "ERR_ZC_FILE_SHRANK",
        0x1_0002 => "ERR_ZC_ENGINE_FAILED",
        _ => "EUNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_socket_errors_like_node() {
        assert_eq!(Errno(libc::EPIPE).code(), "EPIPE");
        assert_eq!(Errno(libc::ECONNRESET).code(), "ECONNRESET");
        assert_eq!(Errno(libc::EOPNOTSUPP).code(), "EOPNOTSUPP");
        assert_eq!(Errno(99_999).code(), "EUNKNOWN");
    }

    #[test]
    fn from_res_negates_cqe_result() {
        assert_eq!(Errno::from_res(-libc::EPIPE), Errno(libc::EPIPE));
        assert_eq!(Errno::from_res(i32::MIN).0, i32::MAX);
    }

    #[test]
    fn into_io_keeps_the_os_error() {
        assert_eq!(
            Errno(libc::ECONNRESET).into_io().raw_os_error(),
            Some(libc::ECONNRESET)
        );
    }
}
