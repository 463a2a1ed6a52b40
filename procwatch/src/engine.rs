//! The engine: sole owner of the process table and detector state. Sensor events, /proc
//! sweeps and the results of enrichment jobs go in, alerts come out. Everything here runs on
//! one task and never waits on a read a monitored process can make slow: the per-event reads
//! done here are links (exe, fds 0-2), which no process can stall; what can stall (a command
//! line, a socket table, an executable's bytes) is asked for as a [`Job`], run elsewhere with a
//! deadline, and handed back with [`Engine::on_job_done`]. Alerts leave in the order they were
//! decided, each once its facts (sha256, connections) are in or their job gave up.
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    ffi::OsString,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracing::debug;

mod doom;
mod relay_watch;
pub use doom::Condemned;

use crate::{
    alert::{self, Action, ActionBy, Alert, RuleId, SensorInfo, Trigger},
    baseline::Behaviour,
    config::Config,
    detect::{
        self,
        reverse_shell::{is_shell_name, is_shell_or_interpreter},
    },
    identity::{AllowIds, ExeId},
    learning::{Judgement, Learning, event_behaviour},
    process::{
        enrich::{Found, Job, Outcome, Work},
        hash::HashCache,
        merge, program,
        shells::Shells,
        table::{
            ConnectFact, ExeState, ExecImage, ProcessTable, PtraceFact, RelayFact, WxFact,
            push_bounded,
        },
        users::UserNames,
    },
    procfs::{PidDir, sample, sample::Interest, sockets, sweep::Sweep},
    score::{self, Decision},
    sensor::{
        Event, EventBody, SensorKind, SensorStats,
        event::{FileOpen, KernelAction},
    },
};

/// After a shell connects, its stdio is re-read this much later (the redirection onto the new
/// socket happens after connect returns).
const RECHECK_AFTER: Duration = Duration::from_millis(100);

/// A shell whose relay was not found at its exec is looked at again this much later.
const RELAY_RECHECK_AFTER: Duration = Duration::from_millis(500);

/// An alert plus what the action stage needs to act on exactly that process.
#[derive(Debug, Clone)]
pub struct Flagged {
    /// The alert (action still `alert` unless the kernel already acted).
    pub alert: Alert,
    /// Start time of the process in clock ticks (pid + start time name it); 0 when it could
    /// not be established, and then nothing acts on the process.
    pub start_ticks: u64,
    /// The executable file, when known (for the kill exemption).
    pub exe_id: Option<ExeId>,
    /// A kernel thread: never killed.
    pub kernel_thread: bool,
    /// Already exited when flagged.
    pub exited: bool,
    /// For a `PTRACE_ATTACH` the kernel killed: the process that attach really stopped (pid
    /// and start ticks, from the kernel), to be continued.
    pub stopped_tracee: Option<(u32, u64)>,
}

/// Why the engine will not do what the API asked, with the HTTP status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRefusal {
    /// HTTP status (403 forbidden by policy, 404 unknown, 409 not possible now).
    pub status: u16,
    /// Why.
    pub message: String,
}

/// What the engine counts about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Alerts emitted.
    pub alerts: u64,
    /// Alerts suppressed by the whitelist.
    pub whitelisted: u64,
    /// Evaluations where an exception silenced at least one finding.
    pub excepted: u64,
    /// Processes evicted from a full table.
    pub evicted: u64,
    /// Processes tracked now.
    pub tracked: usize,
    /// /proc sweeps merged.
    pub sweeps: u64,
    /// Processes a sweep found but could not read in time (their reads hang), summed over sweeps.
    pub sweep_unread: u64,
    /// Sweep samples of processes whose exit was already in (read just before they exited):
    /// left out, an exit being final.
    pub sweep_after_exit: u64,
    /// Enrichment jobs that gave nothing (process gone, read abandoned or refused).
    pub enrich_failed: u64,
    /// Shells whose relay was no longer looked for at connects, and candidate relays not
    /// looked at, for want of room (see `engine/relay_watch.rs`).
    pub relay_watch_dropped: u64,
}

/// What to do with a job's result.
#[derive(Debug)]
enum Then {
    /// Merge it, then evaluate the process (for this event, or as a sweep when `None`).
    Evaluate(Option<Box<Event>>),
    /// Complete the queued alert waiting on this job.
    Complete,
}

#[derive(Debug)]
struct Waiting {
    pid: u32,
    image: u64,
    then: Then,
}

/// An alert in decision order, held until its facts are in.
#[derive(Debug)]
struct Queued {
    flagged: Flagged,
    job: Option<u64>,
    /// The process's own connects and /proc connections when the alert was decided.
    connects: Vec<ConnectFact>,
    conns: Vec<ConnectFact>,
    /// Every reason turned out to be silenced by an exception by hash, known only now.
    dropped: bool,
}

/// The detection engine.
pub struct Engine {
    cfg: Config,
    table: ProcessTable,
    users: UserNames,
    hashes: Arc<Mutex<HashCache>>,
    sensor: SensorKind,
    stats: Arc<SensorStats>,
    counts: EngineStats,
    /// Pids whose stdio should be re-read soon (a shell that just connected somewhere).
    recheck: Vec<(u32, Instant)>,
    /// Shells whose relay is looked for once more (its relay may connect after the exec), by
    /// pid and image.
    relay_recheck: Vec<(u32, u64, Instant)>,
    /// Shells whose relay is still unknown, looked at again when any process connects.
    relay_watch: relay_watch::RelayWatch,
    /// The config's allowlisted executables, by file identity.
    allow: AllowIds,
    /// Installed shells and terminal servers, by file identity.
    shells: Shells,
    /// Jobs asked for and not yet taken by [`Engine::take_jobs`].
    jobs: Vec<Job>,
    next_job: u64,
    waiting: HashMap<u64, Waiting>,
    queue: VecDeque<Queued>,
    /// The learned baselines, when on.
    learning: Option<Learning>,
    /// Processes condemned by kill verdicts (and their descendants).
    doomed: doom::Doomed,
    /// Condemned by a fork seen after the verdict: killed by whoever drains
    /// [`Engine::take_condemned`], not by the action stage.
    late: Vec<Condemned>,
    /// Alerts released, by rule id (one count per rule of each alert).
    alerts_by_rule: std::collections::BTreeMap<&'static str, u64>,
}

impl Engine {
    /// An engine with an empty table.
    pub fn new(cfg: Config, sensor: SensorKind, stats: Arc<SensorStats>) -> Self {
        let table = ProcessTable::new(cfg.max_processes, cfg.exited_grace);
        let allow = AllowIds::from_config(&cfg);
        Self {
            allow,
            shells: Shells::discover(),
            cfg,
            table,
            users: UserNames::new(),
            hashes: Arc::default(),
            sensor,
            stats,
            counts: EngineStats::default(),
            recheck: Vec::new(),
            relay_recheck: Vec::new(),
            relay_watch: relay_watch::RelayWatch::default(),
            jobs: Vec::new(),
            next_job: 1,
            waiting: HashMap::new(),
            queue: VecDeque::new(),
            learning: None,
            doomed: doom::Doomed::default(),
            late: Vec::new(),
            alerts_by_rule: std::collections::BTreeMap::new(),
        }
    }

    /// Alerts released so far, by rule id (an alert counts once for each of its rules).
    pub fn alerts_by_rule(&self) -> &std::collections::BTreeMap<&'static str, u64> {
        &self.alerts_by_rule
    }

    /// The sensor feeding this engine.
    pub fn sensor_kind(&self) -> SensorKind {
        self.sensor
    }

    /// A kill the API asked for, checked like `--kill-on-alert`'s: the live process `pid` as
    /// the table knows it (pid + start time + executable file), never pid 1, a kernel thread,
    /// procwatch or its parent, an exempt process (allowlisted executable, whitelisted user),
    /// nor one outside `scope`. Returns the process flagged for the action stage, with an alert
    /// that records the request.
    pub fn api_kill(&mut self, pid: u32, scope: Option<u32>) -> Result<Flagged, ApiRefusal> {
        let refuse = |status: u16, message: String| Err(ApiRefusal { status, message });
        if pid == 1 {
            return refuse(403, "pid 1 (init) is never killed".into());
        }
        let me = std::process::id();
        if pid == me || pid == std::os::unix::process::parent_id() {
            return refuse(
                403,
                format!("pid {pid} is procwatch or its parent: never killed"),
            );
        }
        let Some(p) = self.table.get(pid).filter(|p| p.exited.is_none()) else {
            return refuse(404, format!("no live process {pid} in the table"));
        };
        if p.kernel_thread {
            return refuse(403, format!("pid {pid} is a kernel thread: never killed"));
        }
        if p.start_ticks == 0 {
            return refuse(
                409,
                format!(
                    "the start time of pid {pid} is unknown: it cannot be told from a process \
                     that reused the pid, so it is not killed"
                ),
            );
        }
        if let Some(root) = scope
            && !self.descends_from(pid, root)
        {
            return refuse(
                403,
                format!("pid {pid} is outside --enforce-scope-pid {root}: not killed"),
            );
        }
        let user = self.users.name(p.uid).map(str::to_owned);
        let verdict = score::Verdict {
            total_score: p.score.as_ref().map_or(0.0, |s| s.total_score),
            heuristic_score: p.score.as_ref().map_or(0.0, |s| s.heuristic_score),
            ml_score: p.score.as_ref().map_or(0.0, |s| s.ml_score),
            ..score::Verdict::default()
        };
        let sensor = SensorInfo {
            name: self.sensor,
            events_lost: self.stats.lost_total(),
            probes_missing: self.stats.probes_missing(),
        };
        let mut alert = alert::build(p, &verdict, &Trigger::Sweep, user, sensor);
        // The reasons the process scored with, as they stand (the verdict above has no findings).
        if let Some(s) = &p.score {
            alert.reasons = s.reasons.clone();
        }
        alert.trigger = serde_json::json!({ "kind": "api_kill" });
        alert.silence_with.clear();
        alert.ancestors = ancestry(&self.table, p.ppid);
        // The table may not know the executable's identity (a process swept, not seen
        // exec'ing): read it now, or an allowlisted executable would not be recognised.
        let exe_id = p
            .exe_id
            .or_else(|| crate::identity::ExeId::of_proc_exe(pid, None));
        let flagged = Flagged {
            alert,
            start_ticks: p.start_ticks,
            exe_id,
            kernel_thread: false,
            exited: false,
            stopped_tracee: None,
        };
        if let Some(why) = self.kill_exemption(&flagged) {
            return refuse(403, format!("pid {pid} is {why}"));
        }
        // Its record goes to the history and the sinks like any alert: counted like one, so
        // /api/stats and /metrics agree with the history.
        self.counts.alerts += 1;
        for r in &flagged.alert.reasons {
            *self.alerts_by_rule.entry(r.rule.as_str()).or_default() += 1;
        }
        Ok(flagged)
    }

    /// Adds to the baselines exactly what `alert` (a `procwatch.alert/v1` record) reported,
    /// as `procwatch baseline accept` does; the model is saved with the next save.
    pub fn api_accept(
        &mut self,
        alert: &serde_json::Value,
    ) -> Result<crate::baseline::edit::Accepted, ApiRefusal> {
        let cfg = self.cfg.baseline.clone();
        let Some(l) = self.learning.as_mut() else {
            return Err(ApiRefusal {
                status: 409,
                message: "baselines are off (no model): nothing to accept into".into(),
            });
        };
        let now = crate::learning::now_secs();
        crate::baseline::edit::accept(l.learner_mut().model_mut(), alert, &cfg, now).map_err(|e| {
            ApiRefusal {
                status: 400,
                message: e.to_string(),
            }
        })
    }

    /// Turns the learned baselines on (learning and anomalies).
    pub fn set_learning(&mut self, learning: Learning) {
        self.learning = Some(learning);
    }

    /// The learned baselines, when on.
    pub fn learning(&self) -> Option<&Learning> {
        self.learning.as_ref()
    }

    /// The learned baselines, when on (to save or reload the model).
    pub fn learning_mut(&mut self) -> Option<&mut Learning> {
        self.learning.as_mut()
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the config (SIGHUP); the table and dedup state are kept.
    pub fn set_config(&mut self, cfg: Config) {
        self.allow = AllowIds::from_config(&cfg);
        if let Some(l) = self.learning.as_mut() {
            l.learner_mut().set_config(&cfg.baseline);
        }
        self.cfg = cfg;
    }

    /// Resolves the allowlisted paths again (a file replaced at its path is another file).
    pub fn refresh_allowlist(&mut self) {
        self.allow = AllowIds::from_config(&self.cfg);
    }

    /// Why a flagged process must not be killed from user space, if it must not: the same
    /// exemptions the kernel applies (allowlisted executable by file identity, user).
    pub fn kill_exemption(&self, f: &Flagged) -> Option<String> {
        Self::exemption(&self.allow, &self.cfg, f.exe_id, &f.alert)
    }

    fn exemption(allow: &AllowIds, cfg: &Config, exe: Option<ExeId>, a: &Alert) -> Option<String> {
        if exe.is_some_and(|id| allow.exempt.contains(&id)) {
            return Some(
                "exempt: allowlisted executable (enforce.allow_exe_paths / whitelist.exe_paths)"
                    .into(),
            );
        }
        cfg.user_whitelisted(a.user.as_deref(), a.uid)
            .then(|| "exempt: whitelisted user".into())
    }

    /// Condemns the flagged process `f` and every live descendant the table knows (those the
    /// exemptions allow); returns the descendants, for the action stage to kill.
    pub fn condemn(&mut self, f: &Flagged) -> Vec<Condemned> {
        let root = Condemned {
            pid: f.alert.pid,
            start_ticks: f.start_ticks,
        };
        if root.start_ticks == 0 {
            return Vec::new();
        }
        self.doomed
            .condemn_tree(root, &self.table, &self.allow, &self.cfg, &mut self.users)
    }

    /// Every process condemned since the last call (for the kernel's map), and, second, those
    /// of them only a fork seen after the verdict condemned: nobody else kills these.
    pub fn take_condemned(&mut self) -> (Vec<Condemned>, Vec<Condemned>) {
        (self.doomed.take_new(), std::mem::take(&mut self.late))
    }

    /// The process table (read-only).
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            evicted: self.table.evicted(),
            tracked: self.table.len(),
            relay_watch_dropped: self.relay_watch.dropped,
            ..self.counts
        }
    }

    /// What a full /proc read of a process should look for under the config in force.
    pub fn interest(&self) -> Interest {
        let ports = self.cfg.ports.clone();
        Interest {
            port_allowed: Arc::new(move |port| ports.contains(port)),
            wants_stdio: is_shell_or_interpreter,
            servers: self.learning.is_some(),
        }
    }

    /// The executable hashes, shared with the jobs that compute them.
    pub fn hashes(&self) -> Arc<Mutex<HashCache>> {
        self.hashes.clone()
    }

    /// The jobs asked for since the last call; run each and hand its result to
    /// [`Engine::on_job_done`] (every one, also when it failed).
    pub fn take_jobs(&mut self) -> Vec<Job> {
        std::mem::take(&mut self.jobs)
    }

    /// Jobs handed out whose results have not come back.
    pub fn jobs_in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// Alerts decided and held until their facts are in.
    pub fn alerts_held(&self) -> usize {
        self.queue.len()
    }

    /// Every held alert as it is, in order (at shutdown, when no job result will come).
    pub fn flush(&mut self) -> Vec<Flagged> {
        self.waiting.clear();
        self.queue.drain(..).map(|q| q.flagged).collect()
    }

    /// Applies one sensor event and returns the alerts it causes.
    pub fn on_event(&mut self, ev: &Event, now: Instant) -> Vec<Flagged> {
        self.apply(ev, now, false);
        self.release()
    }

    /// Applies a batch of sensor events in order and returns the alerts they cause. Knowing
    /// the batch lets an exec whose exit follows in it skip /proc: the process is gone, so
    /// reading its exe link could only fail, and that failed lookup was the largest single
    /// cost of an exec storm.
    pub fn on_events(&mut self, events: &[Event], now: Instant) -> Vec<Flagged> {
        let mut last_exit: HashMap<u32, usize> = HashMap::new();
        for (i, ev) in events.iter().enumerate() {
            if matches!(ev.body, EventBody::Exit(_)) {
                last_exit.insert(ev.tgid, i);
            }
        }
        for (i, ev) in events.iter().enumerate() {
            let gone = last_exit.get(&ev.tgid).is_some_and(|&at| at > i);
            self.apply(ev, now, gone);
        }
        self.release()
    }

    /// One event; `gone` when the process is known to have exited already.
    fn apply(&mut self, ev: &Event, now: Instant, gone: bool) {
        let pid = ev.tgid;
        match &ev.body {
            EventBody::Exec(x) => {
                let p = self
                    .table
                    .entry(pid, ev.start_ticks().unwrap_or(0), ev.sensor, now);
                // A sweep (or lookup) that read /proc after this exec, and found this very file
                // running, already judged the image it starts: its findings stay reported, or
                // the late exec event would alert a second time for the same image.
                let judged = (ev.ktime_ns != 0 && p.identity_ns > ev.ktime_ns)
                    .then(|| (p.exe.clone(), std::mem::take(&mut p.reported)));
                p.reset_for_exec();
                p.exe_id = x.exe;
                p.name = ev.comm.clone();
                p.uid = ev.uid;
                p.gid = ev.gid;
                if x.ppid != 0 {
                    p.ppid = x.ppid;
                }
                p.cmdline = x.argv.clone();
                let res = &x.resolved;
                if let Some(cwd) = res.cwd.as_ref().filter(|_| !res.cwd_cut) {
                    p.cwd = Some(cwd.clone());
                }
                if res.cgroup_id.is_some() && res.cgroup_id != p.cgroup_id {
                    p.cgroup_id = res.cgroup_id;
                    p.cgroup = None;
                }
                p.image_boot_ns = boot_ns_of(ev.ktime_ns);
                let (proc_exe, proc_state) = if gone {
                    (None, ExeState::Unknown)
                } else {
                    let (exe, state) = sample::read_exe(pid);
                    // /proc names whoever holds the pid now: if the kernel said which file was
                    // exec'd and /proc runs another, the process has exec'd again (or is gone
                    // and the pid reused): /proc says nothing about this image.
                    match x.exe {
                        Some(id) if exe.is_some() && !runs(pid, id) => (None, ExeState::Unknown),
                        _ => (exe, state),
                    }
                };
                // The path the kernel walked from the file itself is the truth (a cut one only
                // when /proc cannot say); /proc only adds whether the file is still there.
                let walked = res
                    .path
                    .clone()
                    .filter(|_| !res.path_cut || proc_exe.is_none());
                match (walked, proc_exe) {
                    (Some(walked), proc_exe) => {
                        p.exe_state = if proc_exe.is_some() {
                            proc_state
                        } else {
                            match exe_state_from_filename(&walked, &p.memfds) {
                                ExeState::Unknown => {
                                    exe_state_from_filename(&x.filename, &p.memfds)
                                }
                                known => known,
                            }
                        };
                        p.exe = Some(walked);
                    }
                    (_, Some(exe)) => {
                        p.exe = Some(exe);
                        p.exe_state = proc_state;
                    }
                    // Gone already (a 2 ms process) and no path from the kernel: the name
                    // given to exec, made absolute and normalised.
                    (None, None) => {
                        p.exe = Some(program::normalise(&x.filename, p.cwd.as_deref()));
                        p.exe_state = exe_state_from_filename(&x.filename, &p.memfds);
                    }
                }
                let exe_path = p.exe.clone().unwrap_or_default();
                let interpreter = program::is_interpreter(p.exe_name());
                let stdin = (!gone && interpreter)
                    .then(|| sample::stdin_link(pid))
                    .flatten();
                p.program = program::program(
                    &exe_path,
                    &x.filename,
                    res.interp.as_deref(),
                    &x.argv,
                    stdin.as_deref(),
                    p.cwd.as_deref(),
                );
                if let Some((exe, reported)) = judged
                    && exe.is_some()
                    && exe == p.exe
                {
                    p.reported = reported;
                }
                p.push_image(ExecImage {
                    exe: p.exe.clone(),
                    program: p.program.as_ref().map(|g| g.path.clone()),
                    ktime_ns: ev.ktime_ns,
                });
                p.shell = self.shells.is_shell(p.exe_id) || is_shell_name(p.exe_name());
                self.learn_exec(pid, ev);
                let Some(p) = self.table.get(pid) else {
                    return;
                };
                if !gone {
                    // The fd links are cheap; the socket table behind them (and, for a program
                    // not known as a shell, whether it is a copy of one) is read off the
                    // engine, and the exec is evaluated when it is in.
                    let inodes = sockets::stdio_sockets(pid);
                    let named = is_shell_or_interpreter(p.exe_name());
                    if inodes.iter().any(Option::is_some) {
                        let hash = (!p.shell && !named).then(|| p.exe.clone()).flatten();
                        let image = p.image;
                        let then = Then::Evaluate(Some(Box::new(ev.clone())));
                        self.ask(pid, image, Work::StdioNet(inodes, hash), then);
                        return;
                    }
                    if p.shell && program::shell_reads_commands(&x.argv) {
                        let (image, parent) = (p.image, p.ppid);
                        let candidates = self.relatives(pid, parent);
                        let then = Then::Evaluate(Some(Box::new(ev.clone())));
                        self.ask(pid, image, Work::Relay { parent, candidates }, then);
                        return;
                    }
                }
            }
            EventBody::Fork(f) => {
                // A fork runs the parent's image: same exe, argv and what was already reported.
                let image = self.table.get(f.parent_tgid).map(|p| {
                    (
                        (p.uid, p.gid),
                        p.name.clone(),
                        (p.exe.clone(), p.exe_id),
                        p.exe_state,
                        p.cmdline.clone(),
                        p.sha256.clone(),
                        p.reported.clone(),
                        p.cwd.clone(),
                        (
                            p.program.clone(),
                            p.exec_chain.last().cloned(),
                            (p.cgroup_id, p.cgroup.clone()),
                        ),
                    )
                });
                let start = f
                    .child_start_time_ns
                    .and_then(crate::identity::ticks_from_boot_ns)
                    .unwrap_or(0);
                let child = self.table.entry(f.child_tgid, start, ev.sensor, now);
                child.ppid = f.parent_tgid;
                child.fork_parent = f.parent_tgid;
                // A sweep that read the child after this fork (the event came late) knows
                // its state since, maybe an exec'd program already judged: the parent's image
                // must not overwrite that.
                let seen_since = ev.ktime_ns != 0 && child.identity_ns > ev.ktime_ns;
                let image = image.filter(|_| !seen_since);
                if !seen_since {
                    // The child's image begins with the child: its own exec id.
                    child.image_boot_ns = f
                        .child_start_time_ns
                        .unwrap_or_else(|| boot_ns_of(ev.ktime_ns));
                }
                if let Some((
                    (uid, gid),
                    name,
                    (exe, exe_id),
                    exe_state,
                    cmdline,
                    sha256,
                    reported,
                    cwd,
                    (program, last_image, (cgroup_id, cgroup)),
                )) = image
                {
                    child.program = program;
                    child.exec_chain = last_image.into_iter().collect();
                    child.cgroup_id = cgroup_id;
                    child.cgroup = cgroup;
                    child.uid = uid;
                    child.gid = gid;
                    child.name = name;
                    child.exe = exe;
                    child.exe_id = exe_id;
                    child.exe_state = exe_state;
                    child.cmdline = cmdline;
                    child.sha256 = sha256;
                    child.reported = reported;
                    // The child starts where its parent is: a relative exec resolves against it.
                    child.cwd = cwd;
                }
                if let (Some(parent), Some(child)) =
                    (self.table.get(f.parent_tgid), self.table.get(f.child_tgid))
                {
                    let before = self.doomed.contains(child.pid, child.start_ticks);
                    self.doomed
                        .on_fork(parent, child, &self.allow, &self.cfg, &mut self.users);
                    if !before && self.doomed.contains(child.pid, child.start_ticks) {
                        self.late.push(Condemned {
                            pid: child.pid,
                            start_ticks: child.start_ticks,
                        });
                    }
                }
                return;
            }
            EventBody::Exit(_) => {
                if let (Some(l), Some(p)) = (self.learning.as_mut(), self.table.get(pid)) {
                    l.exited(p);
                }
                self.doomed.on_exit(pid);
                self.table.mark_exit_event(pid, now);
                // Entries leave as their grace ends, not a sweep later: in a storm that is
                // thousands of entries per second.
                self.table.expire(now);
                return;
            }
            // An event that adds no new fact cannot change the verdict: no evaluation (a
            // connect storm to one destination costs a lookup per connect, not a scoring).
            EventBody::Ptrace(t) => {
                let asked = self.learn(pid, ev, now);
                let p = self.table.entry(pid, 0, ev.sensor, now);
                let fact = PtraceFact {
                    request: t.request_name,
                    target: t.target_pid,
                };
                let new =
                    t.request_name != "PTRACE_TRACEME" && push_bounded(&mut p.ptrace_events, fact);
                if !asked && let (Some(l), Some(b)) = (self.learning.as_mut(), event_behaviour(ev))
                {
                    l.observe(p, b);
                }
                if asked || (!new && ev.kernel_action.is_none()) {
                    return;
                }
            }
            EventBody::Connect(c) => {
                let asked = self.learn(pid, ev, now);
                let p = self.table.entry(pid, 0, ev.sensor, now);
                let new = push_bounded(
                    &mut p.connects,
                    ConnectFact {
                        addr: c.addr,
                        port: c.port,
                        proto: c.proto(),
                    },
                );
                let learned = match (self.learning.as_mut(), event_behaviour(ev)) {
                    (Some(l), Some(b)) if !asked => l.observe(p, b),
                    _ => false,
                };
                let shell = is_shell_or_interpreter(p.exe_name());
                if shell && !self.recheck.iter().any(|&(q, _)| q == pid) {
                    self.recheck.push((pid, now + RECHECK_AFTER));
                }
                // Any process that connects may be the relay of a shell whose relay is
                // unknown: looked at once the connection is up.
                if !self.relay_watch.is_empty() {
                    let table = &self.table;
                    self.relay_watch.retain(|q, image| {
                        table
                            .get(q)
                            .is_some_and(|p| p.image == image && p.exited.is_none())
                    });
                    self.relay_watch.on_connect(pid, now + RECHECK_AFTER);
                }
                // A repeated connect adds no fact, unless the baseline found it anomalous.
                if asked || (!new && !learned) {
                    return;
                }
            }
            EventBody::WxMem(w) => {
                let asked = self.learn(pid, ev, now);
                let p = self.table.entry(pid, 0, ev.sensor, now);
                let new = push_bounded(
                    &mut p.wx_events,
                    WxFact {
                        syscall: w.syscall,
                        start: w.start,
                        len: w.len,
                    },
                );
                if !asked && let (Some(l), Some(b)) = (self.learning.as_mut(), event_behaviour(ev))
                {
                    l.observe(p, b);
                }
                if asked || (!new && ev.kernel_action.is_none()) {
                    return;
                }
            }
            EventBody::FileOpen(f) => {
                if self.learning.is_none() || self.learn(pid, ev, now) {
                    return;
                }
                // Only a file the baseline finds anomalous calls for a verdict.
                if !self.learn_file(pid, f, gone) {
                    return;
                }
            }
            EventBody::Memfd(m) => {
                self.learn(pid, ev, now);
                let p = self.table.entry(pid, 0, ev.sensor, now);
                push_bounded(&mut p.memfds, m.name.clone());
                return;
            }
            // Writing into another process is ptrace-class: the same rule, the same facts.
            // A process writing its own memory is not (see docs/rules.md).
            EventBody::Inject(i) => {
                if i.target_self || i.target_pid == Some(ev.tgid) {
                    return;
                }
                let asked = self.learn(pid, ev, now);
                let p = self.table.entry(pid, 0, ev.sensor, now);
                let fact = PtraceFact {
                    request: i.method,
                    target: i.target_pid.map_or(0, u64::from),
                };
                let new = push_bounded(&mut p.ptrace_events, fact);
                if asked || (!new && ev.kernel_action.is_none()) {
                    return;
                }
            }
            // Reported in the event stream; the connection it makes is judged by the sweep's
            // socket table (its destination is not readable at submission).
            EventBody::IoUring(_) => {
                self.learn(pid, ev, now);
                return;
            }
        }
        self.evaluate(pid, &Trigger::Event(ev), gone);
    }

    /// Makes sure the process behind `ev` has an entry. The first time it is seen (it
    /// predates procwatch or its exec was not observed) who it is gets read off the engine,
    /// and the event is evaluated once that is in: true when so.
    fn learn(&mut self, pid: u32, ev: &Event, now: Instant) -> bool {
        let p = self
            .table
            .entry(pid, ev.start_ticks().unwrap_or(0), ev.sensor, now);
        if p.exe_state != ExeState::Unknown || p.exe.is_some() {
            return false;
        }
        p.name = ev.comm.clone();
        p.uid = ev.uid;
        p.gid = ev.gid;
        let image = p.image;
        let asked = self
            .waiting
            .values()
            .any(|w| w.pid == pid && w.image == image && matches!(w.then, Then::Evaluate(Some(_))));
        if asked {
            return false;
        }
        self.ask(
            pid,
            image,
            Work::Identity,
            Then::Evaluate(Some(Box::new(ev.clone()))),
        );
        true
    }

    /// Feeds the baseline an exec: the process's own (parent and user) and its parent's
    /// spawn; a parent the spawn makes anomalous is judged at once.
    fn learn_exec(&mut self, pid: u32, ev: &Event) {
        let Some(learning) = self.learning.as_mut() else {
            return;
        };
        let Some(p) = self.table.get(pid) else {
            return;
        };
        let parent = self
            .table
            .get(p.ppid)
            .filter(|q| q.pid != pid && q.exited.is_none());
        let user = if p.uid == u32::MAX {
            None
        } else {
            Some(
                self.users
                    .name(p.uid)
                    .map_or_else(|| p.uid.to_string(), str::to_owned),
            )
        };
        learning.observe(
            p,
            Behaviour::Exec {
                parent_exe: parent.and_then(|q| q.exe.as_deref()),
                user: user.as_deref(),
            },
        );
        let (Some(q), Some(child)) = (parent, p.exe.as_deref()) else {
            return;
        };
        if learning.observe(q, Behaviour::Spawn { child_exe: child }) {
            let ppid = q.pid;
            self.evaluate(ppid, &Trigger::Event(ev), false);
        }
    }

    /// Feeds the baseline a file open (a relative path placed against the directory it is
    /// relative to); true when it raised an anomaly.
    fn learn_file(&mut self, pid: u32, f: &FileOpen, gone: bool) -> bool {
        let (Some(learning), Some(p)) = (self.learning.as_mut(), self.table.get(pid)) else {
            return false;
        };
        let path = Path::new(&f.path);
        if path.is_absolute() {
            return learning.observe(p, Behaviour::FileOpen(path));
        }
        match (!gone).then(|| sample::open_base(pid, f.dfd)).flatten() {
            Some(base) => learning.observe(p, Behaviour::FileOpen(&base.join(path))),
            None => false,
        }
    }

    fn ask(&mut self, pid: u32, image: u64, work: Work, then: Then) -> u64 {
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.push(Job {
            id,
            pid,
            image,
            work,
        });
        self.waiting.insert(id, Waiting { pid, image, then });
        id
    }

    /// Takes a job's result: merges what it found into the process it was asked for (if that
    /// is still the same image), evaluates it or completes the alert waiting on it, and returns
    /// the alerts now ready.
    pub fn on_job_done(&mut self, id: u64, outcome: Outcome, now: Instant) -> Vec<Flagged> {
        let Some(w) = self.waiting.remove(&id) else {
            return self.release();
        };
        if let Err(why) = &outcome {
            self.counts.enrich_failed += 1;
            debug!(pid = w.pid, why = %why, "enrichment gave nothing");
        }
        let current = self.table.get(w.pid).is_some_and(|p| p.image == w.image);
        match w.then {
            Then::Complete => self.complete(id, w, outcome.ok(), current),
            Then::Evaluate(ev) => {
                if let Some(p) = self.table.get_mut(w.pid).filter(|_| current) {
                    match outcome {
                        // Only the process the event names: a pid reused since is another.
                        Ok(Found::Identity(s))
                            if if p.start_ticks != 0 {
                                s.start_ticks == p.start_ticks
                            } else {
                                ev.as_ref().is_some_and(|ev| {
                                    ev.ktime_ns != 0
                                        && crate::identity::started_by(s.start_ticks, ev.ktime_ns)
                                })
                            } =>
                        {
                            merge::merge_identity(p, &s)
                        }
                        Ok(Found::StdioNet(net, digest)) => {
                            p.stdio_net = net;
                            if digest.is_some_and(|d| self.shells.digests.contains(&d)) {
                                p.shell = true;
                            }
                            // Sockets that are not network ones (a socketpair from `socat
                            // EXEC`): the process at their other end may be the relay.
                            if p.stdio_net.is_empty()
                                && p.shell
                                && program::shell_reads_commands(&p.cmdline)
                            {
                                self.relay_recheck.push((w.pid, w.image, now));
                            }
                        }
                        Ok(Found::Relay(relays)) => {
                            // The relay of a pipeline may not have connected yet at the exec:
                            // looked for once more a moment later (a second look is a sweep's).
                            if relays.is_empty() && ev.is_some() {
                                self.relay_recheck.push((
                                    w.pid,
                                    w.image,
                                    now + RELAY_RECHECK_AFTER,
                                ));
                            }
                            // Not found: any later connect may name it.
                            if relays.is_empty() {
                                self.relay_watch.watch(w.pid, w.image);
                            } else {
                                self.relay_watch.forget(w.pid);
                            }
                            // A login server holding the pty or pipe is a session, not a relay.
                            p.relay = relays
                                .into_iter()
                                .find(|r| {
                                    !r.exe_id.is_some_and(|id| {
                                        self.shells.terminal_servers.contains(&id)
                                    })
                                })
                                .map(|r| RelayFact {
                                    pid: r.pid,
                                    exe: r.exe,
                                    remote: r.remote,
                                    accepted: r.accepted,
                                });
                        }
                        Ok(Found::Recheck(s))
                            if p.start_ticks == 0 || p.start_ticks == s.start_ticks =>
                        {
                            merge::merge(p, *s, now)
                        }
                        _ => {}
                    }
                }
                if current
                    && let Some(Event {
                        body: EventBody::FileOpen(f),
                        ..
                    }) = ev.as_deref()
                {
                    self.learn_file(w.pid, f, false);
                }
                if current
                    && let (Some(l), Some(p), Some(b)) = (
                        self.learning.as_mut(),
                        self.table.get(w.pid),
                        ev.as_deref().and_then(event_behaviour),
                    )
                {
                    l.observe(p, b);
                }
                if current {
                    let trigger = match &ev {
                        Some(ev) => Trigger::Event(ev),
                        None => Trigger::Sweep,
                    };
                    self.evaluate(w.pid, &trigger, false);
                }
            }
        }
        self.release()
    }

    /// Puts an alert's facts in: the digest, and every outbound connection when some were
    /// found (a sweep only traces the suspicious ones).
    fn complete(&mut self, id: u64, w: Waiting, found: Option<Found>, current: bool) {
        let Some(q) = self.queue.iter_mut().find(|q| q.job == Some(id)) else {
            return;
        };
        q.job = None;
        let Some(Found::Complete {
            sha256,
            conns,
            cgroup,
        }) = found
        else {
            return;
        };
        if !conns.is_empty() {
            q.conns = conns;
        }
        let a = &mut q.flagged.alert;
        if sha256.is_some() {
            a.sha256 = sha256;
        }
        if let Some(cg) = cgroup {
            a.container_id = alert::container_id(&cg);
            a.cgroup = Some(cg);
        }
        let all: BTreeSet<&ConnectFact> = q.connects.iter().chain(&q.conns).collect();
        a.conns_outbound = all.len();
        let mut ports: Vec<u16> = all.iter().map(|c| c.port).collect();
        ports.sort_unstable();
        ports.dedup();
        a.remote_ports = ports;
        if let Some(p) = self.table.get_mut(w.pid).filter(|_| current) {
            if a.sha256.is_some() {
                p.sha256 = a.sha256.clone();
            }
            if a.cgroup.is_some() {
                p.cgroup = a.cgroup.clone();
            }
            p.conns = q.conns.clone();
        }
        // Exceptions by hash could not be judged before the hash was known: an alert all of
        // whose reasons one silences is dropped now (its process is no longer judged by it).
        let a = &q.flagged.alert;
        if let Some(p) = self
            .table
            .get(w.pid)
            .filter(|p| current && p.sha256.is_some())
        {
            let parent_exe = self.table.get(p.ppid).and_then(|q| q.exe.clone());
            let ctx = detect::except::Context {
                user: a.user.as_deref(),
                parent_exe: parent_exe.as_deref(),
            };
            let s = detect::except::subject(p, &ctx);
            let by_hash = |rule| {
                self.cfg
                    .exceptions
                    .of(rule)
                    .iter()
                    .any(|e| e.needs_hash() && e.matches(&s, None))
            };
            let silenced = |r: &alert::Reason| match r.rule {
                RuleId::Heuristic(rule) => by_hash(rule),
                RuleId::Anomaly(_) => false,
            };
            if !a.reasons.is_empty() && a.reasons.iter().all(silenced) {
                q.dropped = true;
            }
        }
    }

    /// Alerts at the front of the queue whose facts are in.
    fn release(&mut self) -> Vec<Flagged> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|q| q.job.is_none()) {
            if let Some(q) = self.queue.pop_front() {
                if q.dropped {
                    self.counts.alerts = self.counts.alerts.saturating_sub(1);
                    self.counts.excepted += 1;
                    debug!(
                        pid = q.flagged.alert.pid,
                        "alert silenced by an exception by hash"
                    );
                    continue;
                }
                for r in &q.flagged.alert.reasons {
                    *self.alerts_by_rule.entry(r.rule.as_str()).or_default() += 1;
                }
                out.push(q.flagged);
            }
        }
        out
    }

    /// Merges a sweep of every process, taken from `started` on, and evaluates each one.
    pub fn on_samples(&mut self, sweep: Sweep, started: Instant, now: Instant) -> Vec<Flagged> {
        self.counts.sweeps += 1;
        self.counts.sweep_unread += sweep.unread.len() as u64;
        let mut seen: std::collections::HashSet<u32> = sweep.unread.iter().copied().collect();
        let mut pids = Vec::with_capacity(sweep.samples.len());
        for mut s in sweep.samples {
            seen.insert(s.pid);
            // Read before it exited, merged after its exit: the process is over, and an entry
            // made from this sample would be judged (and alert) once more as a new process.
            if self.table.has_ended(s.pid, s.start_ticks) {
                self.counts.sweep_after_exit += 1;
                continue;
            }
            let p = self
                .table
                .entry(s.pid, s.start_ticks, SensorKind::Sweep, now);
            let timed = p.cpu_sample.is_some();
            let before = p.conns.clone();
            let servers = std::mem::take(&mut s.servers);
            merge::merge(p, s, now);
            if let Some(l) = self.learning.as_mut()
                && !p.kernel_thread
            {
                let sample = Behaviour::Sample {
                    cpu_pct: timed.then_some(p.cpu_pct),
                    rss_bytes: (p.rss_bytes > 0).then_some(p.rss_bytes),
                };
                l.observe(p, sample);
                // Outbound connections /proc shows that no connect event reported (made
                // before procwatch started, or lost in a full ring buffer), each once.
                for c in &p.conns {
                    if !before.contains(c) && !p.connects.contains(c) {
                        l.observe(p, Behaviour::Connect(crate::learning::outbound(c)));
                    }
                }
                // Listening sockets and accepted connections, each once per process.
                for f in servers {
                    if push_bounded(&mut p.servers, f) {
                        l.observe(p, Behaviour::Connect(crate::learning::served(&f)));
                    }
                }
            }
            pids.push(p.pid);
        }
        // Live entries that the sweep did not find have exited without us seeing it; entries
        // that appeared while the sweep ran (from events) may simply be newer than it, and
        // processes it found but could not read are there.
        for pid in self.table.live_pids_before(started) {
            if !seen.contains(&pid) {
                self.table.mark_exited(pid, now);
            }
        }
        self.table.expire(now);
        self.table.forget_ended_before(started);
        for pid in pids {
            self.evaluate(pid, &Trigger::Sweep, false);
        }
        self.release()
    }

    /// Where a shell's relay would be: its parent, its siblings, its grandparent (bounded).
    fn relatives(&self, pid: u32, parent: u32) -> Vec<u32> {
        const MAX: usize = 64;
        let mut out = vec![parent];
        if let Some(gp) = self.table.get(parent).map(|p| p.ppid).filter(|&g| g > 1) {
            out.push(gp);
        }
        out.extend(
            self.table
                .iter()
                .filter(|p| p.ppid == parent && p.pid != pid && p.exited.is_none())
                .map(|p| p.pid)
                .take(MAX),
        );
        out
    }

    /// True when `pid` is `root` or descends from it (parents from the table, else /proc).
    pub fn descends_from(&self, pid: u32, root: u32) -> bool {
        let mut cur = pid;
        for _ in 0..64 {
            if cur == root {
                return true;
            }
            let parent = match self.table.get(cur) {
                Some(p) if p.ppid != 0 => p.ppid,
                _ => match crate::procfs::stat::read_stat(cur) {
                    Ok(st) => st.ppid,
                    Err(_) => return false,
                },
            };
            if parent == 0 || parent == cur {
                return false;
            }
            cur = parent;
        }
        false
    }

    /// Asks for a full re-read of every process whose recheck is due.
    pub fn start_rechecks(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.recheck.retain(|&(pid, at)| {
            if at <= now {
                due.push(pid);
                false
            } else {
                true
            }
        });
        due.sort_unstable();
        due.dedup();
        for pid in due {
            if let Some(image) = self.table.get(pid).map(|p| p.image) {
                let interest = self.interest();
                self.ask(pid, image, Work::Recheck(interest), Then::Evaluate(None));
            }
        }
        let mut relays = Vec::new();
        self.relay_recheck.retain(|&(pid, image, at)| {
            if at <= now {
                relays.push((pid, image));
                false
            } else {
                true
            }
        });
        for (pid, image) in relays {
            let Some(parent) = self
                .table
                .get(pid)
                .filter(|p| p.image == image && p.exited.is_none())
                .map(|p| p.ppid)
            else {
                continue;
            };
            let candidates = self.relatives(pid, parent);
            let work = Work::Relay { parent, candidates };
            self.ask(pid, image, work, Then::Evaluate(None));
        }
        for (pid, image, candidates) in self.relay_watch.take_due(now) {
            let Some(parent) = self
                .table
                .get(pid)
                .filter(|p| p.image == image && p.exited.is_none())
                .map(|p| p.ppid)
            else {
                continue;
            };
            let work = Work::Relay { parent, candidates };
            self.ask(pid, image, work, Then::Evaluate(None));
        }
    }

    /// When the next recheck is due.
    pub fn next_recheck(&self) -> Option<Instant> {
        let relays = self.relay_recheck.iter().map(|&(_, _, at)| at);
        let watched = self.relay_watch.next_due();
        self.recheck
            .iter()
            .map(|&(_, at)| at)
            .chain(relays)
            .chain(watched)
            .min()
    }

    /// Runs every rule on `pid` and queues an alert when the verdict calls for one; an alert
    /// on a live process waits for its facts (digest, connections), read off the engine.
    fn evaluate(&mut self, pid: u32, trigger: &Trigger<'_>, gone: bool) {
        let cfg = &self.cfg;
        let Some(p) = self.table.get(pid) else {
            return;
        };
        let findings = detect::evaluate(p, cfg);
        // Exceptions first: what they silence is neither scored nor matched against the
        // baseline.
        let parent_exe = self.table.get(p.ppid).and_then(|q| q.exe.clone());
        let user = self.users.name(p.uid).map(str::to_owned);
        let ctx = detect::except::Context {
            user: user.as_deref(),
            parent_exe: parent_exe.as_deref(),
        };
        let applied = detect::except::apply(findings, p, &ctx, cfg);
        if !applied.silenced.is_empty() {
            self.counts.excepted += 1;
            debug!(pid, exceptions = ?applied.silenced, "findings silenced by exceptions");
        }
        let findings = applied.kept;
        let Some(p) = self.table.get_mut(pid) else {
            return;
        };
        if applied.pending {
            // Read the process in full off the engine now, then judge it again (once: if
            // that read cannot tell, the finding stands).
            p.successor_asked = true;
            self.recheck.push((pid, Instant::now()));
        }
        let judged = match self.learning.as_mut() {
            Some(l) => l.judge(p, &findings, cfg),
            None => Judgement::default(),
        };
        if findings.is_empty() && judged.anomalies.is_empty() {
            p.score = None;
            return;
        }
        let mut verdict = score::with_baseline(findings, judged.known, judged.anomalies, cfg);
        verdict.new_anomalies = judged.new_anomalies;
        p.score = Some(Arc::new(score::Scored::of(&verdict)));
        if verdict.total_score >= cfg.min_score {
            identify(p, trigger);
        }
        let whitelisted = p
            .exe_id
            .is_some_and(|id| self.allow.whitelist.contains(&id));
        match score::decide(p, &verdict, user.as_deref(), whitelisted, cfg) {
            Decision::Alert => {
                if let Some(l) = self.learning.as_mut() {
                    l.reported(p);
                }
            }
            Decision::Whitelisted => {
                self.counts.whitelisted += 1;
                return;
            }
            Decision::BelowThreshold | Decision::AlreadyReported => return,
        }
        self.counts.alerts += 1;
        let sensor = SensorInfo {
            name: self.sensor,
            events_lost: self.stats.lost_total(),
            probes_missing: self.stats.probes_missing(),
        };
        let mut alert = alert::build(p, &verdict, trigger, user, sensor);
        let mut stopped_tracee = None;
        if let Trigger::Event(ev) = trigger {
            match ev.kernel_action {
                Some(KernelAction::Killed) => {
                    alert.action = Action::Killed;
                    alert.action_by = Some(ActionBy::Kernel);
                    stopped_tracee = attached_tracee(ev);
                }
                Some(KernelAction::KillFailed) => {
                    alert.action = Action::KillFailed;
                    alert.action_by = Some(ActionBy::Kernel);
                }
                Some(KernelAction::Exempt) => {
                    alert.action = Action::Exempt;
                    alert.action_by = Some(ActionBy::Kernel);
                    alert.action_reason = Some("exempt in the kernel's policy".into());
                }
                None => {}
            }
        }
        let flagged = Flagged {
            alert,
            start_ticks: p.start_ticks,
            exe_id: p.exe_id,
            kernel_thread: p.kernel_thread,
            exited: p.exited.is_some(),
            stopped_tracee,
        };
        let (connects, conns) = (p.connects.clone(), p.conns.clone());
        let ppid = p.ppid;
        // Opening /proc/PID says whether it is still there; nothing of it is read here.
        let live = !gone && p.exited.is_none() && PidDir::open(pid).is_ok();
        let work = Work::Complete {
            start_ticks: p.start_ticks,
            hash: p.sha256.is_none().then(|| p.exe.clone()).flatten(),
        };
        let image = p.image;
        let job = live.then(|| self.ask(pid, image, work, Then::Complete));
        let mut flagged = flagged;
        flagged.alert.ancestors = ancestry(&self.table, ppid);
        self.queue.push_back(Queued {
            flagged,
            job,
            connects,
            conns,
            dropped: false,
        });
    }
}

/// Establishes who a process about to be judged is, where the sensor could not say: its start
/// time from /proc, believed only if that process started no later than the triggering event
/// (a recycled pid belongs to a process started after it), and the executable file, read
/// through the same /proc handle once the start time is known to match. A process that exited
/// keeps what it has (its /proc entry, if any, belongs to someone else).
fn identify(p: &mut crate::process::table::Process, trigger: &Trigger<'_>) {
    if p.exited.is_some() || (p.start_ticks != 0 && p.exe_id.is_some()) {
        return;
    }
    let Ok((start, exe)) = crate::procfs::stat::start_and_exe(p.pid) else {
        return;
    };
    if p.start_ticks == 0 {
        let plausible = match trigger {
            Trigger::Event(ev) => {
                ev.ktime_ns != 0 && crate::identity::started_by(start, ev.ktime_ns)
            }
            // A sweep's sample carries its own start time; an entry without one is not judged.
            Trigger::Sweep => false,
        };
        if !plausible {
            return;
        }
        p.start_ticks = start;
    }
    if p.start_ticks == start && p.exe_id.is_none() {
        p.exe_id = exe;
    }
}

/// The parent chain from `ppid` up, as the table knows it (parent first, bounded, no loops).
fn ancestry(table: &ProcessTable, ppid: u32) -> Vec<alert::Ancestor> {
    let mut out = Vec::new();
    let mut cur = ppid;
    while cur != 0 && out.len() < alert::MAX_ANCESTORS {
        let Some(p) = table.get(cur) else {
            out.push(alert::Ancestor {
                pid: cur,
                exe: None,
                exec_id: None,
            });
            break;
        };
        out.push(alert::Ancestor {
            pid: cur,
            exe: p
                .exe
                .as_deref()
                .map(|e| crate::text::os_lossy(e.as_os_str()).into_owned()),
            exec_id: alert::exec_id_of(p),
        });
        if p.ppid == cur || out.iter().any(|a| a.pid == p.ppid) {
            break;
        }
        cur = p.ppid;
    }
    out
}

/// True when the process holding `pid` now runs the file `id`.
fn runs(pid: u32, id: ExeId) -> bool {
    ExeId::of_proc_exe(pid, None) == Some(id)
}

/// The process a killed `PTRACE_ATTACH` really stopped, as the kernel reported it at syscall
/// exit (never the pid the tracer passed: that one names any process it likes).
fn attached_tracee(ev: &Event) -> Option<(u32, u64)> {
    let EventBody::Ptrace(t) = &ev.body else {
        return None;
    };
    if t.request != procwatch_common::PTRACE_ATTACH {
        return None;
    }
    let r = t.result?;
    let start = r
        .tracee_start_time_ns
        .and_then(crate::identity::ticks_from_boot_ns)?;
    (r.ret == 0).then_some((r.tracee_tgid?, start))
}

/// Best guess at the exe state when the process is gone before /proc could be read: an exec
/// through `/dev/fd/N` or `/proc/self/fd/N` by a process that created a memfd is fileless, and
/// so is a file the kernel's walk names `/memfd:NAME` (a memfd's dentry).
fn exe_state_from_filename(filename: &Path, memfds: &[OsString]) -> ExeState {
    use std::os::unix::ffi::OsStrExt;
    let through_fd = filename.starts_with("/dev/fd") || filename.starts_with("/proc/self/fd");
    if (through_fd && !memfds.is_empty()) || filename.as_os_str().as_bytes().starts_with(b"/memfd:")
    {
        ExeState::Memfd
    } else {
        ExeState::Unknown
    }
}

/// CLOCK_BOOTTIME ns of an event's monotonic kernel time (0 stays 0: unknown).
fn boot_ns_of(ktime_ns: u64) -> u64 {
    if ktime_ns == 0 {
        return 0;
    }
    ktime_ns.saturating_add(crate::identity::boot_minus_monotonic_ns())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Rule,
        sensor::event::{Connect, Exec, Fork, WxMem},
    };

    fn event(tgid: u32, body: EventBody) -> Event {
        Event {
            sensor: SensorKind::Ebpf,
            ktime_ns: 0,
            pid: tgid,
            tgid,
            uid: 0,
            gid: 0,
            comm: "payload".into(),
            start_time_ns: None,
            kernel_action: None,
            compat: false,
            body,
        }
    }

    fn exec(tgid: u32, path: &str) -> Event {
        event(
            tgid,
            EventBody::Exec(Exec {
                filename: path.into(),
                argv: vec![path.into()],
                args_truncated: false,
                args_missing: false,
                ppid: 1,
                old_pid: tgid,
                exe: None,
                resolved: Default::default(),
            }),
        )
    }

    fn engine() -> Engine {
        Engine::new(
            Config::default(),
            SensorKind::Ebpf,
            Arc::new(SensorStats::default()),
        )
    }

    /// An engine whose only temporary directory cannot hold this test binary: tests that use
    /// this process (alive, so /proc is read) must not depend on where the checkout lives (a
    /// clone under /tmp makes the test binary itself `tmp_exe`).
    fn engine_temp_elsewhere() -> Engine {
        let cfg = Config {
            temp_dirs: vec![std::path::PathBuf::from(UNIT_TEMP)],
            ..Config::default()
        };
        Engine::new(cfg, SensorKind::Ebpf, Arc::new(SensorStats::default()))
    }

    /// The temporary directory of `engine_temp_elsewhere`.
    const UNIT_TEMP: &str = "/procwatch-unit-temp";

    // A pid far above pid_max, so no /proc entry exists and only event data is used.
    const GONE: u32 = 0x7fff_fff0;

    #[test]
    fn an_api_kill_record_is_counted_like_an_alert() {
        let mut e = engine();
        let start_ns = 4_000_000_000u64;
        let mut ev = exec(GONE, "/tmp/dropper");
        ev.start_time_ns = Some(start_ns);
        assert_eq!(e.on_event(&ev, Instant::now()).len(), 1, "the exec alerts");
        assert_eq!(e.stats().alerts, 1);
        let rule = Rule::TmpExe.as_str();
        assert_eq!(e.alerts_by_rule().get(rule), Some(&1));
        let flagged = e.api_kill(GONE, None).expect("the api kill is allowed");
        assert!(flagged.alert.reasons.iter().any(|r| r.rule == Rule::TmpExe));
        assert_eq!(e.stats().alerts, 2, "the kill's record is an alert");
        assert_eq!(e.alerts_by_rule().get(rule), Some(&2));
        // A refused kill records nothing.
        assert!(e.api_kill(1, None).is_err());
        assert_eq!(e.stats().alerts, 2);
    }

    #[test]
    fn exec_from_tmp_alerts_once_with_schema_fields() {
        let mut e = engine();
        let now = Instant::now();
        let alerts = e.on_event(&exec(GONE, "/tmp/dropper"), now);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0].alert;
        assert_eq!(a.schema, "procwatch.alert/v1");
        assert_eq!(a.reasons[0].rule, crate::config::Rule::TmpExe);
        assert_eq!(a.trigger["kind"], "exec");
        assert_eq!(a.exe.as_deref(), Some("/tmp/dropper"));
        assert!(
            e.on_event(&exec(GONE, "/tmp/dropper"), now).len() == 1,
            "a new exec is a new image"
        );
    }

    #[test]
    fn repeated_connects_alert_once_then_new_reason_alerts_again() {
        let mut e = engine();
        let now = Instant::now();
        assert!(e.on_event(&exec(GONE, "/usr/bin/curl"), now).is_empty());
        let connect = event(
            GONE,
            EventBody::Connect(Connect {
                via: "connect",
                fastopen: false,
                socket: None,
                fd: 3,
                family: "inet",
                addr: [10, 1, 1, 1].into(),
                port: 4444,
            }),
        );
        assert_eq!(e.on_event(&connect, now).len(), 1);
        for _ in 0..1000 {
            assert!(e.on_event(&connect, now).is_empty());
        }
        let wx = event(
            GONE,
            EventBody::WxMem(WxMem {
                syscall: "mprotect",
                start: 0,
                len: 4096,
                prot: 7,
                flags: 0,
            }),
        );
        let again = e.on_event(&wx, now);
        assert_eq!(again.len(), 1);
        let rules: Vec<_> = again[0]
            .alert
            .reasons
            .iter()
            .map(|r| r.rule.as_str())
            .collect();
        assert_eq!(rules, ["wx_mem", "suspicious_port"]);
    }

    #[test]
    fn fork_inherits_image_and_reported_rules() {
        let mut e = engine();
        let now = Instant::now();
        assert_eq!(e.on_event(&exec(GONE, "/tmp/dropper"), now).len(), 1);
        let fork = event(
            GONE,
            EventBody::Fork(Fork {
                parent_tgid: GONE,
                child_tgid: GONE + 1,
                child_start_time_ns: None,
            }),
        );
        assert!(e.on_event(&fork, now).is_empty());
        let child = e.table().get(GONE + 1).expect("child tracked");
        assert_eq!(child.exe.as_deref(), Some(Path::new("/tmp/dropper")));
        assert_eq!(child.ppid, GONE);
    }

    #[test]
    fn an_exec_whose_exit_is_in_the_same_batch_is_not_looked_up_in_proc() {
        // This test process is alive, so /proc would name its real executable; an exit that
        // follows in the batch says the process is gone, and the event's filename is used.
        let me = std::process::id();
        let exit = event(
            me,
            EventBody::Exit(crate::sensor::event::Exit { exit_code: None }),
        );
        let mut e = engine();
        let alerts = e.on_events(&[exec(me, "/tmp/dropper"), exit.clone()], Instant::now());
        assert_eq!(alerts.len(), 1, "tmp_exe from the filename");
        let p = e.table().get(me).expect("tracked");
        assert_eq!(p.exe.as_deref(), Some(Path::new("/tmp/dropper")));
        assert!(p.exited.is_some());

        // Without the exit in the batch, /proc is read and wins over the filename.
        let mut e = engine();
        e.on_events(&[exec(me, "/tmp/dropper")], Instant::now());
        let own = std::fs::read_link("/proc/self/exe").expect("own exe");
        assert_eq!(e.table().get(me).and_then(|p| p.exe.clone()), Some(own));

        // An exit before the exec (a reused pid) does not count.
        let mut e = engine();
        e.on_events(&[exit, exec(me, "/tmp/dropper")], Instant::now());
        assert_ne!(
            e.table().get(me).and_then(|p| p.exe.clone()),
            Some(std::path::PathBuf::from("/tmp/dropper"))
        );
    }

    #[test]
    fn proc_is_not_believed_when_it_runs_another_file_than_the_kernel_exec_d() {
        // This test process is alive under its own pid, but the exec the kernel reported ran
        // another file: /proc then describes a process that reused the pid.
        let me = std::process::id();
        let other = ExeId::of_path(Path::new("/bin/true")).expect("stat");
        let mut ev = exec(me, "/tmp/dropper");
        if let EventBody::Exec(x) = &mut ev.body {
            x.exe = Some(other);
        }
        let mut e = engine();
        let mut alerts = e.on_events(&[ev], Instant::now());
        // The alert on a live process waits for its facts; release it as a failed job would.
        for job in e.take_jobs() {
            alerts.extend(e.on_job_done(job.id, Err("not run".into()), Instant::now()));
        }
        assert_eq!(alerts.len(), 1, "tmp_exe from the kernel's filename");
        let p = e.table().get(me).expect("tracked");
        assert_eq!(p.exe.as_deref(), Some(Path::new("/tmp/dropper")));
        assert_eq!(alerts[0].exe_id, Some(other));

        // The file the kernel named is the one /proc shows: /proc is read.
        let own = ExeId::of_path(Path::new("/proc/self/exe")).expect("own exe");
        let mut ev = exec(me, "/tmp/dropper");
        if let EventBody::Exec(x) = &mut ev.body {
            x.exe = Some(own);
        }
        let mut e = engine();
        e.on_events(&[ev], Instant::now());
        let path = std::fs::read_link("/proc/self/exe").expect("own exe");
        assert_eq!(e.table().get(me).and_then(|p| p.exe.clone()), Some(path));
    }

    #[test]
    fn a_process_born_during_a_sweep_is_not_declared_exited_by_it() {
        let mut e = engine();
        let started = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        e.on_event(&exec(GONE, "/usr/bin/true"), Instant::now());
        e.on_samples(Sweep::default(), started, Instant::now());
        assert!(e.table().get(GONE).is_some_and(|p| p.exited.is_none()));
        e.on_samples(Sweep::default(), Instant::now(), Instant::now());
        assert!(
            e.table().get(GONE).is_some_and(|p| p.exited.is_some()),
            "a later sweep that misses it does"
        );
    }

    /// The race: a sweep reads a process, the process exits, its exit event is handled, and
    /// only then is the sweep merged. The sample must not bring the process back (a new entry
    /// with nothing reported, so a second alert, and a second process for the baseline).
    #[test]
    fn a_sweep_that_read_a_process_before_its_exit_does_not_resurrect_it() {
        let mut e = engine();
        let start_ns = 4_000_000_000u64;
        let start = crate::identity::ticks_from_boot_ns(start_ns).expect("ticks");
        let mut ev = exec(GONE, "/tmp/dropper");
        ev.start_time_ns = Some(start_ns);
        let sweep_started = Instant::now();
        let first = e.on_event(&ev, Instant::now());
        assert_eq!(first.len(), 1, "the exec alerts once");
        let mut exit = event(
            GONE,
            EventBody::Exit(crate::sensor::event::Exit { exit_code: None }),
        );
        exit.start_time_ns = Some(start_ns);
        e.on_event(&exit, Instant::now());
        let sample = crate::procfs::Sample {
            pid: GONE,
            ppid: 1,
            start_ticks: start,
            name: "dropper".into(),
            exe: Some("/tmp/dropper".into()),
            cmdline: vec!["/tmp/dropper".into()],
            ..Default::default()
        };
        let sweep = Sweep {
            samples: vec![sample.clone()],
            ..Sweep::default()
        };
        let again = e.on_samples(sweep, sweep_started, Instant::now());
        assert!(
            again.is_empty(),
            "a second alert for the same process: {again:?}"
        );
        assert!(e.table().get(GONE).is_some_and(|p| p.exited.is_some()));
        assert_eq!(e.stats().sweep_after_exit, 1);
        // A process that reused the pid (another start time) is new, and judged.
        let reused = crate::procfs::Sample {
            start_ticks: start + 1,
            ..sample
        };
        let sweep = Sweep {
            samples: vec![reused],
            ..Sweep::default()
        };
        let new = e.on_samples(sweep, Instant::now(), Instant::now());
        assert_eq!(new.len(), 1, "the reused pid is another process");
    }

    /// The other order: a sweep reads a process after its fork and exec, and both events are
    /// handled after the sweep was merged (a lagging reader). The fork must not put the
    /// parent's image over what the sweep saw, and the exec is of the image the sweep already
    /// judged: no second alert. An exec after the sweep's read is a new image, judged again.
    #[test]
    fn fork_and_exec_events_older_than_the_sweep_that_judged_the_image_do_not_alert_again() {
        let mut e = engine();
        let parent = GONE - 1;
        e.on_event(&exec(parent, "/usr/bin/parent-svc"), Instant::now());
        let start_ns = 4_000_000_000u64;
        let start = crate::identity::ticks_from_boot_ns(start_ns).expect("ticks");
        let sample = crate::procfs::Sample {
            pid: GONE,
            ppid: 1,
            start_ticks: start,
            name: "dropper".into(),
            exe: Some("/tmp/dropper".into()),
            cmdline: vec!["/tmp/dropper".into()],
            read_ns: 2_000_000_000,
            ..Default::default()
        };
        let sweep = Sweep {
            samples: vec![sample],
            ..Sweep::default()
        };
        let first = e.on_samples(sweep, Instant::now(), Instant::now());
        assert_eq!(first.len(), 1, "the sweep judges it");
        let mut fork = event(
            parent,
            EventBody::Fork(Fork {
                parent_tgid: parent,
                child_tgid: GONE,
                child_start_time_ns: Some(start_ns),
            }),
        );
        fork.ktime_ns = 1_000_000_000;
        assert!(e.on_event(&fork, Instant::now()).is_empty());
        assert_eq!(
            e.table().get(GONE).and_then(|p| p.exe.clone()),
            Some("/tmp/dropper".into()),
            "what the sweep saw stays"
        );
        let mut ev = exec(GONE, "/tmp/dropper");
        ev.start_time_ns = Some(start_ns);
        ev.ktime_ns = 1_500_000_000;
        let late = e.on_event(&ev, Instant::now());
        assert!(late.is_empty(), "the same image alerted twice: {late:?}");
        ev.ktime_ns = 2_500_000_000;
        assert_eq!(
            e.on_event(&ev, Instant::now()).len(),
            1,
            "an exec after the read is a new image"
        );
    }

    #[test]
    fn a_relative_exec_of_a_gone_child_resolves_against_the_inherited_cwd() {
        let mut e = engine();
        let now = Instant::now();
        e.on_event(&exec(GONE, "/usr/bin/bash"), now);
        if let Some(shell) = e.table.get_mut(GONE) {
            shell.cwd = Some("/tmp/work".into());
        }
        let fork = event(
            GONE,
            EventBody::Fork(Fork {
                parent_tgid: GONE,
                child_tgid: GONE + 1,
                child_start_time_ns: None,
            }),
        );
        e.on_event(&fork, now);
        let alerts = e.on_event(&exec(GONE + 1, "./payload"), now);
        assert_eq!(alerts.len(), 1, "tmp_exe through the inherited cwd");
        assert_eq!(alerts[0].alert.exe.as_deref(), Some("/tmp/work/payload"));
    }

    fn wx(tgid: u32) -> Event {
        event(
            tgid,
            EventBody::WxMem(WxMem {
                syscall: "mprotect",
                start: 0,
                len: 4096,
                prot: 7,
                flags: 0,
            }),
        )
    }

    #[test]
    fn alerts_leave_in_decision_order_once_their_facts_are_in() {
        // This test process is alive: its alert waits for a job (digest, connections); the
        // alert for a gone pid decided after it needs none, but does not overtake it.
        let me = std::process::id();
        let mut e = engine_temp_elsewhere();
        let now = Instant::now();
        assert!(e.on_event(&exec(me, "/usr/bin/true"), now).is_empty());
        assert!(e.on_event(&wx(me), now).is_empty(), "held for its facts");
        let jobs = e.take_jobs();
        assert_eq!(jobs.len(), 1);
        assert!(matches!(jobs[0].work, Work::Complete { .. }));
        assert!(
            e.on_event(&exec(GONE, &format!("{UNIT_TEMP}/dropper")), now)
                .is_empty(),
            "held behind"
        );
        assert_eq!(e.alerts_held(), 2);
        let digest = "ab".repeat(32);
        let found = Found::Complete {
            cgroup: None,
            sha256: Some(digest.clone()),
            conns: vec![ConnectFact {
                addr: [10, 0, 0, 1].into(),
                port: 4444,
                proto: crate::procfs::sockets::Proto::Tcp,
            }],
        };
        let out = e.on_job_done(jobs[0].id, Ok(found), now);
        let pids: Vec<u32> = out.iter().map(|f| f.alert.pid).collect();
        assert_eq!(pids, [me, GONE]);
        assert_eq!(out[0].alert.sha256.as_deref(), Some(digest.as_str()));
        assert_eq!(
            (
                out[0].alert.conns_outbound,
                out[0].alert.remote_ports.clone()
            ),
            (1, vec![4444])
        );
        assert_eq!(
            e.table().get(me).and_then(|p| p.sha256.clone()),
            Some(digest)
        );
        assert_eq!(e.jobs_in_flight(), 0);
    }

    #[test]
    fn a_failed_job_releases_its_alert_as_it_is() {
        let me = std::process::id();
        let mut e = engine_temp_elsewhere();
        e.on_event(&exec(me, "/usr/bin/true"), Instant::now());
        e.on_event(&wx(me), Instant::now());
        let job = e.take_jobs().pop().expect("a job");
        let out = e.on_job_done(job.id, Err("abandoned".into()), Instant::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].alert.sha256, None);
        assert_eq!(e.stats().enrich_failed, 1);
    }

    #[test]
    fn what_was_read_about_one_image_never_lands_on_another() {
        let me = std::process::id();
        let mut e = engine();
        let now = Instant::now();
        // First seen through a connect: who it is is asked for, the event waits for it.
        let connect = event(
            me,
            EventBody::Connect(Connect {
                via: "connect",
                fastopen: false,
                socket: None,
                fd: 3,
                family: "inet",
                addr: [10, 1, 1, 1].into(),
                port: 4444,
            }),
        );
        assert!(e.on_event(&connect, now).is_empty());
        let identity = e.take_jobs().pop().expect("identity job");
        assert!(matches!(identity.work, Work::Identity));
        // An exec before the answer: a new image under the same pid.
        e.on_event(&exec(me, "/usr/bin/true"), now);
        let stale = crate::procfs::Sample {
            pid: me,
            cmdline: vec!["stale".into()],
            exe: Some("/stale".into()),
            ..Default::default()
        };
        e.on_job_done(identity.id, Ok(Found::Identity(Box::new(stale))), now);
        let p = e.table().get(me).expect("tracked");
        assert_eq!(p.cmdline, [std::ffi::OsString::from("/usr/bin/true")]);
        assert_ne!(p.exe.as_deref(), Some(Path::new("/stale")));
    }

    /// An engine whose baseline learned, from two processes, that `/usr/bin/svc` connects to
    /// port 5432 and makes W+X memory, then ended learning as `train` does.
    fn trained_engine() -> Engine {
        let mut e = engine();
        let model = crate::baseline::Model::new(crate::learning::now_secs(), "test");
        let learner = crate::baseline::Learner::new(model, &e.cfg.baseline, 64);
        e.set_learning(Learning::new(learner));
        let now = Instant::now();
        for pid in [GONE - 10, GONE - 11] {
            let mut x = exec(pid, "/usr/bin/svc");
            x.start_time_ns = Some(1_000_000_000 * u64::from(GONE - pid));
            e.on_event(&x, now);
            let mut c = event(
                pid,
                EventBody::Connect(Connect {
                    via: "connect",
                    fastopen: false,
                    socket: None,
                    fd: 3,
                    family: "inet",
                    addr: [10, 0, 0, 5].into(),
                    port: 5432,
                }),
            );
            c.start_time_ns = x.start_time_ns;
            e.on_event(&c, now);
            let mut w = wx(pid);
            w.start_time_ns = x.start_time_ns;
            e.on_event(&w, now);
        }
        if let Some(l) = e.learning_mut() {
            l.learner_mut().finish_training(crate::learning::now_secs());
        }
        e
    }

    #[test]
    fn a_baseline_anomaly_alone_alerts_and_known_behaviour_does_not_count() {
        let mut e = trained_engine();
        let now = Instant::now();
        let pid = GONE - 20;
        let start = Some(7_000_000_000);
        let mut x = exec(pid, "/usr/bin/svc");
        x.start_time_ns = start;
        assert!(e.on_event(&x, now).is_empty(), "a known executable");
        // W+X is learned: the heuristic finding is known and the score 0, so no alert.
        let mut w = wx(pid);
        w.start_time_ns = start;
        assert!(e.on_event(&w, now).is_empty(), "known W+X alerted");
        // A new port: the anomaly alerts (with suspicious_port), W+X is listed as known.
        let mut c = event(
            pid,
            EventBody::Connect(Connect {
                via: "connect",
                fastopen: false,
                socket: None,
                fd: 3,
                family: "inet",
                addr: [10, 0, 0, 5].into(),
                port: 4444,
            }),
        );
        c.start_time_ns = start;
        let alerts = e.on_event(&c, now);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0].alert;
        let wx = a
            .reasons
            .iter()
            .find(|r| r.rule == Rule::WxMem)
            .expect("wx_mem");
        assert_eq!(wx.score, 0.0);
        assert!(wx.known.is_some());
        let net = a
            .reasons
            .iter()
            .find(|r| r.anomaly.is_some())
            .expect("an anomaly reason");
        assert_eq!(net.rule.as_str(), "network_unknown_connection");
        assert!(
            net.reason.contains("4444") && net.reason.contains("5432"),
            "{}",
            net.reason
        );
        assert!(a.ml_score > 0.0);
        assert!((a.total_score - (a.heuristic_score + e.cfg.ml_weight * a.ml_score)).abs() < 1e-9);
        let sum: f64 = a.reasons.iter().map(|r| r.score).sum();
        assert!(
            (sum - a.total_score).abs() < 1e-9,
            "reasons add up to the total"
        );
        // The same deviation again is no news.
        assert!(e.on_event(&c, now).is_empty());
    }

    #[test]
    fn memfd_then_exec_through_fd_is_fileless() {
        assert_eq!(
            exe_state_from_filename(Path::new("/dev/fd/3"), &["x".into()]),
            ExeState::Memfd
        );
        assert_eq!(
            exe_state_from_filename(Path::new("/dev/fd/3"), &[]),
            ExeState::Unknown
        );
        assert_eq!(
            exe_state_from_filename(Path::new("/usr/bin/x"), &["x".into()]),
            ExeState::Unknown
        );
    }
}
