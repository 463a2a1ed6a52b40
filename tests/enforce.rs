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
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
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
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
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
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
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
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
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
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
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
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
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

async fn finish(actor: Actor) -> (std::process::ExitStatus, Vec<String>) {
    tokio::task::spawn_blocking(move || actor.finish())
        .await
        .expect("actor")
}

/// `sh` running `program --wait args` as its child (not exec'd): the scope can name the
/// shell, and the actor is its descendant. Returns the shell and the actor's pid.
fn spawn_started_under_shell(program: &Path, args: &[&str]) -> (Actor, u32) {
    let mut full = vec![
        "-c",
        "\"$0\" --wait \"$@\"; exit $?",
        program.to_str().expect("utf-8 path"),
    ];
    full.extend_from_slice(args);
    let mut shell = Actor::spawn(Path::new("/bin/sh"), &full);
    let pid = shell
        .read_line()
        .and_then(|l| l.strip_prefix("ready ").and_then(|p| p.parse().ok()))
        .expect("actor ready");
    (shell, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn processes_that_predate_the_policy_get_their_exemption_and_scope() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "predate");
    let jit = dir.copy_exe(&actor(), "pw-jit");
    // All of them exist (exec'd, under their shells) before the sensor and its policy load.
    let (exempt, exempt_pid) = spawn_started_under_shell(&jit, &["mprotect-wx"]);
    let (plain, plain_pid) = spawn_started_under_shell(&actor(), &["mprotect-wx"]);
    let (outside, _) = spawn_started_under_shell(&actor(), &["mprotect-wx"]);
    // The scope names each shell in turn: its actor is found through the kernel's parent
    // links, though no fork of it was ever seen.
    let policy = |scope: u32| KillPolicy {
        wx_mem: true,
        allow_exe_paths: vec![jit.clone()],
        scope_pid: Some(scope),
        ..KillPolicy::default()
    };
    let mut sensor = LiveSensor::start(policy(exempt.pid()));
    let mut exempt = exempt;
    exempt.go();
    let (status, lines) = finish(exempt).await;
    assert!(
        status.success() && lines.iter().any(|l| l == "after 0"),
        "an allowlisted process older than the policy was killed: {status:?} {lines:?}"
    );
    let e = sensor
        .expect("wx_mem", exempt_pid, |e| {
            e.tgid == exempt_pid && matches!(e.body, EventBody::WxMem(_))
        })
        .await;
    assert_eq!(e.kernel_action, Some(KernelAction::Exempt));

    sensor
        .sensor
        .set_kill_policy(&policy(plain.pid()))
        .expect("policy");
    let mut plain = plain;
    plain.go();
    let (status, lines) = finish(plain).await;
    assert!(
        status.code() == Some(128 + libc::SIGKILL) && !lines.iter().any(|l| l.starts_with("after")),
        "a process older than the policy, in its scope, must be killed: {status:?} {lines:?}"
    );
    let e = sensor
        .expect("wx_mem", plain_pid, |e| {
            e.tgid == plain_pid && matches!(e.body, EventBody::WxMem(_))
        })
        .await;
    assert_eq!(e.kernel_action, Some(KernelAction::Killed));

    // Scoped to an unrelated sleeper: the old process outside that tree lives.
    let mut sleeper = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    sensor
        .sensor
        .set_kill_policy(&policy(sleeper.id()))
        .expect("policy");
    let mut outside = outside;
    outside.go();
    let (status, lines) = finish(outside).await;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        status.success() && lines.iter().any(|l| l == "after 0"),
        "killed outside its scope: {status:?} {lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn an_allowlisted_file_is_exempt_under_any_name_and_a_copy_is_not() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "names");
    let jit = dir.copy_exe(&actor(), "pw-jit");
    let sym = dir.0.join("pw-sym");
    std::os::unix::fs::symlink(&jit, &sym).expect("symlink");
    let hard = dir.0.join("pw-hard");
    std::fs::hard_link(&jit, &hard).expect("hard link");
    let copy = dir.copy_exe(&actor(), "pw-copy");
    let allow = |scope: u32| KillPolicy {
        wx_mem: true,
        allow_exe_paths: vec![jit.clone()],
        scope_pid: Some(scope),
        ..KillPolicy::default()
    };
    for name in [sym.clone(), hard.clone()] {
        let (_s, _, status, lines) = run_under_policy(&name, &["mprotect-wx"], allow).await;
        assert!(
            status.success() && lines.iter().any(|l| l == "after 0"),
            "{}: {status:?} {lines:?}",
            name.display()
        );
    }
    // A relative path, resolved against the shell's working directory.
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "echo ready; read _; exec ./pw-jit mprotect-wx"])
        .current_dir(&dir.0);
    let mut actor = Actor::spawn_cmd(cmd);
    assert_eq!(actor.read_line().as_deref(), Some("ready"));
    let _sensor = LiveSensor::start(allow(actor.pid()));
    actor.go();
    let (status, lines) = finish(actor).await;
    assert!(
        status.success() && lines.iter().any(|l| l == "after 0"),
        "relative path: {status:?} {lines:?}"
    );
    let (_s, _, status, lines) = run_under_policy(&copy, &["mprotect-wx"], allow).await;
    assert!(killed_by_sigkill(&status), "a copy: {status:?} {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
async fn a_killed_attach_is_reported_at_exit_with_the_task_it_really_attached() {
    require_root!();
    let (mut sensor, pid, status, lines) =
        run_under_policy(&actor(), &["ptrace-attach"], ptrace_policy).await;
    assert!(killed_by_sigkill(&status), "{status:?} {lines:?}");
    let target: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("target ").and_then(|p| p.parse().ok()))
        .expect("actor prints its target");
    let e = sensor
        .expect("ptrace", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Ptrace(_))
        })
        .await;
    assert_eq!(e.kernel_action, Some(KernelAction::Killed));
    let EventBody::Ptrace(t) = e.body else {
        unreachable!()
    };
    let r = t.result.expect("reported at syscall exit");
    assert_eq!(r.ret, 0, "the attach itself went through");
    assert_eq!(r.tracee_tgid, Some(target));
    assert!(r.tracee_start_time_ns.is_some());

    // An attach the kernel refuses (nobody may not trace a root process): no tracee.
    const NOBODY: u32 = 65534;
    let dir = TempDir::new_in("/tmp", "eperm");
    let exe = dir.copy_exe(&actor(), "pw-eperm");
    let mut victim = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let victim_pid = victim.id().to_string();
    let mut actor = spawn_waiting_as(NOBODY, &exe, &["ptrace-attach-pid", &victim_pid]);
    let pid = actor.pid();
    let mut sensor = LiveSensor::start(ptrace_policy(pid));
    actor.go();
    let (status, lines) = finish(actor).await;
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(killed_by_sigkill(&status), "{status:?} {lines:?}");
    let e = sensor
        .expect("ptrace", pid, |e| {
            e.tgid == pid && matches!(e.body, EventBody::Ptrace(_))
        })
        .await;
    let EventBody::Ptrace(t) = e.body else {
        unreachable!()
    };
    let r = t.result.expect("reported at syscall exit");
    assert_eq!(r.ret, -i64::from(libc::EPERM));
    assert_eq!(r.tracee_tgid, None);
}
