//! Actions end to end, as root: kill in the kernel (ptrace, W+X) and from user space (pidfd),
//! the allowlist, `--stop-on-alert`, SIGHUP reload, SIGTERM under a stream of alerts, daemon
//! mode and systemd readiness. Every kill is scoped (`--enforce-scope-pid`) to a process the
//! test started, so nothing else on the host can be hit.
use std::{
    os::unix::{net::UnixDatagram, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use procwatch_tests::{
    Actor, Monitor, TempDir, eventually, procwatch_bin, require_root, scratch_base,
};

const FAST: &str = "sweep_interval: 1s\ncpu_window: 1s\n";

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(std::path::Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// `sh` that waits for a line on stdin, then execs `program args` (same pid): the scope pid is
/// known before the monitor starts, and nothing offending happens before it is ready.
fn waiting(program: &Path, args: &[&str]) -> Actor {
    let script = "echo ready; read _; exec \"$0\" \"$@\"";
    let mut full = vec!["-c", script, program.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let mut a = Actor::spawn(Path::new("/bin/sh"), &full);
    assert_eq!(a.read_line().as_deref(), Some("ready"));
    a
}

fn finish(actor: Actor) -> (std::process::ExitStatus, Vec<String>) {
    actor.finish()
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn kill_on_alert_kills_wx_and_ptrace_in_the_kernel() {
    require_root!();
    for action in ["mprotect-wx", "mmap-wx", "ptrace-attach"] {
        let mut a = waiting(&actor(), &[action]);
        let pid = a.pid();
        let m = Monitor::start(
            FAST,
            &["--kill-on-alert", "--enforce-scope-pid", &pid.to_string()],
        );
        a.go();
        let (status, lines) = finish(a);
        assert!(lines.iter().any(|l| l == "before"), "{action}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("after")),
            "{action} returned from the syscall: {lines:?}"
        );
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{action}");
        let rule = if action == "ptrace-attach" {
            "ptrace"
        } else {
            "wx_mem"
        };
        let alert = m.expect_rule(pid, rule);
        assert_eq!(alert["action"], "killed", "{alert:#}");
        assert_eq!(alert["action_by"], "kernel");
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn allowlisted_executable_survives_enforcement() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "allow");
    let jit = dir.copy_exe(&actor(), "pw-jit");
    let config = format!(
        "{FAST}enforce:\n  wx_mem: true\n  ptrace: true\n  allow_exe_paths: [{}]\n",
        jit.display()
    );
    for action in ["mprotect-wx", "ptrace-attach"] {
        let mut a = waiting(&jit, &[action]);
        let pid = a.pid();
        let m = Monitor::start(&config, &["--enforce-scope-pid", &pid.to_string()]);
        a.go();
        let (status, lines) = finish(a);
        assert!(
            status.success(),
            "{action}: allowlisted process was killed: {status:?} {lines:?}"
        );
        assert!(lines.iter().any(|l| l.starts_with("after")), "{lines:?}");
        let alert = m.expect_rule(
            pid,
            if action == "ptrace-attach" {
                "ptrace"
            } else {
                "wx_mem"
            },
        );
        assert_eq!(
            alert["action"], "exempt",
            "exempt: reported, not killed: {alert:#}"
        );
        assert_eq!(alert["action_by"], "kernel");
        assert_eq!(alert["trigger"]["kernel_action"], "exempt");
    }
    // The same policy kills a copy that is not allowlisted.
    let other = dir.copy_exe(&actor(), "pw-other");
    let mut a = waiting(&other, &["mprotect-wx"]);
    let pid = a.pid();
    let _m = Monitor::start(&config, &["--enforce-scope-pid", &pid.to_string()]);
    a.go();
    let (status, _) = finish(a);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn tmp_binary_is_killed_from_user_space() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "ukill");
    let exe = dir.copy_exe(&actor(), "dropper");
    let mut a = waiting(&exe, &["sleep", "30"]);
    let pid = a.pid();
    let m = Monitor::start(
        FAST,
        &["--kill-on-alert", "--enforce-scope-pid", &pid.to_string()],
    );
    let t0 = Instant::now();
    a.go();
    let (status, _) = finish(a);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "not killed: {status:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(25),
        "it ran its course instead of being killed"
    );
    let alert = m.expect_rule(pid, "tmp_exe");
    assert_eq!(alert["action"], "killed", "{alert:#}");
    assert_eq!(alert["action_by"], "userspace");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn processes_outside_the_scope_are_not_killed() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "noscope");
    let exe = dir.copy_exe(&actor(), "dropper");
    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().expect("sleep");
    let m = Monitor::start(
        FAST,
        &[
            "--kill-on-alert",
            "--enforce-scope-pid",
            &sleeper.id().to_string(),
        ],
    );
    let mut child = Command::new(&exe)
        .args(["sleep", "1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert!(status.success(), "killed outside its scope: {status:?}");
    let alert = m.expect_rule(pid, "tmp_exe");
    assert_eq!(alert["action"], "alert");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn stop_on_alert_exits_after_exactly_one_complete_alert() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "stop");
    let exe = dir.copy_exe(&actor(), "payload");
    let m = Monitor::start(FAST, &["--stop-on-alert"]);
    for _ in 0..5 {
        let _ = Command::new(&exe).args(["exit", "0"]).status();
    }
    let (status, summary, text) = m.wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(3),
        "documented exit status for --stop-on-alert"
    );
    assert_eq!(text.lines().count(), 1, "exactly one alert: {text}");
    assert!(text.ends_with('\n'), "the alert is complete");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("valid JSON");
    procwatch_tests::assert_valid_alert(&v);
    assert_eq!(summary.expect("summary")["stopped"], "stopped on alert");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn sighup_with_a_broken_config_keeps_the_old_one_and_a_good_one_applies() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "hup");
    let mut m = Monitor::start(FAST, &[]);
    std::fs::write(&m.config, "min_score: [broken\n").expect("rewrite config");
    m.signal(libc::SIGHUP);
    let line = m.wait_log(Duration::from_secs(10), "config reload failed");
    assert!(
        line.contains("procwatch.yaml"),
        "the error names the file: {line}"
    );
    let exe = dir.copy_exe(&actor(), "still-watched");
    let mut c = Command::new(&exe)
        .args(["exit", "0"])
        .spawn()
        .expect("spawn");
    let pid = c.id();
    let _ = c.wait();
    m.expect_rule(pid, "tmp_exe");

    let quiet = dir.copy_exe(&actor(), "now-whitelisted");
    std::fs::write(
        &m.config,
        format!("{FAST}whitelist:\n  exe_paths: [{}]\n", quiet.display()),
    )
    .expect("config");
    m.signal(libc::SIGHUP);
    m.wait_log(Duration::from_secs(10), "config reloaded");
    let mut c = Command::new(&quiet)
        .args(["exit", "0"])
        .spawn()
        .expect("spawn");
    let quiet_pid = c.id();
    let _ = c.wait();
    let mut c = Command::new(&exe)
        .args(["exit", "0"])
        .spawn()
        .expect("spawn");
    let control = c.id();
    let _ = c.wait();
    m.expect_rule(control, "tmp_exe");
    assert!(
        m.alerts().iter().all(|a| a["pid"] != quiet_pid),
        "whitelisted after reload"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn sigterm_under_a_stream_of_alerts_loses_none() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "stream");
    let exe = dir.copy_exe(Path::new("/bin/true"), "burst");
    let m = Monitor::start(FAST, &[]);
    let runner = std::thread::spawn(move || {
        for _ in 0..300 {
            let _ = Command::new(&exe).status();
        }
    });
    assert!(
        eventually(Duration::from_secs(20), || m.alerts().len() >= 50),
        "alerts are flowing"
    );
    let jsonl = m.jsonl.clone();
    let (status, summary, text) = m.stop();
    let _ = runner.join();
    assert!(status.success(), "{status:?}");
    let summary = summary.expect("summary");
    let written = text.lines().count() as u64;
    assert_eq!(summary["alerts_written"], written, "{summary:#}");
    assert_eq!(
        summary["engine"]["alerts"], written,
        "every alert generated was written: {summary:#}"
    );
    assert_eq!(
        summary["sinks"][format!("jsonl:{}", jsonl.display())]["failed"],
        0
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn daemon_mode_detaches_writes_a_pid_file_and_cleans_up() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "daemon");
    let pid_file = dir.0.join("procwatch.pid");
    let log = dir.0.join("procwatch.log");
    let jsonl = dir.0.join("alerts.jsonl");
    let config = dir.0.join("procwatch.yaml");
    std::fs::write(&config, FAST).expect("config");
    let status = Command::new(procwatch_bin())
        .args(["monitor", "-d", "--quiet"])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--daemon-log")
        .arg(&log)
        .arg("--jsonl")
        .arg(&jsonl)
        .arg("--config")
        .arg(&config)
        .env("HOME", &dir.0)
        // A history of its own: the default one may be in use by another test.
        .env("PROCWATCH_HISTORY", dir.0.join("alerts.db"))
        .status()
        .expect("procwatch -d");
    assert!(
        status.success(),
        "the launcher returns 0 once the daemon is up"
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(eventually(Duration::from_secs(60), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("monitoring"))
    }));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon alive");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    // Fields after comm: state ppid pgrp session; the daemon is not a session leader.
    assert_ne!(
        fields[3],
        pid.to_string(),
        "the daemon does not lead its session (cannot regain a tty)"
    );
    let again = Command::new(procwatch_bin())
        .args(["monitor", "-d"])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--daemon-log")
        .arg(&log)
        .stderr(Stdio::piped())
        .output()
        .expect("second instance");
    assert!(!again.status.success(), "a second daemon is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let tmp = TempDir::new_in("/tmp", "daemon-alert");
    let exe = tmp.copy_exe(Path::new("/bin/true"), "payload");
    let mut c = Command::new(&exe).spawn().expect("spawn");
    let alert_pid = c.id();
    let _ = c.wait();
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&jsonl).is_ok_and(|t| t.contains(&format!("\"pid\":{alert_pid},")))
    }));
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(
        eventually(Duration::from_secs(20), || !pid_file.exists()),
        "pid file removed on exit"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn readiness_is_sent_to_notify_socket() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut child = Command::new(procwatch_bin())
        .args(["monitor", "--quiet", "--duration", "30"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("HOME", &dir.0)
        // A history of its own: the default one may be in use by another test.
        .env("PROCWATCH_HISTORY", dir.0.join("alerts.db"))
        .stderr(Stdio::null())
        .spawn()
        .expect("procwatch");
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification arrives");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("stopping notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(child.wait().expect("exit").success());
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        procwatch_tests::skip(
            "the_systemd_unit_verifies",
            "systemd-analyze is not installed, the unit cannot be verified here",
        );
        return;
    };
    assert!(out.status.success());
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/procwatch.service"),
    )
    .expect("unit file");
    let dir = TempDir::new_in(&scratch_base(), "unit");
    let bin = procwatch_bin();
    let unit = unit.replace("/usr/local/bin/procwatch", bin.to_str().expect("utf-8"));
    let path = dir.0.join("procwatch.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn kill_with_dump_freezes_dumps_the_deleted_executable_then_kills() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "dumpkill");
    let exe = dir.copy_exe(&actor(), "soon-deleted");
    let original = sha256_of(&exe);
    let dumps = dir.0.join("dumps");
    let script = "echo ready; read _; PW_DUMP_MARKER=found-in-environ exec \"$0\" sleep 30";
    let mut a = Actor::spawn(
        Path::new("/bin/sh"),
        &["-c", script, exe.to_str().expect("utf-8")],
    );
    assert_eq!(a.read_line().as_deref(), Some("ready"));
    let pid = a.pid();
    let m = Monitor::start(
        FAST,
        &[
            "--kill-on-alert",
            "--dump",
            dumps.to_str().expect("utf-8"),
            "--enforce-scope-pid",
            &pid.to_string(),
        ],
    );
    a.go();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&exe).expect("delete the running executable");
    let (status, _) = finish(a);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed after the dump"
    );
    let alert = m.expect_rule(pid, "deleted_exe");
    assert_eq!(alert["action"], "killed", "{alert:#}");
    let dump = PathBuf::from(alert["dump"].as_str().expect("alert names its dump"));
    assert!(dump.starts_with(&dumps), "{}", dump.display());
    assert_eq!(
        sha256_of(&dump.join("exe")),
        original,
        "the dump holds the real, deleted executable"
    );
    let environ = std::fs::read(dump.join("environ")).expect("environ");
    assert!(String::from_utf8_lossy(&environ).contains("PW_DUMP_MARKER=found-in-environ"));
    let maps = std::fs::read_to_string(dump.join("maps")).expect("maps");
    assert!(maps.contains("soon-deleted (deleted)"), "{maps}");
    let status = std::fs::read_to_string(dump.join("status")).expect("status");
    assert!(
        status.contains("T (stopped)"),
        "frozen while dumped: {status}"
    );
    // The dump's alert.json is the same alert: it has the id the alert has in every sink.
    let dumped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dump.join("alert.json")).expect("alert.json"))
            .expect("alert.json is JSON");
    assert!(alert["id"].as_u64().is_some_and(|id| id > 0), "{alert:#}");
    assert_eq!(dumped["id"], alert["id"], "{dumped:#}");
    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&dump)
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn hostile_names_keep_every_record_whole_and_the_dump_inside_dir() {
    use std::os::unix::ffi::OsStrExt;
    require_root!();
    let dir = TempDir::new_in("/tmp", "hostile");
    let name = std::ffi::OsStr::from_bytes(b"evil\n\"q\x1b[2J\xff..");
    let exe = dir.0.join(name);
    procwatch_tests::install_exe(&actor(), &exe);
    let dumps = TempDir::new_in(&scratch_base(), "hostile-dumps");
    let log = dumps.0.join("procwatch.log");
    let config = format!("{FAST}outputs:\n  log_file: {}\n", log.display());
    let m = Monitor::start(
        &config,
        &["--dump", dumps.0.join("d").to_str().expect("utf-8")],
    );
    let mut c = Command::new(&exe)
        .args(["sleep", "1", "\n{\"forged\":1}"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = c.id();
    let alert = m.expect_rule(pid, "tmp_exe");
    let _ = c.wait();
    // JSONL: every line is one whole, schema-valid record (m.alerts() checks both).
    assert!(m.alerts().iter().all(|a| a.get("forged").is_none()));
    assert!(
        alert["exe"]
            .as_str()
            .is_some_and(|e| e.contains("evil\n\"q\u{1b}[2J\u{fffd}")),
        "{alert:#}"
    );
    // The text log: no raw control characters, so no forged entries.
    assert!(eventually(Duration::from_secs(5), || std::fs::read(&log)
        .is_ok_and(|t| !t.is_empty())));
    let text = std::fs::read(&log).expect("log file");
    assert!(!text.contains(&0x1b), "raw ESC in the log file");
    let entries = String::from_utf8_lossy(&text)
        .matches("ANOMALY DETECTED")
        .count();
    assert_eq!(entries, m.alerts().len(), "one log entry per alert");
    // The dump: inside DIR, one directory, sanitised name.
    let dump = PathBuf::from(alert["dump"].as_str().expect("dump path"));
    let canon = dump.canonicalize().expect("dump exists");
    assert!(
        canon.starts_with(dumps.0.join("d").canonicalize().expect("dir")),
        "{}",
        canon.display()
    );
    let leaf = dump
        .file_name()
        .expect("leaf")
        .to_str()
        .expect("sanitised names are ASCII");
    assert!(
        leaf.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        "{leaf}"
    );
}
