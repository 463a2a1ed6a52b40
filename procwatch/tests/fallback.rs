//! The fallback sensor end to end: `procwatch events --sensor fallback` runs as a child, this
//! test starts real processes, and the JSONL must report them, marked `proc_connector`.
//! Needs root (as in CI); skips with the reason otherwise.
use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// A process name a hostile program could choose: newline, quote, escape sequence, bad UTF-8.
const HOSTILE_NAME: &[u8] = b"pw\n\"\x1b[2J\xff";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A running `procwatch events` with its output collected on threads.
struct Procwatch {
    child: Child,
    stdout: thread::JoinHandle<String>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_all: Vec<String>,
}

impl Procwatch {
    fn start(duration_s: f64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_procwatch"))
            .args([
                "events",
                "--sensor",
                "fallback",
                "--kinds",
                "exec,fork,exit",
            ])
            .args(["--duration", &duration_s.to_string()])
            .env("PROCWATCH_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("procwatch starts");
        let mut out = child.stdout.take().expect("stdout piped");
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).expect("stdout is UTF-8");
            s
        });
        let err = child.stderr.take().expect("stderr piped");
        let (tx, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut pw = Self {
            child,
            stdout,
            stderr_lines,
            stderr_all: Vec::new(),
        };
        pw.wait_for_stderr("streaming events", READY_TIMEOUT);
        pw
    }

    /// Reads stderr until a line contains `needle`; panics with everything read on timeout.
    fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_all.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "no '{needle}' on procwatch's stderr ({e}); stderr so far:\n{}",
                        self.stderr_all.join("\n")
                    );
                }
            }
        }
    }

    /// Waits for the --duration to end; returns the status, stdout, and the summary line.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("procwatch did not stop after its --duration");
            }
            thread::sleep(Duration::from_millis(50));
        };
        let summary = self.wait_for_stderr("procwatch events:", Duration::from_secs(5));
        let stdout = self.stdout.join().expect("stdout reader");
        (status, stdout, summary)
    }
}

/// A fresh directory for copied binaries, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .canonicalize()
            .expect("target tmpdir exists");
        let dir = base.join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    /// Copies a system binary under a new name (the copy keeps its mode).
    fn copy_bin(&self, from: &str, name: &OsStr) -> PathBuf {
        let to = self.0.join(name);
        // Written by a `cp` child, never by a descriptor of this multi-threaded test process,
        // which another test's fork could inherit and make the exec fail with ETXTBSY.
        let copied = Command::new("cp")
            .args(["--preserve=mode", "--", from])
            .arg(&to)
            .status()
            .expect("run cp");
        assert!(copied.success(), "cp {from}: {copied}");
        to
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> (u32, ExitStatus) {
    let mut child = cmd.spawn().expect("child starts");
    let pid = child.id();
    (pid, child.wait().expect("child reaped"))
}

fn parse_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}

fn find<'a>(events: &'a [Value], kind: &str, pred: impl Fn(&Value) -> bool) -> Option<&'a Value> {
    events.iter().find(|e| e["kind"] == kind && pred(e))
}

fn pid_is(e: &Value, pid: u32) -> bool {
    e["tgid"] == pid
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn fallback_reports_exec_fork_exit_of_real_processes() {
    assert!(
        is_root(),
        "needs root (the process connector needs CAP_NET_ADMIN before Linux 6.6, and \
         /proc/<pid>/exe of other users' processes is root-only)"
    );
    let tmp = TempDir::new("fallback");
    let true_bin = tmp.copy_bin("/bin/true", OsStr::new("pw-true"));
    let sleep_bin = tmp.copy_bin("/bin/sleep", OsStr::new("pw-sleep"));
    let hostile_bin = tmp.copy_bin("/bin/sleep", OsStr::from_bytes(HOSTILE_NAME));

    let started = Instant::now();
    let pw = Procwatch::start(4.0);

    let (true_pid, _) = run(Command::new(&true_bin).args(["--pw-marker", "alpha"]));
    let (sh_pid, sh_status) = run(Command::new("sh").args(["-c", "exit 7"]));
    assert_eq!(sh_status.code(), Some(7));
    let (sleep_pid, _) = run(Command::new(&sleep_bin).arg("0.5"));
    let (hostile_pid, _) = run(Command::new(&hostile_bin).arg("0.3"));

    let (status, stdout, summary) = pw.finish();
    assert!(status.success(), "procwatch failed: {status}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "procwatch took {:?} to stop after a 4 s --duration",
        started.elapsed()
    );
    let events = parse_lines(&stdout);
    assert!(!events.is_empty(), "no events at all");
    let me = std::process::id();
    let show = |what: &str| {
        format!(
            "{what} not found among {} events; stderr summary: {summary}",
            events.len()
        )
    };

    // Every event of this run comes from the fallback's two sources.
    for e in &events {
        assert!(
            e["sensor"] == "proc_connector" || e["sensor"] == "sweep",
            "unexpected sensor in {e}"
        );
    }

    // exec of a process that exits at once: reported, arguments maybe too late to read.
    let exec = find(&events, "exec", |e| pid_is(e, true_pid))
        .unwrap_or_else(|| panic!("{}", show("exec of pw-true")));
    assert_eq!(exec["sensor"], "proc_connector");

    // fork of that child by this test process.
    let fork = find(&events, "fork", |e| e["child_tgid"] == true_pid)
        .unwrap_or_else(|| panic!("{}", show("fork of pw-true")));
    assert_eq!(fork["parent_tgid"], me);
    assert_eq!(fork["sensor"], "proc_connector");

    // exit code of `sh -c 'exit 7'`.
    let exit = find(&events, "exit", |e| pid_is(e, sh_pid))
        .unwrap_or_else(|| panic!("{}", show("exit of sh")));
    assert_eq!(exit["exit_code"], 7);
    assert_eq!(exit["sensor"], "proc_connector");

    // A process that lives long enough is enriched from /proc.
    let exec = find(&events, "exec", |e| pid_is(e, sleep_pid))
        .unwrap_or_else(|| panic!("{}", show("exec of pw-sleep")));
    assert_eq!(exec["sensor"], "proc_connector");
    assert_eq!(
        exec["filename"],
        sleep_bin.to_str().expect("UTF-8 temp path")
    );
    assert_eq!(
        exec["argv"],
        serde_json::json!([sleep_bin.to_str().expect("UTF-8 temp path"), "0.5"])
    );
    assert_eq!(exec["args_missing"], false);
    assert_eq!(exec["comm"], "pw-sleep");
    assert_eq!(exec["ppid"], me);
    // SAFETY: getuid has no preconditions.
    assert_eq!(exec["uid"], unsafe { libc::getuid() });
    // Its exit still names it, although this test reaped it before procwatch could look.
    let exit = find(&events, "exit", |e| pid_is(e, sleep_pid))
        .unwrap_or_else(|| panic!("{}", show("exit of pw-sleep")));
    assert_eq!(exit["exit_code"], 0);
    assert_eq!(exit["comm"], "pw-sleep");

    // A hostile process name stays inside its JSON string.
    let exec = find(&events, "exec", |e| pid_is(e, hostile_pid))
        .unwrap_or_else(|| panic!("{}", show("exec of the hostile name")));
    assert_eq!(exec["comm"], "pw\n\"\u{1b}[2J\u{fffd}");

    // Nothing procwatch received from the kernel was malformed.
    let json = summary
        .split_once('{')
        .map(|(_, rest)| format!("{{{rest}"))
        .expect("summary has JSON");
    let summary: Value = serde_json::from_str(&json).expect("summary parses");
    assert_eq!(summary["stats"]["malformed"], 0, "{summary}");
    assert_eq!(summary["stopped"], "duration elapsed");
}
