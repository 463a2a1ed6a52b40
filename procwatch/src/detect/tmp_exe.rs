//! `tmp_exe`: the executable lives in a world-writable temporary directory (`temp_dirs`), where
//! droppers put their payloads.
use super::{Finding, show};
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Ingress Tool Transfer: a tool dropped into a writable directory and run.
pub const ATTACK: &str = "T1105";

/// Fires when the executable's path is under one of `cfg.temp_dirs` (whole components).
pub fn check(p: &Process, cfg: &Config) -> Option<Finding> {
    let exe = p.exe.as_deref()?;
    if !cfg.in_temp_dir(exe) {
        return None;
    }
    Some(Finding {
        rule: Rule::TmpExe,
        reason: format!("executable {} is in a temporary directory", show(exe)),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testing::benign;

    #[test]
    fn fires_for_each_default_temp_dir() {
        let mut p = benign();
        for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
            p.exe = Some(format!("{dir}/x/payload").into());
            assert!(check(&p, &Config::default()).is_some(), "{dir}");
        }
    }

    #[test]
    fn near_miss_similar_prefix_or_other_dir() {
        let mut p = benign();
        p.exe = Some("/tmpfoo/payload".into());
        assert!(check(&p, &Config::default()).is_none());
        p.exe = Some("/usr/local/bin/tmp".into());
        assert!(check(&p, &Config::default()).is_none());
    }
}
