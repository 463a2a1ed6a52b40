//! Shared by the `xtask` binary and by procwatch's `build.rs`: where the toolchain pieces for
//! the eBPF object live, how to check them, and how to build the object. std only, because
//! this is also a build-dependency.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// Toolchain that builds the eBPF crate (`-Z build-std` is nightly-only).
pub const NIGHTLY: &str = "nightly";
/// Target triple of the eBPF object.
pub const BPF_TARGET: &str = "bpfel-unknown-none";
/// LLVM major version bpf-linker must be built for: rustc's own LLVM on these machines.
pub const LLVM_FEATURE: &str = "llvm-22";
/// bpf-linker release line that supports [`LLVM_FEATURE`].
pub const BPF_LINKER_VERSION: &str = "0.13";
/// Name of the eBPF crate and of its binary.
pub const EBPF_PACKAGE: &str = "procwatch-ebpf";

/// A missing or wrong prerequisite, with what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is missing.
    pub what: String,
    /// How `cargo xtask setup` (or the user) fixes it.
    pub fix: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fix: {})", self.what, self.fix)
    }
}

/// `$CARGO_HOME`, defaulting to `~/.cargo`.
pub fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
}

fn home() -> PathBuf {
    env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// A `rustup` command with no toolchain override leaking in from an enclosing cargo.
pub fn rustup() -> Command {
    let mut cmd = Command::new("rustup");
    for key in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

/// Whether the nightly toolchain is installed.
pub fn has_nightly() -> bool {
    rustup()
        .args(["run", NIGHTLY, "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The nightly toolchain's sysroot, if installed.
pub fn nightly_sysroot() -> Option<PathBuf> {
    let out = rustup()
        .args(["run", NIGHTLY, "rustc", "--print", "sysroot"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Whether nightly has the `rust-src` component (needed by `-Z build-std=core`).
pub fn has_rust_src() -> bool {
    nightly_sysroot()
        .map(|s| {
            s.join("lib/rustlib/src/rust/library/core/Cargo.toml")
                .exists()
        })
        .unwrap_or(false)
}

/// Checks that bpf-linker is installed *with the right LLVM feature*: built with the default
/// `llvm-23` feature it links but then fails on real programs ("call to built-in function
/// 'memset' is not supported"), so presence alone is not enough.
pub fn bpf_linker_problem() -> Option<Missing> {
    let bin = cargo_home().join("bin/bpf-linker");
    let fix = format!(
        "cargo xtask setup (installs bpf-linker {BPF_LINKER_VERSION} --no-default-features --features {LLVM_FEATURE})"
    );
    if !bin.exists() {
        return Some(Missing {
            what: format!("{} not found", bin.display()),
            fix,
        });
    }
    let record = cargo_home().join(".crates2.json");
    let Ok(text) = fs::read_to_string(&record) else {
        return Some(Missing {
            what: format!(
                "cannot read {} to check bpf-linker's features",
                record.display()
            ),
            fix,
        });
    };
    // The record is JSON; a string search for the install entry keeps this crate dependency-free.
    let Some(start) = text.find("\"bpf-linker ") else {
        return Some(Missing {
            what: "bpf-linker was not installed by cargo install".into(),
            fix,
        });
    };
    let entry = &text[start..];
    if !entry.starts_with(&format!("\"bpf-linker {BPF_LINKER_VERSION}.")) {
        return Some(Missing {
            what: format!("the installed bpf-linker is not version {BPF_LINKER_VERSION}"),
            fix,
        });
    }
    let entry = &entry[..entry.find('}').unwrap_or(entry.len())];
    let has_feature = entry.contains(&format!("\"{LLVM_FEATURE}\""));
    let no_default = entry.contains("\"no_default_features\":true");
    if !(has_feature && no_default) {
        return Some(Missing {
            what: format!(
                "bpf-linker is installed without `--no-default-features --features {LLVM_FEATURE}`"
            ),
            fix,
        });
    }
    None
}

/// Everything missing for building the eBPF object.
pub fn build_prerequisites() -> Vec<Missing> {
    let mut missing = Vec::new();
    if !has_nightly() {
        missing.push(Missing {
            what: "the nightly Rust toolchain is not installed".into(),
            fix: "cargo xtask setup (rustup toolchain install nightly --profile minimal)".into(),
        });
    } else if !has_rust_src() {
        missing.push(Missing {
            what: "nightly lacks the rust-src component".into(),
            fix: "cargo xtask setup (rustup component add rust-src --toolchain nightly)".into(),
        });
    }
    missing.extend(bpf_linker_problem());
    missing
}

/// Builds the eBPF object with nightly + `-Z build-std=core` into `target_dir` and returns the
/// path of the linked object.
pub fn build_ebpf(workspace_root: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let missing = build_prerequisites();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("  - {m}")).collect();
        return Err(format!(
            "cannot build the eBPF object:\n{}\nRun `cargo xtask setup` once, then build again.",
            list.join("\n")
        ));
    }
    let mut cmd = rustup();
    cmd.args([
        "run",
        NIGHTLY,
        "cargo",
        "build",
        "--release",
        "--package",
        EBPF_PACKAGE,
    ])
    .args([
        "--target",
        BPF_TARGET,
        "-Z",
        "build-std=core",
        "--target-dir",
    ])
    .arg(target_dir)
    .current_dir(workspace_root.join(EBPF_PACKAGE));
    // An enclosing cargo (build.rs) exports variables meant for itself; none of them apply to
    // a nested build for another target.
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_") && k != "CARGO_HOME" || k == "RUSTFLAGS" || k == "OUT_DIR" {
            cmd.env_remove(&key);
        }
    }
    // build.rs stdout is parsed by cargo as directives; keep the nested build's output off it.
    cmd.stdout(std::io::stderr());
    let status = cmd
        .status()
        .map_err(|e| format!("failed to run rustup (is it installed?): {e}"))?;
    if !status.success() {
        return Err(format!("building {EBPF_PACKAGE} failed: {status}"));
    }
    let object = target_dir
        .join(BPF_TARGET)
        .join("release")
        .join(EBPF_PACKAGE);
    if !object.exists() {
        return Err(format!(
            "the build succeeded but {} is missing",
            object.display()
        ));
    }
    Ok(object)
}
