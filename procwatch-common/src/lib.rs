//! The wire format between procwatch's eBPF programs and its userspace sensor.
//!
//! Every record in the ring buffer starts with an [`EventHeader`] whose `kind` is one of the
//! [`kind`] constants. All structs are `#[repr(C)]` with explicit padding so the kernel side and
//! the userspace decoder agree byte for byte; userspace never transmutes the `kind` tag, it checks
//! it with `TryFrom<u32>` and the record length before reading anything else.
#![no_std]

/// Length of a task's `comm` as the kernel stores it.
pub const COMM_LEN: usize = 16;
/// Bytes kept of an exec'd filename or an allowlisted executable path.
pub const PATH_LEN: usize = 256;
/// Bytes of argv captured in the kernel (NUL-separated arguments).
pub const ARGS_LEN: usize = 1024;
/// Bytes kept of one argument; the eBPF program reads each argument with this bound.
pub const ARG_LEN: usize = 256;
/// Highest argv offset a new argument may start at; keeps `offset + ARG_LEN` inside [`ARGS_LEN`].
pub const ARGS_START_LIMIT: usize = ARGS_LEN - ARG_LEN;
/// How many ancestors the kill-policy scope check follows.
pub const SCOPE_DEPTH: usize = 16;
/// Most arguments captured from one exec.
pub const MAX_ARGS: usize = 32;
/// Bytes kept of a memfd name (the kernel allows 249).
pub const MEMFD_NAME_LEN: usize = 256;

/// Event kind tags (the first `u32` of every record).
pub mod kind {
    /// `sched_process_exec`, with argv from `sys_enter_execve`/`execveat`.
    pub const EXEC: u32 = 1;
    /// `sched_process_fork` of a new process (not a thread).
    pub const FORK: u32 = 2;
    /// `sched_process_exit` of a whole thread group.
    pub const EXIT: u32 = 3;
    /// `sys_enter_ptrace`.
    pub const PTRACE: u32 = 4;
    /// `sys_enter_connect` to an IPv4 or IPv6 address.
    pub const CONNECT: u32 = 5;
    /// `mprotect`, `pkey_mprotect` or `mmap` asking for memory both writable and executable.
    pub const WX_MEM: u32 = 6;
    /// `sys_enter_memfd_create`.
    pub const MEMFD: u32 = 7;
    /// One past the highest tag: the size of per-kind counter arrays.
    pub const COUNT: u32 = 8;
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The eBPF program sent SIGKILL to the calling process before the syscall ran.
    pub const KILLED: u32 = 1 << 0;
    /// The kill policy applied but `bpf_send_signal` failed.
    pub const KILL_FAILED: u32 = 1 << 1;
    /// The kill policy applied but the process is exempt (allowlisted executable or procwatch's parent).
    pub const EXEMPT: u32 = 1 << 2;
    /// argv did not fit in [`super::ARGS_LEN`] / [`super::MAX_ARGS`] or an argument was cut.
    pub const ARGS_TRUNCATED: u32 = 1 << 3;
    /// argv could not be captured at all (no matching `sys_enter_execve*` was seen).
    pub const ARGS_MISSING: u32 = 1 << 4;
}

/// Which syscall produced a [`WxMemEvent`].
pub mod wx_syscall {
    /// `mprotect(2)`.
    pub const MPROTECT: u32 = 1;
    /// `pkey_mprotect(2)`.
    pub const PKEY_MPROTECT: u32 = 2;
    /// `mmap(2)`.
    pub const MMAP: u32 = 3;
}

/// Indices into the `CONFIG` array map (each slot a `u64`).
pub mod config {
    /// procwatch's own tgid: its events are dropped in the kernel.
    pub const SELF_TGID: u32 = 0;
    /// Non-zero: SIGKILL a process that ptrace-attaches or seizes another.
    pub const KILL_PTRACE: u32 = 1;
    /// Non-zero: SIGKILL a process that asks for W+X memory.
    pub const KILL_WX: u32 = 2;
    /// Number of entries in the exec allowlist map (0 lets exec skip the lookup).
    pub const ALLOW_COUNT: u32 = 3;
    /// procwatch's parent tgid: never killed by the policy.
    pub const PARENT_TGID: u32 = 4;
    /// Offset of `group_dead` in `sched_process_exit`'s record, read from its format file;
    /// 0 when the kernel lacks the field (then a leader's exit stands for the group's).
    pub const EXIT_GROUP_DEAD_OFFSET: u32 = 5;
    /// Non-zero: the kill policy applies only to this process and its descendants
    /// (followed through the kernel's fork records); 0: to every process.
    pub const SCOPE_TGID: u32 = 6;
    /// Number of entries in the uid allowlist map (0 lets the policy skip the lookup).
    pub const ALLOW_UID_COUNT: u32 = 7;
    /// Number of slots.
    pub const LEN: u32 = 8;
}

/// `PROT_WRITE` from `<sys/mman.h>`.
pub const PROT_WRITE: u64 = 0x2;
/// `PROT_EXEC` from `<sys/mman.h>`.
pub const PROT_EXEC: u64 = 0x4;
/// `PTRACE_ATTACH`.
pub const PTRACE_ATTACH: u64 = 16;
/// `PTRACE_SEIZE`.
pub const PTRACE_SEIZE: u64 = 0x4206;
/// `CLONE_THREAD`: a clone with it makes a thread, not a process.
pub const CLONE_THREAD: u64 = 0x0001_0000;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// Common prefix of every record. 48 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// One of the [`kind`] constants.
    pub kind: u32,
    /// Bits from [`flags`].
    pub flags: u32,
    /// Thread id of the task that caused the event.
    pub pid: u32,
    /// Thread-group (process) id of that task.
    pub tgid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
    /// Task comm, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// A successful exec.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Common header; `tgid` is the process after exec.
    pub header: EventHeader,
    /// Parent tgid as learnt from fork events in the kernel; 0 when the fork predates procwatch.
    pub ppid: u32,
    /// Thread id that called exec (differs from `tgid` when a non-leader thread exec'd).
    pub old_pid: u32,
    /// Bytes of `filename` used, without the NUL.
    pub filename_len: u32,
    /// Bytes of `args` used, NUL separators included.
    pub args_len: u32,
    /// Arguments captured.
    pub argc: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Path as given to execve (`bprm->filename`).
    pub filename: [u8; PATH_LEN],
    /// NUL-separated argv.
    pub args: [u8; ARGS_LEN],
}

/// A new process (not a thread) was created.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    /// Common header; the task is the parent.
    pub header: EventHeader,
    /// tgid of the parent.
    pub parent_tgid: u32,
    /// tgid (= pid) of the child.
    pub child_tgid: u32,
}

/// A whole thread group exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    /// Common header; the task is the last thread of the group to exit.
    pub header: EventHeader,
    /// Exit status passed to `exit_group`, when one was seen.
    pub exit_code: i32,
    /// 1 when `exit_code` is known.
    pub exit_code_known: u32,
}

/// A `ptrace(2)` call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtraceEvent {
    /// Common header; the task is the tracer.
    pub header: EventHeader,
    /// `request` argument.
    pub request: u64,
    /// `pid` argument: the tracee.
    pub target_pid: u64,
}

/// A `connect(2)` to an IPv4 or IPv6 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    /// Common header.
    pub header: EventHeader,
    /// Socket file descriptor.
    pub fd: u64,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Destination port in host byte order.
    pub port: u16,
    /// Explicit padding.
    pub _pad: u32,
    /// Destination address: 4 bytes used for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
}

/// A request for memory that is both writable and executable.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WxMemEvent {
    /// Common header.
    pub header: EventHeader,
    /// One of the [`wx_syscall`] constants.
    pub syscall: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Address argument.
    pub start: u64,
    /// Length argument.
    pub len: u64,
    /// `prot` argument.
    pub prot: u64,
    /// `flags` for mmap, `pkey` for pkey_mprotect, 0 for mprotect.
    pub flags: u64,
}

/// A `memfd_create(2)` call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemfdEvent {
    /// Common header.
    pub header: EventHeader,
    /// `flags` argument.
    pub flags: u32,
    /// Bytes of `name` used, without the NUL.
    pub name_len: u32,
    /// Name argument.
    pub name: [u8; MEMFD_NAME_LEN],
}

/// Key of the exec allowlist map: a NUL-padded absolute path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathKey {
    /// Path bytes followed by zeros.
    pub path: [u8; PATH_LEN],
}

/// argv captured at `sys_enter_execve*`, held per thread until `sched_process_exec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingArgs {
    /// Arguments captured.
    pub argc: u32,
    /// Bytes of `args` used.
    pub args_len: u32,
    /// [`flags::ARGS_TRUNCATED`] when something was cut.
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// NUL-separated argv.
    pub args: [u8; ARGS_LEN],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, contain only integers and byte arrays, and have
    // no implicit padding, so every bit pattern is valid.
    unsafe impl aya::Pod for super::PathKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PendingArgs {}
}

/// Byte size of each record kind, indexed by tag; 0 for tags that do not exist.
pub const fn record_size(kind: u32) -> usize {
    match kind {
        kind::EXEC => core::mem::size_of::<ExecEvent>(),
        kind::FORK => core::mem::size_of::<ForkEvent>(),
        kind::EXIT => core::mem::size_of::<ExitEvent>(),
        kind::PTRACE => core::mem::size_of::<PtraceEvent>(),
        kind::CONNECT => core::mem::size_of::<ConnectEvent>(),
        kind::WX_MEM => core::mem::size_of::<WxMemEvent>(),
        kind::MEMFD => core::mem::size_of::<MemfdEvent>(),
        _ => 0,
    }
}

// The layout is a contract with the kernel side: fail the build if a field moves.
const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 48);
    assert!(core::mem::size_of::<ExecEvent>() == 48 + 24 + PATH_LEN + ARGS_LEN);
    assert!(core::mem::size_of::<ForkEvent>() == 56);
    assert!(core::mem::size_of::<ExitEvent>() == 56);
    assert!(core::mem::size_of::<PtraceEvent>() == 64);
    assert!(core::mem::size_of::<ConnectEvent>() == 48 + 32);
    assert!(core::mem::size_of::<WxMemEvent>() == 48 + 40);
    assert!(core::mem::size_of::<MemfdEvent>() == 48 + 8 + MEMFD_NAME_LEN);
};
