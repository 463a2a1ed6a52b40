//! Who holds the other end of a process's stdio: the processes that share one of its pipes,
//! FIFOs or unix sockets, or hold the master of its pseudo-terminal, and which of them has a
//! live network connection. What a reverse or bind shell's relay (`nc`, `socat`, a script)
//! looks like from /proc. Run off the engine (it reads other processes' fd tables).
use std::{
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use super::sockets::{SocketTable, TcpState, socket_inodes};
use crate::identity::ExeId;

/// What one of fds 0-2 is, as far as a relay goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum End {
    /// `pipe:[inode]`.
    Pipe(u64),
    /// `socket:[inode]` (a unix socket: inet sockets are found directly).
    Socket(u64),
    /// A FIFO by (device, inode).
    Fifo(u64, u64),
    /// `/dev/pts/N`.
    Pty(u32),
}

/// Reads what fds 0-2 of `pid` are (links only).
pub fn stdio_ends(pid: u32) -> Vec<End> {
    let mut out: Vec<End> = Vec::new();
    for fd in 0..3 {
        let path = format!("/proc/{pid}/fd/{fd}");
        let Ok(link) = std::fs::read_link(&path) else {
            continue;
        };
        if let Some(end) = end_of(&link, || std::fs::metadata(&path).ok())
            && !out.contains(&end)
        {
            out.push(end);
        }
    }
    out
}

/// Classifies an fd link; `stat` gives the file's metadata for a FIFO path.
fn end_of(link: &Path, stat: impl FnOnce() -> Option<std::fs::Metadata>) -> Option<End> {
    let b = link.as_os_str().as_bytes();
    let bracketed = |prefix: &[u8]| {
        b.strip_prefix(prefix)?
            .strip_suffix(b"]")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
    };
    if let Some(n) = bracketed(b"pipe:[") {
        return Some(End::Pipe(n));
    }
    if let Some(n) = bracketed(b"socket:[") {
        return Some(End::Socket(n));
    }
    if let Some(n) = b.strip_prefix(b"/dev/pts/") {
        return std::str::from_utf8(n).ok()?.parse().ok().map(End::Pty);
    }
    if link.is_absolute() {
        use std::os::unix::fs::FileTypeExt;
        let m = stat()?;
        if m.file_type().is_fifo() {
            return Some(End::Fifo(m.dev(), m.ino()));
        }
    }
    None
}

/// A process holding the other end of a shell's stdio while connected to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Its pid.
    pub pid: u32,
    /// Its executable.
    pub exe: Option<PathBuf>,
    /// Its executable file.
    pub exe_id: Option<ExeId>,
    /// The remote end of its connection.
    pub remote: std::net::SocketAddr,
    /// It accepted the connection (its local port listens): a bind shell's server.
    pub accepted: bool,
}

/// Among `candidates`, the processes that share one of `ends` with the shell (or, for
/// `parent`, are its parent) and hold an established TCP connection.
pub fn relays(shell: u32, parent: u32, ends: &[End], candidates: &[u32]) -> Vec<Relay> {
    let mut out = Vec::new();
    for &pid in candidates {
        if pid == shell || pid == 0 {
            continue;
        }
        let shares = pid == parent || holds_any(pid, ends);
        if !shares {
            continue;
        }
        let Ok(socks) = socket_inodes(pid) else {
            continue;
        };
        if socks.is_empty() {
            continue;
        }
        let Ok(table) = SocketTable::read_for_pid(pid) else {
            continue;
        };
        let listening = table.listening_ports();
        let Some(conn) = socks
            .iter()
            .filter_map(|&(_, inode)| table.get(inode))
            .find(|c| c.state == TcpState::Established)
        else {
            continue;
        };
        let range = super::sockets::ephemeral_ports();
        let ephemeral = |port: u16| range.contains(&port);
        out.push(Relay {
            pid,
            exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            exe_id: ExeId::of_proc_exe(pid, None),
            remote: conn.remote,
            // Its port still listens, or (a listener closed after one accept, as `nc -l` and
            // `socat` without `fork` do) the peer's port is ephemeral and its own is not.
            accepted: listening.contains(&(conn.proto, conn.local.port()))
                || (ephemeral(conn.remote.port()) && !ephemeral(conn.local.port())),
        });
    }
    out
}

/// True when `pid` has an fd on one of `ends` (for a pty: the master, by its `tty-index`).
fn holds_any(pid: u32, ends: &[End]) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let ptys: Vec<u32> = ends
        .iter()
        .filter_map(|e| match e {
            End::Pty(n) => Some(*n),
            _ => None,
        })
        .collect();
    for entry in dir.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if link == Path::new("/dev/ptmx") || link.starts_with("/dev/pts/ptmx") {
            let info = entry
                .file_name()
                .to_str()
                .and_then(|fd| std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok());
            if let Some(index) = info.as_deref().and_then(tty_index)
                && ptys.contains(&index)
            {
                return true;
            }
            continue;
        }
        let path = entry.path();
        if let Some(end) = end_of(&link, || std::fs::metadata(&path).ok())
            && !matches!(end, End::Pty(_))
            && ends.contains(&end)
        {
            return true;
        }
    }
    false
}

/// The `tty-index:` of a ptmx fd's fdinfo: the pts number of its slave.
fn tty_index(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("tty-index:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_fd_links() {
        let none = || None;
        assert_eq!(end_of(Path::new("pipe:[123]"), none), Some(End::Pipe(123)));
        assert_eq!(end_of(Path::new("socket:[9]"), none), Some(End::Socket(9)));
        assert_eq!(end_of(Path::new("/dev/pts/4"), none), Some(End::Pty(4)));
        assert_eq!(end_of(Path::new("/dev/null"), none), None);
        assert_eq!(end_of(Path::new("anon_inode:[eventfd]"), none), None);
        assert_eq!(end_of(Path::new("pipe:[x]"), none), None);
    }

    #[test]
    fn tty_index_from_fdinfo() {
        assert_eq!(
            tty_index("pos:\t0\nflags:\t02\nmnt_id:\t25\nino:\t2\ntty-index:\t7\n"),
            Some(7)
        );
        assert_eq!(tty_index("pos:\t0\n"), None);
    }

    #[test]
    fn a_pipe_shared_with_a_child_is_found() {
        // This process holds both ends of a pipe; a child that inherits them shares it.
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sleep");
        let ends = stdio_ends(child.id());
        assert!(ends.iter().any(|e| matches!(e, End::Pipe(_))), "{ends:?}");
        assert!(holds_any(std::process::id(), &ends));
        let _ = child.kill();
        let _ = child.wait();
    }
}
