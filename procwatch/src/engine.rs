//! The engine: sole owner of the process table and detector state. Sensor events and /proc
//! samples go in, alerts come out. Everything here runs on one task; /proc reads done here
//! are the cheap per-event ones (one readlink); full samples are taken elsewhere and merged.
use std::{
    collections::HashMap,
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use crate::{
    alert::{self, Action, ActionBy, Alert, SensorInfo, Trigger},
    config::Config,
    detect::{self, reverse_shell::is_shell_or_interpreter},
    identity::{AllowIds, ExeId},
    process::{
        hash::{HashCache, HashOutcome},
        sample::{self, Sample},
        table::{ConnectFact, ExeState, Process, ProcessTable, PtraceFact, WxFact, push_bounded},
        users::UserNames,
    },
    score::{self, Decision},
    sensor::{Event, EventBody, SensorKind, SensorStats, event::KernelAction},
};

/// Executables at most this large are hashed inline when they first alert; larger ones are
/// reported without a digest rather than stall detection.
pub const INLINE_HASH_MAX: u64 = 16 * 1024 * 1024;

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

/// What the engine counts about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Alerts emitted.
    pub alerts: u64,
    /// Alerts suppressed by the whitelist.
    pub whitelisted: u64,
    /// Processes evicted from a full table.
    pub evicted: u64,
    /// Processes tracked now.
    pub tracked: usize,
}

/// The detection engine.
pub struct Engine {
    cfg: Config,
    table: ProcessTable,
    users: UserNames,
    hashes: HashCache,
    sensor: SensorKind,
    stats: Arc<SensorStats>,
    counts: EngineStats,
    /// Pids whose stdio should be re-read soon (a shell that just connected somewhere).
    recheck: Vec<(u32, Instant)>,
    /// The config's allowlisted executables, by file identity.
    allow: AllowIds,
}

impl Engine {
    /// An engine with an empty table.
    pub fn new(cfg: Config, sensor: SensorKind, stats: Arc<SensorStats>) -> Self {
        let table = ProcessTable::new(cfg.max_processes, cfg.exited_grace);
        let allow = AllowIds::from_config(&cfg);
        Self {
            allow,
            cfg,
            table,
            users: UserNames::new(),
            hashes: HashCache::default(),
            sensor,
            stats,
            counts: EngineStats::default(),
            recheck: Vec::new(),
        }
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the config (SIGHUP); the table and dedup state are kept.
    pub fn set_config(&mut self, cfg: Config) {
        self.allow = AllowIds::from_config(&cfg);
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

    /// The process table (read-only).
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            evicted: self.table.evicted(),
            tracked: self.table.len(),
            ..self.counts
        }
    }

    /// Applies one sensor event and returns the alerts it causes.
    pub fn on_event(&mut self, ev: &Event, now: Instant) -> Vec<Flagged> {
        self.apply(ev, now, false)
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
        let mut flagged = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            let gone = last_exit.get(&ev.tgid).is_some_and(|&at| at > i);
            flagged.extend(self.apply(ev, now, gone));
        }
        flagged
    }

    /// One event; `gone` when the process is known to have exited already.
    fn apply(&mut self, ev: &Event, now: Instant, gone: bool) -> Vec<Flagged> {
        let pid = ev.tgid;
        match &ev.body {
            EventBody::Exec(x) => {
                let p = self
                    .table
                    .entry(pid, ev.start_ticks().unwrap_or(0), ev.sensor, now);
                p.reset_for_exec();
                p.exe_id = x.exe;
                p.name = ev.comm.clone();
                p.uid = ev.uid;
                p.gid = ev.gid;
                if x.ppid != 0 {
                    p.ppid = x.ppid;
                }
                p.cmdline = x.argv.clone();
                let (exe, state) = if gone {
                    (None, ExeState::Unknown)
                } else {
                    let (exe, state) = sample::read_exe(pid);
                    // /proc names whoever holds the pid now: if the kernel said which file was
                    // exec'd and /proc runs another, the process is gone and the pid reused.
                    match x.exe {
                        Some(id) if exe.is_some() && !runs(pid, id) => (None, ExeState::Unknown),
                        _ => (exe, state),
                    }
                };
                match exe {
                    Some(exe) => {
                        p.exe = Some(exe);
                        p.exe_state = state;
                    }
                    // Gone already (a 2 ms process): the kernel's filename is what we have.
                    None => {
                        p.exe = Some(absolute(&x.filename, p.cwd.as_deref()));
                        p.exe_state = exe_state_from_filename(&x.filename, &p.memfds);
                    }
                }
                if !gone && is_shell_or_interpreter(p.exe_name()) {
                    p.stdio_net = sample::stdio_net(pid);
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
                    )
                });
                let start = f
                    .child_start_time_ns
                    .and_then(crate::identity::ticks_from_boot_ns)
                    .unwrap_or(0);
                let child = self.table.entry(f.child_tgid, start, ev.sensor, now);
                child.ppid = f.parent_tgid;
                if let Some((
                    (uid, gid),
                    name,
                    (exe, exe_id),
                    exe_state,
                    cmdline,
                    sha256,
                    reported,
                    cwd,
                )) = image
                {
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
                return Vec::new();
            }
            EventBody::Exit(_) => {
                self.table.mark_exited(pid, now);
                // Entries leave as their grace ends, not a sweep later: in a storm that is
                // thousands of entries per second.
                self.table.expire(now);
                return Vec::new();
            }
            // An event that adds no new fact cannot change the verdict: no evaluation (a
            // connect storm to one destination costs a lookup per connect, not a scoring).
            EventBody::Ptrace(t) => {
                let p = self.known(pid, ev, now);
                let fact = PtraceFact {
                    request: t.request_name,
                    target: t.target_pid,
                };
                let new =
                    t.request_name != "PTRACE_TRACEME" && push_bounded(&mut p.ptrace_events, fact);
                if !new && ev.kernel_action.is_none() {
                    return Vec::new();
                }
            }
            EventBody::Connect(c) => {
                let p = self.known(pid, ev, now);
                let new = push_bounded(
                    &mut p.connects,
                    ConnectFact {
                        addr: c.addr,
                        port: c.port,
                    },
                );
                let shell = is_shell_or_interpreter(p.exe_name());
                if shell && !self.recheck.iter().any(|&(q, _)| q == pid) {
                    // The redirection of stdio onto the new socket happens after connect returns.
                    self.recheck
                        .push((pid, now + std::time::Duration::from_millis(100)));
                }
                if !new {
                    return Vec::new();
                }
            }
            EventBody::WxMem(w) => {
                let p = self.known(pid, ev, now);
                let new = push_bounded(
                    &mut p.wx_events,
                    WxFact {
                        syscall: w.syscall,
                        start: w.start,
                        len: w.len,
                    },
                );
                if !new && ev.kernel_action.is_none() {
                    return Vec::new();
                }
            }
            EventBody::Memfd(m) => {
                let p = self.known(pid, ev, now);
                push_bounded(&mut p.memfds, m.name.clone());
                return Vec::new();
            }
        }
        self.evaluate(pid, &Trigger::Event(ev))
            .into_iter()
            .collect()
    }

    /// The entry for the process behind `ev`, filled from /proc the first time it is seen
    /// (it predates procwatch or its exec was not observed).
    fn known(&mut self, pid: u32, ev: &Event, now: Instant) -> &mut Process {
        let p = self
            .table
            .entry(pid, ev.start_ticks().unwrap_or(0), ev.sensor, now);
        if p.exe_state == ExeState::Unknown && p.exe.is_none() {
            p.name = ev.comm.clone();
            p.uid = ev.uid;
            p.gid = ev.gid;
            // Only the process the event names: a pid reused since is another process.
            if let Ok(s) = sample::take(pid, &sample::Depth::Identity)
                && if p.start_ticks != 0 {
                    s.start_ticks == p.start_ticks
                } else {
                    ev.ktime_ns != 0 && crate::identity::started_by(s.start_ticks, ev.ktime_ns)
                }
            {
                sample::merge_identity(p, &s);
            }
        }
        p
    }

    /// Merges a /proc sample of every process, taken from `started` on, and evaluates each one.
    pub fn on_samples(
        &mut self,
        samples: Vec<Sample>,
        started: Instant,
        now: Instant,
    ) -> Vec<Flagged> {
        let seen: std::collections::HashSet<u32> = samples.iter().map(|s| s.pid).collect();
        let mut pids = Vec::with_capacity(samples.len());
        for s in samples {
            let p = self
                .table
                .entry(s.pid, s.start_ticks, SensorKind::Sweep, now);
            sample::merge(p, s, now);
            pids.push(p.pid);
        }
        // Live entries that the sweep did not find have exited without us seeing it; entries
        // that appeared while the sweep ran (from events) may simply be newer than it.
        for pid in self.table.live_pids_before(started) {
            if !seen.contains(&pid) {
                self.table.mark_exited(pid, now);
            }
        }
        self.table.expire(now);
        pids.into_iter()
            .filter_map(|pid| self.evaluate(pid, &Trigger::Sweep))
            .collect()
    }

    /// Merges a sample of one process (a due recheck) and evaluates it.
    pub fn on_sample(&mut self, s: Sample, now: Instant) -> Option<Flagged> {
        let pid = s.pid;
        let p = self.table.entry(pid, s.start_ticks, SensorKind::Sweep, now);
        sample::merge(p, s, now);
        self.evaluate(pid, &Trigger::Sweep)
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
                _ => match crate::process::stat::read_stat(cur) {
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

    /// Pids whose recheck is due, removed from the queue.
    pub fn due_rechecks(&mut self, now: Instant) -> Vec<u32> {
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
        due
    }

    /// When the next recheck is due.
    pub fn next_recheck(&self) -> Option<Instant> {
        self.recheck.iter().map(|&(_, at)| at).min()
    }

    /// Runs every rule on `pid` and returns an alert when the verdict calls for one.
    fn evaluate(&mut self, pid: u32, trigger: &Trigger<'_>) -> Option<Flagged> {
        let cfg = &self.cfg;
        let p = self.table.get_mut(pid)?;
        let findings = detect::evaluate(p, cfg);
        if findings.is_empty() {
            return None;
        }
        let verdict = score::score(findings, 0.0, cfg);
        if verdict.total_score >= cfg.min_score {
            identify(p, trigger);
        }
        let user = self.users.name(p.uid).map(str::to_owned);
        let whitelisted = p
            .exe_id
            .is_some_and(|id| self.allow.whitelist.contains(&id));
        match score::decide(p, &verdict, user.as_deref(), whitelisted, cfg) {
            Decision::Alert => {}
            Decision::Whitelisted => {
                self.counts.whitelisted += 1;
                return None;
            }
            Decision::BelowThreshold | Decision::AlreadyReported => return None,
        }
        if p.exited.is_none() {
            if p.sha256.is_none() {
                p.sha256 = hash_exe(&mut self.hashes, pid);
            }
            // A sweep only traces suspicious connections; the alert lists them all.
            let all = sample::outbound_conns(pid);
            if !all.is_empty() {
                p.conns = all;
            }
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
        Some(Flagged {
            alert,
            start_ticks: p.start_ticks,
            exe_id: p.exe_id,
            kernel_thread: p.kernel_thread,
            exited: p.exited.is_some(),
            stopped_tracee,
        })
    }
}

/// Establishes who a process about to be judged is, where the sensor could not say: its start
/// time from /proc, believed only if that process started no later than the triggering event
/// (a recycled pid belongs to a process started after it), and the executable file, read
/// through the same /proc handle once the start time is known to match. A process that exited
/// keeps what it has (its /proc entry, if any, belongs to someone else).
fn identify(p: &mut Process, trigger: &Trigger<'_>) {
    if p.exited.is_some() || (p.start_ticks != 0 && p.exe_id.is_some()) {
        return;
    }
    let Ok((start, exe)) = crate::process::stat::start_and_exe(p.pid) else {
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

/// True when the process holding `pid` now runs the file `id`.
fn runs(pid: u32, id: ExeId) -> bool {
    std::fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| ExeId::from_metadata(&m) == id)
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

fn hash_exe(cache: &mut HashCache, pid: u32) -> Option<String> {
    let key =
        crate::process::hash::FileKey::of_path(Path::new(&format!("/proc/{pid}/exe"))).ok()?;
    if let Some(HashOutcome::Digest(d)) = cache.get(&key) {
        return Some(d.clone());
    }
    let (key, outcome) = crate::process::hash::hash_exe_of_pid(pid, INLINE_HASH_MAX).ok()?;
    let digest = match &outcome {
        HashOutcome::Digest(d) => Some(d.clone()),
        HashOutcome::TooLarge { .. } => None,
    };
    cache.insert(key, outcome);
    digest
}

/// `filename` made absolute against `cwd` when possible.
fn absolute(filename: &Path, cwd: Option<&Path>) -> PathBuf {
    match cwd {
        Some(cwd) if filename.is_relative() => cwd.join(filename),
        _ => filename.to_path_buf(),
    }
}

/// Best guess at the exe state when the process is gone before /proc could be read: an exec
/// through `/dev/fd/N` or `/proc/self/fd/N` by a process that created a memfd is fileless.
fn exe_state_from_filename(filename: &Path, memfds: &[OsString]) -> ExeState {
    let through_fd = filename.starts_with("/dev/fd") || filename.starts_with("/proc/self/fd");
    if through_fd && !memfds.is_empty() {
        ExeState::Memfd
    } else {
        ExeState::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::event::{Connect, Exec, Fork, WxMem};

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

    // A pid far above pid_max, so no /proc entry exists and only event data is used.
    const GONE: u32 = 0x7fff_fff0;

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
            Some(PathBuf::from("/tmp/dropper"))
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
        let alerts = e.on_events(&[ev], Instant::now());
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
        e.on_samples(Vec::new(), started, Instant::now());
        assert!(e.table().get(GONE).is_some_and(|p| p.exited.is_none()));
        e.on_samples(Vec::new(), Instant::now(), Instant::now());
        assert!(
            e.table().get(GONE).is_some_and(|p| p.exited.is_some()),
            "a later sweep that misses it does"
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
        assert_eq!(alerts[0].alert.exe.as_deref(), Some("/tmp/work/./payload"));
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
