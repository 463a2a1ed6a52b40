//! Loading the embedded eBPF object, attaching its tracepoints, configuring the in-kernel kill
//! policy, and draining the ring buffer into decoded [`Event`]s.
//!
//! Nothing about this kernel's layout is compiled in: tracepoint field offsets come from the
//! format files ([`tracefs::tracepoint_offsets`]) and kernel struct offsets from its BTF
//! ([`btf::kernel_offsets`]); both are handed to the programs as load-time globals. Without
//! BTF the classic fork probe stands in for the BTF one, start times come from /proc, and the
//! in-kernel kill is unavailable (it could not tell an exempt process), each said once.
use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, RawTracePoint, TracePoint},
};
use procwatch_common::{ALLOW_MAX, Doom, ExeKey, config, ko, tp};
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinHandle};
use tracing::{debug, info, warn};

use super::{
    btf,
    decode::decode,
    event::{Event, EventKind},
    ia32::{self, Ia32},
    stats::SensorStats,
    tracefs,
};
use crate::{config::Ia32Mode, identity};

/// The eBPF object built by build.rs, embedded so the binary is self-contained.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("PROCWATCH_EBPF_OBJECT"));

/// The reader drains at most once per this interval: in a storm, wakeups are bounded by it;
/// an event after a quiet spell is read at once.
pub const BATCH_DELAY: Duration = Duration::from_millis(1);

/// Longest interval between drains, reached under sustained load (interrupt coalescing, as a
/// network card does it): each drain puts the thread to sleep and wakes it again, which on
/// this 2-CPU VM costs more than handling the few records of a 1 ms batch.
pub const MAX_BATCH_DELAY: Duration = Duration::from_millis(4);

/// Interval added per record of the previous drain: from about 4,000 records/s (an exec
/// storm of ~1,300/s) the interval grows to [`MAX_BATCH_DELAY`]; sparse events never wait
/// more than [`BATCH_DELAY`].
const DELAY_PER_RECORD: Duration = Duration::from_micros(250);

/// The pause before the next drain after one that found `records`.
pub fn batch_delay(records: usize) -> Duration {
    let records = u32::try_from(records).unwrap_or(u32::MAX);
    DELAY_PER_RECORD
        .saturating_mul(records)
        .clamp(BATCH_DELAY, MAX_BATCH_DELAY)
}

/// Default ring buffer size: room for ~2,900 exec records (over a second of the fastest exec
/// storm measured here) between two drains. The default of the `ring_buffer_kib` config key.
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;

/// Why the eBPF sensor could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// Not running as root (or without CAP_BPF + CAP_PERFMON).
    #[error(
        "loading eBPF programs needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); \
         run procwatch with sudo: {0}"
    )]
    Permission(String),
    /// tracefs is not mounted and could not be mounted.
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    /// The object did not load (verifier, missing BTF, kernel too old, ...).
    #[error("the kernel refused the eBPF object: {0}")]
    Load(String),
    /// No probe could be attached.
    #[error("no tracepoint could be attached: {0}")]
    NothingAttached(String),
    /// The in-kernel kill was asked for, but this kernel's BTF (needed to tell an exempt
    /// process and the scope in the kernel) is not available.
    #[error(
        "the in-kernel kill (--kill-on-alert, enforce:) needs the kernel's BTF to tell exempt \
         processes and the scope apart, and it is unavailable: {0}"
    )]
    NoKernelIdentity(String),
    /// The allowlist does not fit in the kernel map.
    #[error("the kill allowlist has {count} entries; the kernel map holds {max}")]
    AllowlistFull {
        /// Entries asked for.
        count: usize,
        /// Capacity.
        max: u32,
    },
    /// A map the object must have is missing or has the wrong type.
    #[error("the eBPF object has no usable map {name}: {detail}")]
    Map {
        /// Map name.
        name: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// How a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// A classic tracepoint in this tracefs category.
    Classic(&'static str),
    /// A BTF-enabled raw tracepoint of this name.
    Btf(&'static str),
    /// A raw tracepoint of this name (needs the kernel's BTF offsets to read anything).
    Raw(&'static str),
}

/// Which of two ways of seeing one thing (forks, execs) a probe belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkWay {
    /// Not one of two ways.
    None,
    /// The BTF probe of this family (preferred).
    Btf(Family),
    /// The classic probes of this family, attached only when the BTF one is not running.
    Classic(Family),
}

/// What a pair of alternative probes sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    /// New processes.
    Fork,
    /// Execs.
    Exec,
}

/// A program of the object and what it serves.
struct ProbeSpec {
    program: &'static str,
    hook: Hook,
    /// Kinds this probe produces or needs to produce correctly.
    kinds: &'static [EventKind],
    fork: ForkWay,
}

use EventKind::{Connect, Exec, Exit, FileOpen, Fork, Inject, IoUring, Memfd, Ptrace, WxMem};

const fn classic(
    program: &'static str,
    category: &'static str,
    kinds: &'static [EventKind],
) -> ProbeSpec {
    ProbeSpec {
        program,
        hook: Hook::Classic(category),
        kinds,
        fork: ForkWay::None,
    }
}

const PROBES: &[ProbeSpec] = &[
    // What the kernel executed (its path from the dentry, the script interpreter, the cwd).
    ProbeSpec {
        program: "btf_sched_process_exec",
        hook: Hook::Btf("sched_process_exec"),
        kinds: &[Exec],
        fork: ForkWay::Btf(Family::Exec),
    },
    ProbeSpec {
        fork: ForkWay::Classic(Family::Exec),
        ..classic("sched_process_exec", "sched", &[Exec])
    },
    classic("sys_enter_execve", "syscalls", &[Exec]),
    classic("sys_enter_execveat", "syscalls", &[Exec]),
    // Fork tracking names the children that later exec, so exec needs it too.
    ProbeSpec {
        program: "btf_sched_process_fork",
        hook: Hook::Btf("sched_process_fork"),
        kinds: &[Fork, Exec],
        fork: ForkWay::Btf(Family::Fork),
    },
    ProbeSpec {
        fork: ForkWay::Classic(Family::Fork),
        ..classic("sched_process_fork", "sched", &[Fork, Exec])
    },
    ProbeSpec {
        fork: ForkWay::Classic(Family::Fork),
        ..classic("sys_enter_clone", "syscalls", &[Fork, Exec])
    },
    ProbeSpec {
        fork: ForkWay::Classic(Family::Fork),
        ..classic("sys_enter_clone3", "syscalls", &[Fork, Exec])
    },
    // A condemned process's child dies on its first return to user space (its own exit from
    // the fork syscall), before it runs an instruction: kills that stick.
    classic("sys_exit_clone", "syscalls", &[Fork]),
    classic("sys_exit_clone3", "syscalls", &[Fork]),
    classic("sys_exit_fork", "syscalls", &[Fork]),
    classic("sys_exit_vfork", "syscalls", &[Fork]),
    classic("sys_enter_exit_group", "syscalls", &[Exit]),
    classic("sched_process_exit", "sched", &[Exit, Fork, Exec]),
    classic("sys_enter_ptrace", "syscalls", &[Ptrace]),
    // Reports a killed PTRACE_ATTACH with the tracee it really stopped (for the SIGCONT).
    classic("sys_exit_ptrace", "syscalls", &[Ptrace]),
    classic("sys_enter_connect", "syscalls", &[Connect]),
    classic("sys_enter_mprotect", "syscalls", &[WxMem]),
    classic("sys_enter_pkey_mprotect", "syscalls", &[WxMem]),
    classic("sys_enter_mmap", "syscalls", &[WxMem]),
    classic("sys_enter_memfd_create", "syscalls", &[Memfd]),
    classic("sys_enter_openat", "syscalls", &[FileOpen]),
    classic("sys_enter_openat2", "syscalls", &[FileOpen]),
    classic("sys_enter_open", "syscalls", &[FileOpen]),
    classic("sys_enter_process_vm_writev", "syscalls", &[Inject]),
    // /proc/PID/mem opened for writing, judged on the opened file at syscall exit.
    classic("sys_exit_openat", "syscalls", &[Inject]),
    classic("sys_exit_openat2", "syscalls", &[Inject]),
    classic("sys_exit_open", "syscalls", &[Inject]),
    // Traffic that names its destination without connect (UDP, TCP Fast Open).
    classic("sys_enter_sendto", "syscalls", &[Connect]),
    classic("sys_enter_sendmsg", "syscalls", &[Connect]),
    classic("sys_enter_sendmmsg", "syscalls", &[Connect]),
    classic("io_uring_submit_req", "io_uring", &[IoUring]),
    // 32-bit (int 0x80) syscalls, which no syscalls:* tracepoint sees.
    ProbeSpec {
        program: "raw_sys_enter",
        hook: Hook::Raw("sys_enter"),
        kinds: &[Ptrace, WxMem, Connect, Exec, Inject, FileOpen],
        fork: ForkWay::None,
    },
    // Their exits: a killed 32-bit PTRACE_ATTACH's tracee, a 32-bit open of /proc/PID/mem.
    ProbeSpec {
        program: "raw_sys_exit",
        hook: Hook::Raw("sys_exit"),
        kinds: &[Ptrace, Inject],
        fork: ForkWay::None,
    },
];

/// The probes of 32-bit syscalls, left out with `sensor.ia32`.
const IA32_PROBES: [&str; 2] = ["raw_sys_enter", "raw_sys_exit"];

impl ProbeSpec {
    /// `category:name` for a classic tracepoint, `tp_btf:name` for a BTF one.
    fn label(&self) -> String {
        match self.hook {
            Hook::Classic(category) => format!("{category}:{}", self.program),
            Hook::Btf(name) => format!("tp_btf:{name}"),
            Hook::Raw(name) => format!("raw_tp:{name}"),
        }
    }
}

/// How one probe fared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeStatus {
    /// `category:name` of the tracepoint.
    pub tracepoint: String,
    /// Attached and running.
    pub attached: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The in-kernel kill policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillPolicy {
    /// SIGKILL on PTRACE_ATTACH / PTRACE_SEIZE.
    pub ptrace: bool,
    /// SIGKILL on a W+X mprotect / pkey_mprotect / mmap.
    pub wx_mem: bool,
    /// Executables exempt (and so what they fork, until it execs something else), named by
    /// path and matched by what the file is (device and inode, resolved here).
    pub allow_exe_paths: Vec<PathBuf>,
    /// Apply the policy only to this process and its descendants (None: every process).
    pub scope_pid: Option<u32>,
    /// Users (by uid) exempt from the policy.
    pub allow_uids: Vec<u32>,
}

/// Options for loading the eBPF sensor.
#[derive(Debug, Clone)]
pub struct EbpfOptions {
    /// Ring buffer size in bytes (a power of two multiple of the page size).
    pub ring_bytes: u32,
    /// Event kinds wanted; probes serving none of them are not attached.
    pub kinds: BTreeSet<EventKind>,
    /// Kill policy to install before the first event.
    pub kill: KillPolicy,
    /// File opens under these prefixes are reported (`*` is one whole path component).
    pub watched: Vec<PathBuf>,
    /// Whether the probes of 32-bit syscalls run (`sensor.ia32`).
    pub ia32: Ia32Mode,
}

impl KillPolicy {
    /// True when some syscall is killed in the kernel.
    pub fn kills(&self) -> bool {
        self.ptrace || self.wx_mem
    }
}

impl Default for EbpfOptions {
    fn default() -> Self {
        Self {
            ring_bytes: DEFAULT_RING_BYTES,
            kinds: EventKind::ALL.into_iter().collect(),
            kill: KillPolicy::default(),
            watched: crate::config::Baseline::default().watched_prefixes,
            ia32: Ia32Mode::Auto,
        }
    }
}

/// The loaded eBPF sensor. Owns the programs (dropping it detaches them) and the policy maps.
pub struct EbpfSensor {
    ebpf: Ebpf,
    probes: Vec<ProbeStatus>,
    tp_offsets: [u32; tp::COUNT],
    kernel_offsets: Result<[u32; ko::COUNT], String>,
    /// What the allowlist maps hold now (inserted before stale ones are deleted).
    allow_exe: BTreeSet<ExeKey>,
    allow_uids: BTreeSet<u32>,
    /// Watched prefixes in the kernel's map now.
    watched_count: usize,
}

impl EbpfSensor {
    /// Loads the object, configures it, and attaches the probes `opts.kinds` need.
    pub fn load(opts: &EbpfOptions) -> Result<Self, EbpfError> {
        // Say so first: without the privilege every later step fails with a misleading error.
        if !privileged() {
            return Err(EbpfError::Permission(
                "not root, and CAP_BPF + CAP_PERFMON are not both held".into(),
            ));
        }
        raise_memlock_limit();
        let tracefs_root = tracefs::ensure_mounted()?;
        if OBJECT.is_empty() {
            return Err(EbpfError::Load(
                "this binary was built without an eBPF object".into(),
            ));
        }
        let tp_offsets = tracefs::tracepoint_offsets(&tracefs_root);
        let kernel_offsets =
            btf::kernel_offsets(Path::new(btf::VMLINUX_BTF)).map_err(|e| e.to_string());
        if let Err(e) = &kernel_offsets {
            warn!(
                error = %e,
                "no kernel BTF: start times of new processes come from /proc (checked against \
                 the event), forks are told from threads by clone flags, and the in-kernel kill \
                 is unavailable"
            );
        }
        let unknown = [u32::MAX; ko::COUNT];
        let ko_global = kernel_offsets.as_ref().unwrap_or(&unknown);
        let ebpf = EbpfLoader::new()
            .map_max_entries("EVENTS", opts.ring_bytes)
            .override_global("TP_OFFSETS", &tp_offsets, true)
            .override_global("KERNEL_OFFSETS", ko_global, true)
            .load(OBJECT)
            .map_err(|e| classify_load_error(&error_chain(&e)))?;

        let mut sensor = Self {
            ebpf,
            probes: Vec::new(),
            tp_offsets,
            kernel_offsets,
            allow_exe: BTreeSet::new(),
            allow_uids: BTreeSet::new(),
            watched_count: 0,
        };
        sensor.write_config(config::SELF_TGID, u64::from(std::process::id()))?;
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        sensor.write_config(config::PARENT_TGID, u64::try_from(parent).unwrap_or(0))?;
        if tp_offsets[tp::EXIT_GROUP_DEAD] == tp::UNKNOWN {
            warn!(
                "sched_process_exit has no group_dead field; a leader's exit stands for its process"
            );
        }
        sensor.set_kill_policy(&opts.kill)?;
        sensor.set_watched(&opts.watched)?;
        // Asked before the probes are attached: the child it forks is no event.
        let ia32 = ia32::emulation();
        let watch_ia32 = match opts.ia32 {
            Ia32Mode::On => true,
            Ia32Mode::Off => false,
            // Only a kernel known to refuse 32-bit syscalls is spared the cost.
            Ia32Mode::Auto => ia32 != Ia32::Disabled,
        };
        sensor.attach_all(&opts.kinds, watch_ia32)?;
        sensor.say_ia32(ia32, opts.ia32);
        Ok(sensor)
    }

    fn attach_all(&mut self, kinds: &BTreeSet<EventKind>, ia32: bool) -> Result<(), EbpfError> {
        // Loaded once, only if a BTF program is wanted.
        let mut kernel_btf: Option<Result<Btf, String>> = None;
        let mut btf_running: BTreeSet<Family> = BTreeSet::new();
        let mut attached = 0usize;
        for spec in PROBES {
            if !spec.kinds.iter().any(|k| kinds.contains(k)) {
                continue;
            }
            if let ForkWay::Classic(f) = spec.fork
                && btf_running.contains(&f)
            {
                continue;
            }
            if IA32_PROBES.contains(&spec.program) && !ia32 {
                continue;
            }
            let result = match spec.hook {
                Hook::Classic(category) => {
                    let missing = tracefs::missing_fields(&self.tp_offsets, spec.program);
                    if missing.is_empty() {
                        attach_classic(&mut self.ebpf, spec.program, category)
                    } else {
                        Err(format!(
                            "its format file lacks {} (or cannot be read)",
                            missing.join(", ")
                        ))
                    }
                }
                Hook::Raw(name) => match &self.kernel_offsets {
                    Err(e) => Err(format!("no kernel BTF: {e}")),
                    Ok(_) => attach_raw(&mut self.ebpf, spec.program, name),
                },
                Hook::Btf(name) => match &self.kernel_offsets {
                    Err(e) => Err(format!("no kernel BTF: {e}")),
                    Ok(_) => {
                        let btf = kernel_btf
                            .get_or_insert_with(|| Btf::from_sys_fs().map_err(|e| e.to_string()));
                        match btf {
                            Ok(btf) => attach_btf(&mut self.ebpf, spec.program, name, btf),
                            Err(e) => Err(format!("kernel BTF: {e}")),
                        }
                    }
                },
            };
            let label = spec.label();
            match &result {
                Ok(()) => {
                    attached += 1;
                    debug!(probe = %label, "attached");
                    if let ForkWay::Btf(f) = spec.fork {
                        btf_running.insert(f);
                    }
                    if spec.program == "sys_exit_ptrace" {
                        self.write_config(config::PTRACE_EXIT_ON, 1)?;
                    }
                    if spec.program == "raw_sys_exit" {
                        self.write_config(config::IA32_EXIT_ON, 1)?;
                    }
                }
                Err(e) if spec.fork == ForkWay::Btf(Family::Exec) => warn!(
                    probe = %label,
                    error = %e,
                    "BTF exec probe not attached; the classic exec tracepoint stands in (paths \
                     are then the ones given to execve, resolved in user space; no script \
                     interpreter or working directory from the kernel)"
                ),
                Err(e) if spec.fork == ForkWay::Btf(Family::Fork) => warn!(
                    probe = %label,
                    error = %e,
                    "BTF fork probe not attached; the classic fork tracepoint stands in (a \
                     child's start time then comes from /proc, threads are told apart by \
                     clone flags read from user memory)"
                ),
                Err(e) => {
                    warn!(probe = %label, error = %e, "probe not attached; continuing without it")
                }
            }
            self.probes.push(ProbeStatus {
                tracepoint: label,
                attached: result.is_ok(),
                error: result.err(),
            });
        }
        if attached == 0 {
            let reasons: Vec<String> = self
                .probes
                .iter()
                .filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.tracepoint)))
                .collect();
            return Err(EbpfError::NothingAttached(reasons.join("; ")));
        }
        let missing = self.probes_missing();
        if missing.is_empty() {
            info!(attached, of = self.probes.len(), "eBPF sensor loaded");
        } else {
            warn!(
                attached,
                of = self.probes.len(),
                probes_missing = %missing.join(","),
                "eBPF sensor loaded with probes missing: what they report will not be seen"
            );
        }
        Ok(())
    }

    /// Says whether 32-bit (`int 0x80`) syscalls exist here and whether they are watched:
    /// no `syscalls:*` tracepoint sees them, only the raw `sys_enter`/`sys_exit` probes.
    fn say_ia32(&self, state: Ia32, mode: Ia32Mode) {
        let watched = self
            .probes
            .iter()
            .find(|p| p.tracepoint == "raw_tp:sys_enter")
            .map(|p| p.attached);
        match (state, watched) {
            (Ia32::Enabled, Some(true)) => info!(
                sensor_ia32 = ?mode,
                "32-bit syscalls (int 0x80): ia32 emulation is enabled; watched by raw_tp:sys_enter"
            ),
            (Ia32::Enabled, Some(false)) => warn!(
                "32-bit syscalls (int 0x80): ia32 emulation is enabled and raw_tp:sys_enter is not attached: ptrace, W+X, connect and exec made that way are NOT seen"
            ),
            (Ia32::Enabled, None) if mode == Ia32Mode::Off => warn!(
                "32-bit syscalls (int 0x80): ia32 emulation is enabled and sensor.ia32 is off: ptrace, W+X, connect, opens and exec made that way are NOT seen"
            ),
            (Ia32::Disabled, None) => info!(
                "32-bit syscalls (int 0x80): ia32 emulation is disabled; nothing to watch (sensor.ia32 probes not attached)"
            ),
            (state, _) => {
                info!(ia32_emulation = %state, sensor_ia32 = ?mode, "32-bit syscalls (int 0x80)")
            }
        }
    }

    /// Probes that were tried and are not attached (`category:name` or `tp_btf:name`).
    pub fn probes_missing(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter(|p| !p.attached)
            .map(|p| p.tracepoint.clone())
            .collect()
    }

    /// The tracepoint field offsets handed to the programs (`tp` slots).
    pub fn tracepoint_offsets(&self) -> &[u32; tp::COUNT] {
        &self.tp_offsets
    }

    /// The kernel struct offsets handed to the programs (`ko` slots), or why there are none.
    pub fn kernel_offsets(&self) -> Result<&[u32; ko::COUNT], &str> {
        self.kernel_offsets.as_ref().map_err(String::as_str)
    }

    /// Which probes are attached and why others are not.
    pub fn probes(&self) -> &[ProbeStatus] {
        &self.probes
    }

    /// Puts the watched prefixes in the kernel's map; file opens elsewhere stay there. Also
    /// on SIGHUP, while the probe runs: a shorter list is cut first (the count), a longer one
    /// counted last, so the probe never reads a slot that is not written; a slot rewritten in
    /// place may match broadly for a moment, which user space's exact rule absorbs.
    pub fn set_watched(&mut self, prefixes: &[PathBuf]) -> Result<(), EbpfError> {
        let wanted = super::watched::kernel_prefixes(prefixes.iter().map(PathBuf::as_path));
        let shrink = wanted.len() < self.watched_count;
        if shrink {
            self.write_config(config::WATCH_COUNT, wanted.len() as u64)?;
        }
        let map = self.ebpf.map_mut("WATCH_PREFIXES").ok_or(EbpfError::Map {
            name: "WATCH_PREFIXES",
            detail: "missing".into(),
        })?;
        let mut array: Array<&mut MapData, procwatch_common::WatchPrefix> = Array::try_from(map)
            .map_err(|e| EbpfError::Map {
                name: "WATCH_PREFIXES",
                detail: e.to_string(),
            })?;
        for (i, p) in (0u32..).zip(&wanted) {
            array.set(i, p, 0).map_err(|e| EbpfError::Map {
                name: "WATCH_PREFIXES",
                detail: e.to_string(),
            })?;
        }
        // The count last: the probe never reads a slot before it is written.
        self.write_config(config::WATCH_COUNT, wanted.len() as u64)?;
        self.watched_count = wanted.len();
        Ok(())
    }

    fn write_config(&mut self, slot: u32, value: u64) -> Result<(), EbpfError> {
        let map = self.ebpf.map_mut("CONFIG").ok_or(EbpfError::Map {
            name: "CONFIG",
            detail: "missing".into(),
        })?;
        let mut array: Array<&mut MapData, u64> =
            Array::try_from(map).map_err(|e| EbpfError::Map {
                name: "CONFIG",
                detail: e.to_string(),
            })?;
        array.set(slot, value, 0).map_err(|e| EbpfError::Map {
            name: "CONFIG",
            detail: e.to_string(),
        })
    }

    /// Installs a kill policy; takes effect for the next syscall.
    ///
    /// The allowlists are changed by inserting the new entries before deleting the stale
    /// ones, so a reload never has a moment where an executable or user that stays exempt is
    /// missing from the kernel's maps while kills are on. An allowlisted path that cannot be
    /// resolved is reported and not exempt (there is no file to run from it).
    pub fn set_kill_policy(&mut self, policy: &KillPolicy) -> Result<(), EbpfError> {
        self.install(policy, true)
    }

    /// Resolves the allowlisted paths of `policy` again and updates the kernel's allowlist if
    /// a file changed (a package upgrade replaces an executable with a new inode). Returns
    /// true when something changed. Quiet about paths that still cannot be resolved.
    pub fn refresh_allowlist(&mut self, policy: &KillPolicy) -> Result<bool, EbpfError> {
        let (ids, _) = identity::resolve_all(&policy.allow_exe_paths);
        let keys: BTreeSet<ExeKey> = ids.into_iter().map(identity::ExeId::key).collect();
        let uids: BTreeSet<u32> = policy.allow_uids.iter().copied().collect();
        if keys == self.allow_exe && uids == self.allow_uids {
            return Ok(false);
        }
        self.install(policy, false)?;
        Ok(true)
    }

    fn install(&mut self, policy: &KillPolicy, report: bool) -> Result<(), EbpfError> {
        if policy.kills()
            && let Err(e) = &self.kernel_offsets
        {
            return Err(EbpfError::NoKernelIdentity(e.clone()));
        }
        let (ids, unresolved) = identity::resolve_all(&policy.allow_exe_paths);
        for (path, why) in unresolved.iter().filter(|_| report) {
            warn!(path = %path.display(), error = %why, "allowlisted executable not found; nothing is exempt by it");
        }
        let keys: BTreeSet<ExeKey> = ids.into_iter().map(identity::ExeId::key).collect();
        let uids: BTreeSet<u32> = policy.allow_uids.iter().copied().collect();
        for (count, what) in [(keys.len(), "ALLOW_EXE"), (uids.len(), "ALLOW_UID")] {
            if count > ALLOW_MAX as usize {
                debug!(map = what, count, "allowlist too large");
                return Err(EbpfError::AllowlistFull {
                    count,
                    max: ALLOW_MAX,
                });
            }
        }
        let stale_keys = sync_set(&mut self.ebpf, "ALLOW_EXE", &keys, &self.allow_exe)?;
        self.allow_exe = keys.clone();
        let stale_uids = sync_set(&mut self.ebpf, "ALLOW_UID", &uids, &self.allow_uids)?;
        self.allow_uids = uids;
        // Scope before the switches, so a policy turned on never runs unscoped.
        self.write_config(config::SCOPE_TGID, policy.scope_pid.map_or(0, u64::from))?;
        self.write_config(config::KILL_PTRACE, u64::from(policy.ptrace))?;
        self.write_config(config::KILL_WX, u64::from(policy.wx_mem))?;
        // Only now what is no longer exempt goes.
        remove_all(&mut self.ebpf, "ALLOW_EXE", &stale_keys)?;
        remove_all(&mut self.ebpf, "ALLOW_UID", &stale_uids)?;
        Ok(())
    }

    /// Condemns the process `pid` that started at `start_ticks` in the kernel: each child it
    /// forks from now on is condemned too and killed before it runs, and so is it when it
    /// forks. Needs the kernel's BTF (start times); without it this is refused.
    pub fn condemn(&mut self, pid: u32, start_ticks: u64) -> Result<(), EbpfError> {
        if let Err(e) = &self.kernel_offsets {
            return Err(EbpfError::NoKernelIdentity(e.clone()));
        }
        let map_err = |e: aya::maps::MapError| EbpfError::Map {
            name: "DOOMED",
            detail: e.to_string(),
        };
        let map = self.ebpf.map_mut("DOOMED").ok_or(EbpfError::Map {
            name: "DOOMED",
            detail: "missing".into(),
        })?;
        let mut hash: BpfHashMap<&mut MapData, u32, Doom> =
            BpfHashMap::try_from(map).map_err(map_err)?;
        let doom = Doom {
            start_ticks,
            ns_per_tick: 1_000_000_000 / crate::identity::clk_tck(),
        };
        hash.insert(pid, doom, 0).map_err(map_err)
    }

    /// Starts the task that drains the ring buffer into `tx` until `stop` fires, then drains
    /// what is left, refreshes the loss counters, and ends.
    pub fn spawn_reader(
        &mut self,
        tx: mpsc::Sender<Event>,
        stats: Arc<SensorStats>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, EbpfError> {
        let ring = self.ebpf.take_map("EVENTS").ok_or(EbpfError::Map {
            name: "EVENTS",
            detail: "missing or taken".into(),
        })?;
        let ring = RingBuf::try_from(ring).map_err(|e| EbpfError::Map {
            name: "EVENTS",
            detail: e.to_string(),
        })?;
        let lost = self.ebpf.take_map("LOST").ok_or(EbpfError::Map {
            name: "LOST",
            detail: "missing or taken".into(),
        })?;
        let lost: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(lost).map_err(|e| EbpfError::Map {
                name: "LOST",
                detail: e.to_string(),
            })?;
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the AsyncFd
        // (which owns the RingBuf) is dropped.
        let fd = unsafe { AsyncFd::register(ring) }.map_err(|e| EbpfError::Map {
            name: "EVENTS",
            detail: e.to_string(),
        })?;
        Ok(tokio::spawn(read_loop(fd, lost, tx, stats, stop)))
    }
}

async fn read_loop(
    mut fd: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    tx: mpsc::Sender<Event>,
    stats: Arc<SensorStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut loss_poll = tokio::time::interval(Duration::from_millis(500));
    loss_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A drain on a clock as well as on wakeups, as libbpf's users poll with a timeout: the
    // kernel wakes a reader only when a record lands exactly where the reader stands, so a
    // missed wakeup would otherwise leave records in the ring until the next one. Records
    // found this way are counted (`missed_wakeups`).
    let mut safety = tokio::time::interval(SAFETY_DRAIN);
    safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_drain = tokio::time::Instant::now();
    let mut delay = BATCH_DELAY;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => {
                        warn!(error = %e, "ring buffer poll failed; eBPF reader stops");
                        break;
                    }
                };
                // At most one drain per `delay`: in a storm a batch collects meanwhile
                // (records submitted then do not wake us again: the kernel wakes a reader
                // only once it has caught up); sparse events are read at once.
                tokio::time::sleep_until(last_drain + delay).await;
                let Some(d) = drain(guard.get_inner_mut(), &tx, &stats).await else {
                    break;
                };
                last_drain = tokio::time::Instant::now();
                delay = batch_delay(d.records);
                // A drain cut short leaves the readiness set, so the next pass (after stop
                // requests and loss polls have had their turn) reads on at once.
                if !d.more {
                    guard.clear_ready();
                }
            }
            _ = safety.tick(), if last_drain.elapsed() >= SAFETY_DRAIN => {
                let Some(d) = drain(fd.get_mut(), &tx, &stats).await else {
                    break;
                };
                last_drain = tokio::time::Instant::now();
                if d.records > 0 {
                    stats.missed_wakeup();
                    debug!(records = d.records, "ring buffer records found without a wakeup");
                }
            }
            _ = loss_poll.tick() => refresh_lost(&lost, &stats),
            _ = stop.changed() => break,
        }
    }
    // Whatever was submitted before the stop is still delivered.
    let end = tokio::time::Instant::now() + FINAL_DRAIN_MAX;
    let mut cut_short = false;
    while let Some(Drained { more: true, .. }) = drain(fd.get_mut(), &tx, &stats).await {
        if tokio::time::Instant::now() >= end {
            cut_short = true;
            break;
        }
    }
    if cut_short {
        // Whatever is still in the ring is not delivered: counted, not silently left behind.
        let ring = fd.get_mut();
        let mut left = 0u64;
        while left < UNDELIVERED_COUNT_MAX && ring.next().is_some() {
            left += 1;
        }
        stats.undelivered_at_stop(left);
        warn!(
            records = left,
            "stopped while events kept arriving: records still in the ring were not delivered"
        );
    }
    refresh_lost(&lost, &stats);
}

/// Longest a record can wait in the ring when the reader's wakeup is missed.
const SAFETY_DRAIN: Duration = Duration::from_millis(100);

/// Most records taken per drain: stop requests and loss polls are served between drains even
/// when a storm never lets the ring run empty.
const DRAIN_MAX: usize = 4096;

/// How long the reader goes on delivering what the ring holds after a stop request: in a storm
/// new records keep arriving, and those submitted after the stop need not be waited for.
const FINAL_DRAIN_MAX: Duration = Duration::from_secs(1);

/// Most records counted (not delivered) when the final drain is cut short: a ring of 1 GiB
/// holds fewer of the smallest records.
const UNDELIVERED_COUNT_MAX: u64 = 1 << 24;

/// What one drain did.
#[derive(Debug, Clone, Copy)]
struct Drained {
    /// Records taken off the ring (malformed ones included).
    records: usize,
    /// The drain stopped at [`DRAIN_MAX`], not at an empty ring.
    more: bool,
}

/// Decodes the records available now, at most [`DRAIN_MAX`], and sends the events on; `None`
/// when the consumer has gone away.
async fn drain(
    ring: &mut RingBuf<MapData>,
    tx: &mpsc::Sender<Event>,
    stats: &SensorStats,
) -> Option<Drained> {
    // Decode under the ring borrow, send after: a send may wait for the consumer.
    let mut batch = Vec::with_capacity(256);
    let mut records = 0;
    loop {
        let mut empty = false;
        while batch.len() < 256 {
            match ring.next() {
                Some(item) => {
                    records += 1;
                    batch.extend(decode_counted(&item, stats));
                }
                None => {
                    empty = true;
                    break;
                }
            }
        }
        for event in batch.drain(..) {
            let kind = event.kind();
            if tx.send(event).await.is_err() {
                return None;
            }
            stats.received(kind);
        }
        if empty || records >= DRAIN_MAX {
            return Some(Drained {
                records,
                more: !empty,
            });
        }
    }
}

/// Decodes one record; a bad one is counted as malformed and skipped, never a panic.
fn decode_counted(bytes: &[u8], stats: &SensorStats) -> Option<Event> {
    match decode(bytes) {
        Ok(event) => Some(event),
        Err(e) => {
            stats.malformed();
            debug!(error = %e, "malformed ring buffer record skipped");
            None
        }
    }
}

fn refresh_lost(lost: &PerCpuArray<MapData, u64>, stats: &SensorStats) {
    for kind in EventKind::ALL {
        match lost.get(&kind.tag(), 0) {
            Ok(per_cpu) => stats.set_kernel_lost(kind, per_cpu.iter().sum()),
            Err(e) => debug!(error = %e, "reading LOST failed"),
        }
    }
}

fn attach_classic(ebpf: &mut Ebpf, program: &str, category: &str) -> Result<(), String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?;
    let tp: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
    tp.load()
        .map_err(|e| format!("load (verifier) failed: {}", error_chain(&e)))?;
    tp.attach(category, program)
        .map_err(|e| format!("attach failed: {}", error_chain(&e)))?;
    Ok(())
}

fn attach_btf(ebpf: &mut Ebpf, program: &str, name: &str, btf: &Btf) -> Result<(), String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?;
    let tp: &mut BtfTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
    tp.load(name, btf)
        .map_err(|e| format!("load (verifier) failed: {}", error_chain(&e)))?;
    tp.attach()
        .map_err(|e| format!("attach failed: {}", error_chain(&e)))?;
    Ok(())
}

fn attach_raw(ebpf: &mut Ebpf, program: &str, name: &str) -> Result<(), String> {
    let prog = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?;
    let tp: &mut RawTracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
    tp.load()
        .map_err(|e| format!("load (verifier) failed: {}", error_chain(&e)))?;
    tp.attach(name)
        .map_err(|e| format!("attach failed: {}", error_chain(&e)))?;
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn classify_load_error(message: &str) -> EbpfError {
    let lower = message.to_lowercase();
    if lower.contains("operation not permitted") || lower.contains("permission denied") {
        EbpfError::Permission(message.to_string())
    } else {
        EbpfError::Load(message.to_string())
    }
}

/// Inserts every key of `want` into the hash map `name` (value 1) and returns the keys of
/// `have` that are no longer wanted (for [`remove_all`], once the new policy is in force).
fn sync_set<K: aya::Pod + Ord + Copy + std::hash::Hash>(
    ebpf: &mut Ebpf,
    name: &'static str,
    want: &BTreeSet<K>,
    have: &BTreeSet<K>,
) -> Result<Vec<K>, EbpfError> {
    let map_err = |e: aya::maps::MapError| EbpfError::Map {
        name,
        detail: e.to_string(),
    };
    let map = ebpf.map_mut(name).ok_or(EbpfError::Map {
        name,
        detail: "missing".into(),
    })?;
    let mut hash: BpfHashMap<&mut MapData, K, u8> = BpfHashMap::try_from(map).map_err(map_err)?;
    for key in want {
        hash.insert(key, 1, 0).map_err(map_err)?;
    }
    let want: HashSet<K> = want.iter().copied().collect();
    Ok(have.iter().filter(|k| !want.contains(k)).copied().collect())
}

/// Deletes `keys` from the hash map `name` (a key already gone is fine).
fn remove_all<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    keys: &[K],
) -> Result<(), EbpfError> {
    if keys.is_empty() {
        return Ok(());
    }
    let map_err = |e: aya::maps::MapError| EbpfError::Map {
        name,
        detail: e.to_string(),
    };
    let map = ebpf.map_mut(name).ok_or(EbpfError::Map {
        name,
        detail: "missing".into(),
    })?;
    let mut hash: BpfHashMap<&mut MapData, K, u8> = BpfHashMap::try_from(map).map_err(map_err)?;
    for key in keys {
        if let Err(e) = hash.remove(key)
            && !matches!(e, aya::maps::MapError::KeyNotFound)
        {
            return Err(map_err(e));
        }
    }
    Ok(())
}

/// Root, or CAP_BPF (39) and CAP_PERFMON (38) in the effective set.
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    caps & (1 << 38) != 0 && caps & (1 << 39) != 0
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to the memory cgroup,
/// where failing to raise the limit (no CAP_SYS_RESOURCE) is harmless.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialised rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11 (memory cgroup accounting)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_records_are_counted_and_skipped() {
        let stats = SensorStats::default();
        assert!(decode_counted(&[0u8; 3], &stats).is_none());
        let mut unknown = [0u8; 64];
        unknown[..4].copy_from_slice(&77u32.to_ne_bytes());
        assert!(decode_counted(&unknown, &stats).is_none());
        assert_eq!(stats.snapshot().malformed, 2);
        assert_eq!(stats.snapshot().received_total, 0);
    }

    #[test]
    fn drains_space_out_under_load_only() {
        // One exec (fork, exec, exit) is read at the quick pace.
        assert_eq!(batch_delay(0), BATCH_DELAY);
        assert_eq!(batch_delay(3), BATCH_DELAY);
        assert!(batch_delay(6) > BATCH_DELAY && batch_delay(6) < MAX_BATCH_DELAY);
        assert_eq!(batch_delay(16), MAX_BATCH_DELAY);
        assert_eq!(batch_delay(usize::MAX), MAX_BATCH_DELAY);
    }

    #[test]
    fn every_kind_has_a_probe() {
        for kind in EventKind::ALL {
            assert!(
                PROBES.iter().any(|p| p.kinds.contains(&kind)),
                "{kind:?} has no probe"
            );
        }
    }
}
