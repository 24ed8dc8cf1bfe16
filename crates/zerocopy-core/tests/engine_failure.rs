//! An engine whose ring fails for good (`io_uring_enter` errors) fails every socket with a
//! code, keeps memory the kernel may still read, answers every later command, and refuses new
//! sockets. Its own test binary: it breaks the process's only io_uring descriptor.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use zerocopy_core::error::ENGINE_FAILED;
use zerocopy_core::{probe, Engine, Event, Mode, Policy, Span};

type Holder = Vec<u8>;

/// The descriptors of this process that are io_uring instances.
fn ring_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            (link.to_string_lossy() == "anon_inode:[io_uring]")
                .then(|| e.file_name().to_string_lossy().parse().ok())?
        })
        .collect()
}

fn write(engine: &Engine<Holder>, conn: u32, stats: &zerocopy_core::ConnStats, id: u64) {
    let data = vec![id as u8; 256 * 1024];
    let span = Span {
        addr: data.as_ptr() as usize,
        len: data.len(),
    };
    // SAFETY: the Vec is the holder; its heap memory does not move with it.
    unsafe { engine.write(conn, stats, id, span, data) };
}

#[test]
fn a_failed_ring_fails_every_socket_with_a_code_and_answers_every_command() {
    let (tx, rx) = mpsc::channel();
    let engine = Engine::start(move |batch: Vec<Event<Holder>>| {
        for e in batch {
            let _ = tx.send(e);
        }
    })
    .unwrap_or_else(|e| panic!("engine needs io_uring SEND_ZC: {e} ({:?})", probe().reason));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sock = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_peer, _) = listener.accept().unwrap(); // never reads: requests stay in flight
    sock.set_nonblocking(true).unwrap();
    let policy = Policy {
        mode: Mode::Always,
        ..Policy::default()
    };
    let (conn, stats) = engine.open(sock.as_raw_fd(), policy).unwrap();
    for id in 0..32 {
        write(&engine, conn, &stats, id);
    }
    std::thread::sleep(Duration::from_millis(200));
    let rings = ring_fds();
    assert_eq!(rings.len(), 1, "only the engine's ring is open: {rings:?}");
    // Break it: the descriptor number now names /dev/null, so io_uring_enter fails.
    let null = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: dup2 onto a number this process owns (the engine's ring); the ring itself stays
    // alive through its mappings, and the engine must cope with its descriptor going bad.
    assert!(unsafe { libc::dup2(null.as_raw_fd(), rings[0]) } >= 0);
    write(&engine, conn, &stats, 32); // wakes the engine, whose next io_uring_enter fails
    engine.end(conn);
    let mut done = Vec::new();
    let mut ended = None;
    while done.len() < 33 || ended.is_none() {
        match rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a failed engine still answers")
        {
            Event::Done {
                done: d, holder, ..
            } => done.push((d.id, d.result, holder.is_some())),
            Event::Ended { result, .. } => ended = Some(result),
            other => panic!("unexpected {other:?}"),
        }
    }
    let ids: Vec<u64> = done.iter().map(|d| d.0).collect();
    assert_eq!(ids, (0..33).collect::<Vec<_>>(), "in order");
    let failed: Vec<_> = done.iter().filter(|d| d.1.is_err()).collect();
    assert!(!failed.is_empty(), "writes still queued failed");
    assert!(
        failed.iter().all(|d| d.1 == Err(ENGINE_FAILED)),
        "every failure has the engine's code: {done:?}"
    );
    assert!(
        done.iter().any(|d| d.1.is_err() && !d.2),
        "memory the kernel may still read is not handed back"
    );
    assert!(
        done.last().unwrap().2,
        "a write the kernel never saw comes back"
    );
    assert_eq!(ended, Some(Err(ENGINE_FAILED)));
    assert!(engine.failure().is_some(), "the errno is kept");
    assert_eq!(
        engine.open(sock.as_raw_fd(), policy).unwrap_err(),
        ENGINE_FAILED,
        "new sockets are refused, so callers fall back"
    );
    // Later commands are answered at once.
    write(&engine, conn, &stats, 40);
    engine.close(conn);
    let mut got = (false, false);
    while got != (true, true) {
        match rx.recv_timeout(Duration::from_secs(5)).expect("answered") {
            Event::Done {
                done: d, holder, ..
            } => {
                assert_eq!((d.id, d.result), (40, Err(ENGINE_FAILED)));
                assert!(holder.is_some());
                got.0 = true;
            }
            Event::Closed { .. } => got.1 = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        engine.shutdown(Duration::from_secs(5)),
        "shutdown is answered"
    );
}
