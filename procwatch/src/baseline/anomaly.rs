//! Baseline anomalies: the five rules, their severity, and details that quote the baseline.
//!
//! Severity is `rarity × (0.5 + 0.5 × confidence)`, both in [0, 1]: it grows with how rare the
//! behaviour is for this executable and with how well the baseline knows the executable, so a
//! never-seen port on a server seen in hundreds of processes scores near 1 and a small
//! deviation of a barely known program stays low. `unknown_executable` has a fixed,
//! configured severity instead.
use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::{
    model::Secs,
    net::{AddrClass, Destination, Direction, Proto},
};

/// A baseline anomaly rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyRule {
    /// A connection (or listener) the executable never made while learning.
    NetworkUnknownConnection,
    /// A child executable it never spawned while learning.
    ProcessSpawnUnknown,
    /// A file under a watched prefix outside its learned files and patterns.
    FileAccessUnknown,
    /// CPU or RSS far above its learned mean.
    ResourceSpike,
    /// An executable first seen after learning ended.
    UnknownExecutable,
}

impl AnomalyRule {
    /// Every rule.
    pub const ALL: [AnomalyRule; 5] = [
        AnomalyRule::NetworkUnknownConnection,
        AnomalyRule::ProcessSpawnUnknown,
        AnomalyRule::FileAccessUnknown,
        AnomalyRule::ResourceSpike,
        AnomalyRule::UnknownExecutable,
    ];

    /// Stable id, used in alerts and docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyRule::NetworkUnknownConnection => "network_unknown_connection",
            AnomalyRule::ProcessSpawnUnknown => "process_spawn_unknown",
            AnomalyRule::FileAccessUnknown => "file_access_unknown",
            AnomalyRule::ResourceSpike => "resource_spike",
            AnomalyRule::UnknownExecutable => "unknown_executable",
        }
    }

    /// The MITRE ATT&CK technique this deviation most often is.
    pub const fn attack(self) -> &'static str {
        match self {
            // Application Layer Protocol (command and control over an unexpected channel).
            AnomalyRule::NetworkUnknownConnection => "T1071",
            // Command and Scripting Interpreter (a server spawning a shell).
            AnomalyRule::ProcessSpawnUnknown => "T1059",
            // Data from Local System.
            AnomalyRule::FileAccessUnknown => "T1005",
            // Resource Hijacking.
            AnomalyRule::ResourceSpike => "T1496",
            // User Execution: Malicious File.
            AnomalyRule::UnknownExecutable => "T1204.002",
        }
    }
}

impl fmt::Display for AnomalyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AnomalyRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        AnomalyRule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a baseline anomaly rule"))
    }
}

/// Exactly what was seen, structured so `baseline accept` can add it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    /// A connection or listener.
    Connection {
        /// Peer (or bound) address.
        addr: IpAddr,
        /// Its class.
        class: AddrClass,
        /// Port (the peer's outbound, the process's own inbound and listening).
        port: u16,
        /// Protocol.
        proto: Proto,
        /// Direction.
        direction: Direction,
    },
    /// A spawned child executable (text form).
    Child {
        /// Its canonical path.
        exe: String,
    },
    /// An opened file (text form, numbers already `*`).
    File {
        /// The path.
        path: String,
    },
    /// A CPU sample.
    Cpu {
        /// Percent of one core.
        pct: f64,
    },
    /// An RSS sample.
    Rss {
        /// Bytes.
        bytes: u64,
    },
    /// The executable itself.
    Executable,
}

impl Observed {
    /// The observed connection as a destination, if it is one.
    pub fn destination(&self) -> Option<Destination> {
        match *self {
            Observed::Connection {
                addr,
                port,
                proto,
                direction,
                ..
            } => Some(Destination {
                addr,
                port,
                proto,
                direction,
            }),
            _ => None,
        }
    }

    /// A key that tells two observations of one rule apart (for one-report-per-process).
    pub fn dedup_key(&self) -> String {
        match self {
            Observed::Connection {
                class,
                port,
                proto,
                direction,
                ..
            } => format!("{proto}/{direction}/{class}/{port}"),
            Observed::Child { exe } => exe.clone(),
            Observed::File { path } => path.clone(),
            Observed::Cpu { .. } => "cpu".into(),
            Observed::Rss { .. } => "rss".into(),
            Observed::Executable => String::new(),
        }
    }
}

/// How well the baseline knows what it judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confidence {
    /// Observations behind the judged dimension (samples for resources).
    pub observations: u64,
    /// Processes of the executable seen.
    pub processes: u64,
    /// Since when that dimension has been stable (`None` for an unknown executable).
    pub stable_since: Option<Secs>,
}

impl Confidence {
    /// In [0, 1]: grows with observations and with processes, each saturating.
    pub fn score(&self) -> f64 {
        let o = 1.0 - (-(self.observations as f64) / 50.0).exp();
        let p = 1.0 - (-(self.processes as f64) / 5.0).exp();
        0.5 * (o + p)
    }
}

/// Severity from rarity and confidence, both clamped to [0, 1].
pub fn severity(rarity: f64, confidence: f64) -> f64 {
    let r = if rarity.is_finite() {
        rarity.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let c = if confidence.is_finite() {
        confidence.clamp(0.0, 1.0)
    } else {
        0.0
    };
    round3(r * (0.5 + 0.5 * c))
}

/// Rarity of a set member by how close it came to being normal: 1 when never seen, down to
/// 0.5 for one process short of `min_processes`.
pub fn rarity_of_pending(processes: u64, min_processes: usize) -> f64 {
    if min_processes == 0 {
        return 1.0;
    }
    let k = processes.min(min_processes as u64) as f64;
    1.0 - 0.5 * k / min_processes as f64
}

/// Rarity of a sample `z` deviations above the mean, where `sigma` deviations start a spike:
/// 0.5 at the threshold, approaching 1 far beyond it.
pub fn rarity_of_spike(z: f64, sigma: f64) -> f64 {
    if !z.is_finite() {
        return 1.0;
    }
    if z <= sigma || sigma <= 0.0 {
        return 0.5;
    }
    0.5 + 0.5 * (1.0 - sigma / z)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One anomaly found for one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Which rule.
    pub rule: AnomalyRule,
    /// In [0, 1].
    pub severity: f64,
    /// The executable's canonical path (text form): the model key `accept` adds to.
    pub exe: String,
    /// What happened ("Unknown TCP connection to 192.168.1.100:4444").
    pub detail: String,
    /// The baseline it deviates from ("nginx connects to ports 80, 443, 8080").
    pub baseline: String,
    /// Exactly what was seen.
    pub observed: Observed,
    /// How sure the baseline is.
    pub confidence: Confidence,
}

impl Anomaly {
    /// The one-line reason, in the style of the issue's table.
    pub fn reason(&self) -> String {
        match self.rule {
            AnomalyRule::ProcessSpawnUnknown => {
                format!("{}; baseline {}", self.detail, self.baseline)
            }
            AnomalyRule::ResourceSpike => format!("{} (baseline {})", self.detail, self.baseline),
            _ => format!("{}; baseline: {}", self.detail, self.baseline),
        }
    }

    /// The `reasons[]` item of a `procwatch.alert/v1` alert for this anomaly; `score` is what
    /// it adds to `total_score` (`ml_weight × severity` for the highest one, 0 for others).
    pub fn to_reason(&self, score: f64) -> serde_json::Value {
        serde_json::json!({
            "rule": self.rule,
            "score": score,
            "reason": self.reason(),
            "attack": self.rule.attack(),
            "anomaly": AnomalyReport::of(self),
        })
    }
}

/// The `anomaly` object of an alert reason: what `baseline accept` reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyReport {
    /// Severity in [0, 1].
    pub severity: f64,
    /// Model key of the executable.
    pub exe: String,
    /// What happened.
    pub detail: String,
    /// The baseline quoted.
    pub baseline: String,
    /// Exactly what was seen.
    pub observed: Observed,
    /// How sure the baseline is.
    pub confidence: ConfidenceReport,
}

/// [`Confidence`] with the time as RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceReport {
    /// Observations behind the judged dimension.
    pub observations: u64,
    /// Processes of the executable seen.
    pub processes: u64,
    /// Since when the dimension has been stable.
    pub stable_since: Option<String>,
}

impl AnomalyReport {
    /// The report of `a`.
    pub fn of(a: &Anomaly) -> Self {
        Self {
            severity: a.severity,
            exe: a.exe.clone(),
            detail: a.detail.clone(),
            baseline: a.baseline.clone(),
            observed: a.observed.clone(),
            confidence: ConfidenceReport {
                observations: a.confidence.observations,
                processes: a.confidence.processes,
                stable_since: a.confidence.stable_since.map(rfc3339),
            },
        }
    }
}

/// The `known` object of an alert reason whose heuristic finding the baseline knows as normal.
pub fn known_json(baseline: &str, c: &Confidence) -> serde_json::Value {
    serde_json::json!({
        "baseline": baseline,
        "confidence": ConfidenceReport {
            observations: c.observations,
            processes: c.processes,
            stable_since: c.stable_since.map(rfc3339),
        },
    })
}

/// RFC 3339 UTC (seconds) of a Unix time.
pub fn rfc3339(t: Secs) -> String {
    let secs = i64::try_from(t).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// Percent with one decimal.
pub fn pct(x: f64) -> String {
    format!("{x:.1}%")
}

/// Bytes in the largest binary unit that keeps one digit before the point.
pub fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v.abs() >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// "a, b, c" of the first `max` items, then "and N more".
pub fn list(items: &[String], max: usize) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let mut s = items[..items.len().min(max)].join(", ");
    if items.len() > max {
        s.push_str(&format!(" and {} more", items.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_grows_with_rarity_and_confidence() {
        let steps: Vec<f64> = (0..=20).map(|i| f64::from(i) / 20.0).collect();
        for &c in &steps {
            for w in steps.windows(2) {
                assert!(
                    severity(w[1], c) >= severity(w[0], c),
                    "rarity {w:?} at c={c}"
                );
                assert!(
                    severity(c, w[1]) >= severity(c, w[0]),
                    "confidence {w:?} at r={c}"
                );
            }
        }
        assert_eq!(severity(1.0, 1.0), 1.0);
        assert_eq!(severity(0.0, 1.0), 0.0);
        assert_eq!(severity(1.0, 0.0), 0.5);
        assert_eq!(severity(f64::NAN, f64::NAN), 0.5, "never NaN");
        assert_eq!(severity(7.0, -3.0), 0.5, "clamped");
    }

    #[test]
    fn rarity_and_confidence_are_monotonic() {
        // Fewer processes short of normal: rarer.
        let r: Vec<f64> = (0..=3).map(|k| rarity_of_pending(k, 3)).collect();
        assert!(r.windows(2).all(|w| w[1] < w[0]), "{r:?}");
        assert_eq!(rarity_of_pending(0, 2), 1.0);
        assert_eq!(rarity_of_pending(1, 2), 0.75);
        // Further out: rarer.
        let s: Vec<f64> = [4.0, 5.0, 8.0, 40.0, f64::INFINITY]
            .into_iter()
            .map(|z| rarity_of_spike(z, 4.0))
            .collect();
        assert!(s.windows(2).all(|w| w[1] > w[0]), "{s:?}");
        assert_eq!(s[0], 0.5);
        // More observations and processes: more confident.
        let mut last = -1.0;
        for n in [0u64, 1, 10, 100, 1000] {
            let c = Confidence {
                observations: n,
                processes: n,
                stable_since: None,
            }
            .score();
            assert!(c > last && (0.0..=1.0).contains(&c));
            last = c;
        }
    }

    #[test]
    fn reasons_follow_the_issue_table() {
        let mk = |rule, detail: &str, baseline: &str| Anomaly {
            rule,
            severity: 0.9,
            exe: "/usr/sbin/nginx".into(),
            detail: detail.into(),
            baseline: baseline.into(),
            observed: Observed::Executable,
            confidence: Confidence {
                observations: 1,
                processes: 1,
                stable_since: Some(0),
            },
        };
        assert_eq!(
            mk(
                AnomalyRule::NetworkUnknownConnection,
                "Unknown TCP connection to 192.168.1.100:4444",
                "nginx connects to ports 80, 443, 8080"
            )
            .reason(),
            "Unknown TCP connection to 192.168.1.100:4444; baseline: nginx connects to ports 80, 443, 8080"
        );
        assert_eq!(
            mk(
                AnomalyRule::ProcessSpawnUnknown,
                "nginx spawned /bin/sh",
                "children: none"
            )
            .reason(),
            "nginx spawned /bin/sh; baseline children: none"
        );
        assert_eq!(
            mk(AnomalyRule::ResourceSpike, "CPU 87.3%", "12.5% ± 3.2%").reason(),
            "CPU 87.3% (baseline 12.5% ± 3.2%)"
        );
        let a = mk(
            AnomalyRule::FileAccessUnknown,
            "Access to /etc/shadow",
            "/var/www/*",
        );
        let v = a.to_reason(1.8);
        assert_eq!(v["rule"], "file_access_unknown");
        assert_eq!(v["attack"], "T1005");
        assert_eq!(
            v["anomaly"]["confidence"]["stable_since"],
            "1970-01-01T00:00:00Z"
        );
        let back: AnomalyReport = serde_json::from_value(v["anomaly"].clone()).expect("reads back");
        assert_eq!(back, AnomalyReport::of(&a));
        for r in AnomalyRule::ALL {
            assert_eq!(r.as_str().parse::<AnomalyRule>(), Ok(r));
        }
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(bytes(2.1 * 1024.0 * 1024.0 * 1024.0), "2.1 GiB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(pct(87.25), "87.2%");
        let items: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
        assert_eq!(list(&items, 3), "1, 2, 3 and 2 more");
        assert_eq!(list(&[], 3), "none");
    }
}
