//! Node.js binding of `zerocopy-core`. Converts values only; the logic lives in the core.
//! Every `#[napi]` item has the same signature on every platform, so the generated
//! `binding.d.ts` never depends on the build host.
#![deny(clippy::all)]
// napi-derive registers #[napi] items only in the cdylib build; the test build sees them unused.
#![cfg_attr(test, allow(dead_code))]

mod engine;
mod error;
#[cfg(target_os = "linux")]
mod event_loop;
mod owed;
mod pool;
mod protocol;
mod socket;

use std::cell::RefCell;

use napi::bindgen_prelude::{Float64Array, Uint8Array};
use napi::Env;
use napi_derive::napi;

/// io_uring opcodes the running kernel supports, from `IORING_REGISTER_PROBE`.
#[napi(object)]
pub struct ProbeOps {
    /// `IORING_OP_SEND` (Linux 5.6).
    pub send: bool,
    /// `IORING_OP_SENDMSG` (Linux 5.3).
    pub sendmsg: bool,
    /// `IORING_OP_SEND_ZC`, the zero-copy send (Linux 6.0).
    pub send_zc: bool,
    /// `IORING_OP_SENDMSG_ZC` (Linux 6.1).
    pub sendmsg_zc: bool,
    /// `IORING_OP_SPLICE` (Linux 5.7).
    pub splice: bool,
    /// `IORING_OP_READ_FIXED` (Linux 5.1).
    pub read_fixed: bool,
    /// `IORING_OP_POLL_ADD` (Linux 5.1).
    pub poll_add: bool,
}

/// Why zero-copy sends are unavailable in this process.
#[napi(object)]
pub struct ProbeReason {
    /// `platform` | `disabled-by-env` | `sysctl` | `seccomp` | `enosys` | `setup-failed` | `kernel-too-old`.
    pub code: String,
    /// The errno name `io_uring_setup` failed with (`EPERM`, `ENOSYS`), if that is what failed.
    pub errno: Option<String>,
    /// One sentence: what happened and what would fix it.
    pub message: String,
}

/// What the probe found; computed once per process.
#[napi(object)]
pub struct BindingProbeReport {
    /// `true` when zero-copy sends are used; `false` means every send falls back to plain writes.
    pub supported: bool,
    /// `true` when an io_uring instance could be created at all.
    pub io_uring: bool,
    /// `process.platform` of the addon's build (`'linux'`, `'darwin'`, `'win32'`).
    pub platform: String,
    /// Kernel release (`uname -r`), or `''` where unknown.
    pub kernel: String,
    /// Supported io_uring opcodes (all `false` without io_uring).
    pub ops: ProbeOps,
    /// Notifications can say whether the kernel copied anyway (`IORING_SEND_ZC_REPORT_USAGE`, Linux 6.2).
    pub report_usage: bool,
    /// `kernel.io_uring_disabled` (0, 1, 2) where the sysctl exists.
    pub io_uring_disabled: Option<u32>,
    /// Seccomp mode of this process (0 none, 1 strict, 2 filter) where readable.
    pub seccomp: Option<u32>,
    /// Why `supported` is false; `null` when it is true.
    pub reason: Option<ProbeReason>,
    /// Soft `RLIMIT_MEMLOCK` in bytes; `null` when unlimited. Registered buffers and in-flight
    /// unregistered zero-copy sends are charged to it (unless the process has CAP_IPC_LOCK).
    pub memlock_limit: Option<f64>,
}

/// Probes io_uring support (cached for the life of the process).
#[napi]
pub fn probe() -> BindingProbeReport {
    let r = zerocopy_core::probe();
    BindingProbeReport {
        supported: r.supported,
        io_uring: r.io_uring,
        platform: match r.platform {
            "macos" => "darwin".into(),
            "windows" => "win32".into(),
            other => other.into(),
        },
        kernel: r.kernel.clone(),
        ops: ProbeOps {
            send: r.ops.send,
            sendmsg: r.ops.sendmsg,
            send_zc: r.ops.send_zc,
            sendmsg_zc: r.ops.sendmsg_zc,
            splice: r.ops.splice,
            read_fixed: r.ops.read_fixed,
            poll_add: r.ops.poll_add,
        },
        report_usage: r.report_usage,
        io_uring_disabled: r.io_uring_disabled.map(u32::from),
        seccomp: r.seccomp.map(u32::from),
        reason: r.reason.as_ref().map(|why| ProbeReason {
            code: why.code.as_str().into(),
            errno: why.errno.map(|e| zerocopy_core::error::code(e).into()),
            message: why.message.clone(),
        }),
        memlock_limit: zerocopy_core::buf::memlock_limit().map(|l| l as f64),
    }
}

/// Duplicates the caller's descriptor `fd` (close-on-exec) and returns the new one, which the
/// caller must close: the duplicate keeps naming the same open file whatever happens to `fd`.
/// Throws `EBADF` for a closed descriptor; `ENOSYS` on Windows.
#[napi]
pub fn dup_fd(env: Env, fd: i32) -> napi::Result<i32> {
    zerocopy_core::fd::dup_raw(fd).or_else(|e| error::throw(&env, error::errno("dup", e)))
}

/// Closes a descriptor `dupFd` returned. (Closing it with `fs.closeSync` works too, but Node
/// warns about descriptors it did not open when that runs in a worker thread.)
#[napi]
pub fn close_fd(env: Env, fd: i32) -> napi::Result<()> {
    zerocopy_core::fd::close_raw(fd).or_else(|e| error::throw(&env, error::errno("close", e)))
}

/// Clears `O_NONBLOCK` on `fd` (a file `sendFile` opened non-blocking, so a FIFO could not
/// block the open). Throws `EBADF`; `ENOSYS` where descriptors are not POSIX.
#[napi]
pub fn set_blocking(env: Env, fd: i32) -> napi::Result<()> {
    zerocopy_core::fd::set_blocking(fd).or_else(|e| error::throw(&env, error::errno("fcntl", e)))
}

/// Sends up to `length` bytes of file `file_fd` from `offset` on the non-blocking socket
/// `sock_fd` right now, on this thread, only if the whole range is in the page cache (never
/// waits for the disk or the peer: a socket in blocking mode gets 0); returns the bytes sent,
/// 0 when nothing could go inline. With `head`, those bytes go first, in one segment with the
/// body's first bytes (`MSG_MORE`), and count in the result (below `head.length`: only part of
/// the head went).
/// Sends at most 1 MiB of body per call. Throws the first write's error (`EBADF`, `EPIPE`, ...)
/// when nothing was sent; `ERR_INVALID_ARG_VALUE` for a negative offset or length.
#[napi]
pub fn sendfile_now(
    env: Env,
    sock_fd: i32,
    file_fd: i32,
    offset: i64,
    length: i64,
    head: Option<Uint8Array>,
) -> napi::Result<i64> {
    let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
        return error::throw(
            &env,
            error::coded(
                "ERR_INVALID_ARG_VALUE",
                "sendfileNow: offset and length must be >= 0",
            ),
        );
    };
    let head: &[u8] = head.as_deref().unwrap_or(&[]);
    zerocopy_core::sendfile_now_after(sock_fd, head, file_fd, offset, length)
        .map(|n| n as i64)
        .or_else(|e| error::throw(&env, error::errno("sendfile", e)))
}

/// Reads into `buf` from file `fd` at `offset` right now, on this thread, only what the page
/// cache already holds (`preadv2(RWF_NOWAIT)`: never waits for the disk); returns the bytes
/// read, fewer than `buf.length` when the rest is not cached or the file ends (0 off Linux).
/// Throws the first read's error (`EBADF`, `EISDIR`, `ESPIPE`, ...) when nothing was read.
#[napi]
pub fn read_now(env: Env, fd: i32, mut buf: Uint8Array, offset: i64) -> napi::Result<i64> {
    let Ok(offset) = u64::try_from(offset) else {
        return error::throw(
            &env,
            error::coded("ERR_INVALID_ARG_VALUE", "readNow: offset must be >= 0"),
        );
    };
    // SAFETY: the call is synchronous on the JS thread, which owns `buf`: no JS runs while the
    // kernel writes into it, and nothing else holds the slice past this call.
    let slice = unsafe { buf.as_mut() };
    zerocopy_core::read_now(fd, slice, offset)
        .map(|n| n as i64)
        .or_else(|e| error::throw(&env, error::errno("read", e)))
}

/// `fstat(2)` of `fd` into `out` (8 numbers: device, inode, size, mtime seconds and
/// nanoseconds, ctime seconds and nanoseconds, 1 for a regular file else 0), without making a
/// `Stats` object. Returns 0, or the errno (`EBADF`, `ENOSYS` off Linux) with `out` untouched.
#[napi]
pub fn file_identity(fd: i32, mut out: Float64Array) -> i32 {
    let id = match zerocopy_core::file_identity(fd) {
        Ok(id) => id,
        Err(e) => return e.0,
    };
    // SAFETY: the call is synchronous on the JS thread, which owns `out`: nothing else reads or
    // writes it during the call.
    let out = unsafe { out.as_mut() };
    if out.len() < 8 {
        return 22; // EINVAL
    }
    out[..8].copy_from_slice(&[
        id.dev as f64,
        id.ino as f64,
        id.size as f64,
        id.mtime.0 as f64,
        id.mtime.1 as f64,
        id.ctime.0 as f64,
        id.ctime.1 as f64,
        f64::from(u8::from(id.regular)),
    ]);
    0
}

/// Bytes in socket `fd`'s send queue the peer has not acknowledged yet (`SIOCOUTQ`), or -1
/// when the kernel cannot tell (not a socket, not Linux).
#[napi]
pub fn unacked_bytes(fd: i32) -> i64 {
    zerocopy_core::unacked_bytes(fd).map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

thread_local! {
  static RING: RefCell<Option<zerocopy_core::BlockingRing>> = const { RefCell::new(None) };
}

/// Sends all of `data` on socket `fd` with blocking `IORING_OP_SEND_ZC` calls, waiting for
/// each notification. Blocks the calling thread: for tests and diagnostics, not for transfers.
/// Returns the bytes sent.
#[napi]
pub fn send_zc_sync(env: Env, fd: i32, data: Uint8Array) -> napi::Result<u32> {
    let sent = RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zerocopy_core::BlockingRing::new(8).map_err(|e| error::io("sendZc", e))?);
        }
        let ring = slot.as_mut().expect("ring was just created");
        zerocopy_core::send_all_zc(ring, fd, &data, 1)
            .map(|n| n as u32)
            .map_err(|e| error::io("sendZc", e))
    });
    sent.or_else(|e| error::throw(&env, e))
}

/// Sends what fits of `data` on the stream socket `fd` right now, on this thread, with one
/// non-blocking `send(2)` (`MSG_DONTWAIT | MSG_NOSIGNAL`, as libuv's `uv_try_write`): returns
/// the bytes the kernel took (copied: `data` is free again), 0 when the socket is full, or a
/// negative errno (`-EPIPE`, `-ECONNRESET`, ...) when the send failed with nothing sent (no
/// exception: the caller turns it into the engine's error). Always 0 off Linux.
#[napi]
pub fn send_now(fd: i32, data: Uint8Array) -> i64 {
    match zerocopy_core::send_now(fd, &data) {
        Ok(n) => n as i64,
        Err(e) => -i64::from(e.0),
    }
}
