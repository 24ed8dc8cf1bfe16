//! Blocking SEND_ZC through the real kernel over loopback TCP, every byte compared.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

use std::net::{TcpListener, TcpStream};

mod common;
use common::pair;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use zerocopy_core::{probe, send_all_zc, try_send_zc, BlockingRing};

/// A ring, or a loud failure saying why io_uring cannot be used here (never a silent pass).
fn ring() -> BlockingRing {
    BlockingRing::new(8).unwrap_or_else(|e| {
        panic!(
            "these tests need io_uring SEND_ZC, which this process cannot use: {e} ({:?})",
            probe().reason
        )
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

fn round_trip(len: usize, delay: Duration) -> usize {
    let data = pattern(len);
    let (tx, reader) = pair(delay);
    let mut ring = ring();
    let (mut off, mut short) = (0, 0);
    while off < data.len() {
        let n = try_send_zc(&mut ring, tx.as_raw_fd(), &data[off..], 1).unwrap();
        assert!(n > 0);
        if n < data.len() - off {
            short += 1;
        }
        off += n;
    }
    drop(tx);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "received bytes differ from the bytes sent");
    let stats = ring.stats();
    assert!(
        stats.notifications >= 1,
        "every send waited for its notification"
    );
    if probe().report_usage {
        // Loopback delivery always copies (measured on this kernel).
        assert_eq!(stats.copied, stats.notifications);
    }
    short
}

#[test]
fn round_trip_64k_every_byte() {
    round_trip(64 * 1024, Duration::ZERO);
}

#[test]
fn round_trip_32m_resumes_short_sends() {
    // The receiver waits before reading, so the socket buffer fills and sends come back short.
    let short = round_trip(32 * 1024 * 1024, Duration::from_millis(200));
    assert!(short > 0, "expected at least one short send for 32 MiB");
}

#[test]
fn af_unix_is_eopnotsupp_and_releases() {
    let (a, _b) = UnixStream::pair().unwrap();
    let mut ring = ring();
    let err = try_send_zc(&mut ring, a.as_raw_fd(), b"hello", 9).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
    // The error still came with F_MORE; the notification was awaited before returning.
    assert_eq!(ring.stats().notifications, 1);
    assert!(ring.take_foreign().is_empty());
}

#[test]
fn other_requests_cqes_are_kept_not_discarded() {
    let (tx, reader) = pair(Duration::ZERO);
    let mut ring = ring();
    let nop = io_uring::opcode::Nop::new().build().user_data(77);
    // SAFETY: a NOP refers to no memory.
    unsafe { ring.push(&nop).unwrap() };
    assert_eq!(
        send_all_zc(&mut ring, tx.as_raw_fd(), b"abc", 78).unwrap(),
        3
    );
    let foreign = ring.take_foreign();
    assert_eq!(foreign.len(), 1);
    assert_eq!((foreign[0].user_data, foreign[0].res), (77, 0));
    drop(tx);
    assert_eq!(reader.join().unwrap(), b"abc");
}

#[test]
fn closed_peer_reports_epipe_or_econnreset() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    drop(listener.accept().unwrap()); // the peer closes at once
    let mut ring = ring();
    let data = pattern(64 * 1024);
    let err = (0..100)
        .find_map(|_| {
            thread::sleep(Duration::from_millis(5));
            try_send_zc(&mut ring, tx.as_raw_fd(), &data, 5).err()
        })
        .expect("sending to a closed peer must fail within 100 sends");
    let errno = err.raw_os_error().unwrap();
    assert!(
        errno == libc::EPIPE || errno == libc::ECONNRESET,
        "got {err}"
    );
}
