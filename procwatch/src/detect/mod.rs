//! Heuristic detectors: one module per rule, each a pure function of a process snapshot and
//! the config. Event-based rules read facts the sensor recorded on the process (W+X requests,
//! ptrace attaches, connects); state-based rules read what the last /proc sample found.
pub mod deleted_exe;
pub mod empty_cmdline;
pub mod except;
pub mod fileless_exe;
pub mod high_cpu;
pub mod ptrace;
pub mod reverse_shell;
pub mod suspicious_port;
pub mod tmp_exe;
pub mod wx_mem;

use serde::Serialize;

use crate::{config::Config, config::Rule, process::table::Process};

/// One rule that holds for a process, with a human reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule id.
    pub rule: Rule,
    /// What was seen, for people.
    pub reason: String,
    /// MITRE ATT&CK technique id.
    pub attack: &'static str,
}

/// Every rule's check, in a fixed order.
const CHECKS: [fn(&Process, &Config) -> Option<Finding>; 9] = [
    deleted_exe::check,
    tmp_exe::check,
    wx_mem::check,
    ptrace::check,
    high_cpu::check,
    empty_cmdline::check,
    suspicious_port::check,
    fileless_exe::check,
    reverse_shell::check,
];

/// All rules that hold for `p`.
pub fn evaluate(p: &Process, cfg: &Config) -> Vec<Finding> {
    CHECKS.iter().filter_map(|check| check(p, cfg)).collect()
}

/// The ATT&CK technique each rule maps to (also listed in docs/rules.md).
pub fn attack_of(rule: Rule) -> &'static str {
    match rule {
        Rule::DeletedExe => deleted_exe::ATTACK,
        Rule::TmpExe => tmp_exe::ATTACK,
        Rule::WxMem => wx_mem::ATTACK,
        Rule::Ptrace => ptrace::ATTACK,
        Rule::HighCpu => high_cpu::ATTACK,
        Rule::EmptyCmdline => empty_cmdline::ATTACK,
        Rule::SuspiciousPort => suspicious_port::ATTACK,
        Rule::FilelessExe => fileless_exe::ATTACK,
        Rule::ReverseShell => reverse_shell::ATTACK,
    }
}

/// A path for messages (lossy, control characters escaped).
pub(crate) fn show(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::text::terminal_safe(path.as_os_str().as_bytes())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Snapshot builders for rule tests.
    use crate::{process::table::Process, sensor::SensorKind};

    /// An ordinary user process: /usr/bin/ls with arguments, nothing suspicious.
    pub fn benign() -> Process {
        let mut p = Process::new(4242, SensorKind::Ebpf);
        p.ppid = 1;
        p.uid = 1000;
        p.name = "ls".into();
        p.exe = Some("/usr/bin/ls".into());
        p.exe_state = crate::process::table::ExeState::OnDisk;
        p.cmdline = vec!["ls".into(), "-l".into()];
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_benign_process_triggers_nothing() {
        assert!(evaluate(&testing::benign(), &Config::default()).is_empty());
    }

    #[test]
    fn every_rule_has_an_attack_id() {
        for rule in Rule::ALL {
            let id = attack_of(rule);
            assert!(id.starts_with('T') && id.len() >= 5, "{rule:?}: {id}");
        }
    }
}
