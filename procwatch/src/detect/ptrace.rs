//! `ptrace`: the process attaches to (or seizes) another process, or is itself being traced —
//! the mechanism of code injection and credential theft from memory.
use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Process Injection: Ptrace System Calls.
pub const ATTACK: &str = "T1055.008";

/// Fires on a recorded attach/seize, or a non-zero TracerPid.
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    let reason = if let Some(t) = p.ptrace_events.first() {
        format!("{} on pid {}", t.request, t.target)
    } else if p.tracer_pid != 0 {
        format!("traced by pid {}", p.tracer_pid)
    } else {
        return None;
    };
    Some(Finding {
        rule: Rule::Ptrace,
        reason,
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{detect::testing::benign, process::table::PtraceFact};

    #[test]
    fn fires_on_attach_or_tracer() {
        let mut p = benign();
        p.ptrace_events.push(PtraceFact {
            request: "PTRACE_ATTACH",
            target: 99,
        });
        assert!(
            check(&p, &Config::default())
                .expect("attach")
                .reason
                .contains("99")
        );
        let mut p = benign();
        p.tracer_pid = 77;
        assert!(check(&p, &Config::default()).is_some());
    }

    #[test]
    fn near_miss_untraced() {
        assert!(check(&benign(), &Config::default()).is_none());
    }
}
