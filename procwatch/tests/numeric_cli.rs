//! Hostile numbers through the real binary: every numeric flag of every subcommand, and every
//! numeric config key through `config check`, `scan --config` and `monitor --config`. Each is
//! refused with a message naming the flag (exit 2) or the file, line and key (exit 1); none
//! may panic (exit 101, "panicked" on stderr). Nothing here gets far enough to load eBPF.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::{Scratch, procwatch, text};

/// Fails when the run panicked, whatever else it did.
#[track_caller]
fn assert_no_panic(args: &[&str], out: &Output) {
    let stderr = text(&out.stderr);
    assert!(
        out.status.code() != Some(101) && !stderr.contains("panicked"),
        "{args:?} panicked: {stderr}"
    );
    assert!(out.status.code().is_some(), "{args:?} killed by a signal");
}

/// Values no numeric flag accepts.
const ALWAYS_BAD: &[&str] = &[
    "inf",
    "-inf",
    "infinity",
    "nan",
    "NaN",
    "-1",
    "-0.5",
    "1e30",
    "1e309",
    "18446744073709551616",
    "99999999999999999999999999999",
    "",
    " ",
    "abc",
    "1x",
    "0x10",
];

/// One numeric flag: the command line up to it, the flag, values refused besides
/// [`ALWAYS_BAD`], and whatever must follow it.
type FlagCase = (
    Vec<&'static str>,
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
);

/// Every numeric flag of every subcommand.
fn flags() -> Vec<FlagCase> {
    let no_sensor = vec!["--sensor", "bogus-on-purpose"];
    vec![
        (
            vec!["events"],
            "--duration",
            vec!["0", "0s", "3651d"],
            vec![],
        ),
        (
            vec!["events"],
            "--ring-kib",
            vec!["0", "3", "2097152", "4294967296"],
            vec![],
        ),
        (
            vec!["events"],
            "--sweep-interval",
            vec!["0", "0.01", "99ms", "3651d"],
            vec![],
        ),
        (vec!["monitor"], "--duration", vec!["0", "3651d"], vec![]),
        (
            vec!["monitor"],
            "--min-score",
            vec!["1e7", "1000001"],
            vec![],
        ),
        (
            vec!["monitor"],
            "--enforce-scope-pid",
            vec!["0", "4194305", "4294967295", "1.5"],
            vec![],
        ),
        (vec!["scan"], "--min-score", vec!["1e7"], vec![]),
        (
            vec!["scan"],
            "--enforce-scope-pid",
            vec!["0", "4294967296"],
            vec![],
        ),
        (
            vec!["scan"],
            "--interval",
            vec!["0", "0.05", "10ms", "3651d"],
            vec![],
        ),
        (
            vec!["scan", "--interval", "1"],
            "--count",
            vec!["0", "1.5"],
            vec![],
        ),
        // A bad value is reported even when another argument is bad too.
        (vec!["monitor"], "--duration", vec!["0"], no_sensor),
    ]
}

#[test]
fn every_numeric_flag_refuses_hostile_values_naming_the_flag() {
    let dir = Scratch::new("numeric-cli", "flags");
    let mut tried = 0;
    for (before, flag, extra_bad, after) in flags() {
        for value in ALWAYS_BAD.iter().chain(&extra_bad) {
            // `--flag=value` so that even "-1" and "" reach the flag's parser.
            let arg = format!("{flag}={value}");
            let mut args: Vec<&str> = before.clone();
            args.push(&arg);
            args.extend(&after);
            let out = procwatch(&dir.0, &args);
            assert_no_panic(&args, &out);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("'{flag} <")),
                "{args:?}: the error does not name the flag: {stderr}"
            );
            tried += 1;
        }
    }
    eprintln!("{tried} hostile flag values refused");
}

#[test]
fn negative_numbers_as_separate_arguments_name_the_flag() {
    let dir = Scratch::new("numeric-cli", "negative");
    for args in [
        ["events", "--duration", "-1"],
        ["scan", "--interval", "-5"],
        ["monitor", "--enforce-scope-pid", "-1"],
        ["monitor", "--min-score", "-3"],
    ] {
        let out = procwatch(&dir.0, &args);
        assert_no_panic(&args, &out);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("'{} <", args[1])) && stderr.contains("negative"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn count_without_interval_is_a_usage_error() {
    let dir = Scratch::new("numeric-cli", "count");
    let out = procwatch(&dir.0, &["scan", "--count", "3"]);
    assert_no_panic(&["scan"], &out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--interval"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_log_filter_is_refused() {
    let dir = Scratch::new("numeric-cli", "log");
    let out = procwatch(&dir.0, &["--log", "[", "config", "check", "/dev/null"]);
    assert_no_panic(&["--log"], &out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("'--log <LOG>'"),
        "{}",
        text(&out.stderr)
    );
}

/// Durations with units and values at the edges are accepted: a real scan runs twice.
#[test]
fn edge_values_are_accepted() {
    let dir = Scratch::new("numeric-cli", "edges");
    let args = [
        "scan",
        "--quiet",
        "--interval",
        "100ms",
        "--count",
        "2",
        "--min-score",
        "1000000",
    ];
    let out = procwatch(&dir.0, &args);
    assert_no_panic(&args, &out);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Hostile config values, each one file: (key path, line, YAML).
fn hostile_configs() -> Vec<(&'static str, usize, &'static str)> {
    vec![
        ("min_score", 1, "min_score: .inf\n"),
        ("min_score", 1, "min_score: 1e30\n"),
        ("ml_weight", 1, "ml_weight: .nan\n"),
        ("cpu_high", 1, "cpu_high: 0\n"),
        ("weights.ptrace", 2, "weights:\n  ptrace: -1\n"),
        ("weights.tmp_exe", 2, "weights:\n  tmp_exe: 1e300\n"),
        ("sweep_interval", 1, "sweep_interval: 1e30\n"),
        ("sweep_interval", 1, "sweep_interval: \"1e30s\"\n"),
        ("sweep_interval", 1, "sweep_interval: 0\n"),
        ("sweep_interval", 1, "sweep_interval: 1ms\n"),
        ("cpu_window", 1, "cpu_window: -.inf\n"),
        ("exited_grace", 1, "exited_grace: 99999999999999999999999\n"),
        ("max_processes", 1, "max_processes: 0\n"),
        ("max_processes", 1, "max_processes: 18446744073709551616\n"),
        ("ring_buffer_kib", 1, "ring_buffer_kib: 0\n"),
        ("dump.max_total_bytes", 2, "dump:\n  max_total_bytes: 0\n"),
        (
            "dump.max_exe_bytes",
            2,
            "dump:\n  max_exe_bytes: \"1e30GiB\"\n",
        ),
        (
            "baseline.learning_period",
            2,
            "baseline:\n  learning_period: \"3651d\"\n",
        ),
        ("ports", 1, "ports: 70000\n"),
    ]
}

#[test]
fn hostile_config_values_fail_check_scan_and_monitor_with_file_line_and_key() {
    let dir = Scratch::new("numeric-cli", "config");
    for (i, (key, line, yaml)) in hostile_configs().into_iter().enumerate() {
        let file = dir.write(&format!("c{i}.yaml"), yaml);
        let f = file.to_str().unwrap();
        let want = format!("{f}:{line}:");
        let runs: [&[&str]; 3] = [
            &["config", "check", f],
            &["scan", "--quiet", "--config", f],
            &["monitor", "--quiet", "--config", f, "--duration", "1"],
        ];
        for args in runs {
            let out = procwatch(&dir.0, args);
            assert_no_panic(args, &out);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} ({yaml:?}): {stderr}");
            assert!(
                stderr.contains(&want) && stderr.contains(&format!(" {key}: ")),
                "{args:?} ({yaml:?}): wanted {want} and {key}: {stderr}"
            );
        }
    }
}
