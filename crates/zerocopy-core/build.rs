//! Emits `cfg(uring)` when the real io_uring code is compiled: on Linux, unless the
//! `force-unsupported` feature swaps the non-Linux stub in.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(uring)");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let forced = std::env::var_os("CARGO_FEATURE_FORCE_UNSUPPORTED").is_some();
    if linux && !forced {
        println!("cargo::rustc-cfg=uring");
    }
}
