//! Kills that stick, as root: with `--kill-on-alert` the flagged process's descendants die
//! too, also a child that left its session and outlived its parent; and in the kernel, a
//! condemned process's fork never runs. This test process is a child subreaper, so every
//! orphan stays in its tree (the kill scope, `--enforce-scope-pid`, is this process) and is
//! reaped here.
use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use procwatch::sensor::ebpf::KillPolicy;
use procwatch_tests::{Actor, LiveSensor, Monitor, TempDir, become_subreaper, reap, require_root};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    after
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .expect("starttime")
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_dropper_that_daemonises_and_exits_leaves_nothing_running() {
    require_root!();
    become_subreaper();
    let me = std::process::id().to_string();
    let m = Monitor::start(
        "sweep_interval: 1s\n",
        &["--kill-on-alert", "--enforce-scope-pid", &me],
    );
    let dir = TempDir::new_in("/tmp", "dropper");
    let dropper = dir.copy_exe(&actor(), "dropper");
    let mut a = Actor::spawn_cmd({
        let mut c = Command::new(&dropper);
        c.args(["spawn-daemon", "60"]).stderr(Stdio::null());
        c
    });
    let dropper_pid = a.pid();
    let line = a.read_line().unwrap_or_default();
    let daemon: u32 = line
        .strip_prefix("daemon ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no daemon line: {line:?}"));
    let (status, _) = a.finish();
    assert!(status.success(), "the dropper exits by itself: {status:?}");
    // The daemon is now an orphan in its own session, adopted by this process.
    let t0 = Instant::now();
    let ended = reap(daemon, Duration::from_secs(20));
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the daemonised child of a killed dropper still runs ({ended:?})"
    );
    eprintln!("daemon killed {:?} after its parent exited", t0.elapsed());
    let alert = m.expect_rule(dropper_pid, "tmp_exe");
    // The verdict condemns the dropper and what it forks: a fork after the verdict dies in the
    // kernel, one the engine learns of later dies when its fork event arrives. When the engine
    // already knew the daemon at the verdict the alert names it; on a loaded machine the
    // dropper can be gone before its verdict and the daemon dies the later way (checked above).
    let reason = alert["action_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("descendants killed: 1 of 1")
            || (alert["action"] == "kill_failed" && reason.contains("is gone")),
        "{alert:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn a_condemned_process_cannot_fork_a_child_that_runs() {
    require_root!();
    become_subreaper();
    let script = "echo ready; read _; exec \"$0\" \"$@\"";
    let mut a = Actor::spawn(
        Path::new("/bin/sh"),
        &[
            "-c",
            script,
            actor().to_str().expect("utf-8"),
            "fork-report",
            "30",
        ],
    );
    assert_eq!(a.read_line().as_deref(), Some("ready"));
    let pid = a.pid();
    let mut sensor = LiveSensor::start(KillPolicy::default());
    sensor
        .sensor
        .condemn(pid, start_ticks(pid))
        .expect("condemn in the kernel");
    a.go();
    let (status, lines) = tokio::task::spawn_blocking(move || a.finish())
        .await
        .expect("actor");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{lines:?}");
    assert!(lines.iter().any(|l| l == "before"), "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l == "child ran" || l.starts_with("after fork")),
        "the child or the parent ran after the fork: {lines:?}"
    );
    // The kernel reported the fork; the child it made died without running.
    let fork = sensor
        .expect(
            "fork",
            pid,
            |e| matches!(&e.body, procwatch::sensor::EventBody::Fork(f) if f.parent_tgid == pid),
        )
        .await;
    let procwatch::sensor::EventBody::Fork(f) = &fork.body else {
        unreachable!()
    };
    let child = f.child_tgid;
    let ended = tokio::task::spawn_blocking(move || reap(child, Duration::from_secs(10)))
        .await
        .expect("reap");
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "child {child}"
    );

    // Control: the same actor, not condemned, forks a child that runs.
    let mut b = Actor::spawn(
        Path::new("/bin/sh"),
        &[
            "-c",
            script,
            actor().to_str().expect("utf-8"),
            "fork-report",
            "1",
        ],
    );
    assert_eq!(b.read_line().as_deref(), Some("ready"));
    b.go();
    let (status, lines) = tokio::task::spawn_blocking(move || b.finish())
        .await
        .expect("actor");
    assert!(status.success(), "{status:?} {lines:?}");
    assert!(lines.iter().any(|l| l == "child ran"), "{lines:?}");
}
