//! `tmp_exe`: the program lives in a world-writable temporary directory (`temp_dirs`), where
//! droppers put their payloads. "The program" is what runs: the executed file (by the path the
//! kernel resolved from it at exec, not what /proc shows later), and the file it loads or
//! interprets (a `#!` script, `sh /tmp/x.sh`, `ld-linux*.so* /tmp/x`, a script on stdin).
use super::{Finding, show};
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Ingress Tool Transfer: a tool dropped into a writable directory and run.
pub const ATTACK: &str = "T1105";

/// Fires when the executable's path, or the program file it runs, is under one of
/// `cfg.temp_dirs` (whole components).
pub fn check(p: &Process, cfg: &Config) -> Option<Finding> {
    if let Some(exe) = p.exe.as_deref().filter(|e| cfg.in_temp_dir(e)) {
        return Some(Finding {
            rule: Rule::TmpExe,
            reason: format!("executable {} is in a temporary directory", show(exe)),
            attack: ATTACK,
        });
    }
    let prog = p.program.as_ref().filter(|g| cfg.in_temp_dir(&g.path))?;
    let by = p.exe.as_deref().map(show).unwrap_or_default();
    Some(Finding {
        rule: Rule::TmpExe,
        reason: format!(
            "{} {} (run by {by}) is in a temporary directory",
            prog.via.describe(),
            show(&prog.path)
        ),
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
    fn fires_for_a_script_or_loaded_program_in_a_temp_dir() {
        use crate::process::program::{Program, Via};
        let mut p = benign();
        p.exe = Some("/usr/bin/python3".into());
        p.program = Some(Program {
            path: "/dev/shm/x.py".into(),
            via: Via::Argument,
        });
        let f = check(&p, &Config::default()).expect("fires");
        assert!(
            f.reason.contains("/dev/shm/x.py") && f.reason.contains("python3"),
            "{}",
            f.reason
        );
        p.program = Some(Program {
            path: "/home/u/x.py".into(),
            via: Via::Argument,
        });
        assert!(check(&p, &Config::default()).is_none());
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
