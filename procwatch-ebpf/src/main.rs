//! procwatch's kernel side: tracepoint programs feeding one ring buffer.
//!
//! Tracepoints (classic, BTF-enabled for fork, and the raw `sys_enter` for 32-bit syscalls) only: kprobes and fentry are not available
//! on the machines this runs on (see `shared/notes/ebpf-on-these-machines.md`). Each probe
//! family is a module with entry points of the `x() -> try_x()` shape; every map lives in
//! `maps`, every load-time offset in `offsets`, every kernel-struct read in `task`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod compat;
#[cfg(target_arch = "bpf")]
mod connect;
#[cfg(target_arch = "bpf")]
mod doom;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod file_open;
#[cfg(target_arch = "bpf")]
mod inject;
#[cfg(target_arch = "bpf")]
mod io_uring;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod memfd;
#[cfg(target_arch = "bpf")]
mod offsets;
#[cfg(target_arch = "bpf")]
mod policy;
#[cfg(target_arch = "bpf")]
mod process;
#[cfg(target_arch = "bpf")]
mod ptrace;
#[cfg(target_arch = "bpf")]
mod task;
#[cfg(target_arch = "bpf")]
mod wx_mem;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never called at run time.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "procwatch-ebpf is built for bpfel-unknown-none by procwatch's build.rs \
         (or `cargo xtask build-ebpf`); it does nothing on the host"
    );
}

/// The object carries a license section so the kernel allows GPL-only helpers
/// such as `bpf_probe_read_user_str` and `bpf_send_signal`.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
