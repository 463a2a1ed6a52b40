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
pub const SCOPE_DEPTH: usize = 32;
/// Entries of each kill-policy allowlist map (executables, users).
pub const ALLOW_MAX: u32 = 1024;
/// Most arguments captured from one exec.
pub const MAX_ARGS: usize = 32;
/// Bytes kept of a path the kernel resolved (the executed file, the working directory), built
/// from the dentries themselves: `/`-separated components, root first.
pub const RESOLVED_LEN: usize = 512;
/// Bytes read of one path component (a dentry name; `NAME_MAX` is 255).
pub const NAME_READ: usize = 128;
/// Highest offset a component's `/` may be written at; keeps the read inside [`RESOLVED_LEN`].
pub const RESOLVED_START_LIMIT: usize = RESOLVED_LEN - NAME_READ - 1;
/// Slots of the per-CPU stack a path walk keeps its steps in (a power of two; the walk takes
/// fewer steps, and deeper paths are cut and flagged).
pub const WALK_DEPTH: usize = 64;
/// Bytes kept of a memfd name (the kernel allows 249).
pub const MEMFD_NAME_LEN: usize = 256;

/// Bytes kept of an opened file's path (a longer one is cut and flagged).
pub const FILE_PATH_LEN: usize = 256;
/// Most watched prefixes the kernel matches file opens against.
pub const WATCH_MAX: u32 = 16;
/// Bytes of a watched prefix's head (the part before a `*` component, or all of it).
pub const WATCH_HEAD_LEN: usize = 128;
/// Bytes of a watched prefix's tail (the part after a `*` component, e.g. `/mem`).
pub const WATCH_TAIL_LEN: usize = 16;
/// Distinct (process, path) pairs remembered in the kernel; one event per pair.
pub const OPEN_SEEN_MAX: u32 = 65536;

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
    /// Writing another process's memory without ptrace: `process_vm_writev`, or
    /// `/proc/PID/mem` opened for writing.
    pub const INJECT: u32 = 8;
    /// An io_uring request for a network operation (connect, send, ...).
    pub const IO_URING: u32 = 9;
    /// `open`/`openat`/`openat2` of a path under a watched prefix (or a relative path).
    pub const FILE_OPEN: u32 = 10;
    /// One past the highest tag: the size of per-kind counter arrays.
    pub const COUNT: u32 = 11;
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
    /// A ptrace record emitted at syscall exit: `ret` and the tracee are filled in.
    pub const PTRACE_RESULT: u32 = 1 << 5;
    /// The syscall was a 32-bit (ia32, `int 0x80`) one made by the process.
    pub const COMPAT: u32 = 1 << 6;
    /// An [`super::InjectEvent`] whose target memory is the caller's own.
    pub const SELF_TARGET: u32 = 1 << 7;
    /// A [`super::ConnectEvent`] from a send with `MSG_FASTOPEN` (a TCP connect with data).
    pub const FASTOPEN: u32 = 1 << 8;
}

/// How a [`ConnectEvent`] reached its destination (`via`).
pub mod via {
    /// `connect(2)` (or socketcall's connect).
    pub const CONNECT: u32 = 0;
    /// `sendto(2)` with a destination address.
    pub const SENDTO: u32 = 1;
    /// `sendmsg(2)` with `msg_name` set.
    pub const SENDMSG: u32 = 2;
    /// `sendmmsg(2)`, one of its messages with `msg_name` set.
    pub const SENDMMSG: u32 = 3;
    /// One past the highest value.
    pub const COUNT: u32 = 4;
}

/// How an [`InjectEvent`] writes into the target (`method`).
pub mod inject {
    /// `process_vm_writev(2)`.
    pub const PROCESS_VM_WRITEV: u32 = 1;
    /// `/proc/PID/mem` (or `/proc/PID/task/TID/mem`) opened for writing.
    pub const PROC_MEM: u32 = 2;
}

/// Bits of [`ExecEvent::path_flags`].
pub mod path_flags {
    /// `path` holds the executed file's path, walked from its dentry in the kernel.
    pub const PATH_RESOLVED: u32 = 1 << 0;
    /// The walk of `path` stopped early (too deep, a name cut at [`super::NAME_READ`], or the
    /// buffer full): what is there is the root side of the path.
    pub const PATH_CUT: u32 = 1 << 1;
    /// `cwd` holds the working directory at exec, walked from its dentry in the kernel.
    pub const CWD_RESOLVED: u32 = 1 << 2;
    /// As [`PATH_CUT`] for `cwd`.
    pub const CWD_CUT: u32 = 1 << 3;
    /// `interp` holds `bprm->interp` (the interpreter of a `#!` script, or the file itself).
    pub const INTERP: u32 = 1 << 4;
}

/// Which syscall produced a [`WxMemEvent`].
pub mod wx_syscall {
    /// `mprotect(2)`.
    pub const MPROTECT: u32 = 1;
    /// `pkey_mprotect(2)`.
    pub const PKEY_MPROTECT: u32 = 2;
    /// `mmap(2)`.
    pub const MMAP: u32 = 3;
    /// ia32 `mmap2` (pages offset).
    pub const MMAP2: u32 = 4;
    /// ia32 old `mmap` (arguments in a struct in user memory).
    pub const OLD_MMAP: u32 = 5;
    /// A writable mapping made while the process has `READ_IMPLIES_EXEC` (`personality(2)`):
    /// the kernel makes it executable too.
    pub const READ_IMPLIES_EXEC: u32 = 6;
    /// An executable shared mapping of a file that is also mapped shared and writable
    /// (or the other way round): the same pages both W and X through two addresses.
    pub const SHARED_ALIAS: u32 = 7;
}

/// Indices into the `CONFIG` array map (each slot a `u64`): settings that change while
/// procwatch runs. Offsets that are fixed once the object is loaded are globals instead
/// ([`tp`], [`ko`]).
pub mod config {
    /// procwatch's own tgid: its events are dropped in the kernel.
    pub const SELF_TGID: u32 = 0;
    /// Non-zero: SIGKILL a process that ptrace-attaches or seizes another.
    pub const KILL_PTRACE: u32 = 1;
    /// Non-zero: SIGKILL a process that asks for W+X memory.
    pub const KILL_WX: u32 = 2;
    /// Non-zero: `sys_exit_ptrace` is attached, so a killed `PTRACE_ATTACH` is reported at
    /// syscall exit with its result (and the tracee it really stopped).
    pub const PTRACE_EXIT_ON: u32 = 3;
    /// procwatch's parent tgid: never killed by the policy.
    pub const PARENT_TGID: u32 = 4;
    /// Non-zero: the kill policy applies only to this process and its descendants
    /// (followed through `real_parent` in the kernel); 0: to every process.
    pub const SCOPE_TGID: u32 = 6;
    /// How many entries of `WATCH_PREFIXES` are in use (0: file opens are not reported).
    pub const WATCH_COUNT: u32 = 7;
    /// Non-zero: the raw `sys_exit` probe is attached, so a killed 32-bit `PTRACE_ATTACH` is
    /// reported at syscall exit like the 64-bit one.
    pub const IA32_EXIT_ON: u32 = 8;
    /// Number of slots.
    pub const LEN: u32 = 9;
}

/// Slots of the `TP_OFFSETS` global: byte offsets of the classic tracepoint fields the
/// programs read, taken from this kernel's format files at load time. [`UNKNOWN`] when the
/// field is missing (the programs that need it are then not attached).
pub mod tp {
    /// `sched_process_exec`: `__data_loc char[] filename`.
    pub const EXEC_FILENAME: usize = 0;
    /// `sched_process_exec`: `old_pid`.
    pub const EXEC_OLD_PID: usize = 1;
    /// `sched_process_fork`: `child_pid` (classic fork probe only).
    pub const FORK_CHILD_PID: usize = 2;
    /// `sched_process_exit`: `group_dead` ([`UNKNOWN`] on kernels without it).
    pub const EXIT_GROUP_DEAD: usize = 3;
    /// `sys_enter_execve`: `argv`.
    pub const EXECVE_ARGV: usize = 4;
    /// `sys_enter_execveat`: `argv`.
    pub const EXECVEAT_ARGV: usize = 5;
    /// `sys_enter_clone`: `clone_flags`.
    pub const CLONE_FLAGS: usize = 6;
    /// `sys_enter_clone3`: `uargs`.
    pub const CLONE3_UARGS: usize = 7;
    /// `sys_enter_exit_group`: `error_code`.
    pub const EXIT_GROUP_CODE: usize = 8;
    /// `sys_enter_ptrace`: `request`.
    pub const PTRACE_REQUEST: usize = 9;
    /// `sys_enter_ptrace`: `pid`.
    pub const PTRACE_PID: usize = 10;
    /// `sys_exit_ptrace`: `ret`.
    pub const PTRACE_RET: usize = 11;
    /// `sys_enter_connect`: `fd`.
    pub const CONNECT_FD: usize = 12;
    /// `sys_enter_connect`: `uservaddr`.
    pub const CONNECT_ADDR: usize = 13;
    /// `sys_enter_connect`: `addrlen`.
    pub const CONNECT_ADDRLEN: usize = 14;
    /// `sys_enter_mprotect`: `start`.
    pub const MPROTECT_START: usize = 15;
    /// `sys_enter_mprotect`: `len`.
    pub const MPROTECT_LEN: usize = 16;
    /// `sys_enter_mprotect`: `prot`.
    pub const MPROTECT_PROT: usize = 17;
    /// `sys_enter_pkey_mprotect`: `start`.
    pub const PKEY_START: usize = 18;
    /// `sys_enter_pkey_mprotect`: `len`.
    pub const PKEY_LEN: usize = 19;
    /// `sys_enter_pkey_mprotect`: `prot`.
    pub const PKEY_PROT: usize = 20;
    /// `sys_enter_pkey_mprotect`: `pkey`.
    pub const PKEY_PKEY: usize = 21;
    /// `sys_enter_mmap`: `addr`.
    pub const MMAP_ADDR: usize = 22;
    /// `sys_enter_mmap`: `len`.
    pub const MMAP_LEN: usize = 23;
    /// `sys_enter_mmap`: `prot`.
    pub const MMAP_PROT: usize = 24;
    /// `sys_enter_mmap`: `flags`.
    pub const MMAP_FLAGS: usize = 25;
    /// `sys_enter_memfd_create`: `uname`.
    pub const MEMFD_NAME: usize = 26;
    /// `sys_enter_memfd_create`: `flags`.
    pub const MEMFD_FLAGS: usize = 27;
    /// `sys_enter_process_vm_writev`: `pid`.
    pub const PVW_PID: usize = 28;
    /// `sys_exit_openat`: `ret`.
    pub const OPENAT_RET: usize = 29;
    /// `sys_exit_openat2`: `ret`.
    pub const OPENAT2_RET: usize = 30;
    /// `sys_exit_open`: `ret`.
    pub const OPEN_RET: usize = 31;
    /// `sys_enter_sendto`: `flags`.
    pub const SENDTO_FLAGS: usize = 32;
    /// `sys_enter_sendto`: `addr`.
    pub const SENDTO_ADDR: usize = 33;
    /// `sys_enter_sendto`: `addr_len`.
    pub const SENDTO_ADDRLEN: usize = 34;
    /// `sys_enter_sendto`: `fd`.
    pub const SENDTO_FD: usize = 35;
    /// `sys_enter_sendmsg`: `fd`.
    pub const SENDMSG_FD: usize = 36;
    /// `sys_enter_sendmsg`: `msg`.
    pub const SENDMSG_MSG: usize = 37;
    /// `sys_enter_sendmsg`: `flags`.
    pub const SENDMSG_FLAGS: usize = 38;
    /// `sys_enter_sendmmsg`: `fd`.
    pub const SENDMMSG_FD: usize = 39;
    /// `sys_enter_sendmmsg`: `mmsg`.
    pub const SENDMMSG_MMSG: usize = 40;
    /// `sys_enter_sendmmsg`: `vlen`.
    pub const SENDMMSG_VLEN: usize = 41;
    /// `sys_enter_sendmmsg`: `flags`.
    pub const SENDMMSG_FLAGS: usize = 42;
    /// `io_uring:io_uring_submit_req`: `opcode`.
    pub const URING_OPCODE: usize = 43;
    /// `sys_enter_mmap`: `fd`.
    pub const MMAP_FD: usize = 44;
    /// `sys_enter_openat`: `dfd`.
    pub const OPENAT_DFD: usize = 45;
    /// `sys_enter_openat`: `filename`.
    pub const OPENAT_FILENAME: usize = 46;
    /// `sys_enter_openat`: `flags`.
    pub const OPENAT_FLAGS: usize = 47;
    /// `sys_enter_openat2`: `dfd`.
    pub const OPENAT2_DFD: usize = 48;
    /// `sys_enter_openat2`: `filename`.
    pub const OPENAT2_FILENAME: usize = 49;
    /// `sys_enter_open`: `filename` (x86_64 has `open`; newer architectures do not).
    pub const OPEN_FILENAME: usize = 50;
    /// `sys_enter_open`: `flags`.
    pub const OPEN_FLAGS: usize = 51;
    /// Number of slots.
    pub const COUNT: usize = 52;
    /// A field this kernel's format file does not have.
    pub const UNKNOWN: u32 = u32::MAX;
}

/// Slots of the `KERNEL_OFFSETS` global: byte offsets of kernel struct members, read from
/// this kernel's BTF (`/sys/kernel/btf/vmlinux`) at load time. [`ko::VALID`] is 1 only when
/// every member was found; otherwise no program reads a kernel struct.
pub mod ko {
    /// 1 when every other slot holds a real offset.
    pub const VALID: usize = 0;
    /// `task_struct.pid`.
    pub const TASK_PID: usize = 1;
    /// `task_struct.tgid`.
    pub const TASK_TGID: usize = 2;
    /// `task_struct.start_boottime`.
    pub const TASK_START_BOOTTIME: usize = 3;
    /// `task_struct.real_parent`.
    pub const TASK_REAL_PARENT: usize = 4;
    /// `task_struct.parent` (the tracer while traced).
    pub const TASK_PARENT: usize = 5;
    /// `task_struct.group_leader`.
    pub const TASK_GROUP_LEADER: usize = 6;
    /// `task_struct.mm`.
    pub const TASK_MM: usize = 7;
    /// `task_struct.ptraced` (list of tasks this one traces).
    pub const TASK_PTRACED: usize = 8;
    /// `task_struct.ptrace_entry` (link in the tracer's `ptraced` list).
    pub const TASK_PTRACE_ENTRY: usize = 9;
    /// `mm_struct.exe_file`.
    pub const MM_EXE_FILE: usize = 10;
    /// `file.f_inode`.
    pub const FILE_INODE: usize = 11;
    /// `inode.i_ino`.
    pub const INODE_INO: usize = 12;
    /// `inode.i_sb`.
    pub const INODE_SB: usize = 13;
    /// `super_block.s_dev`.
    pub const SB_DEV: usize = 14;
    /// `file.f_path.mnt`.
    pub const FILE_PATH_MNT: usize = 15;
    /// `file.f_path.dentry`.
    pub const FILE_PATH_DENTRY: usize = 16;
    /// `dentry.d_parent`.
    pub const DENTRY_PARENT: usize = 17;
    /// `dentry.d_name.name`.
    pub const DENTRY_NAME: usize = 18;
    /// `vfsmount.mnt_root`.
    pub const VFSMOUNT_ROOT: usize = 19;
    /// `mount.mnt` (the `vfsmount` embedded in a `mount`).
    pub const MOUNT_MNT: usize = 20;
    /// `mount.mnt_parent`.
    pub const MOUNT_PARENT: usize = 21;
    /// `mount.mnt_mountpoint`.
    pub const MOUNT_MOUNTPOINT: usize = 22;
    /// `task_struct.fs`.
    pub const TASK_FS: usize = 23;
    /// `fs_struct.pwd.mnt`.
    pub const FS_PWD_MNT: usize = 24;
    /// `fs_struct.pwd.dentry`.
    pub const FS_PWD_DENTRY: usize = 25;
    /// `linux_binprm.file`.
    pub const BPRM_FILE: usize = 26;
    /// `linux_binprm.filename`.
    pub const BPRM_FILENAME: usize = 27;
    /// `linux_binprm.interp`.
    pub const BPRM_INTERP: usize = 28;
    /// `task_struct.files`.
    pub const TASK_FILES: usize = 29;
    /// `files_struct.fdt`.
    pub const FILES_FDT: usize = 30;
    /// `fdtable.fd`.
    pub const FDT_FD: usize = 31;
    /// `fdtable.max_fds`.
    pub const FDT_MAX_FDS: usize = 32;
    /// `file.f_mode`.
    pub const FILE_MODE: usize = 33;
    /// `file.private_data` (the target's `mm_struct` for a `/proc/PID/mem` file).
    pub const FILE_PRIVATE: usize = 34;
    /// `super_block.s_magic`.
    pub const SB_MAGIC: usize = 35;
    /// `task_struct.thread_info.status` (x86: `TS_COMPAT` during a 32-bit syscall).
    pub const TASK_TI_STATUS: usize = 36;
    /// `task_struct.personality`.
    pub const TASK_PERSONALITY: usize = 37;
    /// `file.f_mapping`.
    pub const FILE_MAPPING: usize = 38;
    /// `address_space.i_mmap_writable` (shared writable mappings of the file).
    pub const MAPPING_WRITABLE: usize = 39;
    /// `pt_regs.bx` (first argument of an ia32 syscall).
    pub const REGS_BX: usize = 40;
    /// `pt_regs.cx`.
    pub const REGS_CX: usize = 41;
    /// `pt_regs.dx`.
    pub const REGS_DX: usize = 42;
    /// `pt_regs.si`.
    pub const REGS_SI: usize = 43;
    /// `pt_regs.di`.
    pub const REGS_DI: usize = 44;
    /// `pt_regs.bp` (sixth argument of an ia32 syscall).
    pub const REGS_BP: usize = 45;
    /// `pt_regs.orig_ax` (the syscall number, still there at syscall exit).
    pub const REGS_ORIG_AX: usize = 46;
    /// `inode.i_mode` (file type: a socket is `S_IFSOCK`).
    pub const INODE_MODE: usize = 47;
    /// `socket.type` (`SOCK_STREAM`, `SOCK_DGRAM`, ...).
    pub const SOCKET_TYPE: usize = 48;
    /// Number of slots.
    pub const COUNT: usize = 49;
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

/// Common prefix of every record. 56 bytes, no implicit padding.
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
    /// Start of the process (its thread-group leader's `start_boottime`, CLOCK_BOOTTIME ns),
    /// read in the kernel: with `tgid` it names the process exactly. 0 when unknown (no BTF).
    pub start_ns: u64,
}

/// A successful exec.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Common header; `tgid` is the process after exec.
    pub header: EventHeader,
    /// Parent tgid (`real_parent->tgid`, read in the kernel); 0 when unknown (no BTF).
    pub ppid: u32,
    /// Thread id that called exec (differs from `tgid` when a non-leader thread exec'd).
    pub old_pid: u32,
    /// Bytes of `filename` used, without the NUL.
    pub filename_len: u32,
    /// Bytes of `args` used, NUL separators included.
    pub args_len: u32,
    /// Arguments captured.
    pub argc: u32,
    /// Device of the executed file (`mm->exe_file->f_inode->i_sb->s_dev`, kernel encoding
    /// `major << 20 | minor`); with `exe_ino` it names the file whatever path it ran under.
    pub exe_dev: u32,
    /// Inode number of the executed file; 0 when unknown (no BTF).
    pub exe_ino: u64,
    /// Bytes of `path` used.
    pub path_len: u32,
    /// Bytes of `cwd` used.
    pub cwd_len: u32,
    /// Bytes of `interp` used, without the NUL.
    pub interp_len: u32,
    /// Bits from [`path_flags`].
    pub path_flags: u32,
    /// The task's cgroup (v2) id: the inode number of its cgroup directory; 0 when unknown.
    pub cgroup_id: u64,
    /// Path as given to execve (`bprm->filename`).
    pub filename: [u8; PATH_LEN],
    /// `bprm->interp`: the interpreter of a `#!` script, else the same as `filename`.
    pub interp: [u8; PATH_LEN],
    /// The executed file (`bprm->file`) as the kernel resolved it: `/`-separated components
    /// walked from its dentry up through its mounts, root first, not NUL-terminated.
    pub path: [u8; RESOLVED_LEN],
    /// The working directory at exec (`current->fs->pwd`), like `path`.
    pub cwd: [u8; RESOLVED_LEN],
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
    /// The child's `start_boottime` (ns), read in the kernel; 0 when unknown (classic probe).
    pub child_start_ns: u64,
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
    /// `pid` argument as the tracer passed it (in the tracer's pid namespace).
    pub target_pid: u64,
    /// With [`flags::PTRACE_RESULT`]: the syscall's return value (0: attached).
    pub ret: i64,
    /// With [`flags::PTRACE_RESULT`] and `ret == 0`: tgid of the task the tracer now traces,
    /// read from the tracer's `ptraced` list in the kernel (0 when it could not be read).
    pub tracee_tgid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Start (`start_boottime`, ns) of that tracee's process; 0 when unknown.
    pub tracee_start_ns: u64,
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
    /// How: one of the [`via`] constants.
    pub via: u32,
    /// Destination address: 4 bytes used for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// The socket's type as the kernel has it (one of the [`sock_type`] constants; 0 when it
    /// could not be read).
    pub sock_type: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Socket types ([`ConnectEvent::sock_type`]): the kernel's `SOCK_*` numbers.
pub mod sock_type {
    /// Not read (no BTF offsets, or the descriptor is not a socket).
    pub const UNKNOWN: u32 = 0;
    /// `SOCK_STREAM` (TCP for inet sockets).
    pub const STREAM: u32 = 1;
    /// `SOCK_DGRAM` (UDP, or an ICMP "ping" socket).
    pub const DGRAM: u32 = 2;
    /// `SOCK_RAW`.
    pub const RAW: u32 = 3;
    /// `SOCK_RDM`.
    pub const RDM: u32 = 4;
    /// `SOCK_SEQPACKET` (SCTP one-to-one).
    pub const SEQPACKET: u32 = 5;
    /// `SOCK_DCCP`.
    pub const DCCP: u32 = 6;
    /// `SOCK_PACKET`.
    pub const PACKET: u32 = 10;
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

/// Another process's memory written without ptrace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectEvent {
    /// Common header; the task is the writer.
    pub header: EventHeader,
    /// One of the [`inject`] constants.
    pub method: u32,
    /// Bytes of `target_name` used.
    pub target_name_len: u32,
    /// `process_vm_writev`: the pid argument (in the writer's pid namespace).
    pub target_pid: u64,
    /// `/proc/PID/mem`: the name of the directory holding `mem` (the target's pid or tid,
    /// as procfs spells it), decoded in userspace.
    pub target_name: [u8; COMM_LEN],
}

/// An io_uring request for a network operation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoUringEvent {
    /// Common header; the task is the submitter (an SQPOLL kernel thread's owner otherwise).
    pub header: EventHeader,
    /// `IORING_OP_*` opcode.
    pub opcode: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// `IORING_OP_*` opcodes that talk to the network (uapi io_uring.h).
pub mod uring_op {
    /// `IORING_OP_SENDMSG`.
    pub const SENDMSG: u32 = 9;
    /// `IORING_OP_ACCEPT`.
    pub const ACCEPT: u32 = 13;
    /// `IORING_OP_CONNECT`.
    pub const CONNECT: u32 = 16;
    /// `IORING_OP_SEND`.
    pub const SEND: u32 = 26;
    /// `IORING_OP_SOCKET`.
    pub const SOCKET: u32 = 45;
    /// `IORING_OP_SEND_ZC`.
    pub const SEND_ZC: u32 = 47;
    /// `IORING_OP_SENDMSG_ZC`.
    pub const SENDMSG_ZC: u32 = 48;
    /// True for the opcodes above.
    pub const fn is_network(op: u32) -> bool {
        matches!(
            op,
            SENDMSG | ACCEPT | CONNECT | SEND | SOCKET | SEND_ZC | SENDMSG_ZC
        )
    }
}

/// Which call opened a file ([`FileOpenEvent::syscall`]).
pub mod open_call {
    /// `openat(2)`.
    pub const OPENAT: u32 = 1;
    /// `openat2(2)`.
    pub const OPENAT2: u32 = 2;
    /// `open(2)`.
    pub const OPEN: u32 = 3;
}

/// `AT_FDCWD`: a relative path is relative to the working directory.
pub const AT_FDCWD: i32 = -100;

/// A file opened under a watched prefix, or by a relative path (which only userspace can
/// place), at most once per process and path.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOpenEvent {
    /// Common header.
    pub header: EventHeader,
    /// One of the [`open_call`] constants.
    pub syscall: u32,
    /// The directory fd a relative path is relative to ([`AT_FDCWD`]: the working directory).
    pub dfd: i32,
    /// The open flags (`O_RDONLY`, `O_WRONLY`, ...).
    pub open_flags: u32,
    /// Bytes of `path` used, without the NUL; [`FILE_PATH_LEN`] when the path was cut.
    pub path_len: u32,
    /// The path as the process passed it.
    pub path: [u8; FILE_PATH_LEN],
}

/// One watched prefix as the kernel matches it, prepared by userspace so the match is a few
/// masked word compares: `head` must start the path (bytes packed little-endian, `head_mask`
/// 0xff over the bytes in use) and end at a component boundary unless `open_end`; with `star`,
/// the path must end with `tail` (right-aligned in 16 bytes, `tail_mask` likewise), e.g.
/// `/proc/*/mem`: head `/proc/`, tail `/mem`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchPrefix {
    /// Bytes of the head.
    pub head_len: u32,
    /// Bytes of the tail.
    pub tail_len: u32,
    /// Non-zero when a `*` component sits between head and tail.
    pub star: u32,
    /// Non-zero when the head ends with `/` (no boundary check after it).
    pub open_end: u32,
    /// The head, packed.
    pub head: [u64; WATCH_HEAD_LEN / 8],
    /// 0xff over the head's bytes.
    pub head_mask: [u64; WATCH_HEAD_LEN / 8],
    /// The tail, right-aligned in [`WATCH_TAIL_LEN`] bytes.
    pub tail: [u64; WATCH_TAIL_LEN / 8],
    /// 0xff over the tail's bytes.
    pub tail_mask: [u64; WATCH_TAIL_LEN / 8],
}

/// Key of the kernel's "already reported" map of file opens.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpenKey {
    /// The process.
    pub tgid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Its start time (a recycled pid is another process).
    pub start_ns: u64,
    /// Hash of the path bytes.
    pub path_hash: u64,
}

/// Key of the exec allowlist map: what an executable file is (not the path it was run by).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExeKey {
    /// `s_dev` of the file's superblock, kernel encoding (`major << 20 | minor`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// Most processes condemned at once by kill verdicts (the flagged ones and their
/// descendants); an entry leaves when its process exits.
pub const DOOMED_MAX: u32 = 8192;

/// A process a kill verdict condemned, by start time (the map's key is its tgid). A fork of
/// it is condemned too and killed by the kernel before it runs a user instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doom {
    /// Start time in clock ticks since boot, as /proc/PID/stat gives it.
    pub start_ticks: u64,
    /// Nanoseconds per clock tick, to compare the kernel's start time in ns with it.
    pub ns_per_tick: u64,
}

/// A `PTRACE_ATTACH` the policy killed, held from syscall entry to syscall exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingPtrace {
    /// `request` argument.
    pub request: u64,
    /// `pid` argument.
    pub target_pid: u64,
    /// Header flags decided at entry (the kill outcome).
    pub flags: u32,
    /// Explicit padding.
    pub _pad: u32,
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
    unsafe impl aya::Pod for super::ExeKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PendingArgs {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WatchPrefix {}
    unsafe impl aya::Pod for super::Doom {}
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
        kind::FILE_OPEN => core::mem::size_of::<FileOpenEvent>(),
        kind::INJECT => core::mem::size_of::<InjectEvent>(),
        kind::IO_URING => core::mem::size_of::<IoUringEvent>(),
        _ => 0,
    }
}

// The layout is a contract with the kernel side: fail the build if a field moves.
const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 56);
    assert!(
        core::mem::size_of::<ExecEvent>() == 56 + 56 + 2 * PATH_LEN + 2 * RESOLVED_LEN + ARGS_LEN
    );
    assert!(core::mem::size_of::<ForkEvent>() == 56 + 16);
    assert!(core::mem::size_of::<ExitEvent>() == 56 + 8);
    assert!(core::mem::size_of::<PtraceEvent>() == 56 + 40);
    assert!(core::mem::size_of::<ConnectEvent>() == 56 + 40);
    assert!(core::mem::size_of::<WxMemEvent>() == 56 + 40);
    assert!(core::mem::size_of::<MemfdEvent>() == 56 + 8 + MEMFD_NAME_LEN);
    assert!(core::mem::size_of::<InjectEvent>() == 56 + 16 + COMM_LEN);
    assert!(core::mem::size_of::<IoUringEvent>() == 56 + 8);
    assert!(core::mem::size_of::<ExeKey>() == 16);
    assert!(core::mem::size_of::<FileOpenEvent>() == 56 + 16 + FILE_PATH_LEN);
    assert!(core::mem::size_of::<WatchPrefix>() == 16 + 2 * WATCH_HEAD_LEN + 2 * WATCH_TAIL_LEN);
    assert!(core::mem::size_of::<OpenKey>() == 24);
    assert!(core::mem::size_of::<PendingPtrace>() == 24);
    assert!(core::mem::size_of::<Doom>() == 16);
};
