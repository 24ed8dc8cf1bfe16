//! Taking a caller's descriptor: a close-on-exec duplicate that stays valid (and names the
//! same open file) whatever the caller does with its own number afterwards; and clearing
//! `O_NONBLOCK` on a file opened with it.

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

/// Clears `O_NONBLOCK` on the open file `fd`. `sendFile` opens paths with `O_NONBLOCK`, so
/// that a FIFO cannot block the open; once `fstat` found a regular file, the flag goes, so
/// that io_uring reads of it wait for the disk instead of failing with `EAGAIN` on file
/// systems without non-blocking reads. Errors: `EBADF`.
#[cfg(unix)]
pub fn set_blocking(fd: i32) -> Result<(), Errno> {
    let last = || {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EBADF),
        )
    };
    // SAFETY: F_GETFL/F_SETFL read and set the open file's status flags; no memory is touched.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(last());
    }
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
            return Err(last());
        }
    }
    Ok(())
}

/// Not available (and not needed: the fallback reads with `pread`, which ignores the flag).
#[cfg(not(unix))]
pub fn set_blocking(_fd: i32) -> Result<(), Errno> {
    Err(Errno(libc::ENOSYS))
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
    fn set_blocking_clears_o_nonblock_only() {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/proc/self/status")
            .unwrap();
        // SAFETY: F_GETFL on a descriptor we own.
        let flags = || unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_ne!(flags() & libc::O_NONBLOCK, 0);
        set_blocking(f.as_raw_fd()).unwrap();
        assert_eq!(flags() & libc::O_NONBLOCK, 0);
        assert_eq!(flags() & libc::O_ACCMODE, libc::O_RDONLY);
        assert_eq!(set_blocking(-1).unwrap_err().code(), "EBADF");
    }

    #[test]
    fn a_closed_descriptor_is_ebadf() {
        assert_eq!(dup_raw(-1).unwrap_err().code(), "EBADF");
    }
}
