//! Every map the programs share, with its sizing rationale.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use procwatch_common::{PathKey, PendingArgs, config, kind};

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

/// Parent tgid of every process forked while procwatch runs, so exec events carry a ppid
/// even when the process is gone before userspace could read /proc.
#[map]
pub static PARENT: LruHashMap<u32, u32> = LruHashMap::with_max_entries(65536, 0);

/// `clone`/`clone3` flags of the calling thread, read at `sched_process_fork` to tell a new
/// thread (not reported) from a new process.
#[map]
pub static CLONE_FLAGS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(8192, 0);

/// Exit status passed to `exit_group`, keyed by tgid, reported with the exit event.
#[map]
pub static EXIT_CODES: LruHashMap<u32, i32> = LruHashMap::with_max_entries(8192, 0);

/// Executables exempt from the kill policy, by the path they were exec'd as.
#[map]
pub static ALLOW_EXE: HashMap<PathKey, u8> = HashMap::with_max_entries(256, 0);

/// Processes exempt from the kill policy: an allowlisted exec, inherited across fork.
#[map]
pub static EXEMPT: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU scratch for building a zero-padded `PathKey`.
#[map]
pub static PATH_SCRATCH: PerCpuArray<PathKey> = PerCpuArray::with_max_entries(1, 0);

/// Users exempt from the kill policy (whitelisted users), by uid.
#[map]
pub static ALLOW_UID: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);
