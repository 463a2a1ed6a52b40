//! One process as read from /proc ([`Sample`]): the model every reader of /proc returns, for
//! the fallback sensor's sweeps, the engine's sweeps and rechecks, and `scan`.
use std::{
    collections::{HashMap, HashSet},
    ffi::{OsStr, OsString},
    net::IpAddr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Instant,
};

use super::{
    CMDLINE_MAX, PidDir, ReadError,
    sockets::{self, Conn, Proto, SocketTable},
    split_cmdline,
    stat::{self, StatReader},
};

/// What the executable link says about the file a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExeState {
    /// Not read yet, or unreadable (kernel thread, vanished).
    #[default]
    Unknown,
    /// A regular file that still exists.
    OnDisk,
    /// The file was unlinked after exec (` (deleted)` in the link).
    Deleted,
    /// The path now names a different file than the one running.
    Replaced,
    /// A memfd (`/memfd:name`): no file on disk at all.
    Memfd,
}

/// An outbound connection seen by the sensor or found in /proc/net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectFact {
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port.
    pub port: u16,
    /// TCP or UDP (from the socket table, or the socket type the sensor read).
    pub proto: Proto,
}

/// A socket a process serves on, found in a sweep: one it listens on, or a connection it
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerFact {
    /// TCP or UDP.
    pub proto: Proto,
    /// An accepted connection (else a listening socket).
    pub accepted: bool,
    /// The peer's address (accepted), or the address the socket is bound to (listening).
    pub addr: IpAddr,
    /// The process's own port.
    pub port: u16,
}

/// What a full read looks for besides a process's own files; the caller decides (procfs
/// knows nothing of rules or config).
#[derive(Clone)]
pub struct Interest {
    /// Outbound connections to these ports are not traced back to their process in a sweep.
    pub port_allowed: Arc<dyn Fn(u16) -> bool + Send + Sync>,
    /// Processes (by executable file name or comm) whose stdio sockets are worth resolving.
    pub wants_stdio: fn(&OsStr) -> bool,
    /// Trace listening sockets and accepted connections to their processes in a sweep (for
    /// the learned baselines).
    pub servers: bool,
}

impl std::fmt::Debug for Interest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interest").finish_non_exhaustive()
    }
}

impl Interest {
    /// Nothing beyond the process's own files: every port allowed, no stdio resolved.
    pub fn none() -> Self {
        Self {
            port_allowed: Arc::new(|_| true),
            wants_stdio: |_| false,
            servers: false,
        }
    }
}

/// How much of a process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// stat, status and the exe and cwd links: nothing the process can make slow (its memory
    /// and its files are not touched). The sample is `partial`: no command line.
    Header,
    /// Also the command line (read from the process's memory).
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
    /// For an exe deleted or replaced, read in full: whether its path now names a file only
    /// root can have put there (see [`successor_by_root`]), what a package upgrade leaves.
    pub exe_successor_root: Option<bool>,
    /// Command line.
    pub cmdline: Vec<OsString>,
    /// The command line was longer than [`CMDLINE_MAX`] and was cut.
    pub cmdline_truncated: bool,
    /// Only the header was read ([`Depth::Header`]): no command line, and nothing else that
    /// could block; what is missing is unknown, not empty.
    pub partial: bool,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// W+X mappings as `start-end perms path` (Full only).
    pub wx_maps: Vec<String>,
    /// Network sockets on fds 0-2 of a shell/interpreter (Full only).
    pub stdio_net: Vec<(u8, Option<ConnectFact>)>,
    /// Outbound connections (Full only): in a sweep, only those to a port not allowed.
    pub conns: Vec<ConnectFact>,
    /// Sockets it listens on and connections it accepted (a sweep's, when asked for).
    pub servers: Vec<ServerFact>,
    /// When it was read.
    pub taken_at: Option<Instant>,
    /// CLOCK_MONOTONIC ns (the clock of kernel event times) just after the exe link was read;
    /// 0 when unknown. An exec of that same file before this time is the image it shows (or
    /// an earlier one of the same file).
    pub read_ns: u64,
    /// Network namespace (sweep bookkeeping).
    pub(crate) netns: Option<u64>,
    /// Socket inodes on fds 0-2 of a shell/interpreter, resolved against its namespace's
    /// socket table in the second phase of a sweep.
    pub(crate) stdio_inodes: Option<[Option<u64>; 3]>,
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

/// The directory a relative path opened by `pid` is relative to: its working directory for
/// `AT_FDCWD`, else what its fd `dfd` names. Read from the links (no process can make that
/// slow), after the open: a process that changed directory since is placed where it is now.
pub fn open_base(pid: u32, dfd: i32) -> Option<PathBuf> {
    let link = if dfd == procwatch_common::AT_FDCWD {
        format!("/proc/{pid}/cwd")
    } else if dfd >= 0 {
        format!("/proc/{pid}/fd/{dfd}")
    } else {
        return None;
    };
    std::fs::read_link(link).ok().filter(|p| p.is_absolute())
}

/// Where fd 0 of `pid` points (`/proc/PID/fd/0`): a path, `pipe:[N]`, `socket:[N]`, ...
/// A link read: nothing the process can make slow.
pub fn stdin_link(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/0")).ok()
}

/// The cgroup (v2) path of `pid` from `/proc/PID/cgroup` (`0::/path`).
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
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
        std::fs::metadata(seen_by(pid, path)),
    ) else {
        return false;
    };
    (running.dev(), running.ino()) != (on_disk.dev(), on_disk.ino())
}

/// True when `path` names a regular file owned by root that only root may write, and every
/// directory above it is owned by root and writable by root alone: a file only root can have
/// put there, as a package manager replacing a binary does. A deleted exe with nothing at its
/// path, or one replaced by a file another user could have written, is not.
pub fn successor_by_root(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let owned_by_root = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    let Ok(file) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !file.file_type().is_file() || !owned_by_root(&file) {
        return false;
    }
    path.ancestors().skip(1).all(|dir| {
        std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_dir() && owned_by_root(&m))
    })
}

/// `path`, a path `pid` itself names (its exe or cwd link, an exec filename), as procwatch can
/// reach the same file: unchanged when both are in the same mount namespace, else through
/// `/proc/PID/root` (a container's `/usr/bin/python3` is not the host's).
pub fn seen_by(pid: u32, path: &Path) -> PathBuf {
    if same_mount_ns(pid) || !path.is_absolute() {
        return path.to_path_buf();
    }
    let mut p = PathBuf::from(format!("/proc/{pid}/root"));
    p.push(path.strip_prefix("/").unwrap_or(path));
    p
}

/// True when `pid` is in procwatch's mount namespace (or that cannot be told: then paths are
/// taken as they are, as before namespaces were considered).
pub fn same_mount_ns(pid: u32) -> bool {
    static MINE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let mine = MINE.get_or_init(|| std::fs::read_link("/proc/self/ns/mnt").ok());
    match (mine, std::fs::read_link(format!("/proc/{pid}/ns/mnt"))) {
        (Some(mine), Ok(theirs)) => *mine == theirs,
        _ => true,
    }
}

/// v4-mapped addresses of a v6 socket as the IPv4 address people know.
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What a baseline learns of a socket a process serves on, when it is one.
fn served(
    c: &Conn,
    listening: &sockets::ListeningPorts,
    ephemeral: &std::ops::RangeInclusive<u16>,
) -> Option<ServerFact> {
    let (accepted, addr) = if sockets::is_listener(c, ephemeral) {
        (false, c.local.ip())
    } else if sockets::is_accepted(c, listening) {
        (true, c.remote.ip())
    } else {
        return None;
    };
    Some(ServerFact {
        proto: c.proto,
        accepted,
        addr: plain(addr),
        port: c.local.port(),
    })
}

fn fact(c: &Conn) -> ConnectFact {
    let addr = plain(c.remote.ip());
    ConnectFact {
        addr,
        port: c.remote.port(),
        proto: c.proto,
    }
}

/// Network sockets on fds 0, 1, 2 of `pid`, with the peer when known. An fd holding a socket
/// that is not in the process's TCP/UDP tables (a unix socket, a pipe) does not count.
pub fn stdio_net(pid: u32) -> Vec<(u8, Option<ConnectFact>)> {
    stdio_net_of(pid, &sockets::stdio_sockets(pid))
}

/// [`stdio_net`] for socket inodes already read from fds 0-2 (cheap links, read at once; the
/// socket table is what may be slow).
pub fn stdio_net_of(pid: u32, inodes: &[Option<u64>; 3]) -> Vec<(u8, Option<ConnectFact>)> {
    if inodes.iter().all(Option::is_none) {
        return Vec::new();
    }
    let Ok(table) = SocketTable::read_for_pid(pid) else {
        return Vec::new();
    };
    stdio_from(inodes, &table)
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
pub fn take(pid: u32, depth: Depth, interest: &Interest) -> Result<Sample, ReadError> {
    let mut s = take_with(
        pid,
        depth,
        interest,
        &mut StatReader::default(),
        &mut |_| {},
    )?;
    if depth == Depth::Full
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
pub(crate) fn take_with(
    pid: u32,
    depth: Depth,
    interest: &Interest,
    reader: &mut StatReader,
    seen_start: &mut dyn FnMut(u64),
) -> Result<Sample, ReadError> {
    // Every file through one handle of /proc/PID: all of it describes the same process.
    let dir = PidDir::open(pid)?;
    let st = reader.stat_in(&dir)?;
    seen_start(st.start_ticks);
    let status = reader.status_in(&dir)?;
    let mut buf = Vec::new();
    let (exe, mut exe_state) = match dir.read_link(c"exe", &mut buf) {
        Some(link) => {
            let (path, state) = classify_exe(link);
            (Some(path), state)
        }
        None => (None, ExeState::Unknown),
    };
    // Taken after the link: a process exec'ing while it is read shows either image, and only
    // the exe's path says which.
    let read_ns = crate::clock::monotonic_ns();
    let (cmdline, cmdline_truncated) = if depth == Depth::Header {
        (Vec::new(), false)
    } else {
        match dir.read(c"cmdline", "cmdline", &mut buf, CMDLINE_MAX) {
            Ok(truncated) => (split_cmdline(&buf), truncated),
            Err(e) if e.is_vanished() => return Err(e),
            // Not permitted (hidepid, LSM): the rest of what was read still stands.
            Err(_) => (Vec::new(), false),
        }
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
        cmdline_truncated,
        partial: depth == Depth::Header,
        cwd,
        taken_at: Some(Instant::now()),
        read_ns,
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
            .is_some_and(interest.wants_stdio)
            || (interest.wants_stdio)(&s.name);
        if is_shell {
            let inodes = sockets::stdio_sockets(pid);
            s.stdio_inodes = inodes.iter().any(Option::is_some).then_some(inodes);
        }
        s.netns = sockets::netns_of(pid);
    }
    s.exe = exe;
    s.exe_state = exe_state;
    if depth == Depth::Full
        && matches!(exe_state, ExeState::Deleted | ExeState::Replaced)
        && let Some(path) = &s.exe
    {
        s.exe_successor_root = Some(successor_by_root(&seen_by(pid, path)));
    }
    Ok(s)
}

/// What the socket phase of a sweep needs of one sample (its index in the sweep).
#[derive(Debug, Clone)]
pub(crate) struct SocketQuery {
    idx: usize,
    pid: u32,
    netns: u64,
    pub(crate) stdio_inodes: Option<[Option<u64>; 3]>,
}

/// What the socket phase found for the sample at `idx`.
#[derive(Debug, Clone)]
pub(crate) struct SocketFacts {
    idx: usize,
    conns: Vec<ConnectFact>,
    servers: Vec<ServerFact>,
    stdio_net: Vec<(u8, Option<ConnectFact>)>,
}

/// The queries for the socket phase; the samples keep nothing of it.
pub(crate) fn socket_queries(samples: &mut [Sample]) -> Vec<SocketQuery> {
    samples
        .iter_mut()
        .enumerate()
        .filter_map(|(idx, s)| {
            Some(SocketQuery {
                idx,
                pid: s.pid,
                netns: s.netns?,
                stdio_inodes: s.stdio_inodes.take(),
            })
        })
        .collect()
}

/// Second phase of a sweep: per namespace, one socket table; suspicious outbound connections
/// traced to their owners, and (when asked) listening and accepted sockets not in `traced`
/// (those looked for in an earlier sweep; kept to the sockets that still exist); stdio
/// sockets of shells resolved.
pub(crate) fn socket_facts(
    queries: &[SocketQuery],
    interest: &Interest,
    traced: &mut HashSet<u64>,
) -> Vec<SocketFacts> {
    let mut present: HashSet<u64> = HashSet::new();
    let mut by_ns: HashMap<u64, Vec<&SocketQuery>> = HashMap::new();
    for q in queries {
        by_ns.entry(q.netns).or_default().push(q);
    }
    let mut out: HashMap<usize, SocketFacts> = HashMap::new();
    // Read only when servers are traced (it is used only then).
    let ephemeral = if interest.servers {
        sockets::ephemeral_ports()
    } else {
        0..=u16::MAX
    };
    fn facts(out: &mut HashMap<usize, SocketFacts>, idx: usize) -> &mut SocketFacts {
        out.entry(idx).or_insert_with(|| SocketFacts {
            idx,
            conns: Vec::new(),
            servers: Vec::new(),
            stdio_net: Vec::new(),
        })
    }
    for members in by_ns.values() {
        let Some(table) = members
            .iter()
            .find_map(|q| SocketTable::read_for_pid(q.pid).ok())
        else {
            continue;
        };
        let listening = table.listening_ports();
        let suspicious: HashMap<u64, &Conn> = table
            .iter()
            .filter(|c| {
                c.inode != 0
                    && sockets::is_outbound(c, &listening)
                    && !(interest.port_allowed)(c.remote.port())
            })
            .map(|c| (c.inode, c))
            .collect();
        let served: HashMap<u64, ServerFact> = if interest.servers {
            table
                .iter()
                .filter(|c| c.inode != 0 && !traced.contains(&c.inode))
                .filter_map(|c| Some((c.inode, served(c, &listening, &ephemeral)?)))
                .collect()
        } else {
            HashMap::new()
        };
        if interest.servers {
            present.extend(table.iter().map(|c| c.inode));
            traced.extend(served.keys());
        }
        if !suspicious.is_empty() || !served.is_empty() {
            // One pass over the processes' fds for both.
            let inodes: HashSet<u64> = suspicious.keys().chain(served.keys()).copied().collect();
            let owners = sockets::owners(&inodes, members.iter().map(|q| q.pid));
            let index: HashMap<u32, usize> = members.iter().map(|q| (q.pid, q.idx)).collect();
            for (inode, pid) in owners {
                let Some(&idx) = index.get(&pid) else {
                    continue;
                };
                if let Some(conn) = suspicious.get(&inode) {
                    facts(&mut out, idx).conns.push(fact(conn));
                }
                if let Some(s) = served.get(&inode) {
                    facts(&mut out, idx).servers.push(*s);
                }
            }
        }
        for q in members {
            if let Some(inodes) = &q.stdio_inodes {
                facts(&mut out, q.idx).stdio_net = stdio_from(inodes, &table);
            }
        }
    }
    if interest.servers {
        traced.retain(|inode| present.contains(inode));
    }
    out.into_values().collect()
}

/// Puts what the socket phase found into the samples it was asked for.
pub(crate) fn apply_socket_facts(samples: &mut [Sample], facts: Vec<SocketFacts>) {
    for f in facts {
        if let Some(s) = samples.get_mut(f.idx) {
            s.conns = f.conns;
            s.servers = f.servers;
            s.stdio_net = f.stdio_net;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket phase traces this process's listening socket and the connection it
    /// accepted on it to this process, once: a later sweep does not look for them again.
    #[test]
    fn listening_and_accepted_sockets_are_traced_to_their_process_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let me = std::process::id();
        let queries = vec![SocketQuery {
            idx: 0,
            pid: me,
            netns: sockets::netns_of(me).expect("netns"),
            stdio_inodes: None,
        }];
        let interest = Interest {
            servers: true,
            ..Interest::none()
        };
        let mut traced = HashSet::new();
        let mine = |facts: &[SocketFacts]| -> Vec<ServerFact> {
            facts
                .iter()
                .flat_map(|f| f.servers.iter().copied())
                .filter(|s| s.port == port)
                .collect()
        };
        let first = mine(&socket_facts(&queries, &interest, &mut traced));
        assert!(
            first
                .iter()
                .any(|s| !s.accepted && s.addr == IpAddr::from([127, 0, 0, 1])),
            "the listener: {first:?}"
        );
        assert!(
            first.iter().any(|s| s.accepted && s.proto == Proto::Tcp),
            "the accepted connection: {first:?}"
        );
        let again = mine(&socket_facts(&queries, &interest, &mut traced));
        assert!(again.is_empty(), "looked for once: {again:?}");
        drop((client, accepted, listener));
    }

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
        let s = take(me, Depth::Full, &Interest::none()).expect("own process");
        assert_eq!(s.pid, me);
        assert!(s.exe.is_some() && s.exe_state == ExeState::OnDisk);
        assert!(!s.cmdline.is_empty() && s.rss_bytes > 0 && s.start_ticks > 0);
        assert_eq!(s.cwd, std::env::current_dir().ok());
        assert!(!s.kernel_thread && !s.zombie);
    }

    #[test]
    fn a_vanished_pid_is_an_error_not_a_panic() {
        assert!(take(0x7fff_fff0, Depth::Full, &Interest::none()).is_err());
    }

    #[test]
    fn identity_of_this_process() {
        let me = take(std::process::id(), Depth::Identity, &Interest::none()).expect("own process");
        // SAFETY: getppid/getuid/getgid have no preconditions.
        let (ppid, uid, gid) = unsafe { (libc::getppid(), libc::getuid(), libc::getgid()) };
        assert_eq!(
            (i64::from(me.ppid), me.uid, me.gid),
            (i64::from(ppid), uid, gid)
        );
        let comm = std::fs::read("/proc/self/comm").expect("comm");
        assert_eq!(
            me.name.as_bytes(),
            comm.strip_suffix(b"\n").unwrap_or(&comm)
        );
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(me.exe.as_deref(), Some(exe.as_path()));
        let args: Vec<OsString> = std::env::args_os().collect();
        assert_eq!(me.cmdline, args);
        assert!(me.start_ticks > 0 && !me.partial && !me.cmdline_truncated);
        // The header alone: the same process, no command line, and it says so.
        let header = take(std::process::id(), Depth::Header, &Interest::none()).expect("own");
        assert_eq!(header.start_ticks, me.start_ticks);
        assert!(header.partial && header.cmdline.is_empty());
    }

    #[test]
    fn a_reaped_child_is_vanished() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("reaped");
        // Reaped: the pid is free (reuse within this window is practically impossible).
        let err = take(pid, Depth::Identity, &Interest::none()).expect_err("reaped");
        assert!(err.is_vanished(), "{err}");
    }
}
