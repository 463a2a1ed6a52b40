//! Samples of processes from /proc, taken off the engine's task (a sweep of every process) or
//! for one process (a recheck), and merged into the table by the engine.
use std::{
    collections::{HashMap, HashSet},
    ffi::OsString,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    time::Instant,
};

use super::{
    sockets::{self, Conn, SocketTable},
    stat::{self, PidDir, StatReader},
    table::{ConnectFact, ExeState, Process},
};
use crate::{
    config::PortSet,
    detect::reverse_shell::is_shell_or_interpreter,
    sensor::sweep::{CMDLINE_MAX, ReadError},
};

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
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// W+X mappings as `start-end perms path` (Full only).
    pub wx_maps: Vec<String>,
    /// Network sockets on fds 0-2 of a shell/interpreter (Full only).
    pub stdio_net: Vec<(u8, Option<ConnectFact>)>,
    /// Outbound connections (Full only): in a sweep, only those to a port not allowed.
    pub conns: Vec<ConnectFact>,
    /// When it was read.
    pub taken_at: Option<Instant>,
    /// Network namespace (sweep bookkeeping).
    netns: Option<u64>,
    /// Socket inodes on fds 0-2 of a shell/interpreter, resolved against its namespace's
    /// socket table in the second phase of a sweep.
    stdio_inodes: Option<[Option<u64>; 3]>,
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

/// Reads one process completely (its own socket table included): for rechecks.
pub fn take(pid: u32, depth: &Depth) -> Result<Sample, ReadError> {
    let mut s = take_with(pid, *depth, &mut StatReader::default())?;
    if *depth == Depth::Full
        && !s.kernel_thread
        && !s.zombie
        && let Ok(table) = SocketTable::read_for_pid(pid)
    {
        let listening = table.listening_ports();
        if let Some(inodes) = s.stdio_inodes.take() {
            s.stdio_net = stdio_from(&inodes, &table);
        }
        if let Ok(conns) = sockets::conns_of(pid, &table, &listening) {
            s.conns = conns.outbound.iter().map(fact).collect();
        }
    }
    Ok(s)
}

/// The outbound connections of a live process (for an alert's `conns_outbound` and
/// `remote_ports`). Cheap when it holds no socket: the socket table is read only if it does.
pub fn outbound_conns(pid: u32) -> Vec<ConnectFact> {
    if sockets::socket_inodes(pid).map_or(true, |s| s.is_empty()) {
        return Vec::new();
    }
    let Ok(table) = SocketTable::read_for_pid(pid) else {
        return Vec::new();
    };
    let listening = table.listening_ports();
    sockets::conns_of(pid, &table, &listening)
        .map_or_else(|_| Vec::new(), |c| c.outbound.iter().map(fact).collect())
}

/// Everything from /proc/PID itself (no socket tables).
fn take_with(pid: u32, depth: Depth, reader: &mut StatReader) -> Result<Sample, ReadError> {
    // Every file through one handle of /proc/PID: all of it describes the same process.
    let dir = PidDir::open(pid)?;
    let st = reader.stat_in(&dir)?;
    let status = reader.status_in(&dir)?;
    let mut buf = Vec::new();
    let (exe, mut exe_state) = match dir.read_link(c"exe", &mut buf) {
        Some(link) => {
            let (path, state) = classify_exe(link);
            (Some(path), state)
        }
        None => (None, ExeState::Unknown),
    };
    let cmdline = match dir.read(c"cmdline", "cmdline", &mut buf, CMDLINE_MAX) {
        Ok(_) => crate::sensor::sweep::split_cmdline(&buf),
        Err(_) => Vec::new(),
    };
    let cwd = dir.read_link(c"cwd", &mut buf);
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
        cmdline,
        cwd,
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
        if let Ok(maps) = stat::wx_mappings_in(&dir) {
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
        if is_shell {
            let inodes = sockets::stdio_sockets(pid);
            s.stdio_inodes = inodes.iter().any(Option::is_some).then_some(inodes);
        }
        s.netns = sockets::netns_of(pid);
    }
    s.exe = exe;
    s.exe_state = exe_state;
    Ok(s)
}

/// Reads every process in /proc (vanished ones are skipped). Per-process reads are spread
/// over the CPUs; then each network namespace's socket table is read once, and only the
/// outbound connections to ports not in `ports` are traced back to their processes — so a
/// sweep reads no fd tables at all when nothing is suspicious.
pub fn sweep_all(ports: &PortSet) -> Vec<Sample> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let chunk = pids.len().div_ceil(workers).max(1);
    let mut samples: Vec<Sample> = std::thread::scope(|scope| {
        let handles: Vec<_> = pids
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut reader = StatReader::default();
                    part.iter()
                        .filter_map(|&pid| take_with(pid, Depth::Full, &mut reader).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    resolve_sockets(&mut samples, ports);
    samples
}

/// Second phase of a sweep: per namespace, one socket table; suspicious outbound connections
/// traced to their owners; stdio sockets of shells resolved.
fn resolve_sockets(samples: &mut [Sample], ports: &PortSet) {
    let mut by_ns: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        if let Some(ns) = s.netns {
            by_ns.entry(ns).or_default().push(i);
        }
    }
    for members in by_ns.values() {
        let Some(table) = members
            .iter()
            .find_map(|&i| SocketTable::read_for_pid(samples[i].pid).ok())
        else {
            continue;
        };
        let listening = table.listening_ports();
        let suspicious: HashMap<u64, &Conn> = table
            .iter()
            .filter(|c| {
                c.inode != 0
                    && sockets::is_outbound(c, &listening)
                    && !ports.contains(c.remote.port())
            })
            .map(|c| (c.inode, c))
            .collect();
        if !suspicious.is_empty() {
            let inodes: HashSet<u64> = suspicious.keys().copied().collect();
            let owners = sockets::owners(&inodes, members.iter().map(|&i| samples[i].pid));
            let index: HashMap<u32, usize> = members.iter().map(|&i| (samples[i].pid, i)).collect();
            for (inode, pid) in owners {
                if let (Some(&i), Some(conn)) = (index.get(&pid), suspicious.get(&inode)) {
                    samples[i].conns.push(fact(conn));
                }
            }
        }
        for &i in members {
            if let Some(inodes) = samples[i].stdio_inodes.take() {
                samples[i].stdio_net = stdio_from(&inodes, &table);
            }
        }
    }
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
        if p.exe != s.exe {
            // An exec procwatch did not see: the file identity it knew is another program's.
            p.exe_id = None;
        }
        p.exe = s.exe.clone();
        p.exe_state = s.exe_state;
    }
    if !s.zombie && (s.exe.is_some() || !s.cmdline.is_empty()) {
        p.cmdline = s.cmdline.clone();
    }
    if s.cwd.is_some() {
        p.cwd = s.cwd.clone();
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
        assert_eq!(s.cwd, std::env::current_dir().ok());
        assert!(!s.kernel_thread && !s.zombie);
    }

    #[test]
    fn a_vanished_pid_is_an_error_not_a_panic() {
        assert!(take(0x7fff_fff0, &Depth::Full).is_err());
    }

    #[test]
    fn sweep_finds_pid_1_and_skips_itself() {
        let all = sweep_all(&crate::config::Config::default().ports);
        assert!(all.iter().any(|s| s.pid == 1));
        assert!(all.iter().all(|s| s.pid != std::process::id()));
    }
}
