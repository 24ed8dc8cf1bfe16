//! The async engine through the real kernel over loopback TCP.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread;
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

fn pair(delay: Duration) -> (TcpStream, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        thread::sleep(delay);
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    (TcpStream::connect(addr).unwrap(), reader)
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
        unsafe { engine.write(conn, id, span, data) };
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
                assert_eq!(done.result, Ok(holder.len()));
                next_id += 1;
            }
            Event::Ended { result, .. } => {
                // The FIN follows the last accepted byte; the last notifications may still be due.
                assert_eq!(result, Ok(()));
                ended = true;
            }
            Event::Closed { .. } => panic!("not closed yet"),
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
