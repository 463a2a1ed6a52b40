//! An alert as the history keeps it, and the filters applied to one in memory.
use super::{AlertFilter, AlertRecord};
use crate::alert::Alert;

/// The record of a final alert (its id set): its JSON line and the fields the filters use.
pub(super) fn of(alert: &Alert) -> Result<AlertRecord, serde_json::Error> {
    let json = serde_json::to_string(alert)?;
    // The alert's own time; an unparsable one (never written by procwatch) files it under now.
    let time_ms = chrono::DateTime::parse_from_rfc3339(&alert.timestamp).map_or_else(
        |_| chrono::Utc::now().timestamp_millis(),
        |t| t.timestamp_millis(),
    );
    // Each rule once, in the order of the reasons (anomalies may give one rule several).
    let mut rules: Vec<String> = Vec::new();
    for r in &alert.reasons {
        let rule = r.rule.as_str();
        if !rules.iter().any(|x| x == rule) {
            rules.push(rule.to_string());
        }
    }
    Ok(AlertRecord {
        id: alert.id,
        time_ms,
        pid: alert.pid,
        exe: alert.exe.clone(),
        rules,
        total_score: alert.total_score,
        json: json.into(),
        start_boottime_ns: alert.start_boottime_ns,
    })
}

/// Whether `r` passes every filter of `f` (the same meaning as the SQL in `query.rs`).
pub(super) fn matches(f: &AlertFilter, r: &AlertRecord) -> bool {
    f.after.is_none_or(|a| r.id > a)
        && f.before.is_none_or(|b| r.id < b)
        && f.since_ms.is_none_or(|t| r.time_ms >= t)
        && f.rule.as_ref().is_none_or(|rule| r.rules.contains(rule))
        && f.pid.is_none_or(|p| r.pid == p)
        && f.exe.as_ref().is_none_or(|e| r.exe.as_ref() == Some(e))
        && f.min_score.is_none_or(|m| r.total_score >= m)
}
