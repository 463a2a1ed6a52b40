//! The process table: what procwatch knows about every process, kept by exec/fork/exit events
//! and refreshed by /proc samples. One task owns it; nothing else mutates it.
//!
//! Memory stays bounded: an exited process is kept for a grace period (late events, the API)
//! and then dropped; past `max_processes` the oldest exited entries go first, then the oldest
//! live ones — every eviction is counted.
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    ffi::OsString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use crate::procfs::{ConnectFact, ExeState};
use crate::{config::Rule, identity::ExeId, sensor::SensorKind};

/// A W+X request seen by the sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WxFact {
    /// Which syscall.
    pub syscall: &'static str,
    /// Start address.
    pub start: u64,
    /// Length.
    pub len: u64,
}

/// A ptrace attach/seize seen by the sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtraceFact {
    /// Request name.
    pub request: &'static str,
    /// Target pid.
    pub target: u64,
}

/// Most facts of one kind kept per process (a tight connect loop must not grow memory).
pub const MAX_FACTS: usize = 16;

/// A process holding the other end of a shell's stdio (or its parent) while connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFact {
    /// Its pid.
    pub pid: u32,
    /// Its executable.
    pub exe: Option<PathBuf>,
    /// The remote end of its connection.
    pub remote: std::net::SocketAddr,
    /// It accepted that connection (a bind shell's server).
    pub accepted: bool,
}

/// Most program images kept in a process's exec chain (the first and the latest ones).
pub const MAX_CHAIN: usize = 8;

/// One program image a process ran, as its exec reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecImage {
    /// The executable (the kernel's resolved path when it had one).
    pub exe: Option<PathBuf>,
    /// The script or loaded program, when there was one.
    pub program: Option<PathBuf>,
    /// When the exec happened: CLOCK_MONOTONIC ns (the event's kernel time; 0 when unknown).
    pub ktime_ns: u64,
}

/// Everything known about one process.
#[derive(Debug, Clone)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent pid (0 when unknown).
    pub ppid: u32,
    /// The process that forked this one, as the kernel reported the fork (0 when the fork
    /// was not seen); unlike `ppid` it stays when the process is re-parented.
    pub fork_parent: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Short name (`comm`).
    pub name: OsString,
    /// Executable path as the kernel reports it, without the ` (deleted)` suffix.
    pub exe: Option<PathBuf>,
    /// What the executable link says about the file.
    pub exe_state: ExeState,
    /// For an exe deleted or replaced: whether its path now names a root-owned file only root
    /// could have put there (a package upgrade); `None` until a full /proc read said.
    pub exe_successor_root: Option<bool>,
    /// A full re-read was asked for to learn `exe_successor_root` (asked once per image).
    pub successor_asked: bool,
    /// The executable file itself (device and inode): from the kernel at exec, inherited at
    /// fork, or read from /proc once needed. What allowlists compare.
    pub exe_id: Option<ExeId>,
    /// Command line.
    pub cmdline: Vec<OsString>,
    /// Start time in clock ticks since boot (0 when unknown); with `pid` it names the process.
    pub start_ticks: u64,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// sha256 of the executable, once hashed.
    pub sha256: Option<String>,
    /// CPU use over the last sampling window, percent of one core.
    pub cpu_pct: f64,
    /// utime + stime at the last sample, and when it was taken.
    pub cpu_sample: Option<(u64, Instant)>,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Pid of the tracer, 0 when not traced.
    pub tracer_pid: u32,
    /// A kernel thread (never has a command line; never killed).
    pub kernel_thread: bool,
    /// Exited but not yet reaped by its parent.
    pub zombie: bool,
    /// W+X requests seen by the sensor.
    pub wx_events: Vec<WxFact>,
    /// W+X regions found in /proc/PID/maps (as `start-end perms path`).
    pub wx_maps: Vec<String>,
    /// ptrace attach/seize requests made by this process.
    pub ptrace_events: Vec<PtraceFact>,
    /// Outbound connects seen by the sensor (distinct destinations, bounded).
    pub connects: Vec<ConnectFact>,
    /// When /proc last showed its executable (CLOCK_MONOTONIC ns just after the exe link was
    /// read; 0 never): an exec event of that same file older than this is an image already
    /// judged.
    pub identity_ns: u64,
    /// Outbound connections found in /proc/net at the last sample.
    pub conns: Vec<ConnectFact>,
    /// Sockets it listens on and connections it accepted, as sweeps found them (each once;
    /// at most [`MAX_FACTS`]): what the baseline was told.
    pub servers: Vec<crate::procfs::sample::ServerFact>,
    /// Which of fds 0, 1, 2 are network sockets, as `(fd, remote)`.
    pub stdio_net: Vec<(u8, Option<ConnectFact>)>,
    /// memfd names created.
    pub memfds: Vec<OsString>,
    /// Who told us about this process first.
    pub source: SensorKind,
    /// When the process exited (None while alive).
    pub exited: Option<Instant>,
    /// The kernel reported its exit (an exit event): final for this pid and start time. An
    /// exit a sweep only inferred (the process was not found) is not: a later read of it
    /// proves it alive.
    pub exit_event: bool,
    /// Rules already reported for this process (alert dedup).
    pub reported: BTreeSet<Rule>,
    /// When procwatch first learnt of it.
    pub created_at: Instant,
    /// Names this entry's current program image (new for each entry and each exec), so that
    /// what was read about one image is never applied to another under the same pid.
    pub image: u64,
    /// The file the current image loads or interprets (a script, the loader's program).
    pub program: Option<super::program::Program>,
    /// Images this process ran, oldest first (bounded: the first one and the latest ones).
    pub exec_chain: Vec<ExecImage>,
    /// When the current image began (CLOCK_BOOTTIME ns): its exec, or the process's start
    /// for an image inherited at fork. 0 when unknown. Part of the exec id.
    pub image_boot_ns: u64,
    /// cgroup (v2) id, from the kernel at exec.
    pub cgroup_id: Option<u64>,
    /// cgroup path (`/proc/PID/cgroup`, v2 line), once read.
    pub cgroup: Option<String>,
    /// A shell by what the file is (an installed shell, or a copy of one by digest).
    pub shell: bool,
    /// The relay of this shell's stdio, when one holds a network connection.
    pub relay: Option<RelayFact>,
    /// The rules' last verdict on this process when any rule held (the API shows it).
    pub score: Option<std::sync::Arc<crate::score::Scored>>,
}

/// A number no other process image in this run has.
fn next_image() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Process {
    /// A process known only by its pid so far.
    pub fn new(pid: u32, source: SensorKind) -> Self {
        Self {
            pid,
            ppid: 0,
            fork_parent: 0,
            uid: u32::MAX,
            gid: u32::MAX,
            name: OsString::new(),
            exe: None,
            exe_state: ExeState::Unknown,
            exe_successor_root: None,
            successor_asked: false,
            exe_id: None,
            cmdline: Vec::new(),
            start_ticks: 0,
            cwd: None,
            sha256: None,
            cpu_pct: 0.0,
            cpu_sample: None,
            rss_bytes: 0,
            tracer_pid: 0,
            kernel_thread: false,
            zombie: false,
            wx_events: Vec::new(),
            wx_maps: Vec::new(),
            ptrace_events: Vec::new(),
            connects: Vec::new(),
            identity_ns: 0,
            conns: Vec::new(),
            servers: Vec::new(),
            stdio_net: Vec::new(),
            memfds: Vec::new(),
            source,
            exited: None,
            exit_event: false,
            reported: BTreeSet::new(),
            created_at: Instant::now(),
            image: next_image(),
            program: None,
            exec_chain: Vec::new(),
            image_boot_ns: 0,
            cgroup_id: None,
            cgroup: None,
            shell: false,
            relay: None,
            score: None,
        }
    }

    /// Records a new image in the exec chain, keeping the first and the latest ones.
    pub fn push_image(&mut self, image: ExecImage) {
        if self.exec_chain.len() >= MAX_CHAIN {
            self.exec_chain.remove(1);
        }
        self.exec_chain.push(image);
    }

    /// Forgets what belonged to the previous program image (exec replaces it).
    pub fn reset_for_exec(&mut self) {
        self.image = next_image();
        self.exe = None;
        self.exe_state = ExeState::Unknown;
        self.exe_successor_root = None;
        self.successor_asked = false;
        self.exe_id = None;
        self.cmdline.clear();
        self.sha256 = None;
        self.wx_events.clear();
        self.wx_maps.clear();
        self.stdio_net.clear();
        self.reported.clear();
        self.program = None;
        self.shell = false;
        self.relay = None;
    }

    /// The executable's file name, falling back to `comm`.
    pub fn exe_name(&self) -> &std::ffi::OsStr {
        self.exe
            .as_deref()
            .and_then(Path::file_name)
            .unwrap_or(&self.name)
    }

    /// Remote ports of outbound connections, sorted and distinct.
    pub fn remote_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .connects
            .iter()
            .chain(&self.conns)
            .map(|c| c.port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Distinct outbound destinations (sensor and /proc/net together).
    pub fn conns_outbound(&self) -> usize {
        let all: BTreeSet<&ConnectFact> = self.connects.iter().chain(&self.conns).collect();
        all.len()
    }
}

/// Adds `item` unless present; keeps at most [`MAX_FACTS`] (the oldest are kept: the first
/// sighting is the one worth reporting).
pub fn push_bounded<T: PartialEq>(list: &mut Vec<T>, item: T) -> bool {
    if list.len() >= MAX_FACTS || list.contains(&item) {
        return false;
    }
    list.push(item);
    true
}

/// The table itself.
#[derive(Debug)]
pub struct ProcessTable {
    // Boxed: a storm keeps ~10,000 exited entries, and a map of ~480-byte values would grow
    // (and, while rehashing, briefly double) in steps of megabytes.
    procs: HashMap<u32, Box<Process>>,
    exited: VecDeque<(u32, Instant)>,
    max: usize,
    grace: Duration,
    evicted: u64,
    /// Processes that exited and have left the table, as pid → (start time, when they
    /// exited): an exit is final for that pid and start time, so a sweep that read the process
    /// alive before it exited cannot bring it back once its entry is gone. Kept until a sweep
    /// that started after the exit is in ([`ProcessTable::forget_ended_before`]), at most
    /// `max`.
    ended: HashMap<u32, (u64, Instant)>,
}

impl ProcessTable {
    /// An empty table holding at most `max` processes; exited ones linger for `grace`.
    pub fn new(max: usize, grace: Duration) -> Self {
        Self {
            procs: HashMap::new(),
            exited: VecDeque::new(),
            max: max.max(1),
            grace,
            evicted: 0,
            ended: HashMap::new(),
        }
    }

    /// Number of processes held (live and recently exited).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Processes dropped because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Looks up a process.
    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid).map(|p| &**p)
    }

    /// Looks up a process for update.
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.procs.get_mut(&pid).map(|p| &mut **p)
    }

    /// All processes.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.procs.values().map(|p| &**p)
    }

    /// Pids of live processes known since before `before`.
    pub fn live_pids_before(&self, before: Instant) -> Vec<u32> {
        self.procs
            .values()
            .filter(|p| p.exited.is_none() && p.created_at < before)
            .map(|p| p.pid)
            .collect()
    }

    /// True when the kernel reported the exit of the process `pid` started at `start_ticks`: a
    /// late look at it (a sweep that read it before it exited) must not bring it back. False
    /// for an unknown start time.
    pub fn has_ended(&self, pid: u32, start_ticks: u64) -> bool {
        if start_ticks == 0 {
            return false;
        }
        match self.procs.get(&pid) {
            Some(p) if p.start_ticks == start_ticks => p.exited.is_some() && p.exit_event,
            _ => self.ended.get(&pid).is_some_and(|&(s, _)| s == start_ticks),
        }
    }

    /// Forgets exits from before `t` (a sweep that started at `t` is in: later sweeps started
    /// after those exits, so they cannot have read those processes alive).
    pub fn forget_ended_before(&mut self, t: Instant) {
        self.ended.retain(|_, &mut (_, at)| at >= t);
        if self.ended.capacity() > 4 * self.ended.len().max(256) {
            self.ended.shrink_to(2 * self.ended.len());
        }
    }

    /// The entry for `pid`, created when missing. A different process that reused the pid
    /// (start time differs) replaces the old entry; one whose exit the kernel reported is
    /// replaced only by a process with another (or an unknown) start time: the same process
    /// stays exited.
    pub fn entry(
        &mut self,
        pid: u32,
        start_ticks: u64,
        source: SensorKind,
        now: Instant,
    ) -> &mut Process {
        // An exit a sweep only inferred, of this very process: it was misread, not gone. It
        // comes back as it was (what was reported about it stays reported).
        if let Some(p) = self.procs.get_mut(&pid)
            && p.exited.is_some()
            && !p.exit_event
            && start_ticks != 0
            && p.start_ticks == start_ticks
        {
            p.exited = None;
        }
        let stale = self.procs.get(&pid).is_some_and(|p| {
            let same = start_ticks != 0 && p.start_ticks == start_ticks && p.exit_event;
            (p.exited.is_some() && !same)
                || (start_ticks != 0 && p.start_ticks != 0 && p.start_ticks != start_ticks)
        });
        if stale {
            self.procs.remove(&pid);
        }
        if !self.procs.contains_key(&pid) {
            self.make_room(now);
        }
        let p = self
            .procs
            .entry(pid)
            .or_insert_with(|| Box::new(Process::new(pid, source)));
        if p.start_ticks == 0 {
            p.start_ticks = start_ticks;
        }
        p
    }

    /// Marks `pid` exited as the kernel reported it: final for its pid and start time (see
    /// [`ProcessTable::has_ended`]).
    pub fn mark_exit_event(&mut self, pid: u32, now: Instant) {
        self.mark_exited(pid, now);
        if let Some(p) = self.procs.get_mut(&pid) {
            p.exit_event = true;
        }
    }

    /// Marks `pid` exited; it is dropped after the grace period. What only a live process
    /// needs (facts, samples) goes now: an exec storm keeps thousands of exited entries.
    pub fn mark_exited(&mut self, pid: u32, now: Instant) {
        if let Some(p) = self.procs.get_mut(&pid)
            && p.exited.is_none()
        {
            p.exited = Some(now);
            p.wx_events = Vec::new();
            p.wx_maps = Vec::new();
            p.ptrace_events = Vec::new();
            p.connects = Vec::new();
            p.conns = Vec::new();
            p.servers = Vec::new();
            p.stdio_net = Vec::new();
            p.memfds = Vec::new();
            p.cwd = None;
            self.exited.push_back((pid, now));
        }
    }

    /// Drops exited processes whose grace period is over.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(pid, at)) = self.exited.front() {
            if now.duration_since(at) < self.grace {
                break;
            }
            self.exited.pop_front();
            // Only drop the entry if it is still that exited process (not a reused pid).
            if self.procs.get(&pid).is_some_and(|p| p.exited == Some(at))
                && let Some(p) = self.procs.remove(&pid)
                && p.exit_event
                && p.start_ticks != 0
                && self.ended.len() < self.max
            {
                self.ended.insert(pid, (p.start_ticks, at));
            }
        }
        // A burst grows the map; give the memory back once it has passed.
        if self.procs.capacity() > 4 * self.procs.len().max(256) {
            self.procs.shrink_to(2 * self.procs.len());
        }
        if self.exited.capacity() > 4 * self.exited.len().max(256) {
            self.exited.shrink_to(2 * self.exited.len());
        }
    }

    fn make_room(&mut self, now: Instant) {
        self.expire(now);
        while self.procs.len() >= self.max {
            // Oldest exited first; if none, the live process with the lowest pid is the
            // least likely to be the one under attack right now.
            let victim = loop {
                match self.exited.pop_front() {
                    Some((pid, at))
                        if self.procs.get(&pid).is_some_and(|p| p.exited == Some(at)) =>
                    {
                        break Some(pid);
                    }
                    Some(_) => continue,
                    None => break self.procs.keys().min().copied(),
                }
            };
            match victim {
                Some(pid) => {
                    self.procs.remove(&pid);
                    self.evicted += 1;
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn reused_pid_replaces_the_old_process() {
        let now = Instant::now();
        let mut t = ProcessTable::new(10, Duration::from_secs(30));
        t.entry(5, 100, SensorKind::Ebpf, now).name = "old".into();
        assert_eq!(t.entry(5, 100, SensorKind::Ebpf, now).name, "old");
        assert_eq!(
            t.entry(5, 200, SensorKind::Ebpf, now).name,
            "",
            "start time differs: new process"
        );
    }

    #[test]
    fn an_exit_is_final_for_that_pid_and_start_time() {
        let now = Instant::now();
        let grace = Duration::from_secs(5);
        let mut t = ProcessTable::new(10, grace);
        let sweep_started = now;
        t.entry(5, 100, SensorKind::Ebpf, now).name = "gone".into();
        // An exit only a sweep inferred is not final: the process may have been misread, and
        // a later read brings it back as it was.
        t.mark_exited(5, now);
        assert!(!t.has_ended(5, 100));
        let p = t.entry(5, 100, SensorKind::Sweep, now);
        assert!(p.exited.is_none() && p.name == "gone");
        // The exit event is in; then a sweep that read the process alive is merged.
        t.mark_exit_event(5, now + Duration::from_millis(1));
        assert!(t.has_ended(5, 100) && !t.has_ended(5, 200) && !t.has_ended(5, 0));
        let p = t.entry(5, 100, SensorKind::Sweep, now + Duration::from_millis(2));
        assert!(
            p.exited.is_some() && p.name == "gone",
            "the same process is not brought back"
        );
        // Once its entry has expired, the exit is still remembered for the sweep in flight.
        t.expire(now + grace + Duration::from_secs(1));
        assert!(t.get(5).is_none());
        assert!(t.has_ended(5, 100), "a tombstone outlives the entry");
        // A reused pid (another start time) is a new process, alive.
        assert!(t.entry(5, 200, SensorKind::Sweep, now).exited.is_none());
        assert!(!t.has_ended(5, 200));
        // A sweep that started after the exit is in: the tombstone goes.
        t.mark_exit_event(5, now + grace);
        t.expire(now + 3 * grace);
        t.forget_ended_before(sweep_started + 2 * grace);
        assert!(!t.has_ended(5, 100) && !t.has_ended(5, 200));
    }

    #[test]
    fn exited_processes_expire_after_grace() {
        let now = Instant::now();
        let mut t = ProcessTable::new(10, Duration::from_secs(30));
        t.entry(1, 0, SensorKind::Ebpf, now);
        t.entry(2, 0, SensorKind::Ebpf, now);
        t.mark_exited(1, now);
        t.expire(now + Duration::from_secs(29));
        assert!(t.get(1).is_some());
        t.expire(now + Duration::from_secs(31));
        assert!(t.get(1).is_none() && t.get(2).is_some());
    }

    #[test]
    fn a_fork_bomb_cannot_grow_the_table_past_its_cap() {
        let now = Instant::now();
        let mut t = ProcessTable::new(100, Duration::from_secs(30));
        for pid in 1..=10_000 {
            t.entry(pid, 0, SensorKind::Ebpf, now);
            if pid % 2 == 0 {
                t.mark_exited(pid, now);
            }
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.evicted(), 9_900);
        assert!(t.get(10_000).is_some(), "the newest process is kept");
    }

    #[test]
    fn memory_is_given_back_after_a_burst() {
        let now = Instant::now();
        let mut t = ProcessTable::new(100_000, Duration::from_secs(1));
        for pid in 1..=20_000 {
            t.entry(pid, 0, SensorKind::Ebpf, now)
                .connects
                .push(ConnectFact {
                    addr: IpAddr::from([1, 1, 1, 1]),
                    port: 1,
                    proto: crate::procfs::sockets::Proto::Tcp,
                });
            t.mark_exited(pid, now);
        }
        assert!(
            t.get(7).is_some_and(|p| p.connects.is_empty()),
            "facts go at exit"
        );
        t.expire(now + Duration::from_secs(2));
        assert!(t.is_empty());
        assert!(t.procs.capacity() < 4096, "capacity {}", t.procs.capacity());
    }

    #[test]
    fn facts_are_bounded_and_distinct() {
        let mut v = Vec::new();
        assert!(push_bounded(&mut v, 1));
        assert!(!push_bounded(&mut v, 1));
        for i in 2..100 {
            push_bounded(&mut v, i);
        }
        assert_eq!(v.len(), MAX_FACTS);
    }

    #[test]
    fn remote_ports_merge_sensor_and_proc_net() {
        let mut p = Process::new(1, SensorKind::Ebpf);
        let c = |port| ConnectFact {
            addr: IpAddr::from([127, 0, 0, 1]),
            port,
            proto: crate::procfs::sockets::Proto::Tcp,
        };
        p.connects = vec![c(4444), c(80)];
        p.conns = vec![c(80), c(22)];
        assert_eq!(p.remote_ports(), [22, 80, 4444]);
        assert_eq!(p.conns_outbound(), 3);
    }
}
