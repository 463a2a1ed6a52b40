//! What `procwatch baseline list` and `show` print: plain text for people, and JSON in the
//! shape of the pWarden README's example baseline.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{
    anomaly::{bytes, pct, rfc3339},
    model::{Dimension, Entry, ExeBaseline, Flag, Key, Model, Origin, Secs},
    net::{Direction, NetKey, Proto},
    paths,
};
use crate::config;

/// Where an executable's learning stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In the model-wide learning period, until then.
    Learning(Secs),
    /// In its own window (first seen after learning), until then.
    OwnWindow(Secs),
    /// Judged against its baseline since then.
    Monitoring(Secs),
}

impl State {
    /// Of `b` in `m` at `now`.
    pub fn of(m: &Model, b: &ExeBaseline, cfg: &config::Baseline, now: Secs) -> Self {
        let end = m.learning_end(cfg.learning_period.as_secs());
        if m.learning.ended.is_none() && now < end {
            return State::Learning(end);
        }
        match b.learning_until {
            Some(u) if now < u => State::OwnWindow(u),
            Some(u) => State::Monitoring(u.max(end)),
            None => State::Monitoring(end),
        }
    }

    /// "learning", "learning (new executable)", "monitoring".
    pub fn label(self) -> &'static str {
        match self {
            State::Learning(_) => "learning",
            State::OwnWindow(_) => "learning (new)",
            State::Monitoring(_) => "monitoring",
        }
    }
}

/// Processes of `e` as a share of the executable's processes, two decimals.
fn frequency<K>(e: &Entry<K>, b: &ExeBaseline) -> f64 {
    if b.processes == 0 {
        return 0.0;
    }
    ((e.processes as f64 / b.processes as f64).min(1.0) * 100.0).round() / 100.0
}

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Learned => "learned",
        Origin::Allowed => "allowed",
        Origin::Accepted => "accepted",
    }
}

/// "stable since T" or "learning (stable from T if nothing new)".
fn stability(from: Secs, now: Secs) -> String {
    if now >= from {
        format!("stable since {}", rfc3339(from))
    } else {
        format!("learning, stable from {} if nothing new", rfc3339(from))
    }
}

/// Entries most used first.
fn by_use<K: Key>(d: &Dimension<K>) -> Vec<&Entry<K>> {
    let mut v: Vec<&Entry<K>> = d.entries.iter().collect();
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.key.id().cmp(&b.key.id()))
    });
    v
}

fn net_json(e: &Entry<NetKey>, b: &ExeBaseline, min: usize) -> Value {
    json!({
        "dest_ip": e.key.class.as_str(),
        "dest_port": e.key.port,
        "direction": e.key.direction.as_str(),
        "frequency": frequency(e, b),
        "count": e.count,
        "processes": e.processes,
        "normal": e.is_normal(min),
        "origin": origin(e.origin),
        "addresses": e.examples,
    })
}

fn list_json<K: Key>(
    d: &Dimension<K>,
    b: &ExeBaseline,
    min: usize,
    field: &str,
    value: impl Fn(&K) -> Value,
) -> Value {
    Value::Array(
        by_use(d)
            .into_iter()
            .map(|e| {
                let mut v = json!({
                    "count": e.count,
                    "processes": e.processes,
                    "frequency": frequency(e, b),
                    "normal": e.is_normal(min),
                    "origin": origin(e.origin),
                });
                v[field] = value(&e.key);
                if !e.examples.is_empty() {
                    v["examples"] = json!(e.examples);
                }
                v
            })
            .collect(),
    )
}

/// `baseline show --json`: the pWarden example baseline's shape, with what procwatch adds.
pub fn show_json(
    m: &Model,
    exe: &str,
    b: &ExeBaseline,
    cfg: &config::Baseline,
    now: Secs,
) -> Value {
    let min = cfg.min_processes;
    let after = cfg.stable_after.as_secs();
    let state = State::of(m, b, cfg, now);
    let established = match state {
        State::Monitoring(t) => Some(rfc3339(t)),
        _ => None,
    };
    let net = |proto: Proto| -> Vec<Value> {
        by_use(&b.network)
            .into_iter()
            .filter(|e| e.key.proto == proto)
            .map(|e| net_json(e, b, min))
            .collect()
    };
    let r = &b.resources;
    let has = |flag: Flag| {
        b.flags
            .entries
            .iter()
            .any(|e| e.key.flag == flag && e.is_normal(min))
    };
    let listens = b
        .network
        .entries
        .iter()
        .any(|e| e.key.direction == Direction::Listen && e.is_normal(min));
    let patterns: Vec<&str> = b
        .files
        .normal(min)
        .iter()
        .map(|e| e.key.path.as_str())
        .collect();
    json!({
        "name": b.name,
        "executable": exe,
        "baseline_established": established,
        "state": state.label(),
        "processes_seen": b.processes,
        "first_seen": rfc3339(b.first_seen),
        "last_seen": rfc3339(b.last_seen),
        "network": {
            "tcp_connections": net(Proto::Tcp),
            "udp_connections": net(Proto::Udp),
            "stable_since": rfc3339(b.network.stable_from(after)),
        },
        "resources": {
            "cpu_mean": round2(r.cpu.mean),
            "cpu_std": round2(r.cpu.std_dev()),
            "memory_mean": r.rss.mean.round(),
            "memory_std": r.rss.std_dev().round(),
            "samples": r.cpu.n.max(r.rss.n),
            "processes": r.processes,
            "cpu_ceiling": r.cpu_ceiling,
            "memory_ceiling": r.rss_ceiling,
            "stable_since": rfc3339(r.stable_from(after)),
        },
        "file_patterns": patterns,
        "file_pattern_rule": paths::rule_text(cfg.generalize_after),
        "files": list_json(&b.files, b, min, "path", |k| json!(k.path)),
        "files_stable_since": rfc3339(b.files.stable_from(after)),
        "children": list_json(&b.children, b, min, "exe", |k| json!(k.exe)),
        "children_stable_since": rfc3339(b.children.stable_from(after)),
        "parents": list_json(&b.parents, b, min, "exe", |k| json!(k.exe)),
        "users": list_json(&b.users, b, min, "user", |k| json!(k.user)),
        "behaviour": {
            "wx_mem": has(Flag::WxMem),
            "ptrace": has(Flag::Ptrace),
            "listens": listens,
        },
        "accepted": b.accepted,
        "evicted": b.evicted,
        "min_processes": min,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn entry_line<K>(out: &mut String, label: &str, e: &Entry<K>, b: &ExeBaseline, min: usize) {
    let mut notes = Vec::new();
    if !e.is_normal(min) {
        notes.push(format!("pending: needs {min} processes"));
    }
    if e.origin != Origin::Learned {
        notes.push(origin(e.origin).to_string());
    }
    if !e.examples.is_empty() {
        notes.push(e.examples.join(", "));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!("  ({})", notes.join("; "))
    };
    let _ = writeln!(
        out,
        "    {label:<40} count {:>6}  in {} of {} processes{notes}",
        e.count, e.processes, b.processes
    );
}

fn section<K: Key>(
    out: &mut String,
    title: &str,
    d: &Dimension<K>,
    b: &ExeBaseline,
    cfg: &config::Baseline,
    now: Secs,
    label: impl Fn(&K) -> String,
) {
    let from = d.stable_from(cfg.stable_after.as_secs());
    let _ = writeln!(out, "  {title} ({}):", stability(from, now));
    if d.entries.is_empty() {
        let _ = writeln!(out, "    none");
    }
    for e in by_use(d) {
        entry_line(out, &label(&e.key), e, b, cfg.min_processes);
    }
}

/// `baseline show`: everything about one executable, for people.
pub fn show_text(
    m: &Model,
    exe: &str,
    b: &ExeBaseline,
    cfg: &config::Baseline,
    now: Secs,
) -> String {
    let mut out = String::new();
    let min = cfg.min_processes;
    let state = State::of(m, b, cfg, now);
    let _ = writeln!(out, "{exe} ({})", b.name);
    let state_line = match state {
        State::Learning(t) => format!("learning (model-wide, until {})", rfc3339(t)),
        State::OwnWindow(t) => format!(
            "learning (first seen after learning ended; its own window until {})",
            rfc3339(t)
        ),
        State::Monitoring(t) => format!("monitoring (baseline established {})", rfc3339(t)),
    };
    let _ = writeln!(out, "  state: {state_line}");
    let _ = writeln!(
        out,
        "  seen: {} processes, first {}, last {}{}",
        b.processes,
        rfc3339(b.first_seen),
        rfc3339(b.last_seen),
        if b.accepted { " (accepted)" } else { "" }
    );
    let _ = writeln!(
        out,
        "  normal = seen in at least {min} processes, or allowed/accepted by hand"
    );
    section(&mut out, "network", &b.network, b, cfg, now, |k| {
        format!("{} {} {}:{}", k.proto, k.direction, k.class, k.port)
    });
    section(&mut out, "children", &b.children, b, cfg, now, |k| {
        k.exe.clone()
    });
    section(&mut out, "parents", &b.parents, b, cfg, now, |k| {
        k.exe.clone()
    });
    section(&mut out, "users", &b.users, b, cfg, now, |k| k.user.clone());
    section(&mut out, "files", &b.files, b, cfg, now, |k| k.path.clone());
    let _ = writeln!(
        out,
        "    pattern rule: {}",
        paths::rule_text(cfg.generalize_after)
    );
    section(&mut out, "behaviour", &b.flags, b, cfg, now, |k| {
        match k.flag {
            Flag::WxMem => "makes W+X memory",
            Flag::Ptrace => "ptraces other processes",
        }
        .to_string()
    });
    let r = &b.resources;
    let _ = writeln!(
        out,
        "  resources ({}):",
        stability(r.stable_from(cfg.stable_after.as_secs()), now)
    );
    let _ = writeln!(
        out,
        "    CPU {} ± {} ({} samples), RSS {} ± {} ({} samples), from {} processes",
        pct(r.cpu.mean),
        pct(r.cpu.std_dev()),
        r.cpu.n,
        bytes(r.rss.mean),
        bytes(r.rss.std_dev()),
        r.rss.n,
        r.processes
    );
    if let Some(c) = r.cpu_ceiling {
        let _ = writeln!(out, "    CPU accepted up to {}", pct(c));
    }
    if let Some(c) = r.rss_ceiling {
        let _ = writeln!(out, "    RSS accepted up to {}", bytes(c as f64));
    }
    let ev = b.evicted.total();
    if ev > 0 {
        let _ = writeln!(
            out,
            "  evicted by the caps: {ev} (network {}, children {}, parents {}, users {}, files {})",
            b.evicted.network,
            b.evicted.children,
            b.evicted.parents,
            b.evicted.users,
            b.evicted.files
        );
    }
    out
}

/// A summary line of the whole model.
fn model_line(m: &Model, cfg: &config::Baseline, now: Secs) -> String {
    let end = m.learning_end(cfg.learning_period.as_secs());
    let learning = match m.learning.ended {
        Some(t) if m.learning.trained => format!("trained, learning ended {}", rfc3339(t)),
        Some(t) => format!("learning ended {}", rfc3339(t)),
        None if now < end => format!("learning until {}", rfc3339(end)),
        None => format!("learning ended {}", rfc3339(end)),
    };
    let hosts: Vec<&str> = m.hosts.iter().map(String::as_str).collect();
    format!(
        "revision {}, {} executables, hosts {}; {learning}; evicted by the caps: {} executables, {} entries",
        m.revision,
        m.executables.len(),
        if hosts.is_empty() {
            "-".to_string()
        } else {
            hosts.join(", ")
        },
        m.evicted.executables,
        m.evicted.entries
    )
}

/// `baseline list`: one line per executable.
pub fn list_text(m: &Model, cfg: &config::Baseline, now: Secs) -> String {
    let mut out = format!("# {}\n", model_line(m, cfg, now));
    let _ = writeln!(
        out,
        "{:<48} {:>9}  {:<15} {:>7} {:>8} {:>5}  LAST SEEN",
        "EXECUTABLE", "PROCESSES", "STATE", "NETWORK", "CHILDREN", "FILES"
    );
    for (exe, b) in &m.executables {
        let _ = writeln!(
            out,
            "{exe:<48} {:>9}  {:<15} {:>7} {:>8} {:>5}  {}",
            b.processes,
            State::of(m, b, cfg, now).label(),
            b.network.entries.len(),
            b.children.entries.len(),
            b.files.entries.len(),
            rfc3339(b.last_seen)
        );
    }
    out
}

/// `baseline list --json`.
pub fn list_json_all(m: &Model, cfg: &config::Baseline, now: Secs) -> Value {
    let end = m.learning_end(cfg.learning_period.as_secs());
    let exes: Vec<Value> = m
        .executables
        .iter()
        .map(|(exe, b)| {
            json!({
                "executable": exe,
                "name": b.name,
                "processes_seen": b.processes,
                "state": State::of(m, b, cfg, now).label(),
                "first_seen": rfc3339(b.first_seen),
                "last_seen": rfc3339(b.last_seen),
                "entries": {
                    "network": b.network.entries.len(),
                    "children": b.children.entries.len(),
                    "parents": b.parents.entries.len(),
                    "users": b.users.entries.len(),
                    "files": b.files.entries.len(),
                },
            })
        })
        .collect();
    json!({
        "format": m.format,
        "version": m.version,
        "revision": m.revision,
        "hosts": m.hosts,
        "learning": {
            "started": rfc3339(m.learning.started),
            "ended": (m.learning.ended.is_some() || now >= end).then(|| rfc3339(end)),
            "ends": rfc3339(end),
            "trained": m.learning.trained,
        },
        "evicted": m.evicted,
        "executables": exes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::{
        learn::{Behaviour, Learner, Observation, ProcessId},
        net::{Destination, Proto},
    };
    use std::{path::Path, time::Duration};

    fn learned() -> (Model, config::Baseline) {
        let cfg = config::Baseline {
            learning_period: Duration::from_secs(100),
            stable_after: Duration::from_secs(10),
            ..config::Baseline::default()
        };
        let mut l = Learner::new(Model::new(0, "web-1"), &cfg, 64);
        for pid in 1..=4u32 {
            let p = ProcessId { pid, start: 1 };
            let exe = Path::new("/usr/sbin/nginx");
            for b in [
                Behaviour::Connect(Destination {
                    addr: "10.0.0.5".parse().expect("a"),
                    port: 5432,
                    proto: Proto::Tcp,
                    direction: Direction::Outbound,
                }),
                Behaviour::Connect(Destination {
                    addr: "0.0.0.0".parse().expect("a"),
                    port: 80,
                    proto: Proto::Tcp,
                    direction: Direction::Listen,
                }),
                Behaviour::FileOpen(Path::new("/var/www/html/index.html")),
                Behaviour::Sample {
                    cpu_pct: Some(2.0 + f64::from(pid)),
                    rss_bytes: Some(50 << 20),
                },
            ] {
                l.observe(
                    &Observation {
                        process: p,
                        exe,
                        behaviour: b,
                    },
                    5,
                );
            }
        }
        let p = ProcessId { pid: 9, start: 1 };
        l.observe(
            &Observation {
                process: p,
                exe: Path::new("/usr/sbin/nginx"),
                behaviour: Behaviour::Spawn {
                    child_exe: Path::new("/bin/sh"),
                },
            },
            6,
        );
        (l.into_model(), cfg)
    }

    #[test]
    fn show_json_has_the_pwarden_shape() {
        let (m, cfg) = learned();
        let b = m.get("/usr/sbin/nginx").expect("b");
        let v = show_json(&m, "/usr/sbin/nginx", b, &cfg, 500);
        assert_eq!(v["name"], "nginx");
        assert_eq!(v["executable"], "/usr/sbin/nginx");
        assert_eq!(v["baseline_established"], "1970-01-01T00:01:40Z");
        let tcp = v["network"]["tcp_connections"].as_array().expect("tcp");
        assert_eq!(tcp.len(), 2);
        let pg = tcp.iter().find(|c| c["dest_port"] == 5432).expect("5432");
        assert_eq!(pg["dest_ip"], "private");
        assert_eq!(pg["frequency"], 0.8, "4 of 5 processes");
        assert_eq!(pg["addresses"], json!(["10.0.0.5"]));
        assert_eq!(v["network"]["udp_connections"], json!([]));
        assert_eq!(v["resources"]["cpu_mean"], 4.5);
        assert_eq!(v["resources"]["memory_mean"], f64::from(50u32 << 20));
        assert!(v["resources"]["cpu_std"].as_f64().expect("std") > 1.0);
        assert_eq!(v["file_patterns"], json!(["/var/www/html/index.html"]));
        assert!(
            v["file_pattern_rule"]
                .as_str()
                .expect("rule")
                .contains("D/*")
        );
        assert_eq!(v["behaviour"]["listens"], true);
        assert_eq!(v["behaviour"]["wx_mem"], false);
        let kids = v["children"].as_array().expect("children");
        assert_eq!(kids[0]["exe"], "/bin/sh");
        assert_eq!(kids[0]["normal"], false, "one process only");
        // While learning there is no established baseline yet.
        let v = show_json(&m, "/usr/sbin/nginx", b, &cfg, 50);
        assert_eq!(v["baseline_established"], Value::Null);
        assert_eq!(v["state"], "learning");
    }

    #[test]
    fn text_views_say_what_is_normal_and_why() {
        let (m, cfg) = learned();
        let b = m.get("/usr/sbin/nginx").expect("b");
        let t = show_text(&m, "/usr/sbin/nginx", b, &cfg, 500);
        assert!(
            t.contains("state: monitoring (baseline established 1970-01-01T00:01:40Z)"),
            "{t}"
        );
        assert!(t.contains("tcp outbound private:5432"), "{t}");
        assert!(
            t.contains("/bin/sh") && t.contains("pending: needs 2 processes"),
            "{t}"
        );
        assert!(
            t.contains("pattern rule: numbers in paths are recorded as *"),
            "{t}"
        );
        assert!(t.contains("CPU 4.5% ± "), "{t}");
        let l = list_text(&m, &cfg, 500);
        assert!(
            l.contains("/usr/sbin/nginx") && l.contains("monitoring"),
            "{l}"
        );
        assert!(
            l.starts_with("# revision 0, 1 executables, hosts web-1;"),
            "{l}"
        );
        let j = list_json_all(&m, &cfg, 500);
        assert_eq!(j["executables"][0]["processes_seen"], 5);
        assert_eq!(j["learning"]["ended"], "1970-01-01T00:01:40Z");
    }
}
