//! Zero-copy off loopback: UDP datagrams sent to a packet sink device, with SEND_ZC (through
//! this crate's [`try_send_zc`]) or plain `IORING_OP_SEND`, one request in flight each.
//!
//! `udp_sink <zc|send> <total-bytes> <datagram-bytes> <dest-ip>` sends from 256 MiB of
//! rotating buffers and prints one JSON line: bytes,
//! wall and CPU seconds, and (for `zc`) how many notifications arrived and how many reported
//! `ZC_COPIED`. Meant to run inside a private network namespace whose only route leads to a
//! device that drops every packet without delivering it locally (the bench harness sets one
//! up with `unshare --net` and an `ifb` device), so nothing ever leaves the namespace. On
//! loopback every notification says the kernel copied; here, none should.

#[cfg(uring)]
fn main() {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    use io_uring::{opcode, types, IoUring};
    use zerocopy_core::{try_send_zc, BlockingRing};

    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: udp_sink <zc|send> <total-bytes> <datagram-bytes> <dest-ip>");
        std::process::exit(2);
    }
    let mode = args[1].as_str();
    let total: u64 = args[2].parse().expect("total-bytes");
    let size: usize = args[3].parse().expect("datagram-bytes");
    let dest: Ipv4Addr = args[4].parse().expect("dest-ip");
    let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
    socket
        .connect(SocketAddrV4::new(dest, 9))
        .expect("connect (is there a route to the sink?)");
    let fd = socket.as_raw_fd();
    // 256 MiB of rotating buffers: data a real sender ships is rarely in the CPU cache, and a
    // copy from cache would hide what a copy costs.
    let nbufs = ((256usize << 20) / size).max(8);
    let bufs: Vec<Vec<u8>> = (0..nbufs)
        .map(|i| vec![(i % 255) as u8 + 1; size])
        .collect();
    let count = total.div_ceil(size as u64);

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let (mut notifications, mut copied) = (0, 0);
    match mode {
        "zc" => {
            let mut ring = BlockingRing::new(8).expect("SEND_ZC unavailable here");
            for i in 0..count {
                let buf = &bufs[i as usize % nbufs];
                let n = try_send_zc(&mut ring, fd, buf, i + 1).expect("SEND_ZC");
                assert_eq!(n, size, "a datagram is sent whole");
            }
            let stats = ring.stats();
            notifications = stats.notifications;
            copied = stats.copied;
        }
        "send" => {
            let mut ring = IoUring::new(8).expect("io_uring");
            for i in 0..count {
                let buf = &bufs[i as usize % nbufs];
                let sqe = opcode::Send::new(types::Fd(fd), buf.as_ptr(), size as u32)
                    .build()
                    .user_data(i + 1);
                // SAFETY: `buf` lives in `bufs` for the whole program, and we wait for this
                // request's completion before the next one, so the kernel is done with it.
                unsafe { ring.submission().push(&sqe).expect("queue has room") };
                ring.submit_and_wait(1).expect("io_uring_enter");
                let cqe = ring.completion().next().expect("a completion");
                assert_eq!(cqe.result(), size as i32, "SEND result");
            }
        }
        other => panic!("unknown mode {other}"),
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{{\"mode\":\"{mode}\",\"bytes\":{},\"secs\":{secs},\"cpuSecs\":{cpu},\"notifications\":{notifications},\"copied\":{copied}}}",
        count * size as u64
    );
}

/// User + system CPU seconds of this process so far.
#[cfg(uring)]
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[cfg(not(uring))]
fn main() {
    eprintln!("udp_sink needs Linux io_uring");
    std::process::exit(2);
}
