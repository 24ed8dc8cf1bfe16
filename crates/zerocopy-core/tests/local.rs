//! The loop driver (`Engine::start_local`) through the real kernel over loopback TCP: the test thread
//! is the event loop, polling the engine's wake descriptor and calling `turn`.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

mod common;
use common::pair;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use zerocopy_core::{probe, Engine, Event, Mode, Policy, Span};

type Holder = Vec<u8>;

fn engine() -> Engine<Holder> {
    Engine::start_local().unwrap_or_else(|e| {
        panic!(
            "the loop driver needs io_uring SEND_ZC: {e} ({:?})",
            probe().reason
        )
    })
}

/// One loop turn: submit what is pending, else wait for the wake descriptor (at most 20 s
/// in all, or the engine stalled), then reap.
fn next_events(engine: &Engine<Holder>, out: &mut VecDeque<Event<Holder>>, deadline: Instant) {
    while out.is_empty() {
        assert!(Instant::now() < deadline, "loop driver stalled");
        if !engine.pending() {
            let mut pfd = libc::pollfd {
                fd: engine
                    .wake_fd()
                    .expect("a loop engine has a wake descriptor"),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd. Everything in flight completes within seconds on
            // loopback, so a timeout here is a lost wake-up.
            let ready = unsafe { libc::poll(&mut pfd, 1, 5000) };
            assert_eq!(ready, 1, "the wake descriptor never became readable");
        }
        out.extend(engine.turn());
    }
}

fn transfer(mode: Mode, writes: usize, max: usize, seed: u64) {
    let engine = engine();
    let (tx, reader) = pair(Duration::from_millis(20));
    let policy = Policy {
        mode,
        ..Policy::default()
    };
    let (conn, stats) = engine.open(tx.as_raw_fd(), policy).unwrap();
    drop(tx);
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut expected = Vec::new();
    for id in 0..writes as u64 {
        let len = 1 + (next() as usize % max);
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        expected.extend_from_slice(&data);
        let span = Span {
            addr: data.as_ptr() as usize,
            len,
        };
        // SAFETY: the Vec is the holder; its heap memory does not move with it.
        unsafe { engine.write(conn, &stats, id, span, data) };
    }
    // A file send after the writes, then the FIN.
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let path = std::env::temp_dir().join(format!("zc-local-{}-{seed}", std::process::id()));
    std::fs::write(&path, &body).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    engine
        .send_file(
            conn,
            writes as u64,
            file.as_raw_fd(),
            1000,
            body.len() as u64 - 1000,
        )
        .unwrap();
    expected.extend_from_slice(&body[1000..]);
    engine.end(conn);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = VecDeque::new();
    let (mut next_id, mut ended) = (0, false);
    while next_id <= writes as u64 || !ended {
        next_events(&engine, &mut events, deadline);
        match events.pop_front().unwrap() {
            Event::Done { done, .. } => {
                assert_eq!(done.id, next_id, "writes complete in order");
                assert!(done.result.is_ok(), "{:?}", done.result);
                next_id += 1;
            }
            Event::Ended { result, .. } => {
                assert_eq!(result, Ok(()));
                ended = true;
            }
            Event::Progress { .. } => {}
            Event::Closed { .. } => panic!("not closed yet"),
        }
    }
    engine.close(conn);
    loop {
        next_events(&engine, &mut events, deadline);
        if let Event::Closed { conn: c } = events.pop_front().unwrap() {
            assert_eq!(c, conn);
            break;
        }
    }
    let got = reader.join().unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes differ or were reordered");
    assert_eq!(engine.unreleased(), 0, "no buffer left pinned");
    assert!(engine.shutdown(Duration::from_secs(1)));
}

#[test]
fn auto_mode_on_the_callers_thread_is_byte_exact() {
    transfer(Mode::Auto, 2000, 64 * 1024, 21);
}

#[test]
fn always_mode_on_the_callers_thread_is_byte_exact() {
    transfer(Mode::Always, 300, 200 * 1024, 22);
}

#[test]
fn never_mode_on_the_callers_thread_is_byte_exact() {
    transfer(Mode::Never, 2000, 8 * 1024, 23);
}
