//! The async engine through the real kernel over loopback TCP.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

mod common;
use common::pair;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use zerocopy_core::{probe, Engine, Event, Mode, Policy, Span};

type Holder = Vec<u8>;

fn engine() -> (Engine<Holder>, mpsc::Receiver<Event<Holder>>) {
    let (tx, rx) = mpsc::channel();
    let engine = Engine::start(move |batch: Vec<Event<Holder>>| {
        for e in batch {
            let _ = tx.send(e);
        }
    })
    .unwrap_or_else(|e| panic!("engine needs io_uring SEND_ZC: {e} ({:?})", probe().reason));
    (engine, rx)
}

/// xorshift sizes and bytes, reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn transfer(mode: Mode, writes: usize, max: usize, seed: u64) {
    let (engine, rx) = engine();
    let (tx, reader) = pair(Duration::from_millis(20));
    let policy = Policy {
        mode,
        ..Policy::default()
    };
    let (conn, stats) = engine.open(tx.as_raw_fd(), policy).unwrap();
    drop(tx); // the engine owns a dup: closing ours must not matter
    let mut rng = Rng(seed);
    let mut expected = Vec::new();
    for id in 0..writes as u64 {
        let len = 1 + (rng.next() as usize % max);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        expected.extend_from_slice(&data);
        let span = Span {
            addr: data.as_ptr() as usize,
            len,
        };
        // SAFETY: the Vec is the holder; its heap memory does not move when the Vec is moved,
        // and the engine keeps it until the write is released.
        unsafe { engine.write(conn, &stats, id, span, data) };
    }
    engine.end(conn);
    let mut next_id = 0;
    let mut ended = false;
    while next_id < writes as u64 || !ended {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("engine stalled")
        {
            Event::Done { done, holder, .. } => {
                assert_eq!(done.id, next_id, "writes complete in order");
                assert_eq!(
                    done.result,
                    Ok(holder.expect("memory writes return their holder").len())
                );
                next_id += 1;
            }
            Event::Ended { result, .. } => {
                // The FIN follows the last accepted byte; the last notifications may still be due.
                assert_eq!(result, Ok(()));
                ended = true;
            }
            Event::Closed { .. } => panic!("not closed yet"),
            Event::Progress { .. } => panic!("no file sends here"),
        }
    }
    let got = reader.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes differ or were reordered");
    let s = &stats;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(s.bytes_sent.load(Relaxed) as usize, expected.len());
    match mode {
        Mode::Never => assert_eq!(s.zero_copy_sends.load(Relaxed), 0),
        Mode::Always => assert_eq!(s.copy_sends.load(Relaxed), 0),
        Mode::Auto => {}
    }
    assert_eq!(
        s.notifications.load(Relaxed),
        s.zero_copy_sends.load(Relaxed)
    );
    engine.close(conn);
    loop {
        if let Event::Closed { conn: c } = rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            assert_eq!(c, conn);
            break;
        }
    }
    assert_eq!(engine.unreleased(), 0, "no buffer left pinned");
}

#[test]
fn auto_mode_orders_thousands_of_mixed_writes() {
    transfer(Mode::Auto, 3000, 64 * 1024, 11);
}

#[test]
fn always_mode_is_byte_exact() {
    transfer(Mode::Always, 500, 200 * 1024, 12);
}

#[test]
fn never_mode_coalesces_and_is_byte_exact() {
    transfer(Mode::Never, 3000, 8 * 1024, 13);
}

#[test]
fn open_rejects_non_stream_fds() {
    let (engine, _rx) = engine();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(
        engine
            .open(udp.as_raw_fd(), Policy::default())
            .unwrap_err()
            .code(),
        "EPROTOTYPE"
    );
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert_eq!(
        engine
            .open(file.as_raw_fd(), Policy::default())
            .unwrap_err()
            .code(),
        "ENOTSOCK"
    );
    assert_eq!(
        engine.open(-1, Policy::default()).unwrap_err().code(),
        "EBADF"
    );
}

fn temp_file(len: usize, seed: u64) -> (std::fs::File, Vec<u8>) {
    let mut rng = Rng(seed);
    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let path = std::env::temp_dir().join(format!("zc-engine-{}-{seed}", std::process::id()));
    std::fs::write(&path, &data).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    (f, data)
}

fn wait_done(
    rx: &mpsc::Receiver<Event<Holder>>,
    count: usize,
) -> Vec<(u64, Result<usize, zerocopy_core::Errno>)> {
    let mut done = Vec::new();
    let mut last_progress = std::collections::HashMap::new();
    while done.len() < count {
        match rx
            .recv_timeout(Duration::from_secs(20))
            .expect("engine stalled")
        {
            Event::Done { done: d, .. } => done.push((d.id, d.result)),
            Event::Progress { id, sent, .. } => {
                let last = last_progress.entry(id).or_insert(0);
                assert!(sent >= *last, "progress never goes back");
                *last = sent;
            }
            _ => {}
        }
    }
    done
}

#[test]
fn send_file_is_ordered_between_writes() {
    // sendfile(2) in each mode, and the staged read + send path (plain and zero-copy).
    for staged_files in [false, true] {
        for mode in [Mode::Auto, Mode::Always, Mode::Never] {
            file_case(mode, staged_files);
        }
    }
}

fn file_case(mode: Mode, staged_files: bool) {
    {
        let (engine, rx) = engine();
        let (tx, reader) = pair(Duration::ZERO);
        let policy = Policy {
            mode,
            staged_files,
            ..Policy::default()
        };
        let (conn, stats) = engine.open(tx.as_raw_fd(), policy).unwrap();
        let (file, data) = temp_file(3 * 1024 * 1024 + 123, 5);
        let a = b"before the file".to_vec();
        let b = vec![7u8; 100_000];
        // SAFETY: each Vec is its own holder and is not touched until its Done event.
        unsafe {
            engine.write(
                conn,
                &stats,
                1,
                Span {
                    addr: a.as_ptr() as usize,
                    len: a.len(),
                },
                a.clone(),
            )
        };
        engine
            .send_file(conn, 2, file.as_raw_fd(), 1000, (data.len() - 1000) as u64)
            .unwrap();
        drop(file); // the engine has its own dup
                    // SAFETY: as above.
        unsafe {
            engine.write(
                conn,
                &stats,
                3,
                Span {
                    addr: b.as_ptr() as usize,
                    len: b.len(),
                },
                b.clone(),
            )
        };
        engine.end(conn);
        let done = wait_done(&rx, 3);
        assert_eq!(
            done,
            vec![
                (1, Ok(a.len())),
                (2, Ok(data.len() - 1000)),
                (3, Ok(b.len()))
            ]
        );
        let got = reader.join().unwrap();
        let mut expected = a.clone();
        expected.extend_from_slice(&data[1000..]);
        expected.extend_from_slice(&b);
        assert!(
            got == expected,
            "{mode:?} staged={staged_files}: stream differs"
        );
        assert_eq!(
            stats.bytes_sent.load(std::sync::atomic::Ordering::Relaxed) as usize,
            expected.len()
        );
        engine.close(conn);
    }
}

#[test]
fn a_file_that_shrinks_fails_cleanly() {
    for staged_files in [false, true] {
        shrink_case(staged_files);
    }
}

fn shrink_case(staged_files: bool) {
    let (engine, rx) = engine();
    let (tx, _reader) = pair(Duration::ZERO);
    let (conn, _) = engine
        .open(
            tx.as_raw_fd(),
            Policy {
                staged_files,
                ..Policy::default()
            },
        )
        .unwrap();
    let (file, data) = temp_file(1024 * 1024, 6);
    // Ask for more than the file holds, as if it shrank after the caller's stat().
    engine
        .send_file(conn, 1, file.as_raw_fd(), 0, (data.len() + 4096) as u64)
        .unwrap();
    let done = wait_done(&rx, 1);
    assert_eq!(done[0].0, 1);
    assert_eq!(done[0].1.unwrap_err().code(), "ERR_ZC_FILE_SHRANK");
    engine.close(conn);
    loop {
        if let Event::Closed { .. } = rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            break;
        }
    }
    assert_eq!(engine.unreleased(), 0);
}

#[test]
fn closing_the_callers_fd_and_reusing_its_number_never_redirects_bytes() {
    use std::os::fd::IntoRawFd;
    let (engine, rx) = engine();
    let (tx, reader) = pair(Duration::from_millis(300)); // the peer reads late: bytes queue up
    let (conn, stats) = engine
        .open(
            tx.as_raw_fd(),
            Policy {
                mode: Mode::Always,
                ..Policy::default()
            },
        )
        .unwrap();
    let data = vec![0x42u8; 8 << 20];
    // SAFETY: the Vec is the holder; it is not touched until its Done event.
    unsafe {
        engine.write(
            conn,
            &stats,
            1,
            Span {
                addr: data.as_ptr() as usize,
                len: data.len(),
            },
            data.clone(),
        )
    };
    // Close the caller's descriptor behind the engine's back and reuse its number for a file.
    // `dup2` does both at once: waiting for the kernel to hand the number out again raced with
    // the other tests of this binary, which open descriptors on other threads.
    let number = tx.into_raw_fd();
    let path = std::env::temp_dir().join(format!("zc-victim-{}", std::process::id()));
    let victim = std::fs::File::create(&path).unwrap();
    // SAFETY: we own `number` (into_raw_fd): dup2 closes the socket it named and makes it a
    // second descriptor of `victim`, closed below exactly once.
    assert_eq!(unsafe { libc::dup2(victim.as_raw_fd(), number) }, number);
    engine.end(conn);
    let done = wait_done(&rx, 1);
    assert_eq!(done, vec![(1, Ok(data.len()))]);
    let got = reader.join().unwrap();
    assert!(
        got == data,
        "the peer got every byte through the engine's own dup"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        0,
        "no byte landed in the file"
    );
    drop(victim);
    // SAFETY: `number` is ours (the dup2 above) and closed only here.
    unsafe { libc::close(number) };
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn shutdown_closes_every_socket_settles_every_write_and_ends() {
    use std::io::Read;
    let (engine, rx) = engine();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let mut conns = Vec::new();
    for mode in [Mode::Always, Mode::Never] {
        let (conn, stats) = engine
            .open(
                tx.as_raw_fd(),
                Policy {
                    mode,
                    ..Policy::default()
                },
            )
            .unwrap();
        // More than the socket buffers take while the peer does not read: requests stay in
        // flight and zero-copy pages stay pinned.
        for id in 0..32u64 {
            let data = vec![id as u8; 256 * 1024];
            let span = Span {
                addr: data.as_ptr() as usize,
                len: data.len(),
            };
            // SAFETY: the Vec is the holder; its heap memory does not move with it, and the
            // engine keeps it until the write is released.
            unsafe { engine.write(conn, &stats, id, span, data) };
        }
        conns.push(conn);
    }
    std::thread::sleep(Duration::from_millis(50));
    drop(tx); // as a Node environment's handles are closed before its cleanup hooks
    assert!(
        engine.shutdown(Duration::from_secs(5)),
        "shutdown waits until the kernel released everything"
    );
    let mut done = 0;
    let mut closed = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            Event::Done { holder, .. } => {
                assert!(holder.is_some(), "every write's memory comes back");
                done += 1;
            }
            Event::Closed { conn } => closed.push(conn),
            _ => {}
        }
    }
    assert_eq!(done, 64, "every write settled before shutdown returned");
    closed.sort();
    assert_eq!(closed, conns, "every socket reported closed");
    // The engine's dups are gone: the peer sees the end of the stream (EOF or a reset).
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    let end = peer.read_to_end(&mut sink);
    assert!(
        end.is_ok() || end.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "the connection ended: {end:?}"
    );
}

/// Issue: finishing a file did not start the next queued file; the second send never settled
/// until some later command woke the socket. Small windows finish inside one pump round.
#[test]
fn back_to_back_file_sends_all_settle() {
    for staged_files in [false, true] {
        for round in 0..50u64 {
            let (engine, rx) = engine();
            let (tx, reader) = pair(Duration::ZERO);
            let policy = Policy {
                staged_files,
                ..Policy::default()
            };
            let (conn, _) = engine.open(tx.as_raw_fd(), policy).unwrap();
            drop(tx);
            let (file, data) = temp_file(100, 40 + round);
            let big = (round % 5 == 0).then(|| temp_file(4 << 20, 90 + round));
            let mut expected = Vec::new();
            let mut id = 1;
            if let Some((f, d)) = &big {
                engine
                    .send_file(conn, id, f.as_raw_fd(), 0, d.len() as u64)
                    .unwrap();
                expected.extend_from_slice(d);
                id += 1;
            }
            for (off, len) in [(10u64, 10u64), (20, 10), (0, 100), (99, 1)] {
                engine
                    .send_file(conn, id, file.as_raw_fd(), off, len)
                    .unwrap();
                expected.extend_from_slice(&data[off as usize..(off + len) as usize]);
                id += 1;
            }
            engine.end(conn);
            let done = wait_done(&rx, (id - 1) as usize);
            assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
            let ids: Vec<u64> = done.iter().map(|d| d.0).collect();
            assert_eq!(ids, (1..id).collect::<Vec<_>>(), "in order");
            let mut ended = false;
            while !ended {
                match rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("end stalled")
                {
                    Event::Ended { result, .. } => {
                        assert_eq!(result, Ok(()));
                        ended = true;
                    }
                    _ => continue,
                }
            }
            assert!(reader.join().unwrap() == expected, "stream differs");
            engine.close(conn);
        }
    }
}

/// A 64 MiB file send (id 1) to a loopback peer that never reads, on a non-blocking socket as
/// Node's are: the send fills the socket and then waits for room. Keep `tx` and the peer alive.
fn stalled_file_send(
    engine: &Engine<Holder>,
    staged_files: bool,
    seed: u64,
) -> (
    std::net::TcpStream,
    std::net::TcpStream,
    u32,
    std::sync::Arc<zerocopy_core::ConnStats>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    tx.set_nonblocking(true).unwrap(); // sendfile must not block
    let policy = Policy {
        staged_files,
        ..Policy::default()
    };
    let (conn, stats) = engine.open(tx.as_raw_fd(), policy).unwrap();
    let (file, data) = temp_file(64 << 20, seed);
    engine
        .send_file(conn, 1, file.as_raw_fd(), 0, data.len() as u64)
        .unwrap();
    (tx, peer, conn, stats)
}

/// Issue: an abort of a running file send waiting for room (the peer does not read) only took
/// effect once the peer read again. It must cancel the wait at once.
#[test]
fn aborting_a_running_file_send_cancels_its_wait_promptly() {
    for staged_files in [false, true] {
        let (engine, rx) = engine();
        let (tx, peer, conn, _) = stalled_file_send(&engine, staged_files, 7);
        // Let the socket fill up and the send wait for room.
        std::thread::sleep(Duration::from_millis(200));
        let t = std::time::Instant::now();
        engine.abort(conn, 1);
        let done = loop {
            match rx
                .recv_timeout(Duration::from_secs(3))
                .unwrap_or_else(|_| panic!("abort did not take effect (staged={staged_files})"))
            {
                Event::Done { done, .. } => break done,
                _ => continue,
            }
        };
        assert!(done.aborted, "reported as aborted");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "prompt: {:?}",
            t.elapsed()
        );
        engine.close(conn);
        drop(peer);
        drop(tx);
    }
}

#[test]
fn detach_hands_the_socket_back_without_resetting_it() {
    // Detach right after queueing: the engine sends everything first (file, staged or not, and
    // a write), closes its dup and reports Closed; the caller's socket then goes on, in order.
    for staged_files in [false, true] {
        let (engine, rx) = engine();
        let (mut tx, reader) = pair(Duration::from_millis(50));
        let policy = Policy {
            staged_files,
            ..Policy::default()
        };
        let (conn, stats) = engine.open(tx.as_raw_fd(), policy).unwrap();
        let (file, data) = temp_file(2 * 1024 * 1024 + 7, 11);
        engine
            .send_file(conn, 1, file.as_raw_fd(), 0, data.len() as u64)
            .unwrap();
        let tail = vec![3u8; 200_000];
        // SAFETY: the Vec is its own holder and is not touched until its Done event.
        unsafe {
            engine.write(
                conn,
                &stats,
                2,
                Span {
                    addr: tail.as_ptr() as usize,
                    len: tail.len(),
                },
                tail.clone(),
            )
        };
        engine.detach(conn);
        let mut done = Vec::new();
        loop {
            match rx
                .recv_timeout(Duration::from_secs(20))
                .expect("engine stalled")
            {
                Event::Done { done: d, .. } => done.push((d.id, d.result)),
                Event::Closed { .. } => break,
                _ => {}
            }
        }
        assert_eq!(
            done,
            vec![(1, Ok(data.len())), (2, Ok(tail.len()))],
            "staged={staged_files}: everything settles before Closed"
        );
        // Ours again: a plain write after the engine's bytes, then FIN.
        std::io::Write::write_all(&mut tx, b"after").unwrap();
        drop(tx);
        let got = reader.join().unwrap();
        let mut expected = data.clone();
        expected.extend_from_slice(&tail);
        expected.extend_from_slice(b"after");
        assert!(got == expected, "staged={staged_files}: stream differs");
    }
}

fn staging_regions(stats: &zerocopy_core::ConnStats) -> u64 {
    stats
        .staging_regions
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Issue: every file send allocated a 1 MiB staging region and took a fixed-buffer slot, even
/// on the `sendfile(2)` path that never touches them. Many small sendfile sends take none.
#[test]
fn sendfile_path_file_sends_take_no_staging_region() {
    let (engine, rx) = engine();
    let (tx, reader) = pair(Duration::ZERO);
    let (conn, stats) = engine.open(tx.as_raw_fd(), Policy::default()).unwrap();
    let mut expected = Vec::new();
    for id in 0..200u64 {
        let (file, data) = temp_file(1 + (id as usize * 97) % 8192, 1000 + id);
        engine
            .send_file(conn, id, file.as_raw_fd(), 0, data.len() as u64)
            .unwrap();
        assert_eq!(wait_done(&rx, 1), vec![(id, Ok(data.len()))]);
        expected.extend_from_slice(&data);
    }
    assert_eq!(staging_regions(&stats), 0, "no sendfile send staged");
    engine.end(conn);
    engine.close(conn);
    drop(tx);
    assert!(reader.join().unwrap() == expected, "stream differs");
}

/// While a file send runs (a peer that does not read keeps it waiting for room), every one of
/// the 64 fixed-buffer slots is still free for others (e.g. `BufferPool`) on the `sendfile`
/// path; a staged send holds one, so there the 64th registration is refused.
#[test]
fn a_running_sendfile_send_leaves_every_fixed_slot_free() {
    for staged_files in [false, true] {
        let (engine, rx) = engine();
        let (tx, peer, conn, stats) = stalled_file_send(&engine, staged_files, 8);
        // The job is running once it reports progress.
        loop {
            match rx
                .recv_timeout(Duration::from_secs(5))
                .expect("no progress")
            {
                Event::Progress { .. } => break,
                _ => continue,
            }
        }
        let regions: Vec<_> = (0..64)
            .map(|_| std::sync::Arc::new(zerocopy_core::buf::Region::new(4096).unwrap()))
            .collect();
        let accepted = regions
            .iter()
            .take_while(|r| engine.register((*r).clone()).is_ok())
            .count();
        for r in &regions[..accepted] {
            engine.unregister(r.addr());
        }
        if staged_files {
            assert_eq!(accepted, 63, "a staged send holds one slot");
            assert_eq!(staging_regions(&stats), 1);
        } else {
            assert_eq!(accepted, 64, "a sendfile send holds no slot");
            assert_eq!(staging_regions(&stats), 0);
        }
        engine.abort(conn, 1);
        engine.close(conn);
        drop(peer);
        drop(tx);
    }
}

/// A file `sendfile(2)` refuses (`EINVAL`: procfs `cmdline` has no `splice_read`) switches to
/// staged reads and sends, allocating the staging region only then; the bytes are exact.
#[test]
fn a_file_sendfile_refuses_is_staged_byte_for_byte() {
    let path = "/proc/self/cmdline";
    let data = std::fs::read(path).unwrap();
    let file = std::fs::File::open(path).unwrap();
    let mut probe_off: libc::off_t = 0;
    let (probe_a, _probe_b) = std::os::unix::net::UnixStream::pair().unwrap();
    // SAFETY: sendfile between two descriptors we own; `probe_off` is a live local.
    let n = unsafe { libc::sendfile(probe_a.as_raw_fd(), file.as_raw_fd(), &mut probe_off, 1) };
    assert_eq!(
        (n, std::io::Error::last_os_error().raw_os_error()),
        (-1, Some(libc::EINVAL)),
        "this kernel sendfile()s {path}: the test needs a file it refuses"
    );
    for mode in [Mode::Auto, Mode::Never] {
        let (engine, rx) = engine();
        let (tx, reader) = pair(Duration::ZERO);
        let policy = Policy {
            mode,
            ..Policy::default()
        };
        let (conn, stats) = engine.open(tx.as_raw_fd(), policy).unwrap();
        engine
            .send_file(conn, 1, file.as_raw_fd(), 0, data.len() as u64)
            .unwrap();
        assert_eq!(wait_done(&rx, 1), vec![(1, Ok(data.len()))]);
        assert_eq!(staging_regions(&stats), 1, "{mode:?}: staged once refused");
        engine.end(conn);
        engine.close(conn);
        drop(tx);
        assert!(reader.join().unwrap() == data, "{mode:?}: stream differs");
    }
}
