//! Every way in, not just the common syscall, end to end as root: a real process takes the
//! less common route (memory written into another process without ptrace, traffic without
//! connect, io_uring, 32-bit `int 0x80` syscalls from a 64-bit program, W+X the kernel grants
//! without being asked for both at once) and `procwatch monitor` must alert with the right
//! rule, or the in-kernel policy (scoped to the actor) must kill it before the call returns.
//! Benign counterparts are checked with a positive control after them, never a bare sleep.
use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::ExitStatus,
};

use procwatch::sensor::{EventBody, ebpf::KillPolicy, event::KernelAction};
use procwatch_tests::{Actor, LiveSensor, Monitor, has_rule, require_root};

/// Fast state checks so sweep-based rules fire within a second or two.
const FAST: &str = "sweep_interval: 1s\ncpu_window: 1s\n";

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// Runs the actor to its end: its pid, exit status and what it printed.
fn run(args: &[&str]) -> (u32, ExitStatus, Vec<String>) {
    let actor = Actor::spawn(&actor(), args);
    let pid = actor.pid();
    let (status, lines) = actor.finish();
    (pid, status, lines)
}

/// The `target N` pid an actor printed.
fn target_of(lines: &[String]) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("target ")?.parse().ok())
        .unwrap_or_else(|| panic!("no target line: {lines:?}"))
}

/// True when the actor printed `after` and the call returned `ok` (a number >= 0 or "true").
fn returned(lines: &[String]) -> bool {
    lines.iter().any(|l| l.starts_with("after"))
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn memory_writes_into_another_process_are_ptrace_findings() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    for args in [
        &["pvm-write"][..],
        &["proc-mem-write", "abs"],
        &["proc-mem-write", "rel"],
        &["proc-mem-write", "task"],
    ] {
        let (pid, _, lines) = run(args);
        assert!(
            lines.iter().any(|l| l == "after 8"),
            "{args:?}: the write must really happen: {lines:?}"
        );
        let target = target_of(&lines);
        let a = m.expect_rule(pid, "ptrace");
        assert_eq!(a["trigger"]["kind"], "inject", "{args:?}: {a:#}");
        assert_eq!(a["trigger"]["target_pid"], target, "{args:?}: {a:#}");
        let reason = a["reasons"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["rule"] == "ptrace"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(reason["attack"], "T1055", "{a:#}");
        assert!(
            reason["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&target.to_string())),
            "the target is named: {a:#}"
        );
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn writing_ones_own_memory_through_proc_self_mem_is_not_injection() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let (own, _, lines) = run(&["proc-self-mem"]);
    assert!(lines.iter().any(|l| l == "after 8"), "{lines:?}");
    // Positive control, after it: an injection by another actor must alert.
    let (other, _, _) = run(&["pvm-write"]);
    m.expect_rule(other, "ptrace");
    assert!(
        m.alerts().iter().all(|a| a["pid"] != own),
        "{:#?}",
        m.alerts()
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn udp_and_fast_open_without_connect_are_judged_like_a_connect() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = sink.local_addr().expect("addr").port().to_string();
    for how in ["sendto", "sendmsg", "sendmmsg"] {
        let (pid, _, lines) = run(&["udp-send", how, "127.0.0.1", &port]);
        assert!(returned(&lines), "{lines:?}");
        let a = m.expect_rule(pid, "suspicious_port");
        assert_eq!(a["trigger"]["kind"], "connect", "{how}: {a:#}");
        assert_eq!(a["trigger"]["via"], how, "{a:#}");
        assert_eq!(a["trigger"]["port"].to_string(), port, "{a:#}");
        assert_eq!(a["trigger"]["socket"], "dgram", "read in the kernel: {a:#}");
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let tcp_port = listener.local_addr().expect("addr").port().to_string();
    let (pid, _, _) = run(&["tcp-fastopen", "127.0.0.1", &tcp_port]);
    let a = m.expect_rule(pid, "suspicious_port");
    assert_eq!(a["trigger"]["via"], "sendto", "{a:#}");
    assert_eq!(a["trigger"]["fastopen"], true, "{a:#}");
    assert_eq!(a["trigger"]["socket"], "stream", "{a:#}");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn udp_to_a_listed_port_stays_quiet() {
    require_root!();
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = sink.local_addr().expect("addr").port().to_string();
    let m = Monitor::start(&format!("{FAST}ports: \"53,80,443,{port}\"\n"), &[]);
    let (quiet, _, lines) = run(&["udp-send", "sendto", "127.0.0.1", &port]);
    assert!(returned(&lines), "{lines:?}");
    // Positive control: the same send to an unlisted port, after it, alerts.
    let other = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let other_port = other.local_addr().expect("addr").port().to_string();
    let (loud, _, _) = run(&["udp-send", "sendto", "127.0.0.1", &other_port]);
    m.expect_rule(loud, "suspicious_port");
    assert!(
        m.alerts().iter().all(|a| a["pid"] != quiet),
        "{:#?}",
        m.alerts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn io_uring_connect_is_seen_and_reported() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let port = listener.local_addr().expect("addr").port().to_string();
    let (pid, _, lines) =
        tokio::task::spawn_blocking(move || run(&["io-uring-connect", "127.0.0.1", &port]))
            .await
            .expect("actor");
    assert!(returned(&lines), "{lines:?}");
    let e = sensor
        .expect("io_uring", pid, |e| {
            e.tgid == pid && matches!(&e.body, EventBody::IoUring(u) if u.op == "CONNECT")
        })
        .await;
    assert!(!e.compat);
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn int80_syscalls_from_a_64_bit_process_are_seen_and_scored() {
    require_root!();
    let mut m = Monitor::start(FAST, &[]);
    // This machine's kernel runs 32-bit syscalls (the actor's below prove it): said at start.
    let said = "ia32 emulation is enabled; watched by raw_tp:sys_enter";
    if !m.log.iter().any(|l| l.contains(said)) {
        m.wait_log(std::time::Duration::from_secs(5), said);
    }
    for (what, rule, kind) in [
        ("mprotect-wx", "wx_mem", "wx_mem"),
        ("mmap2-wx", "wx_mem", "wx_mem"),
        ("ptrace-attach", "ptrace", "ptrace"),
        ("pvm-write", "ptrace", "inject"),
    ] {
        let (pid, _, lines) = run(&["ia32", what]);
        assert!(returned(&lines), "{what}: {lines:?}");
        let a = m.expect_rule(pid, rule);
        assert_eq!(a["trigger"]["kind"], kind, "{what}: {a:#}");
        assert_eq!(a["trigger"]["compat"], true, "{what}: {a:#}");
    }
    // /proc/PID/mem opened for writing by a 32-bit open or openat: the target is named.
    for how in ["open", "openat"] {
        let (pid, _, lines) = run(&["ia32", "proc-mem-write", how]);
        assert!(lines.iter().any(|l| l == "after 8"), "{how}: {lines:?}");
        let target = target_of(&lines);
        let a = m.expect_rule(pid, "ptrace");
        assert_eq!(a["trigger"]["kind"], "inject", "{how}: {a:#}");
        assert_eq!(a["trigger"]["compat"], true, "{how}: {a:#}");
        assert_eq!(a["trigger"]["target_pid"], target, "{how}: {a:#}");
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let port = listener.local_addr().expect("addr").port().to_string();
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let udp_port = sink.local_addr().expect("addr").port().to_string();
    for (what, p, via) in [
        ("connect", &port, "connect"),
        ("socketcall-connect", &port, "connect"),
        ("sendto", &udp_port, "sendto"),
    ] {
        let (pid, _, lines) = run(&["ia32", what, "127.0.0.1", p]);
        assert!(returned(&lines), "{what}: {lines:?}");
        let a = m.expect_rule(pid, "suspicious_port");
        assert_eq!(a["trigger"]["compat"], true, "{what}: {a:#}");
        assert_eq!(a["trigger"]["via"], via, "{what}: {a:#}");
        assert_eq!(a["trigger"]["port"].to_string(), *p, "{what}: {a:#}");
    }
}

/// Starts `sh` waiting on stdin, then exec'ing the actor with `args`, so the policy can be
/// scoped to its pid before it does anything.
fn spawn_waiting(args: &[&str]) -> Actor {
    let script = "echo ready; read _; exec \"$0\" \"$@\"";
    let exe = actor();
    let mut full = vec!["-c", script, exe.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let mut a = Actor::spawn(Path::new("/bin/sh"), &full);
    assert_eq!(a.read_line().as_deref(), Some("ready"));
    a
}

fn killed_by_sigkill(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn int80_and_injection_are_killed_in_the_kernel_before_the_call_returns() {
    require_root!();
    let cases: [(&[&str], bool); 6] = [
        (&["ia32", "mprotect-wx"], false),
        (&["ia32", "mmap2-wx"], false),
        (&["ia32", "ptrace-attach"], true),
        (&["ia32", "pvm-write"], true),
        (&["pvm-write"], true),
        (&["proc-mem-write", "rel"], true),
    ];
    for (args, ptrace) in cases {
        let mut a = spawn_waiting(args);
        let pid = a.pid();
        // Scoped to this actor's tree: nothing else on the host can be hit.
        let policy = KillPolicy {
            ptrace,
            wx_mem: !ptrace,
            scope_pid: Some(pid),
            ..KillPolicy::default()
        };
        let mut sensor = LiveSensor::start(policy);
        a.go();
        let (status, lines) = tokio::task::spawn_blocking(move || a.finish())
            .await
            .expect("actor");
        assert!(lines.iter().any(|l| l == "before"), "{args:?}: {lines:?}");
        assert!(
            !returned(&lines),
            "{args:?} returned to user space: {lines:?}"
        );
        assert!(killed_by_sigkill(&status), "{args:?}: {status:?}");
        let e = sensor
            .expect("killed", pid, |e| {
                e.tgid == pid && e.kernel_action == Some(KernelAction::Killed)
            })
            .await;
        assert_eq!(e.compat, args[0] == "ia32", "{args:?}: {e:?}");
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn wx_without_asking_for_both_at_once() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    for (args, how) in [
        (&["memfd-alias", "wx"][..], "shared_alias"),
        (&["memfd-alias", "xw"], "shared_alias"),
        (&["personality-rw"], "read_implies_exec"),
    ] {
        let (pid, _, lines) = run(args);
        assert!(returned(&lines), "{args:?}: {lines:?}");
        let a = m.expect_rule(pid, "wx_mem");
        assert_eq!(a["trigger"]["syscall"], how, "{args:?}: {a:#}");
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_shared_mapping_that_is_never_executable_stays_quiet() {
    require_root!();
    let m = Monitor::start(FAST, &[]);
    // Two writable shared mappings of one memfd (what shared-memory IPC does): no X anywhere.
    let (quiet, _, lines) = run(&["memfd-alias", "ww"]);
    assert!(returned(&lines), "{lines:?}");
    let (loud, _, _) = run(&["memfd-alias", "wx"]);
    m.expect_rule(loud, "wx_mem");
    assert!(
        m.alerts()
            .iter()
            .all(|a| a["pid"] != quiet || !has_rule(a, "wx_mem")),
        "{:#?}",
        m.alerts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn a_failed_clone_makes_no_child_and_clone_parent_cannot_hide_one() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    let (pid, _, lines) = tokio::task::spawn_blocking(|| run(&["clone-tricks"]))
        .await
        .expect("actor");
    assert!(
        lines.iter().any(|l| l.starts_with("failed -")),
        "the crafted clone3 must fail: {lines:?}"
    );
    let child: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("child ")?.parse().ok())
        .unwrap_or_else(|| panic!("no child line: {lines:?}"));
    // CLONE_PARENT made the child ours (the test's), not the actor's: the kernel's link.
    let me = std::process::id();
    let e = sensor
        .expect(
            "fork",
            pid,
            |e| matches!(&e.body, EventBody::Fork(f) if f.child_tgid == child),
        )
        .await;
    let EventBody::Fork(f) = &e.body else {
        unreachable!()
    };
    assert_eq!(f.parent_tgid, me, "{e:?}");
    assert_eq!(e.tgid, pid, "made by the actor: {e:?}");
    // The fork above is the positive control: the actor's events before it are all in, and
    // the failed clone made none.
    let forks: Vec<_> = sensor
        .seen
        .iter()
        .filter(|e| e.tgid == pid && matches!(e.body, EventBody::Fork(_)))
        .collect();
    assert_eq!(forks.len(), 1, "{forks:#?}");
    // SAFETY: reaping the child CLONE_PARENT made ours.
    unsafe { libc::waitpid(child as i32, std::ptr::null_mut(), 0) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn an_int80_execve_carries_its_argv() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    // argv[0] is the path: execve(path, [path, "ia32-argv", "second"]) of /bin/true.
    let (pid, status, lines) = tokio::task::spawn_blocking(|| {
        run(&["ia32", "execve", "/bin/true", "ia32-argv", "second"])
    })
    .await
    .expect("actor");
    assert!(status.success(), "{status:?} {lines:?}");
    assert!(!returned(&lines), "the exec replaced the actor: {lines:?}");
    let e = sensor
        .expect("exec", pid, |e| {
            e.tgid == pid
                && matches!(&e.body, EventBody::Exec(x) if x.filename == Path::new("/bin/true"))
        })
        .await;
    let EventBody::Exec(x) = &e.body else {
        unreachable!()
    };
    assert!(!x.args_missing, "{x:?}");
    assert_eq!(x.argv, ["/bin/true", "ia32-argv", "second"], "{x:?}");
}

/// One-letter state of `pid` (`T` stopped), or None when gone.
fn state(pid: u32) -> Option<u8> {
    procwatch::procfs::stat::read_stat(pid)
        .ok()
        .map(|s| s.state)
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_killed_int80_tracer_leaves_its_target_running() {
    require_root!();
    // The target is the test's own `sleep`, outside the kill scope (only the tracer's tree).
    let mut victim = std::process::Command::new("/bin/sleep")
        .arg("60")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("sleep");
    let target = victim.id();
    let mut tracer = spawn_waiting(&["ia32", "ptrace-attach-pid", &target.to_string()]);
    let tracer_pid = tracer.pid();
    let m = Monitor::start(
        FAST,
        &[
            "--kill-on-alert",
            "--enforce-scope-pid",
            &tracer_pid.to_string(),
        ],
    );
    tracer.go();
    let (status, lines) = tracer.finish();
    assert!(killed_by_sigkill(&status), "{status:?} {lines:?}");
    assert!(!returned(&lines), "the attach returned: {lines:?}");
    let alert = m.expect_rule(tracer_pid, "ptrace");
    assert_eq!(alert["action"], "killed", "{alert:#}");
    assert_eq!(alert["trigger"]["compat"], true, "{alert:#}");
    assert_eq!(alert["trigger"]["result"]["ret"], 0, "{alert:#}");
    assert_eq!(
        alert["trigger"]["result"]["tracee_tgid"], target,
        "{alert:#}"
    );
    // The attach stopped it; procwatch resumed it (and it stays running).
    assert!(
        procwatch_tests::eventually(std::time::Duration::from_secs(10), || state(target)
            .is_some_and(|s| s != b'T' && s != b't')),
        "the attached process was left stopped: {:?}",
        state(target).map(char::from)
    );
    m.sync_events();
    let s = state(target);
    assert!(
        s.is_some_and(|s| s != b'T' && s != b't'),
        "stopped again: {s:?}"
    );
    let _ = victim.kill();
    let _ = victim.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn an_int80_open_of_a_watched_file_is_reported() {
    require_root!();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    for how in ["open", "openat"] {
        let (pid, _, lines) =
            tokio::task::spawn_blocking(move || run(&["ia32", how, "/etc/hostname"]))
                .await
                .expect("actor");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("after ") && l != "after -2"),
            "{how}: {lines:?}"
        );
        let e = sensor
            .expect("file_open", pid, |e| {
                e.tgid == pid
                    && matches!(&e.body, EventBody::FileOpen(f)
                        if f.path == std::ffi::OsStr::new("/etc/hostname"))
            })
            .await;
        let EventBody::FileOpen(f) = &e.body else {
            unreachable!()
        };
        assert!(e.compat, "{how}: {e:?}");
        assert_eq!(f.syscall, how, "{e:?}");
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn sensor_ia32_off_leaves_the_32_bit_probes_out_and_says_so() {
    require_root!();
    let mut m = Monitor::start(&format!("{FAST}sensor:\n  ia32: off\n"), &[]);
    let said = "sensor.ia32 is off";
    if !m.log.iter().any(|l| l.contains(said)) {
        m.wait_log(std::time::Duration::from_secs(5), said);
    }
    let (unseen, _, lines) = run(&["ia32", "mprotect-wx"]);
    assert!(returned(&lines), "{lines:?}");
    // Positive control, after it: the same W+X by a 64-bit call alerts.
    let (seen, _, lines) = run(&["mprotect-wx"]);
    assert!(returned(&lines), "{lines:?}");
    m.expect_rule(seen, "wx_mem");
    assert!(
        m.alerts().iter().all(|a| a["pid"] != unseen),
        "{:#?}",
        m.alerts()
    );
}
