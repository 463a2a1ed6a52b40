//! Per-rule `actions:` and `kill_min_score` end to end, as root: a user alerts on everything
//! and kills only what is certain. Every kill is scoped to this test process's tree (one test
//! per binary, run in sequence, so the tree holds only what this test started).
use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use procwatch_tests::{Monitor, TempDir, eventually, require_root, scratch_base};

const FAST: &str = "sweep_interval: 1s\ncpu_window: 1s\n";

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

/// A copy of the actor at `dir/name`, sleeping 30 s.
fn sleeper(dir: &TempDir, name: &str) -> Child {
    let exe = dir.copy_exe(&actor(), name);
    Command::new(&exe)
        .args(["sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("run the copy")
}

/// A sleeping actor whose executable is deleted once it runs (`deleted_exe` at the next sweep).
fn deleted_sleeper(dir: &TempDir, name: &str) -> Child {
    let child = sleeper(dir, name);
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{}/exe", child.id())).is_ok_and(|p| p.ends_with(name))
        }),
        "the copy never ran"
    );
    std::fs::remove_file(dir.0.join(name)).expect("delete the running copy");
    child
}

fn killed(child: &mut Child) -> bool {
    eventually(
        Duration::from_secs(15),
        || matches!(child.try_wait(), Ok(Some(s)) if s.signal() == Some(libc::SIGKILL)),
    )
}

fn alive(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn per_rule_actions_and_kill_threshold() {
    require_root!();
    let me = std::process::id().to_string();
    let tmp = TempDir::new_in("/tmp", "actions");
    let scratch = TempDir::new_in(&scratch_base(), "actions");

    // 1. `actions: {deleted_exe: kill}` kills without --kill-on-alert; tmp_exe only alerts.
    let cfg = format!("{FAST}actions:\n  deleted_exe: kill\n");
    let m = Monitor::start(&cfg, &["--enforce-scope-pid", &me]);
    let mut dropper = sleeper(&tmp, "dropper1");
    let mut gone = deleted_sleeper(&scratch, "gone1");
    let a = m.expect_rule(dropper.id(), "tmp_exe");
    assert_eq!(a["action"], "alert", "{a:#}");
    assert!(killed(&mut gone), "deleted_exe: kill did not kill");
    let a = m.expect_rule(gone.id(), "deleted_exe");
    assert_eq!(a["action"], "killed", "{a:#}");
    assert_eq!(a["action_by"], "userspace");
    assert!(alive(&mut dropper), "an `alert` rule killed its process");
    reap(dropper);
    drop(m);

    // 2. --kill-on-alert with `actions: {tmp_exe: alert}`: the rule set to alert is spared, a
    //    rule left unset follows the command line and kills.
    let cfg = format!("{FAST}actions:\n  tmp_exe: alert\n");
    let m = Monitor::start(&cfg, &["--kill-on-alert", "--enforce-scope-pid", &me]);
    let mut dropper = sleeper(&tmp, "dropper2");
    let mut gone = deleted_sleeper(&scratch, "gone2");
    let a = m.expect_rule(dropper.id(), "tmp_exe");
    assert_eq!(a["action"], "alert", "{a:#}");
    assert!(
        killed(&mut gone),
        "--kill-on-alert did not kill deleted_exe"
    );
    assert_eq!(m.expect_rule(gone.id(), "deleted_exe")["action"], "killed");
    assert!(alive(&mut dropper), "tmp_exe: alert was killed");
    reap(dropper);
    drop(m);

    // 3. kill_min_score 9: a /tmp binary (4) is reported and spared, with the reason; the
    //    same once deleted (4 + 5 = 9) is certain enough and killed.
    let cfg = format!("{FAST}kill_min_score: 9\n");
    let m = Monitor::start(&cfg, &["--kill-on-alert", "--enforce-scope-pid", &me]);
    let mut spared = sleeper(&tmp, "dropper3");
    let a = m.expect_rule(spared.id(), "tmp_exe");
    assert_eq!(a["action"], "alert", "{a:#}");
    assert!(
        a["action_reason"]
            .as_str()
            .is_some_and(|r| r.contains("kill_min_score")),
        "{a:#}"
    );
    let mut sure = deleted_sleeper(&tmp, "dropper4");
    assert!(
        killed(&mut sure),
        "score 9 reached kill_min_score 9 but was not killed"
    );
    let a = m
        .wait_alert(Duration::from_secs(15), |a| {
            a["pid"] == sure.id() && a["action"] == "killed"
        })
        .unwrap_or_else(|| panic!("no kill alert: {:#?}", m.alerts()));
    assert_eq!(a["total_score"], 9.0, "{a:#}");
    assert!(
        alive(&mut spared),
        "a score under kill_min_score was killed"
    );
    reap(spared);
}
