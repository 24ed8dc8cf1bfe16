//! Taking a caller's descriptor: a close-on-exec duplicate that stays valid (and names the
//! same open file) whatever the caller does with its own number afterwards.

use crate::error::Errno;

/// Duplicates `fd` with `fcntl(F_DUPFD_CLOEXEC)`; the caller owns the returned descriptor.
/// Errors: `EBADF` for a closed `fd`, `EMFILE`; `ENOSYS` where descriptors are not POSIX
/// (Windows).
#[cfg(unix)]
pub fn dup_cloexec(fd: i32) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl returns a new descriptor we own, or -1; it does not touch memory.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `dup` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) })
}

/// Duplicates `fd` and hands the new number over (the caller closes it). See [`dup_cloexec`].
#[cfg(unix)]
pub fn dup_raw(fd: i32) -> Result<i32, Errno> {
    use std::os::fd::IntoRawFd;
    dup_cloexec(fd).map(IntoRawFd::into_raw_fd)
}

/// Closes a descriptor [`dup_raw`] returned. Errors: `EBADF`.
#[cfg(unix)]
pub fn close_raw(fd: i32) -> Result<(), Errno> {
    // SAFETY: closes a descriptor the caller owns (from `dup_raw`); no memory is touched.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(Errno(libc::EBADF))
    }
}

/// Not available: CRT descriptors cannot be closed this way here.
#[cfg(not(unix))]
pub fn close_raw(_fd: i32) -> Result<(), Errno> {
    Err(Errno(libc::ENOSYS))
}

/// Not available: CRT descriptors cannot be duplicated this way here.
#[cfg(not(unix))]
pub fn dup_raw(_fd: i32) -> Result<i32, Errno> {
    Err(Errno(libc::ENOSYS))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_duplicate_outlives_the_original_number() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let dup = dup_cloexec(f.as_raw_fd()).unwrap();
        assert_ne!(dup.as_raw_fd(), f.as_raw_fd());
        drop(f);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(dup), &mut s).unwrap();
        assert!(s.contains("Name:"));
    }

    #[test]
    fn a_closed_descriptor_is_ebadf() {
        assert_eq!(dup_raw(-1).unwrap_err().code(), "EBADF");
    }
}
