//! How a socket chooses between plain and zero-copy sends: the [`Policy`] its owner set, and
//! [`wants_zero_copy`], the one rule every piece of a socket's bytes goes through (memory
//! writes in [`crate::queue`], staged file slots in the engine's connection state machine).

/// `Auto` gives up zero-copy on a socket after this many consecutive notifications reported
/// `ZC_COPIED`: the kernel copies anyway there (loopback, veth), and then plain sends coalesced
/// into large vectored requests were measured faster (64 KiB writes: 3.0 vs 1.8 GB/s).
pub const COPIED_STREAK: u32 = 8;
/// While zero-copy is given up, one zero-copy request is tried after this many plain ones.
pub const PROBE_EVERY: u32 = 1024;

/// How a socket chooses between plain and zero-copy sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Zero-copy for writes of at least `threshold` bytes, in requests of `zc_chunk` bytes,
    /// while the kernel reports real zero-copy; plain once it reports copies (see [`COPIED_STREAK`]).
    Auto,
    /// Zero-copy for every write, whatever its size.
    Always,
    /// Never zero-copy: plain (copying) sends, coalesced.
    Never,
}

/// Per-socket sending policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Plain or zero-copy.
    pub mode: Mode,
    /// In `Auto`, writes with at least this many bytes left go out zero-copy.
    pub threshold: usize,
    /// Largest zero-copy request; larger writes are split. On loopback 64 KiB pieces ran
    /// 3.0–3.2 GB/s where 1 MiB pieces ran 1.65 (the kernel copies either way there).
    pub zc_chunk: usize,
    /// Largest plain request (bytes over all its iovecs).
    pub plain_max: usize,
    /// Most writes coalesced into one plain request (iovec count).
    pub max_iov: usize,
    /// Send files through staged reads and sends instead of `sendfile(2)` (which the engine
    /// prefers, and leaves by itself for files it cannot read).
    pub staged_files: bool,
    /// The peer is a loopback address, where the kernel copies every zero-copy send on
    /// delivery (`ZC_COPIED`, measured on every notification): `Auto` starts as if it had
    /// already learned that, plain from the first byte, and probes as it does after learning.
    /// Set by [`crate::engine::Engine::open`] from the socket's peer.
    pub peer_loopback: bool,
}

impl Policy {
    /// `Auto` to a loopback peer: plain from the first byte, as if the copies were learned.
    pub fn starts_plain(&self) -> bool {
        self.mode == Mode::Auto && self.peer_loopback
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Auto,
            threshold: 16 * 1024,
            zc_chunk: 64 * 1024,
            plain_max: 4 * 1024 * 1024,
            max_iov: 64,
            staged_files: false,
            peer_loopback: false,
        }
    }
}

/// What a socket learned about its route that bears on the choice.
#[derive(Clone, Copy, Debug, Default)]
pub struct Route {
    /// Zero-copy is refused for this piece: the kernel said `EOPNOTSUPP` for the socket, or
    /// the last zero-copy piece hit a resource limit (`ENOMEM`/`ENOBUFS`).
    pub refused: bool,
    /// `Auto` found that the kernel copies zero-copy sends anyway here (see [`COPIED_STREAK`]),
    /// and no probe is due.
    pub copies_anyway: bool,
}

/// Whether a piece with `left` bytes still to send goes out zero-copy. The only place the
/// rule lives: the send queue asks it for the head write and for each write it would coalesce,
/// the engine for each staged file slot.
pub fn wants_zero_copy(policy: &Policy, left: usize, route: Route) -> bool {
    !route.refused
        && match policy.mode {
            Mode::Never => false,
            Mode::Always => true,
            Mode::Auto => left >= policy.threshold && !route.copies_anyway,
        }
}
