//! `sendfile_now` through the real kernel over loopback TCP, every byte compared.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

mod common;
use common::pair;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zerocopy_core::direct::{cached_pages, MAX_PER_CALL};
use zerocopy_core::{sendfile_now, sendfile_now_after, Errno};

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            (i.wrapping_add(seed))
                .wrapping_mul(2_654_435_761)
                .to_le_bytes()[3]
        })
        .collect()
}

/// A temp file holding `data`, freshly written (so in the page cache), removed on drop.
struct Temp {
    file: File,
    path: PathBuf,
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn temp(name: &str, data: &[u8]) -> Temp {
    let path = std::env::temp_dir().join(format!("zc-direct-{}-{name}", std::process::id()));
    let mut w = File::create(&path).unwrap();
    w.write_all(data).unwrap();
    drop(w);
    Temp {
        file: File::open(&path).unwrap(),
        path,
    }
}

/// The writing end of a loopback pair, made non-blocking as Node's sockets are.
fn nonblocking(tx: &TcpStream) {
    tx.set_nonblocking(true).unwrap();
}

/// Skips (loudly) where the kernel has no `cachestat`, where `sendfile_now` always sends 0.
fn cachestat_works(t: &Temp) -> bool {
    let ok = cached_pages(t.file.as_raw_fd(), 0, 1).is_some();
    if !ok {
        eprintln!("cachestat(2) is unavailable here: sendfile_now always returns 0; skipping");
    }
    ok
}

/// A cached temp file of `data` and a non-blocking loopback socket whose peer reads everything;
/// `None` (a loud skip) where `cachestat` is unavailable.
fn setup(name: &str, data: &[u8]) -> Option<(Temp, TcpStream, JoinHandle<Vec<u8>>)> {
    let t = temp(name, data);
    if !cachestat_works(&t) {
        return None;
    }
    let (tx, reader) = pair(Duration::ZERO);
    nonblocking(&tx);
    Some((t, tx, reader))
}

/// Calls `sendfile_now` until `len` bytes went (the reader drains the socket meanwhile).
fn send_all(sock: &TcpStream, t: &Temp, offset: u64, len: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    while sent < len {
        let n = sendfile_now(
            sock.as_raw_fd(),
            t.file.as_raw_fd(),
            offset + sent,
            len - sent,
        )
        .unwrap();
        if n == 0 {
            assert!(Instant::now() < deadline, "no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        sent += n;
    }
    sent
}

#[test]
fn a_head_goes_first_then_the_body_and_both_count() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_vec();
    let data = pattern(5000, 9);
    let Some((t, tx, reader)) = setup("head", &data) else {
        return;
    };
    let n = sendfile_now_after(tx.as_raw_fd(), &head, t.file.as_raw_fd(), 0, 5000).unwrap();
    assert_eq!(n, (head.len() + 5000) as u64, "head and body in one call");
    drop(tx);
    let got = reader.join().unwrap();
    assert_eq!(&got[..head.len()], &head[..]);
    assert!(
        got[head.len()..] == data[..],
        "the body after the head differs"
    );

    // Nothing cached to send (past the end): not even the head goes.
    let Some((t, tx, reader)) = setup("head-none", &data) else {
        return;
    };
    assert_eq!(
        sendfile_now_after(tx.as_raw_fd(), &head, t.file.as_raw_fd(), 5000, 10),
        Ok(0)
    );
    drop(tx);
    assert!(
        reader.join().unwrap().is_empty(),
        "nothing may go when the body cannot"
    );
}

#[test]
fn a_cached_file_arrives_byte_for_byte() {
    for size in [1usize, 4096, 4097, 100_000] {
        let data = pattern(size, size as u64);
        let Some((t, tx, reader)) = setup(&format!("whole{size}"), &data) else {
            return;
        };
        let n = sendfile_now(tx.as_raw_fd(), t.file.as_raw_fd(), 0, size as u64).unwrap();
        // Loopback takes 100 kB at once; a short count would only be EAGAIN.
        assert_eq!(n, size as u64, "{size} bytes in one call");
        drop(tx);
        assert!(reader.join().unwrap() == data, "{size} bytes differ");
    }
}

#[test]
fn a_range_sends_exactly_its_window() {
    let data = pattern(300_001, 9);
    let Some((t, tx, reader)) = setup("range", &data) else {
        return;
    };
    assert_eq!(send_all(&tx, &t, 4095, 123_457), 123_457);
    assert_eq!(send_all(&tx, &t, 0, 10), 10);
    drop(tx);
    let got = reader.join().unwrap();
    let mut want = data[4095..4095 + 123_457].to_vec();
    want.extend_from_slice(&data[..10]);
    assert!(got == want, "the windows differ");
}

#[test]
fn a_full_socket_returns_what_went_without_blocking() {
    let data = pattern(64 * 1024 * 1024, 3);
    let t = temp("full", &data);
    if !cachestat_works(&t) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut rx, _) = listener.accept().unwrap(); // never read until the end
    nonblocking(&tx);
    let started = Instant::now();
    let mut total = 0;
    let mut calls = 0;
    loop {
        let n = sendfile_now(tx.as_raw_fd(), t.file.as_raw_fd(), total, 64 << 20).unwrap();
        assert!(n <= MAX_PER_CALL, "one call sends at most MAX_PER_CALL");
        calls += 1;
        total += n;
        if n == 0 {
            break;
        }
        assert!(
            calls < 1000,
            "a peer that does not read must fill the socket"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "returned without waiting for the peer"
    );
    assert!(total > 0, "the socket took something before it filled");
    assert!(
        total < data.len() as u64,
        "less than asked: the socket is full"
    );
    // What went is the file's beginning, in order.
    drop(tx);
    let mut got = Vec::new();
    rx.read_to_end(&mut got).unwrap();
    assert_eq!(got.len() as u64, total);
    assert!(got == data[..total as usize], "bytes differ");
}

#[test]
fn an_evicted_file_sends_nothing() {
    let data = pattern(1024 * 1024, 5);
    let t = temp("evicted", &data);
    if !cachestat_works(&t) {
        return;
    }
    let fd = t.file.as_raw_fd();
    // SAFETY: fsync and posix_fadvise act on a descriptor we own; no memory is touched.
    unsafe {
        assert_eq!(libc::fsync(fd), 0);
        assert_eq!(libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED), 0);
    }
    let cached = cached_pages(fd, 0, data.len() as u64).unwrap();
    if cached == 256 {
        // tmpfs (or a filesystem that keeps clean pages) ignores DONTNEED: nothing to test.
        eprintln!("posix_fadvise(DONTNEED) evicted nothing here; skipping");
        return;
    }
    let (tx, reader) = pair(Duration::ZERO);
    nonblocking(&tx);
    assert_eq!(
        sendfile_now(tx.as_raw_fd(), fd, 0, data.len() as u64),
        Ok(0),
        "{cached} of 256 pages cached: nothing inline"
    );
    // Reading the file brings it back: now it goes.
    let mut back = Vec::new();
    File::open(&t.path).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(send_all(&tx, &t, 0, 4096), 4096);
    drop(tx);
    assert!(reader.join().unwrap() == data[..4096]);
}

#[test]
fn a_short_file_returns_the_shorter_count() {
    let data = pattern(10_000, 7);
    let Some((t, tx, reader)) = setup("short", &data) else {
        return;
    };
    assert_eq!(
        sendfile_now(tx.as_raw_fd(), t.file.as_raw_fd(), 6000, 50_000),
        Ok(4000)
    );
    assert_eq!(
        sendfile_now(tx.as_raw_fd(), t.file.as_raw_fd(), 10_000, 1),
        Ok(0),
        "at the end: nothing"
    );
    drop(tx);
    assert!(reader.join().unwrap() == data[6000..]);
}

#[test]
fn a_bad_socket_is_an_error_a_blocking_one_or_a_bad_file_sends_nothing() {
    let data = pattern(100, 1);
    let t = temp("badfd", &data);
    if !cachestat_works(&t) {
        return;
    }
    assert_eq!(
        sendfile_now(-1, t.file.as_raw_fd(), 0, 100),
        Err(Errno(libc::EBADF))
    );
    assert_eq!(sendfile_now(-1, -1, 0, 100), Ok(0), "no file: not cached");
    // A blocking socket could wait for the peer: never inline.
    let (tx, reader) = pair(Duration::ZERO);
    assert_eq!(
        sendfile_now(tx.as_raw_fd(), t.file.as_raw_fd(), 0, 100),
        Ok(0)
    );
    // A socket whose peer is gone: EPIPE with nothing sent.
    nonblocking(&tx);
    tx.shutdown(std::net::Shutdown::Write).unwrap();
    reader.join().unwrap();
    assert_eq!(
        sendfile_now(tx.as_raw_fd(), t.file.as_raw_fd(), 0, 100),
        Err(Errno(libc::EPIPE))
    );
}
