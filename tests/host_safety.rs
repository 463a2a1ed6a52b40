//! procwatch cannot be turned against the host: every kill, dump and resume names the exact
//! process (pid and start time from the kernel), the allowlist means one set of files in the
//! kernel and in user space, processes that predate a policy are judged like new ones, the
//! kill policy never silently runs without its in-kernel half, and a missing probe is said.
//! Runs the real binary as root; every kill is scoped to a tree the test started.
use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use procwatch_tests::{
    Actor, Monitor, TempDir, eventually, procwatch_bin, require_root, scratch_base,
};

/// Quick sweeps, and a ring buffer large enough that a storm elsewhere on this shared machine
/// cannot push out the events a test waits for.
const FAST: &str = "sweep_interval: 1s\ncpu_window: 1s\nring_buffer_kib: 65536\n";
const NOBODY: u32 = 65534;

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// `sh` that waits for a line on stdin, then execs `program args` as `uid` (same pid).
fn waiting_as(uid: Option<u32>, program: &Path, args: &[&str]) -> Actor {
    use std::os::unix::process::CommandExt;
    let script = "echo ready; read _; exec \"$0\" \"$@\"";
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, program.to_str().expect("utf-8 path")])
        .args(args);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let mut a = Actor::spawn_cmd(cmd);
    assert_eq!(a.read_line().as_deref(), Some("ready"));
    a
}

fn waiting(program: &Path, args: &[&str]) -> Actor {
    waiting_as(None, program, args)
}

/// One-letter state of `pid` (`T` stopped), or None when gone.
fn state(pid: u32) -> Option<u8> {
    procwatch::procfs::stat::read_stat(pid)
        .ok()
        .map(|s| s.state)
}

/// A `sleep 60` of ours, killed on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn new() -> Self {
        Self(
            Command::new("/bin/sleep")
                .arg("60")
                .stdin(Stdio::null())
                .spawn()
                .expect("sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_recycled_pid_is_neither_killed_nor_dumped() {
    require_root!();
    // The pid is handed on at once (within the 10 ms of /proc's start-time tick: the file
    // tells them apart) and after a pause (the start time does).
    for delay_ms in ["0", "30"] {
        recycled_pid_round(delay_ms);
    }
}

fn recycled_pid_round(delay_ms: &str) {
    let dir = TempDir::new_in("/tmp", "recycle");
    let dropper = dir.copy_exe(&actor(), "dropper");
    let dumps = TempDir::new_in(&scratch_base(), "recycle-dumps");
    let dump_dir = dumps.0.join("d");
    let mut w = waiting(
        &actor(),
        &["recycle", dropper.to_str().expect("utf-8"), delay_ms],
    );
    let scope = w.pid().to_string();
    // A large ring: other work on the machine goes on while procwatch is held still. Only
    // tmp_exe counts, and dumps copy no executable: every alert on the machine is dumped, and
    // a busy machine must not delay the one this test waits for.
    let config = format!(
        "{FAST}dump:\n  max_exe_bytes: 4096\nweights:\n  deleted_exe: 0\n  \
         wx_mem: 0\n  ptrace: 0\n  high_cpu: 0\n  empty_cmdline: 0\n  suspicious_port: 0\n  \
         fileless_exe: 0\n  reverse_shell: 0\n"
    );
    let m = Monitor::start(
        &config,
        &[
            "--kill-on-alert",
            "--enforce-scope-pid",
            &scope,
            "--dump",
            dump_dir.to_str().expect("utf-8"),
        ],
    );
    // procwatch is held still while the flagged process exits and its pid goes to another
    // process of the same tree: when it acts, the pid names the impostor.
    m.signal(libc::SIGSTOP);
    assert!(
        eventually(Duration::from_secs(5), || state(m.pid()) == Some(b'T')),
        "procwatch stopped"
    );
    w.go();
    let first: Option<u32> = w
        .read_line()
        .and_then(|l| l.strip_prefix("first ").and_then(|p| p.parse().ok()));
    let held = state(m.pid());
    let impostor: Option<u32> = w
        .read_line()
        .and_then(|l| l.strip_prefix("impostor ").and_then(|p| p.parse().ok()));
    m.signal(libc::SIGCONT);
    let (first, impostor) = (first.expect("first pid"), impostor.expect("impostor pid"));
    assert_eq!(first, impostor, "clone3 set_tid reused the pid");
    let alert = m.expect_rule(first, "tmp_exe");
    assert_eq!(
        held,
        Some(b'T'),
        "procwatch was resumed by someone while held"
    );
    if alert["action"] != "kill_refused" {
        eprintln!("delay {delay_ms} ms: unexpected action: {alert:#}");
        let mut m = m;
        let _ = m.wait_log(Duration::from_millis(300), "no-such-line-expected-here");
        panic!("delay {delay_ms} ms: {alert:#}\nlog: {:#?}", m.log);
    }
    assert!(
        alert["action_reason"]
            .as_str()
            .is_some_and(|r| r.contains("another process")),
        "{alert:#}"
    );
    assert!(
        alert["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/dropper")),
        "the alert is about the dropper, not the impostor: {alert:#}"
    );
    // Alerts go out after their actions, in order: once a later alert is out, no action on
    // the dropper's behalf is still pending.
    m.sync_events();
    let cmdline = std::fs::read(format!("/proc/{impostor}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.starts_with(b"/bin/sleep\0") || cmdline.starts_with(b"sleep\0"),
        "the impostor was hit: {:?} state {:?}",
        String::from_utf8_lossy(&cmdline),
        state(impostor)
    );
    // The dump holds the alert and why, nothing read from the impostor.
    let path = PathBuf::from(alert["dump"].as_str().expect("a dump directory"));
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .expect("ls dump")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["NOTES", "SHA256SUMS", "alert.json"]);
    let notes = std::fs::read_to_string(path.join("NOTES")).expect("notes");
    assert!(notes.contains("now names another process"), "{notes}");
    // SAFETY: signalling our own grandchild (the impostor), which the test started.
    unsafe { libc::kill(impostor as i32, libc::SIGKILL) };
    let _ = w.finish();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_killed_tracer_resumes_only_the_process_it_really_attached() {
    require_root!();
    // An administrator's stopped process, named by an attach that fails (nobody may not
    // trace root): it must stay stopped.
    let stopped = Sleeper::new();
    // SAFETY: stopping our own child.
    unsafe { libc::kill(stopped.pid() as i32, libc::SIGSTOP) };
    assert!(eventually(Duration::from_secs(5), || state(stopped.pid())
        == Some(b'T')));
    let target = stopped.pid().to_string();
    let mut tracer = waiting_as(Some(NOBODY), &actor(), &["ptrace-attach-pid", &target]);
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
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{lines:?}");
    let alert = m.expect_rule(tracer_pid, "ptrace");
    assert_eq!(alert["action"], "killed", "{alert:#}");
    assert_eq!(alert["trigger"]["target_pid"], stopped.pid());
    assert_eq!(alert["trigger"]["result"]["ret"], -libc::EPERM, "{alert:#}");
    m.sync_events();
    assert_eq!(
        state(stopped.pid()),
        Some(b'T'),
        "a process the failed attach named was resumed"
    );
    drop(m);

    // An attach that names the stopped process's pid number from another pid namespace: the
    // task really attached is another one, and the stopped process stays stopped.
    let mut tracer = waiting(&actor(), &["ptrace-attach-ns", &target]);
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
    let (_, lines) = tracer.finish();
    assert!(
        lines.iter().any(|l| l == "init killed 9"),
        "the in-namespace tracer was killed: {lines:?}"
    );
    let tracee: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("tracee ").and_then(|p| p.parse().ok()))
        .expect("the tracee's pid");
    assert_eq!(
        tracee,
        stopped.pid(),
        "the namespace pid repeats the stopped one's"
    );
    let alert = m
        .wait_alert(Duration::from_secs(15), |a| {
            a["trigger"]["kind"] == "ptrace" && a["trigger"]["target_pid"] == stopped.pid()
        })
        .unwrap_or_else(|| panic!("no ptrace alert: {:#?}", m.alerts()));
    assert_eq!(alert["trigger"]["result"]["ret"], 0, "{alert:#}");
    assert_ne!(
        alert["trigger"]["result"]["tracee_tgid"],
        stopped.pid(),
        "the kernel names the task really attached: {alert:#}"
    );
    m.sync_events();
    assert_eq!(
        state(stopped.pid()),
        Some(b'T'),
        "a process named by a pid from another namespace was resumed"
    );
    drop(m);

    // A real attach: its victim, stopped by the attach, is resumed.
    let victim = Sleeper::new();
    let target = victim.pid().to_string();
    let mut tracer = waiting(&actor(), &["ptrace-attach-pid", &target]);
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
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{lines:?}");
    let alert = m.expect_rule(tracer_pid, "ptrace");
    assert_eq!(alert["trigger"]["result"]["ret"], 0, "{alert:#}");
    assert_eq!(alert["trigger"]["result"]["tracee_tgid"], victim.pid());
    // Not stopped, and it stays so.
    let end = Instant::now() + Duration::from_secs(1);
    assert!(eventually(Duration::from_secs(5), || state(victim.pid())
        .is_some_and(|s| s != b'T' && s != b't')));
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = state(victim.pid());
    assert!(
        s.is_some_and(|s| s != b'T' && s != b't'),
        "the attached process was left stopped: {s:?}"
    );
    assert_eq!(state(stopped.pid()), Some(b'T'), "still stopped");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn an_allowlisted_executable_is_never_killed_from_user_space_either() {
    require_root!();
    let dir = TempDir::new_in("/tmp", "uexempt");
    let dropper = dir.copy_exe(&actor(), "dropper");
    let link = dir.0.join("via-link");
    std::os::unix::fs::symlink(&dropper, &link).expect("symlink");
    let config = format!(
        "{FAST}enforce:\n  allow_exe_paths: [{}]\n",
        dropper.display()
    );
    // Started through a symlink: the same file, so exempt.
    let mut a = waiting(&link, &["sleep", "30"]);
    let pid = a.pid();
    let m = Monitor::start(
        &config,
        &["--kill-on-alert", "--enforce-scope-pid", &pid.to_string()],
    );
    a.go();
    let alert = m.expect_rule(pid, "tmp_exe");
    assert_eq!(alert["action"], "exempt", "{alert:#}");
    assert_eq!(alert["action_by"], "userspace");
    m.sync_events();
    assert!(
        a.child.try_wait().expect("try_wait").is_none(),
        "an allowlisted executable was killed from user space"
    );
    let _ = a.child.kill();
    let _ = a.finish();
    drop(m);

    // The whitelist matches the file too: a hard link is whitelisted, a copy is not.
    let hard = dir.0.join("hard");
    std::fs::hard_link(&dropper, &hard).expect("link");
    let copy = dir.copy_exe(&actor(), "copy");
    let m = Monitor::start(
        &format!("{FAST}whitelist:\n  exe_paths: [{}]\n", dropper.display()),
        &[],
    );
    let run = |exe: &Path| {
        let mut c = Command::new(exe)
            .args(["exit", "0"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = c.id();
        let _ = c.wait();
        pid
    };
    let hard_pid = run(&hard);
    let copy_pid = run(&copy);
    m.expect_rule(copy_pid, "tmp_exe");
    assert!(
        m.alerts().iter().all(|a| a["pid"] != hard_pid),
        "a hard link of a whitelisted file alerted"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn sighup_turning_enforcement_on_exempts_processes_already_running() {
    require_root!();
    let dir = TempDir::new_in(&scratch_base(), "hup-enforce");
    let jit = dir.copy_exe(&actor(), "pw-jit");
    // Two processes running before procwatch starts, in one tree: the allowlisted one and
    // another; both ask for W+X once enforcement has been turned on by SIGHUP.
    // The background job reads the test's pipe through fd 3 (a plain `&` gives it /dev/null).
    let script = "exec 3<&0; \"$0\" --wait mprotect-wx <&3 & \"$1\" --wait mprotect-wx; wait";
    let mut tree = Actor::spawn(
        Path::new("/bin/sh"),
        &[
            "-c",
            script,
            jit.to_str().expect("utf-8"),
            actor().to_str().expect("utf-8"),
        ],
    );
    let mut pids = Vec::new();
    for _ in 0..2 {
        let pid: u32 = tree
            .read_line()
            .and_then(|l| l.strip_prefix("ready ").and_then(|p| p.parse().ok()))
            .expect("ready");
        pids.push(pid);
    }
    let exe_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let jit_pid = *pids
        .iter()
        .find(|&&p| exe_of(p).as_deref() == Some(jit.as_path()))
        .unwrap_or_else(|| {
            let seen: Vec<_> = pids.iter().map(|&p| (p, exe_of(p))).collect();
            panic!(
                "the allowlisted actor {} is not among {seen:?}",
                jit.display()
            )
        });
    let other_pid = *pids.iter().find(|&&p| p != jit_pid).expect("the other");
    let mut m = Monitor::start(FAST, &["--enforce-scope-pid", &tree.pid().to_string()]);
    std::fs::write(
        &m.config,
        format!(
            "{FAST}enforce:\n  wx_mem: true\n  allow_exe_paths: [{}]\n",
            jit.display()
        ),
    )
    .expect("config");
    m.signal(libc::SIGHUP);
    m.wait_log(Duration::from_secs(10), "config reloaded");
    tree.go();
    let (_, lines) = tree.finish();
    let exempt = m.expect_rule(jit_pid, "wx_mem");
    assert_eq!(exempt["action"], "exempt", "{exempt:#}");
    assert_eq!(exempt["action_by"], "kernel");
    let killed = m.expect_rule(other_pid, "wx_mem");
    assert_eq!(killed["action"], "killed", "{killed:#}");
    assert_eq!(
        lines.iter().filter(|l| *l == "after 0").count(),
        1,
        "only the allowlisted one returned from mprotect: {lines:?}"
    );
}

/// Runs procwatch in a mount namespace of its own where `/sys/kernel` is an empty read-only
/// tmpfs: no tracefs (and it cannot be mounted), no BTF, so the eBPF sensor cannot load.
fn without_ebpf(args: &[&str], config: &str) -> std::process::Output {
    let dir = TempDir::new_in(&scratch_base(), "noebpf");
    let cfg = dir.0.join("procwatch.yaml");
    std::fs::write(&cfg, config).expect("config");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs -o ro,size=4k none /sys/kernel && exec \"$0\" \"$@\"",
    ])
    .arg(procwatch_bin())
    .arg("monitor")
    .arg("--config")
    .arg(&cfg)
    .args(["--quiet", "--duration", "2"])
    .args(args)
    .env("HOME", &dir.0)
    // A history of its own: the default one may be in use by another test.
    .env("PROCWATCH_HISTORY", dir.0.join("alerts.db"))
    .stdin(Stdio::null());
    cmd.output().expect("run procwatch")
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_kill_policy_without_ebpf_refuses_to_start_unless_fallback_is_explicit() {
    require_root!();
    let sleeper = Sleeper::new();
    let scope = sleeper.pid().to_string();
    let scoped = ["--enforce-scope-pid", scope.as_str()];
    for (args, config) in [
        (vec!["--kill-on-alert"], FAST.to_string()),
        (Vec::new(), format!("{FAST}enforce:\n  wx_mem: true\n")),
    ] {
        let all: Vec<&str> = args.iter().copied().chain(scoped).collect();
        let out = without_ebpf(&all, &config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refusing to run without in-kernel kills")
                && stderr.contains("--sensor fallback"),
            "{stderr}"
        );
    }
    // Asked for explicitly: it runs, and says in-kernel kills are off.
    let out = without_ebpf(
        &[
            "--kill-on-alert",
            "--sensor",
            "fallback",
            "--enforce-scope-pid",
            &scope,
        ],
        FAST,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("in-kernel kills are OFF"), "{stderr}");
    // Without a kill policy the automatic fallback is still fine.
    let out = without_ebpf(&[], FAST);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("sensor=\"proc_connector\"") || stderr.contains("proc_connector"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn a_probe_that_fails_to_attach_is_in_the_startup_log_the_stats_and_every_alert() {
    require_root!();
    let root = if Path::new("/sys/kernel/tracing/events").is_dir() {
        "/sys/kernel/tracing"
    } else {
        "/sys/kernel/debug/tracing"
    };
    // In procwatch's own mount namespace, memfd_create's tracepoint directory is hidden
    // under an empty tmpfs: its format file and id are gone, so that one probe fails.
    let script = format!(
        "mount -t tmpfs none {root}/events/syscalls/sys_enter_memfd_create && exec \"$0\" \"$@\""
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script.as_str(),
    ];
    let m = Monitor::start_wrapped(&wrapper, "monitor", FAST, &[]);
    let missing = "syscalls:sys_enter_memfd_create";
    assert!(
        m.log
            .iter()
            .any(|l| l.contains("monitoring") && l.contains(missing)),
        "{:#?}",
        m.log
    );
    let dir = TempDir::new_in("/tmp", "probes");
    let exe = dir.copy_exe(&actor(), "payload");
    let mut c = Command::new(&exe)
        .args(["exit", "0"])
        .spawn()
        .expect("spawn");
    let pid = c.id();
    let _ = c.wait();
    let alert = m.expect_rule(pid, "tmp_exe");
    assert_eq!(
        alert["sensor"]["probes_missing"],
        serde_json::json!([missing]),
        "{alert:#}"
    );
    let (status, summary, _) = m.stop();
    assert!(status.success());
    let summary = summary.expect("summary");
    assert_eq!(
        summary["sensor"]["probes_missing"],
        serde_json::json!([missing]),
        "{summary:#}"
    );
}
