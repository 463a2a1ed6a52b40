//! The decoded event model every sensor produces and every consumer reads.
//!
//! Strings that come from the kernel or from /proc (comm, paths, argv) are raw bytes; they are
//! kept as bytes ([`OsString`] / [`PathBuf`]) so heuristics see exactly what the process used,
//! and turned into JSON only in [`crate::text`], which never fails on invalid UTF-8.
use std::{ffi::OsString, net::IpAddr, path::PathBuf};

use serde::Serialize;

use crate::{identity::ExeId, text};

/// Which sensor produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// The eBPF tracepoint programs.
    Ebpf,
    /// The netlink process connector (fallback when eBPF cannot load).
    ProcConnector,
    /// A /proc sweep (fallback, and the seed of the process table).
    Sweep,
}

impl SensorKind {
    /// Stable name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorKind::Ebpf => "ebpf",
            SensorKind::ProcConnector => "proc_connector",
            SensorKind::Sweep => "sweep",
        }
    }
}

/// Event kinds, in the same numbering as the kernel's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A successful exec.
    Exec,
    /// A new process.
    Fork,
    /// A process exited.
    Exit,
    /// ptrace attach/seize/traceme.
    Ptrace,
    /// connect() to an IP address.
    Connect,
    /// W+X memory requested.
    WxMem,
    /// memfd_create().
    Memfd,
    /// Another process's memory written without ptrace.
    Inject,
    /// An io_uring network request.
    IoUring,
    /// A file opened under a watched prefix.
    FileOpen,
}

impl EventKind {
    /// Every kind, in tag order.
    pub const ALL: [EventKind; 10] = [
        EventKind::Exec,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Ptrace,
        EventKind::Connect,
        EventKind::WxMem,
        EventKind::Memfd,
        EventKind::Inject,
        EventKind::IoUring,
        EventKind::FileOpen,
    ];

    /// Stable name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Ptrace => "ptrace",
            EventKind::Connect => "connect",
            EventKind::WxMem => "wx_mem",
            EventKind::Memfd => "memfd",
            EventKind::Inject => "inject",
            EventKind::IoUring => "io_uring",
            EventKind::FileOpen => "file_open",
        }
    }

    /// The kernel tag.
    pub fn tag(self) -> u32 {
        use procwatch_common::kind;
        match self {
            EventKind::Exec => kind::EXEC,
            EventKind::Fork => kind::FORK,
            EventKind::Exit => kind::EXIT,
            EventKind::Ptrace => kind::PTRACE,
            EventKind::Connect => kind::CONNECT,
            EventKind::WxMem => kind::WX_MEM,
            EventKind::Memfd => kind::MEMFD,
            EventKind::Inject => kind::INJECT,
            EventKind::IoUring => kind::IO_URING,
            EventKind::FileOpen => kind::FILE_OPEN,
        }
    }

    /// Index into per-kind counter arrays (0-based).
    pub fn index(self) -> usize {
        self.tag() as usize - 1
    }
}

/// The error for an unknown kind tag or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0}")]
pub struct UnknownKind(pub String);

impl TryFrom<u32> for EventKind {
    type Error = UnknownKind;
    fn try_from(tag: u32) -> Result<Self, Self::Error> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.tag() == tag)
            .ok_or_else(|| UnknownKind(tag.to_string()))
    }
}

impl std::str::FromStr for EventKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                UnknownKind(format!(
                    "'{s}' (known: exec, fork, exit, ptrace, connect, wx_mem, memfd, inject, io_uring, file_open)"
                ))
            })
    }
}

/// What the kernel's kill policy did with the syscall that caused the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelAction {
    /// SIGKILL was sent before the syscall returned.
    Killed,
    /// The policy applied but sending the signal failed.
    KillFailed,
    /// The policy applied but the process is exempt.
    Exempt,
}

/// One event, decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Which sensor saw it.
    pub sensor: SensorKind,
    /// CLOCK_MONOTONIC ns when it happened (0 when the sensor has no kernel time).
    pub ktime_ns: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Task comm.
    #[serde(serialize_with = "text::serialize_os")]
    pub comm: OsString,
    /// Start of the process (`tgid`), CLOCK_BOOTTIME ns as the kernel keeps it, read in the
    /// kernel; with `tgid` it names the process exactly. `None` when the sensor cannot read
    /// it (no BTF, or the fallback sensor).
    pub start_time_ns: Option<u64>,
    /// Set when the kernel's kill policy acted on this syscall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_action: Option<KernelAction>,
    /// The syscall was a 32-bit one (`int 0x80`), which only the raw `sys_enter` probe sees.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub compat: bool,
    /// Kind-specific fields.
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The process's start time in /proc's clock ticks, when the sensor read it.
    pub fn start_ticks(&self) -> Option<u64> {
        self.start_time_ns
            .and_then(crate::identity::ticks_from_boot_ns)
    }
}

/// Kind-specific part of an event; serialised with a `kind` tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A successful exec.
    Exec(Exec),
    /// A new process.
    Fork(Fork),
    /// A process exited.
    Exit(Exit),
    /// ptrace attach/seize/traceme.
    Ptrace(Ptrace),
    /// connect() to an IP address.
    Connect(Connect),
    /// W+X memory requested.
    WxMem(WxMem),
    /// memfd_create().
    Memfd(Memfd),
    /// Another process's memory written without ptrace.
    Inject(Inject),
    /// An io_uring network request.
    IoUring(IoUring),
    /// open/openat/openat2 of a watched (or relative) path, once per process and path.
    FileOpen(FileOpen),
}

impl EventBody {
    /// The kind of this body.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Exec(_) => EventKind::Exec,
            EventBody::Fork(_) => EventKind::Fork,
            EventBody::Exit(_) => EventKind::Exit,
            EventBody::Ptrace(_) => EventKind::Ptrace,
            EventBody::Connect(_) => EventKind::Connect,
            EventBody::WxMem(_) => EventKind::WxMem,
            EventBody::Memfd(_) => EventKind::Memfd,
            EventBody::Inject(_) => EventKind::Inject,
            EventBody::IoUring(_) => EventKind::IoUring,
            EventBody::FileOpen(_) => EventKind::FileOpen,
        }
    }
}

/// A successful exec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exec {
    /// Path as given to exec.
    #[serde(serialize_with = "text::serialize_path")]
    pub filename: PathBuf,
    /// Arguments, as captured (see `args_truncated`).
    #[serde(serialize_with = "text::serialize_os_list")]
    pub argv: Vec<OsString>,
    /// argv was cut to fit the capture limits.
    pub args_truncated: bool,
    /// argv could not be captured.
    pub args_missing: bool,
    /// Parent pid (0 when unknown to the sensor).
    pub ppid: u32,
    /// Thread id that called exec.
    pub old_pid: u32,
    /// The executed file (device and inode, as the kernel has it), when read in the kernel.
    pub exe: Option<ExeId>,
    /// What the kernel resolved about this exec (the BTF exec probe); empty otherwise.
    #[serde(flatten)]
    pub resolved: Resolved,
}

/// What the kernel itself resolved at an exec: no string a process passed, and nothing /proc
/// says later, can stand in for these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The executed file's path, walked from its dentry (symlinks, `..` and relative paths
    /// already resolved by the kernel's lookup); for a `#!` script this is the interpreter.
    #[serde(
        rename = "exe_path",
        skip_serializing_if = "Option::is_none",
        serialize_with = "text::serialize_opt_path"
    )]
    pub path: Option<PathBuf>,
    /// `path` is only its root side (too deep or too long to keep whole).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_cut: bool,
    /// The working directory at exec, walked the same way.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "text::serialize_opt_path"
    )]
    pub cwd: Option<PathBuf>,
    /// `cwd` is only its root side.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cwd_cut: bool,
    /// The interpreter named by a `#!` line (`bprm->interp`), when it is not `filename`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "text::serialize_opt_path"
    )]
    pub interp: Option<PathBuf>,
    /// The cgroup (v2) id of the process at exec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
}

/// A new process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fork {
    /// The parent's pid.
    pub parent_tgid: u32,
    /// The child's pid.
    pub child_tgid: u32,
    /// The child's start time (CLOCK_BOOTTIME ns), when read in the kernel.
    pub child_start_time_ns: Option<u64>,
}

/// A process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exit {
    /// Status passed to exit_group, when known.
    pub exit_code: Option<i32>,
}

/// A ptrace request that starts tracing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ptrace {
    /// Request number.
    pub request: u64,
    /// Symbolic request name.
    pub request_name: &'static str,
    /// Target pid, as the tracer passed it (in the tracer's pid namespace).
    pub target_pid: u64,
    /// For an attach the kernel killed: what the syscall did, reported at its exit.
    pub result: Option<PtraceResult>,
}

/// The outcome of a `PTRACE_ATTACH` whose caller the kernel killed (the syscall still runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PtraceResult {
    /// The syscall's return value (0: attached).
    pub ret: i64,
    /// The process really attached (read from the tracer's `ptraced` list), when it was.
    pub tracee_tgid: Option<u32>,
    /// That process's start time (CLOCK_BOOTTIME ns).
    pub tracee_start_time_ns: Option<u64>,
}

/// connect() to an IP destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Connect {
    /// Socket fd.
    pub fd: u64,
    /// "inet" or "inet6".
    pub family: &'static str,
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port.
    pub port: u16,
    /// How: "connect", "sendto", "sendmsg" or "sendmmsg".
    pub via: &'static str,
    /// A send with `MSG_FASTOPEN`: a TCP connect carrying data.
    pub fastopen: bool,
    /// The socket's type, read in the kernel: "stream" (TCP), "dgram" (UDP), "raw",
    /// "seqpacket", ...; `None` when it could not be read (no kernel BTF).
    pub socket: Option<&'static str>,
}

impl Connect {
    /// The transport protocol as a baseline keeps it: from the socket's type (connection
    /// sockets as TCP, datagram ones — UDP, but also raw and packet sockets — as UDP), else
    /// from the call (a send naming its destination without `MSG_FASTOPEN` is a datagram; a
    /// connect is taken for TCP).
    pub fn proto(&self) -> crate::procfs::sockets::Proto {
        use crate::procfs::sockets::Proto;
        match self.socket {
            Some("stream" | "seqpacket" | "dccp") => Proto::Tcp,
            Some(_) => Proto::Udp,
            None if self.via != "connect" && !self.fastopen => Proto::Udp,
            None => Proto::Tcp,
        }
    }
}

/// A request for W+X memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WxMem {
    /// "mprotect", "pkey_mprotect", "mmap", "mmap2", "old_mmap", or how W+X came without
    /// being asked for: "read_implies_exec", "shared_alias".
    pub syscall: &'static str,
    /// Address argument.
    pub start: u64,
    /// Length argument.
    pub len: u64,
    /// prot argument.
    pub prot: u64,
    /// mmap flags or pkey.
    pub flags: u64,
}

/// memfd_create().
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memfd {
    /// Name given.
    #[serde(serialize_with = "text::serialize_os")]
    pub name: OsString,
    /// Flags given.
    pub flags: u32,
}

/// Another process's memory written without ptrace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Inject {
    /// "process_vm_writev" or "proc_mem" (`/proc/PID/mem` opened for writing).
    pub method: &'static str,
    /// The target pid (or tid, for `/proc/PID/task/TID/mem`) as the writer named it; `None`
    /// when it could not be read.
    pub target_pid: Option<u32>,
    /// The target memory is the writer's own (not an injection).
    pub target_self: bool,
}

/// An io_uring network request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IoUring {
    /// `IORING_OP_*` number.
    pub opcode: u32,
    /// Its name ("CONNECT", "SENDMSG", ...).
    pub op: &'static str,
}

/// A file open the kernel let through: under a watched prefix, or a path only user space can
/// place (relative, or holding `//` or a `.` component).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileOpen {
    /// "openat", "openat2" or "open".
    pub syscall: &'static str,
    /// Directory fd a relative path is relative to (-100: the working directory).
    pub dfd: i32,
    /// Open flags (0 for openat2, whose flags are in user memory).
    pub flags: u32,
    /// The path as the process passed it.
    #[serde(serialize_with = "text::serialize_os")]
    pub path: OsString,
    /// The path was longer than the kernel keeps, and cut.
    pub truncated: bool,
}
