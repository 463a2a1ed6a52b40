//! The human-readable alert log (`outputs.log_file`), in pWarden's multi-line layout:
//!
//! ```text
//! [2026-01-15 14:32:18 UTC] ANOMALY DETECTED
//!   Type: TMP_EXE, WX_MEM
//!   PID: 2847
//!   ...
//!   Details: <reason 1>; <reason 2>
//! ```
//!
//! An entry starts with a `[` in column one and every other line of it is indented, so a
//! reader (or `grep -c '^\['`) can split entries. Every value comes from the monitored
//! process or the system and goes through [`terminal_safe`], so a name holding a newline or
//! an escape sequence cannot forge an entry or a field, nor drive the terminal of whoever
//! `tail`s the file. Appended, one `write` per entry, reopened on SIGHUP; created 0600
//! because command lines can hold secrets.
use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::{Severity, Sink, append_whole, open_append};
use crate::{
    alert::{Action, ActionBy, Alert},
    text::terminal_safe,
};

/// A text log of alerts, one multi-line entry each.
pub struct LogFileSink {
    path: PathBuf,
    file: File,
    min_score: f64,
}

impl LogFileSink {
    /// Opens `path` for appending (created 0600); `min_score` sets the severity scale.
    pub fn open(path: &Path, min_score: f64) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: open_append(path)?,
            min_score,
        })
    }
}

impl Sink for LogFileSink {
    fn name(&self) -> String {
        format!("log_file:{}", self.path.display())
    }

    fn write(&mut self, alert: &Alert, _json: &str) -> io::Result<()> {
        // One write call per entry: with O_APPEND another writer cannot interleave with it.
        append_whole(&mut self.file, entry(alert, self.min_score).as_bytes())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn safe(s: &str) -> String {
    terminal_safe(s.as_bytes())
}

/// `2026-01-15 14:32:18 UTC` from the alert's RFC 3339 UTC timestamp (kept as is, made safe,
/// if it does not parse: it is ours, but the log must not depend on that).
fn when(timestamp: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Err(_) => safe(timestamp),
    }
}

/// An argument as a shell would need it: quoted when empty or holding blanks or quotes.
fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '$' | '`'));
    let shown = safe(arg);
    if plain {
        shown
    } else {
        format!("'{}'", shown.replace('\'', r"'\''"))
    }
}

/// One log entry, ending with an empty line.
pub fn entry(a: &Alert, min_score: f64) -> String {
    use std::{fmt::Write as _, os::unix::ffi::OsStrExt};
    let types: Vec<String> = a
        .reasons
        .iter()
        .map(|r| r.rule.as_str().to_ascii_uppercase())
        .collect();
    let details: Vec<String> = a.reasons.iter().map(|r| safe(&r.reason)).collect();
    let attack: Vec<&str> = a.reasons.iter().map(|r| r.attack).collect();
    let user = match &a.user {
        Some(u) => format!("{} (uid {})", safe(u), a.uid),
        None => format!("uid {}", a.uid),
    };
    let command: Vec<String> = a.cmdline.iter().map(|s| shell_word(s)).collect();
    let action = match (a.action, a.action_by) {
        (Action::Alert, _) => "alert".to_string(),
        (Action::Killed, by) => format!("killed{}", by_whom(by)),
        (Action::KillFailed, by) => format!("kill failed{}", by_whom(by)),
        (Action::KillRefused, by) => format!("kill refused{}", by_whom(by)),
        (Action::Exempt, by) => format!("exempt{}", by_whom(by)),
    };
    let action = match &a.action_reason {
        Some(why) => format!("{action}: {}", safe(why)),
        None => action,
    };
    let trigger = a
        .trigger
        .get("kind")
        .and_then(|k| k.as_str())
        .map_or_else(|| "?".to_string(), safe);
    let severity = Severity::from_score(a.total_score, min_score);

    let mut out = String::with_capacity(512);
    // Writing to a String cannot fail.
    let _ = writeln!(out, "[{}] ANOMALY DETECTED", when(&a.timestamp));
    let _ = writeln!(out, "  Type: {}", types.join(", "));
    let _ = writeln!(out, "  PID: {}", a.pid);
    let _ = writeln!(out, "  PPID: {}", a.ppid);
    let _ = writeln!(out, "  User: {user}");
    let _ = writeln!(out, "  Process: {}", terminal_safe(a.name.as_bytes()));
    let _ = writeln!(
        out,
        "  Executable: {}",
        a.exe.as_deref().map_or_else(|| "?".to_string(), safe)
    );
    let _ = writeln!(out, "  Command: {}", command.join(" "));
    if let Some(sha) = &a.sha256 {
        let _ = writeln!(out, "  SHA256: {}", safe(sha));
    }
    let _ = writeln!(
        out,
        "  Severity: {} (score {:.1}, min_score {:.1})",
        severity.as_str(),
        a.total_score,
        min_score
    );
    let _ = writeln!(out, "  Action: {action}");
    let _ = writeln!(out, "  Trigger: {trigger}");
    let _ = writeln!(out, "  Details: {}", details.join("; "));
    for (r, a) in a
        .reasons
        .iter()
        .filter_map(|r| r.anomaly.as_ref().map(|x| (r, x)))
    {
        let _ = writeln!(
            out,
            "  Baseline: {} [{} severity {:.2}; {}]",
            safe(&a.baseline),
            r.rule.as_str(),
            a.severity,
            sureness(
                a.confidence.observations,
                a.confidence.processes,
                a.confidence.stable_since.as_deref()
            )
        );
    }
    for r in a.reasons.iter().filter(|r| r.known.is_some()) {
        let quoted = r
            .known
            .as_ref()
            .and_then(|k| k.get("baseline"))
            .and_then(|b| b.as_str())
            .unwrap_or("?");
        let _ = writeln!(
            out,
            "  Known: {} is normal for this executable, not counted ({})",
            r.rule.as_str(),
            safe(quoted)
        );
    }
    let _ = writeln!(out, "  ATT&CK: {}", attack.join(", "));
    let _ = writeln!(out, "  Host: {}", safe(&a.host));
    let _ = writeln!(out, "  Alert ID: {}", a.id);
    out.push('\n');
    out
}

/// How sure a baseline is, for people.
fn sureness(observations: u64, processes: u64, stable_since: Option<&str>) -> String {
    let since = stable_since.map_or_else(
        || "not stable".to_string(),
        |t| format!("stable since {}", safe(t)),
    );
    format!("{observations} observations, {processes} processes, {since}")
}

fn by_whom(by: Option<ActionBy>) -> &'static str {
    match by {
        Some(ActionBy::Kernel) => " (kernel)",
        Some(ActionBy::Userspace) => " (userspace)",
        None => "",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{
        alert::{Reason, RuleId, SCHEMA, SensorInfo},
        config::Rule,
        sensor::SensorKind,
        text::os_from_bytes,
    };

    /// A plausible alert for sink tests.
    pub(crate) fn sample_alert() -> Alert {
        Alert {
            schema: SCHEMA,
            id: 1,
            timestamp: "2026-01-15T14:32:18.123Z".into(),
            host: "web-1".into(),
            pid: 2847,
            exec_id: "aG9zdDoxOjI4NDc=".into(),
            start_boottime_ns: Some(1_000_000_000),
            ppid: 1,
            ancestors: Vec::new(),
            exec_chain: Vec::new(),
            program: None,
            cgroup_id: None,
            cgroup: None,
            container_id: None,
            uid: 33,
            user: Some("www-data".into()),
            name: "nginx".into(),
            exe: Some("/tmp/x/nginx".into()),
            cmdline: vec!["/tmp/x/nginx".into(), "-g".into(), "daemon off;".into()],
            sha256: Some("ab".repeat(32)),
            trigger: serde_json::json!({"kind": "exec", "filename": "/tmp/x/nginx"}),
            total_score: 8.0,
            heuristic_score: 8.0,
            ml_score: 0.0,
            reasons: vec![
                Reason {
                    rule: RuleId::Heuristic(Rule::TmpExe),
                    score: 4.0,
                    reason: "executable in /tmp".into(),
                    attack: "T1036",
                    known: None,
                    anomaly: None,
                },
                Reason {
                    rule: RuleId::Heuristic(Rule::WxMem),
                    score: 4.0,
                    reason: "mprotect W+X".into(),
                    attack: "T1055",
                    known: None,
                    anomaly: None,
                },
            ],
            cpu_pct: 0.0,
            conns_outbound: 0,
            remote_ports: vec![],
            action: Action::Alert,
            action_by: None,
            action_reason: None,
            sensor: SensorInfo {
                name: SensorKind::Ebpf,
                events_lost: 0,
                probes_missing: Vec::new(),
            },
            dump: None,
            dump_error: None,
            silence_with: Vec::new(),
        }
    }

    #[test]
    fn layout_matches_pwarden() {
        let text = entry(&sample_alert(), 3.0);
        let want = "\
[2026-01-15 14:32:18 UTC] ANOMALY DETECTED
  Type: TMP_EXE, WX_MEM
  PID: 2847
  PPID: 1
  User: www-data (uid 33)
  Process: nginx
  Executable: /tmp/x/nginx
  Command: /tmp/x/nginx -g 'daemon off;'
  SHA256: abababababababababababababababababababababababababababababababab
  Severity: err (score 8.0, min_score 3.0)
  Action: alert
  Trigger: exec
  Details: executable in /tmp; mprotect W+X
  ATT&CK: T1036, T1055
  Host: web-1
  Alert ID: 1

";
        assert_eq!(text, want);
    }

    #[test]
    fn hostile_process_cannot_forge_an_entry() {
        let mut a = sample_alert();
        let forged = b"x\n[2020-01-01 00:00:00] ANOMALY DETECTED\n  PID: 1\"\x1b[2J\r\xff\xfe";
        a.name = os_from_bytes(forged);
        let lossy = String::from_utf8_lossy(forged).into_owned();
        a.exe = Some(lossy.clone());
        a.cmdline = vec![lossy.clone(), "it's".into()];
        a.user = Some("\u{9b}31m".into());
        a.reasons[0].reason = lossy;
        a.action = Action::Killed;
        a.action_by = Some(ActionBy::Kernel);
        let text = entry(&a, 3.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.iter().filter(|l| l.starts_with('[')).count(),
            1,
            "one entry only:\n{text}"
        );
        assert!(
            lines[1..]
                .iter()
                .all(|l| l.is_empty() || l.starts_with("  ")),
            "{text}"
        );
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{9b}'),
            "no raw control characters: {text:?}"
        );
        // Field lines keep their count: nothing was split by the hostile newlines.
        assert_eq!(lines.len(), 17, "{text}");
        assert!(
            text.contains(r"  Process: x\x0a[2020-01-01 00:00:00] ANOMALY DETECTED\x0a  PID: 1"),
            "{text}"
        );
        assert!(text.contains(r#"\x1b[2J\x0d\xff\xfe"#), "{text}");
        assert!(text.contains("  Action: killed (kernel)"), "{text}");
        assert!(text.contains(r"'it'\''s'"), "{text}");
    }

    #[test]
    fn file_is_appended_0600_and_reopened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pw-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.log");
        let _ = std::fs::remove_file(&path);
        let mut sink = LogFileSink::open(&path, 3.0).unwrap();
        let a = sample_alert();
        sink.write(&a, "{}").unwrap();
        sink.write(&a, "{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let rotated = dir.join("alerts.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen().unwrap();
        sink.write(&a, "{}").unwrap();
        sink.flush().unwrap();
        let count = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with('['))
                .count()
        };
        assert_eq!(count(&rotated), 2);
        assert_eq!(count(&path), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
