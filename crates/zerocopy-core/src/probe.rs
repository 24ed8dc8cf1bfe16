//! One-time detection of what this kernel and process allow: io_uring at all, and which
//! send opcodes. Cached process-wide once the answer is for good; says *why* when zero-copy
//! sends are unavailable. A failure that says nothing about the kernel or the process's
//! permissions (out of descriptors or memory: [`Reason::is_transient`]) is not cached: the next
//! call asks the kernel again.

use std::sync::{Mutex, OnceLock};

/// Environment variable that, when set to a non-empty value other than `0`, makes the probe
/// report zero-copy sends as unavailable (reason [`ReasonCode::DisabledByEnv`]), so the package
/// falls back to plain socket writes without touching io_uring.
pub const DISABLE_ENV: &str = "ZEROCOPY_SOCKET_DISABLE";

/// Which io_uring opcodes the kernel reports via `IORING_REGISTER_PROBE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ops {
    /// `IORING_OP_SEND` (5.6).
    pub send: bool,
    /// `IORING_OP_SENDMSG` (5.3).
    pub sendmsg: bool,
    /// `IORING_OP_SEND_ZC` (6.0).
    pub send_zc: bool,
    /// `IORING_OP_SENDMSG_ZC` (6.1).
    pub sendmsg_zc: bool,
    /// `IORING_OP_SPLICE` (5.7).
    pub splice: bool,
    /// `IORING_OP_READ_FIXED` (5.1).
    pub read_fixed: bool,
    /// `IORING_OP_POLL_ADD` (5.1).
    pub poll_add: bool,
}

/// Why zero-copy sends are unavailable, as a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonCode {
    /// Not Linux (or built with the `force-unsupported` stub).
    Platform,
    /// Switched off by the [`DISABLE_ENV`] environment variable.
    DisabledByEnv,
    /// `kernel.io_uring_disabled` forbids ring creation for this process.
    Sysctl,
    /// A seccomp filter makes `io_uring_setup` fail (Docker's and containerd's default profiles).
    Seccomp,
    /// `io_uring_setup` does not exist (`ENOSYS`): kernel without `CONFIG_IO_URING`.
    NoSys,
    /// `io_uring_setup` failed for another reason (`EPERM` without a known cause, `ENOMEM`, ...).
    SetupFailed,
    /// io_uring works but lacks `IORING_OP_SEND_ZC` (kernel before 6.0).
    KernelTooOld,
}

impl ReasonCode {
    /// The code as JS sees it, e.g. `"seccomp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Platform => "platform",
            ReasonCode::DisabledByEnv => "disabled-by-env",
            ReasonCode::Sysctl => "sysctl",
            ReasonCode::Seccomp => "seccomp",
            ReasonCode::NoSys => "enosys",
            ReasonCode::SetupFailed => "setup-failed",
            ReasonCode::KernelTooOld => "kernel-too-old",
        }
    }
}

/// Why the probe said no: a code, the errno seen (if any) and a sentence for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// Stable machine-readable cause.
    pub code: ReasonCode,
    /// The errno `io_uring_setup` returned, when that is what failed.
    pub errno: Option<i32>,
    /// What happened and what would fix it.
    pub message: String,
}

impl Reason {
    /// The failure may go away by itself: `io_uring_setup` ran out of descriptors (`EMFILE`,
    /// `ENFILE`) or memory (`ENOMEM`, `EAGAIN`). Such a report is not cached, and the engine's
    /// start is retried later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.errno,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN)
        )
    }
}

/// Everything the probe learned. `supported` is the one answer most callers need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// Zero-copy sends (`IORING_OP_SEND_ZC`) can be used in this process.
    pub supported: bool,
    /// A ring could be created at all.
    pub io_uring: bool,
    /// `std::env::consts::OS`, e.g. `"linux"`.
    pub platform: &'static str,
    /// Kernel release from `uname(2)`, e.g. `"6.18.0"`; empty where unknown.
    pub kernel: String,
    /// Opcodes the kernel reports as supported (all false when no ring could be made).
    pub ops: Ops,
    /// `IORING_SEND_ZC_REPORT_USAGE` is accepted (6.2+): notifications say whether the kernel copied.
    pub report_usage: bool,
    /// `/proc/sys/kernel/io_uring_disabled` (0, 1 or 2), where the file exists.
    pub io_uring_disabled: Option<u8>,
    /// `Seccomp:` from `/proc/self/status` (0 none, 1 strict, 2 filter), where readable.
    pub seccomp: Option<u8>,
    /// Why `supported` is false; `None` when it is true.
    pub reason: Option<Reason>,
}

/// The answer for good, once there is one.
static CACHE: OnceLock<ProbeReport> = OnceLock::new();
/// Held while a detection runs; keeps the transient answers given so far (one leaked report per
/// distinct answer, so at most a handful, and a caller's reference stays valid).
static TRANSIENT: Mutex<Vec<&'static ProbeReport>> = Mutex::new(Vec::new());

/// The probe result for this process, computed on the first call and cached, unless it failed
/// transiently ([`Reason::is_transient`]): then the next call detects again.
///
/// Concurrent first calls agree: detection runs under a lock, one caller at a time, and a
/// caller that waited finds the cached answer of the one before it.
pub fn probe() -> &'static ProbeReport {
    if let Some(r) = CACHE.get() {
        return r;
    }
    let mut transient = TRANSIENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = CACHE.get() {
        return r;
    }
    let report = detect();
    if !report.reason.as_ref().is_some_and(Reason::is_transient) {
        return CACHE.get_or_init(|| report);
    }
    if let Some(r) = transient.iter().find(|r| ***r == report) {
        return r;
    }
    let r: &'static ProbeReport = Box::leak(Box::new(report));
    transient.push(r);
    r
}

/// Runs the detection without the cache (for tools that want a fresh look).
pub fn detect() -> ProbeReport {
    let env_off = std::env::var(DISABLE_ENV)
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false);
    #[cfg(uring)]
    let mut report = linux::detect(!env_off);
    #[cfg(not(uring))]
    let mut report = crate::stub::detect();
    if env_off && report.reason.is_none() {
        report.supported = false;
        report.reason = Some(Reason {
            code: ReasonCode::DisabledByEnv,
            errno: None,
            message: format!("zero-copy sends switched off by {DISABLE_ENV}"),
        });
    }
    report
}

/// The Linux side of detection: reads sysctl/seccomp state, then makes a throwaway ring.
#[cfg(uring)]
pub(crate) mod linux {
    use super::*;
    use io_uring::{opcode, register::Probe, IoUring};

    /// Kernel release from `uname(2)`.
    pub(crate) fn kernel_release() -> String {
        // SAFETY: `uname` fills the zeroed struct we own; it is only read after success.
        unsafe {
            let mut u: libc::utsname = std::mem::zeroed();
            if libc::uname(&mut u) != 0 {
                return String::new();
            }
            std::ffi::CStr::from_ptr(u.release.as_ptr())
                .to_string_lossy()
                .into_owned()
        }
    }

    fn read_io_uring_disabled() -> Option<u8> {
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn read_seccomp() -> Option<u8> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))?
            .trim()
            .parse()
            .ok()
    }

    /// Explains an `io_uring_setup` failure from its errno and the process's state.
    pub(crate) fn explain_setup_error(
        errno: i32,
        disabled: Option<u8>,
        seccomp: Option<u8>,
    ) -> Reason {
        let filtered = seccomp == Some(2);
        let (code, message) = match errno {
            libc::EPERM if disabled == Some(2) => (
                ReasonCode::Sysctl,
                "io_uring_setup failed with EPERM: kernel.io_uring_disabled=2 turns io_uring off \
                 for every process (sysctl -w kernel.io_uring_disabled=0 to allow it)"
                    .to_string(),
            ),
            libc::EPERM if disabled == Some(1) => (
                ReasonCode::Sysctl,
                "io_uring_setup failed with EPERM: kernel.io_uring_disabled=1 allows io_uring only \
                 to CAP_SYS_ADMIN and members of kernel.io_uring_group"
                    .to_string(),
            ),
            libc::EPERM | libc::ENOSYS if filtered => (
                ReasonCode::Seccomp,
                format!(
                    "io_uring_setup failed with {}: a seccomp filter blocks io_uring in this \
                     process (Docker's and containerd's default profiles do; run with a profile \
                     that allows io_uring_setup/io_uring_enter/io_uring_register)",
                    crate::error::code(errno)
                ),
            ),
            libc::ENOSYS => (
                ReasonCode::NoSys,
                "io_uring_setup failed with ENOSYS: this kernel was built without io_uring \
                 (CONFIG_IO_URING)"
                    .to_string(),
            ),
            _ => (
                ReasonCode::SetupFailed,
                format!(
                    "io_uring_setup failed with {} ({})",
                    crate::error::code(errno),
                    std::io::Error::from_raw_os_error(errno)
                ),
            ),
        };
        Reason {
            code,
            errno: Some(errno),
            message,
        }
    }

    /// Asks the kernel whether it accepts `IORING_SEND_ZC_REPORT_USAGE` (6.2+) by sending one
    /// byte with it on an AF_UNIX socket pair. Kernels that know the flag fail the send later
    /// with `-EOPNOTSUPP` (AF_UNIX has no zero-copy) and a notification; older ones reject the
    /// flag up front with `-EINVAL` and no notification.
    fn accepts_report_usage(ring: &mut IoUring) -> bool {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a two-element array the call fills on success.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return false;
        }
        let byte = [0u8; 1];
        let sqe = crate::op::send_zc(
            fds[0],
            byte.as_ptr(),
            1,
            crate::op::SEND_ZC_REPORT_USAGE,
            None,
            crate::op::ONE_SHOT,
        )
        .user_data(1);
        let mut accepted = false;
        // SAFETY: `byte` lives on this stack frame until the loop below has seen the transfer
        // CQE and, when F_MORE says one follows, the notification; only then may it go.
        let pushed = unsafe { ring.submission().push(&sqe).is_ok() };
        if pushed {
            let mut tracker = crate::classify::Tracker::new();
            tracker.submit(1);
            while tracker.contains(1) {
                match ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(_) => break,
                }
                for cqe in ring.completion() {
                    let step = tracker.on_cqe(cqe.user_data(), cqe.result(), cqe.flags());
                    if let Some(sent) = step.sent {
                        accepted = sent.result != Err(crate::Errno(libc::EINVAL));
                    }
                }
            }
        }
        // SAFETY: both fds were returned by socketpair above and are closed once.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        accepted
    }

    pub(crate) fn detect(allow_ring: bool) -> ProbeReport {
        let mut report = ProbeReport {
            supported: false,
            io_uring: false,
            platform: std::env::consts::OS,
            kernel: kernel_release(),
            ops: Ops::default(),
            report_usage: false,
            io_uring_disabled: read_io_uring_disabled(),
            seccomp: read_seccomp(),
            reason: None,
        };
        if !allow_ring {
            return report; // the caller fills in the env reason
        }
        let mut ring = match IoUring::new(4) {
            Ok(r) => r,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                report.reason = Some(explain_setup_error(
                    errno,
                    report.io_uring_disabled,
                    report.seccomp,
                ));
                return report;
            }
        };
        report.io_uring = true;
        let mut probe = Probe::new();
        if let Err(e) = ring.submitter().register_probe(&mut probe) {
            report.reason = Some(Reason {
                code: ReasonCode::KernelTooOld,
                errno: e.raw_os_error(),
                message: format!("IORING_REGISTER_PROBE failed ({e}); kernel predates 5.6"),
            });
            return report;
        }
        report.ops = Ops {
            send: probe.is_supported(opcode::Send::CODE),
            sendmsg: probe.is_supported(opcode::SendMsg::CODE),
            send_zc: probe.is_supported(opcode::SendZc::CODE),
            sendmsg_zc: probe.is_supported(opcode::SendMsgZc::CODE),
            splice: probe.is_supported(opcode::Splice::CODE),
            read_fixed: probe.is_supported(opcode::ReadFixed::CODE),
            poll_add: probe.is_supported(opcode::PollAdd::CODE),
        };
        if !report.ops.send_zc {
            report.reason = Some(Reason {
                code: ReasonCode::KernelTooOld,
                errno: None,
                message: format!(
                    "kernel {} lacks IORING_OP_SEND_ZC (needs Linux 6.0 or newer)",
                    report.kernel
                ),
            });
            return report;
        }
        report.report_usage = accepts_report_usage(&mut ring);
        report.supported = true;
        report
    }
}

#[cfg(all(test, uring))]
mod tests {
    use super::linux::explain_setup_error;
    use super::*;

    #[test]
    fn probe_is_cached_and_stable() {
        let a = probe();
        let b = probe();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, &detect());
    }

    #[test]
    fn concurrent_first_calls_agree() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| probe() as *const ProbeReport as usize))
            .collect();
        let ptrs: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(ptrs.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn explains_sysctl_and_seccomp() {
        assert_eq!(
            explain_setup_error(libc::EPERM, Some(2), Some(0)).code,
            ReasonCode::Sysctl
        );
        assert_eq!(
            explain_setup_error(libc::EPERM, Some(0), Some(2)).code,
            ReasonCode::Seccomp
        );
        assert_eq!(
            explain_setup_error(libc::ENOSYS, None, Some(0)).code,
            ReasonCode::NoSys
        );
        assert_eq!(
            explain_setup_error(libc::ENOMEM, Some(0), Some(0)).code,
            ReasonCode::SetupFailed
        );
        let r = explain_setup_error(libc::EPERM, Some(0), Some(2));
        assert_eq!(r.errno, Some(libc::EPERM));
        assert!(r.message.contains("seccomp"));
    }

    #[test]
    fn only_resource_shortages_are_transient() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::EAGAIN] {
            assert!(explain_setup_error(errno, Some(0), Some(0)).is_transient());
        }
        for errno in [libc::EPERM, libc::ENOSYS, libc::EINVAL] {
            assert!(!explain_setup_error(errno, Some(0), Some(0)).is_transient());
        }
    }

    #[test]
    fn reason_is_set_exactly_when_unsupported() {
        let r = probe();
        assert_eq!(r.supported, r.reason.is_none(), "{r:?}");
        assert_eq!(r.platform, "linux");
        assert!(!r.kernel.is_empty());
    }
}
