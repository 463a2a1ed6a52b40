//! `cargo xtask test`: everything the tests need, then every test of the workspace.
use crate::{
    setup::Setup,
    sh::{self, Result},
};

/// Needs root: the eBPF and end-to-end tests load and attach BPF programs.
pub fn command() -> Result<u8> {
    if !sh::is_root() {
        return Err(
            "cargo xtask test must run as root: the eBPF and end-to-end tests load \
                    and attach BPF programs (CAP_BPF, CAP_PERFMON), read tracefs and install \
                    Debian packages. Run it as root, e.g. `sudo -E env \"PATH=$PATH\" cargo \
                    xtask test`."
                .into(),
        );
    }
    let mut setup = Setup::new(false);
    setup.toolchain()?;
    setup.tracefs()?;
    setup.packages()?;
    setup.finish()?;
    // The eBPF crate only builds for its own target (build.rs builds it, `cargo xtask lint`
    // lints it). Built for the host it is a stub whose bin is also called `procwatch`, and it
    // would overwrite target/debug/procwatch, the binary the end-to-end tests run.
    let exclude = ["--exclude", xtask::EBPF_PACKAGE];
    sh::run(
        sh::cargo()
            .args(["build", "--workspace", "--all-targets"])
            .args(exclude),
    )?;
    sh::run(
        sh::cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(exclude),
    )?;
    eprintln!(
        "xtask test: PASSED (cargo build and cargo test --workspace --exclude {})",
        xtask::EBPF_PACKAGE
    );
    Ok(0)
}
