//! `ptrace`: the process attaches to (or seizes) another process, writes into another
//! process's memory without ptrace (`process_vm_writev`, `/proc/PID/mem` opened for writing),
//! or is itself being traced — the mechanisms of code injection and credential theft.
use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Process Injection: Ptrace System Calls.
pub const ATTACK: &str = "T1055.008";

/// Process Injection (memory written without ptrace).
pub const ATTACK_WRITE: &str = "T1055";

/// Fires on a recorded attach/seize or memory write into another process, or a non-zero
/// TracerPid.
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    let (reason, attack) = if let Some(t) = p.ptrace_events.first() {
        let target = match t.target {
            0 => "an unnamed process".to_string(),
            pid => format!("pid {pid}"),
        };
        match t.request {
            "process_vm_writev" => (
                format!("process_vm_writev into {target} (memory written without ptrace)"),
                ATTACK_WRITE,
            ),
            "proc_mem" => (
                format!("/proc/{}/mem opened for writing ({target})", t.target),
                ATTACK_WRITE,
            ),
            request => (format!("{request} on {target}"), ATTACK),
        }
    } else if p.tracer_pid != 0 {
        (format!("traced by pid {}", p.tracer_pid), ATTACK)
    } else {
        return None;
    };
    Some(Finding {
        rule: Rule::Ptrace,
        reason,
        attack,
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
    fn memory_writes_name_the_target_and_technique() {
        let mut p = benign();
        p.ptrace_events.push(PtraceFact {
            request: "proc_mem",
            target: 321,
        });
        let f = check(&p, &Config::default()).expect("proc mem");
        assert!(f.reason.contains("/proc/321/mem"), "{}", f.reason);
        assert_eq!(f.attack, ATTACK_WRITE);
        let mut p = benign();
        p.ptrace_events.push(PtraceFact {
            request: "process_vm_writev",
            target: 55,
        });
        let f = check(&p, &Config::default()).expect("pvw");
        assert!(f.reason.contains("pid 55"), "{}", f.reason);
    }

    #[test]
    fn near_miss_untraced() {
        assert!(check(&benign(), &Config::default()).is_none());
    }
}
