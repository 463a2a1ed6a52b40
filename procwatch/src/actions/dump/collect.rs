//! Reading the artifacts of one process from procfs. Every file is opened relative to one
//! `/proc/<pid>` handle, so all of them describe the same process even if the pid is reused.
use std::{ffi::CStr, fmt::Write as _, fs::File, io, os::fd::OwnedFd};

use super::fs::{c_name, list_dir};
use crate::{
    procfs::{
        PidDir, ReadError,
        parse::parse_u64,
        read_link_at,
        sockets::{SocketTable, socket_inodes},
    },
    text::terminal_safe,
};

/// Longest fd link target read (PATH_MAX); longer ones are shown cut, with a marker.
const LINK_MAX: usize = 4096;

/// One process being dumped.
pub struct Target {
    dir: PidDir,
    pid: u32,
}

impl Target {
    /// Opens `/proc/<pid>`; [`ReadError::Vanished`] when the process is gone.
    pub fn open(pid: u32) -> Result<Self, ReadError> {
        Ok(Self {
            dir: PidDir::open(pid)?,
            pid,
        })
    }

    /// Start time (clock ticks) of the process behind the handle.
    pub fn start_ticks(&self) -> Option<u64> {
        crate::procfs::stat::StatReader::default()
            .stat_in(&self.dir)
            .ok()
            .map(|s| s.start_ticks)
    }

    /// True when this is the process `expect` describes (start time, and file when given).
    pub fn is(&self, expect: &super::Expect) -> bool {
        if expect.start_ticks == 0 || self.start_ticks() != Some(expect.start_ticks) {
            return false;
        }
        expect.exe.is_none_or(|want| {
            self.exe()
                .ok()
                .and_then(|f| f.metadata().ok())
                .is_some_and(|m| crate::identity::ExeId::from_metadata(&m) == want)
        })
    }

    /// True while the process exists (a zombie counts).
    pub fn alive(&self) -> bool {
        self.dir.alive()
    }

    /// Opens one of its files (`cmdline`, `environ`, `maps`, `status`) for reading.
    pub fn file(&self, name: &'static str) -> Result<File, ReadError> {
        let c = c_name(name.as_bytes()).map_err(|e| self.dir.classify(name, e))?;
        self.dir.open_file(&c, name)
    }

    /// Opens its executable through the `exe` link: the file itself, even when it was deleted
    /// or is a memfd. A live process without one (kernel thread, zombie) is `Io`/`NotFound`.
    pub fn exe(&self) -> Result<File, ReadError> {
        match self.dir.open_file(c"exe", "exe") {
            Err(e) if e.is_vanished() && self.alive() => Err(ReadError::Io {
                pid: self.pid,
                file: "exe",
                source: io::Error::new(io::ErrorKind::NotFound, "no executable"),
            }),
            other => other,
        }
    }

    /// One line per open fd, in fd order: `N -> target`, the target escaped for a terminal
    /// (a file name may hold newlines and escape sequences).
    pub fn fds_text(&self) -> Result<Vec<u8>, ReadError> {
        let fd_dir = OwnedFd::from(self.dir.open_file(c"fd", "fd")?);
        let names = list_dir(&fd_dir).map_err(|e| self.dir.classify("fd", e))?;
        let mut fds: Vec<(u64, &CStr)> = names
            .iter()
            .filter_map(|n| Some((parse_u64(n.to_bytes())?, n.as_c_str())))
            .collect();
        fds.sort_unstable();
        let mut out = String::new();
        let mut link = vec![0u8; LINK_MAX];
        for (fd, name) in fds {
            let Ok(n) = read_link_at(Some(&fd_dir), name, &mut link) else {
                continue; // closed meanwhile
            };
            let cut = if n >= LINK_MAX { " [cut]" } else { "" };
            let target = terminal_safe(link.get(..n).unwrap_or_default());
            let _ = writeln!(out, "{fd} -> {target}{cut}");
        }
        Ok(out.into_bytes())
    }

    /// Its TCP and UDP sockets, from the tables of its own network namespace, one per line:
    /// `fd proto local remote state inode`. Other sockets (unix, netlink, ...) are counted in
    /// a comment; `fds` names them.
    pub fn net_text(&self) -> Result<Vec<u8>, ReadError> {
        let mut held = socket_inodes(self.pid)?;
        let table = SocketTable::read_for_pid(self.pid)?;
        // Both were read by pid: they are this process's only if it still holds the pid.
        if !self.alive() {
            return Err(ReadError::Vanished { pid: self.pid });
        }
        held.sort_unstable();
        let mut out = String::from("# fd proto local remote state inode\n");
        let mut other = 0usize;
        for (fd, inode) in held {
            match table.get(inode) {
                Some(c) => {
                    let _ = writeln!(
                        out,
                        "{fd} {} {} {} {:?} {inode}",
                        c.proto.as_str(),
                        c.local,
                        c.remote,
                        c.state
                    );
                }
                None => other += 1,
            }
        }
        if other > 0 {
            let _ = writeln!(
                out,
                "# {other} other sockets (unix, netlink, raw, ...): see fds"
            );
        }
        Ok(out.into_bytes())
    }
}

/// A reason for the notes from a read error.
pub fn reason(e: &ReadError) -> String {
    match e {
        ReadError::Vanished { .. } => "the process is gone".into(),
        other => terminal_safe(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use std::{net::TcpListener, os::fd::AsRawFd};

    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let t = Target::open(me).expect("own process");
        assert!(t.alive());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let fds = String::from_utf8(t.fds_text().expect("fds")).expect("utf-8");
        let fd = listener.as_raw_fd();
        assert!(
            fds.lines()
                .any(|l| l.starts_with(&format!("{fd} -> socket:["))),
            "{fds}"
        );
        let net = String::from_utf8(t.net_text().expect("net")).expect("utf-8");
        assert!(
            net.lines()
                .any(|l| l.starts_with(&format!("{fd} tcp 127.0.0.1:{port} 0.0.0.0:0 Listen"))),
            "{net}"
        );
        assert!(t.exe().expect("exe").metadata().expect("fstat").len() > 0);
        drop(listener);
    }

    #[test]
    fn gone_is_typed() {
        assert!(
            Target::open(u32::MAX)
                .err()
                .is_some_and(|e| e.is_vanished())
        );
        assert_eq!(
            reason(&ReadError::Vanished { pid: 1 }),
            "the process is gone"
        );
    }
}
