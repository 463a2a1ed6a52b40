//! Applies `exceptions:` to a process's findings: a finding whose rule has a matching entry
//! is dropped; `suspicious_port` is judged connection by connection, so an exception for the
//! database port does not hide a connection to 4444 by the same process.
use std::path::Path;

use super::{Finding, suspicious_port};
use crate::{
    config::{Config, Rule, Subject},
    process::table::{ExeState, Process},
};

/// What an exception can be matched on that the process entry alone does not hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The user's name, when known.
    pub user: Option<&'a str>,
    /// The parent's executable, when known.
    pub parent_exe: Option<&'a Path>,
}

/// The subject of exception matching for `p`.
pub fn subject<'a>(p: &'a Process, ctx: &Context<'a>) -> Subject<'a> {
    Subject {
        exe: p.exe.as_deref(),
        // The kernel's filename (state unknown: the process was gone before /proc was read)
        // names what was executed; a memfd or an unlinked file is not the file at the path.
        exe_on_disk: matches!(p.exe_state, ExeState::OnDisk | ExeState::Unknown),
        sha256: p.sha256.as_deref(),
        user: ctx.user,
        uid: p.uid,
        parent_exe: ctx.parent_exe,
        replaced_by_root: p.exe_successor_root,
    }
}

/// What [`apply`] decided.
#[derive(Debug, Default)]
pub struct Applied {
    /// The findings no exception silences.
    pub kept: Vec<Finding>,
    /// Names of the exceptions that silenced the others.
    pub silenced: Vec<String>,
    /// A finding waits for a full /proc read of the process: an exception depends on a fact
    /// only that read gives (what now lies at a deleted executable's path).
    pub pending: bool,
}

/// `findings` without those an exception silences. A `deleted_exe` finding whose exceptions
/// ask what replaced the file is held (`pending`) until a full read of the process says.
pub fn apply(findings: Vec<Finding>, p: &Process, ctx: &Context<'_>, cfg: &Config) -> Applied {
    let s = subject(p, ctx);
    let mut silenced = Vec::new();
    let mut pending = false;
    let kept = findings
        .into_iter()
        .filter_map(|f| {
            // Held once: if the full read asked for cannot tell either (the process's reads
            // hang and it is read header-only), the finding stands.
            if f.rule == Rule::DeletedExe
                && p.exe_successor_root.is_none()
                && !p.successor_asked
                && p.exited.is_none()
                && cfg.exceptions.of(f.rule).iter().any(|e| e.replaced_by_root)
            {
                pending = true;
                return None;
            }
            if f.rule == Rule::SuspiciousPort {
                let mut names = Vec::new();
                let left = suspicious_port::check_unless(p, cfg, |port| {
                    match cfg.exceptions.find(Rule::SuspiciousPort, &s, Some(port)) {
                        Some(e) => {
                            names.push(e.name.clone());
                            true
                        }
                        None => false,
                    }
                });
                if left.is_none() {
                    names.dedup();
                    silenced.extend(names);
                }
                return left;
            }
            match cfg.exceptions.find(f.rule, &s, None) {
                Some(e) => {
                    silenced.push(e.name.clone());
                    None
                }
                None => Some(f),
            }
        })
        .collect();
    Applied {
        kept,
        silenced,
        pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::{evaluate, testing::benign},
        process::table::{ConnectFact, WxFact},
    };

    fn conn(port: u16) -> ConnectFact {
        ConnectFact {
            addr: std::net::IpAddr::from([127, 0, 0, 1]),
            port,
            proto: crate::procfs::sockets::Proto::Tcp,
        }
    }

    #[test]
    fn a_database_port_is_excepted_but_not_a_second_bad_port() {
        let cfg = Config::default();
        let mut p = benign();
        p.connects.push(conn(5432));
        let Applied {
            kept,
            silenced: why,
            ..
        } = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg);
        assert!(kept.is_empty(), "{kept:?}");
        assert_eq!(why, ["database-and-cache-clients"]);
        p.connects.push(conn(4444));
        let kept = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg).kept;
        assert_eq!(kept.len(), 1);
        assert!(kept[0].reason.contains(":4444"), "{}", kept[0].reason);
    }

    #[test]
    fn jit_wx_is_excepted_by_path_and_overridable() {
        let mut p = benign();
        p.exe = Some("/usr/lib/jvm/java-17-openjdk-amd64/bin/java".into());
        p.wx_events.push(WxFact {
            syscall: "mprotect",
            start: 0x1000,
            len: 4096,
        });
        let cfg = Config::default();
        let Applied {
            kept,
            silenced: why,
            ..
        } = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg);
        assert!(kept.is_empty());
        assert_eq!(why, ["jit-runtimes"]);
        let cfg = Config::from_yaml("t", "exceptions:\n  wx_mem: []\n").expect("cfg");
        let kept = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg).kept;
        assert_eq!(kept.len(), 1, "defaults turned off");
    }

    #[test]
    fn deleted_exe_waits_for_what_replaced_the_file() {
        let cfg = Config::default();
        let mut p = benign();
        p.exe_state = ExeState::Deleted;
        let a = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg);
        assert!(a.kept.is_empty() && a.pending, "{a:?}");
        p.successor_asked = true;
        let a = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg);
        assert_eq!(a.kept.len(), 1, "asked, and still unknown: it stands");
        p.exe_successor_root = Some(true);
        let a = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg);
        assert!(a.kept.is_empty() && !a.pending);
        assert_eq!(a.silenced, ["package-upgrade"]);
        p.exe_successor_root = Some(false);
        let a = apply(evaluate(&p, &cfg), &p, &Context::default(), &cfg);
        assert_eq!(a.kept.len(), 1, "deleted with nothing root's in its place");
    }
}
