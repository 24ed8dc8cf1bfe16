//! The probe and the engine's start under a real descriptor shortage: `EMFILE` is reported,
//! not cached, and both work again once descriptors are free. Its own test binary: it lowers
//! the process's `RLIMIT_NOFILE` and uses up every descriptor.
#![cfg(all(target_os = "linux", not(feature = "force-unsupported")))]

use std::fs::File;

use zerocopy_core::{probe, Engine};

/// Sets the soft `RLIMIT_NOFILE`; returns the previous limits.
fn set_soft_nofile(soft: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own; setrlimit reads one we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let new = libc::rlimit {
            rlim_cur: soft.min(old.rlim_max),
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
    }
    old
}

#[test]
fn a_descriptor_shortage_is_reported_and_not_cached() {
    if !zerocopy_core::probe::detect().supported {
        eprintln!("SKIPPED LOUDLY: io_uring SEND_ZC is unavailable here, nothing to run out of");
        return;
    }
    let old = set_soft_nofile(64);
    let mut filler = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
    }
    let during = probe();
    let start = Engine::<Vec<u8>>::start(|_| {})
        .err()
        .map(|e| e.raw_os_error());
    drop(filler);
    // SAFETY: restores the limits read above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0) };

    assert!(!during.supported);
    let reason = during.reason.as_ref().expect("a reason");
    assert_eq!(reason.errno, Some(libc::EMFILE), "{reason:?}");
    assert!(reason.is_transient());
    assert_eq!(
        start,
        Some(Some(libc::EMFILE)),
        "the engine's start fails with EMFILE, not 'unsupported'"
    );

    let after = probe();
    assert!(after.supported, "{:?}", after.reason);
    assert!(std::ptr::eq(after, probe()), "the good answer is cached");
    assert!(Engine::<Vec<u8>>::start(|_| {}).is_ok());
}
