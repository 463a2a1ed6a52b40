//! Shared harness for procwatch's root-only tests: a live eBPF sensor in the test process, and
//! helpers to run the `pw-actor` test program and read what it printed.
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use procwatch::sensor::{EbpfOptions, EbpfSensor, Event, SensorStats, ebpf::KillPolicy};
use tokio::sync::{mpsc, watch};

/// How long `LiveSensor::expect` waits: an event is normally there in milliseconds, but on a
/// machine busy compiling the consumer can lag by seconds; only a failure waits this long.
pub const EXPECT_EVENT: Duration = Duration::from_secs(30);

/// True when running as root; eBPF and end-to-end tests need it.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The `#[ignore]` reason every root-only test carries: an unprivileged `cargo test` lists it as
/// ignored (skipped, never passed); `cargo xtask test`, as root, runs it with `--include-ignored`.
pub const NEEDS_ROOT: &str = "needs root (eBPF, real processes): cargo xtask test runs it as root";

/// First line of a root-only test (which is also `#[ignore = "needs root ..."]`): run without
/// root anyway (`--include-ignored` as a user), it fails rather than passing without testing.
#[macro_export]
macro_rules! require_root {
    () => {
        assert!(
            $crate::is_root(),
            "{}: needs root (eBPF programs and real processes); unprivileged runs list it as ignored",
            module_path!()
        );
    };
}

/// Records that the running test could not run here (the machine lacks `why`), for `cargo xtask
/// test` to count as skipped rather than passed; the caller returns right after.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIP {test}: {why}");
    if let Some(file) = std::env::var_os("PROCWATCH_TEST_SKIPS") {
        let line = format!("{test}\t{}\n", why.replace(['\n', '\t'], " "));
        // One write() of a short line to an O_APPEND file: lines from parallel tests never
        // interleave.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// Writes `dst` as a copy of `src` (mode kept) through a `cp` child process, never through a file
/// descriptor of the test process: another test thread forking at that moment would inherit a
/// writable descriptor of the new executable and make its exec fail with ETXTBSY ("Text file
/// busy"). With the writer in its own process, which has exited before anyone runs the file, no
/// process ever holds the file open for writing while it is executed.
pub fn install_exe(src: &Path, dst: &Path) {
    let status = Command::new("cp")
        .arg("--preserve=mode")
        .arg("--")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run cp {} {}: {e}", src.display(), dst.display()));
    assert!(
        status.success(),
        "cp {} {}: {status}",
        src.display(),
        dst.display()
    );
}

/// The eBPF sensor loaded inside the test process, with its event channel.
pub struct LiveSensor {
    /// The loaded sensor (keeps the probes attached).
    pub sensor: EbpfSensor,
    /// Loss and receive counters.
    pub stats: Arc<SensorStats>,
    rx: mpsc::Receiver<Event>,
    stop: watch::Sender<bool>,
    /// Every event received so far, for assertions and failure messages.
    pub seen: Vec<Event>,
}

impl LiveSensor {
    /// Loads and attaches every probe with `policy` installed; panics with the reason on failure.
    pub fn start(policy: KillPolicy) -> Self {
        let opts = EbpfOptions {
            kill: policy,
            ..EbpfOptions::default()
        };
        let mut sensor =
            EbpfSensor::load(&opts).unwrap_or_else(|e| panic!("eBPF sensor failed to load: {e}"));
        let unattached: Vec<_> = sensor.probes().iter().filter(|p| !p.attached).collect();
        assert!(unattached.is_empty(), "probes not attached: {unattached:?}");
        let stats = Arc::new(SensorStats::default());
        let (tx, rx) = mpsc::channel(65536);
        let (stop, stop_rx) = watch::channel(false);
        sensor
            .spawn_reader(tx, stats.clone(), stop_rx)
            .unwrap_or_else(|e| panic!("reader: {e}"));
        Self {
            sensor,
            stats,
            rx,
            stop,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for an event matching `pred` (earlier matches count too).
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => {
                    let hit = pred(&event);
                    self.seen.push(event);
                    if hit {
                        return self.seen.last().cloned();
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Like `wait_for`, but panics with the events of `tgid` seen so far when nothing matches
    /// within [`EXPECT_EVENT`].
    pub async fn expect(&mut self, what: &str, tgid: u32, pred: impl Fn(&Event) -> bool) -> Event {
        match self.wait_for(EXPECT_EVENT, pred).await {
            Some(e) => e,
            None => {
                let related: Vec<&Event> = self.seen.iter().filter(|e| e.tgid == tgid).collect();
                panic!(
                    "no {what} event for pid {tgid} within {EXPECT_EVENT:?}; its events: {related:#?}"
                )
            }
        }
    }
}

impl Drop for LiveSensor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A running actor whose stdout is read line by line (by a thread, so a grandchild that keeps
/// the pipe open cannot hang a test).
pub struct Actor {
    /// The child process.
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::sync::mpsc::Receiver<String>,
    /// Lines printed so far.
    pub lines: Vec<String>,
}

fn line_reader(stdout: ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Actor {
    /// Starts `program args...` with piped stdin/stdout.
    pub fn spawn(program: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::spawn_cmd(cmd)
    }

    /// Starts a prepared command with piped stdin/stdout.
    pub fn spawn_cmd(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = line_reader(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
            lines: Vec::new(),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the next line (None at end of output, or after 10 s of silence).
    pub fn read_line(&mut self) -> Option<String> {
        let line = self.stdout.recv_timeout(Duration::from_secs(10)).ok()?;
        self.lines.push(line.clone());
        Some(line)
    }

    /// Tells a `--wait` actor to go ahead.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("stdin still open");
        stdin.write_all(b"go\n").expect("write go");
    }

    /// Waits for exit, then collects what it printed.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait for actor");
        // The pipe may stay open in a (stopped) grandchild: take what arrives promptly.
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(300)) {
            self.lines.push(line);
        }
        (status, self.lines)
    }
}

/// Runs an actor to completion off the async runtime's threads.
pub async fn run_actor(program: PathBuf, args: Vec<String>) -> (u32, ExitStatus, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let actor = Actor::spawn(&program, &refs);
        let pid = actor.pid();
        let (status, lines) = actor.finish();
        (pid, status, lines)
    })
    .await
    .expect("actor thread")
}

/// A private temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/<base>/procwatch-test-<tag>-<pid>-<n>`.
    pub fn new_in(base: &str, tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            PathBuf::from(base).join(format!("procwatch-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self(dir)
    }

    /// Copies `src` into the directory as `name` (mode preserved, see [`install_exe`]) and
    /// returns the new path.
    pub fn copy_exe(&self, src: &Path, name: &str) -> PathBuf {
        let dst = self.0.join(name);
        install_exe(src, &dst);
        dst
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The workspace's cargo target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A scratch directory outside every `temp_dirs` entry (so files there are not `tmp_exe`),
/// wherever the checkout is (a clone under /tmp would put `target/` in a temp dir).
pub fn scratch_base() -> String {
    let dir = if is_root() {
        PathBuf::from("/var/lib/procwatch-tests")
    } else {
        target_dir().join("tmp")
    };
    let _ = std::fs::create_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

/// The procwatch binary built by cargo for this workspace.
pub fn procwatch_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PROCWATCH_BIN") {
        return PathBuf::from(p);
    }
    let bin = target_dir().join("debug/procwatch");
    assert!(
        bin.exists(),
        "{} missing: build it first (cargo build -p procwatch)",
        bin.display()
    );
    bin
}

/// The alert JSON Schema, compiled once.
pub fn alert_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/procwatch.alert.v1.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

/// Panics with every violation when `alert` does not match the alert schema.
pub fn assert_valid_alert(alert: &serde_json::Value) {
    let errors: Vec<String> = alert_schema()
        .iter_errors(alert)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "alert violates procwatch.alert/v1: {errors:#?}\n{alert:#}"
    );
}

/// A running `procwatch monitor` writing JSONL to a file of its own.
pub struct Monitor {
    child: Child,
    /// The JSONL alert file.
    pub jsonl: PathBuf,
    /// The config file passed with --config (rewrite it, then `signal(SIGHUP)`).
    pub config: PathBuf,
    stderr: std::sync::mpsc::Receiver<String>,
    /// stderr lines read so far.
    pub log: Vec<String>,
    _dir: TempDir,
}

impl Monitor {
    /// Starts `procwatch monitor` with `config` (YAML) and `extra` arguments, and waits until
    /// it reports that it is monitoring.
    pub fn start(config: &str, extra: &[&str]) -> Self {
        Self::start_cmd("monitor", config, extra)
    }

    /// Like `start`, for another subcommand that prints the same readiness line.
    pub fn start_cmd(cmd_name: &str, config: &str, extra: &[&str]) -> Self {
        Self::start_wrapped(&[], cmd_name, config, extra)
    }

    /// Like `start_cmd`, with procwatch run through `wrapper` (a program and its arguments
    /// that end by exec'ing the procwatch command line appended to them, e.g. `unshare`).
    pub fn start_wrapped(wrapper: &[&str], cmd_name: &str, config: &str, extra: &[&str]) -> Self {
        let dir = TempDir::new_in(&scratch_base(), "monitor");
        let config_path = dir.0.join("procwatch.yaml");
        std::fs::write(&config_path, config).expect("write config");
        // A test may name its own JSONL file (e.g. on a filesystem it mounted).
        let own = extra
            .iter()
            .position(|a| *a == "--jsonl")
            .and_then(|i| extra.get(i + 1));
        let jsonl = own.map_or_else(|| dir.0.join("alerts.jsonl"), PathBuf::from);
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(procwatch_bin());
                c
            }
            None => Command::new(procwatch_bin()),
        };
        cmd.arg(cmd_name)
            .arg("--config")
            .arg(&config_path)
            .arg("--quiet")
            .args(extra);
        if own.is_none() {
            cmd.arg("--jsonl").arg(&jsonl);
        }
        let mut child = cmd
            // ~/.procwatch.yaml of whoever runs the tests must not change the outcome.
            .env("HOME", &dir.0)
            // A history of its own (the default, /var/lib/procwatch/alerts.db as root, takes
            // one procwatch at a time); `--history`/`--no-history` in `extra` win over it.
            .env("PROCWATCH_HISTORY", dir.0.join("alerts.db"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("procwatch starts");
        let stderr = line_reader_err(child.stderr.take().expect("stderr"));
        let mut m = Self {
            child,
            jsonl,
            config: config_path,
            stderr,
            log: Vec::new(),
            _dir: dir,
        };
        m.wait_log(Duration::from_secs(60), "monitoring");
        m
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_log(&mut self, timeout: Duration, needle: &str) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "procwatch never logged {needle:?}; log so far: {:#?}",
                    self.log
                ),
            }
        }
    }

    /// Every alert written so far (each line must be valid JSON and match the schema). A line
    /// still being written (no newline yet) is left for the next call.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line ({e}): {l}"));
                assert_valid_alert(&v);
                v
            })
            .collect()
    }

    /// Waits up to `timeout` for an alert matching `pred`.
    pub fn wait_alert(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(a) = self.alerts().into_iter().find(|a| pred(a)) {
                return Some(a);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Like `wait_alert` for `pid` and `rule`, panicking with all alerts when none comes.
    /// The wait outlasts procwatch's own deadlines (an alert waits up to 20 s for its dump, 2 s
    /// for its digest) with room for a loaded machine: it only costs time when the test fails.
    pub fn expect_rule(&self, pid: u32, rule: &str) -> serde_json::Value {
        self.wait_alert(Duration::from_secs(60), |a| {
            a["pid"] == pid && has_rule(a, rule)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {rule} alert for pid {pid}; alerts: {:#?}",
                self.alerts()
            )
        })
    }

    /// Event barrier: runs a `/tmp` copy of `/bin/true` and waits for its `tmp_exe` alert. The
    /// engine handles events and releases alerts in order, so every event of a process that ended
    /// before this call has been judged when it returns: a positive control that makes "no
    /// alert so far" mean something (needs a config under which `tmp_exe` alerts). Returns the
    /// barrier's pid, whose own alert the caller leaves out.
    pub fn sync_events(&self) -> u32 {
        let dir = TempDir::new_in("/tmp", "barrier");
        let exe = dir.copy_exe(Path::new("/bin/true"), "pw-barrier");
        let mut child = Command::new(&exe).spawn().expect("run the barrier");
        let pid = child.id();
        let _ = child.wait();
        self.expect_rule(pid, "tmp_exe");
        pid
    }

    /// Sweep barrier: starts a process whose executable is then deleted and waits for its
    /// `deleted_exe` alert, which only a /proc sweep can raise: when this returns, a sweep ran
    /// after the call began, so state-based rules had their chance at everything alive then.
    /// Returns the barrier's pid.
    pub fn sync_sweep(&self) -> u32 {
        let dir = TempDir::new_in(&scratch_base(), "sweep-barrier");
        let exe = dir.copy_exe(Path::new("/bin/sleep"), "pw-sweep-barrier");
        let mut child = Command::new(&exe)
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("run the sweep barrier");
        let pid = child.id();
        std::fs::remove_file(&exe).expect("delete the barrier's executable");
        let found = self.wait_alert(Duration::from_secs(30), |a| {
            a["pid"] == pid && has_rule(a, "deleted_exe")
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            found.is_some(),
            "no sweep within 30 s (no deleted_exe for the barrier {pid}); alerts: {:#?}",
            self.alerts()
        );
        pid
    }

    /// The pid of the procwatch process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to procwatch.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for procwatch to exit on its own; returns its status, the summary line and the
    /// final JSONL text (read before the temporary directory goes).
    pub fn wait_exit(
        mut self,
        timeout: Duration,
    ) -> (ExitStatus, Option<serde_json::Value>, String) {
        let end = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < end,
                "procwatch did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let summary = self.collect_summary();
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        (status, summary, text)
    }

    fn collect_summary(&mut self) -> Option<serde_json::Value> {
        self.log.extend(self.stderr.try_iter());
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
        self.log.iter().rev().find_map(|l| {
            let (_, json) = l.split_once(": {")?;
            serde_json::from_str(&format!("{{{json}")).ok()
        })
    }

    /// Sends SIGTERM, waits, and returns the exit status, the final summary line and the
    /// final JSONL text.
    pub fn stop(mut self) -> (ExitStatus, Option<serde_json::Value>, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("procwatch exits");
        let summary = self.collect_summary();
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        (status, summary, text)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when the alert lists `rule` among its reasons.
pub fn has_rule(alert: &serde_json::Value, rule: &str) -> bool {
    alert["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["rule"] == rule))
}

fn line_reader_err(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A copy of the built `pw-actor` outside every temp dir (made once per test binary): run from
/// `target/` of a checkout under /tmp, the actor would itself be `tmp_exe`.
pub fn stable_actor(built: &Path) -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        // One fixed name per build (several checkouts may share this machine, each with its
        // own actor), replaced by rename: nothing piles up across runs, and a process still
        // running the previous copy keeps its own inode.
        let tag = built
            .as_os_str()
            .as_encoded_bytes()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let dst = PathBuf::from(scratch_base()).join(format!("pw-actor-{tag:016x}"));
        let tmp = dst.with_extension(format!("partial-{}", std::process::id()));
        install_exe(built, &tmp);
        std::fs::rename(&tmp, &dst).expect("rename the actor copy into place");
        dst
    })
    .clone()
}

/// The processes this test process started, directly or not, as the kernel reports them (exec
/// and fork events of an eBPF sensor loaded in the test process): a test judges only these, never what
/// other software on the machine did meanwhile.
pub struct OwnTree {
    members: Arc<std::sync::Mutex<std::collections::HashSet<u32>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl OwnTree {
    /// Starts following the fork events of this process's descendants.
    pub fn start() -> Self {
        let members = Arc::new(std::sync::Mutex::new(std::collections::HashSet::from([
            std::process::id(),
        ])));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = {
            let (members, stop) = (members.clone(), stop.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let mut sensor = LiveSensor::start(KillPolicy::default());
                    let _ = ready_tx.send(());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let next =
                            tokio::time::timeout(Duration::from_millis(50), sensor.rx.recv());
                        match next.await {
                            Ok(Some(event)) => {
                                // The sensor leaves out what its own process (this one) does,
                                // forks included: a direct child is seen at its exec, which
                                // names its parent; descendants further down by their forks.
                                let (parent, child) = match &event.body {
                                    procwatch::sensor::EventBody::Fork(f) => {
                                        (f.parent_tgid, f.child_tgid)
                                    }
                                    procwatch::sensor::EventBody::Exec(e) => (e.ppid, event.tgid),
                                    _ => continue,
                                };
                                let mut m = members.lock().expect("tree lock");
                                if m.contains(&parent) {
                                    m.insert(child);
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                });
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the tree's sensor loads");
        Self {
            members,
            stop,
            reader: Some(reader),
        }
    }

    /// Waits until every fork that happened before this call has been seen: forks a marker
    /// child and waits for it to be a member.
    pub fn sync(&self) {
        let mut marker = Command::new("/bin/true").spawn().expect("run the marker");
        let pid = marker.id();
        let _ = marker.wait();
        assert!(
            eventually(Duration::from_secs(10), || self.contains(pid)),
            "the fork of marker {pid} was never seen"
        );
    }

    /// True when `pid` was started by this test process or one of its descendants.
    pub fn contains(&self, pid: u32) -> bool {
        self.members.lock().expect("tree lock").contains(&pid)
    }

    /// The alerts among `alerts` about processes of this tree, leaving out what only says
    /// where the checkout lives: a `tmp_exe` alone on a binary cargo built (this test, the
    /// procwatch it runs) when the clone is under /tmp, as a CI clone may be.
    pub fn own(&self, alerts: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
        self.sync();
        let built = target_dir().canonicalize().unwrap_or_else(|_| target_dir());
        let checkout_artifact = |a: &serde_json::Value| {
            a["exe"]
                .as_str()
                .is_some_and(|e| Path::new(e).starts_with(&built))
                && a["reasons"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|x| x["rule"] == "tmp_exe"))
        };
        alerts
            .into_iter()
            .filter(|a| {
                a["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .is_some_and(|p| self.contains(p))
            })
            .filter(|a| !checkout_artifact(a))
            .collect()
    }
}

impl Drop for OwnTree {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// A process held by a pidfd, taken while the test knows the pid is the process it started.
/// Once such a process is re-parented (double fork, daemon), init reaps it and its pid can be
/// reused at once; a signal through the pidfd can never reach that other process.
pub struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    /// Holds `pid`; `None` when it has already exited.
    pub fn open(pid: u32) -> Option<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned to us by the kernel and is owned by nobody else.
        Some(Self(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `sig` to the held process; nothing happens when it has exited.
    pub fn signal(&self, sig: i32) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

/// Makes this process the reaper of its tree's orphans (they are re-parented to it, not to
/// init), so a test can wait for a daemonised descendant and see how it ended.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Waits up to `timeout` for `pid` (a child of this process, possibly adopted) to end, and
/// returns how it ended; `None` while it still runs.
pub fn reap(pid: u32, timeout: Duration) -> Option<ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let end = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waiting on a child of ours; status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == pid as libc::pid_t {
            return Some(ExitStatus::from_raw(status));
        }
        if r < 0 || Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Accepts one connection on `listener` in a thread and hands it back (held open by the
/// caller as long as it keeps it).
pub fn accept_one(
    listener: std::net::TcpListener,
) -> std::thread::JoinHandle<Option<std::net::TcpStream>> {
    std::thread::spawn(move || listener.accept().ok().map(|(s, _)| s))
}

/// A reverse shell relayed through a named FIFO, `sh -i < FIFO | RELAY > FIFO`, where the
/// relay connects to a loopback listener of the test (held open until [`FifoRelay::end`]).
pub struct FifoRelay {
    outer: Child,
    peer: std::thread::JoinHandle<Option<std::net::TcpStream>>,
}

impl FifoRelay {
    /// Starts the pipeline; `relay` is the relay's shell command for the listener's port.
    pub fn start(fifo: &Path, relay: impl Fn(u16) -> String) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let peer = accept_one(listener);
        let script = format!(
            "mkfifo {f}; /bin/sh -i < {f} 2>&1 | {r} > {f}",
            f = fifo.display(),
            r = relay(port)
        );
        let outer = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        Self { outer, peer }
    }

    /// The pid of the `sh -c` running the pipeline (the shell's and the relay's parent).
    pub fn pid(&self) -> u32 {
        self.outer.id()
    }

    /// Drops the connection and ends the pipeline.
    pub fn end(mut self) {
        drop(self.peer.join().ok().flatten());
        let _ = self.outer.kill();
        let _ = self.outer.wait();
    }
}
