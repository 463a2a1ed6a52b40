//! The monitors compared, how each starts, is measured and stops, and how events are counted
//! in what each wrote.
use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver},
    },
    thread,
    time::{Duration, Instant},
};

use super::{Env, auditd, json::Json, measure};
use crate::sh::Result;

/// Every configuration a workload can run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Monitor {
    None,
    Procwatch,
    /// `procwatch monitor` with `sensor.ia32: off`: without the raw `sys_enter`/`sys_exit`
    /// programs that run for every syscall, so their cost shows as the difference.
    ProcwatchNoIa32,
    /// `procwatch events`: the same probes, every event written out, so the generator's own
    /// events can be counted exactly.
    Events,
    Auditd,
    Bpftrace,
    /// A bpftrace program that only counts connect and mprotect calls: the floor any syscall
    /// tracepoint program pays.
    Bare,
}

impl Monitor {
    pub fn label(self) -> &'static str {
        match self {
            Monitor::None => "no monitor",
            Monitor::Procwatch => "procwatch monitor",
            Monitor::ProcwatchNoIa32 => "procwatch monitor, sensor.ia32: off",
            Monitor::Events => "procwatch events",
            Monitor::Auditd => "auditd",
            Monitor::Bpftrace => "bpftrace",
            Monitor::Bare => "bare tracepoint",
        }
    }

    /// `procwatch monitor`, in any configuration.
    fn is_procwatch_monitor(self) -> bool {
        matches!(self, Monitor::Procwatch | Monitor::ProcwatchNoIa32)
    }

    fn slug(self) -> &'static str {
        match self {
            Monitor::None => "none",
            Monitor::Procwatch => "procwatch",
            Monitor::ProcwatchNoIa32 => "procwatch-no-ia32",
            Monitor::Events => "events",
            Monitor::Auditd => "auditd",
            Monitor::Bpftrace => "bpftrace",
            Monitor::Bare => "bare",
        }
    }
}

/// The bpftrace peer: the tracepoints procwatch's detections rest on, one line per event.
pub const BPFTRACE_PROGRAM: &str = r#"
tracepoint:sched:sched_process_exec { printf("exec %d %d %s\n", pid, curtask->real_parent->tgid, str(args->filename)); }
tracepoint:syscalls:sys_enter_connect { printf("connect %d %d\n", pid, args->fd); }
tracepoint:syscalls:sys_enter_ptrace { printf("ptrace %d %d %d\n", pid, args->request, args->pid); }
tracepoint:syscalls:sys_enter_mprotect /(args->prot & 6) == 6/ { printf("wx %d %d\n", pid, args->prot); }
"#;

/// The bare floor: a per-CPU counter increment on two syscall tracepoints.
pub const BARE_PROGRAM: &str = r#"
tracepoint:syscalls:sys_enter_connect { @connect = count(); }
tracepoint:syscalls:sys_enter_mprotect { @mprotect = count(); }
"#;

/// Own process group (Ctrl-C on the terminal reaches only xtask, which then stops the monitor
/// in order) and `signal` when xtask dies.
pub fn own_group(cmd: &mut Command, signal: libc::c_int) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
            Ok(())
        });
    }
}

/// Sends `signal` to the child and waits up to `timeout` for its exit status, then kills it.
pub fn terminate(
    child: &mut Child,
    signal: libc::c_int,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(status);
    }
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| "pid out of range")?;
    // SAFETY: signalling our own child, which has not been reaped (try_wait said so).
    unsafe {
        libc::kill(pid, signal);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(status);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "pid {} did not stop within {} s of signal {signal}; killed",
        child.id(),
        timeout.as_secs()
    ))
}

/// stderr of a child, read line by line on a thread (the child never blocks on a full pipe).
struct StderrLog {
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
    thread: Option<thread::JoinHandle<()>>,
}

impl StderrLog {
    fn capture(child: &mut Child) -> Option<StderrLog> {
        let stderr = child.stderr.take()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        let thread = thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut v) = sink.lock() {
                    v.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        Some(StderrLog {
            lines,
            rx,
            thread: Some(thread),
        })
    }

    fn all(&mut self) -> Vec<String> {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn lines_from(&self, start: usize) -> Vec<String> {
        self.lines
            .lock()
            .map(|v| v.get(start..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    fn tail(&self) -> String {
        let v = self.lines.lock().map(|v| v.clone()).unwrap_or_default();
        let start = v.len().saturating_sub(5);
        v[start..].join(" | ")
    }
}

/// A started monitor.
pub struct Running<'e> {
    pub monitor: Monitor,
    child: Option<Child>,
    stderr: Option<StderrLog>,
    out: PathBuf,
    cpu_pids: Vec<u32>,
    audit: Option<auditd::Session<'e>>,
}

/// Starts `monitor` with its output in `dir`, and returns once it observes the system.
pub fn start<'e>(env: &'e Env, monitor: Monitor, dir: &Path) -> Result<Running<'e>> {
    start_with(env, monitor, dir, &env.empty_config, &[])
}

/// Starts `procwatch monitor` with the config file `config` and `extra` arguments (its alerts
/// go to `<dir>/procwatch.out` as JSONL), and returns once it monitors.
pub fn start_procwatch<'e>(
    env: &'e Env,
    dir: &Path,
    config: &Path,
    extra: &[String],
) -> Result<Running<'e>> {
    start_with(env, Monitor::Procwatch, dir, config, extra)
}

fn start_with<'e>(
    env: &'e Env,
    monitor: Monitor,
    dir: &Path,
    config: &Path,
    extra: &[String],
) -> Result<Running<'e>> {
    let mut running = Running {
        monitor,
        child: None,
        stderr: None,
        out: dir.join(format!("{}.out", monitor.slug())),
        cpu_pids: Vec::new(),
        audit: None,
    };
    match monitor {
        Monitor::None => {}
        Monitor::Procwatch | Monitor::ProcwatchNoIa32 | Monitor::Events => {
            let mut cmd = Command::new(&env.procwatch);
            if monitor.is_procwatch_monitor() {
                let config = if monitor == Monitor::ProcwatchNoIa32 {
                    let path = dir.join("no-ia32.yaml");
                    fs::write(&path, "sensor:\n  ia32: off\n")
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    path
                } else {
                    config.to_path_buf()
                };
                cmd.args(["monitor", "--quiet", "--jsonl"])
                    .arg(&running.out)
                    .arg("--config")
                    .arg(config)
                    .args(extra);
            } else {
                cmd.args(["events", "--output"]).arg(&running.out);
            }
            cmd.env("HOME", &env.home)
                // The alert history (on, as in service) in the run's directory, not the
                // machine's /var/lib/procwatch.
                .env("PROCWATCH_HISTORY", dir.join("alerts.db"))
                .env("PROCWATCH_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            own_group(&mut cmd, libc::SIGTERM);
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", env.procwatch.display()))?;
            running.cpu_pids.push(child.id());
            running.stderr = StderrLog::capture(&mut child);
            running.child = Some(child);
            let ready = if monitor.is_procwatch_monitor() {
                "monitoring; SIGINT/SIGTERM stops"
            } else {
                "streaming events"
            };
            running.wait_for_stderr(ready, Duration::from_secs(60))?;
        }
        Monitor::Bpftrace | Monitor::Bare => {
            let program = if monitor == Monitor::Bpftrace {
                BPFTRACE_PROGRAM
            } else {
                BARE_PROGRAM
            };
            let log_path = dir.join("bpftrace.log");
            let log = fs::File::create(&log_path)
                .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
            let log2 = log.try_clone().map_err(|e| format!("dup: {e}"))?;
            let mut cmd = Command::new("bpftrace");
            cmd.arg("-o")
                .arg(&running.out)
                .arg("-e")
                .arg(program)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            own_group(&mut cmd, libc::SIGINT);
            let child = cmd.spawn().map_err(|e| {
                format!("cannot start bpftrace (install the bpftrace package): {e}")
            })?;
            running.cpu_pids.push(child.id());
            running.child = Some(child);
            // bpftrace writes "Attaching N probes..." to its output, then attaches; its
            // output is block-buffered, so no later line can prove it. Give it a second.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                running.check_alive_with(|| fs::read_to_string(&log_path).unwrap_or_default())?;
                if fs::read_to_string(&running.out).is_ok_and(|s| s.contains("Attaching")) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err("bpftrace printed no \"Attaching\" line within 60 s".into());
                }
                thread::sleep(Duration::from_millis(50));
            }
            thread::sleep(Duration::from_secs(1));
            running.check_alive_with(|| fs::read_to_string(&log_path).unwrap_or_default())?;
        }
        Monitor::Auditd => {
            let baseline = env
                .audit
                .as_ref()
                .ok_or("the audit state was not prepared")?;
            let session = auditd::Session::start(baseline, dir)?;
            running.out = session.log.clone();
            running.cpu_pids = session.cpu_pids();
            running.audit = Some(session);
        }
    }
    Ok(running)
}

impl Running<'_> {
    /// Where the monitor writes (alerts, events, its log).
    pub fn out(&self) -> &Path {
        &self.out
    }

    fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(log) = self.stderr.as_ref() else {
                return Err("no stderr to watch".into());
            };
            match log.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(needle) => return Ok(()),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(100));
                }
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not log {needle:?} within {} s",
                    self.monitor.label(),
                    timeout.as_secs()
                ));
            }
        }
    }

    /// Fails if the monitor's process has exited.
    pub fn check_alive(&mut self) -> Result {
        let tail = self
            .stderr
            .as_ref()
            .map(StderrLog::tail)
            .unwrap_or_default();
        self.check_alive_with(|| tail.clone())
    }

    fn check_alive_with(&mut self, said: impl FnOnce() -> String) -> Result {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(Some(st)) => Err(format!(
                "{} exited ({st}): {}",
                self.monitor.label(),
                said().trim()
            )),
            _ => Ok(()),
        }
    }

    /// CPU time of the monitor's processes so far, in clock ticks (`None` without a monitor).
    pub fn cpu_ticks(&self) -> Option<u64> {
        if self.cpu_pids.is_empty() {
            return None;
        }
        Some(
            self.cpu_pids
                .iter()
                .filter_map(|p| measure::process_cpu_ticks(*p))
                .sum(),
        )
    }

    /// The pid of the monitor's main process (`None` without a monitor).
    pub fn pid(&self) -> Option<u32> {
        self.cpu_pids.first().copied()
    }

    /// What the monitor has written to stderr so far, from line `start` (0 for all) on.
    pub fn log_from(&self, start: usize) -> Vec<String> {
        self.stderr
            .as_ref()
            .map(|l| l.lines_from(start))
            .unwrap_or_default()
    }

    /// Resident set of the monitor's main process, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        measure::rss_kib(*self.cpu_pids.first()?)
    }

    /// Peak resident set of the monitor's main process since the last reset, KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        measure::peak_rss_kib(*self.cpu_pids.first()?)
    }

    /// Starts a new peak for [`Running::peak_rss_kib`].
    pub fn reset_peak_rss(&self) -> Result<()> {
        measure::reset_peak_rss(*self.cpu_pids.first().ok_or("monitor has no pid")?)
    }

    /// Waits until the monitor has worked off what the workload left (at most ~1 tick of CPU
    /// in 250 ms), at most `max`.
    pub fn settle(&self, max: Duration) {
        let Some(mut last) = self.cpu_ticks() else {
            return;
        };
        let deadline = Instant::now() + max;
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(250));
            let now = self.cpu_ticks().unwrap_or(last);
            if now.saturating_sub(last) <= 1 {
                return;
            }
            last = now;
        }
    }

    /// Stops the monitor the way its operator would and collects what it reported.
    pub fn stop(mut self) -> Result<Stopped> {
        if matches!(
            self.monitor,
            Monitor::Procwatch | Monitor::ProcwatchNoIa32 | Monitor::Events
        ) {
            self.check_alive()?;
        }
        self.stop_signalled()
    }

    /// Like [`Running::stop`] for a monitor that may have been sent SIGTERM already (and may
    /// have exited on it): its exit status and summary.
    pub fn stop_signalled(mut self) -> Result<Stopped> {
        let mut stopped = Stopped {
            monitor: self.monitor,
            summary: None,
            exit: None,
            out: self.out.clone(),
            audit_lost: None,
        };
        match self.monitor {
            Monitor::None => {}
            Monitor::Procwatch | Monitor::ProcwatchNoIa32 | Monitor::Events => {
                let Some(mut child) = self.child.take() else {
                    return Ok(stopped);
                };
                stopped.exit = Some(terminate(
                    &mut child,
                    libc::SIGTERM,
                    Duration::from_secs(60),
                )?);
                let lines = self.stderr.as_mut().map(StderrLog::all).unwrap_or_default();
                let prefix = if self.monitor.is_procwatch_monitor() {
                    "procwatch monitor: "
                } else {
                    "procwatch events: "
                };
                let line = lines
                    .iter()
                    .rev()
                    .find_map(|l| l.strip_prefix(prefix))
                    .ok_or_else(|| {
                        format!(
                            "{} printed no summary line on SIGTERM; its last words: {}",
                            self.monitor.label(),
                            lines[lines.len().saturating_sub(3)..].join(" | ")
                        )
                    })?;
                stopped.summary = Some(
                    Json::parse(line)
                        .map_err(|e| format!("cannot parse the summary {line:?}: {e}"))?,
                );
            }
            Monitor::Bpftrace | Monitor::Bare => {
                self.check_alive()?;
                if let Some(mut child) = self.child.take() {
                    terminate(&mut child, libc::SIGINT, Duration::from_secs(30))?;
                }
            }
            Monitor::Auditd => {
                if let Some(mut session) = self.audit.take() {
                    stopped.audit_lost = Some(session.stop()?);
                }
            }
        }
        Ok(stopped)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(log) = self.stderr.as_mut() {
            let _ = log.all();
        }
    }
}

/// Which exec events belong to the workload.
#[derive(Debug, Clone, Copy)]
pub enum ExecFilter<'a> {
    /// Children of the generator process (the storm's /bin/true).
    Parent(u32),
    /// Execs of this path (a fresh /tmp copy nobody else runs).
    Path(&'a str),
}

/// Events a monitor saw for a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    /// Events attributed to the workload (or, when not `exact`, all of that kind).
    pub captured: u64,
    /// Events the monitor reports it dropped.
    pub lost: u64,
    /// Whether `captured` counts only the workload's events.
    pub exact: bool,
}

/// A stopped monitor: its summary and its output file.
#[derive(Debug)]
pub struct Stopped {
    pub monitor: Monitor,
    pub summary: Option<Json>,
    /// How procwatch exited on SIGTERM.
    pub exit: Option<std::process::ExitStatus>,
    pub out: PathBuf,
    audit_lost: Option<u64>,
}

impl Stopped {
    fn summary_u64(&self, path: &[&str]) -> u64 {
        self.summary
            .as_ref()
            .and_then(|s| s.path(path))
            .and_then(Json::as_u64)
            .unwrap_or(0)
    }

    /// Lines of the output file; a missing file is an error (the monitor wrote nothing).
    fn lines(&self) -> Result<impl Iterator<Item = String>> {
        let f = fs::File::open(&self.out)
            .map_err(|e| format!("cannot read {}: {e}", self.out.display()))?;
        Ok(BufReader::new(f).lines().map_while(|l| l.ok()))
    }

    /// bpftrace's "Lost N events" lines.
    fn bpftrace_lost(&self) -> Result<u64> {
        Ok(self
            .lines()?
            .filter_map(|l| {
                l.strip_prefix("Lost ")?
                    .strip_suffix(" events")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .sum())
    }

    /// Exec events of the workload; `None` for monitors that do not record events.
    pub fn execs(&self, filter: ExecFilter) -> Result<Option<Capture>> {
        let pids = match self.monitor {
            Monitor::None | Monitor::Bare => return Ok(None),
            Monitor::Procwatch | Monitor::ProcwatchNoIa32 => {
                return Ok(Some(Capture {
                    captured: self.summary_u64(&["sensor", "received", "exec"]),
                    lost: self.summary_u64(&["sensor", "kernel_lost", "exec"]),
                    exact: false,
                }));
            }
            Monitor::Events => self.events_exec_pids(filter)?,
            Monitor::Bpftrace => self.bpftrace_exec_pids(filter)?,
            Monitor::Auditd => self.audit_pids("59", |f| match filter {
                ExecFilter::Parent(p) => f.get("ppid") == Some(&p.to_string().as_str()),
                ExecFilter::Path(path) => f.get("exe") == Some(&path),
            })?,
        };
        Ok(Some(Capture {
            captured: pids.len() as u64,
            lost: self.lost("exec")?,
            exact: true,
        }))
    }

    /// connect() calls made by process `pid`.
    pub fn connects(&self, pid: u32) -> Result<Option<Capture>> {
        let captured = match self.monitor {
            Monitor::None | Monitor::Bare => return Ok(None),
            Monitor::Procwatch | Monitor::ProcwatchNoIa32 => {
                return Ok(Some(Capture {
                    captured: self.summary_u64(&["sensor", "received", "connect"]),
                    lost: self.summary_u64(&["sensor", "kernel_lost", "connect"]),
                    exact: false,
                }));
            }
            Monitor::Events => self
                .lines()?
                .filter(|l| l.contains("\"kind\":\"connect\""))
                .filter_map(|l| Json::parse(&l).ok())
                .filter(|v| v.get("tgid").and_then(Json::as_u64) == Some(u64::from(pid)))
                .count() as u64,
            Monitor::Bpftrace => {
                let want = pid.to_string();
                self.lines()?
                    .filter(|l| {
                        let mut w = l.split_whitespace();
                        w.next() == Some("connect") && w.next() == Some(want.as_str())
                    })
                    .count() as u64
            }
            Monitor::Auditd => {
                let want = pid.to_string();
                self.audit_records("42")?
                    .iter()
                    .filter(|f| f.get("pid") == Some(&want))
                    .count() as u64
            }
        };
        Ok(Some(Capture {
            captured,
            lost: self.lost("connect")?,
            exact: true,
        }))
    }

    /// Distinct pids that procwatch raised an alert for (monitor), or that a peer recorded an
    /// exec event for, among execs of `path`.
    pub fn recalled(&self, path: &str) -> Result<Option<u64>> {
        let pids = match self.monitor {
            Monitor::None | Monitor::Bare => return Ok(None),
            Monitor::Procwatch | Monitor::ProcwatchNoIa32 => {
                let mut pids = HashSet::new();
                for line in self.lines()? {
                    let Ok(v) = Json::parse(&line) else { continue };
                    let is = |j: Option<&Json>| j.and_then(Json::as_str) == Some(path);
                    let first_arg = v.get("cmdline").and_then(|c| match c {
                        Json::Arr(a) => a.first(),
                        _ => None,
                    });
                    if (is(v.get("exe")) || is(v.path(&["trigger", "filename"])) || is(first_arg))
                        && let Some(pid) = v.get("pid").and_then(Json::as_u64)
                    {
                        pids.insert(pid);
                    }
                }
                pids
            }
            _ => match self.execs(ExecFilter::Path(path))? {
                Some(c) => return Ok(Some(c.captured)),
                None => return Ok(None),
            },
        };
        Ok(Some(pids.len() as u64))
    }

    fn lost(&self, kind: &str) -> Result<u64> {
        Ok(match self.monitor {
            Monitor::Events => self.summary_u64(&["stats", "kernel_lost", kind]),
            Monitor::Bpftrace => self.bpftrace_lost()?,
            Monitor::Auditd => self.audit_lost.unwrap_or(0),
            _ => 0,
        })
    }

    fn events_exec_pids(&self, filter: ExecFilter) -> Result<HashSet<u64>> {
        let mut pids = HashSet::new();
        for line in self.lines()? {
            if !line.contains("\"kind\":\"exec\"") {
                continue;
            }
            let Ok(v) = Json::parse(&line) else { continue };
            let filename = v.get("filename").and_then(Json::as_str);
            let ppid = v.get("ppid").and_then(Json::as_u64);
            let hit = match filter {
                ExecFilter::Parent(p) => ppid == Some(u64::from(p)),
                ExecFilter::Path(path) => filename == Some(path),
            };
            if hit && let Some(pid) = v.get("tgid").and_then(Json::as_u64) {
                pids.insert(pid);
            }
        }
        Ok(pids)
    }

    fn bpftrace_exec_pids(&self, filter: ExecFilter) -> Result<HashSet<u64>> {
        let mut pids = HashSet::new();
        for line in self.lines()? {
            let mut w = line.splitn(4, ' ');
            if w.next() != Some("exec") {
                continue;
            }
            let (Some(pid), Some(ppid), Some(file)) = (w.next(), w.next(), w.next()) else {
                continue;
            };
            let hit = match filter {
                ExecFilter::Parent(p) => ppid.parse::<u32>().ok() == Some(p),
                ExecFilter::Path(path) => file == path,
            };
            if hit && let Ok(pid) = pid.parse() {
                pids.insert(pid);
            }
        }
        Ok(pids)
    }

    /// SYSCALL records of the bench key for `syscall` (number), as field maps.
    fn audit_records(&self, syscall: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let needle = format!("syscall={syscall} ");
        let key = format!("key=\"{}\"", auditd::KEY);
        Ok(self
            .lines()?
            .filter(|l| l.starts_with("type=SYSCALL") && l.contains(&needle) && l.contains(&key))
            .map(|l| {
                auditd::record_fields(&l)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect())
    }

    fn audit_pids(
        &self,
        syscall: &str,
        keep: impl Fn(&BTreeMap<&str, &str>) -> bool,
    ) -> Result<HashSet<u64>> {
        Ok(self
            .audit_records(syscall)?
            .iter()
            .filter(|f| f.get("success").map(String::as_str) == Some("yes"))
            .filter(|f| {
                let view: BTreeMap<&str, &str> =
                    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                keep(&view)
            })
            .filter_map(|f| f.get("pid")?.parse().ok())
            .collect())
    }
}

/// What one workload run under one monitor produced.
pub struct Measured<'e> {
    pub worker_pid: u32,
    pub result: BTreeMap<String, f64>,
    pub wall: Duration,
    pub busy_pct: Option<f64>,
    /// Monitor CPU from just before the workload until it had worked off the backlog.
    pub monitor_cpu: Option<Duration>,
    pub rss_kib: Option<u64>,
    pub stopped: Stopped,
    /// Holds the monitor's output until the caller has counted it.
    pub _dir: super::ScratchDir<'e>,
}

/// Starts `monitor`, runs one generator (`xtask bench-worker <args>`), measures, stops.
pub fn measure<'e>(env: &'e Env, monitor: Monitor, args: &[String]) -> Result<Measured<'e>> {
    super::check_interrupted()?;
    let dir = env.scratch_dir(monitor.slug())?;
    let mut running = start(env, monitor, dir.path())?;
    let sys0 = measure::CpuTimes::read();
    let cpu0 = running.cpu_ticks();
    let t0 = Instant::now();
    let (worker_pid, result) = env.run_worker(args)?;
    let wall = t0.elapsed();
    let sys1 = measure::CpuTimes::read();
    running.settle(Duration::from_secs(10));
    let cpu1 = running.cpu_ticks();
    let rss_kib = running.rss_kib();
    running.check_alive()?;
    let stopped = running.stop()?;
    let tck = measure::clock_ticks_per_sec();
    Ok(Measured {
        worker_pid,
        result,
        wall,
        busy_pct: sys0.zip(sys1).and_then(|(a, b)| a.busy_pct_until(&b)),
        monitor_cpu: cpu0
            .zip(cpu1)
            .map(|(a, b)| Duration::from_secs_f64(b.saturating_sub(a) as f64 / tck)),
        rss_kib,
        stopped,
        _dir: dir,
    })
}

impl Measured<'_> {
    /// A worker result value (0 when missing).
    pub fn get(&self, key: &str) -> f64 {
        self.result.get(key).copied().unwrap_or(0.0)
    }

    /// Monitor CPU as a share of one core over the workload's wall time.
    pub fn monitor_cpu_pct(&self) -> Option<f64> {
        let wall = self.wall.as_secs_f64();
        self.monitor_cpu
            .filter(|_| wall > 0.0)
            .map(|c| 100.0 * c.as_secs_f64() / wall)
    }

    /// The metrics every storm reports, with `made` and the per-operation names given.
    pub fn storm_sample(&self, capture: Option<Capture>) -> measure::Sample {
        let mut s = measure::Sample::new();
        let made = self.get("made");
        let secs = self.get("elapsed_ns") / 1e9;
        s.insert("made", made);
        s.insert("failed", self.get("failed"));
        if secs > 0.0 {
            s.insert("per_s", made / secs);
        }
        if let Some(b) = self.busy_pct {
            s.insert("busy_pct", b);
        }
        if let Some(c) = self.monitor_cpu_pct() {
            s.insert("mon_cpu_pct", c);
        }
        if let Some(c) = self.monitor_cpu.filter(|_| made > 0.0) {
            s.insert("mon_us_per_op", c.as_secs_f64() * 1e6 / made);
        }
        if let Some(r) = self.rss_kib {
            s.insert("rss_mib", r as f64 / 1024.0);
        }
        if let Some(c) = capture {
            s.insert("captured", c.captured as f64);
            s.insert("lost", c.lost as f64);
            s.insert("exact", if c.exact { 1.0 } else { 0.0 });
            // Exact counts: what is missing is lost (the monitor's own loss counter is
            // machine-wide). Machine-wide counts: what the monitor says it lost could have been
            // the workload's, and fewer events than operations is loss for sure.
            let missing = (made - c.captured as f64).max(0.0);
            let loss = if c.exact {
                missing
            } else {
                missing.max(c.lost as f64)
            };
            s.insert("loss", loss);
        }
        s
    }
}
