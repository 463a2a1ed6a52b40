//! `empty_cmdline`: a user-space process whose command line is empty — malware wiping its argv
//! to hide. Kernel threads (which never have one) and zombies are not flagged.
use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Hide Artifacts.
pub const ATTACK: &str = "T1564";

/// Fires for a live user-space process whose arguments are all empty, once its command line
/// has been read (a process known only by pid has no evidence either way).
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    if p.kernel_thread
        || p.zombie
        || p.exited.is_some()
        || p.exe_state == crate::process::table::ExeState::Unknown
    {
        return None;
    }
    if p.cmdline.iter().any(|a| !a.is_empty()) {
        return None;
    }
    Some(Finding {
        rule: Rule::EmptyCmdline,
        reason: "user-space process with an empty command line".into(),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{detect::testing::benign, process::table::ExeState};

    #[test]
    fn fires_for_empty_or_blank_argv() {
        let mut p = benign();
        p.cmdline.clear();
        assert!(check(&p, &Config::default()).is_some());
        p.cmdline = vec!["".into()];
        assert!(check(&p, &Config::default()).is_some());
    }

    #[test]
    fn near_miss_kernel_thread_zombie_or_unread() {
        let mut p = benign();
        p.cmdline.clear();
        p.kernel_thread = true;
        assert!(check(&p, &Config::default()).is_none());
        p.kernel_thread = false;
        p.zombie = true;
        assert!(check(&p, &Config::default()).is_none());
        p.zombie = false;
        p.exe_state = ExeState::Unknown;
        assert!(check(&p, &Config::default()).is_none());
        assert!(check(&benign(), &Config::default()).is_none());
    }
}
