//! The fallback sensor's periodic /proc sweeper: it reports the processes the netlink
//! connector missed. The sweeps themselves are [`crate::procfs::sweep`]'s: a process whose
//! reads hang is abandoned and read header-only, never allowed to stop the sweeper.
use std::{
    collections::{BTreeSet, HashMap, HashSet},
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
    clock, offload,
    procfs::{
        Depth, Sample,
        sample::Interest,
        sweep::{Sweep, Sweeper},
    },
};

/// The uid/gid reported when it could not be read (the kernel's `INVALID_UID`, `(uid_t)-1`).
pub const INVALID_ID: u32 = u32::MAX;
/// Cap on the per-generation "seen by the connector" sets; beyond it the sweeper may report a
/// process twice, never miss one.
const SEEN_CAP: usize = 1 << 17;
/// The earliest a sweep runs after a connector overrun.
const OVERRUN_SWEEP_DELAY: Duration = Duration::from_secs(1);

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
fn missed(old: &HashMap<u32, Sample>, new: &HashMap<u32, Sample>, seen: &SeenSets) -> Missed {
    let same = |a: &Sample, b: &Sample| a.start_ticks == b.start_ticks;
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
fn sweep_exec(p: &Sample, ktime_ns: u64) -> Event {
    Event {
        sensor: SensorKind::Sweep,
        ktime_ns,
        pid: p.pid,
        tgid: p.pid,
        uid: p.uid,
        gid: p.gid,
        comm: p.name.clone(),
        // Read from this very process's /proc entry: exact.
        start_time_ns: crate::identity::boot_ns_from_ticks(p.start_ticks),
        kernel_action: None,
        compat: false,
        body: EventBody::Exec(Exec {
            filename: p.exe.clone().unwrap_or_default(),
            argv: p.cmdline.clone(),
            args_truncated: p.cmdline_truncated,
            args_missing: p.cmdline.is_empty(),
            ppid: p.ppid,
            old_pid: p.pid,
            exe: None,
            resolved: Default::default(),
        }),
    }
}

/// An exit event for a process gone from the sweep; its exit code is unknown.
fn sweep_exit(p: &Sample, ktime_ns: u64) -> Event {
    Event {
        sensor: SensorKind::Sweep,
        ktime_ns,
        pid: p.pid,
        tgid: p.pid,
        uid: p.uid,
        gid: p.gid,
        comm: p.name.clone(),
        start_time_ns: crate::identity::boot_ns_from_ticks(p.start_ticks),
        kernel_action: None,
        compat: false,
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

struct FallbackSweeper {
    ctx: SweeperContext,
    reader: Sweeper,
    known: HashMap<u32, Sample>,
    seen: SeenSets,
    self_tgid: u32,
}

async fn sweep_loop(ctx: SweeperContext, mut stop: watch::Receiver<bool>) {
    let interval = ctx.interval.max(Duration::from_millis(100));
    let mut s = FallbackSweeper {
        ctx,
        reader: Sweeper::new(offload::pool().clone(), offload::READ_TIMEOUT),
        known: HashMap::new(),
        seen: SeenSets::default(),
        self_tgid: std::process::id(),
    };
    // The first sweep is the baseline: what already runs is not news.
    let Some(baseline) = run_sweep(&s.reader, &mut stop).await else {
        return;
    };
    s.known = s.index(baseline.samples);
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
                let Some(procs) = run_sweep(&s.reader, &mut stop).await else { break };
                if !s.apply(procs).await {
                    break;
                }
            }
        }
    }
}

/// One sweep (stat, status, exe, cmdline of every process); `None` when stopped meanwhile or
/// /proc is unreadable.
async fn run_sweep(reader: &Sweeper, stop: &mut watch::Receiver<bool>) -> Option<Sweep> {
    let interest = Interest::none();
    tokio::select! {
        swept = reader.sweep(Depth::Identity, &interest) => match swept {
            Ok(sweep) => Some(sweep),
            Err(e) => {
                warn!(error = %e, "cannot read /proc; the sweeper stops");
                None
            }
        },
        _ = stop.changed() => None,
    }
}

impl FallbackSweeper {
    fn index(&self, procs: Vec<Sample>) -> HashMap<u32, Sample> {
        procs
            .into_iter()
            .filter(|p| p.pid != self.self_tgid)
            .map(|p| (p.pid, p))
            .collect()
    }

    /// Reports what the connector missed since the last sweep; false when the consumer is gone.
    async fn apply(&mut self, sweep: Sweep) -> bool {
        // Notes queued while the snapshot ran cover processes in it.
        while let Ok(note) = self.ctx.seen.try_recv() {
            self.seen.record(note);
        }
        let mut new = self.index(sweep.samples);
        // Present but unread (its reads hang): neither started nor exited as far as we know.
        for pid in sweep.unread {
            if let Some(old) = self.known.get(&pid) {
                new.entry(pid).or_insert_with(|| old.clone());
            }
        }
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

    fn info(pid: u32, start_ticks: u64) -> Sample {
        Sample {
            pid,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            name: "x".into(),
            start_ticks,
            ..Sample::default()
        }
    }

    fn index(list: &[(u32, u64)]) -> HashMap<u32, Sample> {
        list.iter().map(|&(p, t)| (p, info(p, t))).collect()
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
        p.name = crate::text::os_from_bytes(b"ev\nil\x1b[2J\xff");
        p.exe = Some(crate::text::path_from_bytes(b"/tmp/\xfe\n"));
        p.cmdline = vec![crate::text::os_from_bytes(b"a\"b\n")];
        for e in [sweep_exec(&p, 5), sweep_exit(&p, 5)] {
            let line = serde_json::to_string(&e).expect("json");
            assert!(!line.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&line).expect("valid");
            assert_eq!(v["sensor"], "sweep");
        }
    }
}
