//! Alert sinks end to end, as root: `procwatch monitor` runs, a copy of `/bin/true` in a
//! fresh /tmp directory raises a `tmp_exe` alert, and the alert must arrive in a real
//! rsyslogd (over TCP, UDP and a local socket), in the readable log file, and keep flowing to
//! the JSONL file when the syslog server is dead. rsyslogd (Debian package `rsyslog`,
//! installed by `cargo xtask setup`) runs in the foreground with a private config, on
//! loopback ports chosen here, and is killed when the test ends, pass or fail.
use std::{
    io::Write,
    net::{TcpListener, TcpStream, UdpSocket},
    os::unix::{fs::PermissionsExt, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use procwatch_tests::{Monitor, TempDir, assert_valid_alert, eventually, has_rule, require_root};
use serde_json::Value;

/// Fast sweeps; tmp_exe itself fires on the exec event.
const FAST: &str = "sweep_interval: 1s\n";

/// A free loopback TCP port (free when this returns; rsyslogd binds it right after).
fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
    l.local_addr().expect("local addr").port()
}

/// A free loopback UDP port.
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    s.local_addr().expect("local addr").port()
}

/// One message as rsyslogd parsed it.
#[derive(Debug, Clone)]
struct Received {
    input: String,
    facility: String,
    severity: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    sd: String,
    /// MSG, as received (rsyslogd keeps the leading space of the local format).
    msg: String,
}

impl Received {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(self.msg.trim_start()).ok()
    }
}

/// A private rsyslogd: TCP, UDP and a unix socket in, one file out with the parsed fields.
struct Rsyslog {
    child: Child,
    tcp: u16,
    udp: u16,
    socket: PathBuf,
    out: PathBuf,
    _dir: TempDir,
}

impl Rsyslog {
    fn start() -> Self {
        let bin = Path::new("/usr/sbin/rsyslogd");
        assert!(
            bin.exists(),
            "rsyslogd missing: install the Debian package rsyslog (cargo xtask setup does)"
        );
        // Under /tmp, so the socket path stays well under the 108-byte limit.
        let dir = TempDir::new_in("/tmp", "rsyslog");
        let (tcp, udp) = (free_tcp_port(), free_udp_port());
        let socket = dir.0.join("log");
        let out = dir.0.join("received.log");
        // Default message size (8 KiB) on purpose: procwatch's messages must fit it. The local
        // socket keeps imuxsock's default parser, the one /dev/log gets on a stock system.
        let conf = format!(
            r#"global(workDirectory="{dir}")
module(load="imtcp")
module(load="imudp")
module(load="imuxsock" SysSock.Use="off")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imuxsock" Socket="{socket}")
template(name="Fields" type="string"
  string="%inputname%|%syslogfacility%|%syslogseverity%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="Fields")
"#,
            dir = dir.0.display(),
            socket = socket.display(),
            out = out.display(),
        );
        let conf_path = dir.0.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.0.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd starts");
        let rs = Self {
            child,
            tcp,
            udp,
            socket,
            out,
            _dir: dir,
        };
        rs.wait_ready();
        rs
    }

    /// Sends a probe on every input until each has come out the other end.
    fn wait_ready(&self) {
        let probe = b"<13>1 - - probe - ready - ready";
        let ready = eventually(Duration::from_secs(20), || {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.tcp)) {
                let mut frame = format!("{} ", probe.len()).into_bytes();
                frame.extend_from_slice(probe);
                let _ = s.write_all(&frame);
            }
            if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
                let _ = s.send_to(probe, ("127.0.0.1", self.udp));
            }
            if let Ok(s) = UnixDatagram::unbound() {
                let _ = s.send_to(b"<13>probe: ready", &self.socket);
            }
            std::thread::sleep(Duration::from_millis(100));
            let got = self.received();
            ["imtcp", "imudp", "imuxsock"]
                .iter()
                .all(|i| got.iter().any(|r| r.input == *i && r.app == "probe"))
        });
        assert!(
            ready,
            "rsyslogd did not pass probes on every input within 20 s; got: {:#?}",
            self.received()
        );
    }

    fn received(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.splitn(9, '|').collect();
                let [
                    input,
                    facility,
                    severity,
                    hostname,
                    app,
                    procid,
                    msgid,
                    sd,
                    msg,
                ] = f[..]
                else {
                    return None;
                };
                Some(Received {
                    input: input.into(),
                    facility: facility.into(),
                    severity: severity.into(),
                    hostname: hostname.into(),
                    app: app.into(),
                    procid: procid.into(),
                    msgid: msgid.into(),
                    sd: sd.into(),
                    msg: msg.into(),
                })
            })
            .collect()
    }

    /// Waits for procwatch's message about `pid` and `rule`.
    fn expect_alert(&self, pid: u32, rule: &str) -> Received {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let hit = self.received().into_iter().find(|r| {
                r.app == "procwatch"
                    && r.json()
                        .is_some_and(|j| j["pid"] == pid && has_rule(&j, rule))
            });
            if let Some(r) = hit {
                return r;
            }
            assert!(
                Instant::now() < end,
                "no syslog message for pid {pid} and {rule} within 15 s; rsyslogd got: {:#?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of /bin/true in a fresh /tmp directory: running it is a `tmp_exe` alert.
struct Payload {
    dir: TempDir,
}

impl Payload {
    fn new() -> Self {
        Self {
            dir: TempDir::new_in("/tmp", "sinks"),
        }
    }

    /// Copies /bin/true as `name`, runs it with `args` and returns its pid once it exited.
    fn run(&self, name: &str, args: &[&str]) -> u32 {
        let exe = self.dir.copy_exe(Path::new("/bin/true"), name);
        let mut child = Command::new(&exe)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let pid = child.id();
        let _ = child.wait();
        pid
    }
}

/// The syslog severity (code, keyword) procwatch should give `alert` with `min_score` 3.
fn severity_of(alert: &Value) -> (&'static str, &'static str) {
    let score = alert["total_score"].as_f64().expect("total_score");
    if score >= 9.0 {
        ("2", "crit")
    } else if score >= 6.0 {
        ("3", "err")
    } else {
        ("4", "warning")
    }
}

fn expected_severity(alert: &Value) -> &'static str {
    severity_of(alert).0
}

/// The `sinks` entry of the final summary whose name starts with `prefix`.
fn sink_stats<'a>(summary: &'a Value, prefix: &str) -> &'a Value {
    summary["sinks"]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| k.starts_with(prefix)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no sink {prefix}* in the summary: {summary:#}"))
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn syslog_over_tcp_reaches_rsyslog_and_big_alerts_still_parse() {
    require_root!();
    let rs = Rsyslog::start();
    let m = Monitor::start(
        &format!("{FAST}outputs:\n  syslog: tcp://127.0.0.1:{}\n", rs.tcp),
        &[],
    );
    let payload = Payload::new();
    let pid = payload.run("payload", &["x"]);
    let alert = m.expect_rule(pid, "tmp_exe");

    let got = rs.expect_alert(pid, "tmp_exe");
    assert_eq!(got.input, "imtcp");
    assert_eq!(got.facility, "10", "authpriv: {got:?}");
    assert_eq!(
        got.severity,
        expected_severity(&alert),
        "{got:?} for {alert:#}"
    );
    assert_eq!(got.app, "procwatch");
    assert_eq!(got.procid, m.pid().to_string());
    assert_eq!(got.msgid, "alert");
    assert_eq!(got.sd, "-");
    assert_eq!(got.hostname, alert["host"].as_str().expect("host"));
    let json = got.json().expect("MSG is JSON");
    assert_eq!(json["schema"], "procwatch.alert/v1");
    assert_eq!(json, alert, "the same alert as in the JSONL file");

    // A big alert: a running process with 30 KB of arguments whose executable is deleted
    // (`deleted_exe`, found by a /proc sweep, which reads the whole command line). Over
    // rsyslogd's default 8 KiB limit, so procwatch shrinks it, and rsyslogd must still
    // receive one complete, valid alert.
    let long: Vec<String> = (0..30)
        .map(|i| format!("{i:02}{}", "a".repeat(1000)))
        .collect();
    // Outside every temp dir, so the exec (with its argv cut by the sensor) raises nothing.
    let scratch = TempDir::new_in(&procwatch_tests::scratch_base(), "big-argv");
    let shell = scratch.copy_exe(Path::new("/bin/sh"), "big-argv");
    let mut child = Command::new(&shell)
        .args(["-c", "sleep 20; :", "big-argv"])
        .args(&long)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the shell");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&shell).expect("delete the running executable");
    let big_pid = child.id();
    let big = m.expect_rule(big_pid, "deleted_exe");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        big.to_string().len() > 8192,
        "precondition: too big as is: {big}"
    );
    let got = rs.expect_alert(big_pid, "deleted_exe");
    assert!(got.msg.len() < 8000, "{} bytes", got.msg.len());
    let json = got.json().expect("shrunk MSG is still JSON");
    assert_valid_alert(&json);
    assert_eq!(json["exe"], big["exe"]);
    let argv = json["cmdline"].as_array().expect("cmdline");
    assert!(
        argv.last()
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("...[+")),
        "cut lists say so: {argv:?}"
    );

    let (status, summary, _) = m.stop();
    assert!(status.success(), "{status:?}");
    let summary = summary.expect("summary line");
    let stats = sink_stats(&summary, "syslog:tcp://127.0.0.1:");
    assert!(
        stats["written"].as_u64().is_some_and(|n| n >= 2),
        "{summary:#}"
    );
    assert_eq!(stats["dropped"], 0, "{summary:#}");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn syslog_over_udp_from_the_command_line_reaches_rsyslog() {
    require_root!();
    let rs = Rsyslog::start();
    let url = format!("udp://127.0.0.1:{}", rs.udp);
    let m = Monitor::start(FAST, &["--syslog", &url]);
    let payload = Payload::new();
    let pid = payload.run("payload", &[]);
    let alert = m.expect_rule(pid, "tmp_exe");
    let got = rs.expect_alert(pid, "tmp_exe");
    assert_eq!(got.input, "imudp");
    assert_eq!(
        (got.facility.as_str(), got.app.as_str(), got.msgid.as_str()),
        ("10", "procwatch", "alert")
    );
    assert_eq!(got.severity, expected_severity(&alert));
    assert_eq!(got.procid, m.pid().to_string());
    assert_eq!(got.json().expect("MSG is JSON"), alert);
    let (status, summary, _) = m.stop();
    assert!(status.success(), "{status:?}");
    let stats = sink_stats(summary.as_ref().expect("summary"), "syslog:udp://");
    assert_eq!(stats["dropped"], 0, "{summary:#?}");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn syslog_to_a_local_socket_parses_with_the_stock_parser() {
    require_root!();
    let rs = Rsyslog::start();
    let m = Monitor::start(
        &format!("{FAST}outputs:\n  syslog: unix://{}\n", rs.socket.display()),
        &[],
    );
    let payload = Payload::new();
    let pid = payload.run("payload", &[]);
    let alert = m.expect_rule(pid, "tmp_exe");
    let got = rs.expect_alert(pid, "tmp_exe");
    assert_eq!(got.input, "imuxsock");
    assert_eq!(got.facility, "10");
    assert_eq!(got.severity, expected_severity(&alert));
    assert_eq!(got.app, "procwatch", "program name parsed: {got:?}");
    assert_eq!(got.procid, m.pid().to_string());
    assert_eq!(got.json().expect("MSG is JSON"), alert);
    let (status, _, _) = m.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn dead_syslog_server_blocks_nothing_and_drops_are_counted() {
    require_root!();
    // Nothing listens there: every connection attempt is refused.
    let port = free_tcp_port();
    let mut m = Monitor::start(
        &format!("{FAST}outputs:\n  syslog: tcp://127.0.0.1:{port}\n"),
        &[],
    );
    let payload = Payload::new();
    let mut pids = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let pid = payload.run(&format!("payload{i}"), &[]);
        m.expect_rule(pid, "tmp_exe");
        // Generous for a loaded 2-core CI machine; blocking on syslog would mean never.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "alert {i} took {:?} to reach the JSONL file",
            started.elapsed()
        );
        pids.push(pid);
    }
    // Possibly logged already (alerts on processes found at start), else soon.
    if !m.log.iter().any(|l| l.contains("syslog: cannot connect")) {
        m.wait_log(Duration::from_secs(10), "syslog: cannot connect");
    }
    let stopping = Instant::now();
    let (status, summary, _) = m.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "shutdown waited {:?} on a dead server",
        stopping.elapsed()
    );
    let summary = summary.expect("summary line");
    let stats = sink_stats(&summary, "syslog:tcp://127.0.0.1:");
    assert_eq!(stats["written"], 0, "{summary:#}");
    assert!(
        stats["dropped"].as_u64().is_some_and(|n| n >= 3),
        "every alert counted as dropped: {summary:#}"
    );
    let jsonl = sink_stats(&summary, "jsonl:");
    assert!(
        jsonl["written"].as_u64().is_some_and(|n| n >= 3),
        "{summary:#}"
    );
    assert_eq!(jsonl["failed"], 0, "{summary:#}");
}

/// Entries (lines starting with `[`) in the log file.
fn entries(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            out.push(String::new());
        }
        if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

fn entry_for(path: &Path, pid: u32) -> Option<String> {
    let needle = format!("\n  PID: {pid}\n");
    entries(path).into_iter().find(|e| e.contains(&needle))
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn log_file_has_one_readable_entry_per_alert_even_for_hostile_names() {
    require_root!();
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "logfile");
    let log = dir.0.join("alerts.log");
    let m = Monitor::start(FAST, &["--log-file", log.to_str().expect("utf-8 path")]);
    let payload = Payload::new();
    let hostile = "evil\n[2020-01-01 00:00:00] ANOMALY DETECTED\n  PID: 1\x1b[31m";
    let pid = payload.run(hostile, &["it's", "a\nb"]);
    let alert = m.expect_rule(pid, "tmp_exe");
    assert!(
        eventually(Duration::from_secs(10), || entry_for(&log, pid).is_some()),
        "no log entry for pid {pid}: {:?}",
        std::fs::read_to_string(&log)
    );
    let entry = entry_for(&log, pid).expect("entry");
    assert!(entry.contains("  Type: TMP_EXE"), "{entry}");
    assert!(
        entry.contains(r"ANOMALY DETECTED\x0a  PID: 1\x1b[31m"),
        "hostile bytes escaped: {entry}"
    );
    assert!(entry.contains(r"'a\x0ab'"), "{entry}");
    let score = alert["total_score"].as_f64().expect("score");
    let severity = format!(
        "  Severity: {} (score {score:.1}, min_score 3.0)\n",
        severity_of(&alert).1
    );
    assert!(entry.contains(&severity), "{severity:?} in {entry}");
    let (status, _, _) = m.stop();
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(!text.contains('\x1b'), "no raw escape codes");
    assert!(
        !text.contains("\n[2020-01-01"),
        "the forged entry must not exist: {text}"
    );
    let mode = std::fs::metadata(&log).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "alert log is private");
}

/// True while `pid` runs (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Needs the SIGHUP wiring in `commands/monitor.rs` (SIGHUP → `Outputs::reopen()`): until
/// then SIGHUP's default action kills procwatch and this test fails saying so.
#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn jsonl_and_log_file_are_reopened_on_sighup() {
    require_root!();
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "rotate");
    let log = dir.0.join("alerts.log");
    let m = Monitor::start(FAST, &["--log-file", log.to_str().expect("utf-8 path")]);
    let payload = Payload::new();
    let before = payload.run("before", &[]);
    m.expect_rule(before, "tmp_exe");
    assert!(eventually(Duration::from_secs(10), || entry_for(
        &log, before
    )
    .is_some()));

    // What logrotate does: rename, then SIGHUP.
    let jsonl_old = m.jsonl.with_extension("jsonl.1");
    let log_old = log.with_extension("log.1");
    std::fs::rename(&m.jsonl, &jsonl_old).expect("rotate the JSONL file");
    std::fs::rename(&log, &log_old).expect("rotate the log file");
    // SAFETY: signalling the procwatch child of this test.
    unsafe { libc::kill(m.pid() as i32, libc::SIGHUP) };
    let reopened = eventually(Duration::from_secs(10), || {
        !alive(m.pid()) || (m.jsonl.exists() && log.exists())
    });
    assert!(
        alive(m.pid()),
        "procwatch died on SIGHUP: monitor.rs must handle SIGHUP (reload + Outputs::reopen)"
    );
    assert!(reopened, "SIGHUP did not recreate the output files");

    let after = payload.run("after", &[]);
    m.expect_rule(after, "tmp_exe");
    assert!(
        eventually(Duration::from_secs(10), || entry_for(&log, after).is_some()),
        "the new log file gets new alerts"
    );
    let old_jsonl = std::fs::read_to_string(&jsonl_old).expect("rotated JSONL");
    assert!(old_jsonl.contains(&format!("\"pid\":{before},")));
    assert!(!old_jsonl.contains(&format!("\"pid\":{after},")));
    assert!(entry_for(&log_old, before).is_some());
    assert!(entry_for(&log_old, after).is_none());
    let (status, _, _) = m.stop();
    assert!(status.success(), "{status:?}");
}

/// A small tmpfs the test mounts itself, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_full_disk_loses_no_alert() {
    procwatch_tests::require_root!();
    let base = procwatch_tests::scratch_base();
    let mnt = std::path::PathBuf::from(&base).join(format!("fullfs-{}", std::process::id()));
    std::fs::create_dir_all(&mnt).expect("mountpoint");
    let fs = SmallFs(mnt.clone());
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&fs.0)
        .status()
        .expect("mount");
    assert!(ok.success(), "mounting a tmpfs for the test");
    // Fill it to the last byte.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
    }
    let jsonl = mnt.join("alerts.jsonl");
    let mut m = procwatch_tests::Monitor::start(
        "sweep_interval: 1s\n",
        &["--jsonl", jsonl.to_str().expect("utf-8")],
    );
    let tmp = procwatch_tests::TempDir::new_in("/tmp", "fullfs");
    let exe = tmp.copy_exe(std::path::Path::new("/bin/true"), "payload");
    let mut pids = Vec::new();
    let mut run = || {
        let mut c = std::process::Command::new(&exe).spawn().expect("spawn");
        pids.push(c.id());
        let _ = c.wait();
    };
    for _ in 0..5 {
        run();
    }
    // The sink reports the failed write (it keeps the alert and retries): only then is "the
    // file is still empty" evidence of anything.
    m.wait_log(
        std::time::Duration::from_secs(15),
        "kept and retried in order",
    );
    assert_eq!(
        std::fs::read_to_string(&jsonl).unwrap_or_default(),
        "",
        "nothing fits yet"
    );
    std::fs::remove_file(&filler).expect("free the space");
    run();
    let all_there = procwatch_tests::eventually(std::time::Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
        pids.iter().all(|p| text.contains(&format!("\"pid\":{p},")))
    });
    let (status, summary, _) = m.stop();
    let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
    assert!(all_there, "alerts written once there was room: {text}");
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line ({e}): {line}"));
        procwatch_tests::assert_valid_alert(&v);
    }
    let order: Vec<u64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["pid"].as_u64())
        .collect();
    let expected: Vec<u64> = pids.iter().map(|&p| u64::from(p)).collect();
    assert_eq!(
        order
            .iter()
            .filter(|p| expected.contains(p))
            .copied()
            .collect::<Vec<_>>(),
        expected,
        "in order"
    );
    assert!(status.success());
    let sink = &summary.expect("summary")["sinks"][format!("jsonl:{}", jsonl.display())];
    assert_eq!(sink["dropped"], 0, "{sink}");
    assert!(
        sink["failed"].as_u64().is_some_and(|n| n >= 1),
        "the failures were counted: {sink}"
    );
}
