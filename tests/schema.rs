//! Alerts built by the library match the `procwatch.alert/v1` JSON Schema, for every rule and
//! for hostile process names. No root needed.
use std::{net::IpAddr, sync::Arc, time::Instant};

use procwatch::{
    alert::{self, SensorInfo, Trigger},
    config::{Config, Rule},
    detect,
    process::table::{ConnectFact, ExeState, Process, PtraceFact, WxFact},
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
    });
    p.stdio_net.push((0, None));
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
    let a = alert::build(
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
    let v = serde_json::to_value(&a).expect("serialises");
    assert_valid_alert(&v);
    let line = serde_json::to_string(&a).expect("line");
    assert!(!line.contains('\n'), "one line whatever the name holds");

    p.exe_state = ExeState::Memfd;
    p.exe = Some("/memfd:x".into());
    let verdict = score::score(detect::evaluate(&p, &cfg), 0.0, &cfg);
    let a = alert::build(
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
    assert_valid_alert(&serde_json::to_value(&a).expect("serialises"));
    let _ = Arc::new(SensorStats::default());
}

#[test]
fn the_schema_rejects_what_it_should() {
    let cfg = Config::default();
    let p = everything_wrong();
    let verdict = score::score(detect::evaluate(&p, &cfg), 0.0, &cfg);
    let a = alert::build(
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
    let good = serde_json::to_value(&a).expect("serialises");
    let schema = procwatch_tests::alert_schema();
    assert!(schema.is_valid(&good));
    for (field, bad) in [
        ("schema", serde_json::json!("procwatch.alert/v2")),
        ("timestamp", serde_json::json!("yesterday")),
        ("pid", serde_json::json!(-1)),
        ("reasons", serde_json::json!([])),
        ("sha256", serde_json::json!("not-a-digest")),
    ] {
        let mut v = good.clone();
        v[field] = bad;
        assert!(!schema.is_valid(&v), "{field} should be rejected");
    }
    let mut v = good;
    v["surprise"] = serde_json::json!(1);
    assert!(!schema.is_valid(&v), "unknown fields are rejected");
}
