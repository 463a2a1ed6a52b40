//! The alert record (`procwatch.alert/v1`), as written to JSONL, syslog and the API.
//! The JSON Schema is `docs/schema/procwatch.alert.v1.json`; a test validates alerts against it.
use serde::Serialize;

use crate::{
    clock,
    process::table::Process,
    score::Verdict,
    sensor::{Event, SensorKind},
    text::{os_lossy, serialize_os},
};

/// Schema id written in every alert.
pub const SCHEMA: &str = "procwatch.alert/v1";

/// The rule behind a reason: a heuristic or a baseline anomaly (one id space in alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RuleId {
    /// A heuristic rule.
    Heuristic(crate::config::Rule),
    /// A baseline anomaly rule.
    Anomaly(crate::baseline::AnomalyRule),
}

impl RuleId {
    /// Stable id, as in alerts and docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::Heuristic(r) => r.as_str(),
            RuleId::Anomaly(r) => r.as_str(),
        }
    }
}

impl PartialEq<crate::config::Rule> for RuleId {
    fn eq(&self, other: &crate::config::Rule) -> bool {
        *self == RuleId::Heuristic(*other)
    }
}

/// One reason in an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Rule id.
    pub rule: RuleId,
    /// What it adds to `total_score`: the rule's weight; 0 for a finding the baseline knows
    /// as normal; for anomalies `ml_weight × severity` for the most severe one, 0 for others.
    pub score: f64,
    /// What was seen.
    pub reason: String,
    /// MITRE ATT&CK technique id.
    pub attack: &'static str,
    /// For a heuristic finding the baseline knows as normal: the baseline quoted and how
    /// sure it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<serde_json::Value>,
    /// For a baseline anomaly: what `procwatch baseline accept` reads back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<crate::baseline::anomaly::AnomalyReport>,
}

/// What procwatch did about the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reported only.
    Alert,
    /// The process was killed.
    Killed,
    /// Killing was attempted and failed.
    KillFailed,
    /// A kill was called for, but procwatch would not: it could not name the exact process
    /// (start time unknown, pid now another process's) or may never signal it (init, a
    /// kernel thread, itself). `action_reason` says which.
    KillRefused,
    /// A kill was called for, but the process is exempt (allowlisted executable or user).
    Exempt,
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionBy {
    /// The eBPF program, before the syscall returned.
    Kernel,
    /// procwatch from user space.
    Userspace,
}

/// The sensor that produced the trigger, and what it has lost so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SensorInfo {
    /// Sensor name.
    pub name: SensorKind,
    /// Events lost so far (kernel ring buffer full, netlink overruns, channel drops).
    pub events_lost: u64,
    /// Probes that failed to attach: what they report is not seen.
    pub probes_missing: Vec<String>,
}

/// One ancestor of the alerted process (parent first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    /// Process id.
    pub pid: u32,
    /// Executable path, when known.
    pub exe: Option<String>,
    /// Its current image's exec id, when its start is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
}

/// One program image in the alerted process's exec chain (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainImage {
    /// The executable.
    pub exe: Option<String>,
    /// The script or loaded program, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// When it was exec'd (RFC 3339, ms, UTC); absent when the time is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The file the process loads or interprets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramInfo {
    /// Its path.
    pub path: String,
    /// How it was found.
    pub via: crate::process::program::Via,
}

/// Most ancestors an alert lists.
pub const MAX_ANCESTORS: usize = 8;

/// A `procwatch.alert/v1` record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Monotonic alert id, assigned in one place when the alert is final (after its actions,
    /// before any sink sees it); it continues after a restart from the alert history
    /// (`crate::history`). 0 only before that.
    pub id: u64,
    /// RFC 3339 with milliseconds, UTC.
    pub timestamp: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Unique per exec: base64 of `boot_id:image start (CLOCK_BOOTTIME ns):pid`.
    pub exec_id: String,
    /// Start of the process (CLOCK_BOOTTIME ns, to the clock tick /proc shows); with `pid` it
    /// names the process. Absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_boottime_ns: Option<u64>,
    /// Parent pid.
    pub ppid: u32,
    /// The parent chain, parent first, at most [`MAX_ANCESTORS`].
    pub ancestors: Vec<Ancestor>,
    /// The program images this process ran, oldest first (bounded).
    pub exec_chain: Vec<ChainImage>,
    /// The script or program the executable loads or interprets, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramInfo>,
    /// cgroup (v2) id, from the kernel at exec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// cgroup (v2) path, when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Container id (64 hex digits) found in the cgroup path (docker, containerd, CRI-O,
    /// podman), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Real uid.
    pub uid: u32,
    /// User name, when known.
    pub user: Option<String>,
    /// Process name (comm).
    #[serde(serialize_with = "serialize_os")]
    pub name: std::ffi::OsString,
    /// Executable path.
    pub exe: Option<String>,
    /// Command line.
    pub cmdline: Vec<String>,
    /// sha256 of the executable, when hashed.
    pub sha256: Option<String>,
    /// What made procwatch look: the event (its kind and fields) or `{"kind":"sweep"}`.
    pub trigger: serde_json::Value,
    /// `heuristic_score + ml_weight × ml_score`.
    pub total_score: f64,
    /// Sum of rule weights.
    pub heuristic_score: f64,
    /// Baseline-anomaly score.
    pub ml_score: f64,
    /// Why.
    pub reasons: Vec<Reason>,
    /// CPU % over the last window.
    pub cpu_pct: f64,
    /// Distinct outbound connections.
    pub conns_outbound: usize,
    /// Their remote ports.
    pub remote_ports: Vec<u16>,
    /// What was done.
    pub action: Action,
    /// Who did it (absent for a plain alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_by: Option<ActionBy>,
    /// Why the action is what it is when it is not a plain alert or a kill (why a kill was
    /// refused, failed, or exempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_reason: Option<String>,
    /// Sensor and loss.
    pub sensor: SensorInfo,
    /// Directory of the forensic dump taken for this alert, when `--dump` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<String>,
    /// Why no dump was written, when `--dump` is on and none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump_error: Option<String>,
    /// For each heuristic reason, the `exceptions:` entry that would silence it for this
    /// executable (what a user adds to their config after judging the alert a false alarm).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silence_with: Vec<SilenceHint>,
}

/// An exception that would silence one reason of an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceHint {
    /// The rule, the key under `exceptions:`.
    pub rule: &'static str,
    /// The entry to add to that rule's list, as the config takes it.
    pub exception: serde_json::Value,
}

/// What triggered an evaluation.
#[derive(Debug, Clone)]
pub enum Trigger<'a> {
    /// A sensor event.
    Event(&'a Event),
    /// A periodic /proc sample.
    Sweep,
}

impl Trigger<'_> {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Trigger::Event(e) => {
                let mut v = serde_json::to_value(&e.body).unwrap_or_else(|_| serde_json::json!({}));
                if let (Some(obj), Some(action)) = (v.as_object_mut(), e.kernel_action) {
                    obj.insert(
                        "kernel_action".into(),
                        serde_json::to_value(action).unwrap_or_default(),
                    );
                }
                if let Some(obj) = v.as_object_mut().filter(|_| e.compat) {
                    obj.insert("compat".into(), true.into());
                }
                v
            }
            Trigger::Sweep => serde_json::json!({ "kind": "sweep" }),
        }
    }

    /// When the trigger happened (the event's kernel time, or now).
    pub fn time(&self) -> String {
        match self {
            Trigger::Event(e) => clock::rfc3339_ms(clock::wall_from_ktime(e.ktime_ns)),
            Trigger::Sweep => clock::rfc3339_ms(chrono::Utc::now()),
        }
    }
}

/// The images `p` ran, each with when (as alerts and the API show them).
pub fn exec_chain_of(p: &Process) -> Vec<ChainImage> {
    p.exec_chain
        .iter()
        .map(|i| ChainImage {
            exe: i
                .exe
                .as_deref()
                .map(|e| os_lossy(e.as_os_str()).into_owned()),
            program: i
                .program
                .as_deref()
                .map(|g| os_lossy(g.as_os_str()).into_owned()),
            time: (i.ktime_ns != 0).then(|| clock::rfc3339_ms(clock::wall_from_ktime(i.ktime_ns))),
        })
        .collect()
}

/// The exec id of `p`'s current image (its start time stands in when its exec was not seen).
pub fn exec_id_of(p: &Process) -> Option<String> {
    let ns = if p.image_boot_ns != 0 {
        p.image_boot_ns
    } else {
        crate::identity::boot_ns_from_ticks(p.start_ticks)?
    };
    Some(crate::identity::exec_id(
        crate::identity::host_key(),
        ns,
        p.pid,
    ))
}

/// The container id in a cgroup path: the last component that is, or wraps, 64 hex digits
/// (`/docker/<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope`, kubepods' `.../<id>`).
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup.rsplit('/').find_map(|c| {
        let c = c.strip_suffix(".scope").unwrap_or(c);
        let id = c.rsplit(['-', ':']).next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| id.to_ascii_lowercase())
    })
}

/// Builds an alert for `p` from its verdict.
pub fn build(
    p: &Process,
    verdict: &Verdict,
    trigger: &Trigger<'_>,
    user: Option<String>,
    sensor: SensorInfo,
) -> Alert {
    let lossy = |p: &std::path::Path| os_lossy(p.as_os_str()).into_owned();
    Alert {
        schema: SCHEMA,
        id: 0,
        timestamp: trigger.time(),
        host: hostname().to_string(),
        pid: p.pid,
        exec_id: exec_id_of(p).unwrap_or_default(),
        start_boottime_ns: crate::identity::boot_ns_from_ticks(p.start_ticks),
        ppid: p.ppid,
        // Filled by the engine, which has the table.
        ancestors: Vec::new(),
        exec_chain: exec_chain_of(p),
        program: p.program.as_ref().map(|g| ProgramInfo {
            path: lossy(&g.path),
            via: g.via,
        }),
        cgroup_id: p.cgroup_id,
        cgroup: p.cgroup.clone(),
        container_id: p.cgroup.as_deref().and_then(container_id),
        uid: p.uid,
        user,
        name: p.name.clone(),
        exe: p
            .exe
            .as_deref()
            .map(|e| os_lossy(e.as_os_str()).into_owned()),
        cmdline: p.cmdline.iter().map(|a| os_lossy(a).into_owned()).collect(),
        sha256: p.sha256.clone(),
        trigger: trigger.to_json(),
        total_score: verdict.total_score,
        heuristic_score: verdict.heuristic_score,
        ml_score: verdict.ml_score,
        reasons: reasons(verdict),
        cpu_pct: (p.cpu_pct * 10.0).round() / 10.0,
        conns_outbound: p.conns_outbound(),
        remote_ports: p.remote_ports(),
        action: Action::Alert,
        action_by: None,
        action_reason: None,
        sensor,
        dump: None,
        dump_error: None,
        silence_with: silence_hints(p, verdict, trigger),
    }
}

/// The exceptions that would silence the heuristic reasons of `verdict` for this executable:
/// by its path (a pattern that matches only it), or by its digest when the path cannot name
/// it (a memfd, a deleted file, glob characters in the name); for `suspicious_port` narrowed
/// to the port dialled. None when neither path nor digest is known.
fn silence_hints(p: &Process, verdict: &Verdict, trigger: &Trigger<'_>) -> Vec<SilenceHint> {
    let path = p
        .exe
        .as_deref()
        .filter(|_| {
            use crate::procfs::sample::ExeState;
            !matches!(
                p.exe_state,
                ExeState::Memfd | ExeState::Deleted | ExeState::Replaced
            )
        })
        .and_then(|e| e.to_str())
        .filter(|e| e.starts_with('/') && !e.contains(['*', '?', '[', ']', '\\']));
    let who = match (path, p.sha256.as_deref()) {
        (Some(path), _) => serde_json::json!({ "exe": [path] }),
        (None, Some(digest)) => serde_json::json!({ "sha256": [digest] }),
        (None, None) => return Vec::new(),
    };
    let base: String = path
        .and_then(|e| e.rsplit('/').next())
        .unwrap_or("exe")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let dialled = trigger.to_json()["port"].as_u64();
    verdict
        .findings
        .iter()
        .map(|(f, _)| f.rule)
        .filter(|rule| !verdict.known.contains_key(rule))
        .map(|rule| {
            let mut exception = who.clone();
            exception["name"] = format!("local-{}-{base}", rule.as_str().replace('_', "-")).into();
            if rule == crate::config::Rule::SuspiciousPort {
                let ports: Vec<String> = match dialled {
                    Some(port) => vec![port.to_string()],
                    None => p.remote_ports().iter().map(u16::to_string).collect(),
                };
                exception["ports"] = ports.join(",").into();
            }
            SilenceHint {
                rule: rule.as_str(),
                exception,
            }
        })
        .collect()
}

/// The heuristic findings (known ones with their `known` object and score 0), then the
/// anomalies, the most severe first with `ml_weight × severity`, the others 0 (so the scores
/// add up to `total_score`).
pub fn reasons(verdict: &Verdict) -> Vec<Reason> {
    let mut out: Vec<Reason> = verdict
        .findings
        .iter()
        .map(|(f, w)| Reason {
            rule: RuleId::Heuristic(f.rule),
            score: *w,
            reason: f.reason.clone(),
            attack: f.attack,
            known: verdict.known.get(&f.rule).cloned(),
            anomaly: None,
        })
        .collect();
    let mut anomalies: Vec<&crate::baseline::Anomaly> = verdict.anomalies.iter().collect();
    anomalies.sort_by(|a, b| b.severity.total_cmp(&a.severity));
    for (i, a) in anomalies.into_iter().enumerate() {
        let score = if i == 0 {
            verdict.total_score - verdict.heuristic_score
        } else {
            0.0
        };
        out.push(Reason {
            rule: RuleId::Anomaly(a.rule),
            score,
            reason: a.reason(),
            attack: a.rule.attack(),
            known: None,
            anomaly: Some(crate::baseline::anomaly::AnomalyReport::of(a)),
        });
    }
    out
}

/// This machine's host name (read once).
pub fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return "unknown".into();
        }
        os_lossy(std::ffi::OsStr::new(
            std::str::from_utf8(crate::text::until_nul(&buf)).unwrap_or("unknown"),
        ))
        .into_owned()
    })
}

/// One readable line for a terminal: control characters escaped, never more than one line.
pub fn terminal_line(a: &Alert) -> String {
    use crate::text::terminal_safe;
    use std::os::unix::ffi::OsStrExt;
    // A known finding is marked, so a reader sees it did not count.
    let rules: Vec<String> = a
        .reasons
        .iter()
        .map(|r| match (&r.known, &r.anomaly) {
            (Some(_), _) => format!("{}(known)", r.rule.as_str()),
            (None, Some(x)) => format!("{}({:.2})", r.rule.as_str(), x.severity),
            (None, None) => r.rule.as_str().to_string(),
        })
        .collect();
    let why: Vec<String> = a
        .reasons
        .iter()
        .map(|r| terminal_safe(r.reason.as_bytes()))
        .collect();
    let action = match a.action {
        Action::Alert => String::new(),
        Action::Killed => " [killed]".into(),
        Action::KillFailed => " [kill failed]".into(),
        Action::KillRefused => " [kill refused]".into(),
        Action::Exempt => " [exempt]".into(),
    };
    format!(
        "{} ALERT #{} score={:.1} pid={} user={} name={} exe={} rules={}{} :: {}",
        a.timestamp,
        a.id,
        a.total_score,
        a.pid,
        terminal_safe(a.user.as_deref().unwrap_or("?").as_bytes()),
        terminal_safe(a.name.as_bytes()),
        terminal_safe(a.exe.as_deref().unwrap_or("?").as_bytes()),
        rules.join(","),
        action,
        why.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_the_usual_runtimes() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for path in [
            format!("/docker/{id}"),
            format!("/system.slice/docker-{id}.scope"),
            format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope"),
            format!("/kubepods/besteffort/pod1234/{id}"),
            format!("/machine.slice/libpod-{id}.scope/container"),
            format!("/system.slice/crio-{id}.scope"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(id), "{path}");
        }
        for path in [
            "/user.slice/user-0.slice/session-3.scope",
            "/",
            "/system.slice/ssh.service",
        ] {
            assert_eq!(container_id(path), None, "{path}");
        }
    }
}
