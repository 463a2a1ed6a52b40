//! Changing a model by hand: forget an executable, allow a port, child or file pattern, and
//! accept exactly what an alert reported. Entries added here are normal at once (origin
//! `allowed` or `accepted`) and do not make a dimension unstable.
use std::path::Path;

use serde_json::Value;

use super::{
    anomaly::{AnomalyReport, AnomalyRule, Observed},
    model::{
        Dimension, Entry, ExeBaseline, ExeKey, FileKey, Flag, FlagKey, Key, Model, Origin, Secs,
    },
    net::{AddrClass, Direction, NetKey, Proto},
    paths,
};
use crate::config::{self, Rule};

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The executable has no baseline.
    #[error("{exe} is not in the model{hint}")]
    UnknownExecutable {
        /// As given.
        exe: String,
        /// " (did you mean ...?)" or empty.
        hint: String,
    },
    /// A path that must be absolute was not.
    #[error("'{0}' is not an absolute path")]
    NotAbsolute(String),
    /// The alert file could not be used.
    #[error("{0}")]
    BadAlert(String),
}

/// The model key of `exe` (an absolute path, or a bare name that only one executable in the
/// model has), which must have a baseline.
pub fn find_exe(m: &Model, exe: &Path) -> Result<String, EditError> {
    let raw = std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str());
    let shown = crate::text::terminal_safe(raw);
    if !raw.is_empty() && !raw.contains(&b'/') {
        let named: Vec<&String> = m
            .executables
            .iter()
            .filter(|(_, b)| b.name == shown)
            .map(|(k, _)| k)
            .collect();
        return match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EditError::UnknownExecutable {
                exe: shown,
                hint: " (see `procwatch baseline list`)".into(),
            }),
            many => Err(EditError::UnknownExecutable {
                exe: shown,
                hint: format!(
                    " as a unique name: give the path ({})",
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        };
    }
    let key = paths::encode(exe).ok_or_else(|| EditError::NotAbsolute(shown.clone()))?;
    if m.executables.contains_key(&key) {
        return Ok(key);
    }
    let name = paths::parent_and_name(&key).1;
    let similar: Vec<&str> = m
        .executables
        .keys()
        .filter(|k| paths::parent_and_name(k).1 == name)
        .map(String::as_str)
        .take(3)
        .collect();
    let hint = if similar.is_empty() {
        " (see `procwatch baseline list`)".to_string()
    } else {
        format!(" (did you mean {}?)", similar.join(", "))
    };
    Err(EditError::UnknownExecutable { exe: key, hint })
}

/// Removes an executable's baseline; it is learned afresh (as a new executable) when seen again.
pub fn forget(m: &mut Model, exe: &Path) -> Result<ExeBaseline, EditError> {
    let key = find_exe(m, exe)?;
    m.executables
        .remove(&key)
        .ok_or(EditError::UnknownExecutable {
            exe: key,
            hint: String::new(),
        })
}

/// Adds `key` as a manual entry, or marks an existing one manual; returns a sentence saying
/// what changed.
fn put<K: Key>(d: &mut Dimension<K>, key: K, origin: Origin, min: usize, now: Secs) -> String {
    let id = key.id();
    match d.entries.iter_mut().find(|e| e.key == key) {
        Some(e) if e.is_normal(min) && e.origin != Origin::Learned => {
            format!("{id}: already {}", describe(e.origin))
        }
        Some(e) => {
            let was = if e.is_normal(min) {
                "learned"
            } else {
                "pending"
            };
            e.origin = origin;
            e.last_seen = e.last_seen.max(now);
            format!("{id}: was {was}, now {}", describe(origin))
        }
        None => {
            d.entries.push(Entry::manual(key, origin, now));
            format!("{id}: added as {}", describe(origin))
        }
    }
}

fn describe(o: Origin) -> &'static str {
    match o {
        Origin::Learned => "learned",
        Origin::Allowed => "allowed",
        Origin::Accepted => "accepted",
    }
}

/// What `baseline allow` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// A port (with protocol, direction and address class; `any` class by default).
    Port {
        /// Port.
        port: u16,
        /// Protocol.
        proto: Proto,
        /// Direction.
        direction: Direction,
        /// Address class.
        class: AddrClass,
    },
    /// A child executable.
    Child(std::path::PathBuf),
    /// A file or pattern (`*` for one whole component).
    File(std::path::PathBuf),
}

/// Adds an allowed entry to `exe`'s baseline; returns what changed (and a warning when the
/// entry cannot matter).
pub fn allow(
    m: &mut Model,
    exe: &Path,
    what: &Allow,
    cfg: &config::Baseline,
    now: Secs,
) -> Result<Vec<String>, EditError> {
    let key = find_exe(m, exe)?;
    let min = cfg.min_processes;
    let Some(b) = m.executables.get_mut(&key) else {
        return Err(EditError::UnknownExecutable {
            exe: key,
            hint: String::new(),
        });
    };
    let mut said = Vec::new();
    match what {
        Allow::Port {
            port,
            proto,
            direction,
            class,
        } => {
            let k = NetKey {
                proto: *proto,
                direction: *direction,
                class: *class,
                port: *port,
            };
            said.push(put(&mut b.network, k, Origin::Allowed, min, now));
        }
        Allow::Child(child) => {
            let c = paths::encode(child)
                .ok_or_else(|| EditError::NotAbsolute(child.to_string_lossy().into_owned()))?;
            said.push(put(
                &mut b.children,
                ExeKey { exe: c },
                Origin::Allowed,
                min,
                now,
            ));
        }
        Allow::File(pattern) => {
            let p = paths::encode_pattern(pattern)
                .ok_or_else(|| EditError::NotAbsolute(pattern.to_string_lossy().into_owned()))?;
            let watched = paths::Watched::new(cfg.watched_prefixes.iter().map(|x| x.as_path()));
            if !watched.watches(&p) {
                said.push(format!(
                    "warning: {p} is outside baseline.watched_prefixes, so opens there are never seen"
                ));
            }
            said.push(put(
                &mut b.files,
                FileKey { path: p },
                Origin::Allowed,
                min,
                now,
            ));
        }
    }
    Ok(said)
}

/// What `baseline accept` did with one alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// What was added, one sentence each.
    pub added: Vec<String>,
    /// Reasons left alone, and why.
    pub skipped: Vec<String>,
}

/// Adds to `m` exactly what the alert `alert` (a `procwatch.alert/v1` record) reported.
pub fn accept(
    m: &mut Model,
    alert: &Value,
    cfg: &config::Baseline,
    now: Secs,
) -> Result<Accepted, EditError> {
    let bad = |s: &str| EditError::BadAlert(s.to_string());
    let reasons = alert
        .get("reasons")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("not a procwatch alert: it has no \"reasons\" list"))?;
    let alert_exe = alert.get("exe").and_then(Value::as_str).map(str::to_string);
    let min = cfg.min_processes;
    let mut done = Accepted::default();
    for r in reasons {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or("?");
        let rule_shown = crate::text::terminal_safe(rule.as_bytes());
        if r.get("known").is_some() {
            done.skipped
                .push(format!("{rule_shown}: already known to the baseline"));
            continue;
        }
        if let Ok(arule) = rule.parse::<AnomalyRule>() {
            let Some(a) = r.get("anomaly") else {
                done.skipped.push(format!(
                    "{rule_shown}: the reason carries no anomaly object"
                ));
                continue;
            };
            let report: AnomalyReport = serde_json::from_value(a.clone()).map_err(|e| {
                EditError::BadAlert(format!("{rule_shown}: unreadable anomaly: {e}"))
            })?;
            done.added
                .push(accept_anomaly(m, arule, &report, min, now)?);
            continue;
        }
        match rule.parse::<Rule>() {
            Ok(h @ (Rule::WxMem | Rule::Ptrace)) => {
                let Some(exe) = &alert_exe else {
                    done.skipped
                        .push(format!("{rule_shown}: the alert names no executable"));
                    continue;
                };
                let key = find_exe(m, Path::new(exe))?;
                let flag = if h == Rule::WxMem {
                    Flag::WxMem
                } else {
                    Flag::Ptrace
                };
                let Some(b) = m.executables.get_mut(&key) else {
                    continue;
                };
                let said = put(&mut b.flags, FlagKey { flag }, Origin::Accepted, min, now);
                let warn = if cfg.suppress.get(h) {
                    String::new()
                } else {
                    format!(
                        " (but baseline.suppress.{h} is off, so it will not silence {h} findings)"
                    )
                };
                done.added.push(format!("{key}: {said}{warn}"));
            }
            Ok(h) => done.skipped.push(format!(
                "{h}: a baseline does not hold this behaviour (use a whitelist or the rule's weight)"
            )),
            Err(_) => done.skipped.push(format!("{rule_shown}: not a rule this procwatch knows")),
        }
    }
    if done.added.is_empty() {
        let why = if done.skipped.is_empty() {
            "the alert has no reasons".to_string()
        } else {
            done.skipped.join("; ")
        };
        return Err(EditError::BadAlert(format!(
            "nothing in the alert can be accepted: {why}"
        )));
    }
    Ok(done)
}

/// Adds one anomaly's observation to its executable's baseline.
fn accept_anomaly(
    m: &mut Model,
    rule: AnomalyRule,
    a: &AnomalyReport,
    min: usize,
    now: Secs,
) -> Result<String, EditError> {
    let exe_path = Path::new(&a.exe);
    if rule == AnomalyRule::UnknownExecutable {
        let key = paths::encode(exe_path)
            .ok_or_else(|| EditError::NotAbsolute(crate::text::terminal_safe(a.exe.as_bytes())))?;
        let b = m
            .executables
            .entry(key.clone())
            .or_insert_with(|| ExeBaseline::new(&key, now));
        b.accepted = true;
        return Ok(format!("{key}: accepted as a known executable"));
    }
    let key = find_exe(m, exe_path)?;
    let Some(b) = m.executables.get_mut(&key) else {
        return Err(EditError::UnknownExecutable {
            exe: key,
            hint: String::new(),
        });
    };
    let mismatch = || {
        EditError::BadAlert(format!(
            "{rule}: the observed value does not belong to this rule"
        ))
    };
    let said = match (&rule, &a.observed) {
        (
            AnomalyRule::NetworkUnknownConnection,
            Observed::Connection {
                addr,
                class,
                port,
                proto,
                direction,
            },
        ) => {
            let k = NetKey {
                proto: *proto,
                direction: *direction,
                class: *class,
                port: *port,
            };
            let said = put(&mut b.network, k, Origin::Accepted, min, now);
            if let Some(e) = b.network.entries.iter_mut().find(|e| e.key == k) {
                e.add_example(addr.to_string());
            }
            said
        }
        (AnomalyRule::ProcessSpawnUnknown, Observed::Child { exe }) => {
            let c = paths::encode(Path::new(exe)).ok_or_else(|| {
                EditError::NotAbsolute(crate::text::terminal_safe(exe.as_bytes()))
            })?;
            put(
                &mut b.children,
                ExeKey { exe: c },
                Origin::Accepted,
                min,
                now,
            )
        }
        (AnomalyRule::FileAccessUnknown, Observed::File { path }) => {
            let p = paths::encode_pattern(Path::new(path)).ok_or_else(|| {
                EditError::NotAbsolute(crate::text::terminal_safe(path.as_bytes()))
            })?;
            put(
                &mut b.files,
                FileKey { path: p },
                Origin::Accepted,
                min,
                now,
            )
        }
        (AnomalyRule::ResourceSpike, Observed::Cpu { pct }) => {
            if !pct.is_finite() || *pct < 0.0 {
                return Err(mismatch());
            }
            let c = b.resources.cpu_ceiling.map_or(*pct, |c| c.max(*pct));
            b.resources.cpu_ceiling = Some(c);
            format!("CPU accepted up to {}", super::anomaly::pct(c))
        }
        (AnomalyRule::ResourceSpike, Observed::Rss { bytes }) => {
            let c = b.resources.rss_ceiling.map_or(*bytes, |c| c.max(*bytes));
            b.resources.rss_ceiling = Some(c);
            format!("RSS accepted up to {}", super::anomaly::bytes(c as f64))
        }
        _ => return Err(mismatch()),
    };
    Ok(format!("{key}: {rule}: {said}"))
}

/// The alerts in `text`: one JSON object, or JSON lines (as the JSONL sink writes them).
pub fn parse_alerts(text: &str) -> Result<Vec<Value>, EditError> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return match v {
            Value::Object(_) => Ok(vec![v]),
            Value::Array(items) => Ok(items),
            _ => Err(EditError::BadAlert("not a JSON object".into())),
        };
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| EditError::BadAlert(format!("line {}: not JSON: {e}", i + 1)))?;
        out.push(v);
    }
    if out.is_empty() {
        return Err(EditError::BadAlert("no alert in the file".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::{
        anomaly::{Anomaly, Confidence},
        learn::{Behaviour, Learner, Observation, ProcessId},
        net::Destination,
    };
    use std::time::Duration;

    fn cfg() -> config::Baseline {
        config::Baseline {
            learning_period: Duration::from_secs(100),
            stable_after: Duration::from_secs(10),
            ..config::Baseline::default()
        }
    }

    fn model() -> Model {
        let mut m = Model::new(0, "h");
        m.executables.insert(
            "/usr/sbin/nginx".into(),
            ExeBaseline::new("/usr/sbin/nginx", 0),
        );
        m
    }

    #[test]
    fn forget_and_unknown_names() {
        let mut m = model();
        let e = forget(&mut m, Path::new("/usr/bin/nginx")).expect_err("must fail");
        assert_eq!(
            e.to_string(),
            "/usr/bin/nginx is not in the model (did you mean /usr/sbin/nginx?)"
        );
        assert!(forget(&mut m, Path::new("sbin/nginx")).is_err(), "relative");
        assert_eq!(
            find_exe(&m, Path::new("nginx")),
            Ok("/usr/sbin/nginx".into()),
            "by name"
        );
        m.executables
            .insert("/opt/nginx".into(), ExeBaseline::new("/opt/nginx", 0));
        let e = find_exe(&m, Path::new("nginx"))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("/opt/nginx, /usr/sbin/nginx"), "{e}");
        forget(&mut m, Path::new("/usr/sbin/../sbin/nginx")).expect("normalised");
        assert_eq!(m.executables.len(), 1);
    }

    #[test]
    fn allowed_entries_are_normal_at_once_and_keep_stability() {
        let mut m = model();
        let c = cfg();
        let exe = Path::new("/usr/sbin/nginx");
        let said = allow(
            &mut m,
            exe,
            &Allow::Port {
                port: 5432,
                proto: Proto::Tcp,
                direction: Direction::Outbound,
                class: AddrClass::Any,
            },
            &c,
            50,
        )
        .expect("allow");
        assert_eq!(said, ["tcp/outbound/any/5432: added as allowed"]);
        allow(&mut m, exe, &Allow::Child("/usr/bin/gzip".into()), &c, 50).expect("child");
        let said = allow(&mut m, exe, &Allow::File("/var/www/*".into()), &c, 50).expect("file");
        assert_eq!(said, ["/var/www/*: added as allowed"]);
        let said = allow(&mut m, exe, &Allow::File("/opt/x".into()), &c, 50).expect("file");
        assert!(
            said[0].starts_with("warning: /opt/x is outside"),
            "{said:?}"
        );
        let b = m.get("/usr/sbin/nginx").expect("b");
        assert!(b.network.entries.iter().all(|e| e.is_normal(2)));
        assert_eq!(b.network.changed_at, 0, "stability unchanged");
        assert!(allow(&mut m, exe, &Allow::Child("gzip".into()), &c, 50).is_err());

        // Monitoring with the edited model: the allowed port at any address raises nothing.
        let mut l = Learner::new(m, &c, 16);
        let p = ProcessId { pid: 1, start: 1 };
        let out = l.observe(
            &Observation {
                process: p,
                exe,
                behaviour: Behaviour::Connect(Destination {
                    addr: "8.8.8.8".parse().expect("addr"),
                    port: 5432,
                    proto: Proto::Tcp,
                    direction: Direction::Outbound,
                }),
            },
            500,
        );
        assert!(out.is_empty(), "{out:?}");
        let out = l.observe(
            &Observation {
                process: p,
                exe,
                behaviour: Behaviour::FileOpen(Path::new("/var/www/site/x")),
            },
            500,
        );
        assert_eq!(out.len(), 1, "the pattern covers one component only");
    }

    fn alert_with(anomalies: &[Anomaly], heuristics: &[&str]) -> Value {
        let mut reasons: Vec<Value> = anomalies.iter().map(|a| a.to_reason(1.0)).collect();
        for h in heuristics {
            reasons.push(
                serde_json::json!({"rule": h, "score": 4.0, "reason": "x", "attack": "T1055"}),
            );
        }
        serde_json::json!({"schema": "procwatch.alert/v1", "exe": "/usr/sbin/nginx", "reasons": reasons})
    }

    fn anomaly(rule: AnomalyRule, observed: Observed) -> Anomaly {
        Anomaly {
            rule,
            severity: 0.9,
            exe: "/usr/sbin/nginx".into(),
            detail: "d".into(),
            baseline: "b".into(),
            observed,
            confidence: Confidence {
                observations: 1,
                processes: 1,
                stable_since: Some(1),
            },
        }
    }

    #[test]
    fn accept_adds_exactly_what_the_alert_reported() {
        let mut m = model();
        let c = cfg();
        let alert = alert_with(
            &[
                anomaly(
                    AnomalyRule::NetworkUnknownConnection,
                    Observed::Connection {
                        addr: "192.168.1.100".parse().expect("a"),
                        class: AddrClass::Private,
                        port: 4444,
                        proto: Proto::Tcp,
                        direction: Direction::Outbound,
                    },
                ),
                anomaly(
                    AnomalyRule::ProcessSpawnUnknown,
                    Observed::Child {
                        exe: "/bin/sh".into(),
                    },
                ),
                anomaly(
                    AnomalyRule::FileAccessUnknown,
                    Observed::File {
                        path: "/proc/*/mem".into(),
                    },
                ),
                anomaly(AnomalyRule::ResourceSpike, Observed::Cpu { pct: 87.3 }),
            ],
            &["wx_mem", "reverse_shell"],
        );
        let done = accept(&mut m, &alert, &c, 60).expect("accept");
        assert_eq!(done.added.len(), 5, "{done:?}");
        assert_eq!(done.skipped.len(), 1);
        assert!(done.skipped[0].starts_with("reverse_shell:"));
        let b = m.get("/usr/sbin/nginx").expect("b");
        let net = &b.network.entries[0];
        assert_eq!(net.key.id(), "tcp/outbound/private/4444");
        assert_eq!(
            (net.origin, net.examples.as_slice()),
            (Origin::Accepted, &["192.168.1.100".to_string()][..])
        );
        assert_eq!(b.children.entries[0].key.exe, "/bin/sh");
        assert_eq!(
            b.files.entries[0].key.path, "/proc/*/mem",
            "the wildcard stays a wildcard"
        );
        assert_eq!(b.resources.cpu_ceiling, Some(87.3));
        assert_eq!(b.flags.entries[0].key.flag, Flag::WxMem);
        // Accepting twice changes nothing more.
        let again = accept(&mut m, &alert, &c, 61).expect("accept");
        assert!(
            again.added.iter().any(|s| s.contains("already accepted")),
            "{again:?}"
        );
        assert_eq!(
            m.get("/usr/sbin/nginx").expect("b").network.entries.len(),
            1
        );
    }

    #[test]
    fn accept_refuses_what_it_cannot_use() {
        let mut m = model();
        let c = cfg();
        let only_heuristic = alert_with(&[], &["reverse_shell"]);
        let e = accept(&mut m, &only_heuristic, &c, 1).expect_err("must fail");
        assert!(
            e.to_string()
                .starts_with("nothing in the alert can be accepted"),
            "{e}"
        );
        assert!(accept(&mut m, &serde_json::json!({"x": 1}), &c, 1).is_err());
        let mut wrong = alert_with(
            &[anomaly(
                AnomalyRule::ProcessSpawnUnknown,
                Observed::Cpu { pct: 1.0 },
            )],
            &[],
        );
        assert!(
            accept(&mut m, &wrong, &c, 1)
                .expect_err("must fail")
                .to_string()
                .contains("does not belong")
        );
        wrong["reasons"][0]["anomaly"]["observed"] = serde_json::json!({"kind": "teleport"});
        assert!(
            accept(&mut m, &wrong, &c, 1)
                .expect_err("must fail")
                .to_string()
                .contains("unreadable anomaly")
        );
        let unknown = alert_with(
            &[Anomaly {
                exe: "/opt/new".into(),
                ..anomaly(AnomalyRule::UnknownExecutable, Observed::Executable)
            }],
            &[],
        );
        accept(&mut m, &unknown, &c, 1).expect("accept new exe");
        assert!(m.get("/opt/new").is_some_and(|b| b.accepted));
    }

    #[test]
    fn alerts_parse_as_one_object_or_lines() {
        assert_eq!(parse_alerts("{\"a\":1}").expect("one").len(), 1);
        assert_eq!(
            parse_alerts("{\"a\":1}\n\n{\"a\":2}\n").expect("two").len(),
            2
        );
        assert!(
            parse_alerts("{\"a\":1}\nnope\n")
                .expect_err("must fail")
                .to_string()
                .contains("line 2")
        );
        assert!(parse_alerts("").is_err());
        assert!(parse_alerts("3").is_err());
    }
}
