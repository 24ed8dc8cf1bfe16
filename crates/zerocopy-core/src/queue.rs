//! The per-socket send queue: which bytes go out next, as what kind of request, and when a
//! user's write is finished. Pure bookkeeping over addresses; it never touches memory or a ring.
//!
//! Rules it enforces (each one is a measured fact about the kernel, see the crate docs):
//! - **One transfer in flight per socket.** Several unlinked sends on one TCP socket reorder
//!   data, so the next request is built only after the previous transfer CQE.
//! - **Never wait for notifications before the next send.** A zero-copy piece keeps its write
//!   pinned until its notification, but the cursor moves on at the transfer CQE.
//! - **Writes complete in order**, like node:net write callbacks, and only once every request
//!   that covered them was released by the kernel; only then may their memory be reused.
//! - **Short sends resume** from the exact byte where the kernel stopped.

use std::collections::{HashMap, VecDeque};

use crate::error::Errno;
use crate::policy::{wants_zero_copy, Mode, Policy, Route, COPIED_STREAK, PROBE_EVERY};

/// A byte range of caller memory, by address. The queue never dereferences it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

/// The next request to submit for this socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Identifies the request in [`SendQueue::on_sent`] and [`SendQueue::on_released`].
    pub token: u64,
    /// `IORING_OP_SEND_ZC` (one span) rather than a plain send.
    pub zero_copy: bool,
    /// The bytes, in stream order.
    pub spans: Vec<Span>,
}

impl Request {
    /// Total bytes of the request.
    pub fn len(&self) -> usize {
        self.spans.iter().map(|s| s.len).sum()
    }

    /// Whether the request has no bytes (never produced by the queue).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A finished user write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// The caller's id for the write.
    pub id: u64,
    /// Bytes sent (the whole write), or why it failed. A failed write may have had a prefix sent.
    pub result: Result<usize, Errno>,
    /// At least one piece went out as `IORING_OP_SEND_ZC`.
    pub zero_copy: bool,
    /// At least one zero-copy piece was reported copied (`IORING_NOTIF_USAGE_ZC_COPIED`).
    pub copied: bool,
    /// The caller asked to abort; `result` says what happened to the bytes anyway.
    pub aborted: bool,
}

#[derive(Debug)]
struct Write {
    id: u64,
    span: Span,
    sent: usize,
    /// Requests covering this write that the kernel has not released yet.
    pending: u32,
    zero_copy: bool,
    copied: bool,
    error: Option<Errno>,
    aborted: bool,
    /// Withdrawn before any byte was handed to the kernel; already reported.
    withdrawn: bool,
    /// Bytes come from elsewhere (a file send run by the engine), not from `span`'s memory.
    external: bool,
}

impl Write {
    fn finished_sending(&self) -> bool {
        self.withdrawn || self.error.is_some() || self.sent == self.span.len
    }
}

#[derive(Debug)]
struct InFlight {
    token: u64,
    zero_copy: bool,
    /// Sequence numbers of the first and last write the request covers.
    first: u64,
    last: u64,
}

/// What a transfer result means for the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentOutcome {
    /// Bytes moved; send the next request if there is one.
    Progress,
    /// The socket cannot do zero-copy (`EOPNOTSUPP`): it now sends plain; nothing was lost.
    ZeroCopyUnsupported,
    /// Zero-copy hit a resource limit (`ENOMEM`/`ENOBUFS`, e.g. RLIMIT_MEMLOCK): the piece
    /// will be resent plain; nothing was lost.
    ZeroCopyNoMemory,
    /// A transient condition (`EAGAIN`, `EINTR`): the same bytes are tried again.
    Retry,
    /// The socket failed: every write not yet fully sent fails with this errno.
    Failed(Errno),
}

/// One socket's queue of user writes and the single request in flight.
#[derive(Debug, Default)]
pub struct SendQueue {
    writes: VecDeque<Write>,
    /// Sequence number of `writes[0]`.
    front_seq: u64,
    /// Sequence number of the first write with bytes left to send.
    cursor: u64,
    in_flight: Option<InFlight>,
    /// Unreleased requests: token → covered write range and whether it was zero-copy.
    unreleased: HashMap<u64, (u64, u64, bool)>,
    /// Consecutive zero-copy notifications that reported `ZC_COPIED`.
    copied_streak: u32,
    /// `Auto` found that this route copies anyway: send plain, probing now and then.
    copies_anyway: bool,
    /// Plain requests sent since zero-copy was last tried while `copies_anyway`.
    since_probe: u32,
    next_token: u64,
    zc_unsupported: bool,
    /// The last zero-copy piece hit a resource limit: send the next request plain.
    plain_once: bool,
    failed: Option<Errno>,
    done: Vec<Done>,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue that already knows its route copies zero-copy sends (a loopback peer):
    /// plain from the start, with the periodic probe of [`PROBE_EVERY`].
    pub fn copying() -> Self {
        SendQueue {
            copies_anyway: true,
            copied_streak: COPIED_STREAK,
            ..Self::default()
        }
    }

    /// Appends a user write. Fails (returning the socket's error) once the socket has failed.
    pub fn push(&mut self, id: u64, span: Span) -> Result<(), Errno> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.writes.push_back(Write {
            id,
            span,
            sent: 0,
            pending: 0,
            zero_copy: false,
            copied: false,
            error: None,
            aborted: false,
            withdrawn: false,
            external: false,
        });
        Ok(())
    }

    /// Appends a write of `len` bytes that the engine produces itself (a file range). The queue
    /// stops at it until [`SendQueue::complete_external`]: nothing after it can overtake it.
    pub fn push_external(&mut self, id: u64, len: usize) -> Result<(), Errno> {
        self.push(id, Span { addr: 0, len })?;
        self.writes.back_mut().expect("just pushed").external = true;
        Ok(())
    }

    /// The external write at the cursor, if the queue is waiting for one: `(id, len)`.
    pub fn external_at_cursor(&mut self) -> Option<(u64, usize)> {
        if self.in_flight.is_some() || self.failed.is_some() {
            return None;
        }
        self.settle_cursor();
        let w = self.writes.get(self.index(self.cursor))?;
        (w.external && !w.finished_sending()).then_some((w.id, w.span.len))
    }

    /// Marks external write `id` as started: from now on it can only be aborted by the engine
    /// stopping it, not withdrawn.
    pub fn start_external(&mut self, id: u64) {
        if let Some(w) = self.writes.iter_mut().find(|w| w.id == id && w.external) {
            w.pending = 1;
        }
    }

    /// Finishes external write `id`: `Ok(bytes)` when all was sent, or its error, which also
    /// fails every later write (the stream broke mid-file), unless the write was aborted.
    pub fn complete_external(&mut self, id: u64, result: Result<usize, Errno>) {
        let Some(w) = self.writes.iter_mut().find(|w| w.id == id && w.external) else {
            return;
        };
        let aborted = w.aborted;
        w.pending = 0;
        match result {
            Ok(n) => w.sent = n.min(w.span.len),
            Err(e) => {
                w.sent = 0;
                w.error = Some(e);
            }
        }
        if let (Err(e), false) = (result, aborted) {
            self.fail(e);
        }
        self.settle_cursor();
        self.collect();
    }

    /// Feeds a zero-copy notification of a request the queue did not build (a file send), so
    /// `Auto` learns from it too.
    pub fn note_notification(&mut self, copied: bool) {
        self.learn(copied);
    }

    fn learn(&mut self, copied: bool) {
        if copied {
            self.copied_streak = self.copied_streak.saturating_add(1);
            if self.copied_streak >= COPIED_STREAK {
                self.copies_anyway = true;
            }
        } else {
            self.copied_streak = 0;
            self.copies_anyway = false;
        }
    }

    fn index(&self, seq: u64) -> usize {
        (seq - self.front_seq) as usize
    }

    fn end_seq(&self) -> u64 {
        self.front_seq + self.writes.len() as u64
    }

    /// Moves the cursor past writes that have nothing left to send.
    fn settle_cursor(&mut self) {
        while self.cursor < self.end_seq()
            && self.writes[self.index(self.cursor)].finished_sending()
        {
            self.cursor += 1;
        }
    }

    /// Whether a transfer is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Bytes queued but not yet accepted by the kernel.
    pub fn unsent_bytes(&self) -> usize {
        self.writes
            .iter()
            .filter(|w| !w.finished_sending())
            .map(|w| w.span.len - w.sent)
            .sum()
    }

    /// No write is waiting to be sent and none is in flight: a FIN may follow.
    pub fn drained(&self) -> bool {
        self.in_flight.is_none() && self.unsent_bytes() == 0
    }

    /// No write is left at all and the kernel holds none of the socket's memory.
    pub fn idle(&self) -> bool {
        self.writes.is_empty() && self.in_flight.is_none() && self.unreleased.is_empty()
    }

    /// Requests the kernel has not released yet (transfer or notification outstanding).
    pub fn unreleased(&self) -> usize {
        self.unreleased.len()
    }

    /// Whether zero-copy was given up for this socket after `EOPNOTSUPP`.
    pub fn zero_copy_unsupported(&self) -> bool {
        self.zc_unsupported
    }

    /// The error the socket failed with, if it did.
    pub fn failed(&self) -> Option<Errno> {
        self.failed
    }

    /// Token of the request in flight, if any (to cancel it).
    pub fn in_flight_token(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.token)
    }

    /// Whether `Auto` switched this socket to plain sends because the kernel reported that it
    /// copies zero-copy sends anyway (`IORING_NOTIF_USAGE_ZC_COPIED`, as on loopback).
    pub fn copies_anyway(&self) -> bool {
        self.copies_anyway
    }

    /// Builds the next request, or `None` when one is in flight or nothing is left to send.
    pub fn next_request(&mut self, policy: &Policy) -> Option<Request> {
        if self.in_flight.is_some() || self.failed.is_some() {
            return None;
        }
        self.settle_cursor();
        if self.cursor >= self.end_seq() {
            return None;
        }
        let first = self.cursor;
        let (head_addr, left) = {
            let head = &self.writes[self.index(first)];
            if head.external {
                return None; // the engine sends it; see `external_at_cursor`
            }
            (head.span.addr + head.sent, head.span.len - head.sent)
        };
        let refused = self.zc_unsupported || std::mem::take(&mut self.plain_once);
        let probe_due = self.since_probe >= PROBE_EVERY;
        let route = Route {
            refused,
            copies_anyway: self.copies_anyway && !probe_due,
        };
        let zero_copy = wants_zero_copy(policy, left, route);
        if zero_copy && self.copies_anyway && policy.mode == Mode::Auto {
            // The probe: one zero-copy request to notice a route that stopped copying.
            self.since_probe = 0;
        }
        let token = self.next_token;
        self.next_token += 1;
        let mut spans = Vec::new();
        let mut last = first;
        if zero_copy {
            spans.push(Span {
                addr: head_addr,
                len: left.min(policy.zc_chunk.max(1)),
            });
        } else {
            // Coalesce plain writes: the head, then following writes while they would also go
            // plain, up to the iovec and byte limits.
            let mut total = 0;
            let mut seq = first;
            while seq < self.end_seq() && spans.len() < policy.max_iov && total < policy.plain_max {
                let w = &self.writes[self.index(seq)];
                if w.finished_sending() {
                    seq += 1;
                    continue;
                }
                if w.external {
                    break;
                }
                let w_left = w.span.len - w.sent;
                let route = Route {
                    refused: self.zc_unsupported,
                    copies_anyway: self.copies_anyway,
                };
                let goes_zc = seq != first && wants_zero_copy(policy, w_left, route);
                if goes_zc {
                    break;
                }
                let len = w_left.min(policy.plain_max - total);
                spans.push(Span {
                    addr: w.span.addr + w.sent,
                    len,
                });
                total += len;
                last = seq;
                seq += 1;
            }
        }
        for seq in first..=last {
            let i = self.index(seq);
            let w = &mut self.writes[i];
            if !w.finished_sending() {
                w.pending += 1;
                w.zero_copy |= zero_copy;
            }
        }
        self.in_flight = Some(InFlight {
            token,
            zero_copy,
            first,
            last,
        });
        if self.copies_anyway && !zero_copy {
            self.since_probe = self.since_probe.saturating_add(1);
        }
        self.unreleased.insert(token, (first, last, zero_copy));
        Some(Request {
            token,
            zero_copy,
            spans,
        })
    }

    /// Feeds the transfer result of the request `token` (the request in flight).
    pub fn on_sent(&mut self, token: u64, result: Result<u32, Errno>) -> SentOutcome {
        let Some(flight) = self.in_flight.take_if(|f| f.token == token) else {
            return SentOutcome::Progress; // not ours: ignore
        };
        match result {
            Ok(n) => {
                let mut n = n as usize;
                for seq in flight.first..=flight.last {
                    if n == 0 {
                        break;
                    }
                    let i = self.index(seq);
                    let w = &mut self.writes[i];
                    if w.finished_sending() {
                        continue;
                    }
                    let take = n.min(w.span.len - w.sent);
                    w.sent += take;
                    n -= take;
                }
                self.settle_cursor();
                SentOutcome::Progress
            }
            Err(e) if flight.zero_copy && e.0 == libc::EOPNOTSUPP => {
                self.zc_unsupported = true;
                SentOutcome::ZeroCopyUnsupported
            }
            Err(e) if flight.zero_copy && (e.0 == libc::ENOMEM || e.0 == libc::ENOBUFS) => {
                self.plain_once = true;
                SentOutcome::ZeroCopyNoMemory
            }
            Err(e) if e.0 == libc::EAGAIN || e.0 == libc::EINTR => SentOutcome::Retry,
            Err(e) => {
                self.fail(e);
                SentOutcome::Failed(e)
            }
        }
    }

    /// Fails every write that still has bytes to send, and any later push.
    pub fn fail(&mut self, e: Errno) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
        for w in self.writes.iter_mut() {
            if !w.finished_sending() {
                w.error = Some(e);
            }
        }
        self.settle_cursor();
        self.collect();
    }

    /// Feeds the release of request `token` (its notification, or its transfer CQE when no
    /// notification was due). `copied` is the notification's `ZC_COPIED` report.
    pub fn on_released(&mut self, token: u64, copied: Option<bool>) {
        let Some((first, last, zero_copy)) = self.unreleased.remove(&token) else {
            return;
        };
        if let (true, Some(copied)) = (zero_copy, copied) {
            self.learn(copied);
        }
        for seq in first..=last {
            if seq < self.front_seq {
                continue;
            }
            let i = self.index(seq);
            let w = &mut self.writes[i];
            if w.pending > 0 && !w.withdrawn {
                w.pending -= 1;
                w.copied |= copied == Some(true);
            }
        }
        self.collect();
    }

    /// Whether write `id` was asked to abort.
    pub fn is_aborted(&self, id: u64) -> bool {
        self.writes.iter().any(|w| w.id == id && w.aborted)
    }

    /// Asks to abort write `id`. If none of its bytes reached the kernel it is withdrawn and
    /// reported at once (`Err(ECANCELED)`, `aborted`); otherwise it cannot be taken back
    /// without corrupting the stream, so it finishes and is reported `aborted` then.
    /// Returns whether the write was withdrawn.
    pub fn abort(&mut self, id: u64) -> bool {
        let Some(w) = self.writes.iter_mut().find(|w| w.id == id && !w.withdrawn) else {
            return false;
        };
        w.aborted = true;
        if w.sent > 0 || w.pending > 0 || w.finished_sending() {
            return false;
        }
        w.withdrawn = true;
        self.done.push(Done {
            id,
            result: Err(Errno(libc::ECANCELED)),
            zero_copy: false,
            copied: false,
            aborted: true,
        });
        self.settle_cursor();
        self.collect();
        true
    }

    /// Moves finished writes at the front into the done list, in write order.
    fn collect(&mut self) {
        while let Some(w) = self.writes.front() {
            if !(w.finished_sending() && w.pending == 0) {
                break;
            }
            let w = self.writes.pop_front().expect("front exists");
            self.front_seq += 1;
            if self.cursor < self.front_seq {
                self.cursor = self.front_seq;
            }
            if w.withdrawn {
                continue; // reported when it was withdrawn
            }
            self.done.push(Done {
                id: w.id,
                result: match w.error {
                    Some(e) => Err(e),
                    None => Ok(w.sent),
                },
                zero_copy: w.zero_copy,
                copied: w.copied,
                aborted: w.aborted,
            });
        }
    }

    /// Gives every write up with `e`, for an engine that can no longer reap completions: the
    /// writes finished so far, then every other one failed, in order. Each comes with whether
    /// the kernel may still hold its memory (a request covered it): such memory must never be
    /// freed, since no release will ever be seen. The queue is empty afterwards.
    pub fn abandon(&mut self, e: Errno) -> Vec<(Done, bool)> {
        let mut out: Vec<(Done, bool)> = self.take_done().into_iter().map(|d| (d, false)).collect();
        self.front_seq += self.writes.len() as u64;
        for w in self.writes.drain(..) {
            if w.withdrawn {
                continue; // reported when it was withdrawn
            }
            let touched = w.sent > 0 || w.pending > 0;
            out.push((
                Done {
                    id: w.id,
                    result: Err(e),
                    zero_copy: w.zero_copy,
                    copied: w.copied,
                    aborted: w.aborted,
                },
                touched,
            ));
        }
        self.cursor = self.front_seq;
        self.in_flight = None;
        self.unreleased.clear();
        self.failed.get_or_insert(e);
        out
    }

    /// Takes the writes finished since the last call, in the order they became final.
    pub fn take_done(&mut self) -> Vec<Done> {
        std::mem::take(&mut self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(addr: usize, len: usize) -> Span {
        Span { addr, len }
    }

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            threshold: 100,
            zc_chunk: 1000,
            plain_max: 10_000,
            max_iov: 4,
            staged_files: false,
            peer_loopback: false,
        }
    }

    #[test]
    fn one_request_in_flight_and_order_of_bytes() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 50)).unwrap();
        q.push(2, span(0x2000, 60)).unwrap();
        let p = policy(Mode::Auto);
        let r = q.next_request(&p).unwrap();
        assert!(!r.zero_copy);
        assert_eq!(r.spans, vec![span(0x1000, 50), span(0x2000, 60)]);
        assert_eq!(q.next_request(&p), None, "one in flight per socket");
        assert_eq!(q.on_sent(r.token, Ok(110)), SentOutcome::Progress);
        q.on_released(r.token, None);
        let done = q.take_done();
        assert_eq!(
            done.iter().map(|d| (d.id, d.result)).collect::<Vec<_>>(),
            vec![(1, Ok(50)), (2, Ok(60))]
        );
        assert!(q.idle());
    }

    #[test]
    fn short_send_resumes_at_the_exact_byte() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 50)).unwrap();
        q.push(2, span(0x2000, 60)).unwrap();
        let p = policy(Mode::Never);
        let r = q.next_request(&p).unwrap();
        q.on_sent(r.token, Ok(70));
        q.on_released(r.token, None);
        assert_eq!(q.take_done()[0].id, 1);
        let r = q.next_request(&p).unwrap();
        assert_eq!(r.spans, vec![span(0x2000 + 20, 40)]);
    }

    #[test]
    fn zero_copy_moves_on_before_the_notification() {
        let mut q = SendQueue::new();
        q.push(1, span(0x10000, 2500)).unwrap();
        let p = policy(Mode::Auto);
        let a = q.next_request(&p).unwrap();
        assert!(a.zero_copy);
        assert_eq!(a.spans, vec![span(0x10000, 1000)]);
        q.on_sent(a.token, Ok(1000));
        // The next piece goes out while the first is still pinned.
        let b = q.next_request(&p).unwrap();
        assert_eq!(b.spans, vec![span(0x10000 + 1000, 1000)]);
        q.on_sent(b.token, Ok(1000));
        let c = q.next_request(&p).unwrap();
        assert_eq!(c.spans, vec![span(0x10000 + 2000, 500)]);
        q.on_sent(c.token, Ok(500));
        assert!(q.drained());
        assert!(
            q.take_done().is_empty(),
            "not done before its notifications"
        );
        q.on_released(b.token, Some(true));
        q.on_released(c.token, Some(false));
        assert!(q.take_done().is_empty());
        q.on_released(a.token, Some(false));
        let d = q.take_done();
        assert_eq!(
            d,
            vec![Done {
                id: 1,
                result: Ok(2500),
                zero_copy: true,
                copied: true,
                aborted: false
            }]
        );
    }

    #[test]
    fn writes_complete_in_order_even_if_released_out_of_order() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 500)).unwrap();
        q.push(2, span(0x2000, 10)).unwrap();
        let p = policy(Mode::Auto);
        let a = q.next_request(&p).unwrap();
        q.on_sent(a.token, Ok(500));
        let b = q.next_request(&p).unwrap();
        assert!(!b.zero_copy);
        q.on_sent(b.token, Ok(10));
        q.on_released(b.token, None);
        assert!(q.take_done().is_empty(), "write 2 waits for write 1");
        q.on_released(a.token, Some(true));
        assert_eq!(
            q.take_done().iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn plain_coalescing_stops_at_a_zero_copy_write_and_iov_limit() {
        let mut q = SendQueue::new();
        for i in 0..6 {
            q.push(i, span(0x1000 * (i as usize + 1), 10)).unwrap();
        }
        q.push(9, span(0x9000, 500)).unwrap();
        let p = policy(Mode::Auto);
        let r = q.next_request(&p).unwrap();
        assert_eq!(r.spans.len(), 4, "max_iov");
        q.on_sent(r.token, Ok(40));
        q.on_released(r.token, None);
        let r = q.next_request(&p).unwrap();
        assert_eq!(r.spans.len(), 2, "stops before the zero-copy write");
        q.on_sent(r.token, Ok(20));
        let r = q.next_request(&p).unwrap();
        assert!(r.zero_copy);
    }

    #[test]
    fn eopnotsupp_switches_to_plain_without_losing_bytes() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 300)).unwrap();
        let p = policy(Mode::Always);
        let r = q.next_request(&p).unwrap();
        assert!(r.zero_copy);
        assert_eq!(
            q.on_sent(r.token, Err(Errno(libc::EOPNOTSUPP))),
            SentOutcome::ZeroCopyUnsupported
        );
        q.on_released(r.token, Some(true));
        let r2 = q.next_request(&p).unwrap();
        assert!(!r2.zero_copy);
        assert_eq!(
            r2.spans,
            vec![span(0x1000, 300)],
            "resent from the first byte"
        );
        q.on_sent(r2.token, Ok(300));
        q.on_released(r2.token, None);
        let d = q.take_done();
        assert_eq!(d[0].result, Ok(300));
        assert!(q.zero_copy_unsupported());
    }

    #[test]
    fn enomem_resends_the_piece() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 300)).unwrap();
        let p = policy(Mode::Auto);
        let r = q.next_request(&p).unwrap();
        assert_eq!(
            q.on_sent(r.token, Err(Errno(libc::ENOMEM))),
            SentOutcome::ZeroCopyNoMemory
        );
        q.on_released(r.token, None);
        let r2 = q.next_request(&p).unwrap();
        assert!(!r2.zero_copy, "the piece is resent plain");
        assert_eq!(r2.spans, vec![span(0x1000, 300)]);
    }

    #[test]
    fn failure_fails_unsent_writes_after_pinned_ones_release() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 200)).unwrap();
        q.push(2, span(0x2000, 200)).unwrap();
        q.push(3, span(0x3000, 50)).unwrap();
        let p = policy(Mode::Auto);
        let a = q.next_request(&p).unwrap();
        q.on_sent(a.token, Ok(200));
        let b = q.next_request(&p).unwrap();
        q.on_sent(b.token, Err(Errno(libc::ECONNRESET)));
        assert_eq!(q.push(4, span(0x4000, 1)), Err(Errno(libc::ECONNRESET)));
        assert!(q.take_done().is_empty(), "write 1 is still pinned");
        q.on_released(b.token, Some(true));
        q.on_released(a.token, Some(true));
        let d = q.take_done();
        assert_eq!(
            d.iter().map(|d| (d.id, d.result)).collect::<Vec<_>>(),
            vec![
                (1, Ok(200)),
                (2, Err(Errno(libc::ECONNRESET))),
                (3, Err(Errno(libc::ECONNRESET)))
            ]
        );
        assert!(q.idle());
    }

    #[test]
    fn abort_withdraws_untouched_writes_only() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 500)).unwrap();
        q.push(2, span(0x2000, 500)).unwrap();
        let p = policy(Mode::Auto);
        let a = q.next_request(&p).unwrap();
        assert!(!q.abort(1), "in flight: cannot be withdrawn");
        assert!(q.abort(2));
        assert_eq!(
            q.take_done()[0],
            Done {
                id: 2,
                result: Err(Errno(libc::ECANCELED)),
                zero_copy: false,
                copied: false,
                aborted: true
            }
        );
        q.on_sent(a.token, Ok(500));
        assert_eq!(
            q.next_request(&p),
            None,
            "the withdrawn write is never sent"
        );
        q.on_released(a.token, Some(false));
        let d = q.take_done();
        assert_eq!((d[0].id, d[0].result, d[0].aborted), (1, Ok(500), true));
        assert!(q.idle());
    }

    #[test]
    fn retry_resends_the_same_bytes() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 50)).unwrap();
        let p = policy(Mode::Never);
        let r = q.next_request(&p).unwrap();
        assert_eq!(
            q.on_sent(r.token, Err(Errno(libc::EAGAIN))),
            SentOutcome::Retry
        );
        q.on_released(r.token, None);
        assert_eq!(q.next_request(&p).unwrap().spans, r.spans);
    }

    #[test]
    fn auto_turns_plain_when_the_kernel_copies_anyway_and_probes_back() {
        let mut q = SendQueue::new();
        let p = policy(Mode::Auto);
        let send_one = |q: &mut SendQueue, id: u64, copied: bool| {
            q.push(id, span(0x1000, 500)).unwrap();
            let r = q.next_request(&p).unwrap();
            q.on_sent(r.token, Ok(500));
            q.on_released(r.token, r.zero_copy.then_some(copied));
            r.zero_copy
        };
        for id in 0..COPIED_STREAK as u64 {
            assert!(send_one(&mut q, id, true));
        }
        assert!(q.copies_anyway());
        let mut zc = 0;
        for id in 100..100 + PROBE_EVERY as u64 + 1 {
            zc += u32::from(send_one(&mut q, id, true));
        }
        assert_eq!(zc, 1, "one probe per PROBE_EVERY plain requests");
        // A probe that is not copied turns zero-copy back on.
        for id in 5000..5000 + PROBE_EVERY as u64 + 1 {
            if send_one(&mut q, id, false) {
                break;
            }
        }
        assert!(!q.copies_anyway());
        assert!(send_one(&mut q, 9999, false));
    }

    #[test]
    fn external_writes_block_later_writes_until_completed() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 10)).unwrap();
        q.push_external(2, 5000).unwrap();
        q.push(3, span(0x3000, 10)).unwrap();
        let p = policy(Mode::Never);
        let r = q.next_request(&p).unwrap();
        assert_eq!(
            r.spans,
            vec![span(0x1000, 10)],
            "coalescing stops at the file"
        );
        assert_eq!(q.external_at_cursor(), None, "busy");
        q.on_sent(r.token, Ok(10));
        q.on_released(r.token, None);
        assert_eq!(q.next_request(&p), None, "write 3 waits behind the file");
        assert_eq!(q.external_at_cursor(), Some((2, 5000)));
        q.complete_external(2, Ok(5000));
        let r = q.next_request(&p).unwrap();
        assert_eq!(r.spans, vec![span(0x3000, 10)]);
        q.on_sent(r.token, Ok(10));
        q.on_released(r.token, None);
        let ids: Vec<_> = q.take_done().iter().map(|d| (d.id, d.result)).collect();
        assert_eq!(ids, vec![(1, Ok(10)), (2, Ok(5000)), (3, Ok(10))]);
    }

    #[test]
    fn a_failed_external_write_fails_the_rest() {
        let mut q = SendQueue::new();
        q.push_external(1, 100).unwrap();
        q.push(2, span(0x2000, 10)).unwrap();
        assert_eq!(q.external_at_cursor(), Some((1, 100)));
        q.complete_external(1, Err(Errno(libc::EIO)));
        let d = q.take_done();
        assert_eq!(
            d.iter().map(|d| d.result).collect::<Vec<_>>(),
            vec![Err(Errno(libc::EIO)), Err(Errno(libc::EIO))]
        );
    }

    #[test]
    fn stale_tokens_are_ignored() {
        let mut q = SendQueue::new();
        q.push(1, span(0x1000, 50)).unwrap();
        let r = q.next_request(&policy(Mode::Never)).unwrap();
        assert_eq!(q.on_sent(r.token + 7, Ok(50)), SentOutcome::Progress);
        assert!(q.busy());
        q.on_released(r.token + 7, None);
        assert_eq!(q.unreleased(), 1);
    }
}
