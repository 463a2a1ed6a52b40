//! `cargo xtask lint`: rustfmt, clippy on the host crates, clippy on the eBPF crate for its
//! own target. Runs all three and reports each.
use std::process::Command;

use crate::{
    setup::Setup,
    sh::{self, Result},
};

/// Fails if any of the three fails.
pub fn command() -> Result<u8> {
    let mut setup = Setup::new(false);
    // The host clippy builds procwatch, whose build.rs builds the eBPF object.
    setup.toolchain()?;
    setup.lint_tools()?;
    setup.finish()?;
    let root = sh::workspace_root();

    let mut fmt = sh::cargo();
    fmt.args(["fmt", "--all", "--check"]);
    let mut clippy = sh::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    // From the eBPF crate's directory, with its own target dir so it never waits on the
    // workspace's build lock.
    let mut ebpf = sh::nightly_cargo();
    ebpf.current_dir(root.join(xtask::EBPF_PACKAGE))
        .args(["clippy", "--package", xtask::EBPF_PACKAGE])
        .args(["--target", xtask::BPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(root.join("target/ebpf-clippy"))
        .args(["--", "-D", "warnings"]);

    let steps: [(&str, &mut Command); 3] = [
        ("rustfmt", &mut fmt),
        ("clippy (host crates)", &mut clippy),
        ("clippy (eBPF crate, bpfel-unknown-none)", &mut ebpf),
    ];
    let mut failed = Vec::new();
    for (name, cmd) in steps {
        eprintln!("== {name}");
        if !sh::status(cmd)?.success() {
            eprintln!("-- {name}: FAILED");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        eprintln!("xtask lint: PASSED (rustfmt, clippy host, clippy eBPF)");
        Ok(0)
    } else {
        Err(format!(
            "{} reported problems (see above)",
            failed.join(", ")
        ))
    }
}
