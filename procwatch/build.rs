//! Builds the eBPF object and hands its path to `include_bytes_aligned!` through
//! `PROCWATCH_EBPF_OBJECT`. The object is embedded, so the procwatch binary is self-contained.
//!
//! - `PROCWATCH_EBPF_OBJECT=/path/to/object` embeds a prebuilt object instead of building.
//! - Otherwise the object is built with nightly + bpf-linker (`cargo xtask setup` installs them;
//!   none of this needs root).
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=PROCWATCH_EBPF_OBJECT");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().map(PathBuf::from).unwrap_or_default();
    for dir in [
        "procwatch-ebpf/src",
        "procwatch-ebpf/Cargo.toml",
        "procwatch-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let object = match env::var_os("PROCWATCH_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => {
            let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
            match xtask::build_ebpf(&root, &out_dir.join("ebpf-target")) {
                Ok(object) => object,
                Err(message) => {
                    eprintln!("{message}");
                    std::process::exit(1);
                }
            }
        }
    };
    println!("cargo:rustc-env=PROCWATCH_EBPF_OBJECT={}", object.display());
}
