//! `procwatch config check|show` through the real binary: exit codes and messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Scratch, procwatch, text};

#[test]
fn check_accepts_a_good_file() {
    let dir = Scratch::new("config-cli", "good");
    let good = dir.write("good.yaml", "min_score: 4\nports: [22, \"8000-8100\"]\n");
    let out = procwatch(&dir.0, &["config", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}: ok\n", good.display()));
}

#[test]
fn check_rejects_a_bad_file_with_its_line() {
    let dir = Scratch::new("config-cli", "bad");
    let bad = dir.write("bad.yaml", "min_score: 4\nweights:\n  tmp_exe: high\n");
    let out = procwatch(&dir.0, &["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:12: weights.tmp_exe:", bad.display())),
        "stderr: {stderr}"
    );
}

#[test]
fn check_reports_every_bad_file_and_fails() {
    let dir = Scratch::new("config-cli", "many");
    let good = dir.write("good.yaml", "");
    let typo = dir.write("typo.yaml", "cpu_high: 50\nmin_scor: 3\n");
    let args = [
        "config",
        "check",
        good.to_str().unwrap(),
        typo.to_str().unwrap(),
    ];
    let out = procwatch(&dir.0, &args);
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("good.yaml: ok"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("typo.yaml:2:1: unknown key 'min_scor' (did you mean 'min_score'?)"),
        "stderr: {stderr}"
    );
}

#[test]
fn check_of_a_missing_file_fails() {
    let dir = Scratch::new("config-cli", "missing");
    let out = procwatch(&dir.0, &["config", "check", "/nonexistent/procwatch.yaml"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/procwatch.yaml: cannot read"));
}

#[test]
fn show_layers_home_and_cli_files() {
    // `show` always layers the real /etc file; its content would change what is printed.
    if Path::new("/etc/procwatch.yaml").exists() {
        eprintln!("skipped: /etc/procwatch.yaml exists on this machine");
        return;
    }
    let dir = Scratch::new("config-cli", "show");
    dir.write(
        ".procwatch.yaml",
        "min_score: 4.5\napi:\n  token: hunter2-hunter2-hunter2\n",
    );
    let cli = dir.write("cli.yaml", "ports: \"22,443\"\n");
    let out = procwatch(
        &dir.0,
        &["config", "show", "--config", cli.to_str().unwrap()],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("# procwatch effective configuration"),
        "{stdout}"
    );
    assert!(
        stdout.contains(".procwatch.yaml: min_score, api.token"),
        "{stdout}"
    );
    assert!(stdout.contains("cli.yaml: ports"), "{stdout}");
    assert!(stdout.contains("\nmin_score: 4.5\n"), "{stdout}");
    assert!(stdout.contains("\nports: 22,443\n"), "{stdout}");
    assert!(stdout.contains("\ncpu_high: 75.0\n"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "token leaked: {stdout}");
}

#[test]
fn show_fails_on_a_broken_config() {
    let dir = Scratch::new("config-cli", "showbad");
    let cli = dir.write("cli.yaml", "ports: 70000\n");
    let out = procwatch(
        &dir.0,
        &["config", "show", "--config", cli.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cli.yaml:1:8: ports: port 70000 is out of range"),
        "{stderr}"
    );
}
