//! Helpers shared by the loopback integration tests.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// A connected loopback pair; the returned thread reads everything after `delay` and returns it.
pub fn pair(delay: Duration) -> (TcpStream, thread::JoinHandle<Vec<u8>>) {
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
