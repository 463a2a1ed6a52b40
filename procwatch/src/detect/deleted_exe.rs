//! `deleted_exe`: the running executable was deleted, or replaced by another file, on disk —
//! typical of malware that removes its dropper after starting.
use super::{Finding, show};
use crate::{
    config::{Config, Rule},
    process::table::{ExeState, Process},
};

/// Indicator Removal: File Deletion.
pub const ATTACK: &str = "T1070.004";

/// Fires for [`ExeState::Deleted`] and [`ExeState::Replaced`] (memfds are `fileless_exe`).
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    let how = match p.exe_state {
        ExeState::Deleted => "was deleted",
        ExeState::Replaced => "was replaced on disk",
        _ => return None,
    };
    let exe = p.exe.as_deref().map(show).unwrap_or_default();
    Some(Finding {
        rule: Rule::DeletedExe,
        reason: format!("running executable {exe} {how}"),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::benign;

    #[test]
    fn fires_for_deleted_and_replaced() {
        let mut p = benign();
        p.exe = Some("/tmp/dropper".into());
        p.exe_state = ExeState::Deleted;
        let f = check(&p, &Config::default()).expect("fires");
        assert_eq!(f.rule, Rule::DeletedExe);
        assert!(f.reason.contains("/tmp/dropper"));
        p.exe_state = ExeState::Replaced;
        assert!(check(&p, &Config::default()).is_some());
    }

    #[test]
    fn near_miss_on_disk_memfd_or_unknown() {
        let mut p = benign();
        for state in [ExeState::OnDisk, ExeState::Memfd, ExeState::Unknown] {
            p.exe_state = state;
            assert!(check(&p, &Config::default()).is_none(), "{state:?}");
        }
    }
}
