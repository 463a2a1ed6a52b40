//! The in-kernel kill policy: a W+X or ptrace-attaching process is killed before the syscall
//! returns (the line after it never prints); an allowlisted executable, and what it forks,
//! survive. The policy is scoped to the actor's own pid so no other process on the host is at risk.
use std::path::{Path, PathBuf};

use procwatch::sensor::{EventBody, ebpf::KillPolicy, event::KernelAction};
use procwatch_tests::{Actor, LiveSensor, TempDir, require_root};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(std::path::Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// Like `spawn_waiting`, but the shell (and so the actor) runs as `uid`.
fn spawn_waiting_as(uid: u32, program: &Path, args: &[&str]) -> Actor {
    use std::os::unix::process::CommandExt;
    let script = "echo ready; read _; exec \"$0\" \"$@\"";
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", script, program.to_str().expect("utf-8 path")])
        .args(args)
        .uid(uid)
        .gid(uid);
    let mut actor = Actor::spawn_cmd(cmd);
    assert_eq!(actor.read_line().as_deref(), Some("ready"));
    actor
}

/// Starts `sh` waiting on stdin, then exec'ing `program args` — so the exec happens after the
/// sensor (and its allowlist) is loaded, and the scope pid is known before anything runs.
fn spawn_waiting(program: &Path, args: &[&str]) -> Actor {
    let script = "echo ready; read _; exec \"$0\" \"$@\"";
    let mut full = vec!["-c", script, program.to_str().expect("utf-8 path")];
    full.extend_from_slice(args);
    let mut actor = Actor::spawn(Path::new("/bin/sh"), &full);
    assert_eq!(actor.read_line().as_deref(), Some("ready"));
    actor
}

async fn run_under_policy(
    program: &Path,
    args: &[&str],
    policy: impl FnOnce(u32) -> KillPolicy,
) -> (LiveSensor, u32, std::process::ExitStatus, Vec<String>) {
    let mut actor = spawn_waiting(program, args);
    let pid = actor.pid();
    let sensor = LiveSensor::start(policy(pid));
    actor.go();
    let (status, lines) = tokio::task::spawn_blocking(move || actor.finish())
        .await
        .expect("actor");
    (sensor, pid, status, lines)
}

fn wx_policy(scope: u32) -> KillPolicy {
    KillPolicy {
        wx_mem: true,
        scope_pid: Some(scope),
        ..KillPolicy::default()
    }
}

fn ptrace_policy(scope: u32) -> KillPolicy {
    KillPolicy {
        ptrace: true,
        scope_pid: Some(scope),
        ..KillPolicy::default()
    }
}

fn killed_by_sigkill(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wx_mprotect_is_killed_before_the_next_line() {
    require_root!();
    for action in ["mprotect-wx", "mmap-wx", "pkey-mprotect-wx"] {
        let (mut sensor, pid, status, lines) =
            run_under_policy(&actor(), &[action], wx_policy).await;
        assert!(lines.iter().any(|l| l == "before"), "{action}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("after")),
            "{action} returned to user space: {lines:?}"
        );
        assert!(killed_by_sigkill(&status), "{action}: {status:?}");
        let e = sensor
            .expect(action, pid, |e| {
                e.tgid == pid && matches!(e.body, EventBody::WxMem(_))
            })
            .await;
        assert_eq!(e.kernel_action, Some(KernelAction::Killed));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptrace_attach_is_killed_before_the_next_line() {
    require_root!();
    for action in ["ptrace-attach", "ptrace-seize"] {
        let (mut sensor, pid, status, lines) =
            run_under_policy(&actor(), &[action], ptrace_policy).await;
        assert!(lines.iter().any(|l| l == "before"), "{action}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l == "after"),
            "{action} returned to user space: {lines:?}"
        );
        assert!(killed_by_sigkill(&status), "{action}: {status:?}");
        let e = sensor
            .expect(action, pid, |e| {
                e.tgid == pid && matches!(e.body, EventBody::Ptrace(_))
            })
            .await;
        assert_eq!(e.kernel_action, Some(KernelAction::Killed));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descendants_of_the_scope_are_killed_too() {
    require_root!();
    let (_sensor, _, status, lines) =
        run_under_policy(&actor(), &["--fork", "mprotect-wx"], wx_policy).await;
    assert!(status.success(), "the parent did nothing wrong: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("child ") && l.ends_with("killed 9")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlisted_executable_and_its_children_survive() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "allow");
    let jit = dir.copy_exe(&actor(), "pw-jit");
    let allow = |scope: u32| KillPolicy {
        wx_mem: true,
        ptrace: true,
        allow_exe_paths: vec![jit.clone()],
        scope_pid: Some(scope),
        ..KillPolicy::default()
    };
    let (mut sensor, pid, status, lines) = run_under_policy(&jit, &["mprotect-wx"], allow).await;
    assert!(
        status.success(),
        "allowlisted W+X was killed: {status:?} {lines:?}"
    );
    assert!(lines.iter().any(|l| l == "after 0"), "{lines:?}");
    let e = sensor
        .expect("wx_mem", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::WxMem(_))
        })
        .await;
    assert_eq!(e.kernel_action, Some(KernelAction::Exempt));

    let (_s, _, status, lines) = run_under_policy(&jit, &["ptrace-attach"], allow).await;
    assert!(
        status.success() && lines.iter().any(|l| l == "after"),
        "{status:?} {lines:?}"
    );

    let (_s, _, status, lines) = run_under_policy(&jit, &["--fork", "mprotect-wx"], allow).await;
    assert!(status.success(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("child ") && l.ends_with("exited 0")),
        "exemption not inherited: {lines:?}"
    );

    // The same bytes under a path that is not allowlisted are killed.
    let other = dir.copy_exe(&actor(), "pw-not-allowed");
    let (_s, _, status, lines) = run_under_policy(&other, &["mprotect-wx"], allow).await;
    assert!(killed_by_sigkill(&status), "{status:?} {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_off_or_out_of_scope_kills_nothing() {
    require_root!();
    let (_s, _, status, lines) =
        run_under_policy(&actor(), &["mprotect-wx"], |_| KillPolicy::default()).await;
    assert!(
        status.success() && lines.iter().any(|l| l == "after 0"),
        "{lines:?}"
    );
    // Scoped to an unrelated process (a sleeper we started): the actor is not in its tree.
    let mut sleeper = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let unrelated = sleeper.id();
    let (_s, _, status, lines) =
        run_under_policy(&actor(), &["mprotect-wx"], |_| wx_policy(unrelated)).await;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        status.success() && lines.iter().any(|l| l == "after 0"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelisted_users_are_exempt_in_the_kernel() {
    require_root!();
    const NOBODY: u32 = 65534;
    let dir = TempDir::new_in("/tmp", "uid");
    let exe = dir.copy_exe(&actor(), "pw-user-actor");
    for (allowed, survives) in [(vec![NOBODY], true), (vec![], false)] {
        let mut actor = spawn_waiting_as(NOBODY, &exe, &["mprotect-wx"]);
        let pid = actor.pid();
        let _sensor = LiveSensor::start(KillPolicy {
            wx_mem: true,
            scope_pid: Some(pid),
            allow_uids: allowed.clone(),
            ..KillPolicy::default()
        });
        actor.go();
        let (status, lines) = tokio::task::spawn_blocking(move || actor.finish())
            .await
            .expect("actor");
        assert_eq!(
            status.success(),
            survives,
            "allow_uids {allowed:?}: {status:?} {lines:?}"
        );
        assert_eq!(killed_by_sigkill(&status), !survives);
    }
}
