//! Taking a caller's descriptor: a close-on-exec duplicate that stays valid (and names the
//! same open file) whatever the caller does with its own number afterwards; clearing
//! `O_NONBLOCK` on a file opened with it; telling whether a file changed
//! ([`file_identity`]); and whether a socket's peer is a loopback address
//! ([`peer_is_loopback`]).

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

/// What [`file_identity`] reports of a file: what changes when its contents may have changed
/// (a write moves `mtime` and `ctime`; a file renamed over the path has another `ino`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    /// A regular file (`S_ISREG`).
    pub regular: bool,
}

/// `fstat(2)` of `file`, reduced to its [`FileIdentity`]; never waits for the disk (the inode of
/// an open descriptor is in memory).
#[cfg(unix)]
// The field types differ between platforms (macOS: i32 st_dev, i64 st_ino): the casts are needed there.
#[allow(clippy::unnecessary_cast)]
pub fn file_identity(file: i32) -> Result<FileIdentity, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into `st` and nothing else.
    if unsafe { libc::fstat(file, st.as_mut_ptr()) } != 0 {
        return Err(Errno::last());
    }
    // SAFETY: fstat succeeded, so it filled `st` whole.
    let st = unsafe { st.assume_init() };
    Ok(FileIdentity {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        size: st.st_size as u64,
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        regular: st.st_mode & libc::S_IFMT == libc::S_IFREG,
    })
}

/// `ENOSYS` where descriptors are not POSIX (Windows).
#[cfg(not(unix))]
pub fn file_identity(_file: i32) -> Result<FileIdentity, Errno> {
    Err(Errno(libc::ENOSYS))
}

/// Whether the stream socket `fd` is connected to a loopback address (`127.0.0.0/8`, `::1`,
/// or `::ffff:127.0.0.0/104`); `false` when it is not, or when that cannot be told.
#[cfg(unix)]
pub fn peer_is_loopback(fd: i32) -> bool {
    let mut addr = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `addr`, which we own and which is
    // large enough for any address family.
    if unsafe { libc::getpeername(fd, addr.as_mut_ptr().cast(), &mut len) } != 0 {
        return false;
    }
    // SAFETY: zero-initialised, then (partly) written by the kernel: every bit pattern is a
    // valid sockaddr_storage, and the family says which view below applies.
    let addr = unsafe { addr.assume_init() };
    match addr.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family is AF_INET, so the storage holds a sockaddr_in.
            let a =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            u32::from_be(a.sin_addr.s_addr) >> 24 == 127
        }
        libc::AF_INET6 => {
            // SAFETY: the family is AF_INET6, so the storage holds a sockaddr_in6.
            let a =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        _ => false,
    }
}

/// `false` where descriptors are not POSIX (Windows).
#[cfg(not(unix))]
pub fn peer_is_loopback(_fd: i32) -> bool {
    false
}

#[cfg(all(test, unix))]
mod tests {
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

    #[test]
    fn file_identity_moves_with_a_write() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("zc-identity-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(b"one").unwrap();
        let a = file_identity(f.as_raw_fd()).unwrap();
        assert!(a.regular);
        assert_eq!(a.size, 3);
        assert_eq!(
            file_identity(f.as_raw_fd()).unwrap(),
            a,
            "unchanged file, same identity"
        );
        f.write_all(b"!").unwrap();
        let b = file_identity(f.as_raw_fd()).unwrap();
        assert_eq!(b.size, 4);
        assert_ne!(b, a);
        assert_eq!(file_identity(-1), Err(Errno(libc::EBADF)));
    }

    #[test]
    fn loopback_peers_are_told_apart() {
        for host in ["127.0.0.1", "[::1]"] {
            let Ok(l) = std::net::TcpListener::bind(format!("{host}:0")) else {
                continue; // no IPv6 on this host
            };
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            assert!(peer_is_loopback(c.as_raw_fd()), "{host}");
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!peer_is_loopback(l.as_raw_fd()), "a listener has no peer");
        assert!(!peer_is_loopback(-1));
    }

    use super::*;
    use std::os::fd::AsRawFd;
}
