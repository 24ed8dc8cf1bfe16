//! Property tests of the pure state machines: the CQE tracker and the per-socket send queue,
//! under random CQE orders, flags and results. Each runs `ZC_PROPTEST_CASES` cases
//! (default 1,000,000 each; each queue case is a whole
//! random session of pushes, sends, short sends, errors, releases and aborts).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use zerocopy_core::classify::{Tracker, CQE_F_MORE, CQE_F_NOTIF, NOTIF_USAGE_ZC_COPIED};
use zerocopy_core::policy::{Mode, Policy};
use zerocopy_core::queue::{SendQueue, SentOutcome, Span};
use zerocopy_core::Errno;

fn cases(default: u32) -> u32 {
    std::env::var("ZC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One CQE of a scenario: `(user_data, res, flags)`.
type Cqe = (u64, i32, u32);

/// A request's CQEs: transfer result, whether it carries F_MORE, and (when it does) whether
/// its notification arrives and reports ZC_COPIED.
type Request = (i32, bool, Option<bool>);
/// Requests, stray CQEs, and one sort key per CQE (the arrival order).
type Scenario = (Vec<Request>, Vec<Cqe>, Vec<u64>);

fn request_cqes() -> impl Strategy<Value = Request> {
    (
        prop_oneof![
            0i32..1_000_000,
            Just(-libc::EPIPE),
            Just(-libc::ECONNRESET),
            Just(-libc::EOPNOTSUPP),
            Just(-libc::EINVAL),
            Just(-libc::ECANCELED)
        ],
        any::<bool>(),
        proptest::option::of(any::<bool>()),
    )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(request_cqes(), 1..12),
        proptest::collection::vec(
            (
                0u64..40,
                any::<i32>(),
                prop_oneof![Just(0), Just(CQE_F_MORE), Just(CQE_F_NOTIF)],
            ),
            0..4,
        ),
        any::<u64>(),
    )
        .prop_flat_map(|(reqs, strays, _)| {
            // One random sort key per CQE: the order they arrive in.
            let len = reqs
                .iter()
                .map(|r| 1 + usize::from(r.1 && r.2.is_some()))
                .sum::<usize>()
                + strays.len();
            (
                Just(reqs),
                Just(strays),
                proptest::collection::vec(any::<u64>(), len..=len),
            )
        })
}

#[test]
fn tracker_completes_each_request_exactly_once_whatever_the_order() {
    let mut runner = TestRunner::new(Config {
        cases: cases(1_000_000),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&scenario(), |(reqs, strays, keys)| {
            let mut t = Tracker::new();
            let mut cqes: Vec<Cqe> = Vec::new();
            for (i, &(res, more, notif)) in reqs.iter().enumerate() {
                let ud = 100 + i as u64;
                prop_assert!(t.submit(ud));
                cqes.push((ud, res, if more { CQE_F_MORE } else { 0 }));
                if let (true, Some(copied)) = (more, notif) {
                    cqes.push((
                        ud,
                        if copied {
                            NOTIF_USAGE_ZC_COPIED as i32
                        } else {
                            0
                        },
                        CQE_F_NOTIF,
                    ));
                }
            }
            // Strays use user_data below 100: never a tracked request.
            cqes.extend(strays.iter().map(|&(ud, res, flags)| (ud, res, flags)));
            // Any order at all (the kernel orders a notification after its transfer; the
            // tracker must cope even when it does not).
            let mut order: Vec<(u64, Cqe)> = keys.iter().copied().zip(cqes).collect();
            order.sort_by_key(|(k, _)| *k);
            let mut sent: HashMap<u64, u32> = HashMap::new();
            let mut released: HashMap<u64, u32> = HashMap::new();
            for (_, (ud, res, flags)) in order {
                let step = t.on_cqe(ud, res, flags);
                if ud < 100 {
                    prop_assert!(step.stray && step.sent.is_none() && step.released.is_none());
                }
                if let Some(s) = step.sent {
                    prop_assert_eq!(s.user_data, ud);
                    *sent.entry(ud).or_default() += 1;
                }
                if let Some(r) = step.released {
                    prop_assert_eq!(r.user_data, ud);
                    prop_assert!(sent.contains_key(&ud), "released before sent");
                    *released.entry(ud).or_default() += 1;
                }
            }
            for (i, &(_, more, notif)) in reqs.iter().enumerate() {
                let ud = 100 + i as u64;
                prop_assert_eq!(sent.get(&ud).copied().unwrap_or(0), 1, "exactly one Sent");
                let complete = !more || notif.is_some();
                prop_assert_eq!(
                    released.get(&ud).copied().unwrap_or(0),
                    u32::from(complete),
                    "one Released iff its notification came"
                );
                prop_assert_eq!(
                    t.contains(ud),
                    !complete,
                    "pending iff the kernel may still hold the buffer"
                );
            }
            Ok(())
        })
        .unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    PushExternal(usize),
    /// Complete the request in flight: `Ok(fraction of its length)` or an errno.
    Sent(Result<u8, i32>),
    /// Release the n-th unreleased request (copied or not).
    Release(usize, bool),
    Abort(usize),
    CompleteExternal(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..200_000).prop_map(Op::Push),
        1 => (1usize..100_000).prop_map(Op::PushExternal),
        6 => prop_oneof![
            6 => (1u8..=255).prop_map(Ok),
            1 => Just(Err(libc::EAGAIN)),
            1 => Just(Err(libc::EOPNOTSUPP)),
            1 => Just(Err(libc::ENOMEM)),
            1 => Just(Err(libc::ECONNRESET)),
        ].prop_map(Op::Sent),
        5 => (0usize..8, any::<bool>()).prop_map(|(i, c)| Op::Release(i, c)),
        1 => (0usize..20).prop_map(Op::Abort),
        1 => any::<bool>().prop_map(Op::CompleteExternal),
    ]
}

#[test]
fn queue_sends_every_byte_once_in_order_and_finishes_each_write_once() {
    let mut runner = TestRunner::new(Config {
        cases: cases(1_000_000),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(op(), 1..60),
        prop_oneof![Just(Mode::Auto), Just(Mode::Always), Just(Mode::Never)],
    );
    runner
        .run(&strategy, |(ops, mode)| {
            let policy = Policy {
                mode,
                threshold: 16 * 1024,
                zc_chunk: 64 * 1024,
                plain_max: 256 * 1024,
                max_iov: 8,
                staged_files: false,
                peer_loopback: false,
            };
            let mut q = SendQueue::new();
            // Writes live at distinct addresses: write id i at (i + 1) << 32.
            let mut lens: Vec<(usize, bool)> = Vec::new();
            let mut in_flight: Option<(u64, Vec<Span>)> = None;
            let mut unreleased: Vec<u64> = Vec::new();
            let mut wire: Vec<(usize, usize, usize)> = Vec::new(); // (write index, offset, len) runs
            let mut external_running: Option<u64> = None;
            let mut done: HashMap<u64, Result<usize, Errno>> = HashMap::new();
            let mut done_order: Vec<u64> = Vec::new();
            let mut failed = false;
            // The safety rule: which writes each request's spans cover, and which requests the
            // kernel has released. A write may finish only once every request covering its
            // bytes was released (the kernel may read them until then).
            let mut covers: HashMap<u64, Vec<u64>> = HashMap::new();
            let mut released: HashSet<u64> = HashSet::new();
            // After each kernel step: start the file the queue waits at, issue the next request,
            // and record finished writes (each exactly once).
            let advance = |q: &mut SendQueue,
                           in_flight: &mut Option<(u64, Vec<Span>)>,
                           unreleased: &mut Vec<u64>,
                           external_running: &mut Option<u64>,
                           done: &mut HashMap<u64, Result<usize, Errno>>,
                           done_order: &mut Vec<u64>,
                           covers: &mut HashMap<u64, Vec<u64>>,
                           released: &HashSet<u64>|
             -> Result<(), TestCaseError> {
                if external_running.is_none() {
                    if let Some((id, _)) = q.external_at_cursor() {
                        q.start_external(id);
                        *external_running = Some(id);
                    }
                }
                if in_flight.is_none() {
                    if let Some(r) = q.next_request(&policy) {
                        assert!(!r.spans.is_empty() && r.spans.iter().all(|s| s.len > 0));
                        if r.zero_copy {
                            assert_eq!(r.spans.len(), 1);
                        }
                        unreleased.push(r.token);
                        let writes = r.spans.iter().map(|s| ((s.addr >> 32) - 1) as u64).collect();
                        covers.insert(r.token, writes);
                        *in_flight = Some((r.token, r.spans));
                    }
                }
                for d in q.take_done() {
                    for (token, writes) in covers.iter() {
                        prop_assert!(
                            !writes.contains(&d.id) || released.contains(token),
                            "write {} finished ({:?}) while request {} covering its bytes was unreleased",
                            d.id,
                            d.result,
                            token
                        );
                    }
                    prop_assert!(
                        done.insert(d.id, d.result).is_none(),
                        "write {} finished twice",
                        d.id
                    );
                    done_order.push(d.id);
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Push(len) => {
                        let id = lens.len() as u64;
                        if q.push(
                            id,
                            Span {
                                addr: (id as usize + 1) << 32,
                                len,
                            },
                        )
                        .is_ok()
                        {
                            lens.push((len, false));
                        } else {
                            prop_assert!(failed);
                        }
                    }
                    Op::PushExternal(len) => {
                        let id = lens.len() as u64;
                        if q.push_external(id, len).is_ok() {
                            lens.push((len, true));
                        }
                    }
                    Op::Sent(result) => {
                        if let Some((token, spans)) = in_flight.take() {
                            let total: usize = spans.iter().map(|s| s.len).sum();
                            let res = result
                                .map(|f| ((total as u64 * u64::from(f)) / 255).max(1) as u32)
                                .map_err(Errno);
                            if let Ok(n) = res {
                                // Record which bytes went on the wire.
                                let mut left = n as usize;
                                for s in &spans {
                                    let take = left.min(s.len);
                                    if take > 0 {
                                        wire.push(((s.addr >> 32) - 1, s.addr & 0xffff_ffff, take));
                                    }
                                    left -= take;
                                }
                            }
                            if let SentOutcome::Failed(_) = q.on_sent(token, res) {
                                failed = true;
                            }
                        }
                    }
                    Op::Release(i, copied) => {
                        if !unreleased.is_empty() {
                            let token = unreleased.remove(i % unreleased.len());
                            if in_flight.as_ref().is_some_and(|(t, _)| *t == token) {
                                unreleased.push(token); // a request is released only after its transfer
                            } else {
                                released.insert(token);
                                q.on_released(token, Some(copied));
                            }
                        }
                    }
                    Op::Abort(i) => {
                        if !lens.is_empty() {
                            q.abort((i % lens.len()) as u64);
                        }
                    }
                    Op::CompleteExternal(ok) => {
                        if let Some(id) = external_running.take() {
                            let len = lens[id as usize].0;
                            if ok {
                                wire.push((id as usize, 0, len));
                            }
                            q.complete_external(
                                id,
                                if ok { Ok(len) } else { Err(Errno(libc::EIO)) },
                            );
                            if !ok && !q.is_aborted(id) {
                                failed = true;
                            }
                        }
                    }
                }
                advance(
                    &mut q,
                    &mut in_flight,
                    &mut unreleased,
                    &mut external_running,
                    &mut done,
                    &mut done_order,
                    &mut covers,
                    &released,
                )?;
            }
            // Drain: the kernel completes and releases everything; every write must finish.
            for _ in 0..10_000 {
                if let Some((token, spans)) = in_flight.take() {
                    let n: usize = spans.iter().map(|s| s.len).sum();
                    for s in &spans {
                        wire.push(((s.addr >> 32) - 1, s.addr & 0xffff_ffff, s.len));
                    }
                    q.on_sent(token, Ok(n as u32));
                }
                for token in std::mem::take(&mut unreleased) {
                    released.insert(token);
                    q.on_released(token, Some(true));
                }
                if let Some(id) = external_running.take() {
                    let len = lens[id as usize].0;
                    wire.push((id as usize, 0, len));
                    q.complete_external(id, Ok(len));
                }
                advance(
                    &mut q,
                    &mut in_flight,
                    &mut unreleased,
                    &mut external_running,
                    &mut done,
                    &mut done_order,
                    &mut covers,
                    &released,
                )?;
                if q.idle() && external_running.is_none() {
                    break;
                }
            }
            prop_assert!(q.idle(), "the queue drained");
            prop_assert_eq!(done.len(), lens.len(), "every write finished exactly once");
            // Bytes on the wire: per write, offsets 0.. in order, each once, and writes in order.
            let mut next_offset: HashMap<usize, usize> = HashMap::new();
            let mut last_write = 0usize;
            for &(write, off, len) in &wire {
                prop_assert!(
                    write >= last_write,
                    "write {} after write {}: reordered",
                    write,
                    last_write
                );
                last_write = write;
                let expected = next_offset.entry(write).or_insert(0);
                prop_assert_eq!(
                    off,
                    *expected,
                    "write {} bytes from {} out of order or repeated",
                    write,
                    off
                );
                *expected += len;
            }
            // A write reported sent had all of its bytes on the wire.
            for (id, result) in &done {
                if let Ok(n) = result {
                    prop_assert_eq!(*n, lens[*id as usize].0);
                    prop_assert_eq!(
                        next_offset.get(&(*id as usize)).copied().unwrap_or(0),
                        *n,
                        "write {} reported sent",
                        id
                    );
                }
            }
            // Completions in order, except withdrawn writes (reported early).
            let ok_order: Vec<u64> = done_order
                .iter()
                .copied()
                .filter(|id| done[id] != Err(Errno(libc::ECANCELED)))
                .collect();
            let mut sorted = ok_order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(ok_order, sorted, "writes finished out of order");
            let unique: HashSet<u64> = done_order.iter().copied().collect();
            prop_assert_eq!(unique.len(), done_order.len());
            Ok(())
        })
        .unwrap();
}
