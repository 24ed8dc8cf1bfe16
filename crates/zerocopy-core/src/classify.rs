//! What a completion queue entry (CQE) means for one send request. Pure code, no ring.
//!
//! `IORING_OP_SEND_ZC` completes in two steps (see `io_uring_prep_send_zc(3)`):
//! 1. the *transfer* CQE: `res` is the byte count or `-errno`; `IORING_CQE_F_MORE` is set
//!    exactly when a second CQE will follow. Since 6.0.y/6.1 errors after prep
//!    (`-ECONNRESET`, `-EOPNOTSUPP`, `-ECANCELED`, `-EFAULT`) still carry `F_MORE`; some early
//!    `-EINVAL`/`-ENOMEM` do not. So the flag decides, never `res`.
//! 2. the *notification* CQE: same `user_data`, `IORING_CQE_F_NOTIF`; only now has the kernel
//!    let go of the buffer. With `IORING_SEND_ZC_REPORT_USAGE` its `res` carries
//!    `IORING_NOTIF_USAGE_ZC_COPIED` (bit 31, a flag, not an errno) when the kernel copied.
//!
//! Plain `IORING_OP_SEND` requests go through the same [`Tracker`]: their single CQE is a
//! transfer without `F_MORE`, which sends and releases at once.

use std::collections::HashMap;

use crate::error::Errno;

/// `IORING_CQE_F_MORE`: another CQE for this `user_data` will follow.
pub const CQE_F_MORE: u32 = 1 << 1;
/// `IORING_CQE_F_NOTIF`: this CQE is a SEND_ZC notification.
pub const CQE_F_NOTIF: u32 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: in a notification's `res`, the kernel copied the data.
pub const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// Whether a notification CQE will follow this one (`IORING_CQE_F_MORE`).
pub fn more(flags: u32) -> bool {
    flags & CQE_F_MORE != 0
}

/// Whether this CQE is a zero-copy notification (`IORING_CQE_F_NOTIF`).
pub fn notif(flags: u32) -> bool {
    flags & CQE_F_NOTIF != 0
}

/// One CQE, decoded without any state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cqe {
    /// The transfer CQE: bytes sent or the error, and whether a notification follows.
    Transfer {
        /// Bytes the kernel took (may be fewer than asked: a short send), or the error.
        result: Result<u32, Errno>,
        /// `IORING_CQE_F_MORE`: the buffer is still held until a notification arrives.
        notif_follows: bool,
    },
    /// The notification CQE: the kernel no longer references the buffer.
    Notif {
        /// `IORING_NOTIF_USAGE_ZC_COPIED`: the kernel copied the bytes after all.
        copied: bool,
    },
}

/// Decodes one CQE's `res` and `flags`.
pub fn classify(res: i32, flags: u32) -> Cqe {
    if notif(flags) {
        // `res` is a usage bitmask here, not a byte count or an errno.
        Cqe::Notif {
            copied: (res as u32) & NOTIF_USAGE_ZC_COPIED != 0,
        }
    } else {
        Cqe::Transfer {
            result: if res < 0 {
                Err(Errno::from_res(res))
            } else {
                Ok(res as u32)
            },
            notif_follows: more(flags),
        }
    }
}

/// The transfer result of one request, reported exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The request's `user_data`.
    pub user_data: u64,
    /// Bytes sent or the error.
    pub result: Result<u32, Errno>,
}

/// The kernel let go of one request's buffer; reported exactly once, never before [`Sent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Released {
    /// The request's `user_data`.
    pub user_data: u64,
    /// `Some(copied)` when a notification released it; `None` when no notification was due.
    pub copied: Option<bool>,
}

/// What one CQE did to the tracked requests. Both fields can be set by one CQE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// A request's transfer finished (the next send on its socket may go).
    pub sent: Option<Sent>,
    /// A request's buffer is free (its write may resolve, its memory may be dropped).
    pub released: Option<Released>,
    /// The CQE belongs to no tracked request, or repeats one already seen; it changed nothing.
    pub stray: bool,
}

impl Step {
    /// A CQE that changed nothing.
    pub const STRAY: Step = Step {
        sent: None,
        released: None,
        stray: true,
    };
}

/// Where one request is between its submission and its release: the per-request record a
/// driver keeps under the request's `user_data` (tokio-uring's per-operation `Lifecycle`).
/// [`OpState::on_cqe`] moves it on; [`Tracker`] is a map of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Submitted; nothing seen yet. `early` is a notification that overtook its transfer CQE.
    AwaitTransfer {
        /// The early notification's `copied`, if one came.
        early: Option<bool>,
    },
    /// Transfer seen with `F_MORE`; the buffer is pinned until the notification.
    AwaitNotif,
}

impl OpState {
    /// A request just submitted.
    pub const SUBMITTED: OpState = OpState::AwaitTransfer { early: None };

    /// Feeds one CQE of request `user_data`, in this state. Returns the next state (`None`
    /// once the kernel released the request: drop its record) and what the CQE did. A repeated
    /// transfer CQE or notification is `stray` and leaves the state as it was.
    pub fn on_cqe(self, user_data: u64, res: i32, flags: u32) -> (Option<OpState>, Step) {
        match (self, classify(res, flags)) {
            (
                OpState::AwaitTransfer { early },
                Cqe::Transfer {
                    result,
                    notif_follows,
                },
            ) => {
                let sent = Some(Sent { user_data, result });
                if notif_follows && early.is_none() {
                    let step = Step {
                        sent,
                        ..Step::default()
                    };
                    (Some(OpState::AwaitNotif), step)
                } else {
                    // No notification is due, or it already came (out of order).
                    let step = Step {
                        sent,
                        released: Some(Released {
                            user_data,
                            copied: early,
                        }),
                        stray: false,
                    };
                    (None, step)
                }
            }
            (OpState::AwaitTransfer { early: None }, Cqe::Notif { copied }) => {
                // The kernel orders a notification after its transfer CQE; keep it anyway so
                // the buffer is released only once both are in.
                let next = OpState::AwaitTransfer {
                    early: Some(copied),
                };
                (Some(next), Step::default())
            }
            (OpState::AwaitNotif, Cqe::Notif { copied }) => {
                let step = Step {
                    released: Some(Released {
                        user_data,
                        copied: Some(copied),
                    }),
                    ..Step::default()
                };
                (None, step)
            }
            // A second transfer CQE, or a second notification: nothing to do with it.
            (OpState::AwaitTransfer { early: Some(_) }, Cqe::Notif { .. })
            | (OpState::AwaitNotif, Cqe::Transfer { .. }) => (Some(self), Step::STRAY),
        }
    }
}

/// Per-request state machine for send requests, keyed by `user_data`: a map of [`OpState`]s,
/// for drivers that keep nothing else per request.
///
/// Guarantees, whatever order or flags CQEs arrive with: each tracked request yields exactly
/// one [`Sent`] and exactly one [`Released`], `Released` never before `Sent`, and a CQE for an
/// unknown `user_data` is reported as stray instead of being taken for another request's.
#[derive(Debug, Default)]
pub struct Tracker {
    pending: HashMap<u64, OpState>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a request. Returns `false` (and changes nothing) if `user_data` is
    /// already in flight: two live requests must never share a key.
    pub fn submit(&mut self, user_data: u64) -> bool {
        if self.pending.contains_key(&user_data) {
            return false;
        }
        self.pending.insert(user_data, OpState::SUBMITTED);
        true
    }

    /// Number of requests whose buffer the kernel may still hold.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether `user_data` is still tracked (its buffer may be held).
    pub fn contains(&self, user_data: u64) -> bool {
        self.pending.contains_key(&user_data)
    }

    /// Feeds one CQE.
    pub fn on_cqe(&mut self, user_data: u64, res: i32, flags: u32) -> Step {
        let Some(state) = self.pending.get(&user_data).copied() else {
            return Step::STRAY;
        };
        let (next, step) = state.on_cqe(user_data, res, flags);
        match next {
            Some(next) => self.pending.insert(user_data, next),
            None => self.pending.remove(&user_data),
        };
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPIED: i32 = NOTIF_USAGE_ZC_COPIED as i32;

    #[test]
    fn transfer_with_more_holds_the_buffer_until_notif() {
        let mut t = Tracker::new();
        assert!(t.submit(7));
        let s = t.on_cqe(7, 65536, CQE_F_MORE);
        assert_eq!(
            s.sent,
            Some(Sent {
                user_data: 7,
                result: Ok(65536)
            })
        );
        assert_eq!(s.released, None);
        assert!(t.contains(7));
        let s = t.on_cqe(7, 0, CQE_F_NOTIF);
        assert_eq!(s.sent, None);
        assert_eq!(
            s.released,
            Some(Released {
                user_data: 7,
                copied: Some(false)
            })
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn transfer_without_more_releases_at_once() {
        let mut t = Tracker::new();
        t.submit(1);
        let s = t.on_cqe(1, -libc::EINVAL, 0);
        assert_eq!(s.sent.unwrap().result, Err(Errno(libc::EINVAL)));
        assert_eq!(
            s.released,
            Some(Released {
                user_data: 1,
                copied: None
            })
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn notif_reports_zc_copied_bit_not_an_errno() {
        assert_eq!(classify(COPIED, CQE_F_NOTIF), Cqe::Notif { copied: true });
        assert_eq!(classify(0, CQE_F_NOTIF), Cqe::Notif { copied: false });
        // The same bits on a transfer CQE are a (negative) errno-range value.
        assert!(matches!(
            classify(COPIED, 0),
            Cqe::Transfer { result: Err(_), .. }
        ));
    }

    #[test]
    fn errors_with_more_are_followed_by_a_notification() {
        for errno in [
            libc::EOPNOTSUPP,
            libc::ECONNRESET,
            libc::ECANCELED,
            libc::EFAULT,
        ] {
            let mut t = Tracker::new();
            t.submit(3);
            let s = t.on_cqe(3, -errno, CQE_F_MORE);
            assert_eq!(s.sent.unwrap().result, Err(Errno(errno)));
            assert_eq!(
                s.released, None,
                "errno {errno} must keep the buffer pinned"
            );
            let s = t.on_cqe(3, COPIED, CQE_F_NOTIF);
            assert_eq!(
                s.released,
                Some(Released {
                    user_data: 3,
                    copied: Some(true)
                })
            );
        }
    }

    #[test]
    fn notif_for_unknown_user_data_is_stray() {
        let mut t = Tracker::new();
        t.submit(1);
        let s = t.on_cqe(2, 0, CQE_F_NOTIF);
        assert!(s.stray);
        assert_eq!((s.sent, s.released), (None, None));
        assert!(t.contains(1));
    }

    #[test]
    fn interleaved_requests_are_keyed_by_user_data() {
        let mut t = Tracker::new();
        t.submit(10);
        t.submit(11);
        assert_eq!(t.on_cqe(11, 5, CQE_F_MORE).sent.unwrap().user_data, 11);
        assert_eq!(t.on_cqe(10, 9, CQE_F_MORE).sent.unwrap().user_data, 10);
        assert_eq!(t.on_cqe(10, 0, CQE_F_NOTIF).released.unwrap().user_data, 10);
        assert!(t.contains(11));
        assert_eq!(
            t.on_cqe(11, COPIED, CQE_F_NOTIF).released.unwrap().copied,
            Some(true)
        );
    }

    #[test]
    fn notif_before_transfer_is_held_until_the_transfer() {
        let mut t = Tracker::new();
        t.submit(5);
        let s = t.on_cqe(5, COPIED, CQE_F_NOTIF);
        assert_eq!(s, Step::default());
        let s = t.on_cqe(5, 100, CQE_F_MORE);
        assert_eq!(s.sent.unwrap().result, Ok(100));
        assert_eq!(
            s.released,
            Some(Released {
                user_data: 5,
                copied: Some(true)
            })
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn duplicate_cqes_are_stray() {
        let mut t = Tracker::new();
        t.submit(4);
        t.on_cqe(4, 1, CQE_F_MORE);
        assert!(t.on_cqe(4, 1, CQE_F_MORE).stray);
        t.on_cqe(4, 0, CQE_F_NOTIF);
        assert!(t.on_cqe(4, 0, CQE_F_NOTIF).stray);
    }

    #[test]
    fn reusing_a_live_user_data_is_refused() {
        let mut t = Tracker::new();
        assert!(t.submit(9));
        assert!(!t.submit(9));
        t.on_cqe(9, 1, 0);
        assert!(t.submit(9), "free again once released");
    }

    #[test]
    fn flag_decoders() {
        assert!(more(CQE_F_MORE) && !more(CQE_F_NOTIF));
        assert!(notif(CQE_F_NOTIF) && !notif(CQE_F_MORE));
    }
}
