//! "Is this heuristic finding known-normal for this executable?": the question that stops
//! false alarms (a JVM's W+X memory, a database client's port, a compiler's CPU).
use std::path::Path;

use super::{
    anomaly::Confidence,
    learn::Learner,
    model::{Flag, Secs},
    net::{Destination, NetKey},
    paths, quote,
};
use crate::config::Rule;

/// A heuristic finding's fact, for the "known" query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fact<'a> {
    /// W+X memory (`wx_mem`).
    WxMem,
    /// ptrace (`ptrace`).
    Ptrace,
    /// A connection (`suspicious_port`).
    Connect(&'a Destination),
    /// CPU use (`high_cpu`).
    Cpu(f64),
    /// The executable itself (`tmp_exe`, `deleted_exe`, `fileless_exe`, `empty_cmdline`).
    Executable,
}

/// The answer to "is this heuristic finding known-normal for this executable?".
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// `baseline.suppress` does not let known behaviour silence this rule.
    NotSuppressible,
    /// The baseline holds nothing that speaks to this finding.
    NotTracked,
    /// The executable has no baseline.
    NoBaseline,
    /// The executable or the dimension is still learning.
    Learning,
    /// Not normal for this executable.
    Unknown,
    /// Normal for this executable, and the dimension is stable.
    Known {
        /// The baseline quoted ("java makes W+X memory in 57 of 60 processes").
        baseline: String,
        /// How sure the baseline is.
        confidence: Confidence,
    },
}

impl Learner {
    /// Whether a heuristic finding of `rule` about `fact` is known-normal for `exe` at `now`.
    pub fn known(&self, exe: &Path, rule: Rule, fact: Fact<'_>, now: Secs) -> Known {
        if !self.set.cfg.suppress.get(rule) {
            return Known::NotSuppressible;
        }
        let tracked = matches!(
            (rule, fact),
            (Rule::WxMem, Fact::WxMem)
                | (Rule::Ptrace, Fact::Ptrace)
                | (Rule::SuspiciousPort, Fact::Connect(_))
                | (Rule::HighCpu, Fact::Cpu(_))
                | (
                    Rule::TmpExe | Rule::DeletedExe | Rule::FilelessExe | Rule::EmptyCmdline,
                    Fact::Executable
                )
        );
        if !tracked {
            return Known::NotTracked;
        }
        let Some(b) = paths::encode(exe).and_then(|e| self.model.executables.get(&e)) else {
            return Known::NoBaseline;
        };
        if self.exe_learning(b, now) {
            return Known::Learning;
        }
        let (min, after) = (self.set.min, self.set.stable_after);
        let conf = |observations: u64, stable_since: Secs| Confidence {
            observations,
            processes: b.processes,
            stable_since: Some(stable_since),
        };
        match fact {
            Fact::WxMem | Fact::Ptrace => {
                let flag = if fact == Fact::WxMem {
                    Flag::WxMem
                } else {
                    Flag::Ptrace
                };
                if !b.flags.is_stable(now, after) {
                    return Known::Learning;
                }
                match b
                    .flags
                    .entries
                    .iter()
                    .find(|e| e.key.flag == flag && e.is_normal(min))
                {
                    Some(e) => {
                        let what = match flag {
                            Flag::WxMem => "makes W+X memory",
                            Flag::Ptrace => "ptraces other processes",
                        };
                        Known::Known {
                            baseline: format!(
                                "{} {what} in {} of {} processes",
                                b.name, e.processes, b.processes
                            ),
                            confidence: conf(b.flags.observations(), b.flags.stable_from(after)),
                        }
                    }
                    None => Known::Unknown,
                }
            }
            Fact::Connect(d) => {
                if !b.network.is_stable(now, after) {
                    return Known::Learning;
                }
                let key = NetKey::of(d);
                if b.network
                    .entries
                    .iter()
                    .any(|e| e.key.covers(&key) && e.is_normal(min))
                {
                    Known::Known {
                        baseline: quote::network(b, &key, min),
                        confidence: conf(b.network.observations(), b.network.stable_from(after)),
                    }
                } else {
                    Known::Unknown
                }
            }
            Fact::Cpu(x) => {
                let r = &b.resources;
                if !r.is_stable(now, after) || !self.set.ready(r, &r.cpu) {
                    return Known::Learning;
                }
                let within = x <= self.set.upper(&r.cpu, self.set.cfg.cpu_std_floor)
                    || r.cpu_ceiling.is_some_and(|c| x <= c);
                if within {
                    Known::Known {
                        baseline: format!("{} uses CPU {}", b.name, quote::cpu(&r.cpu)),
                        confidence: conf(r.cpu.n, r.stable_from(after)),
                    }
                } else {
                    Known::Unknown
                }
            }
            Fact::Executable => {
                if b.processes >= min as u64 || b.accepted {
                    Known::Known {
                        baseline: format!("{} was learned from {} processes", b.name, b.processes),
                        confidence: conf(b.processes, b.first_seen),
                    }
                } else {
                    Known::Unknown
                }
            }
        }
    }
}
