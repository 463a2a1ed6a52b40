//! /proc sweeps: reading one process ([`read_process`]), all of them ([`snapshot`]), and the
//! fallback sensor's periodic sweeper, which reports the processes the netlink connector missed.
//!
//! Each process is read through a descriptor of its `/proc/<pid>` directory, so every file
//! comes from the same process even if the pid is reused mid-read; a process that is gone
//! (or goes while it is read) is [`ReadError::Vanished`], which callers skip.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    ffi::OsString,
    io,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::MissedTickBehavior,
};
use tracing::{debug, info, warn};

use super::{
    event::{Event, EventBody, EventKind, Exec, Exit, SensorKind},
    proc_connector::Seen,
    stats::SensorStats,
};
use crate::{
    clock,
    process::stat::{PidDir, StatReader, parse_u64},
    text::os_from_bytes,
};

/// The uid/gid reported when it could not be read (the kernel's `INVALID_UID`, `(uid_t)-1`).
pub const INVALID_ID: u32 = u32::MAX;
/// At most this many bytes of a command line are read; longer ones are marked truncated.
pub const CMDLINE_MAX: usize = 32 * 1024;
/// Cap on the per-generation "seen by the connector" sets; beyond it the sweeper may report a
/// process twice, never miss one.
const SEEN_CAP: usize = 1 << 17;
/// The earliest a sweep runs after a connector overrun.
const OVERRUN_SWEEP_DELAY: Duration = Duration::from_secs(1);

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The process does not exist (any more): ENOENT/ESRCH. Expected; skip it.
    #[error("process {pid} is gone")]
    Vanished {
        /// The pid asked for.
        pid: u32,
    },
    /// A file could not be read for another reason (permissions, hidepid, ...).
    #[error("reading /proc/{pid}/{file}: {source}")]
    Io {
        /// The pid asked for.
        pid: u32,
        /// Which file.
        file: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file did not have the expected format.
    #[error("/proc/{pid}/{file} is malformed")]
    Malformed {
        /// The pid asked for.
        pid: u32,
        /// Which file.
        file: &'static str,
    },
}

impl ReadError {
    /// True when the process is simply gone.
    pub fn is_vanished(&self) -> bool {
        matches!(self, ReadError::Vanished { .. })
    }
}

/// Who a process is: enough for the header of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Parent pid (0 for pid 1 and kernel threads' parent).
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// comm, raw bytes.
    pub comm: OsString,
    /// Start time in clock ticks since boot (with the pid, identifies a process across reuse).
    pub start_ticks: u64,
}

/// One process as read from /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// comm, raw bytes.
    pub comm: OsString,
    /// Target of /proc/<pid>/exe (may end in " (deleted)"); `None` for kernel threads, zombies,
    /// or when not permitted.
    pub exe: Option<PathBuf>,
    /// argv from /proc/<pid>/cmdline (empty for kernel threads and zombies).
    pub cmdline: Vec<OsString>,
    /// The command line was longer than [`CMDLINE_MAX`] and was cut.
    pub cmdline_truncated: bool,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Reads processes from /proc, reusing its buffers between calls.
#[derive(Debug, Default)]
pub struct ProcReader {
    stat: StatReader,
    buf: Vec<u8>,
    link: Vec<u8>,
}

/// Reads one process (stat, status, exe, cmdline).
pub fn read_process(pid: u32) -> Result<ProcessInfo, ReadError> {
    ProcReader::default().read_process(pid)
}

/// Reads every process in /proc; processes that vanish meanwhile are skipped.
pub fn snapshot() -> io::Result<Vec<ProcessInfo>> {
    ProcReader::default().snapshot()
}

/// Converts clock ticks (as in `start_ticks`) to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    ticks.saturating_mul(1_000_000_000 / hz)
}

impl ProcReader {
    /// Reads who a process is (stat + status) without its exe and command line.
    pub fn read_identity(&mut self, pid: u32) -> Result<Identity, ReadError> {
        let dir = PidDir::open(pid)?;
        self.identity(&dir)
    }

    /// Reads one process (stat, status, exe, cmdline).
    pub fn read_process(&mut self, pid: u32) -> Result<ProcessInfo, ReadError> {
        let dir = PidDir::open(pid)?;
        let id = self.identity(&dir)?;
        let exe = dir.read_link(c"exe", &mut self.link);
        let cmdline_truncated = match dir.read(c"cmdline", "cmdline", &mut self.buf, CMDLINE_MAX) {
            Ok(truncated) => truncated,
            Err(e) if e.is_vanished() => return Err(e),
            // Not permitted (hidepid, LSM): the rest of what was read still stands.
            Err(_) => {
                self.buf.clear();
                false
            }
        };
        Ok(ProcessInfo {
            pid,
            ppid: id.ppid,
            uid: id.uid,
            gid: id.gid,
            comm: id.comm,
            exe,
            cmdline: split_cmdline(&self.buf),
            cmdline_truncated,
            start_ticks: id.start_ticks,
        })
    }

    /// Reads every process in /proc; processes that vanish meanwhile are skipped.
    pub fn snapshot(&mut self) -> io::Result<Vec<ProcessInfo>> {
        let mut out = Vec::with_capacity(512);
        for entry in std::fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = parse_u64(entry.file_name().as_bytes()) else {
                continue;
            };
            let Ok(pid) = u32::try_from(pid) else {
                continue;
            };
            match self.read_process(pid) {
                Ok(info) => out.push(info),
                Err(ReadError::Vanished { .. }) => {}
                Err(e) => debug!(error = %e, "process skipped in sweep"),
            }
        }
        Ok(out)
    }

    fn identity(&mut self, dir: &PidDir) -> Result<Identity, ReadError> {
        let stat = self.stat.stat_in(dir)?;
        let status = self.stat.status_in(dir)?;
        Ok(Identity {
            ppid: stat.ppid,
            uid: status.uid,
            gid: status.gid,
            comm: stat.comm,
            start_ticks: stat.start_ticks,
        })
    }
}

/// Splits /proc/<pid>/cmdline on NULs (one trailing NUL ends the last argument).
pub(crate) fn split_cmdline(bytes: &[u8]) -> Vec<OsString> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    body.split(|&b| b == 0).map(os_from_bytes).collect()
}

/// What the connector reported recently, kept for two sweep generations so a note that
/// arrives just after a snapshot still covers the process in the next one.
#[derive(Debug, Default)]
struct SeenSets {
    started: [HashSet<u32>; 2],
    exited: [HashSet<u32>; 2],
}

impl SeenSets {
    fn record(&mut self, seen: Seen) {
        let (set, pid) = match seen {
            Seen::Started(pid) => (&mut self.started[0], pid),
            Seen::Exited(pid) => (&mut self.exited[0], pid),
            Seen::Overrun => return,
        };
        if set.len() < SEEN_CAP {
            set.insert(pid);
        }
    }

    fn started(&self, pid: u32) -> bool {
        self.started.iter().any(|s| s.contains(&pid))
    }

    fn exited(&self, pid: u32) -> bool {
        self.exited.iter().any(|s| s.contains(&pid))
    }

    fn rotate(&mut self) {
        for sets in [&mut self.started, &mut self.exited] {
            sets.swap(0, 1);
            sets[0].clear();
        }
    }
}

/// Processes that started or ended between two sweeps without the connector saying so.
#[derive(Debug, Default, PartialEq, Eq)]
struct Missed {
    /// Pids (in the new sweep) that are new.
    started: Vec<u32>,
    /// Pids (in the old sweep) that are gone.
    exited: Vec<u32>,
}

/// Compares two sweeps; a pid whose start time changed is a new process (pid reuse).
fn missed(
    old: &HashMap<u32, ProcessInfo>,
    new: &HashMap<u32, ProcessInfo>,
    seen: &SeenSets,
) -> Missed {
    let same = |a: &ProcessInfo, b: &ProcessInfo| a.start_ticks == b.start_ticks;
    let mut m = Missed::default();
    for (pid, p) in new {
        if !old.get(pid).is_some_and(|o| same(o, p)) && !seen.started(*pid) {
            m.started.push(*pid);
        }
    }
    for (pid, p) in old {
        if !new.get(pid).is_some_and(|n| same(p, n)) && !seen.exited(*pid) {
            m.exited.push(*pid);
        }
    }
    m.started.sort_unstable();
    m.exited.sort_unstable();
    m
}

/// An exec event for a process the sweep found; the time is when it was seen.
fn sweep_exec(p: &ProcessInfo, ktime_ns: u64) -> Event {
    Event {
        sensor: SensorKind::Sweep,
        ktime_ns,
        pid: p.pid,
        tgid: p.pid,
        uid: p.uid,
        gid: p.gid,
        comm: p.comm.clone(),
        // Read from this very process's /proc entry: exact.
        start_time_ns: crate::identity::boot_ns_from_ticks(p.start_ticks),
        kernel_action: None,
        body: EventBody::Exec(Exec {
            filename: p.exe.clone().unwrap_or_default(),
            argv: p.cmdline.clone(),
            args_truncated: p.cmdline_truncated,
            args_missing: p.cmdline.is_empty(),
            ppid: p.ppid,
            old_pid: p.pid,
            exe: None,
        }),
    }
}

/// An exit event for a process gone from the sweep; its exit code is unknown.
fn sweep_exit(p: &ProcessInfo, ktime_ns: u64) -> Event {
    Event {
        sensor: SensorKind::Sweep,
        ktime_ns,
        pid: p.pid,
        tgid: p.pid,
        uid: p.uid,
        gid: p.gid,
        comm: p.comm.clone(),
        start_time_ns: crate::identity::boot_ns_from_ticks(p.start_ticks),
        kernel_action: None,
        body: EventBody::Exit(Exit { exit_code: None }),
    }
}

/// Everything the sweeper task needs.
pub struct SweeperContext {
    /// Where events go.
    pub tx: mpsc::Sender<Event>,
    /// Delivery counters.
    pub stats: Arc<SensorStats>,
    /// Kinds to emit (only exec and exit matter here).
    pub kinds: BTreeSet<EventKind>,
    /// Time between sweeps.
    pub interval: Duration,
    /// Notes from the connector: what it already reported.
    pub seen: mpsc::Receiver<Seen>,
}

/// Starts the periodic sweeper; it ends promptly when `stop` fires.
pub fn spawn_sweeper(ctx: SweeperContext, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(sweep_loop(ctx, stop))
}

struct Sweeper {
    ctx: SweeperContext,
    known: HashMap<u32, ProcessInfo>,
    seen: SeenSets,
    self_tgid: u32,
}

async fn sweep_loop(ctx: SweeperContext, mut stop: watch::Receiver<bool>) {
    let interval = ctx.interval.max(Duration::from_millis(100));
    let mut s = Sweeper {
        ctx,
        known: HashMap::new(),
        seen: SeenSets::default(),
        self_tgid: std::process::id(),
    };
    // The first sweep is the baseline: what already runs is not news.
    let Some(baseline) = run_sweep(&mut stop).await else {
        return;
    };
    s.known = s.index(baseline);
    info!(
        processes = s.known.len(),
        interval_s = interval.as_secs_f64(),
        "/proc sweeper running"
    );
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut notes_open = true;
    let mut early = false;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            note = s.ctx.seen.recv(), if notes_open => match note {
                Some(Seen::Overrun) if !early => {
                    early = true;
                    tick.reset_after(OVERRUN_SWEEP_DELAY.min(interval));
                }
                Some(n) => s.seen.record(n),
                None => notes_open = false,
            },
            _ = tick.tick() => {
                early = false;
                let Some(procs) = run_sweep(&mut stop).await else { break };
                if !s.apply(procs).await {
                    break;
                }
            }
        }
    }
}

/// One snapshot off the async threads; `None` when stopped meanwhile or /proc is unreadable.
async fn run_sweep(stop: &mut watch::Receiver<bool>) -> Option<Vec<ProcessInfo>> {
    let task = tokio::task::spawn_blocking(snapshot);
    tokio::select! {
        joined = task => match joined {
            Ok(Ok(procs)) => Some(procs),
            Ok(Err(e)) => {
                warn!(error = %e, "cannot read /proc; the sweeper stops");
                None
            }
            Err(e) => {
                warn!(error = %e, "sweep task failed; the sweeper stops");
                None
            }
        },
        _ = stop.changed() => None,
    }
}

impl Sweeper {
    fn index(&self, procs: Vec<ProcessInfo>) -> HashMap<u32, ProcessInfo> {
        procs
            .into_iter()
            .filter(|p| p.pid != self.self_tgid)
            .map(|p| (p.pid, p))
            .collect()
    }

    /// Reports what the connector missed since the last sweep; false when the consumer is gone.
    async fn apply(&mut self, procs: Vec<ProcessInfo>) -> bool {
        // Notes queued while the snapshot ran cover processes in it.
        while let Ok(note) = self.ctx.seen.try_recv() {
            self.seen.record(note);
        }
        let new = self.index(procs);
        let m = missed(&self.known, &new, &self.seen);
        self.seen.rotate();
        let now = clock::monotonic_ns();
        let mut events = Vec::new();
        if self.ctx.kinds.contains(&EventKind::Exit) {
            events.extend(
                m.exited
                    .iter()
                    .filter_map(|p| self.known.get(p))
                    .map(|p| sweep_exit(p, now)),
            );
        }
        if self.ctx.kinds.contains(&EventKind::Exec) {
            events.extend(
                m.started
                    .iter()
                    .filter_map(|p| new.get(p))
                    .map(|p| sweep_exec(p, now)),
            );
        }
        self.known = new;
        if !events.is_empty() {
            debug!(
                count = events.len(),
                "sweep found processes the connector missed"
            );
        }
        for event in events {
            let kind = event.kind();
            if self.ctx.tx.send(event).await.is_err() {
                return false;
            }
            self.ctx.stats.received(kind);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: u32, start_ticks: u64) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            comm: "x".into(),
            exe: None,
            cmdline: Vec::new(),
            cmdline_truncated: false,
            start_ticks,
        }
    }

    fn index(list: &[(u32, u64)]) -> HashMap<u32, ProcessInfo> {
        list.iter().map(|&(p, t)| (p, info(p, t))).collect()
    }

    #[test]
    fn cmdline_splits_on_nul() {
        assert_eq!(
            split_cmdline(b"/bin/ls\0-l\0\0x\0"),
            ["/bin/ls", "-l", "", "x"]
        );
        assert_eq!(split_cmdline(b"setproctitle style"), ["setproctitle style"]);
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn reads_this_process() {
        let me = read_process(std::process::id()).expect("own process readable");
        assert_eq!(me.pid, std::process::id());
        // SAFETY: getppid/getuid/getgid have no preconditions.
        let (ppid, uid, gid) = unsafe { (libc::getppid(), libc::getuid(), libc::getgid()) };
        assert_eq!((me.ppid as i32, me.uid, me.gid), (ppid, uid, gid));
        let comm = std::fs::read("/proc/self/comm").expect("comm");
        assert_eq!(
            me.comm.as_bytes(),
            comm.strip_suffix(b"\n").unwrap_or(&comm)
        );
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(me.exe.as_deref(), Some(exe.as_path()));
        let args: Vec<OsString> = std::env::args_os().collect();
        assert_eq!(me.cmdline, args);
        assert!(me.start_ticks > 0);
    }

    #[test]
    fn vanished_processes_are_a_clear_error() {
        let err = read_process(u32::MAX).expect_err("no such pid");
        assert!(err.is_vanished(), "{err}");
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("reaped");
        // Reaped: the pid is free (reuse within this window is practically impossible).
        let err = read_process(pid).expect_err("reaped");
        assert!(err.is_vanished(), "{err}");
    }

    #[test]
    fn snapshot_sees_init_and_us() {
        let all = snapshot().expect("/proc readable");
        assert!(all.iter().any(|p| p.pid == 1));
        assert!(all.iter().any(|p| p.pid == std::process::id()));
    }

    #[test]
    fn missed_reports_only_what_the_connector_did_not() {
        let old = index(&[(1, 10), (2, 20), (3, 30), (6, 60)]);
        // 2 gone, 3 reused (new start time), 4 and 5 new; the connector saw 5 start and 6 exit.
        let new = index(&[(1, 10), (3, 31), (4, 40), (5, 50)]);
        let mut seen = SeenSets::default();
        seen.record(Seen::Started(5));
        seen.record(Seen::Exited(6));
        assert_eq!(
            missed(&old, &new, &seen),
            Missed {
                started: vec![3, 4],
                exited: vec![2, 3]
            }
        );
    }

    #[test]
    fn seen_notes_last_two_generations() {
        let mut seen = SeenSets::default();
        seen.record(Seen::Started(7));
        seen.rotate();
        assert!(seen.started(7));
        seen.rotate();
        assert!(!seen.started(7));
    }

    #[test]
    fn sweep_events_with_hostile_names_stay_one_json_line() {
        let mut p = info(9, 1);
        p.comm = os_from_bytes(b"ev\nil\x1b[2J\xff");
        p.exe = Some(crate::text::path_from_bytes(b"/tmp/\xfe\n"));
        p.cmdline = vec![os_from_bytes(b"a\"b\n")];
        for e in [sweep_exec(&p, 5), sweep_exit(&p, 5)] {
            let line = serde_json::to_string(&e).expect("json");
            assert!(!line.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&line).expect("valid");
            assert_eq!(v["sensor"], "sweep");
        }
    }
}
