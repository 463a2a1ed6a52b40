//! `procwatch scan` end to end (no eBPF involved): one sweep flags real offenders, writes JSONL
//! on stdout when stdout is not a terminal, repeats with `--interval`/`--count` without
//! repeating alerts, stops with status 3 on `--stop-on-alert`, and rejects a bad config with
//! its file and line.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use procwatch_tests::{
    TempDir, assert_valid_alert, has_rule, procwatch_bin, require_root, scratch_base,
};

fn actor() -> PathBuf {
    procwatch_tests::stable_actor(std::path::Path::new(env!("CARGO_BIN_EXE_pw-actor")))
}

struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper(exe: &Path) -> Sleeper {
    let child = Command::new(exe)
        .args(["sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(200));
    Sleeper(child)
}

fn scan(args: &[&str], home: &Path) -> (std::process::ExitStatus, Vec<serde_json::Value>, String) {
    let out = Command::new(procwatch_bin())
        .arg("scan")
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("procwatch scan");
    let alerts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout is not JSONL ({e}): {l}"))
        })
        .collect::<Vec<serde_json::Value>>();
    alerts.iter().for_each(assert_valid_alert);
    (
        out.status,
        alerts,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn one_sweep_flags_tmp_and_deleted_executables_as_jsonl_on_stdout() {
    require_root!();
    let home = TempDir::new_in(&scratch_base(), "scan-home");
    let tmp = TempDir::new_in("/var/tmp", "scan");
    let in_tmp = sleeper(&tmp.copy_exe(&actor(), "parked"));
    let scratch = TempDir::new_in(&scratch_base(), "scan-del");
    let doomed = scratch.copy_exe(&actor(), "doomed");
    let deleted = sleeper(&doomed);
    std::fs::remove_file(&doomed).expect("delete");
    let (status, alerts, err) = scan(&[], &home.0);
    assert!(status.success(), "{err}");
    let find = |pid: u32, rule: &str| {
        alerts
            .iter()
            .find(|a| a["pid"] == pid && has_rule(a, rule))
            .cloned()
    };
    let a =
        find(in_tmp.0.id(), "tmp_exe").unwrap_or_else(|| panic!("no tmp_exe alert: {alerts:#?}"));
    assert_eq!(a["trigger"]["kind"], "sweep");
    assert_eq!(a["sensor"]["name"], "sweep");
    assert!(
        find(deleted.0.id(), "deleted_exe").is_some(),
        "no deleted_exe alert: {alerts:#?}"
    );
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn interval_repeats_without_repeating_alerts() {
    require_root!();
    let home = TempDir::new_in(&scratch_base(), "scan-home");
    let tmp = TempDir::new_in("/tmp", "scan-repeat");
    let s = sleeper(&tmp.copy_exe(&actor(), "parked"));
    let (status, alerts, err) = scan(&["--interval", "0.3", "--count", "3"], &home.0);
    assert!(status.success(), "{err}");
    let mine = alerts.iter().filter(|a| a["pid"] == s.0.id()).count();
    assert_eq!(mine, 1, "three sweeps, one alert: {alerts:#?}");
    assert!(err.contains("\"sweeps\":3"), "{err}");
}

#[test]
#[ignore = "needs root (eBPF, real processes): cargo xtask test runs it as root"]
fn stop_on_alert_exits_three_after_one_alert() {
    require_root!();
    let home = TempDir::new_in(&scratch_base(), "scan-home");
    let tmp = TempDir::new_in("/tmp", "scan-stop");
    let _a = sleeper(&tmp.copy_exe(&actor(), "one"));
    let _b = sleeper(&tmp.copy_exe(&actor(), "two"));
    let (status, alerts, err) = scan(&["--stop-on-alert"], &home.0);
    assert_eq!(status.code(), Some(3), "{err}");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
}

#[test]
fn a_bad_config_is_an_error_naming_file_line_and_key() {
    let home = TempDir::new_in(&scratch_base(), "scan-home");
    let cfg = home.0.join("bad.yaml");
    std::fs::write(&cfg, "min_score: 3\nweights:\n  tmp_exe: high\n").expect("write");
    let out = Command::new(procwatch_bin())
        .args(["scan", "--config"])
        .arg(&cfg)
        .env("HOME", &home.0)
        .output()
        .expect("procwatch scan");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:3:") && err.contains("weights.tmp_exe"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
