//! Every map the programs share, with its sizing rationale.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use procwatch_common::{
    ALLOW_MAX, DOOMED_MAX, Doom, ExeKey, FileOpenEvent, OPEN_SEEN_MAX, OpenKey, PendingArgs,
    PendingPtrace, WALK_DEPTH, WATCH_MAX, WatchPrefix, config, kind,
};

/// The one ring buffer all events go through. Userspace may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Events that could not be reserved in `EVENTS`, per kind (summed over CPUs by userspace).
#[map]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(kind::COUNT, 0);

/// Runtime settings written by userspace; indices in `procwatch_common::config`.
#[map]
pub static CONFIG: Array<u64> = Array::with_max_entries(config::LEN, 0);

/// argv captured at `sys_enter_execve*`, keyed by thread id, consumed at `sched_process_exec`.
/// LRU so that failed execs (which never reach `sched_process_exec`) cannot fill it.
#[map]
pub static EXEC_ARGS: LruHashMap<u32, PendingArgs> = LruHashMap::with_max_entries(1024, 0);

/// Per-CPU scratch where argv is assembled before it is inserted in `EXEC_ARGS`
/// (too large for the 512-byte BPF stack).
#[map]
pub static ARGS_SCRATCH: PerCpuArray<PendingArgs> = PerCpuArray::with_max_entries(1, 0);

/// `clone`/`clone3` flags of the calling thread, read at the classic `sched_process_fork` to
/// tell a new thread from a new process. Only used where the BTF fork probe cannot load.
#[map]
pub static CLONE_FLAGS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(8192, 0);

/// Exit status passed to `exit_group`, keyed by tgid, reported with the exit event.
#[map]
pub static EXIT_CODES: LruHashMap<u32, i32> = LruHashMap::with_max_entries(8192, 0);

/// Executables exempt from the kill policy, by what the file is (device and inode), filled
/// by userspace from the allowlisted paths. Checked at kill time against the current task's
/// `mm->exe_file`, so it holds no per-process state and nothing can be evicted from it.
#[map]
pub static ALLOW_EXE: HashMap<ExeKey, u8> = HashMap::with_max_entries(ALLOW_MAX, 0);

/// Users exempt from the kill policy (whitelisted users), by uid.
#[map]
pub static ALLOW_UID: HashMap<u32, u8> = HashMap::with_max_entries(ALLOW_MAX, 0);

/// A `PTRACE_ATTACH` the policy killed, by tracer thread id, from syscall entry to exit.
/// Not LRU: an entry lives for one syscall; when the map is full the event is sent at entry.
#[map]
pub static PTRACE_PENDING: HashMap<u32, PendingPtrace> = HashMap::with_max_entries(1024, 0);

/// The watched prefixes file opens are matched against, written by userspace at load
/// (`config::WATCH_COUNT` says how many are in use).
#[map]
pub static WATCH_PREFIXES: Array<WatchPrefix> = Array::with_max_entries(WATCH_MAX, 0);

/// (process, path) pairs already reported: each is sent once. LRU, so a scanner touching
/// millions of files pushes out old pairs (which may then be sent again) instead of failing.
#[map]
pub static OPEN_SEEN: LruHashMap<OpenKey, u8> = LruHashMap::with_max_entries(OPEN_SEEN_MAX, 0);

/// Per-CPU scratch where an opened path is read and matched before anything is reserved in
/// the ring buffer (most opens are not watched and never reach it).
#[map]
pub static OPEN_SCRATCH: PerCpuArray<FileOpenEvent> = PerCpuArray::with_max_entries(1, 0);

/// A path walk's working state: the dentries met on the way up (so the names can be written
/// root first), how many steps, and whether the root was reached. Kept in a map, not in
/// registers: values read back from a map are unknown to the verifier, so every way out of
/// the walk's loop leads to one state it checks once, instead of one per exit.
#[repr(C)]
pub struct Walk {
    /// One slot per step: the dentry whose name to write, or 0 for a mount crossed.
    pub stack: [u64; WALK_DEPTH],
    /// Steps taken.
    pub steps: u64,
    /// 1 when the walk reached the root and every name fitted.
    pub whole: u64,
    /// Bytes written so far.
    pub off: u64,
}

/// Per-CPU [`Walk`] (too large for the BPF stack next to the rest).
#[map]
pub static WALK_SCRATCH: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// Files (by `address_space` pointer) seen mapped shared and executable, so a later shared
/// writable mapping of the same pages is recognised. LRU: such mappings are rare, and an
/// evicted entry only loses that second-order case.
#[map]
pub static SHARED_EXEC: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// Processes condemned by a kill verdict, by tgid, with their start time: filled by userspace
/// (the flagged process and the descendants it knows of) and by the fork probe (every child
/// of a condemned process). Not LRU: an eviction would let a condemned process's children
/// live; entries leave at process exit.
#[map]
pub static DOOMED: HashMap<u32, Doom> = HashMap::with_max_entries(DOOMED_MAX, 0);
