//! The protocol between the engine's event mailbox (`engine.rs`) and `lib/engine.ts`: the
//! record layout, record kinds, flags, and the engine's own errno-like values. Each is
//! exported as a constant into `binding.d.ts`, so JavaScript reads the numbers from here
//! instead of repeating them.

use napi_derive::napi;

/// Numbers per event record in the `Float64Array` handed to JS: `[kind, conn, id, value, flags]`.
#[napi]
pub const RECORD_STRIDE: u32 = 5;
/// Record kind: a write or file send finished; `value` is bytes sent or a negative errno.
#[napi]
pub const RECORD_DONE: u32 = 1;
/// Record kind: `end()` finished; `value` is 0 or a negative errno.
#[napi]
pub const RECORD_ENDED: u32 = 2;
/// Record kind: the engine let go of the socket (closed or detached); nothing of it is pinned.
#[napi]
pub const RECORD_CLOSED: u32 = 3;
/// Record kind: a file send made progress; `value` is bytes with the kernel so far.
#[napi]
pub const RECORD_PROGRESS: u32 = 4;
/// Done flag: at least one piece went out as `IORING_OP_SEND_ZC`.
#[napi]
pub const FLAG_ZERO_COPY: u32 = 1;
/// Done flag: the kernel reported `IORING_NOTIF_USAGE_ZC_COPIED`.
#[napi]
pub const FLAG_COPIED: u32 = 2;
/// Done flag: the caller aborted the write.
#[napi]
pub const FLAG_ABORTED: u32 = 4;
/// The errno-like value (outside errno range) of a file that ended before its range did.
#[napi]
pub const ERRNO_FILE_SHRANK: i32 = zerocopy_core::file::FILE_SHRANK.0;
/// The errno-like value of a write whose engine's ring failed for good.
#[napi]
pub const ERRNO_ENGINE_FAILED: i32 = zerocopy_core::error::ENGINE_FAILED.0;
