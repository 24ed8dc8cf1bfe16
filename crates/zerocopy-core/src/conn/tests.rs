//! Property test of the connection state machine over a model kernel: random sessions of
//! writes, file sends (`sendfile` and staged, files that shrink, that cannot be `sendfile`d,
//! staging that cannot be allocated), aborts, `end`, `close` and `detach` (no write after `end`, `close` or `detach`, as the
//! JavaScript side guarantees), interleaved with
//! completions in random order and with random results (short sends, errors, zero-copy
//! refusals, cancellations, notifications that report copies). `ZC_PROPTEST_CASES` cases
//! (default 200,000; about 30 s). Each session must keep:
//! - **order**: the bytes on the model socket are, write after write in queue order, a prefix of
//!   each write (all of it for a write reported done with `Ok`), each byte once; none after the
//!   FIN, and staging bytes are sent only after a read filled them;
//! - **one transfer in flight** on the socket at a time;
//! - **release before done**: a write's holder comes back only when no request covering its
//!   memory is unreleased; staging memory is dropped only when no request points into it, and
//!   unregistered before;
//! - **every command answered**: one `Done` per write, one `Ended` per `end`, one `Closed`;
//! - **no lost progress**: once the session closes or detaches and the kernel completes what
//!   it holds, the connection goes; it never waits with no request in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use proptest::prelude::*;

use super::{ConnIo, Connection, FileConfig, Request, SendfileLimits, Staged, Staging};
use crate::buf::Region;
use crate::classify::{CQE_F_MORE, CQE_F_NOTIF, NOTIF_USAGE_ZC_COPIED};
use crate::events::{ConnStats, Event};
use crate::policy::{Mode, Policy};
use crate::queue::Span;
use crate::Errno;

/// Memory writes live at `id << 24`: the address says which write a byte belongs to.
const SHIFT: u32 = 24;
const FILES: FileConfig = FileConfig {
    staged: Staged {
        slots: 3,
        slot_size: 32,
    },
    sendfile: SendfileLimits {
        chunk: 40,
        budget: 100,
    },
};

/// A file's descriptor stand-in: its number is the file send's write id.
struct FakeFile(RawFd);

impl AsRawFd for FakeFile {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    AwaitTransfer,
    AwaitNotif,
}

struct Pending {
    req: Request,
    /// The memory a socket send covers: `(addr, len)`.
    spans: Vec<(usize, usize)>,
    stage: Stage,
}

impl Pending {
    fn writes_socket(&self) -> bool {
        !matches!(self.req, Request::Read { .. })
    }
}

struct FileModel {
    /// Bytes the file really has (less than the range asked for: it shrank).
    size: u64,
    sendfile: bool,
}

#[derive(Default)]
struct Model {
    reqs: BTreeMap<u64, Pending>,
    cancels: HashSet<u64>,
    files: HashMap<RawFd, FileModel>,
    /// Whether each next staging allocation succeeds (cycled), and `sendfile` outcomes.
    stage_script: Vec<bool>,
    sendfile_script: Vec<u8>,
    calls: usize,
    draining: bool,
    regions: Vec<(Arc<Region>, Option<u16>, bool)>,
    next_fixed: u16,
    /// What file byte each staging byte holds: address → (write id, file offset).
    staged: HashMap<usize, (u64, u64)>,
    /// The socket's bytes, as (write id, offset in the write's source).
    stream: Vec<(u64, u64)>,
    interrupted: bool,
    fin: bool,
    reset: bool,
    events: Vec<Event<u64>>,
    /// Write id → its memory (`None` for files).
    writes: BTreeMap<u64, Option<(usize, usize)>>,
    /// File send id → the offset its range starts at.
    file_offsets: HashMap<u64, u64>,
    /// Writes refused when queued (the socket had failed): answered at once, out of order.
    refused: HashSet<u64>,
}

impl Model {
    fn next<T: Copy>(script: &[T], calls: &mut usize, default: T) -> T {
        *calls += 1;
        if script.is_empty() {
            default
        } else {
            script[*calls % script.len()]
        }
    }

    fn source(&self, addr: usize) -> (u64, u64) {
        if let Some(&src) = self.staged.get(&addr) {
            return src;
        }
        let id = (addr >> SHIFT) as u64;
        assert!(
            self.writes.get(&id).is_some_and(|w| w.is_some()),
            "sent memory that is neither a write nor read staging: {addr:#x}"
        );
        (id, (addr & ((1 << SHIFT) - 1)) as u64)
    }

    fn append(&mut self, spans: &[(usize, usize)], mut n: usize) {
        assert!(!self.fin, "bytes sent after the FIN");
        for &(addr, len) in spans {
            for a in addr..addr + len.min(n) {
                let src = self.source(a);
                self.stream.push(src);
            }
            n -= len.min(n);
        }
    }

    fn note_refused(&mut self, id: u64) {
        if let Some(Event::Done { done, .. }) = self.events.last() {
            if done.id == id {
                assert!(
                    done.result.is_err(),
                    "a write done as it is queued must be refused"
                );
                self.refused.insert(id);
            }
        }
    }

    fn transfer_pending(&self) -> bool {
        self.reqs
            .values()
            .any(|p| p.writes_socket() && p.stage == Stage::AwaitTransfer)
    }

    /// Staging the connection let go of: nothing may point into it, and it was unregistered.
    fn check_regions(&mut self) {
        let mut gone = Vec::new();
        self.regions.retain(|(region, fixed, unstaged)| {
            if Arc::strong_count(region) > 1 {
                return true;
            }
            gone.push((region.addr(), region.len(), fixed.is_some(), *unstaged));
            false
        });
        for (addr, len, fixed, unstaged) in gone {
            assert!(
                !fixed || unstaged,
                "a registered staging region was dropped still registered"
            );
            for p in self.reqs.values() {
                let inside = |a: usize| a >= addr && a < addr + len;
                let hit = match p.req {
                    Request::Read { addr: a, .. } => inside(a),
                    _ => p.spans.iter().any(|&(a, _)| inside(a)),
                };
                assert!(!hit, "staging dropped while a request points into it");
            }
            self.staged.retain(|a, _| !(*a >= addr && *a < addr + len));
        }
    }
}

impl ConnIo<u64> for Model {
    fn submit(&mut self, ud: u64, req: Request) {
        assert!(!self.reset, "request after the reset");
        let spans = match req {
            Request::SendZc { addr, len, .. } | Request::Send { addr, len } => {
                vec![(addr, len as usize)]
            }
            Request::SendMsg { msg } => {
                // SAFETY: the connection keeps the msghdr and its iovecs until the release.
                let m = unsafe { &*msg };
                (0..m.msg_iovlen)
                    .map(|i| {
                        // SAFETY: as above; `msg_iovlen` iovecs follow `msg_iov`.
                        let v = unsafe { &*m.msg_iov.add(i) };
                        (v.iov_base as usize, v.iov_len)
                    })
                    .collect()
            }
            Request::Read { .. } | Request::PollOut => Vec::new(),
        };
        let pending = Pending {
            req,
            spans,
            stage: Stage::AwaitTransfer,
        };
        if pending.writes_socket() {
            assert!(
                !self.transfer_pending(),
                "two transfers in flight on one socket"
            );
            assert!(!self.fin, "a send after the FIN");
        }
        assert!(
            self.reqs.insert(ud, pending).is_none(),
            "user_data reused while in flight"
        );
    }

    fn cancel(&mut self, target: u64) {
        self.cancels.insert(target);
    }

    fn fixed_index(&self, _addr: usize, _len: usize) -> Option<u16> {
        None
    }

    fn stage(&mut self, len: usize) -> Option<Staging> {
        let ok = self.draining || Model::next(&self.stage_script, &mut self.calls, true);
        if !ok {
            return None;
        }
        let region = Arc::new(Region::new(len).expect("memory"));
        self.next_fixed += 1;
        let fixed = self.next_fixed.is_multiple_of(2).then_some(self.next_fixed);
        self.regions.push((region.clone(), fixed, false));
        Some(Staging { region, fixed })
    }

    fn unstage(&mut self, staging: &Staging) {
        let r = self
            .regions
            .iter_mut()
            .find(|(r, ..)| Arc::ptr_eq(r, &staging.region));
        let r = r.expect("unstaged memory it was given");
        assert!(!r.2, "unstaged twice");
        r.2 = true;
    }

    fn sendfile(&mut self, file: RawFd, offset: u64, len: usize) -> Result<usize, Errno> {
        assert!(
            !self.reset && !self.fin,
            "sendfile after the reset or the FIN"
        );
        assert!(
            !self.transfer_pending(),
            "sendfile while a transfer is in flight"
        );
        let f = &self.files[&file];
        if !f.sendfile {
            return Err(Errno(libc::EINVAL));
        }
        let avail = f.size.saturating_sub(offset) as usize;
        // An interrupted call is retried at once: the next one is not interrupted.
        let choice = if self.draining || std::mem::take(&mut self.interrupted) {
            0
        } else {
            Model::next(&self.sendfile_script, &mut self.calls, 0)
        };
        self.interrupted = choice == 3;
        let n = match choice {
            0 => len,
            1 => len.div_ceil(2),
            2 => return Err(Errno(libc::EAGAIN)),
            3 => return Err(Errno(libc::EINTR)),
            _ => return Err(Errno(libc::EPIPE)),
        }
        .min(avail);
        for off in offset..offset + n as u64 {
            self.stream.push((file as u64, off));
        }
        Ok(n)
    }

    fn shutdown_write(&mut self) -> Result<(), Errno> {
        if self.reset {
            return Err(Errno(libc::EBADF));
        }
        self.fin = true;
        Ok(())
    }

    fn reset(&mut self) {
        assert!(!self.reset, "reset twice");
        self.reset = true;
    }

    fn event(&mut self, event: Event<u64>) {
        if let Event::Done { done, holder, .. } = &event {
            let memory = self.writes.get(&done.id).copied().flatten();
            assert_eq!(
                holder.is_some(),
                memory.is_some(),
                "a write's holder, and only a write's, comes back"
            );
            if let (Some(h), Some((addr, len))) = (holder, memory) {
                assert_eq!(*h, done.id);
                for p in self.reqs.values() {
                    let covers = p.spans.iter().any(|&(a, l)| a < addr + len && addr < a + l);
                    assert!(
                        !covers,
                        "write {} done while a request covering it is unreleased",
                        done.id
                    );
                }
            }
        }
        self.events.push(event);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    SendFile {
        offset: u64,
        len: u64,
        shrink: u64,
        sendfile: bool,
    },
    Abort(usize),
    End,
    Close,
    Detach,
    /// Complete (transfer or notification of) the `k`-th request in flight, with outcome `o`.
    Kernel(usize, u8),
    Pump,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..200).prop_map(Op::Write),
        3 => (0u64..50, 1u64..150, 0u64..4, any::<bool>()).prop_map(|(offset, len, shrink, sendfile)| Op::SendFile {
            offset,
            len,
            // One in four files shrank under the send.
            shrink: if shrink == 0 { len / 2 + 1 } else { 0 },
            sendfile,
        }),
        1 => any::<usize>().prop_map(Op::Abort),
        1 => Just(Op::End),
        1 => Just(Op::Close),
        1 => Just(Op::Detach),
        16 => (any::<usize>(), any::<u8>()).prop_map(|(k, o)| Op::Kernel(k, o)),
        5 => Just(Op::Pump),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (0u8..3, any::<bool>()).prop_map(|(mode, staged_files)| Policy {
        mode: [Mode::Auto, Mode::Always, Mode::Never][mode as usize],
        threshold: 64,
        zc_chunk: 48,
        plain_max: 150,
        max_iov: 3,
        staged_files,
        peer_loopback: false,
    })
}

/// The CQE the model kernel gives request `p` for outcome `o` (random) or success (`None`).
fn complete(model: &mut Model, ud: u64, o: Option<u8>) -> (i32, u32) {
    let p = &model.reqs[&ud];
    if p.stage == Stage::AwaitNotif {
        let copied = o.is_some_and(|o| o % 2 == 1);
        return (
            if copied {
                NOTIF_USAGE_ZC_COPIED as i32
            } else {
                0
            },
            CQE_F_NOTIF,
        );
    }
    let cancelled = model.cancels.contains(&ud) && o.is_some_and(|o| o % 3 != 0);
    let o = o.map(|o| o / 3 % 8);
    match p.req {
        Request::PollOut => (
            if cancelled {
                -libc::ECANCELED
            } else {
                libc::POLLOUT as i32
            },
            0,
        ),
        Request::Read {
            file,
            addr,
            len,
            off,
            ..
        } => {
            let avail = model.files[&file]
                .size
                .saturating_sub(off)
                .min(u64::from(len)) as i32;
            let res = match o {
                Some(1) if avail > 1 => avail / 2,
                Some(2) => -libc::EIO,
                _ => avail,
            };
            for i in 0..res.max(0) as usize {
                model.staged.insert(addr + i, (file as u64, off + i as u64));
            }
            (res, 0)
        }
        Request::SendZc { .. } | Request::Send { .. } | Request::SendMsg { .. } => {
            let zc = matches!(p.req, Request::SendZc { .. });
            let total: usize = p.spans.iter().map(|s| s.1).sum();
            let res = match o {
                _ if cancelled => -libc::ECANCELED,
                Some(1) => total.div_ceil(2) as i32,
                Some(2) => -libc::ECONNRESET,
                Some(3) => -libc::EAGAIN,
                Some(4) if zc => -libc::EOPNOTSUPP,
                Some(5) if zc => -libc::ENOMEM,
                _ => total as i32,
            };
            if res > 0 {
                let spans = p.spans.clone();
                model.append(&spans, res as usize);
            }
            // An early ENOMEM comes without F_MORE, as some kernels send it.
            let more = zc && !(res == -libc::ENOMEM && o == Some(5));
            (res, if more { CQE_F_MORE } else { 0 })
        }
    }
}

/// Delivers one completion of request `ud`; checks the connection agrees on its release.
fn deliver(conn: &mut Connection<u64, FakeFile>, model: &mut Model, ud: u64, o: Option<u8>) {
    let (res, flags) = complete(model, ud, o);
    let released = flags & CQE_F_MORE == 0;
    let p = model.reqs.get_mut(&ud).expect("in flight");
    p.stage = Stage::AwaitNotif;
    if released {
        model.reqs.remove(&ud);
        model.cancels.remove(&ud);
    }
    assert_eq!(
        conn.on_cqe(ud, res, flags),
        released,
        "the release is seen when the kernel gives it"
    );
}

fn session(
    policy: Policy,
    ops: Vec<Op>,
    stage_script: Vec<bool>,
    sendfile_script: Vec<u8>,
    detach_at_end: bool,
) {
    let mut model = Model {
        stage_script,
        sendfile_script,
        ..Model::default()
    };
    let mut conn: Connection<u64, FakeFile> =
        Connection::new(7, policy, FILES, Arc::new(ConnStats::default()));
    let (mut next_id, mut ended, mut closing, mut detaching, mut gone) =
        (1u64, false, false, false, false);
    for op in ops {
        match op {
            Op::Write(len) if !ended && !detaching && !closing => {
                let addr = (next_id as usize) << SHIFT;
                model.writes.insert(next_id, Some((addr, len)));
                conn.write(next_id, Span { addr, len }, next_id, &mut model);
                model.note_refused(next_id);
                next_id += 1;
            }
            Op::SendFile {
                offset,
                len,
                shrink,
                sendfile,
            } if !ended && !detaching && !closing => {
                let size = offset + len - shrink;
                model
                    .files
                    .insert(next_id as RawFd, FileModel { size, sendfile });
                model.writes.insert(next_id, None);
                model.file_offsets.insert(next_id, offset);
                conn.send_file(next_id, FakeFile(next_id as RawFd), offset, len, &mut model);
                model.note_refused(next_id);
                next_id += 1;
            }
            Op::Abort(k) if next_id > 1 => conn.abort(1 + k as u64 % (next_id - 1), &mut model),
            Op::End if !ended => {
                ended = true;
                conn.end();
            }
            Op::Close => {
                closing = true;
                conn.close();
            }
            Op::Detach if !detaching => {
                detaching = true;
                conn.detach();
            }
            Op::Kernel(k, o) if !model.reqs.is_empty() => {
                let ud = *model
                    .reqs
                    .keys()
                    .nth(k % model.reqs.len())
                    .expect("k < len");
                deliver(&mut conn, &mut model, ud, Some(o));
            }
            Op::Pump => gone = conn.pump(&mut model),
            _ => {}
        }
        model.check_regions();
        if gone {
            break;
        }
    }
    // The end of the session: hand the socket back or close it, and let the kernel finish.
    if !gone && !closing && !detaching {
        if detach_at_end {
            conn.detach();
        } else {
            conn.close();
        }
    }
    model.draining = true;
    let mut turns = 0;
    while !gone {
        gone = conn.pump(&mut model);
        model.check_regions();
        if gone {
            break;
        }
        assert!(!conn.needs_pump(), "pump returned with work due");
        let ud = *model
            .reqs
            .keys()
            .next()
            .expect("lost progress: the connection waits with no request in flight");
        deliver(&mut conn, &mut model, ud, None);
        turns += 1;
        assert!(turns < 100_000, "the session does not end");
    }
    drop(conn);
    model.check_regions();
    assert!(model.regions.is_empty(), "staging outlived its connection");
    check_answers(&model, next_id, ended);
    check_stream(&model);
}

/// One `Done` per write, in queue order but for withdrawn ones; one `Ended`; one `Closed`, last.
fn check_answers(model: &Model, next_id: u64, ended: bool) {
    let (mut done, mut in_order) = (Vec::new(), Vec::new());
    let (mut ends, mut closes) = (0, 0);
    for e in &model.events {
        match e {
            Event::Done { done: d, .. } => {
                assert_eq!(closes, 0, "an event after Closed");
                done.push(d.id);
                // A write withdrawn by abort before any of it was sent finishes at once, and so
                // does one refused when queued.
                if !d.aborted && !model.refused.contains(&d.id) {
                    in_order.push(d.id);
                }
            }
            Event::Ended { .. } => ends += 1,
            Event::Closed { conn } => {
                assert_eq!(*conn, 7);
                closes += 1;
            }
            Event::Progress { .. } => {}
        }
    }
    assert!(
        in_order.is_sorted(),
        "writes done in queue order: {in_order:?}"
    );
    done.sort_unstable();
    assert_eq!(done, (1..next_id).collect::<Vec<_>>(), "one Done per write");
    assert_eq!(ends, usize::from(ended), "one Ended per end()");
    assert_eq!(closes, 1, "one Closed");
}

/// The socket's bytes are each write's prefix, in order, once; `Ok` writes are whole.
fn check_stream(model: &Model) {
    let results: HashMap<u64, Result<usize, Errno>> = model
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Done { done, .. } => Some((done.id, done.result)),
            _ => None,
        })
        .collect();
    let mut at = 0;
    for (&id, memory) in &model.writes {
        let start = match memory {
            Some(_) => 0,
            None => model.file_offsets[&id],
        };
        let mut n = 0u64;
        while model.stream.get(at).is_some_and(|s| s.0 == id) {
            assert_eq!(
                model.stream[at].1,
                start + n,
                "write {id}: bytes out of order or twice"
            );
            at += 1;
            n += 1;
        }
        if let Ok(len) = results[&id] {
            assert_eq!(
                n, len as u64,
                "write {id} reported whole but {n} bytes of it went out"
            );
        }
    }
    assert_eq!(
        at,
        model.stream.len(),
        "bytes on the socket that no write explains, or out of order"
    );
}

fn cases(default: u32) -> u32 {
    std::env::var("ZC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(200_000), ..ProptestConfig::default() })]

    #[test]
    fn connection_keeps_order_release_before_done_and_answers_everything(
        policy in policy(),
        ops in prop::collection::vec(op(), 1..80),
        stage_script in prop::collection::vec(prop::bool::weighted(0.9), 0..4),
        sendfile_script in prop::collection::vec(0u8..6, 0..6),
        detach_at_end in any::<bool>(),
    ) {
        session(policy, ops, stage_script, sendfile_script, detach_at_end);
    }
}
