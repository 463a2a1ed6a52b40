//! Samples of processes from /proc, taken off the engine's task (a sweep of every process) or
//! for one process (a recheck), and merged into the table by the engine.
use std::{
    collections::HashMap, ffi::OsString, os::unix::ffi::OsStrExt, path::PathBuf, time::Instant,
};

use super::{
    sockets::{self, Conn, ListeningPorts, SocketTable},
    stat::{self, StatReader},
    table::{ConnectFact, ExeState, Process},
};
use crate::{detect::reverse_shell::is_shell_or_interpreter, sensor::sweep::ReadError};

/// Longest command line kept (longer ones are cut).
const CMDLINE_MAX: usize = 32 * 1024;

/// How much of a process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// stat, status, exe, cmdline.
    Identity,
    /// Also W+X mappings, stdio sockets of shells, and outbound connections.
    Full,
}

/// One process as read from /proc.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Process id.
    pub pid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// comm.
    pub name: OsString,
    /// Start time (clock ticks since boot).
    pub start_ticks: u64,
    /// utime + stime (ticks).
    pub cpu_ticks: u64,
    /// Resident set size.
    pub rss_bytes: u64,
    /// TracerPid.
    pub tracer_pid: u32,
    /// Kernel thread.
    pub kernel_thread: bool,
    /// Zombie.
    pub zombie: bool,
    /// Executable path (without ` (deleted)`).
    pub exe: Option<PathBuf>,
    /// What the exe link says.
    pub exe_state: ExeState,
    /// Command line.
    pub cmdline: Vec<OsString>,
    /// W+X mappings as `start-end perms path` (Full only).
    pub wx_maps: Vec<String>,
    /// Network sockets on fds 0-2 of a shell/interpreter (Full only).
    pub stdio_net: Vec<(u8, Option<ConnectFact>)>,
    /// Outbound connections (Full only).
    pub conns: Vec<ConnectFact>,
    /// When it was read.
    pub taken_at: Option<Instant>,
}

/// Reads `/proc/PID/exe` and classifies it.
pub fn read_exe(pid: u32) -> (Option<PathBuf>, ExeState) {
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(link) => {
            let (path, state) = classify_exe(link);
            (Some(path), state)
        }
        Err(_) => (None, ExeState::Unknown),
    }
}

/// Splits ` (deleted)` off an exe link and says what the link means.
pub fn classify_exe(link: PathBuf) -> (PathBuf, ExeState) {
    let bytes = link.as_os_str().as_bytes();
    let (path, deleted) = match bytes.strip_suffix(b" (deleted)") {
        Some(p) => (crate::text::path_from_bytes(p), true),
        None => (link, false),
    };
    let state = if path.as_os_str().as_bytes().starts_with(b"/memfd:") {
        ExeState::Memfd
    } else if deleted {
        ExeState::Deleted
    } else {
        ExeState::OnDisk
    };
    (path, state)
}

/// True when the path now names another file than the one `pid` runs.
fn exe_replaced(pid: u32, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(running), Ok(on_disk)) = (
        std::fs::metadata(format!("/proc/{pid}/exe")),
        std::fs::metadata(path),
    ) else {
        return false;
    };
    (running.dev(), running.ino()) != (on_disk.dev(), on_disk.ino())
}

fn fact(c: &Conn) -> ConnectFact {
    // v4-mapped peers of a v6 socket are reported as the IPv4 address people know.
    let addr = match c.remote.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(std::net::IpAddr::V6(v6)),
        v4 => v4,
    };
    ConnectFact {
        addr,
        port: c.remote.port(),
    }
}

/// Network sockets on fds 0, 1, 2 of `pid`, with the peer when known. An fd holding a socket
/// that is not in the process's TCP/UDP tables (a unix socket, a pipe) does not count.
pub fn stdio_net(pid: u32) -> Vec<(u8, Option<ConnectFact>)> {
    let inodes = sockets::stdio_sockets(pid);
    if inodes.iter().all(Option::is_none) {
        return Vec::new();
    }
    let Ok(table) = SocketTable::read_for_pid(pid) else {
        return Vec::new();
    };
    stdio_from(&inodes, &table)
}

fn stdio_from(inodes: &[Option<u64>; 3], table: &SocketTable) -> Vec<(u8, Option<ConnectFact>)> {
    let mut out = Vec::new();
    for (fd, inode) in (0u8..).zip(inodes) {
        if let Some(conn) = inode.and_then(|i| table.get(i)) {
            let peer = (conn.remote.port() != 0).then(|| fact(conn));
            out.push((fd, peer));
        }
    }
    out
}

/// Per-namespace socket tables, read at most once per sweep.
#[derive(Default)]
struct NetCache {
    tables: HashMap<u64, Option<(SocketTable, ListeningPorts)>>,
}

impl NetCache {
    fn for_pid(&mut self, pid: u32) -> Option<&(SocketTable, ListeningPorts)> {
        let ns = sockets::netns_of(pid)?;
        self.tables
            .entry(ns)
            .or_insert_with(|| {
                let table = SocketTable::read_for_pid(pid).ok()?;
                let listening = table.listening_ports();
                Some((table, listening))
            })
            .as_ref()
    }
}

/// Reads one process.
pub fn take(pid: u32, depth: &Depth) -> Result<Sample, ReadError> {
    take_with(
        pid,
        *depth,
        &mut StatReader::default(),
        &mut NetCache::default(),
    )
}

fn take_with(
    pid: u32,
    depth: Depth,
    reader: &mut StatReader,
    net: &mut NetCache,
) -> Result<Sample, ReadError> {
    let (st, status) = reader.both(pid)?;
    let (exe, mut exe_state) = read_exe(pid);
    let cmdline = read_cmdline(pid);
    let kernel_thread = exe.is_none() && (pid == 2 || st.ppid == 2);
    let mut s = Sample {
        pid,
        ppid: st.ppid,
        uid: status.uid,
        gid: status.gid,
        name: st.comm.clone(),
        start_ticks: st.start_ticks,
        cpu_ticks: st.cpu_ticks(),
        rss_bytes: st.rss_bytes,
        tracer_pid: status.tracer_pid,
        kernel_thread,
        zombie: st.state == b'Z',
        exe: None,
        exe_state: ExeState::Unknown,
        cmdline,
        taken_at: Some(Instant::now()),
        ..Sample::default()
    };
    if depth == Depth::Full && !kernel_thread && !s.zombie {
        if let Some(path) = &exe
            && exe_state == ExeState::OnDisk
            && exe_replaced(pid, path)
        {
            exe_state = ExeState::Replaced;
        }
        if let Ok(maps) = stat::wx_mappings(pid) {
            s.wx_maps = maps
                .iter()
                .map(|m| {
                    let path = m
                        .path
                        .as_deref()
                        .map(|p| crate::text::os_lossy(p.as_os_str()).into_owned())
                        .unwrap_or_default();
                    format!("{:x}-{:x} {} {path}", m.start, m.end, m.perms)
                        .trim_end()
                        .to_string()
                })
                .collect();
        }
        let is_shell = exe
            .as_deref()
            .and_then(|e| e.file_name())
            .is_some_and(is_shell_or_interpreter)
            || is_shell_or_interpreter(&s.name);
        if let Some((table, listening)) = net.for_pid(pid) {
            if is_shell {
                s.stdio_net = stdio_from(&sockets::stdio_sockets(pid), table);
            }
            if let Ok(conns) = sockets::conns_of(pid, table, listening) {
                s.conns = conns.outbound.iter().map(fact).collect();
            }
        }
    }
    s.exe = exe;
    s.exe_state = exe_state;
    Ok(s)
}

fn read_cmdline(pid: u32) -> Vec<OsString> {
    use std::io::Read;
    let mut buf = Vec::new();
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    if f.take(CMDLINE_MAX as u64).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let body = buf.strip_suffix(&[0]).unwrap_or(&buf);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(crate::text::os_from_bytes)
        .collect()
}

/// Reads every process in /proc (vanished ones are skipped).
pub fn sweep_all() -> Vec<Sample> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut reader = StatReader::default();
    let mut net = NetCache::default();
    let mut out = Vec::with_capacity(1024);
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(s) = take_with(pid, Depth::Full, &mut reader, &mut net) {
            out.push(s);
        }
    }
    out
}

/// Copies a sample into the table entry, computing CPU % against the previous sample.
pub fn merge(p: &mut Process, s: Sample, now: Instant) {
    merge_identity(p, &s);
    let at = s.taken_at.unwrap_or(now);
    if let Some((prev_ticks, prev_at)) = p.cpu_sample {
        p.cpu_pct = stat::cpu_pct(prev_ticks, prev_at, s.cpu_ticks, at, stat::clk_tck());
    }
    p.cpu_sample = Some((s.cpu_ticks, at));
    p.rss_bytes = s.rss_bytes;
    p.tracer_pid = s.tracer_pid;
    p.kernel_thread = s.kernel_thread;
    p.zombie = s.zombie;
    p.wx_maps = s.wx_maps;
    p.stdio_net = s.stdio_net;
    p.conns = s.conns;
}

/// Copies who the process is (ids, names, exe, argv) into the table entry.
pub fn merge_identity(p: &mut Process, s: &Sample) {
    p.ppid = s.ppid;
    p.uid = s.uid;
    p.gid = s.gid;
    p.name = s.name.clone();
    if p.start_ticks == 0 {
        p.start_ticks = s.start_ticks;
    }
    // A vanished exe link (zombie) must not erase what the exec event told us.
    if s.exe.is_some() {
        p.exe = s.exe.clone();
        p.exe_state = s.exe_state;
    }
    if !s.zombie && (s.exe.is_some() || !s.cmdline.is_empty()) {
        p.cmdline = s.cmdline.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_exe_links() {
        assert_eq!(
            classify_exe("/usr/bin/ls".into()),
            ("/usr/bin/ls".into(), ExeState::OnDisk)
        );
        assert_eq!(
            classify_exe("/tmp/x (deleted)".into()),
            ("/tmp/x".into(), ExeState::Deleted)
        );
        assert_eq!(
            classify_exe("/memfd:pay (deleted)".into()),
            ("/memfd:pay".into(), ExeState::Memfd)
        );
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let s = take(me, &Depth::Full).expect("own process");
        assert_eq!(s.pid, me);
        assert!(s.exe.is_some() && s.exe_state == ExeState::OnDisk);
        assert!(!s.cmdline.is_empty() && s.rss_bytes > 0 && s.start_ticks > 0);
        assert!(!s.kernel_thread && !s.zombie);
    }

    #[test]
    fn a_vanished_pid_is_an_error_not_a_panic() {
        assert!(take(0x7fff_fff0, &Depth::Full).is_err());
    }

    #[test]
    fn sweep_finds_pid_1_and_skips_itself() {
        let all = sweep_all();
        assert!(all.iter().any(|s| s.pid == 1));
        assert!(all.iter().all(|s| s.pid != std::process::id()));
    }
}
