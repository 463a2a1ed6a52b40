//! `procwatch baseline ...` through the real binary: every subcommand, its output, its exit
//! status, and that a model file is only ever replaced whole (or not at all). The models are
//! learned by the library from a scripted workload; the monitor's own learning is tested
//! where it is wired in.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use common::{Scratch, procwatch, text};

use procwatch::{
    baseline::{
        Anomaly, AnomalyRule, Behaviour, Learner, Model, Observation, ProcessId,
        net::{Destination, Direction, Proto},
        store::{self, Expect},
    },
    config,
};

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn fails(o: &Output, code: i32) -> String {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stderr)
}

const NGINX: &str = "/usr/sbin/nginx";

fn cfg() -> config::Baseline {
    config::Baseline {
        learning_period: Duration::from_secs(100),
        stable_after: Duration::from_secs(10),
        ..config::Baseline::default()
    }
}

fn pg(port: u16) -> Behaviour<'static> {
    Behaviour::Connect(Destination {
        addr: "10.0.0.5".parse().unwrap(),
        port,
        proto: Proto::Tcp,
        direction: Direction::Outbound,
    })
}

/// A model learned from three nginx processes and one of psql, on host `host`, trained.
fn learned(host: &str) -> (Model, Learner) {
    let mut l = Learner::new(Model::new(1_000, host), &cfg(), 64);
    for pid in 1..=3u32 {
        let p = ProcessId { pid, start: 9 };
        let exe = Path::new(NGINX);
        for b in [
            pg(5432),
            Behaviour::Spawn {
                child_exe: Path::new("/usr/bin/logger"),
            },
            Behaviour::FileOpen(Path::new("/var/www/html/index.html")),
            Behaviour::Sample {
                cpu_pct: Some(3.0),
                rss_bytes: Some(40 << 20),
            },
        ] {
            l.observe(
                &Observation {
                    process: p,
                    exe,
                    behaviour: b,
                },
                1_010,
            );
        }
    }
    let p = ProcessId { pid: 50, start: 9 };
    l.observe(
        &Observation {
            process: p,
            exe: Path::new("/usr/bin/psql"),
            behaviour: pg(5432),
        },
        1_010,
    );
    l.finish_training(1_020);
    (l.model().clone(), l)
}

fn write_model(path: &Path, host: &str) -> Model {
    let (mut m, _) = learned(host);
    store::save(path, &mut m, Expect::Any, 1_030).unwrap();
    m
}

/// Anomalies a process of the trained nginx raises, as an alert's JSON would carry them.
fn alert_json() -> serde_json::Value {
    let (_, mut l) = learned("web-1");
    let p = ProcessId { pid: 99, start: 1 };
    let exe = Path::new(NGINX);
    let mut found: Vec<Anomaly> = Vec::new();
    for b in [
        pg(4444),
        Behaviour::Spawn {
            child_exe: Path::new("/bin/sh"),
        },
    ] {
        found.extend(l.observe(
            &Observation {
                process: p,
                exe,
                behaviour: b,
            },
            2_000,
        ));
    }
    let rules: Vec<AnomalyRule> = found.iter().map(|a| a.rule).collect();
    assert_eq!(
        rules,
        [
            AnomalyRule::NetworkUnknownConnection,
            AnomalyRule::ProcessSpawnUnknown
        ]
    );
    let reasons: Vec<serde_json::Value> = found.iter().map(|a| a.to_reason(1.5)).collect();
    serde_json::json!({
        "schema": "procwatch.alert/v1",
        "exe": NGINX,
        "pid": 99,
        "reasons": reasons,
    })
}

#[test]
fn list_shows_every_executable() {
    let dir = Scratch::new("baseline-cli", "list");
    let model = dir.path("model.json");
    write_model(&model, "web-1");
    let m = model.to_str().unwrap();
    let table = ok(&procwatch(&dir.0, &["baseline", "list", "--model", m]));
    assert!(
        table.starts_with("# revision 1, 2 executables, hosts web-1; trained"),
        "{table}"
    );
    assert!(table.contains("EXECUTABLE"), "{table}");
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('/')).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].starts_with("/usr/bin/psql") && rows[0].contains("monitoring"));
    assert!(
        rows[1].starts_with(NGINX) && rows[1].contains(" 3 "),
        "{}",
        rows[1]
    );

    let j: serde_json::Value = serde_json::from_str(&ok(&procwatch(
        &dir.0,
        &["baseline", "list", "--json", "--model", m],
    )))
    .unwrap();
    assert_eq!(j["format"], "procwatch.baseline");
    assert_eq!(j["executables"][1]["executable"], NGINX);
    assert_eq!(j["learning"]["trained"], true);
}

#[test]
fn the_model_path_comes_from_flag_env_config_or_home() {
    let dir = Scratch::new("baseline-cli", "path");
    // Default: ~/.local/share/procwatch/model.json.
    let default = dir.path(".local/share/procwatch/model.json");
    let e = fails(&procwatch(&dir.0, &["baseline", "list"]), 1);
    assert!(
        e.contains(&format!("{}: no model file there", default.display())),
        "{e}"
    );
    write_model(&default, "home");
    assert!(ok(&procwatch(&dir.0, &["baseline", "list"])).contains("hosts home"));
    // baseline.model_path in a config file.
    let other = dir.path("other.json");
    write_model(&other, "from-config");
    let conf = dir.path("c.yaml");
    std::fs::write(
        &conf,
        format!("baseline:\n  model_path: {}\n", other.display()),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    assert!(
        ok(&procwatch(&dir.0, &["baseline", "list", "--config", c])).contains("hosts from-config")
    );
    // PROCWATCH_MODEL, as the systemd unit sets it.
    let env = Command::new(env!("CARGO_BIN_EXE_procwatch"))
        .args(["baseline", "list"])
        .env("HOME", &dir.0)
        .env("PROCWATCH_MODEL", &other)
        .output()
        .unwrap();
    assert!(ok(&env).contains("hosts from-config"));
}

#[test]
fn show_prints_the_baseline_in_text_and_pwarden_json() {
    let dir = Scratch::new("baseline-cli", "show");
    let model = dir.path("model.json");
    write_model(&model, "web-1");
    let m = model.to_str().unwrap();
    let t = ok(&procwatch(
        &dir.0,
        &["baseline", "show", NGINX, "--model", m],
    ));
    assert!(t.starts_with("/usr/sbin/nginx (nginx)\n"), "{t}");
    assert!(t.contains("tcp outbound private:5432"), "{t}");
    assert!(t.contains("/usr/bin/logger"), "{t}");
    assert!(t.contains("pattern rule:"), "{t}");
    // By name when only one executable has it.
    assert_eq!(
        ok(&procwatch(
            &dir.0,
            &["baseline", "show", "nginx", "--model", m]
        )),
        t
    );

    let j: serde_json::Value = serde_json::from_str(&ok(&procwatch(
        &dir.0,
        &["baseline", "show", NGINX, "--json", "--model", m],
    )))
    .unwrap();
    for key in [
        "name",
        "executable",
        "baseline_established",
        "network",
        "resources",
        "file_patterns",
    ] {
        assert!(j.get(key).is_some(), "{key} missing: {j}");
    }
    assert_eq!(j["name"], "nginx");
    assert_eq!(
        j["baseline_established"], "1970-01-01T00:17:00Z",
        "trained at 1020"
    );
    let tcp = &j["network"]["tcp_connections"][0];
    assert_eq!(tcp["dest_ip"], "private");
    assert_eq!(tcp["dest_port"], 5432);
    assert_eq!(tcp["frequency"], 1.0);
    assert_eq!(j["network"]["udp_connections"], serde_json::json!([]));
    assert_eq!(j["resources"]["cpu_mean"], 3.0);
    assert_eq!(j["resources"]["memory_mean"], f64::from(40u32 << 20));
    assert_eq!(
        j["file_patterns"],
        serde_json::json!(["/var/www/html/index.html"])
    );

    let e = fails(
        &procwatch(
            &dir.0,
            &["baseline", "show", "/usr/bin/nginx", "--model", m],
        ),
        1,
    );
    assert!(
        e.contains("/usr/bin/nginx is not in the model (did you mean /usr/sbin/nginx?)"),
        "{e}"
    );
}

#[test]
fn forget_removes_one_executable() {
    let dir = Scratch::new("baseline-cli", "forget");
    let model = dir.path("model.json");
    write_model(&model, "web-1");
    let m = model.to_str().unwrap();
    let said = ok(&procwatch(
        &dir.0,
        &["baseline", "forget", "/usr/bin/psql", "--model", m],
    ));
    assert!(said.contains("forgot /usr/bin/psql (1 processes"), "{said}");
    assert!(said.contains("(revision 2)"), "{said}");
    let after = store::load(&model).unwrap();
    assert!(!after.executables.contains_key("/usr/bin/psql"));
    assert!(after.executables.contains_key(NGINX));
    let before = std::fs::read(&model).unwrap();
    let e = fails(
        &procwatch(
            &dir.0,
            &["baseline", "forget", "/usr/bin/psql", "--model", m],
        ),
        1,
    );
    assert!(e.contains("/usr/bin/psql is not in the model"), "{e}");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        before,
        "a failed edit writes nothing"
    );
}

#[test]
fn allow_adds_a_port_a_child_or_a_file() {
    let dir = Scratch::new("baseline-cli", "allow");
    let model = dir.path("model.json");
    write_model(&model, "web-1");
    let m = model.to_str().unwrap();
    let said = ok(&procwatch(
        &dir.0,
        &["baseline", "allow", NGINX, "--port", "6379", "--model", m],
    ));
    assert!(
        said.contains("/usr/sbin/nginx: tcp/outbound/any/6379: added as allowed"),
        "{said}"
    );
    let said = ok(&procwatch(
        &dir.0,
        &[
            "baseline", "allow", NGINX, "--port", "53", "--proto", "udp", "--class", "private",
            "--model", m,
        ],
    ));
    assert!(
        said.contains("udp/outbound/private/53: added as allowed"),
        "{said}"
    );
    ok(&procwatch(
        &dir.0,
        &[
            "baseline",
            "allow",
            "nginx",
            "--child",
            "/usr/bin/gzip",
            "--model",
            m,
        ],
    ));
    ok(&procwatch(
        &dir.0,
        &[
            "baseline",
            "allow",
            NGINX,
            "--file",
            "/var/www/*",
            "--model",
            m,
        ],
    ));
    let b = store::load(&model).unwrap().executables[NGINX].clone();
    assert!(b.network.entries.iter().any(|e| e.key.port == 6379));
    assert!(
        b.children
            .entries
            .iter()
            .any(|e| e.key.exe == "/usr/bin/gzip")
    );
    assert!(b.files.entries.iter().any(|e| e.key.path == "/var/www/*"));

    // The command line refuses nonsense with status 2 and touches nothing.
    let before = std::fs::read(&model).unwrap();
    for bad in [
        vec!["baseline", "allow", NGINX, "--model", m],
        vec![
            "baseline", "allow", NGINX, "--port", "80", "--child", "/bin/x", "--model", m,
        ],
        vec!["baseline", "allow", NGINX, "--port", "0", "--model", m],
        vec!["baseline", "allow", NGINX, "--port", "70000", "--model", m],
        vec![
            "baseline", "allow", NGINX, "--port", "80", "--proto", "sctp", "--model", m,
        ],
        vec![
            "baseline", "allow", NGINX, "--child", "/bin/x", "--proto", "udp", "--model", m,
        ],
    ] {
        fails(&procwatch(&dir.0, &bad), 2);
    }
    let e = fails(
        &procwatch(
            &dir.0,
            &["baseline", "allow", NGINX, "--child", "bin/x", "--model", m],
        ),
        1,
    );
    assert!(e.contains("'bin/x' is not an absolute path"), "{e}");
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn accept_adds_what_an_alert_reported() {
    let dir = Scratch::new("baseline-cli", "accept");
    let model = dir.path("model.json");
    write_model(&model, "web-1");
    let m = model.to_str().unwrap();
    let alert = dir.path("alert.json");
    std::fs::write(&alert, serde_json::to_string_pretty(&alert_json()).unwrap()).unwrap();
    let said = ok(&procwatch(
        &dir.0,
        &["baseline", "accept", alert.to_str().unwrap(), "--model", m],
    ));
    assert!(said.contains("added: /usr/sbin/nginx: network_unknown_connection: tcp/outbound/private/4444: added as accepted"), "{said}");
    assert!(
        said.contains("added: /usr/sbin/nginx: process_spawn_unknown: /bin/sh: added as accepted"),
        "{said}"
    );

    // The accepted behaviour is normal now: the same deviations raise nothing.
    let accepted = store::load(&model).unwrap();
    let mut l = Learner::new(accepted, &cfg(), 16);
    let p = ProcessId { pid: 7, start: 7 };
    for b in [
        pg(4444),
        Behaviour::Spawn {
            child_exe: Path::new("/bin/sh"),
        },
    ] {
        let out = l.observe(
            &Observation {
                process: p,
                exe: Path::new(NGINX),
                behaviour: b,
            },
            3_000,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    // JSONL (as the jsonl sink writes) works too; junk is refused without writing.
    let lines = dir.path("alerts.jsonl");
    let one = serde_json::to_string(&alert_json()).unwrap();
    std::fs::write(&lines, format!("{one}\n{one}\n")).unwrap();
    let said = ok(&procwatch(
        &dir.0,
        &["baseline", "accept", lines.to_str().unwrap(), "--model", m],
    ));
    assert!(said.contains("already accepted"), "{said}");
    let before = std::fs::read(&model).unwrap();
    let junk = dir.path("junk.json");
    std::fs::write(&junk, "{\"reasons\": [{\"rule\": \"reverse_shell\"}]}").unwrap();
    let e = fails(
        &procwatch(
            &dir.0,
            &["baseline", "accept", junk.to_str().unwrap(), "--model", m],
        ),
        1,
    );
    assert!(
        e.contains("nothing in the alert can be accepted: reverse_shell"),
        "{e}"
    );
    std::fs::write(&junk, "not json at all\n").unwrap();
    let e = fails(
        &procwatch(
            &dir.0,
            &["baseline", "accept", junk.to_str().unwrap(), "--model", m],
        ),
        1,
    );
    assert!(e.contains("not a procwatch alert"), "{e}");
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn merge_combines_hosts() {
    let dir = Scratch::new("baseline-cli", "merge");
    let a = dir.path("a.json");
    let b = dir.path("b.json");
    write_model(&a, "web-1");
    write_model(&b, "web-2");
    let out = dir.path("fleet/out.json");
    let said = ok(&procwatch(
        &dir.0,
        &[
            "baseline",
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    assert!(
        said.contains("merged 2 models: 2 executables (2 in more than one), hosts web-1, web-2"),
        "{said}"
    );
    let m = store::load(&out).unwrap();
    let n = &m.executables[NGINX];
    assert_eq!(n.processes, 6);
    assert_eq!(n.network.entries[0].count, 6);
    assert_eq!(n.resources.cpu.n, 6);
    assert!(m.learning.trained);
    // Caps from the config hold in the result.
    let conf = dir.path("caps.yaml");
    std::fs::write(&conf, "baseline:\n  caps:\n    executables: 1\n").unwrap();
    let said = ok(&procwatch(
        &dir.0,
        &[
            "baseline",
            "merge",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ],
    ));
    assert!(
        said.contains("evicted by the caps: 1 executables"),
        "{said}"
    );
    assert_eq!(store::load(&out).unwrap().executables.len(), 1);
    fails(
        &procwatch(&dir.0, &["baseline", "merge", a.to_str().unwrap()]),
        2,
    );
}

#[test]
fn corrupt_and_newer_files_are_named_and_left_alone() {
    let dir = Scratch::new("baseline-cli", "corrupt");
    let good = dir.path("good.json");
    write_model(&good, "web-1");
    let bad = dir.path("bad.json");
    let full = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&bad, &full[..full.len() / 3]).unwrap();
    let b = bad.to_str().unwrap();
    let e = fails(&procwatch(&dir.0, &["baseline", "list", "--model", b]), 1);
    assert!(
        e.contains(&format!("{b}: the model file is corrupt")) && e.contains("line"),
        "{e}"
    );
    for edit in [
        vec!["baseline", "forget", NGINX, "--model", b],
        vec!["baseline", "allow", NGINX, "--port", "1", "--model", b],
    ] {
        let e = fails(&procwatch(&dir.0, &edit), 1);
        assert!(e.contains("corrupt"), "{e}");
    }
    // Merging a corrupt input names it; writing over a corrupt output is refused.
    let e = fails(
        &procwatch(
            &dir.0,
            &[
                "baseline",
                "merge",
                good.to_str().unwrap(),
                b,
                "-o",
                dir.path("o.json").to_str().unwrap(),
            ],
        ),
        1,
    );
    assert!(e.contains(b) && e.contains("corrupt"), "{e}");
    let e = fails(
        &procwatch(
            &dir.0,
            &["baseline", "merge", good.to_str().unwrap(), "-o", b],
        ),
        1,
    );
    assert!(e.contains("corrupt"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        full[..full.len() / 3]
    );

    let newer = dir.path("newer.json");
    let text = full.replacen("\"version\": 1", "\"version\": 99", 1);
    std::fs::write(&newer, &text).unwrap();
    let n = newer.to_str().unwrap();
    let e = fails(&procwatch(&dir.0, &["baseline", "list", "--model", n]), 1);
    assert!(
        e.contains("format version 99, newer than the version 1"),
        "{e}"
    );
    fails(
        &procwatch(&dir.0, &["baseline", "forget", NGINX, "--model", n]),
        1,
    );
    assert_eq!(std::fs::read_to_string(&newer).unwrap(), text);
}
