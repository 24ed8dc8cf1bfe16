//! Sending a file range inline, now, without ever blocking: [`sendfile_now`]; reading one the
//! same way: [`read_now`]; and sending memory the same way: [`send_now`].
//!
//! The engine sends files on its own thread, which costs a cross-thread round trip per send
//! (about 100 µs here). For a small HTTP body that already sits in the page cache and a socket
//! with room, one non-blocking `sendfile(2)` on the caller's (JS) thread does the whole job in
//! a few microseconds. This module does that, or nothing: when it cannot be sure the call will
//! not wait for the disk, it sends nothing and the caller hands the range to the engine.
//!
//! # When is a range "in the page cache"
//! `cachestat(2)` (Linux 6.5) counts, for a page-aligned window, the pages present in the
//! file's page cache (`nr_cache`, which includes dirty pages and pages under writeback: both
//! are in memory and up to date, and a read never waits for writeback) and the shadow entries
//! of pages evicted (`nr_evicted`). A page index is either present or not, so the range counts
//! as cached exactly when `nr_cache` equals the number of pages the range touches (from the page
//! of `offset` to the page of its last byte). Anything else, and any `cachestat` failure
//! (`ENOSYS` on older kernels or other architectures, `EPERM` from seccomp or from the 6.14+
//! rule that the caller must be able to write to the file or own it, `EBADF`, `EOPNOTSUPP` on
//! hugetlbfs, ...), means "not known to be cached": nothing is sent.
//!
//! Residual races, accepted (the check is advice, not a lock): a page evicted between the
//! check and `sendfile`, or a page another reader's readahead has inserted but not yet filled
//! (counted as present, still locked), makes this one call wait for that read; it never waits
//! for the socket (the socket is non-blocking) and never for more than [`MAX_PER_CALL`] bytes.
//!
//! Only regular files are sent (`fstat`): a FIFO or a character device could block in
//! `sendfile` whatever the page cache holds.

use std::os::fd::RawFd;

use crate::error::Errno;

/// Most bytes one [`sendfile_now`] call sends, so the calling (JS) thread is held for at most
/// about a millisecond or so (loopback copies at several GB/s); the rest is the caller's to
/// send with another call or with the engine.
pub const MAX_PER_CALL: u64 = 1024 * 1024;

/// `cachestat(2)`'s syscall number: 451 on every architecture that uses the unified syscall
/// table, x86_64 (`arch/x86/entry/syscalls/syscall_64.tbl`) and aarch64
/// (`include/uapi/asm-generic/unistd.h`) alike. The `libc` crate (0.2.191) has no constant for
/// these two, so it is spelled here; other architectures report "unavailable".
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_CACHESTAT: libc::c_long = 451;

/// `struct cachestat_range` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

/// `struct cachestat` of `<linux/mman.h>`.
#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Sends up to `len` bytes of `file` from `offset` on the non-blocking socket `sock`, now, on
/// the calling thread, only if the whole range is in the page cache; returns the bytes sent.
///
/// - `Ok(0)`: nothing was sent: `len` is 0, the range is not known to be cached (see the module
///   docs; also when `cachestat` is unavailable), `file` is not a regular file, `offset` is at
///   or past the end of the file, `sock` is in blocking mode (it could wait for the peer), or
///   the socket had no room. The caller sends the range
///   another way (the engine, which may wait for the disk on its own thread).
/// - `Ok(n)` with `0 < n < len`: the socket filled up (`EAGAIN`), the file ended early (a
///   shorter file than asked: the caller sees the short count and decides), [`MAX_PER_CALL`]
///   was reached, or an error came after some bytes were sent. In that last case the error is
///   not reported now: the bytes are on their way and the caller must learn about them; the
///   same error comes back from the next call (or from the engine) for the rest of the range.
/// - `Err(e)`: the first `sendfile` failed with `e` (`EBADF`, `ENOTSOCK`, `EPIPE`,
///   `ECONNRESET`, ...), nothing sent; `EBADF` too when `sock` is not a descriptor. `EINTR` is
///   retried. `sendfile` has no `MSG_NOSIGNAL`: `EPIPE` also raises `SIGPIPE`, which the
///   process must ignore (Node and Rust programs do).
///
/// Never loops forever: every turn sends at least one byte or leaves. Costs an `fstat`, a
/// `cachestat` and an `fcntl(F_GETFL)` before the first `sendfile`.
///
/// `sock` must not be written to concurrently by anyone else (the engine included), or bytes
/// interleave; that is the caller's ordering to keep.
pub fn sendfile_now(sock: RawFd, file: RawFd, offset: u64, len: u64) -> Result<u64, Errno> {
    sendfile_now_after(sock, &[], file, offset, len)
}

/// [`sendfile_now`] with `head` (an HTTP header block) sent first on `sock` with `MSG_MORE`, so
/// the kernel puts it in one segment with the body's first bytes: one segment and one wake-up
/// of the peer where two writes make two. Returns the bytes of `head` and body sent together.
///
/// The head goes only when the body would go inline (the range is cached, the socket
/// non-blocking): `Ok(0)` means nothing at all was sent. A result below `head.len()` means the
/// socket filled up within the head (the caller sends the rest of it, then the body); above,
/// the head went whole and `n - head.len()` body bytes after it, as [`sendfile_now`] counts.
/// `Err` only when the first write failed with nothing sent. The send uses `MSG_NOSIGNAL`.
pub fn sendfile_now_after(
    sock: RawFd,
    head: &[u8],
    file: RawFd,
    offset: u64,
    len: u64,
) -> Result<u64, Errno> {
    let Some(len) = cached_len(file, offset, len.min(MAX_PER_CALL)) else {
        return Ok(0);
    };
    // SAFETY: F_GETFL reads the descriptor's flags; no memory is touched.
    let flags = unsafe { libc::fcntl(sock, libc::F_GETFL) };
    if flags < 0 {
        return Err(Errno::last());
    }
    if flags & libc::O_NONBLOCK == 0 {
        return Ok(0); // a blocking socket could wait for the peer: not inline
    }
    let mut head_sent = 0;
    while head_sent < head.len() {
        // SAFETY: `send` reads the unsent tail of `head`, borrowed for the call; a bad
        // descriptor fails with an errno.
        let n = unsafe {
            libc::send(
                sock,
                head[head_sent..].as_ptr().cast(),
                head.len() - head_sent,
                libc::MSG_MORE | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            head_sent += n as usize;
            continue;
        }
        match Errno::last().0 {
            libc::EINTR => continue,
            _ if head_sent > 0 => return Ok(head_sent as u64),
            libc::EAGAIN => return Ok(0),
            e => return Err(Errno(e)),
        }
    }
    let head_sent = head_sent as u64;
    let end = offset + len;
    let mut next = offset;
    while next < end {
        let Ok(mut off) = libc::off_t::try_from(next) else {
            break;
        };
        let want = (end - next) as usize;
        // SAFETY: sendfile reads and writes through the two descriptors only; `off` is a live
        // local the kernel updates. Bad descriptors fail with an errno, nothing else.
        let n = unsafe { libc::sendfile(sock, file, &mut off, want) };
        if n > 0 {
            next += n as u64;
            continue;
        }
        if n == 0 {
            break; // end of file: the file is shorter than asked
        }
        match Errno::last().0 {
            libc::EINTR => continue,
            libc::EAGAIN => break,
            // Bytes already went: report them now, the error on the next call.
            _ if next > offset || head_sent > 0 => break,
            e => return Err(Errno(e)),
        }
    }
    Ok(head_sent + next - offset)
}

/// Reads into `buf` from `file` at `offset`, now, on the calling thread, only what the page
/// cache already holds: `preadv2(RWF_NOWAIT)` (Linux 4.14), which fails with `EAGAIN` instead of
/// waiting for the disk. Returns the bytes read, from 0 to `buf.len()`; fewer than asked when
/// the rest is not cached, the file ends early, or the file system cannot read without
/// waiting (`EOPNOTSUPP`): the caller then reads the rest another way (off this thread).
///
/// `Err(e)` for other failures with nothing read (`EBADF`, `EISDIR`, `ESPIPE` for a pipe, `EINVAL`);
/// `EINTR` is retried.
pub fn read_now(file: RawFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let Ok(off) = libc::off_t::try_from(offset + done as u64) else {
            break;
        };
        let iov = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: buf.len() - done,
        };
        // SAFETY: one iovec over the unread tail of `buf`, which is borrowed mutably for the
        // call; the kernel writes at most `iov_len` bytes there and touches nothing else.
        let n = unsafe { libc::preadv2(file, &iov, 1, off, libc::RWF_NOWAIT) };
        if n > 0 {
            done += n as usize;
            continue;
        }
        if n == 0 {
            break; // end of file
        }
        match Errno::last().0 {
            libc::EINTR => continue,
            libc::EAGAIN | libc::EOPNOTSUPP => break,
            _ if done > 0 => break,
            e => return Err(Errno(e)),
        }
    }
    Ok(done)
}

/// How many bytes from `offset` (at most `len`) to send: the range clamped to the file's size,
/// if `file` is a regular file and every page of the clamped range is in the page cache;
/// `None` when there is nothing to send inline.
fn cached_len(file: RawFd, offset: u64, len: u64) -> Option<u64> {
    if len == 0 {
        return None;
    }
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the live, correctly sized `st`; a bad fd fails with EBADF.
    if unsafe { libc::fstat(file, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let size = u64::try_from(st.st_size).ok()?;
    let len = len.min(size.checked_sub(offset)?);
    if len == 0 {
        return None;
    }
    let cached = cachestat(file, offset, len)?;
    let page = page_size();
    let pages = (offset + len - 1) / page - offset / page + 1;
    (cached.nr_cache >= pages).then_some(len)
}

/// `cachestat(2)` of `[offset, offset + len)`; `None` when the kernel cannot tell.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn cachestat(file: RawFd, offset: u64, len: u64) -> Option<Cachestat> {
    let range = CachestatRange { off: offset, len };
    let mut out = Cachestat::default();
    let fd = libc::c_uint::try_from(file).ok()?;
    // SAFETY: cachestat reads `range` and writes `out`, both live and laid out as the kernel's
    // structs (`#[repr(C)]`, five and two `__u64`); flags must be 0. On a kernel without it the
    // call fails with ENOSYS and touches nothing.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const CachestatRange,
            &mut out as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    (r == 0).then_some(out)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cachestat(_file: RawFd, _offset: u64, _len: u64) -> Option<Cachestat> {
    None
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Sends what fits of `data` on the stream socket `sock` now, on the calling thread, with one
/// non-blocking `send(2)` (`MSG_DONTWAIT | MSG_NOSIGNAL`): libuv's `uv_try_write`. Returns the
/// bytes the kernel took (it copied them: `data` is free again), from 0 (`EAGAIN`: the socket
/// is full, or `data` is empty) to `data.len()`; fewer than asked when the socket filled up.
/// The caller sends the rest another way (the engine), after these bytes.
///
/// `Err(e)` when the send failed with nothing sent (`EPIPE`, `ECONNRESET`, `EBADF`,
/// `ENOTSOCK`, ...); `EINTR` is retried. `MSG_NOSIGNAL`: no `SIGPIPE`.
///
/// One call, not a loop: a TCP send copies all it can in one go, so a short count means the
/// socket is full and a second call would only return `EAGAIN`.
///
/// `sock` must not be written to concurrently by anyone else (the engine included), or bytes
/// interleave; that is the caller's ordering to keep.
pub fn send_now(sock: RawFd, data: &[u8]) -> Result<usize, Errno> {
    if data.is_empty() {
        return Ok(0);
    }
    loop {
        // SAFETY: `send` reads `data`, borrowed for the call, and nothing else; a bad
        // descriptor fails with an errno.
        let n = unsafe {
            libc::send(
                sock,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        match Errno::last().0 {
            libc::EINTR => continue,
            libc::EAGAIN => return Ok(0),
            e => return Err(Errno(e)),
        }
    }
}

/// Bytes in `sock`'s send queue that the peer has not acknowledged yet (`SIOCOUTQ`, the same
/// request as `TIOCOUTQ`): as the peer reads, this shrinks. An idle timer watches it to tell a
/// slow but steady reader (progress) from a stalled one while the engine waits for room.
pub fn unacked_bytes(sock: RawFd) -> Result<u64, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one `int` through the pointer, to the live local `n`; a bad
    // descriptor or a non-socket fails with an errno and writes nothing.
    let r = unsafe { libc::ioctl(sock, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How many pages of `[offset, offset + len)` `cachestat(2)` finds in the page cache; `None`
/// when the kernel cannot tell. For tests that want to know whether an eviction worked.
#[doc(hidden)]
pub fn cached_pages(file: RawFd, offset: u64, len: u64) -> Option<u64> {
    cachestat(file, offset, len).map(|c| c.nr_cache)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn unacked_bytes_of_a_socket_and_of_a_file() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(unacked_bytes(client.as_raw_fd()), Ok(0));
        server.write_all(&[1u8; 1000]).unwrap();
        // Loopback acknowledges at once; the count is back to 0 within moments, never negative.
        let n = unacked_bytes(server.as_raw_fd()).unwrap();
        assert!(n <= 1000, "{n}");
        assert_eq!(
            unacked_bytes(tempfile().as_raw_fd()),
            Err(Errno(libc::ENOTTY))
        );
    }

    #[test]
    fn a_written_file_counts_as_cached_and_a_pipe_does_not() {
        let mut f = tempfile();
        f.write_all(&vec![7u8; 10_000]).unwrap();
        match cached_pages(f.as_raw_fd(), 0, 10_000) {
            Some(n) => assert_eq!(n, 9_999 / page_size() + 1, "every page of a fresh write"),
            None => eprintln!("cachestat unavailable here: skipping the count"),
        }
        assert_eq!(cached_len(f.as_raw_fd(), 0, 0), None);
        assert_eq!(cached_len(f.as_raw_fd(), 10_000, 5), None, "at the end");
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the live array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert_eq!(cached_len(fds[0], 0, 10), None, "not a regular file");
        for fd in fds {
            // SAFETY: closes the two descriptors pipe just made, which nobody else owns.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn read_now_reads_a_cached_file_whole_and_stops_at_its_end() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut f = tempfile();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let mut buf = vec![0u8; 12_000];
        let n = read_now(f.as_raw_fd(), &mut buf, 0).unwrap();
        assert_eq!(
            n,
            data.len(),
            "a just-written file is cached and read whole, then its end"
        );
        assert_eq!(&buf[..n], &data[..]);
        assert_eq!(read_now(f.as_raw_fd(), &mut buf[..10], 9_995).unwrap(), 5);
        assert_eq!(read_now(-1, &mut buf, 0), Err(Errno(libc::EBADF)));
    }

    #[test]
    fn send_now_takes_what_fits_then_reports_a_reset_peer() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let fd = client.as_raw_fd();
        assert_eq!(send_now(fd, &[]), Ok(0));
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(send_now(fd, &data), Ok(1000));
        let mut got = vec![0u8; 1000];
        server.read_exact(&mut got).unwrap();
        assert_eq!(got, data, "the bytes, in order");
        // A peer that does not read: the socket fills, short counts, then 0 (EAGAIN), never blocking.
        let big = vec![1u8; 1 << 20];
        let mut total = 0usize;
        let mut zero = false;
        for _ in 0..1000 {
            let n = send_now(fd, &big).unwrap();
            total += n;
            if n == 0 {
                zero = true;
                break;
            }
        }
        assert!(zero && total > 0, "filled after {total} bytes");
        // The peer goes away with unread data: it resets; the send reports it, no SIGPIPE.
        drop(server);
        let mut err = None;
        for _ in 0..100 {
            match send_now(fd, &big) {
                Err(e) => {
                    err = Some(e);
                    break;
                }
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        let e = err.expect("a send to a reset peer fails");
        assert!(e.0 == libc::ECONNRESET || e.0 == libc::EPIPE, "{e:?}");
        assert_eq!(send_now(-1, &data), Err(Errno(libc::EBADF)));
    }

    fn tempfile() -> std::fs::File {
        // One name per call: the tests run in parallel, and a shared name let one test's
        // remove_file race another's open.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("zc-direct-unit-{}-{n}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
