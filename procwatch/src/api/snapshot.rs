//! What the engine publishes for the API: copies of the process table, its counters and the
//! baselines, taken on the engine's task at most every [`PUBLISH_EVERY`] and handed over through
//! `tokio::sync::watch`. Handlers only read the latest copy; nothing they do reaches the engine
//! except a request over the control channel (see `control.rs`).
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::watch;

use crate::{
    alert::{ChainImage, Reason},
    baseline::model::Model,
    clock,
    config::{self, Config},
    engine::{Engine, EngineStats},
    process::table::Process,
    sensor::SensorKind,
    text::os_lossy,
};

/// Least time between two copies of the process table.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Least time between two copies of the baselines (only made while a client asks for them).
pub const BASELINES_EVERY: Duration = Duration::from_secs(2);

/// One process as `/api/processes` lists it (the summary's fields).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRow {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Short name (comm).
    pub name: String,
    /// `heuristic_score + ml_weight × ml_score` (0 when no rule holds).
    pub total_score: f64,
    /// Sum of the weights of the rules that hold.
    pub heuristic_score: f64,
    /// Baseline-anomaly score.
    pub ml_score: f64,
    /// Why, as in alerts.
    pub reasons: Vec<Reason>,
    /// CPU % of one core over the last window.
    pub cpu_pct: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Distinct outbound connections.
    pub conns_outbound: usize,
    /// Their remote ports.
    pub remote_ports: Vec<u16>,
    /// Executable path.
    pub exe: Option<String>,
    /// Command line.
    pub cmdline: Vec<String>,
    /// User name (the uid as text when it has no name).
    pub user: String,
    /// Real uid.
    pub uid: u32,
    /// sha256 of the executable, once hashed.
    pub sha256: Option<String>,
    /// When this copy of the table was taken (RFC 3339, ms, UTC).
    pub timestamp: String,
}

/// A W+X request the sensor saw.
#[derive(Debug, Clone, Serialize)]
pub struct WxRequest {
    /// The syscall.
    pub syscall: &'static str,
    /// Start address (hex).
    pub start: String,
    /// Length in bytes.
    pub len: u64,
}

/// A remote end of a connection.
#[derive(Debug, Clone, Serialize)]
pub struct Remote {
    /// Address.
    pub addr: String,
    /// Port.
    pub port: u16,
}

/// What `/api/process/{pid}` adds to the row (read from the table; fds are read by the
/// handler).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFacts {
    /// Exec id of the current image.
    pub exec_id: Option<String>,
    /// Start of the process (CLOCK_BOOTTIME ns).
    pub start_boottime_ns: Option<u64>,
    /// The images it ran, oldest first.
    pub exec_chain: Vec<ChainImage>,
    /// W+X requests seen by the sensor.
    pub wx_requests: Vec<WxRequest>,
    /// W+X regions in its memory map (`start-end perms path`).
    pub wx_regions: Vec<String>,
    /// Outbound connects the sensor saw.
    pub connects: Vec<Remote>,
    /// Outbound connections /proc showed at the last sample.
    pub connections: Vec<Remote>,
    /// Which of fds 0-2 are network sockets, and their peers.
    pub stdio_sockets: Vec<serde_json::Value>,
    /// memfds it created.
    pub memfds: Vec<String>,
    /// Pid of its tracer, 0 when not traced.
    pub tracer_pid: u32,
    /// Working directory.
    pub cwd: Option<String>,
    /// cgroup (v2) path.
    pub cgroup: Option<String>,
    /// A kernel thread.
    pub kernel_thread: bool,
    /// Start time in clock ticks (with `pid` it names the process).
    #[serde(skip)]
    pub start_ticks: u64,
}

/// One process in a snapshot.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The list fields.
    pub row: ProcessRow,
    /// The detail fields.
    pub facts: ProcessFacts,
}

/// A copy of the live processes of the table.
#[derive(Debug, Default)]
pub struct ProcessesSnapshot {
    /// Every live process, by ascending pid.
    pub entries: Vec<Entry>,
    /// Index into `entries` by pid.
    pub by_pid: HashMap<u32, usize>,
    /// `min_score` of the config in force (the default threshold of `/api/suspicious`).
    pub min_score: f64,
    /// When it was taken.
    pub timestamp: String,
}

impl ProcessesSnapshot {
    /// The entry of `pid`.
    pub fn get(&self, pid: u32) -> Option<&Entry> {
        self.by_pid.get(&pid).and_then(|&i| self.entries.get(i))
    }
}

/// The learning state, as `/api/stats` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LearningStatus {
    /// `learning`, `monitoring`, or `off` (no baselines).
    pub mode: &'static str,
    /// Share of the learning period gone by, 0 to 1 (1 once monitoring).
    pub progress: f64,
    /// When learning began (RFC 3339).
    pub started: Option<String>,
    /// When learning ends or ended (RFC 3339).
    pub ends: Option<String>,
    /// Executables with a baseline.
    pub executables: usize,
}

/// The engine's counters and state.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStatus {
    /// The engine's counters.
    pub engine: EngineStats,
    /// Alerts emitted, by rule id (an alert counts once for each of its rules).
    pub alerts_by_rule: BTreeMap<&'static str, u64>,
    /// The sensor that runs.
    pub sensor: SensorKind,
    /// Learning mode and progress.
    pub learning: LearningStatus,
    /// `min_score` in force.
    pub min_score: f64,
}

/// A copy of the baselines.
#[derive(Debug, Clone)]
pub struct BaselinesSnapshot {
    /// The model, when baselines are on.
    pub model: Option<Arc<Model>>,
    /// Its settings.
    pub cfg: config::Baseline,
    /// When the copy was taken (seconds since the epoch).
    pub taken: crate::baseline::model::Secs,
}

/// The receiving ends, for the API.
#[derive(Clone)]
pub struct Views {
    /// The processes.
    pub processes: watch::Receiver<Arc<ProcessesSnapshot>>,
    /// The engine's state.
    pub status: watch::Receiver<Arc<EngineStatus>>,
    /// The baselines.
    pub baselines: watch::Receiver<Arc<BaselinesSnapshot>>,
    /// Set by a handler that read the baselines: the next copy is worth making.
    pub baselines_wanted: Arc<AtomicBool>,
}

/// The engine's side: makes and publishes the copies.
pub struct Publisher {
    processes: watch::Sender<Arc<ProcessesSnapshot>>,
    status: watch::Sender<Arc<EngineStatus>>,
    baselines: watch::Sender<Arc<BaselinesSnapshot>>,
    baselines_wanted: Arc<AtomicBool>,
    last: Option<Instant>,
    last_baselines: Option<Instant>,
}

impl Publisher {
    /// A publisher and the views that read what it publishes, primed from `engine`.
    pub fn new(engine: &Engine) -> (Self, Views) {
        let (ptx, prx) = watch::channel(Arc::new(processes_of(engine)));
        let (stx, srx) = watch::channel(Arc::new(status_of(engine)));
        let (btx, brx) = watch::channel(Arc::new(baselines_of(engine)));
        let wanted = Arc::new(AtomicBool::new(false));
        let p = Self {
            processes: ptx,
            status: stx,
            baselines: btx,
            baselines_wanted: wanted.clone(),
            last: Some(Instant::now()),
            last_baselines: Some(Instant::now()),
        };
        let v = Views {
            processes: prx,
            status: srx,
            baselines: brx,
            baselines_wanted: wanted,
        };
        (p, v)
    }

    /// Publishes new copies when [`PUBLISH_EVERY`] has passed since the last ones; the
    /// baselines only when a client asked for them since (a model can be large).
    pub fn tick(&mut self, engine: &Engine) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < PUBLISH_EVERY)
        {
            return;
        }
        self.last = Some(now);
        self.processes.send_replace(Arc::new(processes_of(engine)));
        self.status.send_replace(Arc::new(status_of(engine)));
        let due = self
            .last_baselines
            .is_none_or(|t| now.duration_since(t) >= BASELINES_EVERY);
        if due && self.baselines_wanted.swap(false, Relaxed) {
            self.publish_baselines(engine);
        }
    }

    /// Publishes the baselines now (after the API changed them).
    pub fn publish_baselines(&mut self, engine: &Engine) {
        self.last_baselines = Some(Instant::now());
        self.baselines.send_replace(Arc::new(baselines_of(engine)));
    }
}

fn lossy(p: &std::path::Path) -> String {
    os_lossy(p.as_os_str()).into_owned()
}

fn remote(c: &crate::procfs::ConnectFact) -> Remote {
    Remote {
        addr: c.addr.to_string(),
        port: c.port,
    }
}

/// One process's entry.
fn entry(p: &Process, timestamp: &str) -> Entry {
    let (total, heuristic, ml, reasons) = match &p.score {
        Some(s) => (
            s.total_score,
            s.heuristic_score,
            s.ml_score,
            s.reasons.clone(),
        ),
        None => (0.0, 0.0, 0.0, Vec::new()),
    };
    let row = ProcessRow {
        pid: p.pid,
        ppid: p.ppid,
        name: os_lossy(&p.name).into_owned(),
        total_score: total,
        heuristic_score: heuristic,
        ml_score: ml,
        reasons,
        cpu_pct: (p.cpu_pct * 10.0).round() / 10.0,
        rss_bytes: p.rss_bytes,
        conns_outbound: p.conns_outbound(),
        remote_ports: p.remote_ports(),
        exe: p.exe.as_deref().map(lossy),
        cmdline: p.cmdline.iter().map(|a| os_lossy(a).into_owned()).collect(),
        // Named by the API (off the engine's task).
        user: String::new(),
        uid: p.uid,
        sha256: p.sha256.clone(),
        timestamp: timestamp.to_string(),
    };
    let facts = ProcessFacts {
        exec_id: crate::alert::exec_id_of(p),
        start_boottime_ns: crate::identity::boot_ns_from_ticks(p.start_ticks),
        exec_chain: crate::alert::exec_chain_of(p),
        wx_requests: p
            .wx_events
            .iter()
            .map(|w| WxRequest {
                syscall: w.syscall,
                start: format!("{:#x}", w.start),
                len: w.len,
            })
            .collect(),
        wx_regions: p.wx_maps.clone(),
        connects: p.connects.iter().map(remote).collect(),
        connections: p.conns.iter().map(remote).collect(),
        stdio_sockets: p
            .stdio_net
            .iter()
            .map(|(fd, peer)| {
                serde_json::json!({
                    "fd": fd,
                    "remote": peer.as_ref().map(|c| format!("{}", std::net::SocketAddr::new(c.addr, c.port))),
                })
            })
            .collect(),
        memfds: p.memfds.iter().map(|m| os_lossy(m).into_owned()).collect(),
        tracer_pid: p.tracer_pid,
        cwd: p.cwd.as_deref().map(lossy),
        cgroup: p.cgroup.clone(),
        kernel_thread: p.kernel_thread,
        start_ticks: p.start_ticks,
    };
    Entry { row, facts }
}

/// A copy of the table's live processes.
fn processes_of(engine: &Engine) -> ProcessesSnapshot {
    let timestamp = clock::rfc3339_ms(chrono::Utc::now());
    let mut entries: Vec<Entry> = engine
        .table()
        .iter()
        .filter(|p| p.exited.is_none())
        .map(|p| entry(p, &timestamp))
        .collect();
    entries.sort_unstable_by_key(|e| e.row.pid);
    let by_pid = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.row.pid, i))
        .collect();
    ProcessesSnapshot {
        entries,
        by_pid,
        min_score: engine.config().min_score,
        timestamp,
    }
}

/// The engine's counters and learning state.
fn status_of(engine: &Engine) -> EngineStatus {
    let cfg: &Config = engine.config();
    let learning = match engine.learning() {
        None => LearningStatus {
            mode: "off",
            progress: 0.0,
            started: None,
            ends: None,
            executables: 0,
        },
        Some(l) => {
            let learner = l.learner();
            let now = crate::learning::now_secs();
            let model = learner.model();
            let (start, end) = (model.learning.started, learner.learning_end());
            let learning = learner.is_learning(now);
            let span = end.saturating_sub(start).max(1) as f64;
            let progress = if learning {
                (now.saturating_sub(start) as f64 / span).clamp(0.0, 1.0)
            } else {
                1.0
            };
            LearningStatus {
                mode: if learning { "learning" } else { "monitoring" },
                progress,
                started: Some(crate::baseline::anomaly::rfc3339(start)),
                ends: Some(crate::baseline::anomaly::rfc3339(end)),
                executables: model.executables.len(),
            }
        }
    };
    EngineStatus {
        engine: engine.stats(),
        alerts_by_rule: engine.alerts_by_rule().clone(),
        sensor: engine.sensor_kind(),
        learning,
        min_score: cfg.min_score,
    }
}

fn baselines_of(engine: &Engine) -> BaselinesSnapshot {
    BaselinesSnapshot {
        model: engine
            .learning()
            .map(|l| Arc::new(l.learner().model().clone())),
        cfg: engine.config().baseline.clone(),
        taken: crate::learning::now_secs(),
    }
}
