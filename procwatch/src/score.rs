//! Turning findings into a verdict: weighted score, threshold, whitelist, and dedup so one
//! process makes one alert per new set of reasons.
use std::collections::BTreeMap;

use crate::{
    baseline::Anomaly,
    config::{Config, Rule},
    detect::Finding,
    process::table::Process,
};

/// A scored set of findings for one process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Findings with what they add to the score (their weight; 0 when known).
    pub findings: Vec<(Finding, f64)>,
    /// Sum of the weights of the distinct rules that hold and are not known.
    pub heuristic_score: f64,
    /// Baseline-anomaly score in [0, 1]: the highest severity among `anomalies`.
    pub ml_score: f64,
    /// `heuristic_score + ml_weight × ml_score`.
    pub total_score: f64,
    /// Findings the baseline knows as normal for the executable: the `known` object of each.
    pub known: BTreeMap<Rule, serde_json::Value>,
    /// The process's baseline anomalies.
    pub anomalies: Vec<Anomaly>,
    /// Some of `anomalies` were in no alert yet.
    pub new_anomalies: bool,
}

/// A verdict as the API shows it for every process (not only the alerted ones).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    /// `heuristic_score + ml_weight × ml_score`.
    pub total_score: f64,
    /// Sum of the weights of the rules that hold.
    pub heuristic_score: f64,
    /// Baseline-anomaly score.
    pub ml_score: f64,
    /// The reasons, as an alert lists them.
    pub reasons: Vec<crate::alert::Reason>,
}

impl Scored {
    /// The API's view of `verdict`.
    pub fn of(verdict: &Verdict) -> Self {
        Self {
            total_score: verdict.total_score,
            heuristic_score: verdict.heuristic_score,
            ml_score: verdict.ml_score,
            reasons: crate::alert::reasons(verdict),
        }
    }
}

/// What to do with a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Emit an alert.
    Alert,
    /// Nothing holds, or the score is under `min_score`.
    BelowThreshold,
    /// The executable or user is whitelisted.
    Whitelisted,
    /// Every rule that holds was already reported for this process.
    AlreadyReported,
}

/// Scores `findings` (one per rule; duplicates of a rule count once).
pub fn score(findings: Vec<Finding>, ml_score: f64, cfg: &Config) -> Verdict {
    let mut v = with_baseline(findings, BTreeMap::new(), Vec::new(), cfg);
    v.ml_score = ml_score.clamp(0.0, 1.0);
    v.total_score = v.heuristic_score + cfg.ml_weight * v.ml_score;
    v
}

/// Scores `findings` with what the baseline says: a finding in `known` adds nothing, and
/// `ml_score` is the highest severity among `anomalies`.
pub fn with_baseline(
    mut findings: Vec<Finding>,
    known: BTreeMap<Rule, serde_json::Value>,
    anomalies: Vec<Anomaly>,
    cfg: &Config,
) -> Verdict {
    findings.sort_by_key(|f| f.rule);
    findings.dedup_by_key(|f| f.rule);
    let findings: Vec<(Finding, f64)> = findings
        .into_iter()
        .map(|f| {
            let w = if known.contains_key(&f.rule) {
                0.0
            } else {
                cfg.weight(f.rule)
            };
            (f, w)
        })
        .collect();
    let heuristic_score: f64 = findings.iter().map(|(_, w)| w).sum();
    let ml_score = anomalies
        .iter()
        .map(|a| a.severity)
        .fold(0.0, f64::max)
        .clamp(0.0, 1.0);
    Verdict {
        findings,
        heuristic_score,
        ml_score,
        total_score: heuristic_score + cfg.ml_weight * ml_score,
        known,
        anomalies,
        new_anomalies: false,
    }
}

/// Decides whether `verdict` makes an alert for `p`, and records the reported rules when it does.
/// `exe_whitelisted`: the process runs a whitelisted executable, matched by what the file is
/// (see `identity::AllowIds`), not by the path string it ran under.
pub fn decide(
    p: &mut Process,
    verdict: &Verdict,
    user: Option<&str>,
    exe_whitelisted: bool,
    cfg: &Config,
) -> Decision {
    let nothing = verdict.findings.is_empty() && verdict.anomalies.is_empty();
    if nothing || verdict.total_score < cfg.min_score {
        return Decision::BelowThreshold;
    }
    if exe_whitelisted || cfg.user_whitelisted(user, p.uid) {
        return Decision::Whitelisted;
    }
    // A known finding is no news: only counted findings and unreported anomalies make one.
    let rules: Vec<Rule> = verdict
        .findings
        .iter()
        .filter(|(f, _)| !verdict.known.contains_key(&f.rule))
        .map(|(f, _)| f.rule)
        .collect();
    if rules.iter().all(|r| p.reported.contains(r)) && !verdict.new_anomalies {
        return Decision::AlreadyReported;
    }
    p.reported.extend(rules);
    Decision::Alert
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{attack_of, testing::benign};

    fn finding(rule: Rule) -> Finding {
        Finding {
            rule,
            reason: String::new(),
            attack: attack_of(rule),
        }
    }

    #[test]
    fn score_sums_distinct_rule_weights_and_ml() {
        let cfg = Config::default();
        let v = score(
            vec![
                finding(Rule::TmpExe),
                finding(Rule::WxMem),
                finding(Rule::TmpExe),
            ],
            0.5,
            &cfg,
        );
        assert_eq!(
            v.heuristic_score,
            cfg.weight(Rule::TmpExe) + cfg.weight(Rule::WxMem)
        );
        assert_eq!(v.total_score, v.heuristic_score + cfg.ml_weight * 0.5);
        assert_eq!(v.findings.len(), 2);
    }

    #[test]
    fn one_alert_per_new_set_of_reasons() {
        let cfg = Config::default();
        let mut p = benign();
        let port = score(vec![finding(Rule::SuspiciousPort)], 0.0, &cfg);
        assert_eq!(decide(&mut p, &port, None, false, &cfg), Decision::Alert);
        for _ in 0..1000 {
            assert_eq!(
                decide(&mut p, &port, None, false, &cfg),
                Decision::AlreadyReported
            );
        }
        let both = score(
            vec![finding(Rule::SuspiciousPort), finding(Rule::WxMem)],
            0.0,
            &cfg,
        );
        assert_eq!(decide(&mut p, &both, None, false, &cfg), Decision::Alert);
        assert_eq!(
            decide(&mut p, &both, None, false, &cfg),
            Decision::AlreadyReported
        );
    }

    #[test]
    fn threshold_and_whitelists() {
        let mut cfg = Config::default();
        let mut p = benign();
        let low = score(vec![finding(Rule::EmptyCmdline)], 0.0, &cfg);
        assert_eq!(
            decide(&mut p, &low, None, false, &cfg),
            Decision::BelowThreshold,
            "2 < min_score 3"
        );
        cfg.min_score = 2.0;
        assert_eq!(decide(&mut p, &low, None, false, &cfg), Decision::Alert);

        let cfg = Config::from_yaml(
            "t",
            "whitelist:\n  exe_paths: [/usr/bin/ls]\n  users: [alice]\n",
        )
        .expect("cfg");
        let v = score(vec![finding(Rule::Ptrace)], 0.0, &cfg);
        let mut p = benign();
        assert_eq!(decide(&mut p, &v, None, true, &cfg), Decision::Whitelisted);
        let mut p = benign();
        p.exe = Some("/usr/bin/ls".into());
        assert_eq!(
            decide(&mut p, &v, Some("bob"), false, &cfg),
            Decision::Alert,
            "the path string alone whitelists nothing"
        );
        let mut p = benign();
        p.exe = Some("/usr/bin/other".into());
        assert_eq!(
            decide(&mut p, &v, Some("alice"), false, &cfg),
            Decision::Whitelisted
        );
        assert_eq!(
            decide(&mut p, &v, Some("bob"), false, &cfg),
            Decision::Alert
        );
    }
}
