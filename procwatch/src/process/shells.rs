//! What a shell is, by the file rather than its name: the shells installed here (and the
//! terminal servers whose sessions legitimately put a shell on a pty or pipe they relay to the
//! network), resolved once at startup to file identities, and the digests of the shells so a
//! renamed copy is still known.
use std::{
    collections::{BTreeSet, HashSet},
    path::Path,
};

use crate::identity::ExeId;

/// Where shells are installed on the usual distributions.
const SHELL_PATHS: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "/bin/dash",
    "/bin/zsh",
    "/bin/ksh",
    "/bin/mksh",
    "/bin/tcsh",
    "/bin/csh",
    "/bin/fish",
    "/bin/ash",
    "/bin/busybox",
    "/bin/rbash",
    "/usr/bin/sh",
    "/usr/bin/bash",
    "/usr/bin/dash",
    "/usr/bin/zsh",
    "/usr/bin/ksh",
    "/usr/bin/ksh93",
    "/usr/bin/mksh",
    "/usr/bin/tcsh",
    "/usr/bin/csh",
    "/usr/bin/fish",
    "/usr/bin/busybox",
    "/usr/bin/yash",
    "/usr/bin/posh",
];

/// Remote-login servers: a shell on a pty or pipe they hold next to a TCP connection is a
/// login session, not a reverse shell.
const TERMINAL_SERVERS: &[&str] = &[
    "/usr/sbin/sshd",
    "/usr/lib/openssh/sshd-session",
    "/usr/libexec/openssh/sshd-session",
    "/usr/lib/ssh/sshd-session",
    "/usr/sbin/dropbear",
    "/usr/bin/mosh-server",
];

/// Shells and terminal servers by file identity, and the shells' digests.
#[derive(Debug, Clone, Default)]
pub struct Shells {
    /// Installed shells (symlinks resolved: `/bin/sh` is dash or bash).
    pub ids: BTreeSet<ExeId>,
    /// sha256 of each installed shell.
    pub digests: HashSet<String>,
    /// Installed terminal servers.
    pub terminal_servers: BTreeSet<ExeId>,
}

impl Shells {
    /// Resolves what is installed here (startup: reads a few files once).
    pub fn discover() -> Self {
        let mut s = Self::default();
        for path in SHELL_PATHS {
            let Ok(id) = ExeId::of_path(Path::new(path)) else {
                continue;
            };
            if !s.ids.insert(id) {
                continue;
            }
            if let Ok(mut f) = std::fs::File::open(path)
                && let Ok((_, outcome)) = super::hash::hash_file(&mut f, super::enrich::HASH_MAX)
                && let Some(d) = outcome.digest()
            {
                s.digests.insert(d.to_owned());
            }
        }
        s.terminal_servers = TERMINAL_SERVERS
            .iter()
            .filter_map(|p| ExeId::of_path(Path::new(p)).ok())
            .collect();
        s
    }

    /// True when `id` is an installed shell.
    pub fn is_shell(&self, id: Option<ExeId>) -> bool {
        id.is_some_and(|id| self.ids.contains(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_machines_sh_by_file_and_digest() {
        let s = Shells::discover();
        let sh = ExeId::of_path(Path::new("/bin/sh")).expect("/bin/sh");
        assert!(s.is_shell(Some(sh)));
        assert!(!s.is_shell(ExeId::of_path(Path::new("/proc/self/exe")).ok()));
        assert!(!s.digests.is_empty());
    }
}
