//! `cargo xtask build-ebpf`: the eBPF object on its own, as procwatch's build.rs builds it.
use std::fs;

use crate::{
    setup::Setup,
    sh::{self, Result},
};

/// Checks the toolchain, builds the object into `target/ebpf` and prints its path and size.
pub fn command() -> Result<u8> {
    let mut setup = Setup::new(false);
    setup.toolchain()?;
    setup.finish()?;
    let root = sh::workspace_root();
    let object = xtask::build_ebpf(&root, &root.join("target/ebpf"))?;
    let size = fs::metadata(&object)
        .map_err(|e| format!("cannot stat {}: {e}", object.display()))?
        .len();
    println!("eBPF object: {} ({size} bytes)", object.display());
    Ok(0)
}
