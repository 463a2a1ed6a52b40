//! `high_cpu`: sustained CPU use at or above `cpu_high` over the sampling window — miners and
//! runaway payloads.
use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Resource Hijacking.
pub const ATTACK: &str = "T1496";

/// Fires when the last window's CPU % is at least `cfg.cpu_high`.
pub fn check(p: &Process, cfg: &Config) -> Option<Finding> {
    if p.cpu_sample.is_none() || p.cpu_pct < cfg.cpu_high {
        return None;
    }
    Some(Finding {
        rule: Rule::HighCpu,
        reason: format!(
            "CPU {:.1}% over the last window (threshold {:.1}%)",
            p.cpu_pct, cfg.cpu_high
        ),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::benign;
    use std::time::Instant;

    #[test]
    fn fires_at_threshold() {
        let mut p = benign();
        p.cpu_sample = Some((100, Instant::now()));
        p.cpu_pct = 75.0;
        assert!(check(&p, &Config::default()).is_some());
    }

    #[test]
    fn near_miss_below_threshold_or_unsampled() {
        let mut p = benign();
        p.cpu_sample = Some((100, Instant::now()));
        p.cpu_pct = 74.9;
        assert!(check(&p, &Config::default()).is_none());
        p.cpu_pct = 100.0;
        p.cpu_sample = None;
        assert!(check(&p, &Config::default()).is_none());
    }
}
