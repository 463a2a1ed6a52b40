//! Whether this kernel runs 32-bit syscalls (`int 0x80`, ia32 emulation) from 64-bit
//! processes: said at startup, because such syscalls never reach the `syscalls:*`
//! tracepoints and are only seen by the raw `sys_enter` probe.
//!
//! Found by trying, not by reading the kernel's config (often absent) or the command line
//! (`ia32_emulation=` overrides a build default neither shows): a forked child makes one
//! harmless 32-bit `getpid`.
use std::fmt;

/// What a 32-bit syscall does on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ia32 {
    /// 32-bit syscalls run: any process can make them.
    Enabled,
    /// The kernel refuses them (built without `CONFIG_IA32_EMULATION`, or booted with
    /// `ia32_emulation=0`): the attack surface does not exist.
    Disabled,
    /// Not x86_64, or the probe could not run.
    Unknown,
}

impl fmt::Display for Ia32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ia32::Enabled => "enabled",
            Ia32::Disabled => "disabled",
            Ia32::Unknown => "unknown",
        })
    }
}

/// Tries one 32-bit `getpid` in a forked child.
#[cfg(target_arch = "x86_64")]
pub fn emulation() -> Ia32 {
    // SAFETY: the child runs only the syscall instructions and _exit (async-signal-safe), so
    // forking a multi-threaded process is fine.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Ia32::Unknown;
    }
    if child == 0 {
        const GETPID_32: u32 = 20;
        let ret: i32;
        // SAFETY: ia32 getpid takes no arguments and touches no memory; ebx is preserved.
        unsafe {
            std::arch::asm!("int 0x80", inlateout("eax") GETPID_32 => ret);
            let code = if ret == libc::getpid() { 0 } else { 1 };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    if unsafe { libc::waitpid(child, &mut status, 0) } != child {
        return Ia32::Unknown;
    }
    // A kernel without ia32 emulation answers int 0x80 with a fault (SIGSEGV) or -ENOSYS.
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ia32::Enabled
    } else {
        Ia32::Disabled
    }
}

/// Not x86_64: no `int 0x80` to ask about.
#[cfg(not(target_arch = "x86_64"))]
pub fn emulation() -> Ia32 {
    Ia32::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_gives_an_answer_and_survives() {
        // Whatever this kernel says, the test process is still here to check it.
        let got = emulation();
        if cfg!(target_arch = "x86_64") {
            assert_ne!(got, Ia32::Unknown);
        }
    }
}
