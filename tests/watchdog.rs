//! The systemd watchdog is pinged from the engine's loop at the rate systemd asks for, stops
//! when the loop stops, and is left alone when the watchdog belongs to another process.
use std::{
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use procwatch_tests::{TempDir, procwatch_bin, require_root, scratch_base};

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn the_watchdog_is_pinged_at_half_its_period() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "watchdog");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // WATCHDOG_USEC 1 s: a ping every 500 ms. No WATCHDOG_PID: any process may ping.
    let mut child = Command::new(procwatch_bin())
        .args(["monitor", "--quiet", "--duration", "30"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("HOME", &dir.0)
        // A history of its own: the default one may be in use by another test.
        .env("PROCWATCH_HISTORY", dir.0.join("alerts.db"))
        .stderr(Stdio::null())
        .spawn()
        .expect("procwatch");
    let mut buf = [0u8; 256];
    let mut pings = Vec::new();
    while pings.len() < 7 {
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.lines().any(|l| l == "WATCHDOG=1") {
            pings.push(Instant::now());
        }
    }
    // Freeze procwatch: a stuck loop must stop the pings.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let silent = sock.recv(&mut buf).is_err();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("exit").success());
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean > Duration::from_millis(350) && mean < Duration::from_millis(700),
        "pings every {mean:?} on average ({gaps:?}); WATCHDOG_USEC asks for 500 ms"
    );
    assert!(silent, "a stopped procwatch still pinged the watchdog");

    // Another process's watchdog (WATCHDOG_PID not ours): no pings at all.
    let sock_path = dir.0.join("notify2.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let mut child = Command::new(procwatch_bin())
        .args(["monitor", "--quiet", "--duration", "3"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .env("HOME", &dir.0)
        // A history of its own: the default one may be in use by another test.
        .env("PROCWATCH_HISTORY", dir.0.join("alerts.db"))
        .stderr(Stdio::null())
        .spawn()
        .expect("procwatch");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut seen = Vec::new();
    loop {
        let n = sock.recv(&mut buf).expect("notifications until STOPPING");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let stopping = msg.contains("STOPPING=1");
        seen.push(msg);
        if stopping {
            break;
        }
    }
    assert!(child.wait().expect("exit").success());
    assert!(
        seen.iter().any(|m| m.contains("READY=1")),
        "the positive control: {seen:?}"
    );
    assert!(
        !seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "pinged another process's watchdog: {seen:?}"
    );
}
