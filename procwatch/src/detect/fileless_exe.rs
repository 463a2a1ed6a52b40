//! `fileless_exe`: the executable has no file on disk — a memfd (memfd_create + execveat),
//! the classic fileless-malware loader.
use super::{Finding, show};
use crate::{
    config::{Config, Rule},
    process::table::{ExeState, Process},
};

/// Reflective Code Loading.
pub const ATTACK: &str = "T1620";

/// Fires for a memfd executable.
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    if p.exe_state != ExeState::Memfd {
        return None;
    }
    let exe = p.exe.as_deref().map(show).unwrap_or_else(|| "memfd".into());
    Some(Finding {
        rule: Rule::FilelessExe,
        reason: format!("executable {exe} is a memfd with no file on disk"),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::benign;

    #[test]
    fn fires_for_memfd() {
        let mut p = benign();
        p.exe = Some("/memfd:payload".into());
        p.exe_state = ExeState::Memfd;
        assert!(
            check(&p, &Config::default())
                .expect("fires")
                .reason
                .contains("/memfd:payload")
        );
    }

    #[test]
    fn near_miss_deleted_file() {
        let mut p = benign();
        p.exe_state = ExeState::Deleted;
        assert!(check(&p, &Config::default()).is_none());
    }
}
