//! Alerts built by the library match the `procwatch.alert/v1` JSON Schema, for every rule and
//! for hostile process names. No root needed.
use std::{net::IpAddr, sync::Arc, time::Instant};

use procwatch::{
    alert::{self, SensorInfo, Trigger},
    config::{Config, Rule},
    detect,
    process::{
        program::{Program, Via},
        table::{ConnectFact, ExeState, ExecImage, Process, PtraceFact, WxFact},
    },
    score,
    sensor::{SensorKind, SensorStats},
};
use procwatch_tests::assert_valid_alert;

fn everything_wrong() -> Process {
    let mut p = Process::new(31337, SensorKind::Ebpf);
    p.ppid = 1;
    p.uid = 0;
    p.name = std::ffi::OsString::from(String::from_utf8_lossy(b"bad\n\"\x1b[31mname").into_owned());
    p.exe = Some("/tmp/x/bash".into());
    p.exe_state = ExeState::Deleted;
    p.cmdline = vec!["bash\n-i".into(), "\u{1b}[2J".into()];
    p.cpu_sample = Some((1, Instant::now()));
    p.cpu_pct = 99.0;
    p.tracer_pid = 12;
    p.wx_events.push(WxFact {
        syscall: "mprotect",
        start: 0x1000,
        len: 4096,
    });
    p.ptrace_events.push(PtraceFact {
        request: "PTRACE_ATTACH",
        target: 1,
    });
    p.connects.push(ConnectFact {
        addr: IpAddr::from([10, 0, 0, 9]),
        port: 4444,
        proto: procwatch::procfs::sockets::Proto::Tcp,
    });
    p.stdio_net.push((0, None));
    p.start_ticks = 12_345;
    p.image_boot_ns = 123_450_000_123;
    p.program = Some(Program {
        path: "/dev/shm/x.py".into(),
        via: Via::Stdin,
    });
    for (exe, t) in [("/usr/bin/dash", 1_000_000), ("/tmp/x/bash", 2_000_000)] {
        p.push_image(ExecImage {
            exe: Some(exe.into()),
            program: None,
            ktime_ns: t,
        });
    }
    p.cgroup_id = Some(4242);
    p.cgroup = Some(format!("/system.slice/docker-{}.scope", "ab".repeat(32)));
    p
}

#[test]
fn alerts_for_every_rule_match_the_schema() {
    let cfg = Config::default();
    let mut p = everything_wrong();
    let findings = detect::evaluate(&p, &cfg);
    let rules: Vec<Rule> = findings.iter().map(|f| f.rule).collect();
    assert!(rules.len() >= 7, "{rules:?}");
    let verdict = score::score(findings, 0.25, &cfg);
    let mut a = alert::build(
        &p,
        &verdict,
        &Trigger::Sweep,
        Some("root".into()),
        SensorInfo {
            name: SensorKind::Ebpf,
            events_lost: 3,
            probes_missing: Vec::new(),
        },
    );
    // The id the action stage gives a final alert.
    a.id = 1;
    a.ancestors = vec![
        alert::Ancestor {
            pid: 1,
            exe: Some("/sbin/init".into()),
            exec_id: Some("aG9zdDoxOjE=".into()),
        },
        alert::Ancestor {
            pid: 7,
            exe: None,
            exec_id: None,
        },
    ];
    let v = serde_json::to_value(&a).expect("serialises");
    assert_valid_alert(&v);
    // The identity and provenance fields are there, in the shapes the schema names.
    assert!(
        v["exec_id"].as_str().is_some_and(|e| !e.is_empty()),
        "{v:#}"
    );
    assert_eq!(v["program"]["via"], "stdin");
    assert_eq!(v["exec_chain"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["container_id"], "ab".repeat(32));
    assert_eq!(v["cgroup_id"], 4242);
    let line = serde_json::to_string(&a).expect("line");
    assert!(!line.contains('\n'), "one line whatever the name holds");

    p.exe_state = ExeState::Memfd;
    p.exe = Some("/memfd:x".into());
    let verdict = score::score(detect::evaluate(&p, &cfg), 0.0, &cfg);
    let mut a = alert::build(
        &p,
        &verdict,
        &Trigger::Sweep,
        None,
        SensorInfo {
            name: SensorKind::Sweep,
            events_lost: 0,
            probes_missing: Vec::new(),
        },
    );
    // The id the action stage gives a final alert.
    a.id = 1;
    assert_valid_alert(&serde_json::to_value(&a).expect("serialises"));
    let _ = Arc::new(SensorStats::default());
}

#[test]
fn the_schema_rejects_what_it_should() {
    let cfg = Config::default();
    let p = everything_wrong();
    let verdict = score::score(detect::evaluate(&p, &cfg), 0.0, &cfg);
    let mut a = alert::build(
        &p,
        &verdict,
        &Trigger::Sweep,
        None,
        SensorInfo {
            name: SensorKind::Ebpf,
            events_lost: 0,
            probes_missing: Vec::new(),
        },
    );
    // The id the action stage gives a final alert.
    a.id = 1;
    let good = serde_json::to_value(&a).expect("serialises");
    let schema = procwatch_tests::alert_schema();
    assert!(schema.is_valid(&good));
    for (field, bad) in [
        ("schema", serde_json::json!("procwatch.alert/v2")),
        ("id", serde_json::json!(0)),
        ("id", serde_json::json!("7")),
        ("timestamp", serde_json::json!("yesterday")),
        ("pid", serde_json::json!(-1)),
        ("reasons", serde_json::json!([])),
        ("sha256", serde_json::json!("not-a-digest")),
        ("container_id", serde_json::json!("docker")),
        (
            "program",
            serde_json::json!({"path": "/tmp/x", "via": "magic"}),
        ),
        (
            "exec_chain",
            serde_json::json!([{"exe": "/bin/sh", "time": "now"}]),
        ),
        ("ancestors", serde_json::json!([{"pid": -3, "exe": null}])),
    ] {
        let mut v = good.clone();
        v[field] = bad;
        assert!(!schema.is_valid(&v), "{field} should be rejected");
    }
    let mut v = good;
    v["surprise"] = serde_json::json!(1);
    assert!(!schema.is_valid(&v), "unknown fields are rejected");
}

/// Baseline anomalies and known findings, as the engine will list them in `reasons`, match the
/// schema; `baseline accept` reads exactly these objects back.
#[test]
fn alerts_with_baseline_anomalies_match_the_schema() {
    use procwatch::baseline::{
        Behaviour, Learner, Model, Observation, ProcessId,
        anomaly::known_json,
        net::{Destination, Direction, Proto},
    };
    use std::path::Path;

    let cfg = Config::default();
    let mut l = Learner::new(Model::new(0, "h"), &cfg.baseline, 16);
    let exe = Path::new("/usr/sbin/nginx");
    for pid in 1..=2 {
        let p = ProcessId { pid, start: 1 };
        for _ in 0..40 {
            l.observe(
                &Observation {
                    process: p,
                    exe,
                    behaviour: Behaviour::Sample {
                        cpu_pct: Some(2.0 + f64::from(pid)),
                        rss_bytes: Some(1 << 20),
                    },
                },
                10,
            );
        }
        l.observe(
            &Observation {
                process: p,
                exe,
                behaviour: Behaviour::FileOpen(Path::new("/etc/nginx/nginx.conf")),
            },
            10,
        );
    }
    l.finish_training(20);
    let p = ProcessId { pid: 9, start: 1 };
    let mut found = Vec::new();
    for b in [
        Behaviour::Connect(Destination {
            addr: "2001:db8::1".parse().expect("addr"),
            port: 4444,
            proto: Proto::Udp,
            direction: Direction::Outbound,
        }),
        Behaviour::Spawn {
            child_exe: Path::new("/bin/sh"),
        },
        Behaviour::FileOpen(Path::new("/etc/shadow")),
        Behaviour::Sample {
            cpu_pct: Some(99.0),
            rss_bytes: Some(900 << 20),
        },
    ] {
        found.extend(l.observe(
            &Observation {
                process: p,
                exe,
                behaviour: b,
            },
            30,
        ));
    }
    found.extend(l.observe(
        &Observation {
            process: p,
            exe: Path::new("/opt/new"),
            behaviour: Behaviour::WxMem,
        },
        30,
    ));
    assert_eq!(found.len(), 6, "{found:#?}");

    let p_heur = everything_wrong();
    let verdict = score::score(detect::evaluate(&p_heur, &cfg), l.ml_score(p), &cfg);
    let mut a = alert::build(
        &p_heur,
        &verdict,
        &Trigger::Sweep,
        None,
        SensorInfo {
            name: SensorKind::Ebpf,
            events_lost: 0,
            probes_missing: Vec::new(),
        },
    );
    // The id the action stage gives a final alert.
    a.id = 1;
    let mut v = serde_json::to_value(&a).expect("serialises");
    let reasons = v["reasons"].as_array_mut().expect("reasons");
    for x in reasons.iter_mut() {
        if x["rule"] == "wx_mem" {
            x["score"] = serde_json::json!(0.0);
            let c = found[0].confidence;
            x["known"] = known_json("java makes W+X memory in 5 of 5 processes", &c);
        }
    }
    for an in &found {
        reasons.push(an.to_reason(cfg.ml_weight * an.severity));
    }
    assert_valid_alert(&v);
    let schema = procwatch_tests::alert_schema();
    let mut bad = v.clone();
    let last = bad["reasons"].as_array().expect("r").len() - 1;
    bad["reasons"][last]["anomaly"]["observed"]["kind"] = serde_json::json!("teleport");
    assert!(
        !schema.is_valid(&bad),
        "unknown observation kinds are rejected"
    );
    let mut bad = v;
    bad["reasons"][last]["anomaly"]["severity"] = serde_json::json!(1.5);
    assert!(!schema.is_valid(&bad), "severity is at most 1");
}
