//! Config tests: defaults, layering, and located errors. No root, no real /etc or $HOME.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use super::*;

/// A fresh scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "procwatch-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses one in-memory layer over the defaults.
fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml("test.yaml", text)
}

/// The diagnostic of a failed parse; panics if it parsed.
fn diag(text: &str) -> Diagnostic {
    match parse(text) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e.diagnostic().cloned().unwrap(),
    }
}

/// Asserts the error position, key, and that the message contains `needle`.
#[track_caller]
fn assert_err(text: &str, line: usize, key: Option<&str>, needle: &str) -> Diagnostic {
    let d = diag(text);
    assert_eq!(d.line, Some(line), "line of {d}");
    assert_eq!(d.key.as_deref(), key, "key of {d}");
    assert!(d.message.contains(needle), "{d:?} lacks {needle:?}");
    assert!(
        d.to_string().starts_with(&format!("test.yaml:{line}:")),
        "{d}"
    );
    d
}

// ---- defaults ----

#[test]
fn defaults_match_the_readme_and_issue() {
    let c = Config::default();
    assert_eq!(c.cpu_high, 75.0);
    assert_eq!(c.min_score, 3.0);
    assert_eq!(c.ml_weight, 2.0);
    assert_eq!(c.ports.to_string(), "53,80,443");
    let expected = [
        (Rule::DeletedExe, 5.0),
        (Rule::TmpExe, 4.0),
        (Rule::WxMem, 4.0),
        (Rule::Ptrace, 5.0),
        (Rule::HighCpu, 3.0),
        (Rule::EmptyCmdline, 2.0),
        (Rule::SuspiciousPort, 4.0),
        (Rule::FilelessExe, 5.0),
        (Rule::ReverseShell, 5.0),
    ];
    for (rule, w) in expected {
        assert_eq!(c.weight(rule), w, "{rule}");
    }
    assert_eq!(
        c.temp_dirs,
        [
            Path::new("/tmp"),
            Path::new("/var/tmp"),
            Path::new("/dev/shm")
        ]
    );
    assert_eq!(c.sweep_interval, Duration::from_secs(5));
    assert_eq!(c.ring_buffer_kib, 4096);
    assert_eq!(c.cpu_window, Duration::from_secs(5));
    assert_eq!(c.exited_grace, Duration::from_secs(5));
    assert_eq!(c.max_processes, 65536);
    assert!(!c.enforce.ptrace && !c.enforce.wx_mem && c.enforce.allow_exe_paths.is_empty());
    assert_eq!(c.dump.max_exe_bytes, 104_857_600);
    assert_eq!(c.dump.max_total_bytes, 1_073_741_824);
    assert_eq!(c.outputs.jsonl, None);
    assert_eq!(c.outputs.log_file, None);
    assert_eq!(c.outputs.syslog, None);
    assert!(c.outputs.stdout);
    assert_eq!(c.baseline.learning_period, Duration::from_secs(86400));
    assert_eq!(
        c.baseline.model_path, None,
        "~/.local/share/procwatch/model.json"
    );
    assert_eq!(c.baseline.stable_after, Duration::from_secs(3600));
    assert_eq!(c.baseline.min_processes, 2, "more than one process");
    assert_eq!(
        c.baseline.watched_prefixes,
        [
            "/etc",
            "/root",
            "/home",
            "/var/www",
            "/boot",
            "/usr/local/etc",
            "/proc/*/mem"
        ]
        .map(PathBuf::from)
    );
    for rule in Rule::ALL {
        let on = matches!(rule, Rule::WxMem | Rule::SuspiciousPort | Rule::HighCpu);
        assert_eq!(c.baseline.suppress.get(rule), on, "{rule}");
    }
    assert_eq!(c.api.listen, None);
    assert_eq!(c.api.token, None);
}

#[test]
fn empty_and_comment_only_files_are_the_defaults() {
    for text in ["", "\n", "# nothing here\n", "---\n", "---\n# c\n...\n"] {
        assert_eq!(parse(text).unwrap(), Config::default(), "{text:?}");
    }
}

#[test]
fn empty_sections_are_fine() {
    let text = "weights:\nwhitelist:\n  users:\nenforce: {}\noutputs: ~\n";
    let c = parse(text).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn shipped_default_yaml_equals_builtin_defaults() {
    let text = include_str!("../../config/default.yaml");
    assert_eq!(parse(text).unwrap(), Config::default());
}

#[test]
fn rendered_config_parses_back_identically() {
    let mut c = Config::default();
    assert_eq!(parse(&c.to_yaml().unwrap()).unwrap(), c);
    c.ports = "22,8000-8100,443".parse().unwrap();
    c.outputs.syslog = Some("udp://[::1]:1514".parse().unwrap());
    c.outputs.jsonl = Some("/var/log/procwatch.jsonl".into());
    c.api.token = Some("secret".into());
    c.baseline.learning_period = Duration::from_secs(90);
    c.sweep_interval = Duration::from_millis(500);
    c.whitelist.users = vec!["root".into(), "1000".into()];
    let yaml = c.to_yaml().unwrap();
    assert_eq!(parse(&yaml).unwrap(), c, "{yaml}");
}

#[test]
fn docs_examples_are_valid() {
    let doc = include_str!("../../../docs/config.md");
    let mut blocks = 0;
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let body = block.split("```").next().unwrap();
        if let Err(e) = parse(body) {
            panic!("docs/config.md yaml block {i} is invalid: {e}\n{body}");
        }
        blocks += 1;
    }
    assert!(blocks >= 1);
}

#[test]
fn schema_keys_cover_every_section() {
    let keys = schema_keys();
    for k in [
        "cpu_high",
        "ports",
        "weights.tmp_exe",
        "weights.reverse_shell",
        "whitelist.exe_paths",
        "whitelist.users",
        "enforce.allow_exe_paths",
        "dump.max_total_bytes",
        "outputs.syslog",
        "baseline.learning_period",
        "api.token",
        "history.enabled",
        "history.path",
        "history.max_age",
        "history.max_rows",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
}

#[test]
fn rule_ids_round_trip() {
    for rule in Rule::ALL {
        assert_eq!(rule.as_str().parse::<Rule>().unwrap(), rule);
        assert_eq!(
            serde_json::to_string(&rule).unwrap(),
            format!("\"{}\"", rule.as_str())
        );
        // Each rule id is also a weights: key.
        assert!(schema_keys().contains(&format!("weights.{rule}")));
    }
    assert!("tmp_ex".parse::<Rule>().is_err());
}

// ---- layering ----

#[test]
fn each_layer_overrides_only_its_keys() {
    let dir = Scratch::new();
    let sources = ConfigSources {
        system: Some(dir.file("etc.yaml", "weights:\n  tmp_exe: 7\n")),
        user: Some(dir.file("user.yaml", "min_score: 4.5\n")),
    };
    let cli = dir.file("cli.yaml", "ports: \"22,8000-8100\"\n");
    let loaded = load_report(&sources, Some(&cli)).unwrap();
    let c = &loaded.config;

    let mut expected = Config::default();
    expected.weights.tmp_exe = 7.0;
    expected.min_score = 4.5;
    expected.ports = PortSet::from_ranges([(22, 22), (8000, 8100)]);
    assert_eq!(*c, expected);

    let keys: Vec<_> = loaded.layers.iter().map(|l| l.keys.clone()).collect();
    assert_eq!(
        keys,
        [
            vec![],
            vec!["weights.tmp_exe"],
            vec!["min_score"],
            vec!["ports"]
        ]
    );
}

#[test]
fn later_layers_win_mappings_merge_lists_replace() {
    let dir = Scratch::new();
    let sources = ConfigSources {
        system: Some(dir.file(
            "etc.yaml",
            "min_score: 5\nweights:\n  tmp_exe: 1\ntemp_dirs: [/a, /b]\noutputs:\n  jsonl: /var/log/a.jsonl\n",
        )),
        user: Some(dir.file(
            "user.yaml",
            "min_score: 6\nweights:\n  ptrace: 2\ntemp_dirs: [/c]\noutputs:\n  jsonl: null\n",
        )),
    };
    let c = load(&sources, None).unwrap();
    assert_eq!(c.min_score, 6.0);
    assert_eq!(c.weights.tmp_exe, 1.0);
    assert_eq!(c.weights.ptrace, 2.0);
    assert_eq!(c.weights.deleted_exe, 5.0);
    assert_eq!(c.temp_dirs, [Path::new("/c")]);
    // An explicit null turns off a sink a lower layer turned on.
    assert_eq!(c.outputs.jsonl, None);
}

#[test]
fn missing_optional_files_are_fine() {
    let dir = Scratch::new();
    let sources = ConfigSources {
        system: Some(dir.0.join("absent-etc.yaml")),
        user: Some(dir.0.join("absent-user.yaml")),
    };
    let loaded = load_report(&sources, None).unwrap();
    assert_eq!(loaded.config, Config::default());
    assert_eq!(loaded.layers.len(), 3);
    assert!(!loaded.layers[1].present && !loaded.layers[2].present);
    assert_eq!(
        load(&ConfigSources::none(), None).unwrap(),
        Config::default()
    );
}

#[test]
fn missing_cli_config_is_an_error() {
    let dir = Scratch::new();
    let missing = dir.0.join("nope.yaml");
    let err = load(&ConfigSources::none(), Some(&missing)).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.yaml"), "{err}");
}

#[test]
fn broken_system_file_is_named() {
    let dir = Scratch::new();
    let etc = dir.file("etc.yaml", "min_score: 1\nweights:\n  tmp_exe: high\n");
    let sources = ConfigSources {
        system: Some(etc.clone()),
        user: Some(dir.file("user.yaml", "min_score: 2\n")),
    };
    let err = load(&sources, None).unwrap_err();
    let d = err.diagnostic().unwrap();
    assert_eq!(d.origin, etc.display().to_string());
    assert_eq!((d.line, d.column), (Some(3), Some(12)));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:12: weights.tmp_exe: expected a number (0 or more), found \"high\"",
            etc.display()
        )
    );
}

#[test]
fn unreadable_system_file_is_an_error() {
    let dir = Scratch::new();
    // A directory where the file should be is not "absent": it is refused.
    let sources = ConfigSources {
        system: Some(dir.0.clone()),
        user: None,
    };
    let err = load(&sources, None).unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::Refused {
                why: crate::trusted_file::Refusal::NotRegular("directory"),
                ..
            }
        ),
        "{err}"
    );
}

// ---- unknown keys ----

#[test]
fn unknown_top_level_key_with_suggestion() {
    let d = assert_err("cpu_high: 50\nmin_scor: 3\n", 2, Some("min_scor"), "");
    assert_eq!(d.kind, DiagnosticKind::UnknownKey);
    assert_eq!(d.column, Some(1));
    assert_eq!(
        d.to_string(),
        "test.yaml:2:1: unknown key 'min_scor' (did you mean 'min_score'?)"
    );
}

#[test]
fn unknown_nested_key_with_suggestion() {
    let d = assert_err(
        "# weights\nweights:\n  deleted_exe: 5\n  tmp_ex: 4\n",
        4,
        Some("weights.tmp_ex"),
        "did you mean 'weights.tmp_exe'?",
    );
    assert_eq!(d.column, Some(3));
    assert_eq!(d.kind, DiagnosticKind::UnknownKey);
}

#[test]
fn unknown_key_without_close_match_lists_the_keys() {
    let d = assert_err("dump:\n  zzz: 1\n", 2, Some("dump.zzz"), "expected one of");
    assert!(d.message.contains("max_exe_bytes"), "{d}");
}

#[test]
fn key_at_the_wrong_depth_is_pointed_out() {
    assert_err(
        "tmp_exe: 4\n",
        1,
        Some("tmp_exe"),
        "did you mean 'weights.tmp_exe'?",
    );
}

#[test]
fn unknown_key_in_flow_mapping_has_a_line() {
    assert_err(
        "min_score: 1\nweights: {tmp_exe: 1, tmp_ex: 4}\n",
        2,
        Some("weights.tmp_ex"),
        "did you mean",
    );
}

// ---- types ----

#[test]
fn wrong_type_names_line_key_and_value() {
    let d = assert_err(
        "weights:\n  tmp_exe: high\n",
        2,
        Some("weights.tmp_exe"),
        "expected a number",
    );
    assert_eq!(d.kind, DiagnosticKind::WrongType);
    assert!(d.message.ends_with("found \"high\""), "{d}");
    assert_err("cpu_high: [1]\n", 1, Some("cpu_high"), "found a list");
    assert_err(
        "enforce:\n  ptrace: yes\n",
        2,
        Some("enforce.ptrace"),
        "expected a boolean",
    );
    assert_err("temp_dirs: /tmp\n", 1, Some("temp_dirs"), "expected a list");
    assert_err(
        "weights: 3\n",
        1,
        Some("weights"),
        "expected a mapping of rule ids",
    );
    assert_err("min_score:\n", 1, Some("min_score"), "found null");
    assert_err(
        "api:\n  listen: 8080\n",
        2,
        Some("api.listen"),
        "not an IP address and port",
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    let d = diag("- a\n- b\n");
    assert_eq!(d.line, Some(1));
    assert!(d.message.contains("expected a mapping"), "{d}");
}

// ---- impossible values ----

#[test]
fn impossible_values_are_located() {
    assert_err(
        "min_score: -1\n",
        1,
        Some("min_score"),
        "must not be negative",
    );
    assert_err(
        "ml_weight: -0.5\n",
        1,
        Some("ml_weight"),
        "must not be negative",
    );
    assert_err("cpu_high: 0\n", 1, Some("cpu_high"), "greater than 0");
    assert_err(
        "cpu_high: .nan\n",
        1,
        Some("cpu_high"),
        "not a finite number",
    );
    assert_err("a: 1\n", 1, Some("a"), "unknown key");
    assert_err(
        "weights:\n  ptrace: -2\n",
        2,
        Some("weights.ptrace"),
        "negative",
    );
    assert_err(
        "sweep_interval: 0\n",
        1,
        Some("sweep_interval"),
        "greater than 0",
    );
    assert_err(
        "cpu_window: \"0s\"\n",
        1,
        Some("cpu_window"),
        "greater than 0",
    );
    assert_err("exited_grace: -5\n", 1, Some("exited_grace"), "negative");
    assert_err("max_processes: 0\n", 1, Some("max_processes"), "1 or more");
    assert_err(
        "ring_buffer_kib: 3000\n",
        1,
        Some("ring_buffer_kib"),
        "power of two",
    );
    assert_err(
        "ring_buffer_kib: 2\n",
        1,
        Some("ring_buffer_kib"),
        "power of two",
    );
    assert_err(
        "max_processes: 1.5\n",
        1,
        Some("max_processes"),
        "whole number",
    );
    assert_err(
        "enforce:\n  allow_exe_paths:\n    - /usr/bin/gdb\n    - bin/java\n",
        4,
        Some("enforce.allow_exe_paths[1]"),
        "must be absolute",
    );
    assert_err(
        "whitelist:\n  exe_paths: [\"\"]\n",
        2,
        Some("whitelist.exe_paths[0]"),
        "empty",
    );
    assert_err(
        "baseline:\n  model_path: model.json\n",
        2,
        Some("baseline.model_path"),
        "absolute",
    );
    assert_err(
        "outputs:\n  jsonl: out.jsonl\n",
        2,
        Some("outputs.jsonl"),
        "absolute",
    );
    assert_err(
        "api:\n  token: \"\"\n",
        2,
        Some("api.token"),
        "must not be empty",
    );
    assert_err(
        "whitelist:\n  users: [\"a b\"]\n",
        2,
        Some("whitelist.users[0]"),
        "not a valid user",
    );
    assert_err(
        "whitelist:\n  users: [99999999999]\n",
        2,
        Some("whitelist.users[0]"),
        "out of range",
    );
    assert_err(
        "dump:\n  max_exe_bytes: -1\n",
        2,
        Some("dump.max_exe_bytes"),
        "negative",
    );
    assert_err(
        "dump:\n  max_exe_bytes: 10 parsecs\n",
        2,
        Some("dump.max_exe_bytes"),
        "not a size",
    );
}

#[test]
fn bad_ports_are_located() {
    let d = assert_err(
        "ports: \"80,70000\"\n",
        1,
        Some("ports"),
        "port 70000 is out of range",
    );
    assert_eq!(d.kind, DiagnosticKind::BadValue);
    assert_eq!(d.column, Some(8));
    assert_err("ports: \"9000-8000\"\n", 1, Some("ports"), "reversed");
    assert_err("ports: \"0\"\n", 1, Some("ports"), "out of range");
    assert_err("ports: 0\n", 1, Some("ports"), "out of range");
    assert_err("ports: \"80,,443\"\n", 1, Some("ports"), "empty entry");
    assert_err("ports: \"http\"\n", 1, Some("ports"), "not a port");
    assert_err(
        "ports:\n  - 80\n  - 70000\n",
        3,
        Some("ports[1]"),
        "port 70000 is out of range",
    );
    assert_err(
        "ports: [80, \"9000-8000\"]\n",
        1,
        Some("ports[1]"),
        "reversed",
    );
    assert_err("ports: [-1]\n", 1, Some("ports[0]"), "out of range");
    assert_err(
        "ports: [true]\n",
        1,
        Some("ports[0]"),
        "expected a port number",
    );
}

#[test]
fn bad_syslog_urls_are_located() {
    for bad in [
        "http://x:514",
        "udp://",
        "udp://host:0",
        "tcp://host:70000",
        "tcp://host:abc",
        "unix://dev/log",
        "/dev/log",
        "udp://::1:514",
    ] {
        let text = format!("outputs:\n  syslog: \"{bad}\"\n");
        assert_err(&text, 2, Some("outputs.syslog"), "");
    }
}

#[test]
fn cross_file_check_blames_the_last_setter() {
    let dir = Scratch::new();
    let sources = ConfigSources {
        system: Some(dir.file("etc.yaml", "dump:\n  max_total_bytes: 1GiB\n")),
        user: Some(dir.file("user.yaml", "min_score: 1\ndump:\n  max_exe_bytes: 2GiB\n")),
    };
    let err = load(&sources, None).unwrap_err();
    let d = err.diagnostic().unwrap();
    assert!(d.origin.ends_with("user.yaml"), "{d}");
    assert_eq!((d.line, d.column), (Some(3), Some(3)));
    assert_eq!(d.key.as_deref(), Some("dump.max_exe_bytes"));
    assert!(
        d.message.contains("must not exceed dump.max_total_bytes"),
        "{d}"
    );
    // Flow style falls back to the enclosing key's line.
    let d = assert_err(
        "\ndump: {max_exe_bytes: 20MiB, max_total_bytes: 10MiB}\n",
        2,
        Some("dump.max_total_bytes"),
        "at least",
    );
    assert_eq!(d.column, Some(1));
}

// ---- hostile numbers ----

/// `key: value` as block YAML for a dotted key, and the line the value is on.
fn nested(key: &str, value: &str) -> (String, usize) {
    let parts: Vec<&str> = key.split('.').collect();
    let mut text = String::new();
    for (depth, part) in parts.iter().enumerate() {
        text.push_str(&"  ".repeat(depth));
        text.push_str(part);
        text.push(':');
        if depth + 1 == parts.len() {
            text.push(' ');
            text.push_str(value);
        }
        text.push('\n');
    }
    (text, parts.len())
}

/// Every numeric key refuses non-finite, negative, overflowing and meaningless values with
/// its own key and line, and no panic.
#[test]
fn every_numeric_key_refuses_hostile_values() {
    // Refused by every numeric key.
    const ALWAYS: &[&str] = &[
        ".inf",
        "-.inf",
        ".nan",
        "-1",
        "-0.5",
        "1e30",
        "99999999999999999999999999",
        "-99999999999999999999999999",
        "\"1e30s\"",
        "\"inf\"",
        "\"nan\"",
        "\"\"",
        "[]",
        "{}",
        "true",
    ];
    let scores = [
        "min_score",
        "ml_weight",
        "weights.deleted_exe",
        "weights.tmp_exe",
        "weights.wx_mem",
        "weights.ptrace",
        "weights.high_cpu",
        "weights.empty_cmdline",
        "weights.suspicious_port",
        "weights.fileless_exe",
        "weights.reverse_shell",
    ];
    let mut cases: Vec<(&str, &str)> = Vec::new();
    for key in scores {
        cases.extend([(key, "1000001"), (key, "1.0e7")]);
    }
    cases.extend([("cpu_high", "0"), ("cpu_high", "0.0"), ("cpu_high", "2e6")]);
    for key in ["sweep_interval", "cpu_window"] {
        for v in ["0", "0.0", "0.05", "\"10ms\"", "\"0s\"", "\"99ms\""] {
            cases.push((key, v));
        }
    }
    for key in [
        "sweep_interval",
        "cpu_window",
        "exited_grace",
        "baseline.learning_period",
    ] {
        for v in [
            "315360001",
            "18446744073709551615",
            "\"3651d\"",
            "\"3000d3000d\"",
            "\"100000000000000000000h\"",
            "\"-5s\"",
            "\"1e3s\"",
            "\".s\"",
            "\"5 parsecs\"",
        ] {
            cases.push((key, v));
        }
    }
    cases.extend([
        ("max_processes", "0"),
        ("max_processes", "16777217"),
        ("max_processes", "18446744073709551615"),
        ("ring_buffer_kib", "0"),
        ("ring_buffer_kib", "3"),
        ("ring_buffer_kib", "2097152"),
        ("ring_buffer_kib", "4294967296"),
        ("dump.max_exe_bytes", "\"99999999999TiB\""),
        ("dump.max_exe_bytes", "\"1.5GiB\""),
        ("dump.max_total_bytes", "0"),
        ("dump.max_total_bytes", "1000"),
        ("dump.max_total_bytes", "\"1KiB\""),
        ("ports", "0"),
        ("ports", "70000"),
        ("ports", "\"1-99999999999999999999\""),
        ("api.listen", "\"127.0.0.1:0\""),
        ("api.listen", "\"[::1]:0\""),
        ("api.listen", "\"127.0.0.1:65536\""),
        ("api.max_body_bytes", "10"),
        ("api.max_body_bytes", "\"1GiB\""),
        ("api.max_connections", "0"),
        ("api.rate_limit", "0"),
        ("api.rate_limit", "-1"),
    ]);
    let every = [
        "cpu_high",
        "max_processes",
        "ring_buffer_kib",
        "dump.max_exe_bytes",
        "dump.max_total_bytes",
        "sweep_interval",
        "cpu_window",
        "exited_grace",
        "baseline.learning_period",
    ];
    for key in scores.iter().chain(&every) {
        for v in ALWAYS {
            cases.push((key, v));
        }
    }
    for (key, value) in cases {
        let (text, line) = nested(key, value);
        let d = match parse(&text) {
            Ok(c) => panic!("{key}: {value} accepted: {c:?}"),
            Err(e) => e.diagnostic().cloned().unwrap(),
        };
        assert_eq!(d.key.as_deref(), Some(key), "{key}: {value}: {d}");
        assert_eq!(d.line, Some(line), "{key}: {value}: {d}");
        assert!(d.to_string().starts_with("test.yaml:"), "{d}");
    }
}

#[test]
fn numeric_limits_accept_their_edges() {
    let c = parse(
        "min_score: 1000000\ncpu_high: 0.001\nsweep_interval: 100ms\ncpu_window: 0.1\n\
         exited_grace: 0\nmax_processes: 16777216\nring_buffer_kib: 1048576\n\
         baseline:\n  learning_period: 3650d\ndump:\n  max_exe_bytes: 0\n  max_total_bytes: 1MiB\n",
    )
    .unwrap();
    assert_eq!(c.min_score, 1e6);
    assert_eq!(c.sweep_interval, Duration::from_millis(100));
    assert_eq!(c.cpu_window, Duration::from_millis(100));
    assert_eq!(c.max_processes, 1 << 24);
    assert_eq!(c.baseline.learning_period, crate::bounds::MAX_DURATION);
    assert_eq!(c.dump.max_total_bytes, 1 << 20);
}

/// The messages say what is wrong, not just "invalid".
#[test]
fn hostile_number_messages_are_clear() {
    assert_err(
        "min_score: .inf\n",
        1,
        Some("min_score"),
        "not a finite number",
    );
    assert_err("min_score: 1e30\n", 1, Some("min_score"), "at most 1000000");
    assert_err(
        "sweep_interval: 1e30\n",
        1,
        Some("sweep_interval"),
        "at most 3650d",
    );
    assert_err(
        "sweep_interval: \"10ms\"\n",
        1,
        Some("sweep_interval"),
        "at least 100ms",
    );
    assert_err(
        "exited_grace: .nan\n",
        1,
        Some("exited_grace"),
        "not a finite number",
    );
    assert_err(
        "max_processes: 99999999999\n",
        1,
        Some("max_processes"),
        "at most 16777216",
    );
    assert_err(
        "dump:\n  max_total_bytes: 1000\n",
        2,
        Some("dump.max_total_bytes"),
        "at least 1048576 bytes",
    );
}

// ---- syntax ----

#[test]
fn top_level_line_without_colon_is_located() {
    // libyaml reads the stray scalar as a document of its own and the rest as a second one.
    let d = diag("# c\ncpu_high 75.0   # typo\nmin_score: 3\n");
    assert_eq!(d.kind, DiagnosticKind::Syntax);
    assert_eq!((d.line, d.column), (Some(2), Some(1)), "{d}");
    assert!(d.message.contains("not a 'key: value' pair"), "{d}");
    assert!(!d.message.contains("---"), "{d}");
}

#[test]
fn messages_quoting_the_file_are_one_line_without_control_characters() {
    for text in [
        "dump:\n  max_exe_bytes: \"\\u0000\\x1b[2J\\nforged: 1\"\n",
        "\"a\\nb\\x1b\": 1\n",
        "ports: \"8\\n0\"\n",
    ] {
        let shown = parse(text).unwrap_err().to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.starts_with("test.yaml:"), "{shown}");
    }
}

#[test]
fn bad_indentation_is_a_located_syntax_error() {
    let d = diag("weights:\n  tmp_exe: 1\n ptrace: 2\n");
    assert_eq!(d.kind, DiagnosticKind::Syntax);
    assert_eq!(d.line, Some(3));
    assert!(d.message.starts_with("invalid YAML"), "{d}");
    let d = diag("ports: [80, 443\nmin_score: 1\n");
    assert_eq!(d.kind, DiagnosticKind::Syntax);
    assert!(d.line.is_some(), "{d}");
    let d = diag("a: \"unterminated\n");
    assert_eq!(d.kind, DiagnosticKind::Syntax);
}

#[test]
fn duplicate_keys_point_at_the_repeat() {
    let d = assert_err(
        "min_score: 1\ncpu_high: 2\nmin_score: 3\n",
        3,
        Some("min_score"),
        "duplicate key",
    );
    assert_eq!(d.kind, DiagnosticKind::DuplicateKey);
    assert_err(
        "weights:\n  tmp_exe: 1\n  ptrace: 1\n  tmp_exe: 2\n",
        4,
        Some("weights.tmp_exe"),
        "duplicate key 'weights.tmp_exe'",
    );
}

#[test]
fn second_document_is_located() {
    let d = diag("min_score: 1\n---\nmin_score: 2\n");
    assert_eq!(d.line, Some(2));
    assert!(d.message.contains("one YAML document"), "{d}");
}

// ---- value forms ----

#[test]
fn ports_accept_strings_lists_and_numbers() {
    let c = parse("ports: \"80, 443,8000-8100\"\n").unwrap();
    assert_eq!(c.ports.ranges(), [(80, 80), (443, 443), (8000, 8100)]);
    let c = parse("ports: [80, 443, \"8000-8100\"]\n").unwrap();
    assert_eq!(c.ports.to_string(), "80,443,8000-8100");
    let c = parse("ports:\n  - 22\n  - \"1000-2000\"\n  - 1500\n").unwrap();
    assert_eq!(c.ports.to_string(), "22,1000-2000");
    let c = parse("ports: 8080\n").unwrap();
    assert_eq!(c.ports.to_string(), "8080");
    let c = parse("ports: 80,443\n").unwrap();
    assert_eq!(c.ports.to_string(), "80,443");
    assert!(parse("ports: \"\"\n").unwrap().ports.is_empty());
    assert!(parse("ports: []\n").unwrap().ports.is_empty());
    let c = parse("ports: \"8000-8100,443\"\n").unwrap();
    assert!(c.port_allowed(443) && c.port_allowed(8000) && c.port_allowed(8050));
    assert!(c.port_allowed(8100) && !c.port_allowed(8101) && !c.port_allowed(80));
    assert!(!c.port_allowed(0) && !c.port_allowed(65535));
}

#[test]
fn port_sets_merge_adjacent_ranges() {
    let p: PortSet = "90,80-89,1-1,65535,2".parse().unwrap();
    assert_eq!(p.to_string(), "1-2,80-90,65535");
    assert!(p.contains(65535) && p.contains(85) && !p.contains(3));
}

#[test]
fn durations_parse_in_every_form() {
    for (text, secs) in [
        ("90s", 90.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172_800.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("30", 30.0),
        ("0", 0.0),
    ] {
        assert_eq!(parse_duration(text).unwrap().as_secs_f64(), secs, "{text}");
    }
    for bad in ["", "s", "5x", "-5s", "5 s s", "1e999s", "abc"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
    }
    let c = parse("sweep_interval: 2\ncpu_window: 0.5\nexited_grace: \"2m\"\nbaseline:\n  learning_period: 90s\n")
        .unwrap();
    assert_eq!(c.sweep_interval, Duration::from_secs(2));
    assert_eq!(c.cpu_window, Duration::from_millis(500));
    assert_eq!(c.exited_grace, Duration::from_secs(120));
    assert_eq!(c.baseline.learning_period, Duration::from_secs(90));
    assert_eq!(
        parse("exited_grace: 0\n").unwrap().exited_grace,
        Duration::ZERO
    );
    assert_err(
        "baseline:\n  learning_period: 3 weeks\n",
        2,
        Some("baseline.learning_period"),
        "not a duration",
    );
}

#[test]
fn durations_format_like_the_file() {
    for (secs, text) in [(86400, "24h"), (900, "15m"), (90, "90s"), (0, "0s")] {
        assert_eq!(format_duration(Duration::from_secs(secs)), text);
    }
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn byte_sizes_parse() {
    assert_eq!(parse_bytes("100MiB").unwrap(), 100 << 20);
    assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
    assert_eq!(parse_bytes("10 MB").unwrap(), 10_000_000);
    assert_eq!(parse_bytes("4096").unwrap(), 4096);
    assert!(parse_bytes("99999999999TiB").is_err());
    assert!(parse_bytes("1.5GiB").is_err());
    let c = parse("dump:\n  max_exe_bytes: 1MiB\n  max_total_bytes: 2048000\n").unwrap();
    assert_eq!(
        (c.dump.max_exe_bytes, c.dump.max_total_bytes),
        (1 << 20, 2_048_000)
    );
}

#[test]
fn syslog_urls_parse() {
    for (text, want) in [
        ("unix:///dev/log", SyslogTarget::Unix("/dev/log".into())),
        (
            "udp://logs:514",
            SyslogTarget::Udp {
                host: "logs".into(),
                port: 514,
            },
        ),
        (
            "tcp://10.0.0.1:6514",
            SyslogTarget::Tcp {
                host: "10.0.0.1".into(),
                port: 6514,
            },
        ),
        (
            "udp://logs",
            SyslogTarget::Udp {
                host: "logs".into(),
                port: 514,
            },
        ),
        (
            "tcp://[::1]:601",
            SyslogTarget::Tcp {
                host: "::1".into(),
                port: 601,
            },
        ),
    ] {
        let got: SyslogTarget = text.parse().unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_string().parse::<SyslogTarget>().unwrap(), got);
    }
    let c = parse("outputs:\n  syslog: unix:///dev/log\n  stdout: false\n").unwrap();
    assert_eq!(
        c.outputs.syslog,
        Some(SyslogTarget::Unix("/dev/log".into()))
    );
    assert!(!c.outputs.stdout);
}

#[test]
fn numbers_accept_integers_and_floats() {
    let c =
        parse("cpu_high: 150\nmin_score: 0\nml_weight: 0.25\nweights:\n  high_cpu: 1.5\n").unwrap();
    assert_eq!((c.cpu_high, c.min_score, c.ml_weight), (150.0, 0.0, 0.25));
    assert_eq!(c.weight(Rule::HighCpu), 1.5);
}

#[test]
fn whitelist_helpers() {
    let c = parse(
        "whitelist:\n  exe_paths: [/usr/bin/legit_tool]\n  users: [trusted_user, 1001]\nenforce:\n  allow_exe_paths: [/usr/bin/gdb]\n",
    )
    .unwrap();
    // Executables are matched by file identity (identity::AllowIds), not by these strings.
    assert_eq!(c.whitelist.exe_paths, [Path::new("/usr/bin/legit_tool")]);
    assert!(c.user_whitelisted(Some("trusted_user"), 1000));
    assert!(c.user_whitelisted(None, 1001));
    assert!(!c.user_whitelisted(Some("mallory"), 1002));
    assert_eq!(c.enforce.allow_exe_paths, [Path::new("/usr/bin/gdb")]);
    assert!(c.in_temp_dir(Path::new("/tmp/x/payload")));
    assert!(c.in_temp_dir(Path::new("/dev/shm/a")));
    assert!(!c.in_temp_dir(Path::new("/tmpfoo/a")));
}

#[test]
fn seed_readme_example_is_accepted() {
    let text = r#"
cpu_high: 75.0
min_score: 3.0
ml_weight: 2.0
ports: "80,443"
weights:
  deleted_exe: 5
  tmp_exe: 4
  wx_mem: 4
  ptrace: 5
  high_cpu: 3
  empty_cmdline: 2
  suspicious_port: 4
whitelist:
  exe_paths:
    - "/usr/bin/legit_tool"
  users:
    - "trusted_user"
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.whitelist.users, ["trusted_user"]);
    assert_eq!(c.weights, Weights::default());
}

#[test]
fn diagnostic_display_without_position() {
    let d = Diagnostic {
        origin: "f.yaml".into(),
        line: None,
        column: None,
        key: Some("ports".into()),
        kind: DiagnosticKind::BadValue,
        message: "bad".into(),
    };
    assert_eq!(d.to_string(), "f.yaml: ports: bad");
}

#[test]
fn edit_distance_basics() {
    use super::error::edit_distance;
    assert_eq!(edit_distance("min_scor", "min_score"), 1);
    assert_eq!(edit_distance("tmp_ex", "tmp_exe"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

// ---- baseline ----

#[test]
fn baseline_keys_parse_and_layer() {
    let c = parse(
        "baseline:\n  learning_period: 2h\n  stable_after: 15m\n  min_processes: 3\n  \
         watched_prefixes: [/etc, /srv/*/conf]\n  model_path: /var/lib/procwatch/model.json\n  \
         unknown_executable: 0.5\n  rss_std_floor: 64MiB\n  caps:\n    files: 100\n  \
         suppress:\n    ptrace: true\n    wx_mem: false\n",
    )
    .unwrap();
    let b = &c.baseline;
    assert_eq!(b.learning_period, Duration::from_secs(7200));
    assert_eq!(b.stable_after, Duration::from_secs(900));
    assert_eq!(b.min_processes, 3);
    assert_eq!(
        b.watched_prefixes,
        [Path::new("/etc"), Path::new("/srv/*/conf")]
    );
    assert_eq!(
        b.model_path.as_deref(),
        Some(Path::new("/var/lib/procwatch/model.json"))
    );
    assert_eq!(b.unknown_executable, 0.5);
    assert_eq!(b.rss_std_floor, 64 << 20);
    assert_eq!(b.caps.files, 100);
    assert_eq!(
        b.caps.network,
        Caps::default().network,
        "other caps keep their default"
    );
    assert!(b.suppress.get(Rule::Ptrace) && !b.suppress.get(Rule::WxMem));
    assert!(b.suppress.get(Rule::SuspiciousPort));
    // null brings back the default model path.
    let c = parse("baseline:\n  model_path: null\n").unwrap();
    assert_eq!(c.baseline.model_path, None);
    let yaml = Config::default().to_yaml().unwrap();
    assert!(yaml.contains("model_path: null"), "{yaml}");
}

#[test]
fn bad_baseline_values_are_located() {
    assert_err(
        "baseline:\n  unknown_executable: 1.5\n",
        2,
        Some("baseline.unknown_executable"),
        "between 0 and 1",
    );
    assert_err(
        "baseline:\n  min_processes: 0\n",
        2,
        Some("baseline.min_processes"),
        "1 or more",
    );
    assert_err(
        "baseline:\n  watched_prefixes:\n    - /etc\n    - /proc/*x/mem\n",
        4,
        Some("baseline.watched_prefixes[1]"),
        "whole path component",
    );
    assert_err(
        "baseline:\n  watched_prefixes: [etc]\n",
        2,
        Some("baseline.watched_prefixes[0]"),
        "must be absolute",
    );
    assert_err(
        "baseline:\n  caps:\n    files: 0\n",
        3,
        Some("baseline.caps.files"),
        "1 or more",
    );
    assert_err(
        "baseline:\n  suppress:\n    reverse_shel: true\n",
        3,
        Some("baseline.suppress.reverse_shel"),
        "reverse_shell",
    );
    assert_err(
        "baseline:\n  spike_sigma: 0\n",
        2,
        Some("baseline.spike_sigma"),
        "greater than 0",
    );
    assert_err(
        "baseline:\n  model_path: model.json\n",
        2,
        Some("baseline.model_path"),
        "must be absolute",
    );
}

// ---- actions and kill_min_score ----

#[test]
fn per_rule_actions_layer_and_validate() {
    let c = parse("actions:\n  tmp_exe: alert\n  fileless_exe: kill\nkill_min_score: 8\n").unwrap();
    assert_eq!(c.actions.get(Rule::TmpExe), Some(RuleAction::Alert));
    assert_eq!(c.actions.get(Rule::FilelessExe), Some(RuleAction::Kill));
    assert_eq!(c.actions.get(Rule::WxMem), None);
    assert_eq!(c.kill_threshold(), 8.0);
    assert_eq!(Config::default().kill_threshold(), 3.0, "unset: min_score");
    // null goes back to the command line's choice.
    let dir = Scratch::new();
    let sources = ConfigSources {
        system: Some(dir.file("etc.yaml", "actions:\n  tmp_exe: kill\n")),
        user: Some(dir.file("user.yaml", "actions:\n  tmp_exe: ~\n")),
    };
    assert_eq!(
        load(&sources, None).unwrap().actions.get(Rule::TmpExe),
        None
    );
    // Errors are located on the value.
    assert_err(
        "\nactions:\n  tmp_exe: shoot\n",
        3,
        Some("actions.tmp_exe"),
        "",
    );
    assert_err("actions:\n  nosuch: kill\n", 2, Some("actions.nosuch"), "");
    let d = assert_err(
        "min_score: 5\n\nkill_min_score: 4\n",
        3,
        Some("kill_min_score"),
        "below min_score",
    );
    assert_eq!(d.column, Some(1));
}

#[test]
fn api_section_keys_are_validated() {
    let c = parse(
        "api:\n  listen: 127.0.0.1:9000\n  token_file: /etc/procwatch/token\n  \
         cors_origins: [https://ops.example.com, \"http://[::1]:8080\"]\n  max_body_bytes: 1KiB\n  \
         max_connections: 10\n  rate_limit: 0.5\n  rate_burst: 3\n",
    )
    .unwrap();
    assert_eq!(c.api.listen.map(|l| l.port()), Some(9000));
    assert_eq!(c.api.cors_origins.len(), 2);
    assert_eq!(c.api.max_body_bytes, 1024);
    assert_eq!(c.api.rate_limit, 0.5);
    for (text, needle) in [
        ("api:\n  cors_origins: [\"*\"]\n", "must start with http"),
        (
            "api:\n  cors_origins: [\"https://a.example/\"]\n",
            "no path",
        ),
        (
            "api:\n  cors_origins: [ftp://a.example]\n",
            "must start with http",
        ),
        ("api:\n  token_file: relative/token\n", "must be absolute"),
        ("api:\n  listen: 0.0.0.0:0\n", "port 0"),
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains(needle) && e.contains("api."), "{text}: {e}");
    }
}

// ---- history ----

#[test]
fn history_defaults_and_keys() {
    let c = parse("").unwrap();
    assert!(c.history.enabled);
    assert_eq!(c.history.path, None);
    assert_eq!(c.history.max_age, Duration::from_secs(30 * 86_400));
    assert_eq!(c.history.max_rows, 100_000);
    let c = parse(
        "history:\n  enabled: false\n  path: /srv/pw/alerts.db\n  max_age: 7d\n  max_rows: 10\n",
    )
    .unwrap();
    assert!(!c.history.enabled);
    assert_eq!(
        c.history.path.as_deref(),
        Some(std::path::Path::new("/srv/pw/alerts.db"))
    );
    assert_eq!(c.history.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(c.history.max_rows, 10);
    // Round trip through `config show`.
    let yaml = c.to_yaml().unwrap();
    assert_eq!(parse(&yaml).unwrap(), c, "{yaml}");
    // null goes back to the default path.
    assert_eq!(
        parse("history:\n  path: null\n").unwrap().history.path,
        None
    );
}

#[test]
fn history_values_are_validated_with_their_key() {
    for (text, key) in [
        ("history:\n  max_rows: 0\n", "history.max_rows"),
        ("history:\n  max_rows: -5\n", "history.max_rows"),
        ("history:\n  max_rows: 1000000000\n", "history.max_rows"),
        ("history:\n  max_age: 0\n", "history.max_age"),
        ("history:\n  max_age: forever\n", "history.max_age"),
        ("history:\n  path: alerts.db\n", "history.path"),
        ("history:\n  enabled: maybe\n", "history.enabled"),
        ("history:\n  size: 5\n", "history"),
    ] {
        let e = parse(text).unwrap_err();
        let d = e.diagnostic().cloned().unwrap();
        assert!(
            d.key.as_deref().is_some_and(|k| k.starts_with(key)),
            "{text:?}: {e}"
        );
        assert_eq!(d.line, Some(2), "{text:?}: {e}");
    }
}

#[test]
fn sensor_ia32_is_auto_on_or_off() {
    assert_eq!(Config::default().sensor.ia32, crate::config::Ia32Mode::Auto);
    for (text, want) in [
        ("auto", crate::config::Ia32Mode::Auto),
        ("on", crate::config::Ia32Mode::On),
        ("off", crate::config::Ia32Mode::Off),
    ] {
        let c = parse(&format!("sensor:\n  ia32: {text}\n")).unwrap();
        assert_eq!(c.sensor.ia32, want, "{text}");
    }
    assert!(schema_keys().contains(&"sensor.ia32".to_string()));
    let d = assert_err("sensor:\n  ia32: maybe\n", 2, Some("sensor.ia32"), "maybe");
    assert!(d.message.contains("off"), "{d}");
    assert_err("sensor:\n  ia64: on\n", 2, Some("sensor.ia64"), "ia64");
}
